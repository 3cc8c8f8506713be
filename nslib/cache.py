"""A disk cache for results a notebook computes again and again from the same inputs.

A student runs a notebook many times (Run All after each exercise); its attack tables over the
shipped checkpoints come out the same each time. :func:`cached` keeps such a result in
``runs_root() / "cache"`` (``$NSLIB_RUNS/cache``, else ``runs/cache`` beside the notebook) under a
key that holds everything the result depends on, as ``nslib.reproduce`` keys its steps: the
inputs (model weights, images, settings, by content), the source of the whole ``nslib``
package, nslib's version, and the versions of the libraries that compute it. Any change reruns
the computation; nothing is ever reused across a change. ``NSLIB_CACHE=0`` switches it off.

Used by ``nslib.evaluation.robustness_table(..., cache=True)`` and
``robust_accuracy_curve(..., cache=True)`` (notebooks 04 and 05).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, TypeVar

import torch
from torch import nn

__all__ = ["cached", "cache_dir", "tensor_digest", "model_digest", "attack_inputs", "enabled"]

T = TypeVar("T")


def enabled() -> bool:
    """Whether :func:`cached` reuses results: not when ``NSLIB_CACHE`` is ``0`` (or false, no, off)."""
    from .utils import env_flag

    return env_flag("NSLIB_CACHE", True)


def cache_dir() -> Path:
    """``runs_root() / "cache"``: a folder the user owns, never inside the installed package."""
    from .utils import runs_root

    return runs_root() / "cache"


def tensor_digest(*tensors: torch.Tensor) -> str:
    """sha256 of tensors' shapes, dtypes and values (on the CPU), in order."""
    digest = hashlib.sha256()
    for tensor in tensors:
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{tuple(tensor.shape)} {tensor.dtype}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def model_digest(model: nn.Module) -> str:
    """sha256 of a model's class, its parameters and buffers by name, and its train/eval flags."""
    state = model.state_dict()
    head = json.dumps([type(model).__qualname__, list(state), [m.training for m in model.modules()]])
    return hashlib.sha256((head + tensor_digest(*state.values())).encode()).hexdigest()


def attack_inputs(models: dict[str, nn.Module], images: torch.Tensor, labels: torch.Tensor, specs, **settings) -> dict:
    """The inputs of an evaluation of ``models`` under attack ``specs`` (dicts) for :func:`cached`: the weights and
    the images by content, the specs, ``settings`` (seed, batch size, ...), the device, the thread count and the
    CPU's kernel set (both move the last digits) and AutoAttack's version when a spec runs it."""
    from importlib import metadata

    if any(callable(spec) for spec in (specs.values() if isinstance(specs, dict) else specs)):
        raise ValueError("cache=True needs attack specs given as dicts: a callable factory(model) has no content "
                         "to key the cache on; pass cache=False.")
    uses_autoattack = "autoattack" in json.dumps(specs, default=str)
    first = next(iter(models.values()))
    device = next((t.device for t in first.parameters()), torch.device("cpu"))
    return {"models": {name: model_digest(model) for name, model in models.items()},
            "data": tensor_digest(images, labels), "specs": specs, "settings": settings, "device": device.type,
            "threads": torch.get_num_threads(), "cpu_kernels": torch.backends.cpu.get_cpu_capability(),
            "pyautoattack": metadata.version("pyautoattack") if uses_autoattack else None}


def _key(name: str, inputs: dict) -> str:
    from . import __version__
    from .reproduce import library_versions, source_hash

    key = {"name": name, "inputs": inputs, "code": source_hash(), "version": __version__,
           "libraries": library_versions()}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def cached(name: str, inputs: dict, compute: Callable[[], T]) -> T:
    """``compute()``, or its result from an earlier call with the same ``name``, ``inputs`` and code.

    Args:
        name (str): what is computed, e.g. ``"robustness_table"`` (the file's prefix).
        inputs (dict): everything the result depends on besides nslib's code and the library
            versions, JSON-serialisable (digest tensors and models with :func:`tensor_digest`,
            :func:`model_digest`).
        compute (callable): makes the result when it is not cached; it must be picklable by
            ``torch.save`` and loadable with ``weights_only=True`` (tensors, numbers, strings, lists, dicts).
    """
    if not enabled():
        return compute()
    from .checkpoints import atomic_save

    path = cache_dir() / f"{name}-{_key(name, inputs)[:24]}.pt"
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # a damaged file (disk full, an old torch): compute again and rewrite it
            pass
    value = compute()
    atomic_save(value, path)
    return value
