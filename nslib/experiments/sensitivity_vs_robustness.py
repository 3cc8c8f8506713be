"""E6: sensitivity against robustness over training. Does a model become more robust as
its layers become less sensitive?

Our choices: no new attack: the points are the per-epoch records the four checkpoints
carry in their training logs (mean layer sensitivity of conv3, conv4 and fc1, and
accuracy under PGD-20 at eps 0.3, both on 500 test images); one point per (model, epoch),
summarised by Spearman's rank correlation over all of them.
"""
from __future__ import annotations

import torch

from .context import MODELS, Context, Result, short_name


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


def run(ctx: Context) -> Result:
    """E6: per-epoch layer sensitivity against robust accuracy, from the checkpoints' training logs."""
    from ..plotting import plot_sensitivity_vs_robustness

    points = []
    for name in MODELS:
        ctx.model(name)  # records the checkpoint for the step's key
        for record in ctx.checkpoint_info(name).get("log", []):
            if "robust_acc" in record and record.get("sensitivity"):
                sens = sum(record["sensitivity"].values()) / len(record["sensitivity"])
                points.append({"name": "" if record["epoch"] % 10 else str(record["epoch"]),
                               "group": short_name(name), "epoch": record["epoch"], "sensitivity": sens,
                               "robust_acc": record["robust_acc"]})
    rho = spearman([p["sensitivity"] for p in points], [p["robust_acc"] for p in points])
    fig = plot_sensitivity_vs_robustness(points, xlabel="mean layer sensitivity of conv3, conv4, fc1",
                                         title=f"E6: sensitivity vs robust accuracy over training (Spearman ρ = {rho:.2f})")
    rows = [{k: p[k] for k in ("group", "epoch", "sensitivity", "robust_acc")} for p in points]
    print(f"  {len(points)} (epoch, model) points, Spearman rho = {rho:.3f}")
    finding = (f"Across the {len(points)} epochs of the four training runs, lower sensitivity goes with higher "
               f"robust accuracy: Spearman ρ = {rho:.2f} (sensitivity and PGD-20 accuracy as logged during training).")
    return Result(finding, {"e6_sensitivity_vs_robustness.csv": rows, "e6_sensitivity_vs_robustness.png": fig})
