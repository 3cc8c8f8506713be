"""E1 (layer sensitivity) and E2 (per-neuron sensitivity distributions) of the four models.

E1: how much each layer's output changes between a benign input and its adversarial twin
(``nslib.sensitivity.layer_sensitivity``, the mean over neurons of sigma), model by model
and training seed by training seed (``ctx.common_seeds()``), reported as the mean and standard
deviation over the seeds; the paper's Finding 2 is that robust models are less sensitive
than the standard one. E2: the distribution of sigma over the neurons of a layer: a long
tail of a few very sensitive neurons; shown for training seed 0 only.

Our choices: the first ``n`` mnist5k test images; white-box PGD at eps 0.3 against each
model itself, every seed attacked on its own (PGD-20 quick, PGD-40 full, step 2.5 eps /
steps, ``context.pgd_inputs``), so each seed costs what seed 0 costs; all seven layers;
Finding 2 "held" when each robust model's mean over seeds is below the standard one's
in all but at most one layer; E2 shows conv2, conv4, fc1 and fc2 sorted.
"""
from __future__ import annotations

import torch

from .context import MODELS, Context, Result, mean_std, pgd_inputs, short_name

#: The layers of ``smallcnn`` measured by E1 and E2.
LAYERS = ("conv1", "conv2", "conv3", "conv4", "fc1", "fc2", "fc3")


def _finding(layer: dict[str, dict[str, float]], seeds: int) -> str:
    """Finding 2's verdict from the layer sensitivities ``{model: {layer: mean over seeds}}``."""
    lower = {m: sum(layer[m][l] < layer["standard"][l] for l in LAYERS) for m in layer if m != "standard"}
    held = all(v >= len(LAYERS) - 1 for v in lower.values())
    spread = (f"mean over {seeds} training seeds per model; the standard deviations are the table's "
              "`sensitivity_std` and the figure's error bars" if seeds > 1 else
              "one training seed per model, so the spread between training runs is unmeasured")
    return ("**Finding 2 " + ("held" if held else "held only in part") + ".** Layer sensitivity under "
            "white-box PGD (ε = 0.3) is lower than the standard model's in "
            + ", ".join(f"{n} of {len(LAYERS)} layers for {m}" for m, n in lower.items())
            + f" (ratio to standard at fc1: "
            + ", ".join(f"{m} {layer[m]['fc1'] / layer['standard']['fc1']:.2f}" for m in lower)
            + f"; {spread}). E2 shows each layer's long tail (training seed 0): a few neurons change far more "
              "than the rest.")


def seed_sensitivity(ctx: Context, x: torch.Tensor, y: torch.Tensor, seed: int) -> dict[str, dict[str, torch.Tensor]]:
    """``sigma_l^i`` of every model's training ``seed`` on its own white-box PGD inputs.

    Shape: ``x`` ``(N, 1, 28, 28)`` in [0, 1], ``y`` ``(N,)`` -> ``{model: {layer: sigma (neurons,)}}``.
    """
    from ..sensitivity import neuron_sensitivity

    sigma = {}
    for name in MODELS:
        model = ctx.model(name, seed)
        sigma[short_name(name)] = neuron_sensitivity(model, x, pgd_inputs(ctx, model, x, y), list(LAYERS))
    return sigma


def summarise_seeds(per_seed: dict[int, dict[str, dict[str, float]]]) -> list[dict]:
    """The E1 table: per (model, layer), the mean and std over seeds of the layer sensitivity.

    Args:
        per_seed (dict): ``{seed: {model: {layer: layer sensitivity}}}``, every seed with the
            same models and layers; the models must include ``"standard"``.

    Returns:
        list of dict: ``{"model", "layer", "sensitivity" (the mean), "sensitivity_std",
        "seeds", "ratio_to_standard" (of the means)}``, models then layers in input order.
    """
    first = next(iter(per_seed.values()))
    stats = {m: {l: mean_std([per_seed[s][m][l] for s in per_seed]) for l in first[m]} for m in first}
    return [{"model": m, "layer": l, "sensitivity": mean, "sensitivity_std": std, "seeds": len(per_seed),
             "ratio_to_standard": mean / stats["standard"][l][0]} for m in stats for l, (mean, std) in stats[m].items()]


def run(ctx: Context) -> Result:
    """E1 (layer sensitivity, mean ± std over training seeds) and E2 (seed 0's per-neuron distributions)."""
    from ..plotting import plot_layer_sensitivity, plot_sensitivity_distribution
    from ..sensitivity import layer_sensitivity

    x, y = ctx.test_batch()
    seeds = ctx.common_seeds()
    sigma = {seed: seed_sensitivity(ctx, x, y, seed) for seed in seeds}
    rows = summarise_seeds({seed: {m: layer_sensitivity(s) for m, s in per_model.items()}
                            for seed, per_model in sigma.items()})
    mean, std = {}, {}
    for r in rows:
        mean.setdefault(r["model"], {})[r["layer"]] = r["sensitivity"]
        std.setdefault(r["model"], {})[r["layer"]] = r["sensitivity_std"]
    neuron_rows = [{"model": m, "layer": l, "neuron": i, "sigma": float(v)}
                   for m in sigma[0] for l in LAYERS for i, v in enumerate(sigma[0][m][l].tolist())]
    for m in mean:
        print(f"  {m:8s} " + " ".join(f"{l}={mean[m][l]:.3f}" + (f"±{std[m][l]:.3f}" if len(seeds) > 1 else "")
                                      for l in LAYERS))
    title = f"Layer sensitivity per model (E1; mean ± std over {len(seeds)} training seeds)" if len(seeds) > 1 else \
        "Layer sensitivity per model (E1; one training seed)"
    return Result(_finding(mean, len(seeds)), {
        "e1_layer_sensitivity.csv": rows,
        "e1_layer_sensitivity.png": plot_layer_sensitivity(mean, errors=std if len(seeds) > 1 else None,
                                                           title=title),
        "e2_neuron_sensitivity.csv": neuron_rows,
        "e2_sensitivity_distribution.png": plot_sensitivity_distribution(sigma[0], ["conv2", "conv4", "fc1", "fc2"],
                                                                         kind="sorted")})
