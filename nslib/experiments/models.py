"""The four models every experiment compares (the setting of E1-E7, not an experiment itself).

The same CNN (``smallcnn``: 4 conv + 3 FC) trained four ways on the embedded mnist5k train
split: standard, PGD-AT, TRADES and SNS. ``SHIPPED_RECIPES`` is the one place their
training settings are written; ``scripts/train_shipped.py`` trains them from it into
``data/checkpoints/``, and each shipped checkpoint stores the recipe it was trained with.
``python -m nslib reproduce --full`` retrains them from those stored recipes
(``retrain_settings``) with the same function, ``retrain``.

Our choices: the robust models share the reference PGD-AT budget
(``docs/experiments.md#reference-pgd-at-recipe``: 40 epochs, PGD-10 at
eps 0.3 with step 2.5 eps / 10, eps ramped 0 -> 0.3 over the first 16 epochs, Adam 1e-3,
batch 100, seed 0); SNS constrains conv3, conv4 and fc1 with lambda 0.01 on the top 10 %
(at most 10) neurons per layer, CE on the adversarial input. The headline numbers are
``nslib.evaluation.headline_metrics`` (clean, FGSM and PGD-40 at eps 0.3).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from .. import data
from ..checkpoints import load_pretrained, pretrained_path, read_checkpoint, save_checkpoint, upgrade_recipe
from ..settings import DEFAULT, RECIPE_NAMES
from ..utils import default_device, runs_root, seed_everything
from .context import SHIPPED_SEEDS, Context, Result, mean_std, seed_name, short_name

__all__ = ["SHIPPED_ARCH", "SHIPPED_DATASET", "SHIPPED_RECIPES", "SHIPPED_SEEDS", "seed_name", "load_or_train",
           "retrain_settings", "retrain", "checkpoint_metrics", "reevaluate", "run"]

#: The architecture and data set of the shipped models (``nslib.settings.DEFAULT``, mnist-smallcnn).
SHIPPED_ARCH, SHIPPED_DATASET = DEFAULT.arch, DEFAULT.dataset

#: ``train()`` keyword settings of the four shipped models (``recipe`` and ``epochs`` included):
#: the ``mnist-smallcnn`` setting's recipes, by model name. ``nslib.training.TrainConfig.from_dict``
#: of each is the run's configuration.
SHIPPED_RECIPES: dict[str, dict] = {DEFAULT.model_name(r): DEFAULT.recipe(r) for r in RECIPE_NAMES}

def load_or_train(name: str, *, device=None, quick: bool = True, runs: str | Path | None = None,
                  seed: int = 0) -> tuple[torch.nn.Module, dict]:
    """A shipped model for a notebook: the checkpoint if it is shipped, else trained from its recipe.

    What the notebooks' setup does (the UvA pattern: load a checkpoint if it exists, else
    train). Without the shipped checkpoint (``data/checkpoints`` removed, or a seed that is not
    shipped) it trains ``SHIPPED_RECIPES[name]`` with ``seed``: in ``quick`` mode a weak
    2-epoch stand-in on 1,000 training images (eps warm-up over 1 epoch), said so in the
    printed line; otherwise the full recipe into ``runs/<name>`` (resumable after a kill).

    Args:
        name (str): one of ``SHIPPED_RECIPES`` (``"mnist_standard"``, ...).
        device: where the model goes (default: ``nslib.utils.default_device()``).
        quick (bool): train the cheap stand-in when the checkpoint is missing.
        runs (path): folder of the fallback's training run; default
            ``nslib.utils.runs_root() / "notebooks"`` (``$NSLIB_RUNS`` if set).
        seed (int): the training seed (``mnist_pgd_at_seed1`` for seed 1).

    Returns:
        ``(model, info)``: the model in eval mode on ``device``, and ``info`` with ``recipe``,
        ``metrics`` (empty for a fallback) and ``log``, as ``nslib.checkpoints.read_checkpoint``.
    """
    from ..checkpoints import pretrained_names
    from ..models import build
    from ..training import train

    if name not in SHIPPED_RECIPES:
        raise ValueError(f"unknown shipped model {name!r}; choose from {', '.join(SHIPPED_RECIPES)}")
    device = torch.device(device) if device is not None else default_device()
    full_name = seed_name(name, seed)
    if full_name in pretrained_names():
        model, info = load_pretrained(full_name, map_location=device)
        recipe = info["recipe"]
        print(f"{full_name}: loaded the shipped checkpoint ({recipe['recipe']}, {recipe['epochs']} epochs)")
        return model.to(device).eval(), info
    settings = {**SHIPPED_RECIPES[name], "seed": seed}
    recipe = settings.pop("recipe")
    seed_everything(seed)
    model = build(SHIPPED_ARCH, dataset=SHIPPED_DATASET)
    if quick:
        print(f"{full_name}: no shipped checkpoint; training a weak 2-epoch stand-in on 1,000 images")
        settings.update(epochs=2, eps_warmup_epochs=1 if recipe != "standard" else 0)
        train_data, out = data.load(SHIPPED_DATASET, "train", limit=1000), None
    else:
        out = Path(runs or runs_root() / "notebooks") / full_name
        print(f"{full_name}: no shipped checkpoint; training it with the shipped recipe into {out}")
        train_data = data.load(SHIPPED_DATASET, "train")
    log = train(model, train_data, recipe, out=out, progress=not quick, device=device, **settings)
    return model.to(device).eval(), {"recipe": {"recipe": recipe, **settings}, "metrics": {}, "log": log}


def retrain_settings(name: str) -> dict:
    """``train()`` arguments of a shipped model, read from the recipe its checkpoint carries.

    Returns ``{"arch", "dataset", **recipe}`` without the provenance keys
    (``nslib.training.PROVENANCE``: the shell command and the number of processes), in
    today's keys (``nslib.checkpoints.upgrade_recipe``: the shipped ``amp`` is ``precision``).

    Example:
        >>> s = retrain_settings("mnist_pgd_at")
        >>> s["recipe"], s["epochs"], s["eps"], s["eps_warmup_epochs"]
        ('pgd_at', 40, 0.3, 16.0)
    """
    from ..training import PROVENANCE

    _, info = load_pretrained(name)  # sha256-checked
    recipe = {k: v for k, v in upgrade_recipe(info["recipe"]).items() if k not in PROVENANCE}
    return {"arch": info["arch"], "dataset": info["dataset"], **recipe}


def retrain(name: str, run_dir: str | Path, checkpoint: str | Path, settings: dict, *, device=None,
            progress: bool = True, n: int = 1000, seed: int = 0, command: str | None = None,
            autoattack: str | None = "quick") -> Path:
    """Train a model from ``settings`` into ``run_dir`` (resumable), evaluate it, save ``checkpoint``.

    The weights are initialised after seeding with the recipe's seed, as ``python -m nslib
    train`` does. The checkpoint holds the run's recipe (plus ``command`` when given), the
    headline metrics (``nslib.evaluation.headline_metrics``) on the first ``n`` test images
    with the attacks' random start seeded by ``seed``, the training time and threads, and
    the per-epoch log.

    Args:
        name (str): the model's name, for messages.
        run_dir (path): the training run's folder; an interrupted run resumes from it.
        checkpoint (path): where the trained model is saved.
        settings (dict): ``{"arch", "dataset", **train() settings}``, optionally ``"augment"``
            (crop + flip; default ``False``), checked strictly by ``TrainConfig.from_dict``
            (an unknown key raises), e.g.
            ``retrain_settings(name)`` or ``{"arch": SHIPPED_ARCH, "dataset": SHIPPED_DATASET,
            **SHIPPED_RECIPES[name]}``.
        device (optional): Default: ``nslib.utils.default_device()``.
        n (int, optional): test images of the headline metrics. Default: ``1000``.
        autoattack (str, optional): AutoAttack version of the metrics (``"standard"``, or
            ``"quick"``: our CPU subset). Default: ``"quick"``.

    Returns:
        Path: ``checkpoint``.
    """
    from ..models import build
    from ..training import TrainConfig, train

    settings = dict(settings)
    arch, dataset, augment = settings.pop("arch"), settings.pop("dataset"), settings.pop("augment", False)
    config = TrainConfig.from_dict({**settings, "eval_n": min(500, n)})
    run_dir, device = Path(run_dir), torch.device(device) if device is not None else default_device()
    print(f"  training {name}: {config.recipe}, {config.epochs} epochs -> {run_dir}", flush=True)
    seed_everything(config.seed)
    model = build(arch, dataset=dataset)
    start = time.time()
    log = train(model, data.load(dataset, "train", augment=augment), config=config, test_data=data.load(dataset, "test"),
                out=run_dir, device=device, progress=progress)
    seconds = round(time.time() - start)
    stored = read_checkpoint(run_dir / "model.pt")["recipe"]   # eps and alpha filled in by train()
    metrics = checkpoint_metrics(model, dataset, eps=stored.get("eps"), n=n, seed=seed, autoattack=autoattack,
                                 device=device)
    metrics.update(train_seconds=seconds, train_threads=torch.get_num_threads())
    if command is not None:
        stored = {**stored, "command": command}
    save_checkpoint(checkpoint, model, recipe=stored, metrics=metrics, log=log)
    return Path(checkpoint)


def checkpoint_metrics(model, dataset: str, *, eps: float | None = None, n: int = 1000, seed: int = 0,
                       autoattack: str | None = "quick", device=None) -> dict:
    """The headline metrics a checkpoint carries (``nslib.evaluation.headline_metrics``) on the
    first ``n`` test images of ``dataset`` at ``eps`` (the eps the model was trained for; default:
    the data set's usual one, ``nslib.data.DatasetInfo.eps``), with a description (``eval``)."""
    from ..evaluation import headline_metrics

    device = torch.device(device) if device is not None else default_device()
    x, y = data.load(dataset, "test").tensors(n)
    eps = data.dataset_info(dataset).eps if eps is None else eps
    metrics = headline_metrics(model.to(device).eval(), x.to(device), y.to(device), eps=eps, seed=seed,
                               autoattack=autoattack)
    metrics["eval"] = (f"{dataset} test ({len(y)}): FGSM eps {eps:g}; PGD-40 Linf eps {eps:g} step {eps / 30:g} "
                       f"random start; {metrics.get('aa_version', 'no AutoAttack')}; seed {seed}")
    return metrics


def reevaluate(checkpoint: str | Path, *, n: int = 1000, seed: int = 0, autoattack: str | None = "quick",
               device=None) -> dict:
    """Recompute a saved checkpoint's headline metrics with today's evaluation and save it again
    (weights, recipe and log unchanged; ``train_seconds``/``train_threads`` kept). Returns the metrics."""
    from ..checkpoints import load_checkpoint

    model, info = load_checkpoint(checkpoint)
    metrics = checkpoint_metrics(model, info["dataset"], eps=info["recipe"].get("eps"), n=n, seed=seed,
                                 autoattack=autoattack, device=device)
    metrics.update({k: info["metrics"][k] for k in ("train_seconds", "train_threads") if k in info["metrics"]})
    save_checkpoint(checkpoint, model.cpu(), arch=info["arch"], dataset=info["dataset"], recipe=info["recipe"],
                    metrics=metrics, log=info.get("log", []))
    return metrics


def model_row(name: str, seed: int, info: dict) -> dict:
    """The ``models.csv`` row of a checkpoint: its recipe's options and its headline metrics."""
    recipe, metrics = info["recipe"], info["metrics"]
    options = {"trades": f"beta {recipe.get('beta')}", "sns": (
        f"lambda {recipe.get('lam')}, k {recipe.get('k')}, layers {'+'.join(recipe.get('layers') or [])}")}
    return {"model": short_name(name), "seed": seed, "recipe": recipe["recipe"],
            "options": options.get(recipe["recipe"], ""), "epochs": recipe["epochs"], "eps": recipe.get("eps"),
            **{k: metrics.get(k) for k in METRICS}, "n": metrics.get("n"), "autoattack": metrics.get("aa_version")}


#: The headline metrics of a checkpoint that the tables show (``nslib.evaluation.headline_metrics``).
METRICS = ("clean_acc", "fgsm_acc", "pgd40_acc", "aa_acc", "worst_acc")


def train_settings(ctx: Context, name: str) -> dict:
    """``retrain`` settings of model ``name`` in the run's setting: the default setting's from the
    recipe its shipped checkpoint carries; another setting's from ``nslib.settings``, for
    ``setting.quick_epochs`` epochs in quick mode; trained in the run's ``precision`` and ``compile`` mode."""
    if ctx.setting.shipped:
        ctx.used_checkpoints[f"recipe of {name}"] = str(pretrained_path(name))
        return {**retrain_settings(name), "precision": ctx.precision, "compile": ctx.compile}
    setting = ctx.setting
    recipe = setting.recipe(short_name(name))
    if ctx.quick:
        recipe["epochs"] = min(recipe["epochs"], setting.quick_epochs)
    return {"arch": setting.arch, "dataset": setting.dataset, "augment": setting.augment,
            "eval_layers": list(setting.sns_layers), **recipe, "precision": ctx.precision,
            "compile": ctx.compile}  # E6's layers logged


def _retrain_seed(ctx: Context, name: str, seed: int) -> None:
    """Train one seed of a model from its recipe (``--full``, or a setting that ships no checkpoints)."""
    ctx.uses(ctx.setting.dataset, data.held_out_file(ctx.setting.dataset))
    run_name = seed_name(name, seed)
    retrain(run_name, ctx.out / "runs" / run_name, ctx.out / "models" / f"{run_name}.pt",
            {**train_settings(ctx, name), "seed": seed}, device=ctx.device, progress=ctx.progress, n=ctx.n,
            seed=ctx.seed, autoattack=ctx.autoattack)


def seed_summary(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds of each model's metrics (``models.csv`` rows in)."""
    summary = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        row = {"model": model, "seeds": len(mine)}
        for key in METRICS:  # None where a checkpoint lacks the metric (one made before AutoAttack)
            known = all(r[key] is not None for r in mine)
            row[f"{key}_mean"], row[f"{key}_std"] = mean_std([r[key] for r in mine]) if known else (None, None)
        summary.append(row)
    return summary


def run(ctx: Context) -> Result:
    """The four models, every training seed, and their headline numbers: shipped (quick) or
    retrained from their recipes (full)."""
    rows = []
    for name in ctx.models:
        for seed in ctx.seeds_of(name):
            if not ctx.shipped:
                _retrain_seed(ctx, name, seed)
            rows.append(model_row(name, seed, ctx.checkpoint_info(name, seed)))
    summary = seed_summary(rows)
    for r in summary:
        print(f"  {r['model']:8s} {r['seeds']} seeds  clean {r['clean_acc_mean']:.3f}±{r['clean_acc_std']:.3f}  "
              f"PGD-40 {r['pgd40_acc_mean']:.3f}±{r['pgd40_acc_std']:.3f}"
              + (f"  AutoAttack {r['aa_acc_mean']:.3f}±{r['aa_acc_std']:.3f}" if r["aa_acc_mean"] is not None else ""))
    where = ("the shipped checkpoints (data/checkpoints/)" if ctx.shipped else
             "retrained here from the shipped recipes" if ctx.setting.shipped else
             f"trained here from the {ctx.setting.name} recipes" + (
                 f", {ctx.setting.quick_epochs} epochs each in quick mode: a smoke run, not a result" if ctx.quick else ""))
    n, label = rows[0]["n"], rows[0]["autoattack"] or "no AutoAttack"
    counts = ", ".join(f"{r['model']} {r['seeds']}" for r in summary)
    finding = (f"The four models of the same {ctx.setting.arch} on {ctx.setting.dataset} ({where}; training seeds: "
               f"{counts}); mean ± std over seeds "
               f"on {n} test images ({label}): "
               + "; ".join(f"{r['model']} {r['clean_acc_mean']:.1%} ± {r['clean_acc_std']:.1%} clean, "
                           f"{r['pgd40_acc_mean']:.1%} ± {r['pgd40_acc_std']:.1%} under PGD-40"
                           + (f", {r['aa_acc_mean']:.1%} ± {r['aa_acc_std']:.1%} under AutoAttack"
                              if r["aa_acc_mean"] is not None else "") for r in summary)
               + f" at ε = {ctx.setting.eps:.4g} (`models.csv`, `models_seeds.csv`).")
    return Result(finding, {"models.csv": rows, "models_seeds.csv": summary})
