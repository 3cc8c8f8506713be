"""E3: neuron stabilisation and deactivation (the paper's Finding 1).

On PGD inputs against the standard model, replace the outputs of the k most sensitive
neurons of a layer by their benign outputs ("stabilise") or by zero ("deactivate"), and
compare with as many random or least sensitive neurons: if the sensitive neurons are
where the attack acts, stabilising them should restore far more correct predictions.

Our choices: the setting's ``ablation_layers`` (conv4 and fc1 on MNIST); k = 0, the powers of two below the layer's width, and
all neurons; random-k over 5 seeds. **Selection and evaluation are disjoint**: of the ``n``
test images (PGD-20 quick, PGD-40 full, ``context.pgd_inputs``), the first half (test
images ``0 .. n/2 - 1``) measures sigma and so chooses the top-k / bottom-k neurons, the
second half (``n/2 .. n - 1``) is where the ablation is evaluated
(:func:`nslib.ablation.selection_split`); every row of ``e3_ablation.csv`` says so in its
``selected_on`` and ``evaluated_on`` columns. The finding reports each layer at the smallest
k covering a quarter of its neurons; Finding 1 "held" when top-k beats random-k there by more
than 10 points and two random-k standard deviations (see :func:`verdict`).
"""
from __future__ import annotations

from typing import Sequence

from ..settings import DEFAULT
from .context import Context, Result, pgd_inputs

__all__ = ["LAYERS", "MODES", "SELECT_FRACTION", "split_labels", "quarter_k", "verdict", "comparison_text", "run"]

#: The layers E3 ablates in the default setting (a run's are ``ctx.setting.ablation_layers``), and
#: the two ways of ablating.
LAYERS, MODES = DEFAULT.ablation_layers, ("stabilise", "deactivate")
#: The fraction of the test images that selects the neurons; the rest evaluates the ablation.
SELECT_FRACTION = 0.5


def split_labels(n_select: int, n: int) -> dict[str, str]:
    """The CSV/figure labels of a selection split: ``{"selected_on": "test images 0-99", ...}``."""
    return {"selected_on": f"test images 0-{n_select - 1}", "evaluated_on": f"test images {n_select}-{n - 1}"}


def quarter_k(rows: Sequence[dict], layer: str, width: int) -> int:
    """The smallest swept k of ``layer`` covering a quarter of its ``width`` neurons."""
    return min(r["k"] for r in rows if r["layer"] == layer and r["k"] >= width / 4)


def _at(rows: Sequence[dict], layer: str, k: int, mode: str) -> dict[str, dict]:
    """``{selection: summary row}`` of one layer, mode and k; says which one is missing."""
    pick = {r["selection"]: r for r in rows if r.get("layer") == layer and r.get("mode") == mode and r["k"] == k}
    missing = {"top", "random", "bottom"} - set(pick)
    if missing:
        raise ValueError(f"no summary rows for selections {sorted(missing)} at layer {layer!r}, mode {mode!r}, "
                         f"k = {k}; pass summarise_sweep(...) rows of a sweep over all three selections.")
    return pick


def verdict(rows: Sequence[dict], at: dict[str, int], mode: str = "stabilise") -> str:
    """Finding 1's verdict from :func:`nslib.ablation.summarise_sweep` rows, read at ``{layer: k}``.

    ``"held"`` when at every layer top-k's adversarial accuracy beats random-k's mean by more
    than 10 points and by more than two random-k standard deviations; ``"held only weakly"``
    when it beats it by more than two standard deviations only; else ``"did not hold"``.

    Example:
        >>> rows = [{"layer": "fc1", "mode": "stabilise", "selection": s, "k": 64, "accuracy_mean": a,
        ...          "accuracy_std": 0.05} for s, a in (("top", 0.6), ("random", 0.2), ("bottom", 0.0))]
        >>> verdict(rows, {"fc1": 64})
        'held'
    """
    gaps = []
    for layer, k in at.items():
        pick = _at(rows, layer, k, mode)
        top, rnd = pick["top"]["accuracy_mean"], pick["random"]["accuracy_mean"]
        gaps.append((top - rnd, 2 * pick["random"]["accuracy_std"]))
    return ("held" if all(g > max(0.1, s) for g, s in gaps) else
            "held only weakly" if all(g > s for g, s in gaps) else "did not hold")


def comparison_text(rows: Sequence[dict], layer: str, k: int, width: int, mode: str = "stabilise") -> str:
    """One layer's numbers at ``k``: ``"fc1, k = 64 of 200: top-k 68.0%, random-k 21.4% ± 6.7%, ..."``."""
    t, rnd, b = (_at(rows, layer, k, mode)[s] for s in ("top", "random", "bottom"))
    return (f"{layer}, k = {k} of {width}: top-k {t['accuracy_mean']:.1%}, random-k {rnd['accuracy_mean']:.1%} "
            f"± {rnd['accuracy_std']:.1%}, bottom-k {b['accuracy_mean']:.1%}")


def _finding(rows: list[dict], widths: dict[str, int], split: dict[str, str]) -> str:
    """Finding 1's verdict from the summary rows, at k = a quarter of each layer's ``widths`` (layer -> neurons)."""
    k_of = {layer: quarter_k(rows, layer, widths[layer]) for layer in widths}
    parts = [comparison_text(rows, layer, k_of[layer], widths[layer]) for layer in widths]
    for part in parts:
        print(f"  stabilise {part}")
    outcome = verdict(rows, k_of)
    restores = {"held": "restores far more", "held only weakly": "restores more, by a small margin,"}.get(
        outcome, "does not restore clearly more")
    return (f"**Finding 1 {outcome}.** Stabilising the most sensitive neurons (their adversarial outputs "
            f"replaced by their benign ones) {restores} correct predictions than stabilising as many random or "
            "least sensitive neurons (" + "; ".join(parts) + "; adversarial accuracy, random over 5 seeds). "
            f"The neurons were chosen on {split['selected_on']} and the ablation evaluated on the disjoint "
            f"{split['evaluated_on']}. Deactivating (zeroing) neurons is a blunter tool: see "
            "`e3_ablation.png`.")


def run(ctx: Context) -> Result:
    """E3: stabilise / deactivate the top-k, random-k and bottom-k neurons on PGD inputs,
    choosing the neurons on the first half of the test images and evaluating on the second."""
    from ..ablation import ablation_sweep, selection_split, summarise_sweep
    from ..plotting import plot_ablation_grid
    from ..sensitivity import neuron_sensitivity

    layers = list(ctx.setting.ablation_layers)
    model = ctx.model(ctx.model_name("standard"))
    x, y = ctx.test_batch()
    x_adv = pgd_inputs(ctx, model, x, y)
    n_select = max(1, int(len(x) * SELECT_FRACTION))
    select, evaluate = selection_split(x, x_adv, y, n_select=n_select)  # (benign, adversarial, labels) each
    split = split_labels(n_select, len(x))
    sigma = neuron_sensitivity(model, select[0], select[1], layers)
    widths = {layer: sigma[layer].numel() for layer in layers}
    summaries = {}
    for layer in layers:
        ks = sorted({0, widths[layer]} | {2 ** p for p in range(10) if 2 ** p < widths[layer]})
        for mode in MODES:
            records = ablation_sweep(model, *evaluate, sigma, layer, ks, mode=mode, random_seeds=range(5))
            summaries[layer, mode] = [{**row, **split} for row in summarise_sweep(records)]
    rows = [row for summary in summaries.values() for row in summary]
    fig = plot_ablation_grid(summaries, title=f"E3: ablating k neurons on PGD inputs (standard model)\nneurons "
                                              f"chosen on {split['selected_on']}, evaluated on {split['evaluated_on']}")
    return Result(_finding(rows, widths, split), {"e3_ablation.csv": rows, "e3_ablation.png": fig})
