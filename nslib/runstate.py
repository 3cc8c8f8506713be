"""Run state: what ``out/last.pt`` holds, so an interrupted run resumes to the same weights.

``last.pt`` is written atomically after every epoch and holds everything the next epoch
depends on: ``{"model", "optimizer", "scheduler", "scaler", "rng", "state", "epoch",
"log", "config"}``, where ``rng`` is the Python, NumPy, torch (and CUDA) generator
states, ``state`` the recipe's own state across steps (SNS's running top-k) and
``config`` the run's flat settings dict (``TrainConfig.to_dict``). Resuming restores
all of it, after checking that the settings are the run's own (only ``epochs`` may
grow). Used by :func:`nslib.training.train`.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .checkpoints import atomic_save, atomic_write_text, upgrade_recipe
from .recipes import RECIPES, recipe_options

__all__ = ["RunState", "save_last", "load_last", "check_resume", "write_log", "rng_state", "set_rng_state"]

#: Settings a resumed run may change: a run can be continued to more epochs, with or without torch.compile.
RESUME_FREE = ("epochs", "compile")


def save_last(path: str | os.PathLike, run: RunState, config: dict) -> Path:
    """Write ``run`` (with the current RNG states) and the run's ``config`` dict to ``path`` atomically.

    Returns:
        Path: the written file.
    """
    return atomic_save({"model": run.net.state_dict(), "optimizer": run.optimizer.state_dict(),
                        "scheduler": run.scheduler.state_dict() if run.scheduler is not None else None,
                        "scaler": run.scaler.state_dict(), "rng": rng_state(), "state": run.state,
                        "epoch": run.epoch, "log": run.log, "config": config}, path)


def load_last(path: str | os.PathLike, run: RunState, config: dict) -> None:
    """Restore ``run`` in place from ``path`` (written by :func:`save_last`) and set the RNG states.

    Args:
        path (path): the run's ``last.pt``.
        run (RunState): the freshly made run; its module, optimizer, scheduler and scaler
            are loaded in place, its ``state``, ``log`` and ``epoch`` replaced.
        config (dict): this run's settings, checked against the saved ones by :func:`check_resume`.

    Raises:
        ValueError: ``path`` was written with other settings.
    """
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    check_resume(ckpt["config"], config, Path(path))
    run.net.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    if run.scheduler is not None and ckpt.get("scheduler") is not None:
        run.scheduler.load_state_dict(ckpt["scheduler"])
    run.scaler.load_state_dict(ckpt["scaler"])
    run.state, run.log, run.epoch = ckpt["state"], ckpt["log"], ckpt["epoch"]
    set_rng_state(ckpt["rng"])


def check_resume(saved: dict, current: dict, path: Path) -> None:
    """Raise ``ValueError`` naming every setting (but ``RESUME_FREE``) where ``saved`` and ``current`` differ.

    A recipe option missing from one side counts as its default (the recipe's signature),
    so a ``last.pt`` that recorded only the options it was given resumes under a command
    that spells out the defaults, and the other way round.
    """
    saved, current = _with_option_defaults(upgrade_recipe(saved)), _with_option_defaults(upgrade_recipe(current))
    diff = {k: (saved.get(k), current.get(k)) for k in set(saved) | set(current)
            if k not in RESUME_FREE and saved.get(k) != current.get(k)}
    if diff:
        raise ValueError(f"{path} was written by a run with other settings {diff} "
                         "(saved, now); resume with the same settings or use another out folder.")


def write_log(path: str | os.PathLike, log: list[dict]) -> Path:
    """Write ``log`` as JSON lines (one record per epoch) to ``path`` atomically."""
    return atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in log))


def rng_state() -> dict:
    """The Python, NumPy, torch (and every CUDA device's) generator states, as tensors and plain values.

    NumPy's state is stored as a tensor and numbers so that ``torch.load(weights_only=True)``
    can read it back.
    """
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Set the generators to ``state`` (from :func:`rng_state`; CUDA only where saved and available)."""
    random.setstate(_tuplify(state["python"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuplify(value):
    return tuple(_tuplify(v) for v in value) if isinstance(value, (list, tuple)) else value


def _with_option_defaults(config: dict) -> dict:
    """``config`` with its recipe's missing options set to their defaults (tuples as lists, as saved)."""
    if config.get("recipe") not in RECIPES:
        return dict(config)
    defaults = {name: list(value) if isinstance(value, tuple) else value
                for name, value in recipe_options(config["recipe"]).items()}
    return {**defaults, **config}


@dataclass
class RunState:
    """What a run carries from one epoch to the next, and :func:`save_last` writes.

    Attributes:
        net (nn.Module): the plain module being trained (not a DDP wrapper).
        optimizer (torch.optim.Optimizer): its optimizer.
        scheduler (optional): the learning-rate scheduler, stepped per epoch, or ``None``.
        scaler (torch.amp.GradScaler): the mixed-precision loss scaler (disabled without amp).
        state (dict): the recipe's state across steps. Default: empty.
        log (list of dict): one record per finished epoch. Default: empty.
        epoch (int): epochs finished. Default: ``0``.
    """

    net: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    state: dict = field(default_factory=dict)
    log: list = field(default_factory=list)
    epoch: int = 0
