"""Checkpoints that say what they hold, written atomically, loaded safely.

A checkpoint is a dict saved with ``torch.save`` and read with
``torch.load(..., weights_only=True)``: the model's ``state_dict`` plus ``arch``,
``dataset``, ``recipe`` (how it was trained), ``metrics`` and ``format_version``.
Shipped checkpoints are listed by name with their sha256 in
``checkpoints/manifest.json`` of the shipped files (the repository's ``data/checkpoints``,
carried in the package; :data:`CHECKPOINT_DIR`) and loaded with :func:`load_pretrained`.
Taught in lesson 01 (``01_attacks.ipynb``).
"""
from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Any, Callable, Mapping

import torch
from torch import nn

from .data import EMBEDDED_DIR, reinstall_hint, sha256sum
from .models import build

__all__ = [
    "FORMAT_VERSION", "CHECKPOINT_DIR", "atomic_save", "atomic_write_text", "save_checkpoint", "read_checkpoint",
    "load_checkpoint", "load_pretrained", "pretrained_names", "pretrained_path", "update_manifest", "upgrade_recipe",
]

#: The checkpoint format this nslib writes; a newer one is refused with a hint to upgrade.
FORMAT_VERSION = 1
#: Folder of the shipped checkpoints and their ``manifest.json``, inside the installed package.
CHECKPOINT_DIR = EMBEDDED_DIR / "checkpoints"
MANIFEST = "manifest.json"
#: ``arch`` prefix of a checkpoint of a model nslib.models.build cannot make (any nn.Module).
CUSTOM = "custom:"


def _atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(fh)`` on a temporary file in ``path``'s folder, fsync, then rename it over ``path``.

    A crash mid-write leaves the old file intact, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; use the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` atomically: to a temporary file, fsync, then rename over ``path``."""
    return _atomic_write(path, lambda fh: torch.save(obj, fh))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically, as :func:`atomic_save` does for tensors."""
    return _atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def save_checkpoint(path: str | os.PathLike, model: nn.Module, *, arch: str | None = None,
                    dataset: str | None = None, recipe: dict | None = None,
                    metrics: dict | None = None, **extra: Any) -> Path:
    """Save ``model``'s weights with what they are, atomically.

    Args:
        path (path): where to write (``.pt``).
        model (nn.Module): the model; its ``state_dict`` is stored (moved to CPU).
        arch (str, optional): architecture name for :func:`nslib.models.build`.
            Default: ``model.arch``, or ``"custom:<class name>"`` for any other
            ``nn.Module`` (loading it then needs ``model=`` an instance of that class).
        dataset (str, optional): data set it was trained on. Default: ``model.dataset``.
        recipe (dict, optional): how it was trained (recipe name, eps, epochs, seed, ...).
        metrics (dict, optional): e.g. ``{"clean_acc": 0.98, "pgd40_acc": 0.9}``.
        **extra: more plain values (numbers, strings, tensors, lists, dicts) to store.

    Returns:
        Path: the written file.
    """
    arch = arch or getattr(model, "arch", None) or f"{CUSTOM}{type(model).__name__}"
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "dataset": dataset if dataset is not None else getattr(model, "dataset", None),
        "recipe": dict(recipe or {}),
        "metrics": dict(metrics or {}),
        "state_dict": state,
        **extra,
    }
    return atomic_save(payload, path)


def read_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint dict with ``weights_only=True``, turning every failure into a clear error."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}. Train one (see `python -m nslib train --help`) "
                                f"or pick a shipped one: {pretrained_names()}.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError) as err:
        raise ValueError(
            f"{path} is not a readable checkpoint (truncated, corrupt, or not saved by "
            f"torch.save): {err!s:.200}. Delete it and train again; if it is a shipped file, "
            f"{reinstall_hint()}."
        ) from err
    if not isinstance(payload, dict) or "state_dict" not in payload or "format_version" not in payload:
        raise ValueError(f"{path} is not an nslib checkpoint (no 'state_dict'/'format_version'); "
                         "save with nslib.checkpoints.save_checkpoint.")
    version = payload["format_version"]
    if version > FORMAT_VERSION:
        raise ValueError(f"{path} has checkpoint format {version}, newer than this nslib "
                         f"understands ({FORMAT_VERSION}); upgrade nslib (git pull && make venv).")
    return payload


def load_checkpoint(path: str | os.PathLike, model: nn.Module | None = None, *,
                    map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Load a checkpoint into ``model`` (or a freshly built one), in eval mode.

    Args:
        path (path): a file written by :func:`save_checkpoint`.
        model (nn.Module, optional): load into this model; its ``arch`` (if set) must
            match. Default: build ``checkpoint["arch"]`` for ``checkpoint["dataset"]``.
        map_location (optional): passed to ``torch.load``; a model built here is put there
            too (a model you pass stays on its device). Default: ``"cpu"``.

    Returns:
        tuple: ``(model, info)``, info being the checkpoint dict without ``state_dict``.
    """
    payload = read_checkpoint(path, map_location=map_location)
    arch = payload["arch"]
    if arch.startswith(CUSTOM):
        if model is None or type(model).__name__ != arch[len(CUSTOM):]:
            raise ValueError(f"{path} holds your own model class {arch[len(CUSTOM):]!r}, which nslib cannot "
                             f"build; pass an instance: load_checkpoint(path, model={arch[len(CUSTOM):]}(...)).")
    elif model is None:
        model = build(arch, dataset=payload.get("dataset"))
        if isinstance(map_location, (str, torch.device)):
            model.to(map_location)  # else load_state_dict would copy the weights back to the CPU
    elif getattr(model, "arch", arch) != arch:
        raise ValueError(f"{path} holds a {arch!r} model but you passed a {model.arch!r}; "
                         f"build the right one with nslib.models.build({arch!r}) or pass model=None.")
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise ValueError(f"{path} does not fit this model (architecture {arch!r}): {err!s:.300}") from err
    model.eval()
    info = {k: v for k, v in payload.items() if k != "state_dict"}
    return model, info


def _manifest(directory: Path) -> dict:
    file = directory / MANIFEST
    return json.loads(file.read_text()) if file.exists() else {}


def pretrained_names(directory: str | os.PathLike = CHECKPOINT_DIR) -> list[str]:
    """Names of the shipped checkpoints (their ``manifest.json``)."""
    return sorted(_manifest(Path(directory)))


def update_manifest(name: str, path: str | os.PathLike, directory: str | os.PathLike) -> None:
    """Record ``name -> (file, sha256)`` for a checkpoint in ``directory``'s manifest (the checkout's
    ``data/checkpoints`` for ``scripts/train_shipped.py``; never the installed package)."""
    directory, path = Path(directory), Path(path)
    manifest = _manifest(directory)
    manifest[name] = {"file": path.name, "sha256": sha256sum(path)}
    atomic_write_text(directory / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _pretrained_entry(name: str, directory: Path) -> tuple[Path, str]:
    """The file and sha256 the manifest records for ``name``; an unknown name lists the shipped ones."""
    manifest = _manifest(directory)
    if name not in manifest:
        raise ValueError(f"unknown checkpoint {name!r}; shipped ones: {sorted(manifest)}.")
    return directory / manifest[name]["file"], manifest[name]["sha256"]


def pretrained_path(name: str, directory: str | os.PathLike = CHECKPOINT_DIR) -> Path:
    """Where the shipped checkpoint ``name`` lives (``CHECKPOINT_DIR/<file>``, from the manifest)."""
    return _pretrained_entry(name, Path(directory))[0]


def load_pretrained(name: str, *, directory: str | os.PathLike = CHECKPOINT_DIR,
                    map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Load a shipped checkpoint by name, checking its sha256 first.

    Example:
        >>> model, info = load_pretrained("mnist_pgd_at")  # doctest: +SKIP
    """
    path, expected = _pretrained_entry(name, Path(directory))
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {name!r} missing at {path} (sha256 {expected}); "
                                f"{reinstall_hint()}.")
    actual = sha256sum(path)
    if actual != expected:
        raise ValueError(f"checkpoint {name!r} at {path} is corrupt or was changed: sha256 {actual}, "
                         f"expected {expected}; {reinstall_hint()}.")
    return load_checkpoint(path, map_location=map_location)


def upgrade_recipe(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """A recipe dict in today's keys: a checkpoint's ``amp`` (before ``precision`` existed)
    becomes ``precision`` (``True``: ``"fp16"``, ``False``: ``"fp32"``) and ``compile``, in its place.

    Example:
        >>> upgrade_recipe({"seed": 0, "amp": False, "world_size": 1})
        {'seed': 0, 'precision': 'fp32', 'compile': False, 'world_size': 1}
    """
    if "amp" not in recipe:
        return dict(recipe)
    if "precision" in recipe:
        raise ValueError("a recipe has both 'amp' and 'precision'; keep precision ('fp32', 'bf16' or 'fp16').")
    upgraded = {}
    for name, value in recipe.items():
        if name == "amp":
            upgraded.update(precision="fp16" if value else "fp32", compile=False)
        else:
            upgraded[name] = value
    return upgraded
