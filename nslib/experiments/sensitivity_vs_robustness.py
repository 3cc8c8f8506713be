"""E6: sensitivity against robustness over training. Does a model become more robust as
its layers become less sensitive?

Our choices: no new attack: the points are the per-epoch records the four checkpoints
carry in their training logs (mean layer sensitivity of conv3, conv4 and fc1, and
accuracy under PGD-20 at eps 0.3, both on 500 test images); one point per (training seed,
model, epoch), for every seed of ``ctx.common_seeds()``; Spearman's rank correlation over all
models' epochs of one seed, reported as the mean ± std over seeds, and the pooled one over
every point.
"""
from __future__ import annotations

import torch

from .context import MODELS, Context, Result, mean_std, short_name


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


def log_points(ctx: Context, seed: int) -> list[dict]:
    """One point per logged epoch of each model's training ``seed``: ``{"name" (the epoch's
    label, every 10th), "group" (the model), "seed", "epoch", "sensitivity", "robust_acc"}``."""
    points = []
    for name in MODELS:
        ctx.model(name, seed)  # records the checkpoint for the step's key
        for record in ctx.checkpoint_info(name, seed).get("log", []):
            if "robust_acc" in record and record.get("sensitivity"):
                sens = sum(record["sensitivity"].values()) / len(record["sensitivity"])
                points.append({"name": "" if record["epoch"] % 10 else str(record["epoch"]),
                               "group": short_name(name), "seed": seed, "epoch": record["epoch"],
                               "sensitivity": sens, "robust_acc": record["robust_acc"]})
    return points


def seed_correlations(points: list[dict]) -> dict[int, float]:
    """Spearman's rho between sensitivity and robust accuracy over each seed's points: ``{seed: rho}``."""
    seeds = dict.fromkeys(p["seed"] for p in points)
    return {s: spearman([p["sensitivity"] for p in points if p["seed"] == s],
                        [p["robust_acc"] for p in points if p["seed"] == s]) for s in seeds}


def _figure(points: list[dict], title: str):
    """The scatter: one line per (model, seed), a model's seeds in one colour, epochs labelled on seed 0."""
    from ..plotting import plot_sensitivity_vs_robustness

    fig = None
    for seed in dict.fromkeys(p["seed"] for p in points):
        mine = [p if p["seed"] == 0 else {**p, "name": ""} for p in points if p["seed"] == seed]
        fig = plot_sensitivity_vs_robustness(mine, ax=None if fig is None else fig.axes[0],
                                             xlabel="mean layer sensitivity of conv3, conv4, fc1", title=title)
    ax = fig.axes[0]
    legend = dict(zip(*reversed(ax.get_legend_handles_labels())))  # one entry per model, not per seed
    ax.legend(legend.values(), legend.keys())
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
    """E6: per-epoch layer sensitivity against robust accuracy, from the training logs of every seed."""
    points = [p for seed in ctx.common_seeds() for p in log_points(ctx, seed)]
    per_seed = seed_correlations(points)
    pooled = spearman([p["sensitivity"] for p in points], [p["robust_acc"] for p in points])
    title, summary = _summary(per_seed, pooled, len(points))
    fig = _figure(points, f"E6: sensitivity vs robust accuracy over training\n{title}")
    rows = [{k: p[k] for k in ("group", "seed", "epoch", "sensitivity", "robust_acc")} for p in points]
    print(f"  {len(points)} (seed, model, epoch) points; Spearman rho per seed "
          + ", ".join(f"{s}: {r:.3f}" for s, r in per_seed.items()) + f"; pooled {pooled:.3f}")
    finding = (f"Across the training epochs of the four models, lower sensitivity goes with higher robust accuracy: "
               f"{summary} (sensitivity and PGD-20 accuracy as logged during training).")
    return Result(finding, {"e6_sensitivity_vs_robustness.csv": rows, "e6_sensitivity_vs_robustness.png": fig})
