"""E6: sensitivity against robustness over training. Does a model become more robust as
its layers become less sensitive?

Our choices: no new attack: the points are the per-epoch records the four checkpoints
carry in their training logs (mean layer sensitivity of the layers SNS constrains, conv3,
conv4 and fc1 on MNIST, and accuracy under PGD-20 at the setting's eps, both on 500 test
images); one point per (training seed,
model, epoch), for every seed of ``ctx.common_seeds()``; Spearman's rank correlation over all
models' epochs of one seed, reported as the mean ± std over seeds, and the pooled one over
every point.

The scale control: raw sensitivity is in activation units, and a model can lower it by
shrinking its activations. The logs record no activation scale, so the relative
sensitivity (``sigma / mean |F_l(x)|``, ``nslib.sensitivity.relative_sensitivity``) is measured
for the final epoch only, where the checkpoint holds that epoch's weights: the scale is
measured on the first ``EVAL_N`` test images (the images the log's sensitivity was
measured on), and the relative sensitivity is the mean over the three layers of each
layer's sigma over its scale. Across the final checkpoints (one per model and seed) the
finding compares Spearman's rho of robust accuracy with the raw and with the relative
sensitivity, and follows the relative one where they disagree.
"""
from __future__ import annotations

import torch

from .context import Context, Result, mean_std, short_name

#: Test images of the training logs' per-epoch evaluation (``TrainConfig.eval_n``).
EVAL_N = 500
#: A correlation at or below this counts as "lower sensitivity goes with higher robustness".
STRONG = -0.5


def _rank(values: list[float]) -> torch.Tensor:
    """The rank (0 = smallest) of each value; ties ranked in order of appearance."""
    from ..sensitivity import rank_neurons

    order = rank_neurons(torch.tensor(values, dtype=torch.float64), largest=False)
    ranks = torch.empty_like(order, dtype=torch.float64)
    ranks[order] = torch.arange(len(values), dtype=torch.float64)
    return ranks


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (ties broken by order; enough for a scatter's summary)."""
    ra, rb = _rank(a), _rank(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def _eval_images(ctx: Context) -> torch.Tensor:
    """The first ``EVAL_N`` test images of the setting's data, on the device (recorded for the step's key)."""
    return ctx.test_images(EVAL_N)[0]


def log_points(ctx: Context, seed: int, x: torch.Tensor | None = None) -> list[dict]:
    """One point per logged epoch of each model's training ``seed``: ``{"name" (the epoch's
    label, every 10th), "group" (the model), "seed", "epoch", "sensitivity", "robust_acc",
    "activation_scale", "relative_sensitivity"}``; the last two are the mean over the logged
    layers of ``mean |F_l(x)|`` and of ``sigma_l / mean |F_l(x)|`` on the benign images ``x``
    ``(N, C, H, W)``, for the final epoch only (None elsewhere, and everywhere without ``x``)."""
    from ..sensitivity import activation_scale, relative_sensitivity

    points = []
    for name in ctx.models:
        model = ctx.model(name, seed)  # also records the checkpoint for the step's key
        log = [r for r in ctx.checkpoint_info(name, seed).get("log", []) if "robust_acc" in r and r.get("sensitivity")]
        for i, record in enumerate(log):
            sens = record["sensitivity"]
            point = {"name": "" if record["epoch"] % 10 else str(record["epoch"]), "group": short_name(name),
                     "seed": seed, "epoch": record["epoch"], "sensitivity": sum(sens.values()) / len(sens),
                     "robust_acc": record["robust_acc"], "activation_scale": None, "relative_sensitivity": None}
            if x is not None and i == len(log) - 1:
                scale = activation_scale(model, x, list(sens))
                point["activation_scale"] = sum(scale.values()) / len(scale)
                rel = relative_sensitivity(sens, scale)
                point["relative_sensitivity"] = sum(rel.values()) / len(rel)
            points.append(point)
    return points


def seed_correlations(points: list[dict]) -> dict[int, float]:
    """Spearman's rho between sensitivity and robust accuracy over each seed's points: ``{seed: rho}``."""
    seeds = dict.fromkeys(p["seed"] for p in points)
    return {s: spearman([p["sensitivity"] for p in points if p["seed"] == s],
                        [p["robust_acc"] for p in points if p["seed"] == s]) for s in seeds}


def final_correlations(points: list[dict]) -> dict[str, float] | None:
    """Spearman's rho of robust accuracy with the raw and the relative sensitivity over the
    final checkpoints (the points with a relative sensitivity): ``{"raw", "relative", "n"}``;
    None with fewer than three such points."""
    final = [p for p in points if p.get("relative_sensitivity") is not None]
    if len(final) < 3:
        return None
    acc = [p["robust_acc"] for p in final]
    return {"raw": spearman([p["sensitivity"] for p in final], acc),
            "relative": spearman([p["relative_sensitivity"] for p in final], acc), "n": len(final)}


def scale_verdict(final: dict[str, float] | None) -> str:
    """The finding's sentence on the scale control, from :func:`final_correlations`."""
    if final is None:
        return "The scale control needs the final checkpoints' relative sensitivity; none was measured."
    raw, rel, n = final["raw"], final["relative"], final["n"]
    said = (f"Across the {n} final checkpoints (models and seeds), Spearman ρ of robust accuracy with the raw "
            f"sensitivity is {raw:.2f}, with the relative one (σ / mean |F(x)|) {rel:.2f}: ")
    if raw <= STRONG and rel <= STRONG:
        return said + "the link survives the scale control."
    if raw <= STRONG:
        return said + ("the link holds in raw units only; once activation scale is controlled it is weak, so the "
                       "claim that survives is the per-epoch trend within a training run, not a ranking of models.")
    if rel <= STRONG:
        return said + "the link between models shows only once activation scale is controlled; trust the relative one."
    return said + "neither ranks the final models by robustness."


def _figure(points: list[dict], title: str, final: dict | None, layers: str = "conv3, conv4, fc1"):
    """Left: one line per (model, seed) over the epochs, a model's seeds in one colour, epochs
    labelled on seed 0. Right: the final checkpoints, robust accuracy against relative sensitivity."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from ..plotting import plot_sensitivity_vs_robustness

    fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 4.2), layout="constrained")
    for seed in dict.fromkeys(p["seed"] for p in points):
        mine = [p if p["seed"] == 0 else {**p, "name": ""} for p in points if p["seed"] == seed]
        plot_sensitivity_vs_robustness(mine, ax=left, xlabel=f"raw: mean layer sensitivity\nof {layers}",
                                       title="over training (raw)")
    legend = dict(zip(*reversed(left.get_legend_handles_labels())))  # one entry per model, not per seed
    left.legend(legend.values(), legend.keys(), fontsize=9)
    ends = [p for p in points if p.get("relative_sensitivity") is not None]
    groups = list(dict.fromkeys(p["group"] for p in points))   # the left panel's colour order
    colours = dict(zip(groups, sns.color_palette("colorblind", len(groups))))
    for group in dict.fromkeys(p["group"] for p in ends):      # one dot per seed, no lines between seeds
        mine = [p for p in ends if p["group"] == group]
        right.scatter([p["relative_sensitivity"] for p in mine], [100 * p["robust_acc"] for p in mine],
                      color=colours[group], label=group)
    right.set(xlabel="relative: σ / mean |F(x)|, final epoch", ylabel="robust accuracy (%)")
    right.set_title("final checkpoints (relative)" + (f"\nρ raw {final['raw']:.2f}, relative {final['relative']:.2f}"
                                                      if final else ""), fontsize=10)
    fig.suptitle(title)
    return fig


def _summary(per_seed: dict[int, float], pooled: float, n_points: int) -> tuple[str, str]:
    """The title's and the finding's account of the correlations: mean ± std over seeds and pooled."""
    if len(per_seed) == 1:
        (rho,) = per_seed.values()
        return (f"Spearman ρ = {rho:.2f} (one training seed)",
                f"Spearman ρ = {rho:.2f} over the {n_points} points of one training seed per model (the spread "
                "between training runs is unmeasured)")
    mean, std = mean_std(list(per_seed.values()))
    seeds = f"{len(per_seed)} training seeds"
    return (f"Spearman ρ = {mean:.2f} ± {std:.2f} over {seeds}, pooled ρ = {pooled:.2f}",
            f"Spearman ρ = {mean:.2f} ± {std:.2f} (mean ± std over {seeds}: "
            + ", ".join(f"seed {s} {r:.2f}" for s, r in per_seed.items())
            + f"), pooled over all {n_points} points ρ = {pooled:.2f}")


def run(ctx: Context) -> Result:
    """E6: per-epoch layer sensitivity against robust accuracy, from the training logs of every seed,
    with the relative sensitivity of the final checkpoints as the scale control."""
    x = _eval_images(ctx)
    points = [p for seed in ctx.common_seeds() for p in log_points(ctx, seed, x)]
    per_seed = seed_correlations(points)
    pooled = spearman([p["sensitivity"] for p in points], [p["robust_acc"] for p in points])
    final = final_correlations(points)
    title, summary = _summary(per_seed, pooled, len(points))
    fig = _figure(points, f"E6: sensitivity vs robust accuracy over training\n{title}", final,
                  ", ".join(ctx.setting.sns_layers))
    rows = [{k: p[k] for k in ("group", "seed", "epoch", "sensitivity", "robust_acc", "activation_scale",
                               "relative_sensitivity")} for p in points]
    print(f"  {len(points)} (seed, model, epoch) points; Spearman rho per seed "
          + ", ".join(f"{s}: {r:.3f}" for s, r in per_seed.items()) + f"; pooled {pooled:.3f}")
    mean_rho = sum(per_seed.values()) / len(per_seed)
    trend = "lower sensitivity goes with higher robust accuracy" if mean_rho <= STRONG else \
        "lower sensitivity does not clearly go with higher robust accuracy"
    finding = (f"Across the training epochs of the four models, {trend}: "
               f"{summary} (sensitivity and PGD-20 accuracy as logged during training; raw sensitivity, since the "
               f"logs record no activation scale). {scale_verdict(final)}")
    return Result(finding, {"e6_sensitivity_vs_robustness.csv": rows, "e6_sensitivity_vs_robustness.png": fig})
