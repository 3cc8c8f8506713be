"""The checkers of notebook 00_setup_and_data: check_normalize, check_neuron_count."""
from __future__ import annotations

from typing import Callable

import torch

from .checking import Checked, _call, _close, _report, checker, tiny_model

__all__ = ["check_normalize", "check_neuron_count"]


@checker
def check_normalize(fn: Callable) -> Checked:
    """``fn(x, mean, std)`` must return ``(x - mean) / std`` per channel, for (N, C, H, W) ``x``."""
    from ..models import Normalize

    gen = torch.Generator().manual_seed(0)
    for mean, std in (((0.1307,), (0.3081,)), ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616))):
        x = torch.rand(4, len(mean), 5, 5, generator=gen)
        done, got = _call("normalize", fn, x, mean, std)
        if not done:
            return
        _close(f"normalize with {len(mean)} channel(s)", got, Normalize(mean, std)(x))


@checker
def check_neuron_count(fn: Callable) -> Checked:
    """``fn(model, layer_name, example)`` must return how many neurons the layer has."""
    from ..hooks import summary

    model, example = tiny_model(), torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))

    for row in summary(model, example):
        if row["type"] not in ("Conv2d", "Linear"):
            continue
        done, got = _call("neuron count", fn, model, row["name"], example)
        if not done:
            return
        _report(f"neuron count of {row['name']}", got == row["neurons"],
                      f"expected {row['neurons']}, got {got}")
