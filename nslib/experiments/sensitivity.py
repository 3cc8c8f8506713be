"""E1 (layer sensitivity) and E2 (per-neuron sensitivity distributions) of the four models.

E1: how much each layer's output changes between a benign input and its adversarial twin
(``nslib.sensitivity.layer_sensitivity``, the mean over neurons of sigma), model by model;
the paper's Finding 2 is that robust models are less sensitive than the standard one.
E2: the distribution of sigma over the neurons of a layer: a long tail of a few very
sensitive neurons.

Our choices: the first ``n`` mnist5k test images; white-box PGD at eps 0.3 against each
model itself (PGD-20 quick, PGD-40 full, step 2.5 eps / steps, ``context.pgd_inputs``);
all seven layers; Finding 2 "held" when each robust model is less sensitive than the
standard one in all but at most one layer; E2 shows conv2, conv4, fc1 and fc2 sorted.
"""
from __future__ import annotations

from .context import MODELS, Context, Result, pgd_inputs, short_name

#: The layers of ``smallcnn`` measured by E1 and E2.
LAYERS = ("conv1", "conv2", "conv3", "conv4", "fc1", "fc2", "fc3")


def _finding(layer: dict[str, dict[str, float]]) -> str:
    """Finding 2's verdict from the layer sensitivities ``{model: {layer: value}}``."""
    lower = {m: sum(layer[m][l] < layer["standard"][l] for l in LAYERS) for m in layer if m != "standard"}
    held = all(v >= len(LAYERS) - 1 for v in lower.values())
    return ("**Finding 2 " + ("held" if held else "held only in part") + ".** Layer sensitivity under "
            "white-box PGD (ε = 0.3) is lower than the standard model's in "
            + ", ".join(f"{n} of {len(LAYERS)} layers for {m}" for m, n in lower.items())
            + f" (ratio to standard at fc1: "
            + ", ".join(f"{m} {layer[m]['fc1'] / layer['standard']['fc1']:.2f}" for m in lower)
            + "). E2 shows each layer's long tail: a few neurons change far more than the rest.")


def run(ctx: Context) -> Result:
    """E1 (layer sensitivity) and E2 (per-neuron distributions) of the four models."""
    from ..plotting import plot_layer_sensitivity, plot_sensitivity_distribution
    from ..sensitivity import layer_sensitivity, neuron_sensitivity

    x, y = ctx.test_batch()
    sigma = {}
    for name in MODELS:
        model = ctx.model(name)
        sigma[short_name(name)] = neuron_sensitivity(model, x, pgd_inputs(ctx, model, x, y), list(LAYERS))
    layer = {m: layer_sensitivity(s) for m, s in sigma.items()}
    rows = [{"model": m, "layer": l, "sensitivity": layer[m][l], "ratio_to_standard": layer[m][l] / layer["standard"][l]}
            for m in layer for l in LAYERS]
    neuron_rows = [{"model": m, "layer": l, "neuron": i, "sigma": float(v)}
                   for m in sigma for l in LAYERS for i, v in enumerate(sigma[m][l].tolist())]
    for m in layer:
        print(f"  {m:8s} " + " ".join(f"{l}={layer[m][l]:.3f}" for l in LAYERS))
    return Result(_finding(layer), {
        "e1_layer_sensitivity.csv": rows,
        "e1_layer_sensitivity.png": plot_layer_sensitivity(layer),
        "e2_neuron_sensitivity.csv": neuron_rows,
        "e2_sensitivity_distribution.png": plot_sensitivity_distribution(sigma, ["conv2", "conv4", "fc1", "fc2"],
                                                                         kind="sorted")})
