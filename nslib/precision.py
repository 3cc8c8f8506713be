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

``compile`` is the second switch, independent of the precision: ``False`` (the default: eager),
or a ``torch.compile`` mode (:data:`COMPILE_MODES`; ``True`` is ``"default"``). The modes
that capture CUDA graphs (:data:`CUDA_GRAPH_MODES`: ``"reduce-overhead"``, ``"max-autotune"``)
replay a step's kernels with one launch, which is what small batches on a fast GPU wait on;
they need CUDA, and elsewhere :func:`compile_mode` falls back to ``"default"`` with a warning.
Compiled and eager runs compute the same values up to float rounding
(``tests/test_compile.py``).
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Iterator

import torch
from torch import nn

from .utils import model_device

__all__ = ["PRECISIONS", "COMPILE_MODES", "CUDA_GRAPH_MODES", "check_precision", "check_compile", "compile_mode",
           "autocast", "channels_last", "prepare_model", "compiled"]

#: The precisions, and the autocast dtype of each (``None``: no autocast).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
#: The ``torch.compile`` modes ``compile`` takes (``True`` means ``"default"``, ``False`` no compile).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs", "max-autotune")
#: The modes that capture CUDA graphs: CUDA only.
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else ``ValueError`` naming them."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {list(PRECISIONS)} "
                         "(fp32 is the reference; bf16 is the fast GPU path).")
    return precision


def check_compile(compile: bool | str | None) -> str | None:
    """The ``torch.compile`` mode that ``compile`` asks for, or ``None`` for no compile.

    ``False``/``None``: ``None``; ``True``: ``"default"``; a mode of :data:`COMPILE_MODES`:
    itself. Anything else raises ``ValueError`` naming the valid values.

    Example:
        >>> check_compile(True), check_compile("reduce-overhead"), check_compile(False)
        ('default', 'reduce-overhead', None)
    """
    if compile is None or compile is False:
        return None
    if compile is True:
        return "default"
    if isinstance(compile, str) and compile in COMPILE_MODES:
        return compile
    raise ValueError(f"unknown compile mode {compile!r}; choose one of {list(COMPILE_MODES)} (or True for "
                     "'default', False for no compile). reduce-overhead adds CUDA graphs, for small batches on a GPU.")


def compile_mode(compile: bool | str | None, device: torch.device | str) -> str | None:
    """:func:`check_compile`'s mode for a model on ``device``: a CUDA-graph mode
    (:data:`CUDA_GRAPH_MODES`) off CUDA becomes ``"default"``, with a warning."""
    mode = check_compile(compile)
    device = torch.device(device)
    if mode in CUDA_GRAPH_MODES and device.type != "cuda":
        warnings.warn(f"compile={mode!r} captures CUDA graphs, which need a CUDA GPU; compiling for "
                      f"{device.type} with mode 'default' instead.", stacklevel=3)
        return "default"
    return mode


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


def prepare_model(model: nn.Module, precision: str = "fp32", *, compile: bool | str = False) -> nn.Module:
    """The model to run in ``precision``: its parameters in channels_last memory format (in
    place; values unchanged) when ``precision`` is not fp32, then ``torch.compile``-d when
    ``compile`` (``True`` or a mode of :data:`COMPILE_MODES`; see :func:`compile_mode`).
    The parameters stay float32; autocast (:func:`autocast`) lowers the math.

    Returns the model, or its compiled wrapper (which shares the parameters). Compile once,
    then reuse it: the first calls trace and compile (seconds to minutes).
    """
    check_precision(precision)
    mode = check_compile(compile)
    if precision != "fp32":
        model = model.to(memory_format=torch.channels_last)
    if mode is not None:
        model = torch.compile(model, mode=compile_mode(mode, model_device(model)))
    return model


@contextlib.contextmanager
def compiled(model: nn.Module, compile: bool | str | None, device: torch.device | str | None = None
             ) -> Iterator[nn.Module]:
    """Calls of ``model`` go through ``torch.compile`` inside the block (``nn.Module.compile``, in
    place), and are eager again afterwards. ``compile=False`` changes nothing.

    In place, so the module stays itself: its submodules keep their names and hooks
    registered on them still fire (SNS's capture), and a DistributedDataParallel wrapper or
    an attack given ``model`` runs the compiled code. ``device`` (default: the parameters')
    decides whether a CUDA-graph mode can be used (:func:`compile_mode`).

    Inside the block, ``torch._dynamo`` guards on the modules' hooks (by default it assumes
    none are added after compiling, and a graph traced without SNS's capture hooks would be
    reused by a pass that has them, which then never fire: ``tests/test_compile.py``), and
    may keep more graphs per function (the attack, training with and without hooks, the
    evaluation, each batch size), so that none falls back to eager.

    Example:
        >>> net = torch.nn.Linear(3, 2)
        >>> with compiled(net, False) as same:
        ...     same is net
        True
    """
    mode = check_compile(compile)
    if mode is None:
        yield model
        return
    import torch._dynamo

    previous = model._compiled_call_impl
    model.compile(mode=compile_mode(mode, device if device is not None else model_device(model)))
    limit = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
    try:
        with torch._dynamo.config.patch(skip_nnmodule_hook_guards=False,
                                        **{limit: max(64, getattr(torch._dynamo.config, limit))}):
            yield model
    finally:
        model._compiled_call_impl = previous

