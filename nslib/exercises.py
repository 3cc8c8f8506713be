"""Checkers for the notebooks' exercises: ``check_<what>(your_function)`` prints
``[PASS] <what>`` or ``[FAIL] <what>: expected ..., got ...`` (and returns nothing, so a
notebook cell shows only those lines).

A function that still raises ``NotImplementedError`` (the exercise stub) is reported as
``[FAIL] ... not implemented yet``; any other error is raised, so you see its traceback.
One section per notebook. Every checker builds its own small inputs (and model), so an
exercise cell runs on its own after the notebook's setup cell; that is how
``tests/test_exercises.py`` runs each checker on the stub and on the solution.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ["check_normalize", "check_neuron_count", "check_fgsm", "check_success_rate"]


def _report(name: str, ok: bool, detail: str = "") -> bool:
    print(f"[PASS] {name}" if ok else f"[FAIL] {name}: {detail}")
    return ok


def _call(name: str, fn: Callable, *args):
    """Call the student's function; ``(True, result)`` or ``(False, None)`` for a stub."""
    try:
        return True, fn(*args)
    except NotImplementedError:
        _report(name, False, "not implemented yet (the function still raises NotImplementedError)")
        return False, None


def _close(name: str, got, expected: torch.Tensor, atol: float = 1e-6) -> bool:
    if not isinstance(got, torch.Tensor):
        return _report(name, False, f"expected a tensor, got {type(got).__name__}")
    if got.shape != expected.shape:
        return _report(name, False, f"expected shape {tuple(expected.shape)}, got {tuple(got.shape)}")
    err = (got.double() - expected.double()).abs().max().item()
    return _report(name, err <= atol, f"values differ from the reference by up to {err:.3g} (allowed {atol:g})")


# --- 00_setup_and_data -------------------------------------------------------------------

def check_normalize(fn: Callable) -> None:
    """``fn(x, mean, std)`` must return ``(x - mean) / std`` per channel, for (N, C, H, W) ``x``."""
    from .models import Normalize

    gen = torch.Generator().manual_seed(0)
    for mean, std in (((0.1307,), (0.3081,)), ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616))):
        x = torch.rand(4, len(mean), 5, 5, generator=gen)
        done, got = _call("normalize", fn, x, mean, std)
        if not done:
            return
        _close(f"normalize with {len(mean)} channel(s)", got, Normalize(mean, std)(x))


def _tiny_model(seed: int = 0) -> nn.Module:
    from .models import build

    torch.manual_seed(seed)
    return build("smallcnn").eval()


def check_neuron_count(fn: Callable) -> None:
    """``fn(model, layer_name, example)`` must return how many neurons the layer has."""
    from .hooks import summary

    model, example = _tiny_model(), torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))

    for row in summary(model, example):
        if row["type"] not in ("Conv2d", "Linear"):
            continue
        done, got = _call("neuron count", fn, model, row["name"], example)
        if not done:
            return
        _report(f"neuron count of {row['name']}", got == row["neurons"],
                      f"expected {row['neurons']}, got {got}")


# --- 01_attacks ---------------------------------------------------------------------------

def check_fgsm(fn: Callable, eps: float = 0.1) -> None:
    """``fn(model, images, labels, eps)`` must equal FGSM (Goodfellow et al., 2015):
    ``clip(x + eps * sign(grad_x CE(f(x), y)), 0, 1)``."""
    from .attacks import fgsm

    gen = torch.Generator().manual_seed(0)
    model, images = _tiny_model(), torch.rand(16, 1, 28, 28, generator=gen)
    labels = torch.randint(0, 10, (16,), generator=gen)

    done, got = _call("fgsm", fn, model, images.clone(), labels, eps)
    if not done:
        return
    expected = fgsm(model, images, labels, eps=eps)
    _close("fgsm matches the reference", got, expected, atol=1e-5)
    if isinstance(got, torch.Tensor) and got.shape == images.shape:
        _report("fgsm stays in [0, 1]", bool(got.min() >= 0 and got.max() <= 1),
                      f"values in [{got.min().item():.3f}, {got.max().item():.3f}]")
        step = (got - images).abs().max().item()
        _report("fgsm stays within eps", step <= eps + 1e-6, f"max |x' - x| = {step:.4f} > eps = {eps}")


def check_success_rate(fn: Callable) -> None:
    """``fn(clean_pred, adv_pred, labels)``: among inputs classified correctly when clean,
    the fraction whose adversarial prediction is wrong."""
    cases = [
        ((torch.tensor([0, 1, 2, 3]), torch.tensor([0, 5, 5, 3]), torch.tensor([0, 1, 2, 9])), 2 / 3),
        ((torch.tensor([1, 1]), torch.tensor([1, 1]), torch.tensor([1, 1])), 0.0),
    ]
    for args, expected in cases:
        done, got = _call("success rate", fn, *args)
        if not done:
            return
        got = float(got)
        _report(f"success rate on {args[0].tolist()}", abs(got - expected) < 1e-9,
                      f"expected {expected:.4f}, got {got:.4f}")
