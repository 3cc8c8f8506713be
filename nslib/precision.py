"""Mixed precision: one switch, ``precision``, for attacks, training and sensitivity.

``"fp32"`` (the default and the reference) runs everything in float32. ``"bf16"`` runs the
model's forward passes under ``torch.autocast(dtype=torch.bfloat16)`` with 4-D inputs in
``channels_last`` memory format: on a recent NVIDIA GPU (tensor cores) that is several
times faster, and bf16 keeps float32's exponent range, so no loss scaling is needed.
``"fp16"`` is float16 autocast with a gradient scaler (training only; what ``amp=True``
meant before). What stays in float32 under every precision: the inputs and the adversarial
images, the parameters, the loss (logits are cast up before it), the input gradient, the
projection, and the activation distances of the sensitivity (``nslib.sensitivity``).

On the CPU, ``"bf16"`` runs under CPU autocast: correct, and as fast as the CPU's bf16
support makes it (``bench/attacks.py`` measures it: faster on CPUs with AMX/AVX-512 bf16,
slower on others). Attacks and the sensitivity accept it there, for parity checks; training
falls back to fp32 with a warning, and ``python -m nslib train`` refuses it (``nslib.cli``):
the fast path is for CUDA GPUs.

Parity is tested, not assumed: ``tests/test_precision.py`` checks that robust accuracy
under bf16 PGD-40 is within 0.5 points of fp32 on the shipped models.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

__all__ = ["PRECISIONS", "check_precision", "autocast", "channels_last", "prepare_model"]

#: The precisions, and the autocast dtype of each (``None``: no autocast).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else ``ValueError`` naming them."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {list(PRECISIONS)} "
                         "(fp32 is the reference; bf16 is the fast GPU path).")
    return precision


@contextlib.contextmanager
def autocast(precision: str, device: torch.device | str) -> Iterator[None]:
    """Run the block's forward passes in ``precision`` on ``device`` (a no-op for ``"fp32"``).

    Example:
        >>> with autocast("bf16", "cpu"):
        ...     torch.nn.Linear(4, 2)(torch.ones(1, 4)).dtype
        torch.bfloat16
    """
    dtype = PRECISIONS[check_precision(precision)]
    if dtype is None:
        yield
        return
    with torch.autocast(torch.device(device).type, dtype=dtype):
        yield


def channels_last(x: torch.Tensor, precision: str) -> torch.Tensor:
    """``x`` in channels_last memory format when ``precision`` is not fp32 and ``x`` is a 4-D
    ``(N, C, H, W)`` batch; otherwise ``x`` itself. Values and shape are unchanged."""
    if precision == "fp32" or x.dim() != 4:
        return x
    return x.contiguous(memory_format=torch.channels_last)


def prepare_model(model: nn.Module, precision: str = "fp32", *, compile: bool = False) -> nn.Module:
    """The model to run in ``precision``: its parameters in channels_last memory format (in
    place; values unchanged) when ``precision`` is not fp32, then ``torch.compile``-d when
    ``compile``. The parameters stay float32; autocast (:func:`autocast`) lowers the math.

    Returns the model, or its compiled wrapper (which shares the parameters). Compile once,
    then reuse it: the first calls trace and compile (seconds to minutes).
    """
    check_precision(precision)
    if precision != "fp32":
        model = model.to(memory_format=torch.channels_last)
    if compile:
        model = torch.compile(model)
    return model

