"""One training loop, four recipes: standard, PGD-AT, TRADES and SNS.

``train(model, train_data, recipe, epochs, ...)`` runs a plain loop; a *recipe* is a
small function computing the loss of one batch, looked up by name in ``RECIPES``:

* ``"standard"``: ``CE(f(x), y)``.
* ``"pgd_at"`` (Madry et al., 2018): ``CE(f(x'), y)`` with ``x'`` from PGD against the
  current model.
* ``"trades"`` (Zhang et al., 2019): ``CE(f(x), y) + beta * KL(f(x) || f(x'))`` with
  ``x'`` maximising the KL term by PGD started at ``x + 0.001 * N(0, I)``.
* ``"sns"`` (Sensitive Neuron Stabilizing, Zhang et al., 2021; SPEC.md)::

      L = CE + lambda * sum_{l in L} sum_{i in topk_l} (1/dim) ||F_l^i(x) - F_l^i(x')||_1 / batch

  with ``x'`` from PGD against the current model.

Nothing is lost: with ``out=`` the loop writes ``out/last.pt`` atomically after every
epoch (model, optimizer, scheduler, grad scaler, RNG states, log) and resumes from it
when started again with the same command, ending with the same weights as a run that
was never interrupted. A non-finite loss stops the run with ``FloatingPointError``,
keeping the last good checkpoint. Taught in ``notebooks/04_robust_training_and_sns.ipynb``.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from .attacks import pgd
from .attacks.base import attack_context, project_linf
from .checkpoints import atomic_save, save_checkpoint
from .data import make_loader
from .hooks import capture
from .sensitivity import layer_sensitivity, neuron_distance, neuron_sensitivity, sensitive_neurons
from .utils import default_device, seed_everything

__all__ = ["train", "RECIPES", "standard_loss", "pgd_at_loss", "trades_loss", "sns_loss",
           "sns_layers", "ramp", "NonFiniteLossError"]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the epoch, the step and the kept checkpoint."""


# --------------------------------------------------------------------------- recipes
# Every recipe is ``recipe(model, x, y, *, net, eps, alpha, steps, state, **options)``
# and returns ``(loss, stats)``: ``model`` is what the loss's forward passes go through
# (maybe a DistributedDataParallel wrapper), ``net`` the plain module the attack uses,
# ``eps``/``alpha`` this step's (ramped) budget, ``state`` a dict kept across steps and
# checkpointed, ``stats`` a dict of floats averaged over the epoch for the log.


def standard_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **_: Any):
    """Standard training: ``CE(f(x), y)``."""
    return F.cross_entropy(model(x), y), {}


def pgd_at_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, net: nn.Module,
                eps: float, alpha: float, steps: int, **_: Any):
    """PGD adversarial training (Madry et al., 2018, arXiv 1706.06083): ``CE(f(x'), y)``.

    ``x' = PGD(x)`` (Linf, random start, ``steps`` steps of ``alpha``) against the
    current model, made with the model in eval mode (``nslib.attacks.pgd``).
    """
    x_adv = _pgd(net, x, y, eps, alpha, steps)
    return F.cross_entropy(model(x_adv), y), {}


def trades_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, net: nn.Module,
                eps: float, alpha: float, steps: int, beta: float = 6.0, **_: Any):
    """TRADES (Zhang et al., 2019, arXiv 1901.08573): ``CE(f(x), y) + beta * KL(f(x) || f(x'))``.

    ``x'`` maximises ``KL(softmax f(x) || softmax f(x'))`` over the Linf eps-ball by
    ``steps`` signed-gradient steps of ``alpha``, started at ``x + 0.001 * N(0, I)``, with
    the model in eval mode, as the authors' code. The KL term is summed over classes and
    averaged over the batch.

    Args:
        beta (float, optional): weight of the robustness (KL) term. Default: ``6.0``
            (the authors' CIFAR-10 value; they use 1.0 on MNIST).
    """
    x_adv = _trades_attack(net, x, eps, alpha, steps)
    logits, logits_adv = _two_forwards(model, x, x_adv)
    natural = F.cross_entropy(logits, y)
    robust = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits, dim=1),
                      reduction="batchmean")
    return natural + beta * robust, {"ce": natural.item(), "kl": robust.item()}


def sns_layers(model: nn.Module) -> list[str]:
    """The default constrained layers of SNS (ours).

    ``smallcnn``: ``["conv3", "conv4", "fc1"]``, the last two conv layers and the first
    fully connected one. Deep layers are where standard and robust models differ most
    in neuron sensitivity (E1), while the first layers' change is set almost entirely by
    eps and the logit layer's by the CE term itself. Other models: the last three
    ``Conv2d``/``Linear`` layers before the logit layer.
    """
    if getattr(model, "arch", None) == "smallcnn":
        return ["conv3", "conv4", "fc1"]
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return names[:-1][-3:]


def sns_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, net: nn.Module,
             eps: float, alpha: float, steps: int, state: dict,
             lam: float = 0.01, layers: Iterable[str] | None = None, k: int | float = 0.1,
             max_k: int | None = 10, topk_every: int = 0, momentum: float = 0.9,
             ce_on: str = "adv", **_: Any):
    """Sensitive Neuron Stabilizing (SPEC.md; Zhang et al., 2021, arXiv 1909.06978).

    ``L = CE + lam * sum_{l in layers} sum_{i in topk_l} (1/dim)||F_l^i(x) - F_l^i(x')||_1 / batch``

    with ``x' = PGD(x)`` against the current model (the same attack as ``pgd_at``). The
    activations of ``x`` and ``x'`` are captured with graph-keeping hooks during the two
    forward passes the loss needs anyway (one on ``x'`` for the CE, one on ``x``), so an
    SNS step costs PGD-AT's plus one forward (and its backward) on ``x``.

    Args (the open choices of SNS, all ours):
        lam (float, optional): the penalty weight lambda. Default: ``0.01``.
        layers (list of str, optional): constrained layers. Default: :func:`sns_layers`.
        k (int or float, optional): top-k per layer, a count or a fraction of the layer's
            neurons (as :func:`nslib.sensitivity.sensitive_neurons`). Default: ``0.1``.
        max_k (int, optional): cap on a fractional k. Default: ``10`` (the authors' code:
            10 %, at most 10).
        topk_every (int, optional): ``0`` picks the top-k of every batch from that
            batch's own (detached) sensitivity; ``n > 0`` picks them every ``n`` steps from
            a running (exponential moving average) estimate. Default: ``0``.
        momentum (float, optional): EMA momentum of the running estimate. Default: ``0.9``.
        ce_on (str, optional): ``"adv"`` (CE on ``x'``, as PGD-AT, against which SNS is
            judged), ``"clean"`` (CE on ``x``) or ``"both"`` (the mean of the two).
            Default: ``"adv"``.
    """
    if ce_on not in ("adv", "clean", "both"):
        raise ValueError(f"ce_on must be 'adv', 'clean' or 'both', got {ce_on!r}.")
    names = list(layers) if layers is not None else sns_layers(net)
    x_adv = _pgd(net, x, y, eps, alpha, steps)
    with capture(net, names, detach=False) as store:
        logits, logits_adv = _two_forwards(model, x, x_adv, store=store)
    if ce_on == "adv":
        ce = F.cross_entropy(logits_adv, y)
    elif ce_on == "clean":
        ce = F.cross_entropy(logits, y)
    else:
        ce = 0.5 * (F.cross_entropy(logits, y) + F.cross_entropy(logits_adv, y))
    penalty = logits.new_zeros(())
    stats = {"ce": ce.item()}
    step = state.get("step", 0)
    for name in names:
        clean, adv = store["clean"][name], store["adv"][name]
        dist = neuron_distance(clean.float(), adv.float())          # (N, neurons)
        sigma = dist.detach().mean(0)
        if topk_every:
            ema = state.setdefault("sigma", {})
            ema[name] = sigma.cpu() if name not in ema else momentum * ema[name] + (1 - momentum) * sigma.cpu()
            chosen = state.setdefault("chosen", {})
            if step % topk_every == 0 or name not in chosen:
                chosen[name] = sensitive_neurons({name: ema[name]}, k, max_k)[name]
            index = chosen[name]
        else:
            index = sensitive_neurons({name: sigma}, k, max_k)[name]
        term = dist[:, index.to(dist.device)].sum() / x.shape[0]
        penalty = penalty + term
        stats[f"sens_{name}"] = sigma.mean().item()
    state["step"] = step + 1
    stats["penalty"] = penalty.item()
    return ce + lam * penalty, stats


RECIPES: dict[str, Callable] = {
    "standard": standard_loss,
    "pgd_at": pgd_at_loss,
    "trades": trades_loss,
    "sns": sns_loss,
}
ADVERSARIAL = ("pgd_at", "trades", "sns")


def _pgd(net, x, y, eps, alpha, steps):
    if eps == 0:
        return x
    return pgd(net, x, y, eps=eps, alpha=alpha, steps=steps, random_start=True)


def _trades_attack(net: nn.Module, x: torch.Tensor, eps: float, alpha: float, steps: int) -> torch.Tensor:
    if eps == 0:
        return x
    with attack_context(net):
        with torch.no_grad():
            p_clean = F.softmax(net(x), dim=1)
        x_adv = (x + 0.001 * torch.randn_like(x)).clamp(0, 1).detach()
        for _ in range(steps):
            x_adv.requires_grad_(True)
            kl = F.kl_div(F.log_softmax(net(x_adv), dim=1), p_clean, reduction="sum")
            grad, = torch.autograd.grad(kl, x_adv)
            x_adv = project_linf(x_adv.detach() + alpha * grad.sign(), x, eps)
    return x_adv


def _two_forwards(model, x, x_adv, store: dict | None = None):
    """Logits on ``x`` and ``x'``; with ``store`` (a capture dict) also each pass's activations.

    ``store`` is replaced by ``{"clean": {...}, "adv": {...}}`` copies of the captured dict.
    """
    logits_adv = model(x_adv)
    adv_acts = dict(store) if store is not None else None
    logits = model(x)
    if store is not None:
        clean_acts = dict(store)
        store.clear()
        store.update(clean=clean_acts, adv=adv_acts)
    return logits, logits_adv


def ramp(eps: float, epoch: int, step: int, steps_per_epoch: int, warmup_epochs: float) -> float:
    """Linear eps warm-up: ``eps * min(1, (epoch + (step + 1) / steps_per_epoch) / warmup_epochs)``.

    ``epoch`` and ``step`` count from 0; ``warmup_epochs = 0`` means no ramp.

    Example:
        >>> ramp(0.3, 0, 49, 100, 16)  # half-way through the first of 16 epochs
        0.009375
    """
    if warmup_epochs <= 0:
        return eps
    return eps * min(1.0, (epoch + (step + 1) / steps_per_epoch) / warmup_epochs)


# --------------------------------------------------------------------------- helpers


def _as_dataset(data, name: str) -> Dataset:
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        return TensorDataset(data[0], data[1])
    raise TypeError(f"{name} must be a Dataset (e.g. nslib.data.load('mnist5k', 'train')) or an "
                    f"(images, labels) pair of tensors, got {type(data).__name__}.")


def _first(dataset: Dataset, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    if hasattr(dataset, "tensors") and callable(dataset.tensors):
        return dataset.tensors(n)
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[0][:n], dataset.tensors[1][:n]
    items = [dataset[i] for i in range(min(n, len(dataset)))]
    return torch.stack([a for a, _ in items]), torch.as_tensor([b for _, b in items])


def _default_eps(dataset: Dataset, x: torch.Tensor | None = None) -> float:
    info = getattr(dataset, "info", None)
    channels = info.channels if info is not None else (x.shape[1] if x is not None else 1)
    return 0.3 if channels == 1 else 8 / 255


def _rng_state() -> dict:
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


def _set_rng_state(state: dict) -> None:
    random.setstate(_tuplify(state["python"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuplify(value):
    return tuple(_tuplify(v) for v in value) if isinstance(value, (list, tuple)) else value


def _make_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose 'adam' or 'sgd'.")


def _make_schedule(schedule, optimizer, epochs: int):
    """Stepped once per epoch."""
    if schedule is None or schedule == "none":
        return None
    if callable(schedule):
        return schedule(optimizer)
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if schedule == "multistep":
        milestones = sorted({max(1, int(epochs * 0.5)), max(1, int(epochs * 0.75))})
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    raise ValueError(f"unknown schedule {schedule!r}; choose None, 'cosine', 'multistep' or a "
                     "callable(optimizer) -> torch.optim.lr_scheduler object.")


def _distributed() -> tuple[int, int, int]:
    """``(rank, local_rank, world_size)`` from torchrun's environment, ``(0, 0, 1)`` without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 0, 1
    return int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world


def evaluate_epoch(net: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int,
                   layers: list[str] | None, batch_size: int = 250) -> dict:
    """Clean and PGD accuracy (and layer sensitivity of ``layers``) on ``(x, y)``, eval mode.

    PGD: Linf, ``steps`` steps of ``2.5 * eps / steps``, random start. Sensitivity: the
    layer mean of ``sigma_l^i`` between ``x`` and these PGD examples.
    """
    device = next(net.parameters()).device
    correct = robust = 0
    advs = []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            xb, yb = x[start:start + batch_size].to(device), y[start:start + batch_size].to(device)
            correct += (net(xb).argmax(1) == yb).sum().item()
            xa = pgd(net, xb, yb, eps=eps, alpha=2.5 * eps / steps, steps=steps)
            robust += (net(xa).argmax(1) == yb).sum().item()
            advs.append(xa)
    record = {"clean_acc": correct / x.shape[0], "robust_acc": robust / x.shape[0]}
    if layers:
        sens = neuron_sensitivity(net, x.to(device), torch.cat(advs), layers, batch_size=batch_size)
        record["sensitivity"] = layer_sensitivity(sens)
    return record


# --------------------------------------------------------------------------- the loop


def train(model: nn.Module, train_data, recipe: str = "standard", epochs: int = 10, *,
          test_data=None, lr: float = 1e-3, optimizer: str = "adam", weight_decay: float = 0.0,
          batch_size: int = 100, schedule=None, eps: float | None = None,
          alpha: float | None = None, steps: int = 10, eps_warmup_epochs: float = 0,
          seed: int = 0, out: str | os.PathLike | None = None, device=None, amp: bool = False,
          progress: bool = True, eval_every: int = 1, eval_n: int = 500, eval_steps: int = 20,
          callbacks: Iterable[Callable] = (), max_batches: int | None = None,
          **recipe_kwargs: Any) -> list[dict]:
    """Train ``model`` in place with a recipe; return the per-epoch log.

    Recipes (``RECIPES``): ``"standard"`` ``CE(f(x), y)``; ``"pgd_at"`` ``CE(f(x'), y)``;
    ``"trades"`` ``CE(f(x), y) + beta KL(f(x)||f(x'))``; ``"sns"``
    ``CE + lambda sum_l sum_{i in topk_l} (1/dim)||F_l^i(x) - F_l^i(x')||_1 / batch``.
    ``x'`` is made on the fly against the current model by Linf PGD (random start,
    ``steps`` steps of ``alpha``) within ``eps``, ramped linearly from 0 over the first
    ``eps_warmup_epochs`` epochs (``alpha`` scales with it).

    Args:
        model (nn.Module): e.g. ``nslib.models.build("smallcnn")``; trained in place.
        train_data (Dataset or (x, y)): training set, e.g. ``nslib.data.load("mnist5k")``.
        recipe (str, optional): ``"standard"``, ``"pgd_at"``, ``"trades"`` or ``"sns"``.
            Default: ``"standard"``.
        epochs (int, optional): total epochs (a resumed run continues up to it). Default: ``10``.
        test_data (Dataset or (x, y), optional): its first ``eval_n`` examples give the
            per-epoch clean and robust accuracy. Default: ``None`` (no evaluation).
        lr (float, optional): learning rate. Default: ``1e-3``.
        optimizer (str, optional): ``"adam"`` or ``"sgd"`` (momentum 0.9). Default: ``"adam"``.
        weight_decay (float, optional): Default: ``0.0``.
        batch_size (int, optional): global batch size (split across processes under
            ``torchrun``). Default: ``100``.
        schedule (str or callable, optional): ``None``, ``"cosine"``, ``"multistep"`` (x0.1
            at 50 % and 75 %) or ``callable(optimizer) -> scheduler``; stepped per epoch.
            Default: ``None``.
        eps (float, optional): Linf budget of ``x'`` and of the robust evaluation. Default:
            ``0.3`` for 1-channel data (MNIST), ``8/255`` otherwise.
        alpha (float, optional): PGD step size at full eps. Default: ``2.5 * eps / steps``
            (Madry et al.).
        steps (int, optional): PGD steps when training. Default: ``10``.
        eps_warmup_epochs (float, optional): epochs of the linear eps ramp. Default: ``0``.
        seed (int, optional): seeds everything (``nslib.utils.seed_everything``) and the
            shuffling of epoch ``e`` (``seed * 1000 + e``). Default: ``0``.
        out (path, optional): run folder: ``last.pt`` every epoch, ``log.jsonl``,
            ``model.pt`` at the end; an existing ``last.pt`` is resumed. Default: ``None``.
        device (optional): Default: ``nslib.utils.default_device()``.
        amp (bool, optional): mixed precision (CUDA only; ignored with a note on CPU).
            Default: ``False``.
        progress (bool, optional): a tqdm bar per epoch and one printed line per epoch
            (the full log is returned and written to ``out/log.jsonl`` either way). Default: ``True``.
        eval_every (int, optional): evaluate every this many epochs (and the last). Default: ``1``.
        eval_n (int, optional): test examples for the per-epoch evaluation. Default: ``500``.
        eval_steps (int, optional): PGD steps of the per-epoch robust accuracy. Default: ``20``.
        callbacks (list of callables, optional): each called as ``cb(epoch, record, model)``
            after an epoch's checkpoint is written. Default: none.
        max_batches (int, optional): stop each epoch after this many batches (quick runs).
            Default: ``None``.
        **recipe_kwargs: the recipe's own options, e.g. ``beta`` (trades); ``lam``,
            ``layers``, ``k``, ``max_k``, ``topk_every``, ``ce_on`` (sns, see :func:`sns_loss`).

    Returns:
        list of dict: one record per epoch: ``epoch``, ``loss``, ``lr``, ``eps``,
        ``time_s``, recipe statistics, and (when evaluated) ``clean_acc``,
        ``robust_acc`` and ``sensitivity`` (layer mean per layer).

    Raises:
        NonFiniteLossError (a FloatingPointError): the loss became NaN or infinite.

    Example:
        >>> model = nslib.models.build("smallcnn")                                 # doctest: +SKIP
        >>> log = train(model, nslib.data.load("mnist5k"), "pgd_at", 40, eps=0.3,   # doctest: +SKIP
        ...             eps_warmup_epochs=16, out="runs/pgd_at")
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {sorted(RECIPES)}.")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}.")
    rank, local_rank, world = _distributed()
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and device != "cpu" else "gloo"
        torch.distributed.init_process_group(backend)
    if device is None:
        device = torch.device(f"cuda:{local_rank}") if world > 1 and torch.cuda.is_available() else default_device()
    device = torch.device(device)
    if amp and device.type != "cuda":
        print("note: amp=True is ignored on the CPU (mixed precision is CUDA-only here).")
        amp = False
    is_main = rank == 0

    train_set = _as_dataset(train_data, "train_data")
    test_set = _as_dataset(test_data, "test_data") if test_data is not None else None
    eval_xy = _first(test_set, eval_n) if test_set is not None and eval_n else None
    if eps is None:
        eps = _default_eps(train_set, eval_xy[0] if eval_xy else None)
    alpha_full = alpha if alpha is not None else 2.5 * eps / steps
    loss_fn = RECIPES[recipe]
    sens_names = (list(recipe_kwargs["layers"]) if recipe_kwargs.get("layers") else sns_layers(model))
    config = {"recipe": recipe, "epochs": epochs, "lr": lr, "optimizer": optimizer,
              "weight_decay": weight_decay, "batch_size": batch_size,
              "schedule": schedule if isinstance(schedule, (str, type(None))) else repr(schedule),
              "eps": eps, "alpha": alpha_full, "steps": steps, "eps_warmup_epochs": eps_warmup_epochs,
              "seed": seed, "amp": amp, "world_size": world, "max_batches": max_batches,
              **{k: (list(v) if isinstance(v, tuple) else v) for k, v in recipe_kwargs.items()}}

    seed_everything(seed)
    model.to(device)
    net = model
    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)
    opt = _make_optimizer(optimizer, net.parameters(), lr, weight_decay)
    scheduler = _make_schedule(schedule, opt, epochs)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    state: dict = {}
    log: list[dict] = []
    start_epoch = 0

    out = Path(out) if out is not None else None
    last = out / "last.pt" if out is not None else None
    if last is not None and last.exists():
        ckpt = torch.load(last, map_location="cpu", weights_only=True)
        _check_resume(ckpt["config"], config, last)
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt.get("scheduler") is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        state = ckpt["state"]
        log = ckpt["log"]
        start_epoch = ckpt["epoch"]
        _set_rng_state(ckpt["rng"])
        if is_main:
            print(f"resuming from epoch {start_epoch} ({last})")

    sampler = None
    if world > 1:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=seed)
    for epoch in range(start_epoch, epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
            loader = torch.utils.data.DataLoader(train_set, batch_size=max(1, batch_size // world),
                                                 sampler=sampler)
        else:
            loader = make_loader(train_set, batch_size, shuffle=True, seed=seed * 1000 + epoch)
        n_batches = len(loader) if max_batches is None else min(len(loader), max_batches)
        bar = None
        if progress and is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=n_batches, desc=f"{recipe} epoch {epoch + 1}/{epochs}", unit="batch",
                       leave=False)
        model.train()
        started = time.perf_counter()
        total, seen, sums = 0.0, 0, {}
        eps_now = eps
        for step, (x, y) in enumerate(loader):
            if step >= n_batches:
                break
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            eps_now = ramp(eps, epoch, step, n_batches, eps_warmup_epochs)
            alpha_now = alpha_full * (eps_now / eps) if eps > 0 else alpha_full
            with torch.autocast(device.type, enabled=amp):
                loss, stats = loss_fn(model, x, y, net=net, eps=eps_now, alpha=alpha_now,
                                      steps=steps, state=state, **recipe_kwargs)
            if not torch.isfinite(loss):
                kept = (f"the last good checkpoint is kept at {last} (epoch {start_epoch})"
                        if last is not None and last.exists() else "no checkpoint was written yet")
                raise NonFiniteLossError(
                    f"the {recipe} loss is {loss.item()} at epoch {epoch + 1}, step {step + 1}; training "
                    f"stopped and {kept}. Lower the learning rate (now {lr}) or check the data.")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            total += loss.item() * x.shape[0]
            seen += x.shape[0]
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + value * x.shape[0]
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{total / seen:.4f}", eps=f"{eps_now:.3f}")
        if bar is not None:
            bar.close()
        record = {"epoch": epoch + 1, "loss": total / max(seen, 1), "lr": opt.param_groups[0]["lr"],
                  "eps": eps_now, **{k: v / max(seen, 1) for k, v in sums.items()}}
        if scheduler is not None:
            scheduler.step()
        record["time_s"] = time.perf_counter() - started
        if eval_xy is not None and is_main and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs):
            devices = [device.index or 0] if device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):  # evaluation leaves the training RNG alone
                torch.manual_seed(seed + 12345)
                record.update(evaluate_epoch(net, *eval_xy, eps=eps, steps=eval_steps,
                                             layers=sens_names))
        log.append(record)
        start_epoch = epoch + 1
        if is_main:
            if progress:  # quiet with progress=False, so notebook outputs stay comparable
                print(_format_record(record))
            if out is not None:
                atomic_save({"model": net.state_dict(), "optimizer": opt.state_dict(),
                             "scheduler": scheduler.state_dict() if scheduler is not None else None,
                             "scaler": scaler.state_dict(), "rng": _rng_state(), "state": state,
                             "epoch": epoch + 1, "log": log, "config": config}, last)
                with open(out / "log.jsonl", "w") as fh:
                    fh.writelines(json.dumps(r) + "\n" for r in log)
        for callback in callbacks:
            callback(epoch + 1, record, net)

    if is_main and out is not None:
        metrics = {k: log[-1][k] for k in ("clean_acc", "robust_acc") if log and k in log[-1]}
        if metrics:
            metrics["eval_n"] = min(eval_n, len(test_set))
            metrics["eval_attack"] = f"PGD-{eval_steps} eps {eps} step {2.5 * eps / eval_steps:g}"
        save_checkpoint(out / "model.pt", net, recipe=config, metrics=metrics,
                        log=log)
    if world > 1:
        torch.distributed.barrier()
    net.eval()
    return log


_RESUME_FREE = ("epochs",)


def _check_resume(saved: dict, current: dict, path: Path) -> None:
    diff = {k: (saved.get(k), current.get(k)) for k in set(saved) | set(current)
            if k not in _RESUME_FREE and saved.get(k) != current.get(k)}
    if diff:
        raise ValueError(f"{path} was written by a run with other settings {diff} "
                         "(saved, now); resume with the same settings or use another out folder.")


def _format_record(record: dict) -> str:
    parts = [f"epoch {record['epoch']}", f"loss {record['loss']:.4f}"]
    for key in ("clean_acc", "robust_acc"):
        if key in record:
            parts.append(f"{key} {record[key]:.3f}")
    if "sensitivity" in record:
        parts.append("sens " + " ".join(f"{k}={v:.3f}" for k, v in record["sensitivity"].items()))
    parts.append(f"{record['time_s']:.1f}s")
    return " | ".join(parts)
