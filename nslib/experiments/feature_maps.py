"""E4: what the most sensitive neurons see. The feature maps of the standard model's four
most sensitive neurons of the setting's ``feature_layer`` (conv4 on MNIST) on a benign test
image and on its adversarial twin.

Our choices: conv4 on MNIST (the last conv layer, whose maps still have a spatial layout;
``nslib.settings`` names the layer of each setting); sigma on
the first ``n`` test images under white-box PGD (``context.pgd_inputs``); top-4 by sigma
(``nslib.sensitivity.sensitive_neurons``); the image shown is the first one that is
classified correctly and fooled by the attack (image 0 when none is).
"""
from __future__ import annotations

import torch

from .context import Context, Result, pgd_inputs


def run(ctx: Context) -> Result:
    """E4: the most sensitive neurons' feature maps (``feature_layer``) on a benign vs an adversarial image."""
    from ..hooks import activations
    from ..plotting import plot_feature_maps
    from ..sensitivity import neuron_sensitivity, sensitive_neurons

    layer = ctx.setting.feature_layer
    model = ctx.model(ctx.model_name("standard"))
    x, y = ctx.test_batch()
    x_adv = pgd_inputs(ctx, model, x, y)
    sigma = neuron_sensitivity(model, x, x_adv, [layer])
    top = sensitive_neurons(sigma, k=4)[layer].tolist()
    with torch.no_grad():
        fooled = ((model(x).argmax(1) == y) & (model(x_adv).argmax(1) != y)).nonzero().flatten()
    j = int(fooled[0]) if len(fooled) else 0
    maps = activations(model, x[j:j + 1], [layer])[layer][0]
    maps_adv = activations(model, x_adv[j:j + 1], [layer])[layer][0]
    fig = plot_feature_maps(x[j].cpu(), x_adv[j].cpu(), maps.cpu(), maps_adv.cpu(), top, sigma[layer], layer)
    rows = [{"layer": layer, "neuron": i, "rank": r + 1, "sigma": float(sigma[layer][i]),
             "change_on_this_image": float((maps[i] - maps_adv[i]).abs().mean())} for r, i in enumerate(top)]
    finding = (f"The four most sensitive neurons of {layer} are channels {top} (σ = "
               + ", ".join(f"{r['sigma']:.2f}" for r in rows) + f"); on test image {j} their maps change "
               "visibly between the benign and the adversarial input (`e4_feature_maps.png`).")
    return Result(finding, {"e4_sensitive_neurons.csv": rows, "e4_feature_maps.png": fig})
