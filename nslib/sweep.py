"""E7: the SNS knobs -- penalty weight lambda, top-k, and which layers are constrained.

One SNS model per setting, trained at a reduced budget (ours: the first 2,000 mnist5k
training images, 10 epochs, PGD-10 with eps ramped 0 -> 0.3 over 4 epochs, Adam 1e-3,
batch 100, seed 0) and evaluated on the first 500 test images (clean; PGD-40, eps 0.3,
step 0.01, random start; layer sensitivity under that attack). ``lambda = 0`` is PGD-AT
at the same budget, the baseline every setting is judged by.

``scripts/sns_sweep.py`` runs it (two at a time) into ``data/sweeps/sns_sweep.json``,
which the course ships; ``python -m nslib reproduce --full`` runs it again into its
output folder.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .checkpoints import atomic_write_text

__all__ = ["BUDGET", "DEFAULT", "SETTINGS", "run_setting", "write_sweep"]

#: The settings every run shares unless it changes one of them.
DEFAULT = {"lam": 0.01, "k": 0.1, "layers": ["conv3", "conv4", "fc1"]}
#: The reduced training budget of the sweep and the evaluation size.
BUDGET = {"train_n": 2000, "epochs": 10, "eps": 0.3, "steps": 10, "eps_warmup_epochs": 4,
          "lr": 1e-3, "batch_size": 100, "seed": 0, "test_n": 500}
#: (knob, run name, change to DEFAULT), in the order the figure shows them.
SETTINGS = (
    [("lambda", f"lam{v:g}", {"lam": v}) for v in (0.0, 0.003, 0.01, 0.03, 0.1)]
    + [("k", f"k{v:g}", {"k": v}) for v in (1, 3, 20)]
    + [("layers", "layers_" + "+".join(v), {"layers": v}) for v in (["conv3"], ["conv4"], ["fc1"])]
)


def run_setting(name: str, knob: str, change: dict, runs_dir: str | os.PathLike, *,
                device=None, threads: int | None = None) -> dict:
    """Train and evaluate one setting into ``runs_dir/name`` (resumable); return its record.

    The record holds the setting, ``clean_acc``, ``pgd40_acc`` and the layer sensitivity
    (Eq. of ``nslib.sensitivity.layer_sensitivity``) of the constrained layers under PGD-40.
    The budget's seed sets everything, the initial weights included, so a setting gives
    the same record whichever process runs it and whatever ran before it.
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    from . import data, models
    from .attacks import pgd
    from .evaluation import accuracy
    from .sensitivity import layer_sensitivity, neuron_sensitivity
    from .training import SETTINGS, TrainConfig, train
    from .utils import default_device, seed_everything

    device = torch.device(device) if device is not None else default_device()
    settings = {**DEFAULT, **change}
    recipe = "pgd_at" if settings["lam"] == 0 else "sns"
    options = {} if recipe == "pgd_at" else settings
    budget = {k: v for k, v in BUDGET.items() if k in SETTINGS}  # not train_n, test_n: the sweep's own
    config = TrainConfig.from_dict({"recipe": recipe, **budget, "eval_every": BUDGET["epochs"], **options})
    seed_everything(BUDGET["seed"])  # the initial weights too, as `python -m nslib train` does
    model = models.build("smallcnn", dataset="mnist5k")
    start = time.time()
    train(model, data.load("mnist5k", "train", limit=BUDGET["train_n"]), config=config,
          out=Path(runs_dir) / name, progress=False, device=device)
    seconds = time.time() - start
    model.eval()
    x, y = data.load("mnist5k", "test").tensors(BUDGET["test_n"])
    x, y = x.to(device), y.to(device)
    torch.manual_seed(0)
    x_adv = pgd(model, x, y, eps=0.3, alpha=0.01, steps=40)
    sens = layer_sensitivity(neuron_sensitivity(model, x, x_adv, DEFAULT["layers"]))
    return {"name": name, "knob": knob, "recipe": recipe, **settings,
            "clean_acc": accuracy(model, x, y), "pgd40_acc": accuracy(model, x_adv, y),
            "sensitivity": {k: round(v, 4) for k, v in sens.items()}, "train_seconds": round(seconds)}


def write_sweep(records: list[dict], path: str | os.PathLike) -> Path:
    """Merge ``records`` into the sweep file at ``path`` (kept in ``SETTINGS`` order)."""
    path = Path(path)
    previous = json.loads(path.read_text())["runs"] if path.exists() else []
    merged = {r["name"]: r for r in previous + records}
    return atomic_write_text(path, json.dumps({"budget": BUDGET, "default": DEFAULT,
                                               "runs": [merged[n] for _, n, _ in SETTINGS if n in merged]},
                                              indent=1) + "\n")
