"""The checkers of notebook 00_setup_and_data: check_normalize, check_neuron_count."""
from __future__ import annotations

from typing import Callable

import torch

from .checking import Checked, _call, _close, _report, checker, tiny_model

__all__ = ["check_normalize", "check_neuron_count"]


@checker(checks=3, forbid=("nslib.models.Normalize",), allow=("nslib.hooks.activations",))
def check_normalize(fn: Callable) -> Checked:
    """``fn(x, mean, std)`` must return ``(x - mean) / std`` per channel, for (N, C, H, W) ``x``."""
    from ..models import Normalize

    gen = torch.Generator().manual_seed(0)
    hand = torch.tensor([[[[0.5, 1.0]], [[0.0, 0.25]]]])  # (1, 2, 1, 2): one image, two channels of 1x2 pixels
    cases = [("a hand-made 2-channel image", hand, (0.5, 0.25), (0.5, 0.25)),
             ("1 channel", torch.rand(4, 1, 5, 5, generator=gen), (0.1307,), (0.3081,)),
             ("3 channels", torch.rand(4, 3, 5, 5, generator=gen), (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616))]
    for name, x, mean, std in cases:
        done, got = _call("normalize", fn, x.clone(), mean, std)
        if not done:
            return
        _close(f"normalize with {name}", got, Normalize(mean, std)(x),
               inputs=f"x = {x.tolist()}, mean = {mean}, std = {std}" if x.numel() <= 8 else
               f"x of shape {tuple(x.shape)}, mean = {mean}, std = {std}",
               hint="channel c of every image is shifted by mean[c] and divided by std[c]; channels lie "
                    "along dim 1 of (N, C, H, W)")


@checker(checks=7, forbid=("nslib.hooks.summary",), allow=("nslib.hooks.activations",))
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
                f"expected {row['neurons']}, got {got} | input: one image, whose {row['name']} output has "
                f"shape {(1, *row['shape'])} | hint: a neuron is one channel of a conv layer (all its "
                "positions together) or one unit of a linear layer")
