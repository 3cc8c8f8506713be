"""E3: neuron stabilisation and deactivation (the paper's Finding 1).

On PGD inputs against the standard model, replace the outputs of the k most sensitive
neurons of a layer by their benign outputs ("stabilise") or by zero ("deactivate"), and
compare with as many random or least sensitive neurons: if the sensitive neurons are
where the attack acts, stabilising them should restore far more correct predictions.

Our choices: layers conv4 and fc1; k = 0, the powers of two below the layer's width, and
all neurons; random-k over 5 seeds; sigma and the ablation measured on the same ``n`` test
images (PGD-20 quick, PGD-40 full, ``context.pgd_inputs``). The finding reports each layer
at the smallest k covering a quarter of its neurons; Finding 1 "held" when top-k beats
random-k there by more than 10 points and two random-k standard deviations.
"""
from __future__ import annotations

from .context import Context, Result, pgd_inputs

#: The layers E3 ablates, and the two ways of ablating.
LAYERS, MODES = ("conv4", "fc1"), ("stabilise", "deactivate")


def _finding(rows: list[dict], widths: dict[str, int]) -> str:
    """Finding 1's verdict from the summary rows, at k = a quarter of each layer's ``widths``."""
    k_of = {l: min(r["k"] for r in rows if r["layer"] == l and r["k"] >= widths[l] / 4) for l in LAYERS}
    pick = {(r["layer"], r["mode"], r["selection"]): r for r in rows if r["k"] == k_of[r["layer"]]}
    parts, gaps = [], []
    for layer in LAYERS:
        t, rnd, b = (pick[(layer, "stabilise", s)] for s in ("top", "random", "bottom"))
        parts.append(f"{layer}, k = {k_of[layer]} of {widths[layer]}: top-k {t['accuracy_mean']:.1%}, "
                     f"random-k {rnd['accuracy_mean']:.1%} ± {rnd['accuracy_std']:.1%}, bottom-k {b['accuracy_mean']:.1%}")
        gaps.append((t["accuracy_mean"] - rnd["accuracy_mean"], 2 * rnd["accuracy_std"]))
        print(f"  stabilise {parts[-1]}")
    verdict = ("held" if all(g > max(0.1, s) for g, s in gaps) else
               "held only weakly" if all(g > s for g, s in gaps) else "did not hold")
    return (f"**Finding 1 {verdict}.** Stabilising the most sensitive neurons (their adversarial outputs "
            "replaced by their benign ones) restores far more correct predictions than stabilising as many "
            "random or least sensitive neurons (" + "; ".join(parts) + "; adversarial accuracy, random over "
            "5 seeds). Deactivating (zeroing) neurons is a blunter tool: see `e3_ablation.png`.")


def run(ctx: Context) -> Result:
    """E3: stabilise / deactivate the top-k, random-k and bottom-k neurons on PGD inputs."""
    from ..ablation import ablation_sweep, summarise_sweep
    from ..plotting import plot_ablation_grid
    from ..sensitivity import neuron_sensitivity

    model = ctx.model("mnist_standard")
    x, y = ctx.test_batch()
    x_adv = pgd_inputs(ctx, model, x, y)
    sigma = neuron_sensitivity(model, x, x_adv, list(LAYERS))
    widths = {layer: sigma[layer].numel() for layer in LAYERS}
    summaries = {}
    for layer in LAYERS:
        ks = sorted({0, widths[layer]} | {2 ** p for p in range(10) if 2 ** p < widths[layer]})
        for mode in MODES:
            summaries[layer, mode] = summarise_sweep(ablation_sweep(model, x, x_adv, y, sigma, layer, ks, mode=mode,
                                                                    random_seeds=range(5)))
    rows = [row for summary in summaries.values() for row in summary]
    fig = plot_ablation_grid(summaries, title=f"E3: ablating k neurons on PGD inputs (standard model, "
                                              f"{ctx.n} test images)")
    return Result(_finding(rows, widths), {"e3_ablation.csv": rows, "e3_ablation.png": fig})
