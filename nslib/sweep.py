"""E7: the SNS knobs -- penalty weight lambda, top-k, and which layers are constrained.

One SNS model per setting, trained at a reduced budget (ours: the first 2,000 mnist5k
training images, 10 epochs, PGD-10 with eps ramped 0 -> 0.3 over 4 epochs, Adam 1e-3,
batch 100, training seed 0 unless another is asked for) and evaluated on the first 500
test images (clean; PGD-40, eps 0.3, step 0.01, random start seeded with 0; layer
sensitivity under that attack). ``lambda = 0`` is PGD-AT at the same budget, the baseline
every setting is judged by. A setting trained with several seeds has one record per seed,
so E7 can report the mean and spread between training runs; a record without a ``seed``
key (the first recorded sweep) is seed 0.

``scripts/sns_sweep.py`` runs it (two at a time) into ``data/sweeps/sns_sweep.json``,
which the course ships; ``python -m nslib reproduce --full`` runs it again into its
output folder. In another setting (``nslib.settings``: ``reproduce --setting cifar10-resnet18``)
the same knobs are swept with that setting's model, data, eps and sweep budget
(``Setting.sweep``), the layer knob over each of its ``sns_layers``.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .checkpoints import atomic_write_text
from .settings import REGISTRY, Setting

__all__ = ["BUDGET", "DEFAULT", "SETTINGS", "knobs", "plan", "run_setting", "write_sweep", "record_seed"]

_MNIST = REGISTRY["mnist-smallcnn"]


def _defaults(layers) -> dict:
    """The SNS knobs every run shares unless it changes one of them: lambda 0.01, k 10 %, ``layers``."""
    return {"lam": 0.01, "k": 0.1, "layers": list(layers)}


#: The knobs every run of the MNIST sweep shares unless it changes one of them.
DEFAULT = _defaults(_MNIST.sns_layers)
#: The reduced training budget of the sweep and the evaluation size (the MNIST setting's).
BUDGET = dict(_MNIST.sweep)


def knobs(layers) -> list[tuple[str, str, dict]]:
    """(knob, run name, change to the defaults), in the order the figure shows them: five
    lambdas (0 is PGD-AT), three k, and each of ``layers`` constrained alone."""
    return ([("lambda", f"lam{v:g}", {"lam": v}) for v in (0.0, 0.003, 0.01, 0.03, 0.1)]
            + [("k", f"k{v:g}", {"k": v}) for v in (1, 3, 20)]
            + [("layers", f"layers_{layer}", {"layers": [layer]}) for layer in layers])


#: (knob, run name, change to DEFAULT) of the MNIST sweep, in the order the figure shows them.
SETTINGS = knobs(DEFAULT["layers"])


def plan(setting: Setting) -> tuple[dict, dict, list]:
    """``(defaults, budget, knobs)`` of ``setting``'s sweep; for the shipped MNIST setting the
    module's ``DEFAULT``, ``BUDGET`` and ``SETTINGS`` (which the recorded sweep used)."""
    if setting.shipped:
        return DEFAULT, BUDGET, SETTINGS
    return _defaults(setting.sns_layers), dict(setting.sweep), knobs(setting.sns_layers)


def record_seed(record: dict) -> int:
    """The training seed of a sweep record; a record without one (the first recorded sweep) is seed 0."""
    return record.get("seed", 0)


def run_setting(name: str, knob: str, change: dict, runs_dir: str | os.PathLike, *,
                device=None, threads: int | None = None, seed: int = 0, setting: Setting = _MNIST,
                epochs: int | None = None, precision: str = "fp32", compile: bool | str = False) -> dict:
    """Train and evaluate one setting with training ``seed`` into ``runs_dir/seed_name(name, seed)``
    (resumable); return its record.

    The record holds the setting, its ``seed``, ``clean_acc``, ``pgd40_acc`` and the layer
    sensitivity (Eq. of ``nslib.sensitivity.layer_sensitivity``) of the constrained layers
    under PGD-40. ``BUDGET`` with its seed replaced by ``seed`` sets the training, the
    initial weights included, so a (setting, seed) gives the same record whichever process
    runs it and whatever ran before it; the evaluation's attack is seeded with 0 for every seed.

    Args:
        seed (int, optional): the training seed. Default: ``0`` (``BUDGET["seed"]``).
        setting (Setting, optional): the model, data, eps and budget (:func:`plan`).
            Default: the MNIST setting (``BUDGET``).
        epochs (int, optional): train this many epochs instead of the budget's (a smoke run).
        precision (str, optional): the training's precision (``nslib.precision``); the
            evaluation is fp32. Default: ``"fp32"``.
        compile (bool or str, optional): the training's ``torch.compile`` mode
            (``nslib.precision.COMPILE_MODES``). Default: ``False``.
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    from . import data, models
    from .attacks import pgd
    from .evaluation import accuracy, default_suite
    from .sensitivity import layer_sensitivity, neuron_sensitivity
    from .training import SETTINGS, TrainConfig, train
    from .utils import default_device, seed_everything

    from .utils import seed_name

    folder = Path(runs_dir) / seed_name(name, seed)  # checks seed
    device = torch.device(device) if device is not None else default_device()
    defaults, full_budget, _ = plan(setting)
    settings = {**defaults, **change}
    recipe = "pgd_at" if settings["lam"] == 0 else "sns"
    options = {} if recipe == "pgd_at" else settings
    budget = {k: v for k, v in {**full_budget, "seed": seed}.items() if k in SETTINGS}  # not train_n, test_n
    if epochs is not None:
        budget["epochs"] = epochs
    if precision != "fp32":   # recorded in the run's recipe only when it is not the reference
        budget["precision"] = precision
    if compile:
        budget["compile"] = compile
    config = TrainConfig.from_dict({"recipe": recipe, **budget, "eval_every": budget["epochs"], **options})
    seed_everything(seed)  # the initial weights too, as `python -m nslib train` does
    model = models.build(setting.arch, dataset=setting.dataset)
    start = time.time()
    train(model, data.load(setting.dataset, "train", limit=full_budget["train_n"], augment=setting.augment),
          config=config,
          out=folder, progress=False, device=device)
    seconds = time.time() - start
    model.eval()
    x, y = data.load(setting.dataset, "test").tensors(full_budget["test_n"])
    x, y = x.to(device), y.to(device)
    torch.manual_seed(0)
    eps = full_budget["eps"]
    x_adv = pgd(model, x, y, eps=eps, alpha=default_suite(eps)["pgd40"]["alpha"], steps=40)
    sens = layer_sensitivity(neuron_sensitivity(model, x, x_adv, defaults["layers"]))
    return {"name": name, "seed": seed, "knob": knob, "recipe": recipe, **settings,
            "clean_acc": accuracy(model, x, y), "pgd40_acc": accuracy(model, x_adv, y), "test_n": len(y),
            "sensitivity": {k: round(v, 4) for k, v in sens.items()}, "train_seconds": round(seconds)}


def write_sweep(records: list[dict], path: str | os.PathLike, setting: Setting = _MNIST) -> Path:
    """Merge ``records`` into the sweep file at ``path``: one record per (name, seed), a new one
    replacing the old (a missing ``seed`` reads as 0, ``record_seed``); kept in ``SETTINGS``
    order, then by seed. The file's ``budget`` is ``BUDGET`` (its ``seed`` is seed 0's; each
    record carries its own)."""
    path = Path(path)
    previous = json.loads(path.read_text())["runs"] if path.exists() else []
    merged = {(r["name"], record_seed(r)): r for r in previous + records}
    defaults, budget, settings = plan(setting)
    order = {name: i for i, (_, name, _) in enumerate(settings)}
    known = sorted((key for key in merged if key[0] in order), key=lambda key: (order[key[0]], key[1]))
    return atomic_write_text(path, json.dumps({"budget": budget, "default": defaults,
                                               "runs": [merged[key] for key in known]}, indent=1) + "\n")
