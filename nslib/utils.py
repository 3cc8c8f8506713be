"""Small helpers shared by every module: seeding, model-mode safety, input checks.

Taught in lesson 00 (``00_setup_and_data.ipynb``).
"""
from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

__all__ = [
    "average_ranks",
    "spearman",
    "seed_everything",
    "default_device",
    "eval_mode",
    "check_images",
    "start_range_check",
    "check_labels",
    "check_eps",
    "model_device",
    "default_eps",
    "default_l2_eps",
    "seed_name",
    "mean_std",
    "pgd_step",
    "env_flag",
    "quick_mode",
]


def seed_everything(seed: int = 0, *, deterministic: bool = True) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) from one number.

    Args:
        seed (int, optional): the one seed. Default: ``0``.
        deterministic (bool, optional): also ask cuDNN for deterministic kernels.
            Default: ``True``.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def default_device() -> torch.device:
    """``cuda`` when a GPU is visible, else ``cpu`` (override with ``NSLIB_DEVICE``)."""
    name = os.environ.get("NSLIB_DEVICE")
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def env_flag(name: str, default: bool) -> bool:
    """A yes/no setting from the environment variable ``name``; a value that is neither raises.

    ``1``/``true``/``yes``/``on`` and ``0``/``false``/``no``/``off`` (any case); unset or
    empty gives ``default``. Anything else is an error, never silently read as one of them.
    """
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    raise ValueError(f"{name}={os.environ[name]!r} is not a yes/no value; set it to 1 (or true) or 0 (or "
                     "false), or unset it.")


def quick_mode() -> bool:
    """The course's quick/full switch, ``NSLIB_QUICK``: quick (the default) unless it is ``0``/``false``.

    Quick mode uses the shipped checkpoints, small N and few epochs (what CI runs); full
    mode the whole budget. Every notebook's setup cell reads it here.
    """
    return env_flag("NSLIB_QUICK", True)


def runs_root() -> Path:
    """Where the notebooks keep their training runs: ``$NSLIB_RUNS``, else ``runs/`` in the current
    folder (a notebook's own folder), never inside the installed package.

    Set ``NSLIB_RUNS`` to keep every notebook's runs in one place you own. Used by notebooks
    04 and 05 and by ``experiments.models.load_or_train``.
    """
    return Path(os.environ.get("NSLIB_RUNS") or Path.cwd() / "runs").expanduser()


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); ``cpu`` for a model with neither."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def default_eps(channels: int) -> float:
    """An L-inf budget for images of which only the colour channels are known.

    ``0.3`` for 1-channel images (MNIST; Madry et al. 2018), ``8/255`` for colour images
    (CIFAR-10). Shape: ``channels`` is dim 1 of an ``(N, C, H, W)`` batch. When the data set is
    known, its own budget is ``nslib.data.dataset_info(name).eps`` (Fashion-MNIST: 0.1).

    Example:
        >>> default_eps(1), round(default_eps(3), 4)
        (0.3, 0.0314)
    """
    return 0.3 if channels == 1 else 8 / 255


def default_l2_eps(channels: int) -> float:
    """The standard L2 radius of a data set by its colour channels.

    ``2.0`` for 1-channel 28x28 images (MNIST; Madry et al. 2018, Croce & Hein 2020 use 2
    and 1.5), ``0.5`` for colour images (CIFAR-10, RobustBench's L2 threat model).

    Example:
        >>> default_l2_eps(1), default_l2_eps(3)
        (2.0, 0.5)
    """
    return 2.0 if channels == 1 else 0.5


def pgd_step(eps: float, steps: int) -> float:
    """Madry et al.'s PGD step size ``alpha = 2.5 * eps / steps``.

    With it, ``steps`` steps can walk 2.5 times across the eps-ball, enough to reach its
    boundary from any random start. Example: ``pgd_step(0.3, 10)`` is ``0.075``.
    """
    return 2.5 * eps / steps


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode; on exit restore every submodule's own flag.

    Restoring per submodule (not just ``model.train(was_training)``) keeps a
    caller's mixed setting, e.g. a frozen BatchNorm inside a training model.
    """
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for module, flag in flags:
            module.training = flag


def check_images(images: torch.Tensor, name: str = "images", *, values: bool = True) -> None:
    """Raise ``ValueError``/``TypeError`` unless ``images`` is a float batch in [0, 1].

    Args:
        values (bool, optional): also check that the values lie in [0, 1] (this reads the
            whole tensor; see :func:`start_range_check`). Default: ``True``.

    Shape: ``(N, C, H, W)`` or any ``(N, ...)`` with at least 2 dimensions.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}.")
    if not images.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor in [0, 1], got dtype {images.dtype}; "
            "convert uint8 pixels with images.float() / 255."
        )
    if images.dim() < 2:
        raise ValueError(
            f"{name} must be a batch with the batch along dim 0, e.g. (N, C, H, W); "
            f"got shape {tuple(images.shape)}. Add a batch dimension with images.unsqueeze(0)."
        )
    if values:
        start_range_check(images, name)()


def start_range_check(images: torch.Tensor, name: str = "images") -> Callable[[], None]:
    """Start checking that ``images`` lie in [0, 1]; the returned function gives the verdict.

    The verdict raises ``ValueError`` for a value outside [0, 1] (NaN passes, as before).
    On the CPU the check is done at once. On CUDA one ``aminmax`` is queued and its two
    numbers are copied to the host without waiting: only the verdict waits for them. An
    attack asks for it after queuing its own work, so the check never stalls the device
    (``images.min() < 0`` makes the CPU wait for everything the GPU has queued, every call).

    Example:
        >>> verdict = start_range_check(torch.rand(2, 1, 4, 4))
        >>> verdict()  # raises ValueError for values outside [0, 1]
    """
    if not images.numel():
        return _no_error
    low_high = torch.stack(torch.aminmax(images.detach()))
    if images.device.type != "cuda":
        _raise_out_of_range(low_high.tolist(), name)
        return _no_error
    low_high = low_high.to("cpu", non_blocking=True)  # into pinned memory, without a sync
    copied = torch.cuda.Event()
    copied.record(torch.cuda.current_stream(images.device))

    def verdict() -> None:
        copied.synchronize()
        _raise_out_of_range(low_high.tolist(), name)

    return verdict


def _no_error() -> None:
    return None


def _raise_out_of_range(low_high: list[float], name: str) -> None:
    low, high = low_high
    if low < 0 or high > 1:
        raise ValueError(
            f"{name} must lie in [0, 1] (pixel space; the model owns its normalisation), "
            f"got values in [{low:.3g}, {high:.3g}]. "
            "Pass un-normalised images, e.g. torchvision's ToTensor() output."
        )


def check_labels(images: torch.Tensor, labels: torch.Tensor, name: str = "labels") -> None:
    """Raise ``ValueError`` unless ``labels`` is an integer vector of length ``N``."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(labels).__name__}.")
    if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{name} must have shape (N,) with N = {images.shape[0]} (the batch size of the "
            f"images), got shape {tuple(labels.shape)}."
        )
    if labels.is_floating_point():
        raise TypeError(f"{name} must hold integer class indices, got dtype {labels.dtype}.")


def check_eps(value: float, name: str = "eps") -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number >= 0."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}.")
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}.")


def seed_name(name: str, seed: int) -> str:
    """The name of one training seed of a model or sweep setting (its checkpoint, its run folder).

    Example:
        >>> seed_name("mnist_sns", 0), seed_name("mnist_sns", 2)
        ('mnist_sns', 'mnist_sns_seed2')
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"a training seed is an int >= 0, got {seed!r}.")
    return name if seed == 0 else f"{name}_seed{seed}"


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``n - 1``; 0 for one value) of per-seed results.

    Example:
        >>> mean_std([0.90, 0.92, 0.94])
        (0.92, 0.02)
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_std needs at least one value.")
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return round(mean, 10), round(var ** 0.5, 10)


def average_ranks(values) -> torch.Tensor:
    """The rank of each value (1 = smallest), tied values sharing the mean of their ranks.

    Example:
        >>> average_ranks([10.0, 30.0, 20.0, 30.0]).tolist()
        [1.0, 3.5, 2.0, 3.5]
    """
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    order = torch.argsort(v, stable=True)
    ranks = torch.empty_like(v)
    ranks[order] = torch.arange(1, v.numel() + 1, dtype=torch.float64)
    for value in torch.unique(v):  # ties: the mean of the ranks they occupy
        tied = v == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a, b) -> float:
    """Spearman's rank correlation rho: Pearson's correlation of the average ranks (ties averaged).

    Asks only whether ``b`` moves monotonically with ``a``; ``nan`` when either side is constant.

    Args:
        a, b: sequences (lists, arrays or tensors) of the same length >= 2.

    Example:
        >>> spearman([1, 2, 3, 4], [10, 20, 30, 45])
        1.0
    """
    ra, rb = average_ranks(a), average_ranks(b)
    if ra.numel() != rb.numel() or ra.numel() < 2:
        raise ValueError(f"spearman needs two sequences of the same length >= 2, got {ra.numel()} and {rb.numel()}.")
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = (ra.norm() * rb.norm()).item()
    return float((ra * rb).sum().item() / denom) if denom > 0 else float("nan")
