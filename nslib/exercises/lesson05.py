"""The checkers of notebook 05_your_own_model: check_relative_sensitivity, check_top_k_overlap."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .checking import Checked, _call, _report, checker

__all__ = ["check_relative_sensitivity", "check_top_k_overlap"]


def _own_model() -> nn.Module:
    """A small nn.Module that nslib did not build: conv -> ReLU -> flatten -> linear (layers "0", "3")."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()


@checker(checks=3, forbid=("nslib.sensitivity.relative_sensitivity", "nslib.sensitivity.activation_scale"),
         allow=("nslib.sensitivity.neuron_sensitivity", "nslib.hooks.activations"))
def check_relative_sensitivity(fn: Callable) -> Checked:
    """``fn(model, benign, adversarial, layer)`` must return, as a float,
    ``mean |F_l(x) - F_l(x')| / mean |F_l(x)|`` (means over images, neurons and positions):
    the layer sensitivity divided by the layer's typical benign activation."""
    import copy

    model = _own_model()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 8, 8, generator=gen)
    x_adv = (x + 0.1 * (2 * torch.rand(x.shape, generator=gen) - 1)).clamp(0, 1)
    with torch.no_grad():  # the reference, straight from the modules (no hooks)
        outputs = {"0": (model[0](x), model[0](x_adv)), "3": (model(x), model(x_adv))}
    got_last = None
    for layer, (benign, adversarial) in outputs.items():
        expected = ((benign - adversarial).abs().mean() / benign.abs().mean()).item()
        done, got = _call("relative sensitivity", fn, model, x, x_adv, layer)
        if not done:
            return
        if not isinstance(got, (float, int, torch.Tensor)) or (isinstance(got, torch.Tensor) and got.numel() != 1):
            _report(f"relative sensitivity of layer {layer!r}", False, f"expected a float, got {got!r:.80}")
            return
        got_last = float(got)
        ok = abs(got_last - expected) <= 1e-5 * max(1.0, expected)
        mistake = "" if ok else _relative_mistake(got_last, benign, adversarial)
        change, scale = (benign - adversarial).abs().mean().item(), benign.abs().mean().item()
        _report(f"relative sensitivity of layer {layer!r}", ok,
                f"expected {expected:.5f}, got {got_last:.5f}{mistake} | inputs: on this layer mean |F(x) - F(x')| = "
                f"{change:.5f} and mean |F(x)| = {scale:.5f} over {benign.numel()} values (6 images)")
    scaled = copy.deepcopy(model)  # the same network with the last layer's output scaled by 10
    with torch.no_grad():
        scaled[3].weight.mul_(10)
        scaled[3].bias.mul_(10)
    done, got = _call("relative sensitivity", fn, scaled, x, x_adv, "3")
    if done:
        _report("unchanged when the layer's output is scaled by 10",
                abs(float(got) - got_last) <= 1e-5 * max(1.0, got_last),
                f"got {float(got):.5f} instead of {got_last:.5f} | hint: scaling F by 10 scales both means by 10",
                core=False)


def _relative_mistake(got: float, benign: torch.Tensor, adversarial: torch.Tensor) -> str:
    """The likely slip behind a wrong relative sensitivity (outputs ``(N, ...)`` of one layer)."""
    change = (benign - adversarial).abs()

    def near(value) -> bool:
        return abs(got - float(value)) <= 1e-5 * max(1.0, abs(float(value)))

    if near(change.mean() / adversarial.abs().mean()):
        return ": the denominator must use the benign outputs F(x), not the adversarial ones"
    if benign.mean() != 0 and near(change.mean() / benign.mean()):
        return ": take the absolute value in the denominator, mean |F(x)|, not mean F(x)"
    if near(change.mean()):
        return ": that is the layer sensitivity alone; divide by mean |F(x)|"
    return ""


@checker(checks=4)
def check_top_k_overlap(fn: Callable) -> Checked:
    """``fn(sigma_a, sigma_b, k)`` must return the fraction (a float in [0, 1]) of the ``k``
    most sensitive neurons of ``sigma_a`` that are also among the ``k`` most sensitive of ``sigma_b``."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(50, generator=gen), torch.rand(50, generator=gen)
    expected_random = len(set(a.topk(10).indices.tolist()) & set(b.topk(10).indices.tolist())) / 10
    cases = [("identical", a, a.clone(), 5, 1.0, False),
             ("reversed", torch.arange(10.0), -torch.arange(10.0), 3, 0.0, False),
             ("hand case", torch.tensor([0.9, 0.8, 0.1, 0.2, 0.7]), torch.tensor([0.9, 0.1, 0.8, 0.2, 0.05]), 2, 0.5,
              True),
             ("random", a, b, 10, expected_random, True)]
    for name, sigma_a, sigma_b, k, expected, core in cases:
        done, got = _call("top-k overlap", fn, sigma_a.clone(), sigma_b.clone(), k)
        if not done:
            return
        value = float(got)
        n = sigma_a.numel()
        hint = (f": divide the number of shared neurons by k = {k}, not by the {n} neurons"
                if abs(value * n / k - expected) < 1e-9 and abs(value - expected) > 1e-9 else
                ": a fraction in [0, 1] is expected, not a count" if value > 1 else "")
        shown = (f"sigma_a = {sigma_a.tolist()}, sigma_b = {sigma_b.tolist()}" if n <= 10 else
                 f"{n} neurons; the top-{k} of sigma_a are {sorted(sigma_a.topk(k).indices.tolist())}, of sigma_b "
                 f"{sorted(sigma_b.topk(k).indices.tolist())}")
        _report(f"top-{k} overlap, {name}", abs(value - expected) < 1e-9,
                f"expected {expected:.2f}, got {value:.2f}{hint} | inputs: {shown}, k = {k}", core=core)
