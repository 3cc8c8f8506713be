"""The checkers of notebook 02_neuron_sensitivity: check_sensitivity_from_activations,
check_top_k_neurons, check_sensitivity_ratio."""
from __future__ import annotations

from typing import Callable

import torch

from .checking import Checked, _call, _close, _report, checker

__all__ = ["check_sensitivity_from_activations", "check_top_k_neurons", "check_sensitivity_ratio"]


@checker(checks=3, forbid=("nslib.sensitivity",))
def check_sensitivity_from_activations(fn: Callable) -> Checked:
    """``fn(benign_act, adv_act)`` must return ``sigma_l`` of shape ``(neurons,)``:
    ``(1/N) sum_j (1/dim) ||F_l^i(x_j) - F_l^i(x'_j)||_1`` for conv ``(N, C, H, W)`` and
    linear ``(N, units)`` activations."""
    from ..sensitivity import neuron_distance

    # A case you can check on paper: 2 pairs, 2 channels of 2x2 positions.
    benign = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]],
                           [[[1.0, 1.0], [1.0, 1.0]], [[2.0, 2.0], [2.0, 2.0]]]])
    adv = torch.tensor([[[[1.0, 0.0], [3.0, 8.0]], [[1.0, -1.0], [1.0, -1.0]]],
                        [[[1.0, 1.0], [1.0, 1.0]], [[2.0, 2.0], [2.0, 6.0]]]])
    # channel 0: pair 1 (0 + 2 + 0 + 4) / 4 = 1.5, pair 2: 0  -> 0.75
    # channel 1: pair 1 (1 + 1 + 1 + 1) / 4 = 1.0, pair 2: 1  -> 1.0
    gen = torch.Generator().manual_seed(0)
    conv_a, conv_b = torch.randn(6, 4, 5, 5, generator=gen), torch.randn(6, 4, 5, 5, generator=gen)
    lin_a, lin_b = torch.randn(6, 7, generator=gen), torch.randn(6, 7, generator=gen)
    cases = [("hand-made 2x2 case", benign, adv, torch.tensor([0.75, 1.0])),
             ("conv activations (6, 4, 5, 5)", conv_a, conv_b, neuron_distance(conv_a, conv_b).mean(0)),
             ("linear activations (6, 7)", lin_a, lin_b, neuron_distance(lin_a, lin_b).mean(0))]
    for name, a, b, expected in cases:
        done, got = _call("sensitivity from activations", fn, a.clone(), b.clone())
        if not done:
            return
        _close(f"sensitivity on the {name}", got, expected, atol=1e-5,
               inputs=f"benign_act = {a.tolist()}, adv_act = {b.tolist()}" if a.numel() <= 16 else
               f"benign_act and adv_act of shape {tuple(a.shape)}",
               hint="for each neuron (dim 1), average |benign - adversarial| over its positions, then over the "
                    "pairs (dim 0): one number per neuron")


@checker(checks=4, forbid=("nslib.sensitivity", "nslib.ablation"))
def check_top_k_neurons(fn: Callable) -> Checked:
    """``fn(sigma, k)`` must return the indices of the ``k`` largest values, largest first,
    ties to the lower index (as ``nslib.sensitivity.sensitive_neurons``)."""
    from ..sensitivity import sensitive_neurons

    gen = torch.Generator().manual_seed(0)
    cases = [(torch.tensor([0.1, 0.9, 0.5, 0.9, 0.2]), 2), (torch.tensor([0.3, 0.7, 0.7, 0.7, 0.1]), 3),
             (torch.rand(64, generator=gen), 6), (torch.rand(10, generator=gen), 10)]
    for sigma, k in cases:
        done, got = _call("top-k neurons", fn, sigma.clone(), k)
        if not done:
            return
        expected = sensitive_neurons({"layer": sigma}, k=k)["layer"]
        got_list = got.tolist() if hasattr(got, "tolist") else list(got) if isinstance(got, tuple) else got
        shown = [round(v, 3) for v in sigma.tolist()] if sigma.numel() <= 5 else f"{sigma.numel()} values"
        mistake = _top_k_mistake(sigma, k, got_list, expected.tolist())
        _report(f"top-{k} of {shown}", got_list == expected.tolist(),
                f"expected {expected.tolist()}, got {got_list}: {mistake}")
        if got_list == expected.tolist() and not (isinstance(got, torch.Tensor) and got.dtype == torch.long):
            _report(f"top-{k} is a LongTensor", False, f"got {type(got).__name__} "
                    f"{getattr(got, 'dtype', '')}: return the indices as a LongTensor (torch.long)")
            return


def _top_k_mistake(sigma: torch.Tensor, k: int, got, expected: list[int]) -> str:
    """What a wrong top-k answer most likely got wrong (``got``: a list, ideally of ints)."""
    from ..sensitivity import rank_neurons

    if not isinstance(got, list) or not all(isinstance(v, int) for v in got):
        return "return the neurons' indices (integers), not their sensitivities"
    if len(got) != k:
        return f"{len(got)} indices instead of k = {k}: keep only the first k"
    if not all(0 <= v < sigma.numel() for v in got):
        return f"indices outside 0..{sigma.numel() - 1}"
    if got == rank_neurons(sigma, largest=False).tolist()[:k]:
        return "these are the k *least* sensitive neurons: sort in descending order"
    values = sigma[got].tolist()
    if values == sorted(values, reverse=True) and sorted(values) == sorted(sigma[expected].tolist()):
        return "equal sensitivities must keep the lower index first: use a stable sort"
    if sorted(got) == sorted(expected):
        return "the right neurons in the wrong order: the most sensitive first"
    return "not the k largest values"


@checker(checks=2)
def check_sensitivity_ratio(fn: Callable) -> Checked:
    """``fn(sigma_a, sigma_b)`` must return ``{layer: mean(sigma_a[layer]) / mean(sigma_b[layer])}``."""
    gen = torch.Generator().manual_seed(0)
    sigma_a = {"conv1": torch.tensor([1.0, 2.0, 3.0]), "fc1": torch.rand(20, generator=gen)}
    sigma_b = {"conv1": torch.tensor([4.0, 4.0, 4.0]), "fc1": torch.rand(20, generator=gen) + 0.5}
    done, got = _call("sensitivity ratio", fn, sigma_a, sigma_b)
    if not done:
        return
    if not isinstance(got, dict) or set(got) != set(sigma_a):
        keys = sorted(got) if isinstance(got, dict) else type(got).__name__
        _report("sensitivity ratio", False, f"expected a dict with keys {sorted(sigma_a)}, got {keys}")
        return
    for layer in sigma_a:
        mean_a, mean_b = sigma_a[layer].double().mean().item(), sigma_b[layer].double().mean().item()
        expected, value = mean_a / mean_b, float(got[layer])
        hint = (": inverted, divide a's layer sensitivity by b's" if abs(value - mean_b / mean_a) < 1e-5 else
                ": the ratio of the layer means, not the mean of per-neuron ratios"
                if abs(value - (sigma_a[layer] / sigma_b[layer]).double().mean().item()) < 1e-5 else "")
        shown = (f"sigma_a = {sigma_a[layer].tolist()}, sigma_b = {sigma_b[layer].tolist()}"
                 if sigma_a[layer].numel() <= 5 else
                 f"{sigma_a[layer].numel()} neurons, whose sensitivities average {mean_a:.4f} in a and "
                 f"{mean_b:.4f} in b")
        _report(f"sensitivity ratio of {layer}", abs(value - expected) < 1e-5,
                f"expected {expected:.4f}, got {value:.4f}{hint} | inputs: {shown} | hint: a layer's sensitivity is "
                "the mean over its neurons; the ratio divides a's by b's")
