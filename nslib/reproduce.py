"""``python -m nslib reproduce``: regenerate the course's figures and tables into ``results/``.

Each experiment is one *step*: a function that writes PNG figures and CSV tables and
returns a one-sentence finding for ``results/REPORT.md``. A step whose outputs exist and
whose inputs (its settings, its code and the sha256 of the checkpoints it used) are
unchanged is skipped, so an interrupted run loses only the step it was in; every step
reseeds, so two runs give identical tables.

``--quick`` (the default) uses the shipped checkpoints, N = 200 test images, a trimmed
attack suite and the recorded E7 sweep: minutes on a laptop CPU. ``--full`` retrains the
four models from the recipes stored in the shipped checkpoints (``results/runs/``,
resumable, then ``results/models/``), reruns the E7 sweep, and uses N = 1000 and the full
attack suite (PGD-100, 5 restarts): 56 minutes on a 2-core CPU (27 of them training).
"""
from __future__ import annotations

import csv
import hashlib
import inspect
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import matplotlib

import torch
from torch import nn

from . import data
from . import __version__
from .checkpoints import (CHECKPOINT_DIR, atomic_write_text, load_checkpoint, load_pretrained, pretrained_names,
                          pretrained_path, read_checkpoint, save_checkpoint)
from .utils import default_device, seed_everything

__all__ = ["reproduce", "STEPS", "Context", "retrain_settings"]


@dataclass
class Context:
    """What every step needs: where to write, how big, which device; and which checkpoints it used."""

    out: Path
    quick: bool = True
    seed: int = 0
    device: torch.device = field(default_factory=default_device)
    progress: bool = True
    n_images: int | None = None
    used_checkpoints: dict[str, str] = field(default_factory=dict)  # label -> file

    @property
    def n(self) -> int:
        """Test images used by the attack-based steps: 200 quick, 1000 full, unless set."""
        return self.n_images or (200 if self.quick else 1000)

    def checkpoint_path(self, name: str) -> Path:
        """The shipped checkpoint (quick) or the one retrained by the ``models`` step (full)."""
        if self.quick:
            if name not in pretrained_names():
                raise FileNotFoundError(
                    f"checkpoint {name!r} is not in {CHECKPOINT_DIR}/manifest.json; restore it with "
                    "`git checkout -- data/checkpoints/` or train it with scripts/train_shipped.sh.")
            return pretrained_path(name)
        path = self.out / "models" / f"{name}.pt"
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: --full uses retrained models; run "
                                    f"`python -m nslib reproduce --full --steps models --out {self.out}` first.")
        return path

    def model(self, name: str) -> nn.Module:
        """A model by name, in eval mode on the device; its checkpoint is recorded for the step's key."""
        path = self.checkpoint_path(name)
        if self.quick:
            model, _ = load_pretrained(name, map_location=self.device)  # sha256-checked
        else:
            model, _ = load_checkpoint(path, map_location=self.device)
        self.used_checkpoints[name] = str(path)
        return model.to(self.device).eval()

    def checkpoint_info(self, name: str) -> dict:
        """The checkpoint's recipe, metrics and training log (no weights)."""
        info = read_checkpoint(self.checkpoint_path(name))
        info.pop("state_dict", None)
        return info

    def test_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = data.load("mnist5k", "test").tensors(self.n)
        return x.to(self.device), y.to(self.device)


def write_csv(path: Path, rows: list[dict]) -> Path:
    """Write ``rows`` (dicts with the same keys) as CSV, floats rounded to 4 decimals."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    return path


def save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


# --- the steps ----------------------------------------------------------------------------

MODELS = ("mnist_standard", "mnist_pgd_at", "mnist_trades", "mnist_sns")


def retrain_settings(name: str) -> dict:
    """``train()`` arguments of a shipped model, read from the recipe its checkpoint carries.

    Example:
        >>> s = retrain_settings("mnist_pgd_at")
        >>> s["recipe"], s["epochs"], s["eps"], s["eps_warmup_epochs"]
        ('pgd_at', 40, 0.3, 16.0)
    """
    _, info = load_pretrained(name)  # sha256-checked
    recipe = dict(info["recipe"])
    for key in ("command", "world_size", "amp"):
        recipe.pop(key, None)
    return {"arch": info["arch"], "dataset": info["dataset"], **recipe}


def _retrain(ctx: Context, name: str) -> None:
    """Train ``name`` from its shipped recipe into ``out/runs/name`` (resumable), save ``out/models/name.pt``."""
    from .evaluation import headline_metrics
    from .models import build
    from .training import train

    settings = retrain_settings(name)
    arch, dataset = settings.pop("arch"), settings.pop("dataset")
    recipe, epochs = settings.pop("recipe"), settings.pop("epochs")
    print(f"  training {name}: {recipe}, {epochs} epochs -> {ctx.out / 'runs' / name}", flush=True)
    model = build(arch, dataset=dataset)
    run = ctx.out / "runs" / name
    log = train(model, data.load(dataset, "train"), recipe, epochs, test_data=data.load(dataset, "test"),
                eval_n=min(500, ctx.n), out=run, device=ctx.device, progress=ctx.progress, **settings)
    x, y = ctx.test_batch()
    metrics = headline_metrics(model.eval(), x, y, seed=ctx.seed)
    metrics["eval"] = f"mnist5k test ({ctx.n}): FGSM eps 0.3; PGD-40 Linf eps 0.3 step 0.01 random start"
    save_checkpoint(ctx.out / "models" / f"{name}.pt", model, recipe=read_checkpoint(run / "model.pt")["recipe"],
                    metrics=metrics, log=log)


def step_models(ctx: Context) -> tuple[list[Path], str]:
    """The four models and their headline numbers: shipped (quick) or retrained from their recipes (full)."""
    rows = []
    for name in MODELS:
        if not ctx.quick:
            ctx.used_checkpoints[f"recipe of {name}"] = str(CHECKPOINT_DIR / f"{name}.pt")
            _retrain(ctx, name)
        ctx.model(name)
        info = ctx.checkpoint_info(name)
        recipe, metrics = info["recipe"], info["metrics"]
        options = {"trades": f"beta {recipe.get('beta')}", "sns": (
            f"lambda {recipe.get('lam')}, k {recipe.get('k')}, layers {'+'.join(recipe.get('layers') or [])}")}
        rows.append({"model": _short(name), "recipe": recipe["recipe"], "options": options.get(recipe["recipe"], ""),
                     "epochs": recipe["epochs"], "eps": recipe.get("eps"),
                     **{k: metrics[k] for k in ("clean_acc", "fgsm_acc", "pgd40_acc")}})
        print(f"  {_short(name):8s} clean {metrics['clean_acc']:.3f}  FGSM {metrics['fgsm_acc']:.3f}  "
              f"PGD-40 {metrics['pgd40_acc']:.3f}")
    where = ("the shipped checkpoints (data/checkpoints/, 1,000 test images)" if ctx.quick else
             f"retrained here from the shipped recipes ({ctx.n} test images)")
    finding = ("The four models of the same CNN, " + where + ": "
               + "; ".join(f"{r['model']} {r['clean_acc']:.1%} clean, {r['pgd40_acc']:.1%} under PGD-40 at ε = 0.3"
                           for r in rows) + " (`models.csv`).")
    return [write_csv(ctx.out / "models.csv", rows)], finding


def step_attacks(ctx: Context) -> tuple[list[Path], str]:
    """The standard model under FGSM and PGD-40 at eps 0.3, and a figure of examples."""
    from .attacks import FGSM, PGD
    from .evaluation import accuracy
    from .plotting import plot_examples

    model = ctx.model("mnist_standard")
    x, y = ctx.test_batch()
    attacks = {"FGSM": FGSM(model, eps=0.3),
               "PGD-40": PGD(model, eps=0.3, alpha=0.01, steps=40)}
    rows = [{"model": "mnist_standard", "attack": "clean", "eps": 0.0, "accuracy": accuracy(model, x, y)}]
    adversarial = {}
    for name, attack in attacks.items():
        adversarial[name] = attack(x, y)
        rows.append({"model": "mnist_standard", "attack": name, "eps": 0.3,
                     "accuracy": accuracy(model, adversarial[name], y)})
    with torch.no_grad():
        pred, pred_adv = model(x[:8]).argmax(1), model(adversarial["PGD-40"][:8]).argmax(1)
    fig = plot_examples(x[:8].cpu(), adversarial["PGD-40"][:8].cpu(), y[:8].cpu(), pred.cpu(), pred_adv.cpu(),
                        title="Standard model: benign vs PGD-40 (ε = 0.3) examples")
    outputs = [write_csv(ctx.out / "attacks.csv", rows),
               save_figure(fig, ctx.out / "adversarial_examples.png")]
    for row in rows:
        print(f"  {row['attack']:7s} accuracy {row['accuracy']:.3f}")
    clean, fgsm_acc, pgd_acc = (r["accuracy"] for r in rows)
    finding = (f"The standard model is {clean:.1%} accurate on {ctx.n} clean test images but only "
               f"{fgsm_acc:.1%} under FGSM and {pgd_acc:.1%} under PGD-40 at ε = 0.3 "
               "(`attacks.csv`, `adversarial_examples.png`).")
    return outputs, finding


LAYERS = ("conv1", "conv2", "conv3", "conv4", "fc1", "fc2", "fc3")


def _short(name: str) -> str:
    return name.removeprefix("mnist_")


def _pgd_inputs(ctx: Context, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """White-box PGD at eps 0.3 against ``model`` (PGD-20 quick, PGD-40 full), seeded."""
    from .attacks import pgd

    steps = 20 if ctx.quick else 40
    torch.manual_seed(ctx.seed)
    return pgd(model, x, y, eps=0.3, alpha=2.5 * 0.3 / steps, steps=steps)


def step_sensitivity(ctx: Context) -> tuple[list[Path], str]:
    """E1 (layer sensitivity) and E2 (per-neuron distributions) of the four models."""
    from .plotting import plot_layer_sensitivity, plot_sensitivity_distribution
    from .sensitivity import layer_sensitivity, neuron_sensitivity

    x, y = ctx.test_batch()
    sigma = {}
    for name in MODELS:
        model = ctx.model(name)
        sigma[_short(name)] = neuron_sensitivity(model, x, _pgd_inputs(ctx, model, x, y), list(LAYERS))
    layer = {m: layer_sensitivity(s) for m, s in sigma.items()}
    rows = [{"model": m, "layer": l, "sensitivity": layer[m][l], "ratio_to_standard": layer[m][l] / layer["standard"][l]}
            for m in layer for l in LAYERS]
    neuron_rows = [{"model": m, "layer": l, "neuron": i, "sigma": float(v)}
                   for m in sigma for l in LAYERS for i, v in enumerate(sigma[m][l].tolist())]
    outputs = [write_csv(ctx.out / "e1_layer_sensitivity.csv", rows),
               save_figure(plot_layer_sensitivity(layer), ctx.out / "e1_layer_sensitivity.png"),
               write_csv(ctx.out / "e2_neuron_sensitivity.csv", neuron_rows),
               save_figure(plot_sensitivity_distribution(sigma, ["conv2", "conv4", "fc1", "fc2"], kind="sorted"),
                           ctx.out / "e2_sensitivity_distribution.png")]
    lower = {m: sum(layer[m][l] < layer["standard"][l] for l in LAYERS) for m in layer if m != "standard"}
    for m in layer:
        print(f"  {m:8s} " + " ".join(f"{l}={layer[m][l]:.3f}" for l in LAYERS))
    held = all(v >= len(LAYERS) - 1 for v in lower.values())
    finding = ("**Finding 2 " + ("held" if held else "held only in part") + ".** Layer sensitivity under "
               "white-box PGD (ε = 0.3) is lower than the standard model's in "
               + ", ".join(f"{n} of {len(LAYERS)} layers for {m}" for m, n in lower.items())
               + f" (ratio to standard at fc1: "
               + ", ".join(f"{m} {layer[m]['fc1'] / layer['standard']['fc1']:.2f}" for m in lower)
               + "). E2 shows each layer's long tail: a few neurons change far more than the rest.")
    return outputs, finding


def step_ablation(ctx: Context) -> tuple[list[Path], str]:
    """E3: stabilise / deactivate the top-k, random-k and bottom-k neurons on PGD inputs."""
    import matplotlib.pyplot as plt

    from .ablation import ablation_sweep, summarise_sweep
    from .plotting import plot_ablation_curves
    from .sensitivity import neuron_sensitivity

    model = ctx.model("mnist_standard")
    x, y = ctx.test_batch()
    x_adv = _pgd_inputs(ctx, model, x, y)
    layers = ("conv4", "fc1")
    sigma = neuron_sensitivity(model, x, x_adv, list(layers))
    rows, fig = [], plt.figure(figsize=(12, 8), layout="constrained")
    axes = fig.subplots(2, 2)
    for r, layer in enumerate(layers):
        n = sigma[layer].numel()
        ks = sorted({0, n} | {2 ** p for p in range(10) if 2 ** p < n})
        for c, mode in enumerate(("stabilise", "deactivate")):
            summary = summarise_sweep(ablation_sweep(model, x, x_adv, y, sigma, layer, ks, mode=mode,
                                                     random_seeds=range(5)))
            rows += summary
            plot_ablation_curves(summary, ax=axes[r, c])
    fig.suptitle(f"E3: ablating k neurons on PGD inputs (standard model, {ctx.n} test images)")
    outputs = [write_csv(ctx.out / "e3_ablation.csv", rows), save_figure(fig, ctx.out / "e3_ablation.png")]
    # report each layer at the smallest k of the sweep covering a quarter of its neurons
    k_of = {l: min(r["k"] for r in rows if r["layer"] == l and r["k"] >= sigma[l].numel() / 4) for l in layers}
    pick = {(r["layer"], r["mode"], r["selection"]): r for r in rows if r["k"] == k_of[r["layer"]]}
    parts, gaps = [], []
    for layer in layers:
        t, rnd, b = (pick[(layer, "stabilise", s)] for s in ("top", "random", "bottom"))
        parts.append(f"{layer}, k = {k_of[layer]} of {sigma[layer].numel()}: top-k {t['accuracy_mean']:.1%}, "
                     f"random-k {rnd['accuracy_mean']:.1%} ± {rnd['accuracy_std']:.1%}, bottom-k {b['accuracy_mean']:.1%}")
        gaps.append((t["accuracy_mean"] - rnd["accuracy_mean"], 2 * rnd["accuracy_std"]))
        print(f"  stabilise {parts[-1]}")
    verdict = ("held" if all(g > max(0.1, s) for g, s in gaps) else
               "held only weakly" if all(g > s for g, s in gaps) else "did not hold")
    finding = (f"**Finding 1 {verdict}.** Stabilising the most sensitive neurons (their adversarial outputs "
               "replaced by their benign ones) restores far more correct predictions than stabilising as many "
               "random or least sensitive neurons (" + "; ".join(parts) + "; adversarial accuracy, random over "
               "5 seeds). Deactivating (zeroing) neurons is a blunter tool: see `e3_ablation.png`.")
    return outputs, finding


def step_feature_maps(ctx: Context) -> tuple[list[Path], str]:
    """E4: the most sensitive conv4 neurons' feature maps on a benign vs an adversarial image."""
    from .hooks import activations
    from .plotting import plot_feature_maps
    from .sensitivity import neuron_sensitivity, sensitive_neurons

    model = ctx.model("mnist_standard")
    x, y = ctx.test_batch()
    x_adv = _pgd_inputs(ctx, model, x, y)
    sigma = neuron_sensitivity(model, x, x_adv, ["conv4"])
    top = sensitive_neurons(sigma, k=4)["conv4"].tolist()
    with torch.no_grad():
        fooled = ((model(x).argmax(1) == y) & (model(x_adv).argmax(1) != y)).nonzero().flatten()
    j = int(fooled[0]) if len(fooled) else 0
    maps = activations(model, x[j:j + 1], ["conv4"])["conv4"][0]
    maps_adv = activations(model, x_adv[j:j + 1], ["conv4"])["conv4"][0]
    fig = plot_feature_maps(x[j].cpu(), x_adv[j].cpu(), maps.cpu(), maps_adv.cpu(), top, sigma["conv4"], "conv4")
    rows = [{"layer": "conv4", "neuron": i, "rank": r + 1, "sigma": float(sigma["conv4"][i]),
             "change_on_this_image": float((maps[i] - maps_adv[i]).abs().mean())} for r, i in enumerate(top)]
    outputs = [write_csv(ctx.out / "e4_sensitive_neurons.csv", rows), save_figure(fig, ctx.out / "e4_feature_maps.png")]
    finding = (f"The four most sensitive neurons of conv4 are channels {top} (σ = "
               + ", ".join(f"{r['sigma']:.2f}" for r in rows) + f"); on test image {j} their maps change "
               "visibly between the benign and the adversarial input (`e4_feature_maps.png`).")
    return outputs, finding


def _e5_suite(quick: bool) -> dict:
    from .evaluation import default_suite

    suite = default_suite(0.3, autoattack=False)
    suite["cw_l2"] = {"attack": "cw", "c": 10.0, "steps": 100, "lr": 0.1, "l2_max": 2.0}
    if quick:  # the most expensive attacks, left for --full
        for name in ("pgd100", "pgd40x5"):
            suite.pop(name)
        suite["pgd40x2"] = {"attack": "pgd", "eps": 0.3, "alpha": 0.01, "steps": 40, "restarts": 2}
    return suite


def step_robustness(ctx: Context) -> tuple[list[Path], str]:
    """E5: clean and robust accuracy of the four models under a suite of attacks, and vs eps."""
    from .evaluation import compare_worst_case, masking_warnings, robust_accuracy_curve, robustness_table, save_csv
    from .plotting import plot_accuracy_vs_eps

    x, y = ctx.test_batch()
    models = {_short(n): ctx.model(n) for n in MODELS}
    rows = robustness_table(models, (x, y), _e5_suite(ctx.quick), seed=ctx.seed, progress=ctx.progress)
    save_csv(rows, ctx.out / "e5_robustness.csv")
    eps_list = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4]
    curves = {m: (eps_list, robust_accuracy_curve(model, x, y, eps_list, steps=20 if ctx.quick else 40,
                                                  seed=ctx.seed)) for m, model in models.items()}
    write_csv(ctx.out / "e5_accuracy_vs_eps.csv",
              [{"model": m, "eps": e, "accuracy": a} for m, (es, accs) in curves.items() for e, a in zip(es, accs)])
    outputs = [ctx.out / "e5_robustness.csv", ctx.out / "e5_accuracy_vs_eps.csv",
               save_figure(plot_accuracy_vs_eps(curves), ctx.out / "e5_accuracy_vs_eps.png")]
    acc = {(r["model"], r["attack"]): r["accuracy"] for r in rows}
    warnings = masking_warnings(rows)
    for w in warnings:
        print("  WARNING", w)
    for m in models:
        print(f"  {m:8s} clean {acc[(m, 'clean')]:.3f}  FGSM {acc[(m, 'fgsm')]:.3f}  PGD-40 {acc[(m, 'pgd40')]:.3f}"
              f"  PGD-40 C&W loss {acc[(m, 'pgd40_cw')]:.3f}")
    linf = [a for a, spec in _e5_suite(ctx.quick).items()
            if spec.get("attack") in ("fgsm", "pgd", "mim") and spec.get("eps") == 0.3]
    comparison = compare_worst_case(rows, "sns", "pgd_at", linf, ctx.n)  # worst case over the L-inf attacks
    worst = comparison["worst"]
    verdict = {"matched": "matched (the difference is within sampling noise)"}.get(comparison["verdict"],
                                                                                  comparison["verdict"])
    finding = (f"**Finding 3: SNS {verdict} PGD-AT here.** Under PGD-40 at ε = 0.3 on {ctx.n} test images: "
               + ", ".join(f"{m} {acc[(m, 'pgd40')]:.1%}" for m in models)
               + "; worst case over the L∞ attacks at ε = 0.3 (FGSM, PGD-10/40, restarts, C&W loss, MIM): "
               + ", ".join(f"{m} {w:.1%}" for m, w in worst.items())
               + f" (SNS − PGD-AT = {comparison['difference']:+.1%}, two standard errors = {comparison['noise']:.1%}). C&W-L2 (within L2 ≤ 2): "
               + ", ".join(f"{m} {acc[(m, 'cw_l2')]:.1%}" for m in models) + ". "
               + ("No gradient-masking check failed." if not warnings else
                  f"{len(warnings)} gradient-masking check(s) failed: see `e5_robustness.csv` (flags)."))
    return outputs, finding


def _rank(values: list[float]) -> torch.Tensor:
    order = torch.tensor(values, dtype=torch.float64).argsort(stable=True)
    ranks = torch.empty_like(order, dtype=torch.float64)
    ranks[order] = torch.arange(len(values), dtype=torch.float64)
    return ranks


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (ties broken by order; enough for a scatter's summary)."""
    ra, rb = _rank(a), _rank(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def step_sensitivity_vs_robustness(ctx: Context) -> tuple[list[Path], str]:
    """E6: per-epoch layer sensitivity against robust accuracy, from the checkpoints' training logs."""
    from .plotting import plot_sensitivity_vs_robustness

    points = []
    for name in MODELS:
        ctx.model(name)  # records the checkpoint for the step's key
        for record in ctx.checkpoint_info(name).get("log", []):
            if "robust_acc" in record and record.get("sensitivity"):
                sens = sum(record["sensitivity"].values()) / len(record["sensitivity"])
                points.append({"name": "" if record["epoch"] % 10 else str(record["epoch"]), "group": _short(name),
                               "epoch": record["epoch"], "sensitivity": sens, "robust_acc": record["robust_acc"]})
    rho = spearman([p["sensitivity"] for p in points], [p["robust_acc"] for p in points])
    fig = plot_sensitivity_vs_robustness(points, xlabel="mean layer sensitivity of conv3, conv4, fc1",
                                         title=f"E6: sensitivity vs robust accuracy over training (Spearman ρ = {rho:.2f})")
    outputs = [write_csv(ctx.out / "e6_sensitivity_vs_robustness.csv",
                         [{k: p[k] for k in ("group", "epoch", "sensitivity", "robust_acc")} for p in points]),
               save_figure(fig, ctx.out / "e6_sensitivity_vs_robustness.png")]
    print(f"  {len(points)} (epoch, model) points, Spearman rho = {rho:.3f}")
    finding = (f"Across the {len(points)} epochs of the four training runs, lower sensitivity goes with higher "
               f"robust accuracy: Spearman ρ = {rho:.2f} (sensitivity and PGD-20 accuracy as logged during training).")
    return outputs, finding


def _sweep_file(ctx: Context) -> Path:
    """The recorded sweep (quick), or the sweep rerun into ``out/sns_sweep.json`` (full)."""
    if ctx.quick:
        return data.EMBEDDED_DIR / "sweeps" / "sns_sweep.json"
    from tqdm.auto import tqdm

    from . import sweep

    path = ctx.out / "sns_sweep.json"
    for knob, name, change in tqdm(sweep.SETTINGS, desc="E7 sweep", unit="run", disable=not ctx.progress):
        sweep.write_sweep([sweep.run_setting(name, knob, change, ctx.out / "runs" / "sweep", device=ctx.device)], path)
    return path


def step_sns_knobs(ctx: Context) -> tuple[list[Path], str]:
    """E7: SNS's lambda, k and constrained layers, from the recorded sweep (scripts/sns_sweep.py)."""
    import matplotlib.pyplot as plt

    sweep = json.loads(_sweep_file(ctx).read_text())
    runs = sweep["runs"]
    base = next(r for r in runs if r["lam"] == 0)
    rows = [{"name": r["name"], "knob": r["knob"], "lam": r["lam"], "k": r["k"], "layers": "+".join(r["layers"]),
             "clean_acc": r["clean_acc"], "pgd40_acc": r["pgd40_acc"],
             "mean_sensitivity": sum(r["sensitivity"].values()) / len(r["sensitivity"])} for r in runs]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), layout="constrained", sharey=True)
    for ax, knob, xlabel in zip(axes, ("lambda", "k", "layers"), ("λ (penalty weight)", "k (neurons per layer)",
                                                                 "constrained layers")):
        chosen = [r for r in rows if r["knob"] == knob or (knob != "lambda" and r["name"] == "lam0.01")]
        if knob == "k":
            chosen = sorted(chosen, key=lambda r: {0.1: 10}.get(r["k"], r["k"]))
        labels = [{"lambda": f"{r['lam']:g}", "k": ("10%≤10" if r["k"] == 0.1 else f"{r['k']:g}"),
                   "layers": r["layers"]}[knob] for r in chosen]
        ax.plot(labels, [100 * r["pgd40_acc"] for r in chosen], marker="o", label="PGD-40 accuracy")
        ax.plot(labels, [100 * r["clean_acc"] for r in chosen], marker="s", label="clean accuracy")
        ax.axhline(100 * base["pgd40_acc"], color="gray", linestyle="--", label="PGD-AT, same budget")
        ax.set(xlabel=xlabel, title=f"SNS vs {knob}")
        ax.tick_params(axis="x", rotation=30)
    axes[0].set_ylabel("accuracy on 500 test images (%)")
    axes[0].legend()
    fig.suptitle("E7: SNS knobs (reduced budget: " + ", ".join(f"{k} {v}" for k, v in sweep["budget"].items()) + ")")
    outputs = [write_csv(ctx.out / "e7_sns_knobs.csv", rows), save_figure(fig, ctx.out / "e7_sns_knobs.png")]
    best = max((r for r in rows if r["lam"] > 0), key=lambda r: r["pgd40_acc"])
    print(f"  PGD-AT {base['pgd40_acc']:.3f}; best SNS {best['name']} {best['pgd40_acc']:.3f}")
    finding = (f"At the sweep's reduced budget PGD-AT reaches {base['pgd40_acc']:.1%} under PGD-40; the best SNS "
               f"setting ({best['name']}) {best['pgd40_acc']:.1%}. Larger λ and k lower the sensitivity steadily; "
               "robust accuracy moves by a few points at most ("
               + ("recorded runs: `data/sweeps/sns_sweep.json`" if ctx.quick else "rerun here: `sns_sweep.json`")
               + ").")
    return outputs, finding


#: step name -> (function, title). Order matters: the report follows it.
STEPS: dict[str, tuple[Callable[[Context], tuple[list[Path], str]], str]] = {
    "models": (step_models, "The four models"),
    "attacks": (step_attacks, "Attacks on the standard model"),
    "sensitivity": (step_sensitivity, "E1, E2: layer and neuron sensitivity of four models"),
    "ablation": (step_ablation, "E3: neuron stabilisation and deactivation"),
    "feature_maps": (step_feature_maps, "E4: the most sensitive neurons' feature maps"),
    "robustness": (step_robustness, "E5: SNS vs baselines under attack"),
    "sensitivity_vs_robustness": (step_sensitivity_vs_robustness, "E6: sensitivity vs robustness"),
    "sns_knobs": (step_sns_knobs, "E7: SNS knobs"),
}


# --- running them -------------------------------------------------------------------------

def _key(ctx: Context, name: str) -> str:
    """What a step's outputs depend on: its settings, the checkpoints it used and its own code."""
    code = hashlib.sha256(inspect.getsource(STEPS[name][0]).encode()).hexdigest()
    settings = {"step": name, "code": code, "quick": ctx.quick, "seed": ctx.seed, "n": ctx.n,
                "checkpoints": _checkpoint_hashes(ctx.used_checkpoints), "version": __version__}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def _checkpoint_hashes(files: dict[str, str]) -> dict[str, str]:
    """label -> sha256 of the file (``"missing"`` when it is gone, so the step reruns)."""
    return {label: (data.sha256sum(f) if Path(f).exists() else "missing") for label, f in sorted(files.items())}


def reproduce(out: str | os.PathLike = "results", *, quick: bool = True, steps: list[str] | None = None,
              force: bool = False, seed: int = 0, n: int | None = None, progress: bool = True) -> Path:
    """Run the steps (all by default), skipping those that are up to date; write REPORT.md.

    Args:
        out (path, optional): output folder. Default: ``"results"``.
        quick (bool, optional): shipped checkpoints and small N; ``False`` retrains (``--full``).
            Default: ``True``.
        steps (list of str, optional): a subset of ``STEPS``. Default: all.
        force (bool, optional): rerun steps even when up to date. Default: ``False``.
        seed (int, optional): the one seed. Default: ``0``.
        n (int, optional): test images of the attack-based steps. Default: 200 quick, 1000 full.

    Returns:
        Path: ``out/REPORT.md``.
    """
    matplotlib.use("Agg")
    out = Path(out)
    names = list(STEPS) if steps is None else steps
    unknown = [s for s in names if s not in STEPS]
    if unknown:
        raise ValueError(f"unknown steps {unknown}; choose from {list(STEPS)}.")
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ValueError(f"n (test images) must be a positive int, got {n!r}.")
    stamps = out / ".stamps"
    stamps.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names, start=1):
        function, title = STEPS[name]
        stamp = stamps / f"{name}.json"
        previous = json.loads(stamp.read_text()) if stamp.exists() else None
        if previous and not force and isinstance(previous.get("checkpoints"), dict):  # else: an older stamp
            ctx = Context(out, quick=quick, seed=seed, progress=progress, n_images=n,
                          used_checkpoints=previous["checkpoints"])
            if previous["key"] == _key(ctx, name) and all((out / f).exists() for f in previous["outputs"]):
                print(f"[{i}/{len(names)}] {title}: up to date, skipped")
                continue
        print(f"[{i}/{len(names)}] {title} ...", flush=True)
        ctx = Context(out, quick=quick, seed=seed, progress=progress, n_images=n)
        seed_everything(seed)
        outputs, finding = function(ctx)
        record = {"key": _key(ctx, name), "title": title, "finding": finding,
                  "checkpoints": ctx.used_checkpoints,
                  "outputs": [str(p.relative_to(out)) for p in outputs]}
        atomic_write_text(stamp, json.dumps(record, indent=2))  # last: an interrupted step has no stamp, reruns
    return write_report(out, names)


def write_report(out: Path, names: list[str]) -> Path:
    """``REPORT.md``: each step's figures and tables with its one-sentence finding."""
    lines = ["# nslib: reproduction report", "",
             "Regenerated by `python -m nslib reproduce`; each section shows one experiment of",
             "SPEC.md and says whether the paper's finding held on our data.", ""]
    for name in names:
        record = json.loads((out / ".stamps" / f"{name}.json").read_text())
        lines += [f"## {record['title']}", "", record["finding"], ""]
        for output in record["outputs"]:
            lines.append(f"![{output}]({output})" if output.endswith(".png") else f"- table: [`{output}`]({output})")
        lines.append("")
    report = out / "REPORT.md"
    report.write_text("\n".join(lines))
    print(f"wrote {report}")
    return report
