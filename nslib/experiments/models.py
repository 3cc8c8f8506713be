"""The four models every experiment compares (the setting of E1-E7, not an experiment itself).

The same CNN (``smallcnn``: 4 conv + 3 FC) trained four ways on the embedded mnist5k train
split: standard, PGD-AT, TRADES and SNS. ``SHIPPED_RECIPES`` is the one place their
training settings are written; ``scripts/train_shipped.py`` trains them from it into
``data/checkpoints/``, and each shipped checkpoint stores the recipe it was trained with.
``python -m nslib reproduce --full`` retrains them from those stored recipes
(``retrain_settings``) with the same function, ``retrain``.

Our choices: the robust models share SPEC.md's reference PGD-AT budget (40 epochs, PGD-10 at
eps 0.3 with step 2.5 eps / 10, eps ramped 0 -> 0.3 over the first 16 epochs, Adam 1e-3,
batch 100, seed 0); SNS constrains conv3, conv4 and fc1 with lambda 0.01 on the top 10 %
(at most 10) neurons per layer, CE on the adversarial input. The headline numbers are
``nslib.evaluation.headline_metrics`` (clean, FGSM and PGD-40 at eps 0.3).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from .. import data
from ..checkpoints import load_pretrained, pretrained_path, read_checkpoint, save_checkpoint
from ..utils import default_device, pgd_step, seed_everything
from .context import MODELS, Context, Result, data_file, short_name

__all__ = ["SHIPPED_ARCH", "SHIPPED_DATASET", "SHIPPED_RECIPES", "retrain_settings", "retrain", "run"]

#: The architecture and data set of the shipped models.
SHIPPED_ARCH, SHIPPED_DATASET = "smallcnn", "mnist5k"

_COMMON = {"lr": 1e-3, "optimizer": "adam", "weight_decay": 0.0, "batch_size": 100, "schedule": None,
           "eps": 0.3, "alpha": pgd_step(0.3, 10), "steps": 10, "seed": 0, "amp": False, "max_batches": None}
_ROBUST = {**_COMMON, "epochs": 40, "eps_warmup_epochs": 16.0}

#: ``train()`` keyword settings of the four shipped models (``recipe`` and ``epochs`` included):
#: ``nslib.training.TrainConfig.from_dict`` of each is the run's configuration.
SHIPPED_RECIPES: dict[str, dict] = {
    "mnist_standard": {"recipe": "standard", **_COMMON, "epochs": 10, "eps_warmup_epochs": 0},
    "mnist_pgd_at": {"recipe": "pgd_at", **_ROBUST},
    "mnist_trades": {"recipe": "trades", **_ROBUST, "beta": 6.0},
    "mnist_sns": {"recipe": "sns", **_ROBUST, "lam": 0.01, "layers": ["conv3", "conv4", "fc1"], "k": 0.1,
                  "max_k": 10, "topk_every": 0, "ce_on": "adv"},
}

def retrain_settings(name: str) -> dict:
    """``train()`` arguments of a shipped model, read from the recipe its checkpoint carries.

    Returns ``{"arch", "dataset", **recipe}`` without the provenance keys
    (``nslib.training.PROVENANCE``: the shell command and the number of processes).

    Example:
        >>> s = retrain_settings("mnist_pgd_at")
        >>> s["recipe"], s["epochs"], s["eps"], s["eps_warmup_epochs"]
        ('pgd_at', 40, 0.3, 16.0)
    """
    from ..training import PROVENANCE

    _, info = load_pretrained(name)  # sha256-checked
    recipe = {k: v for k, v in info["recipe"].items() if k not in PROVENANCE}
    return {"arch": info["arch"], "dataset": info["dataset"], **recipe}


def retrain(name: str, run_dir: str | Path, checkpoint: str | Path, settings: dict, *, device=None,
            progress: bool = True, n: int = 1000, seed: int = 0, command: str | None = None) -> Path:
    """Train a model from ``settings`` into ``run_dir`` (resumable), evaluate it, save ``checkpoint``.

    The weights are initialised after seeding with the recipe's seed, as ``python -m nslib
    train`` does. The checkpoint holds the run's recipe (plus ``command`` when given), the
    headline metrics (``nslib.evaluation.headline_metrics``) on the first ``n`` test images
    with the attacks' random start seeded by ``seed``, the training time and threads, and
    the per-epoch log.

    Args:
        name (str): the model's name, for messages.
        run_dir (path): the training run's folder; an interrupted run resumes from it.
        checkpoint (path): where the trained model is saved.
        settings (dict): ``{"arch", "dataset", **train() settings}`` (checked strictly by
            ``TrainConfig.from_dict``: an unknown key raises), e.g.
            ``retrain_settings(name)`` or ``{"arch": SHIPPED_ARCH, "dataset": SHIPPED_DATASET,
            **SHIPPED_RECIPES[name]}``.
        device (optional): Default: ``nslib.utils.default_device()``.
        n (int, optional): test images of the headline metrics. Default: ``1000``.

    Returns:
        Path: ``checkpoint``.
    """
    from ..evaluation import headline_metrics
    from ..models import build
    from ..training import TrainConfig, train

    settings = dict(settings)
    arch, dataset = settings.pop("arch"), settings.pop("dataset")
    config = TrainConfig.from_dict({**settings, "eval_n": min(500, n)})
    run_dir, device = Path(run_dir), torch.device(device) if device is not None else default_device()
    print(f"  training {name}: {config.recipe}, {config.epochs} epochs -> {run_dir}", flush=True)
    seed_everything(config.seed)
    model = build(arch, dataset=dataset)
    start = time.time()
    log = train(model, data.load(dataset, "train"), config=config, test_data=data.load(dataset, "test"),
                out=run_dir, device=device, progress=progress)
    seconds = round(time.time() - start)
    x, y = data.load(dataset, "test").tensors(n)
    metrics = headline_metrics(model.eval(), x.to(device), y.to(device), seed=seed)
    metrics.update(eval=f"{dataset} test ({len(y)}): FGSM eps 0.3; PGD-40 Linf eps 0.3 step 0.01 random start, "
                        f"seed {seed}", train_seconds=seconds, train_threads=torch.get_num_threads())
    stored = read_checkpoint(run_dir / "model.pt")["recipe"]
    if command is not None:
        stored = {**stored, "command": command}
    save_checkpoint(checkpoint, model, recipe=stored, metrics=metrics, log=log)
    return Path(checkpoint)


def _row(name: str, info: dict) -> dict:
    """The ``models.csv`` row of a checkpoint: its recipe's options and its headline metrics."""
    recipe, metrics = info["recipe"], info["metrics"]
    options = {"trades": f"beta {recipe.get('beta')}", "sns": (
        f"lambda {recipe.get('lam')}, k {recipe.get('k')}, layers {'+'.join(recipe.get('layers') or [])}")}
    return {"model": short_name(name), "recipe": recipe["recipe"], "options": options.get(recipe["recipe"], ""),
            "epochs": recipe["epochs"], "eps": recipe.get("eps"),
            **{k: metrics[k] for k in ("clean_acc", "fgsm_acc", "pgd40_acc")}}


def run(ctx: Context) -> Result:
    """The four models and their headline numbers: shipped (quick) or retrained from their recipes (full)."""
    rows = []
    for name in MODELS:
        if not ctx.quick:
            ctx.used_checkpoints[f"recipe of {name}"] = str(pretrained_path(name))
            ctx.uses(SHIPPED_DATASET, data_file(SHIPPED_DATASET))
            retrain(name, ctx.out / "runs" / name, ctx.out / "models" / f"{name}.pt", retrain_settings(name),
                    device=ctx.device, progress=ctx.progress, n=ctx.n, seed=ctx.seed)
        ctx.model(name)
        rows.append(_row(name, ctx.checkpoint_info(name)))
        print(f"  {rows[-1]['model']:8s} clean {rows[-1]['clean_acc']:.3f}  FGSM {rows[-1]['fgsm_acc']:.3f}  "
              f"PGD-40 {rows[-1]['pgd40_acc']:.3f}")
    where = ("the shipped checkpoints (data/checkpoints/, 1,000 test images)" if ctx.quick else
             f"retrained here from the shipped recipes ({ctx.n} test images)")
    finding = ("The four models of the same CNN, " + where + ": "
               + "; ".join(f"{r['model']} {r['clean_acc']:.1%} clean, {r['pgd40_acc']:.1%} under PGD-40 at ε = 0.3"
                           for r in rows) + " (`models.csv`).")
    return Result(finding, {"models.csv": rows})
