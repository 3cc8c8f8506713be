"""One training loop, four recipes (standard, PGD-AT, TRADES, SNS), one configuration object.

``train(model, train_data, recipe, epochs, ...)`` runs a plain loop; a *recipe* is a
small function computing the loss of one batch, looked up by name in ``RECIPES``
(``nslib.recipes``, where the equations are):

* ``"standard"``: ``CE(f(x), y)``.
* ``"pgd_at"`` (Madry et al., 2018): ``CE(f(x'), y)``.
* ``"trades"`` (Zhang et al., 2019): ``CE(f(x), y) + beta * KL(f(x) || f(x'))``.
* ``"sns"`` (Sensitive Neuron Stabilizing, Zhang et al., 2021; ``docs/experiments.md#sns-loss``)::

      L = CE + lambda * sum_{l in L} sum_{i in topk_l} (1/dim) ||F_l^i(x) - F_l^i(x')||_1 / batch

Every setting of a run is a field of :class:`TrainConfig` (``nslib.trainconfig``), its default written there
once; ``train``'s keywords, the command line (``python -m nslib train``) and the
``recipe`` dict of a checkpoint are the same settings, and an unknown one is an error.

Nothing is lost: with ``out=`` the loop writes ``out/last.pt`` atomically after every
epoch (``nslib.runstate``) and resumes from it when started again with the same command,
ending with the same weights as a run that was never interrupted. A non-finite loss
stops the run with ``NonFiniteLossError``, keeping the last good checkpoint. Under
``torchrun`` it trains with DistributedDataParallel (``nslib.distributed``). Taught in
lesson 04 (``04_robust_training_and_sns.ipynb``).
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from .attacks import pgd
from .checkpoints import save_checkpoint
from .distributed import barrier, epoch_loader, start_process_group, torchrun_env, train_device, wrap_model
from .precision import autocast, compiled, prepare_model
from .recipes import RECIPES, pgd_at_loss, sns_layers, sns_loss, standard_loss, trades_loss
from .runstate import RunState, load_last, save_last, write_log
from .sensitivity import layer_sensitivity, neuron_sensitivity
from .trainconfig import OPTIMIZERS, PROVENANCE, SCHEDULES, SETTINGS, TrainConfig
from .utils import default_eps, model_device, pgd_step, seed_everything

__all__ = ["train", "TrainConfig", "RECIPES", "standard_loss", "pgd_at_loss", "trades_loss", "sns_loss",
           "sns_layers", "ramp", "evaluate_epoch", "NonFiniteLossError", "OPTIMIZERS", "SCHEDULES", "SETTINGS",
           "PROVENANCE"]


def train(model: nn.Module, train_data, recipe: str | None = None, epochs: int | None = None, *,
          test_data=None, out: str | os.PathLike | None = None, device=None, progress: bool = True,
          callbacks: Iterable[Callable] = (), config: TrainConfig | None = None, **settings: Any) -> list[dict]:
    """Train ``model`` in place with a recipe; return the per-epoch log.

    ``x'`` is made on the fly against the current model by Linf PGD (random start,
    ``steps`` steps of ``alpha``) within ``eps``, ramped linearly from 0 over the first
    ``eps_warmup_epochs`` epochs (``alpha`` scales with it); see :class:`TrainConfig`.

    Args:
        model (nn.Module): e.g. ``nslib.models.build("smallcnn")``; trained in place.
        train_data (Dataset or (x, y)): training set, e.g. ``nslib.data.load("mnist5k")``.
        recipe (str, optional): ``"standard"``, ``"pgd_at"``, ``"trades"`` or ``"sns"``.
            Default: ``config``'s, else ``TrainConfig.recipe`` (``"standard"``).
        epochs (int, optional): total epochs (a resumed run continues up to it). Default:
            ``config``'s, else ``TrainConfig.epochs`` (``10``).
        test_data (Dataset or (x, y), optional): its first ``eval_n`` examples give the
            per-epoch clean and robust accuracy. Default: ``None`` (no evaluation).
        out (path, optional): run folder: ``last.pt`` every epoch, ``log.jsonl``,
            ``model.pt`` at the end; an existing ``last.pt`` is resumed. Default: ``None``.
        device (optional): Default: ``nslib.utils.default_device()`` (this process's GPU
            under torchrun).
        progress (bool, optional): a tqdm bar per epoch and one printed line per epoch
            (the full log is returned and written to ``out/log.jsonl`` either way). Default: ``True``.
        callbacks (list of callables, optional): each called as ``cb(epoch, record, model)``
            after an epoch's checkpoint is written. Default: none.
        config (TrainConfig, optional): the settings; ``recipe``, ``epochs`` and
            ``**settings`` override its fields. Default: ``TrainConfig()``.
        **settings: any :class:`TrainConfig` field (``lr``, ``eps``, ``seed``, ...) or an
            option of the recipe (``beta`` for trades; ``lam``, ``layers``, ``k``, ...
            for sns, see :func:`nslib.recipes.sns_loss`). Anything else raises ``ValueError``.

    Returns:
        list of dict: one record per epoch: ``epoch``, ``loss``, ``lr``, ``eps``,
        ``time_s``, recipe statistics, and (when evaluated) ``clean_acc``,
        ``robust_acc`` and ``sensitivity`` (layer mean per layer).

    Raises:
        ValueError: an unknown recipe, setting or recipe option (before any training).
        NonFiniteLossError (a FloatingPointError): the loss became NaN or infinite.

    Example:
        >>> model = nslib.models.build("smallcnn")                                 # doctest: +SKIP
        >>> log = train(model, nslib.data.load("mnist5k"), "pgd_at", 40, eps=0.3,   # doctest: +SKIP
        ...             eps_warmup_epochs=16, out="runs/pgd_at")
    """
    config = _settle_config(config, recipe, epochs, settings)
    rank, local_rank, world = torchrun_env()
    start_process_group(world, device)
    device = train_device(device, local_rank, world)
    if config.precision != "fp32" and device.type != "cuda":
        warnings.warn(f"precision={config.precision!r} is for CUDA GPUs; training on the CPU in fp32 instead.",
                      stacklevel=2)
        config = replace(config, precision="fp32")
    train_set = _as_dataset(train_data, "train_data")
    test_set = _as_dataset(test_data, "test_data") if test_data is not None else None
    eval_xy = _first(test_set, config.eval_n) if test_set is not None and config.eval_n else None
    config = _with_attack_defaults(config, train_set, eval_xy)
    layers = list(config.eval_layers or config.options.get("layers") or sns_layers(model))  # logged sensitivity
    seed_everything(config.seed)
    model.to(device)
    prepare_model(model, config.precision)   # channels_last in place under bf16/fp16
    run = _new_run(model, config)
    last = Path(out) / "last.pt" if out is not None else None
    if last is not None and last.exists():
        load_last(last, run, config.to_dict(world))
        if rank == 0:
            print(f"resuming from epoch {run.epoch} ({last})")
    # compiled in place: the attack, the loss's forward passes (through DDP) and the evaluation alike
    with compiled(model, config.compile, device):
        forward = wrap_model(model, device, world)
        for epoch in range(run.epoch, config.epochs):
            loader = epoch_loader(train_set, config.batch_size, seed=config.seed, epoch=epoch, rank=rank,
                                  world=world)
            record = _train_epoch(forward, run, loader, config, epoch, device, show_bar=progress and rank == 0,
                                  last=last)
            due = (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs  # and always the last epoch
            if eval_xy is not None and rank == 0 and due:
                record.update(_evaluate_forked(run.net, eval_xy, config, device, layers))
            run.log.append(record)
            run.epoch = epoch + 1
            if rank == 0:
                _report_epoch(record, run, config.to_dict(world), out, progress)
            for callback in callbacks:
                callback(epoch + 1, record, run.net)
    if rank == 0 and out is not None:
        _save_model(Path(out) / "model.pt", run, config, world, test_set)
    barrier(world)
    model.eval()
    return run.log


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


def evaluate_epoch(net: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int,
                   layers: list[str] | None, batch_size: int = 250) -> dict:
    """Clean and PGD accuracy (and layer sensitivity of ``layers``) on ``(x, y)``, eval mode.

    PGD: Linf, ``steps`` steps of ``nslib.utils.pgd_step(eps, steps)`` (``2.5 * eps / steps``),
    random start. Sensitivity: the layer mean of ``sigma_l^i`` between ``x`` and these
    PGD examples (``nslib.sensitivity.layer_sensitivity``).

    Args:
        net (nn.Module): the model (its device is used).
        x (Tensor): images ``(N, C, H, W)`` in [0, 1].
        y (Tensor): labels ``(N,)``.
        eps (float): Linf budget.
        steps (int): PGD steps.
        layers (list of str or None): layers whose sensitivity is measured; none if empty.
        batch_size (int, optional): Default: ``250``.

    Returns:
        dict: ``clean_acc``, ``robust_acc`` and (with ``layers``) ``sensitivity`` ``{layer: mean sigma}``.
    """
    device = model_device(net)
    correct = robust = 0
    advs = []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            xb, yb = x[start:start + batch_size].to(device), y[start:start + batch_size].to(device)
            correct += (net(xb).argmax(1) == yb).sum().item()
            xa = pgd(net, xb, yb, eps=eps, alpha=pgd_step(eps, steps), steps=steps)
            robust += (net(xa).argmax(1) == yb).sum().item()
            advs.append(xa)
    record = {"clean_acc": correct / x.shape[0], "robust_acc": robust / x.shape[0]}
    if layers:
        sens = neuron_sensitivity(net, x.to(device), torch.cat(advs), layers, batch_size=batch_size)
        record["sensitivity"] = layer_sensitivity(sens)
    return record


# --------------------------------------------------------------------------- the loop's parts


def _train_epoch(model: nn.Module, run: RunState, loader, config: TrainConfig, epoch: int,
                 device: torch.device, *, show_bar: bool, last: Path | None) -> dict:
    """One epoch: a step per batch (at most ``max_batches``), then the scheduler; return its log record.

    ``model`` is what the forward passes go through (``run.net`` or its DDP wrapper).
    The record holds the sample-weighted mean loss and recipe statistics, the learning
    rate the epoch used, the last eps of the ramp and the epoch's time (no evaluation).

    The steps never wait for the device: the loss, the statistics and a non-finite loss's
    first step are kept on it (:class:`_EpochSums`) and read once, at the end of the epoch
    (and at most once a second for the progress bar). A non-finite loss then raises
    ``NonFiniteLossError`` naming the first such step; the weights in memory are spoilt by
    then, and ``last.pt`` (the previous epoch's) is the last good state.
    """
    n_batches = len(loader) if config.max_batches is None else min(len(loader), config.max_batches)
    bar = _progress_bar(config, epoch, n_batches) if show_bar else None
    model.train()
    started = time.perf_counter()
    sums = _EpochSums(device)
    eps_now, shown = config.eps, started
    for step, (x, y) in enumerate(loader):
        if step >= n_batches:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        eps_now = ramp(config.eps, epoch, step, n_batches, config.eps_warmup_epochs)
        loss, stats = _batch_loss(model, run, x, y, config, eps_now, device)
        sums.add(loss, stats, x.shape[0], step)
        _optimizer_step(run, loss)
        if bar is not None:
            bar.update(1)
            if time.perf_counter() - shown >= 1.0 or step + 1 == n_batches:   # reading the loss waits for the GPU
                shown = time.perf_counter()
                bar.set_postfix(loss=f"{sums.mean_loss():.4f}", eps=f"{eps_now:.3f}")
    if bar is not None:
        bar.close()
    bad = sums.first_non_finite()
    if bad is not None:
        raise _non_finite_error(bad[1], config, epoch, bad[0], last)
    means = sums.means()
    record = {"epoch": epoch + 1, "loss": means.pop("loss"), "lr": run.optimizer.param_groups[0]["lr"],
              "eps": eps_now, **means}
    if run.scheduler is not None:
        run.scheduler.step()
    record["time_s"] = time.perf_counter() - started
    return record


class _EpochSums:
    """An epoch's sample-weighted sums of the loss and of the recipe's statistics, kept on ``device``
    (float64), and the first step whose loss was not finite; read with one transfer at the end."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.sums: dict[str, torch.Tensor] = {}
        self.seen = 0
        self.bad_step = torch.full((), -1, dtype=torch.long, device=device)
        self.bad_loss = torch.zeros((), device=device)

    def add(self, loss: torch.Tensor, stats: dict, n: int, step: int) -> None:
        """Add one step's ``loss`` and ``stats`` (0-dim tensors or floats), weighted by its ``n`` samples."""
        loss = loss.detach()
        first = (self.bad_step < 0) & ~torch.isfinite(loss)
        self.bad_step = torch.where(first, step, self.bad_step)
        self.bad_loss = torch.where(first, loss.float(), self.bad_loss)
        for key, value in {"loss": loss, **stats}.items():
            value = torch.as_tensor(value, device=self.device).detach().double() * n
            self.sums[key] = self.sums[key] + value if key in self.sums else value
        self.seen += n

    def mean_loss(self) -> float:
        """The mean loss so far (waits for the device)."""
        return self.sums["loss"].item() / max(self.seen, 1) if self.sums else float("nan")

    def means(self) -> dict[str, float]:
        """``{"loss": ..., statistic: ...}``: the sample-weighted means, read in one transfer."""
        if not self.sums:
            return {"loss": 0.0}
        values = torch.stack(list(self.sums.values())).cpu().tolist()
        return {key: value / max(self.seen, 1) for key, value in zip(self.sums, values)}

    def first_non_finite(self) -> tuple[int, torch.Tensor] | None:
        """``(step, loss)`` of the first step whose loss was NaN or infinite, or ``None``."""
        step = int(self.bad_step)
        return (step, self.bad_loss) if step >= 0 else None


def _batch_loss(model: nn.Module, run: RunState, x: torch.Tensor, y: torch.Tensor, config: TrainConfig,
                eps_now: float, device: torch.device) -> tuple[torch.Tensor, dict]:
    """The recipe's ``(loss, stats)`` on one batch at this step's eps (``alpha`` scaled with it), under autocast."""
    alpha_now = config.alpha * (eps_now / config.eps) if config.eps > 0 else config.alpha
    with autocast(config.precision, device):   # the attack's forward passes too
        return RECIPES[config.recipe](model, x, y, net=run.net, eps=eps_now, alpha=alpha_now,
                                     steps=config.steps, state=run.state, **config.options)


def _optimizer_step(run: RunState, loss: torch.Tensor) -> None:
    """Backward through the (fp16) grad scaler and one optimizer step."""
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()


def _non_finite_error(loss: torch.Tensor, config: TrainConfig, epoch: int, step: int,
                      last: Path | None) -> NonFiniteLossError:
    """The error of a NaN/inf loss at ``(epoch, step)`` (from 0), naming the kept checkpoint (``epoch`` epochs done)."""
    kept = (f"the last good checkpoint is kept at {last} (epoch {epoch})"
            if last is not None and last.exists() else "no checkpoint was written yet")
    return NonFiniteLossError(
        f"the {config.recipe} loss is {loss.item()} at epoch {epoch + 1}, step {step + 1}; training "
        f"stopped and {kept}. Lower the learning rate (now {config.lr}) or check the data.")


def _evaluate_forked(net: nn.Module, eval_xy: tuple, config: TrainConfig, device: torch.device,
                     layers: list[str]) -> dict:
    """:func:`evaluate_epoch` under a forked RNG seeded ``seed + 12345``: evaluation leaves training's RNG alone."""
    devices = ([torch.cuda.current_device() if device.index is None else device.index]  # "cuda" is the current GPU
               if device.type == "cuda" else [])
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(config.seed + 12345)
        return evaluate_epoch(net, *eval_xy, eps=config.eps, steps=config.eval_steps, layers=layers)


def _report_epoch(record: dict, run: RunState, config: dict, out, progress: bool) -> None:
    """Print the epoch's line (with ``progress``) and, with ``out``, write ``last.pt`` and ``log.jsonl``."""
    if progress:  # quiet with progress=False, so notebook outputs stay comparable
        print(_format_record(record))
    if out is not None:
        save_last(Path(out) / "last.pt", run, config)
        write_log(Path(out) / "log.jsonl", run.log)


def _save_model(path: Path, run: RunState, config: TrainConfig, world: int, test_set) -> None:
    """The finished run's ``model.pt``: weights, ``config.to_dict`` as the recipe, the last evaluation, the log."""
    metrics = {k: run.log[-1][k] for k in ("clean_acc", "robust_acc") if run.log and k in run.log[-1]}
    if metrics:
        metrics["eval_n"] = min(config.eval_n, len(test_set))
        metrics["eval_attack"] = (f"PGD-{config.eval_steps} eps {config.eps} "
                                  f"step {pgd_step(config.eps, config.eval_steps):g}")
    save_checkpoint(path, run.net, recipe=config.to_dict(world), metrics=metrics, log=run.log)


# --------------------------------------------------------------------------- set-up


def _settle_config(config: TrainConfig | None, recipe: str | None, epochs: int | None,
                   settings: dict) -> TrainConfig:
    """``config`` (default ``TrainConfig()``) with ``recipe``, ``epochs`` and ``settings`` applied, validated."""
    if config is not None and not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, e.g. TrainConfig(recipe='sns', epochs=5) or "
                        f"TrainConfig.from_dict(checkpoint['recipe']), got {type(config).__name__}.")
    given = {name: value for name, value in (("recipe", recipe), ("epochs", epochs)) if value is not None}
    return (config or TrainConfig()).replace(**given, **settings)


def _new_run(net: nn.Module, config: TrainConfig) -> RunState:
    """A fresh run of ``net``: its optimizer, per-epoch scheduler and (fp16) grad scaler."""
    optimizer = _make_optimizer(config.optimizer, net.parameters(), config.lr, config.weight_decay)
    scheduler = _make_schedule(config.schedule, optimizer, config.epochs)
    return RunState(net, optimizer, scheduler, torch.amp.GradScaler("cuda", enabled=config.precision == "fp16"))


def _with_attack_defaults(config: TrainConfig, train_set: Dataset, eval_xy) -> TrainConfig:
    """``config`` with ``eps`` (the data set's usual one, else by the data's channels) and ``alpha``
    (``pgd_step(eps, steps)``) filled in."""
    eps = config.eps
    if eps is None:
        info = getattr(train_set, "info", None)
        eps = info.eps if info is not None else default_eps(eval_xy[0].shape[1] if eval_xy else 1)
    alpha = config.alpha if config.alpha is not None else pgd_step(eps, config.steps)
    return replace(config, eps=eps, alpha=alpha)


def _as_dataset(data, name: str) -> Dataset:
    """``data`` as a Dataset: itself, or a TensorDataset of an ``(images, labels)`` pair."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        return TensorDataset(data[0], data[1])
    raise TypeError(f"{name} must be a Dataset (e.g. nslib.data.load('mnist5k', 'train')) or an "
                    f"(images, labels) pair of tensors, got {type(data).__name__}.")


def _first(dataset: Dataset, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` examples of ``dataset`` as ``(images (n, C, H, W), labels (n,))``."""
    if hasattr(dataset, "tensors") and callable(dataset.tensors):
        return dataset.tensors(n)
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[0][:n], dataset.tensors[1][:n]
    items = [dataset[i] for i in range(min(n, len(dataset)))]
    return torch.stack([a for a, _ in items]), torch.as_tensor([b for _, b in items])


def _make_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Adam, or SGD with momentum 0.9 (``name`` is checked by ``TrainConfig``)."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def _make_schedule(schedule, optimizer, epochs: int):
    """The learning-rate scheduler, stepped once per epoch (``schedule`` is checked by ``TrainConfig``)."""
    if schedule is None or schedule == "none":
        return None
    if callable(schedule):
        return schedule(optimizer)
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    milestones = sorted({max(1, int(epochs * 0.5)), max(1, int(epochs * 0.75))})
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)


def _progress_bar(config: TrainConfig, epoch: int, n_batches: int):
    """A tqdm bar over the epoch's batches (cleared when done)."""
    from tqdm.auto import tqdm

    return tqdm(total=n_batches, desc=f"{config.recipe} epoch {epoch + 1}/{config.epochs}", unit="batch",
                leave=False)


def _format_record(record: dict) -> str:
    """One printed line per epoch: loss, accuracies, layer sensitivity, time."""
    parts = [f"epoch {record['epoch']}", f"loss {record['loss']:.4f}"]
    for key in ("clean_acc", "robust_acc"):
        if key in record:
            parts.append(f"{key} {record[key]:.3f}")
    if "sensitivity" in record:
        parts.append("sens " + " ".join(f"{k}={v:.3f}" for k, v in record["sensitivity"].items()))
    parts.append(f"{record['time_s']:.1f}s")
    return " | ".join(parts)


# --------------------------------------------------------------------------- classes


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the epoch, the step and the kept checkpoint."""
