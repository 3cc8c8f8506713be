"""Neuron sensitivity: how much an attack changes each neuron's output (Zhang et al., 2021).

For neuron ``i`` of layer ``l``, benign inputs ``x_j`` and their adversarial twins
``x'_j`` (``j = 1..N``)::

    sigma_l^i = (1/N) * sum_j (1/dim) * || F_l^i(x_j) - F_l^i(x'_j) ||_1

the mean absolute change of the neuron's output over its ``dim`` positions
(``H x W`` for a conv channel, ``1`` for a linear unit), averaged over the pairs.
The layer sensitivity is the mean of ``sigma_l^i`` over the layer's neurons and the
sensitive neurons are a layer's top-k by ``sigma``. Measurement is in eval mode and
streams batch by batch, so memory is O(neurons), whatever ``N`` is.

Paper: "Interpreting and Improving Adversarial Robustness of Deep Neural Networks with
Neuron Sensitivity", IEEE TIP 30 (2021), https://arxiv.org/abs/1909.06978.
Taught in lesson 02 (``02_neuron_sensitivity.ipynb``) and
lesson 03 (``03_sensitive_neurons_and_ablation.ipynb``).
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import nn

from .hooks import LayerSpec, activations, layer_names, resolve_layers
from .precision import autocast, channels_last, check_precision
from .utils import check_images, check_labels, eval_mode, model_device

__all__ = ["neuron_distance", "neuron_sensitivity", "layer_sensitivity", "rank_neurons",
           "sensitive_neurons", "default_layers", "activation_scale", "relative_sensitivity"]

Attack = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def neuron_distance(benign_act: torch.Tensor, adv_act: torch.Tensor) -> torch.Tensor:
    """Per sample and neuron, ``(1/dim) * ||F_l^i(x_j) - F_l^i(x'_j)||_1``.

    The mean of ``|benign_act - adv_act|`` over every dim after dim 1 (the ``H x W``
    positions of a conv channel; nothing for a linear unit). Differentiable, so SNS
    training can put it in a loss on graph-keeping activations
    (``nslib.hooks.capture(..., detach=False)``).

    Args:
        benign_act (Tensor): a layer's output on the benign inputs.
        adv_act (Tensor): the same layer's output on the paired adversarial inputs.

    Shape:
        inputs ``(N, neurons, *)`` with batch along dim 0 and neurons along dim 1,
        e.g. ``(N, C, H, W)`` or ``(N, units)``; output ``(N, neurons)``.

    Returns:
        Tensor: the distance of each neuron for each pair; ``.mean(0)`` is ``sigma_l``
        for this batch.

    Example:
        >>> a, b = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
        >>> neuron_distance(a, b).shape
        torch.Size([2, 3])
    """
    for name, act in (("benign_act", benign_act), ("adv_act", adv_act)):
        if not isinstance(act, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(act).__name__}.")
        if act.dim() < 2:
            raise ValueError(f"{name} must have the batch along dim 0 and neurons along dim 1, "
                             f"e.g. (N, C, H, W) or (N, units); got shape {tuple(act.shape)}.")
    if benign_act.shape != adv_act.shape:
        raise ValueError(f"benign and adversarial activations must have the same shape, got "
                         f"{tuple(benign_act.shape)} and {tuple(adv_act.shape)}; pair each benign "
                         "input with its own adversarial example.")
    diff = (benign_act - adv_act).abs()
    return diff.flatten(2).mean(dim=2) if diff.dim() > 2 else diff


def default_layers(model: nn.Module) -> list[str]:
    """The dotted names of every ``Conv2d`` and ``Linear`` layer of ``model``, in order."""
    return layer_names(model, kinds=(nn.Conv2d, nn.Linear))


def _tensor_pairs(benign: torch.Tensor, adversarial: torch.Tensor | None, labels: torch.Tensor | None,
                  batch_size: int):
    """Yield (x, x' or None, y or None) slices of at most ``batch_size`` rows."""
    for start in range(0, benign.shape[0], batch_size):
        rows = slice(start, start + batch_size)
        yield (benign[rows], None if adversarial is None else adversarial[rows],
               None if labels is None else labels[rows])


def _loader_pairs(loader: Iterable):
    """Yield (x, None, y) from a loader of ``(images, labels, ...)`` batches."""
    for index, batch in enumerate(loader):
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError(f"batch {index} of the data loader is a {type(batch).__name__}, not an "
                             "(images, labels) pair; the attack needs the labels, so use a loader "
                             "of (images, labels), e.g. nslib.data.make_loader(dataset).")
        yield batch[0], None, batch[1]


def _check_arguments(benign, adversarial, attack, labels, batch_size) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    if attack is not None and not callable(attack):
        raise TypeError(f"attack must be callable as attack(images, labels), got "
                        f"{type(attack).__name__}.")
    if attack is not None and adversarial is not None:
        raise ValueError("pass either adversarial examples or an attack that makes them, not both.")
    if isinstance(benign, torch.Tensor):
        check_images(benign, "benign")
        if benign.shape[0] == 0:
            raise ValueError("benign holds no images (N = 0); pass at least one pair.")
        if attack is None:
            if adversarial is None:
                raise ValueError("give the adversarial examples (a tensor shaped like benign) or "
                                 "attack=..., a callable attack(images, labels) -> adversarial "
                                 "images, e.g. nslib.attacks.PGD(model).")
            check_images(adversarial, "adversarial")
            if adversarial.shape != benign.shape:
                raise ValueError(f"adversarial must have the shape of benign, got "
                                 f"{tuple(adversarial.shape)} and {tuple(benign.shape)}.")
            if labels is not None:
                raise ValueError("labels are only used by an attack; drop labels= or pass attack=.")
        else:
            if labels is None:
                raise ValueError("an attack needs the true labels: pass labels=y (shape (N,)) with "
                                 "the benign tensor, or a DataLoader of (images, labels).")
            check_labels(benign, labels)
    elif isinstance(benign, Iterable) and not isinstance(benign, str) and not hasattr(benign, "__array__"):
        if attack is None:
            raise ValueError("with a data loader, pass attack=..., a callable attack(images, labels) "
                             "-> adversarial images; precomputed adversarial examples go in as a "
                             "tensor beside a benign tensor.")
        if labels is not None:
            raise ValueError("labels come from the data loader's (images, labels) batches; drop "
                             "labels=.")
    else:
        raise TypeError(f"benign must be a torch.Tensor (N, C, H, W) in [0, 1] or a DataLoader of "
                        f"(images, labels), got {type(benign).__name__}; convert arrays with "
                        "torch.as_tensor(array).")


def neuron_sensitivity(model: nn.Module, benign, adversarial: torch.Tensor | None = None,
                       layers: LayerSpec | Iterable[LayerSpec] | None = None, *,
                       attack: Attack | None = None, labels: torch.Tensor | None = None,
                       batch_size: int = 256, device: torch.device | str | None = None,
                       progress: bool = False, precision: str = "fp32") -> dict[str, torch.Tensor]:
    """Neuron sensitivity ``sigma_l^i`` of every neuron of ``layers`` (Zhang et al. 2021).

    The definition and our choices: ``docs/experiments.md#neuron-sensitivity``.

    ``sigma_l^i = (1/N) * sum_j (1/dim) * ||F_l^i(x_j) - F_l^i(x'_j)||_1``: the mean
    absolute change of neuron ``i``'s output, averaged over its ``dim`` spatial
    positions and over the ``N`` pairs. The pairs come either as two tensors, or as
    benign data (a tensor with ``labels=``, or a DataLoader of ``(images, labels)``)
    plus an ``attack`` that makes the adversarial examples batch by batch.

    Streams: only one batch of activations and one running sum per neuron are held,
    so memory is O(neurons), whatever ``N`` is. The sums are accumulated in float64.
    The model is measured in eval mode (``nslib.utils.eval_mode``; the caller's mode
    of every submodule is restored afterwards) and without gradients, except inside
    ``attack``, which is called with the model in eval mode.

    Args:
        model (nn.Module): the network; inputs in [0, 1] (it owns its normalisation).
        benign (Tensor or DataLoader): benign images ``(N, C, H, W)`` in [0, 1], or a
            loader (any iterable) of ``(images, labels)`` batches, which needs ``attack``.
        adversarial (Tensor, optional): the adversarial twin of each benign image,
            same shape. Default: ``None`` (then ``attack`` is required).
        layers (str, nn.Module or a list of them, optional): dotted layer names or
            modules. Default: ``None``, every ``Conv2d`` and ``Linear`` layer.
        attack (callable, optional): ``attack(images, labels) -> adversarial images``,
            e.g. ``nslib.attacks.PGD(model, eps=0.3)``. Default: ``None``.
        labels (Tensor, optional): labels ``(N,)`` for a benign tensor with ``attack``.
            Default: ``None``.
        batch_size (int, optional): pairs per forward pass for tensor inputs (a
            loader's own batches are used as they come). Default: ``256``.
        device (torch.device or str, optional): where the batches go. Default: ``None``,
            the device of the model's parameters.
        progress (bool, optional): show a ``tqdm`` progress bar. Default: ``False``.
        precision (str, optional): ``"fp32"`` or ``"bf16"``: the forward passes that record
            the activations run under bf16 autocast (``nslib.precision``); the distances
            are taken in float32. The ``attack`` has its own precision. Default: ``"fp32"``.

    Shape:
        benign and adversarial ``(N, C, H, W)`` (batch along dim 0); labels ``(N,)``.

    Returns:
        dict[str, Tensor]: ``{layer name: sigma}``, ``sigma`` of shape ``(neurons,)``
        (the size of the layer output's dim 1: channels of a conv, units of a linear),
        on the CPU, in the dtype of the layer's output (float32 under bf16).

    Example:
        >>> model = nslib.models.build("smallcnn")  # doctest: +SKIP
        >>> x = torch.rand(8, 1, 28, 28); x_adv = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
        >>> sens = neuron_sensitivity(model, x, x_adv, ["conv1", "fc1"])  # doctest: +SKIP
        >>> sens["conv1"].shape, sens["fc1"].shape  # doctest: +SKIP
        (torch.Size([32]), torch.Size([200]))
    """
    _check_arguments(benign, adversarial, attack, labels, batch_size)
    check_precision(precision)
    names = list(resolve_layers(model, default_layers(model) if layers is None else layers))
    device = model_device(model) if device is None else torch.device(device)
    if isinstance(benign, torch.Tensor):
        batches = _tensor_pairs(benign, adversarial, labels, batch_size)
        total = math.ceil(benign.shape[0] / batch_size)
    else:
        batches = _loader_pairs(benign)
        total = len(benign) if hasattr(benign, "__len__") else None
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, total=total, desc="neuron sensitivity", unit="batch")

    sums: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    count = 0
    with eval_mode(model):
        for index, (x, x_adv, y) in enumerate(batches):
            x = x.to(device)
            if x_adv is None:  # make the adversarial examples of this batch
                check_images(x, f"benign batch {index}")
                y = y.to(device)
                check_labels(x, y, f"labels of batch {index}")
                x_adv = attack(x, y)
                check_images(x_adv, f"the attack's output for batch {index}")
                if x_adv.shape != x.shape:
                    raise ValueError(f"the attack returned shape {tuple(x_adv.shape)} for images "
                                     f"of shape {tuple(x.shape)}; it must keep the shape.")
            x_adv = x_adv.to(device)
            with autocast(precision, device):
                clean = activations(model, channels_last(x, precision), names)
                adv = activations(model, channels_last(x_adv, precision), names)
            for name in names:
                if precision != "fp32":  # the distance in float32, not in the autocast dtype
                    clean[name], adv[name] = clean[name].float(), adv[name].float()
                dist = neuron_distance(clean[name], adv[name]).sum(dim=0, dtype=torch.float64)
                if name in sums:
                    sums[name] += dist
                else:
                    sums[name], dtypes[name] = dist, clean[name].dtype
            del clean, adv
            count += x.shape[0]
    if count == 0:
        raise ValueError("the data loader yielded no batches; pass at least one pair.")
    return {name: (sums[name] / count).to(device="cpu", dtype=dtypes[name]) for name in names}


def layer_sensitivity(sensitivity, *args, **kwargs) -> dict[str, float]:
    """Layer sensitivity: the mean of ``sigma_l^i`` over the neurons ``i`` of each layer ``l``.

    Args:
        sensitivity (dict or nn.Module): the output of :func:`neuron_sensitivity`; or a
            model, followed by the arguments of :func:`neuron_sensitivity`, which is then
            called first.

    Returns:
        dict[str, float]: ``{layer name: mean sensitivity}``, in the order of the input.

    Example:
        >>> layer_sensitivity({"conv1": torch.tensor([0.0, 1.0]), "fc1": torch.tensor([3.0])})
        {'conv1': 0.5, 'fc1': 3.0}
    """
    if isinstance(sensitivity, nn.Module):
        sensitivity = neuron_sensitivity(sensitivity, *args, **kwargs)
    elif args or kwargs:
        raise TypeError("extra arguments are only used with a model: layer_sensitivity(model, "
                        "benign, adversarial, layers, ...) or layer_sensitivity(sensitivity_dict).")
    _check_sensitivity(sensitivity)
    return {name: sigma.double().mean().item() for name, sigma in sensitivity.items()}


def activation_scale(model: nn.Module, images: torch.Tensor, layers: LayerSpec | Iterable[LayerSpec] | None = None,
                     *, batch_size: int = 256) -> dict[str, float]:
    """The typical size of each layer's benign output: ``mean |F_l(x)|`` over images, neurons and positions.

    Sensitivity is in each layer's own activation units, so a model can lower it by shrinking
    its activations alone. Divide by this scale (:func:`relative_sensitivity`) to compare
    models. Measured in eval mode, without gradients, sums in float64.

    Args:
        model (nn.Module): the network; images in [0, 1].
        images (Tensor): benign images ``(N, C, H, W)``.
        layers: dotted names or modules. Default: every ``Conv2d`` and ``Linear`` layer.
        batch_size (int): images per forward pass. Default: ``256``.

    Returns:
        dict[str, float]: ``{layer name: mean |F_l(x)|}``.
    """
    names = list(resolve_layers(model, default_layers(model) if layers is None else layers))
    device = model_device(model)
    sums, count = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0)
    with eval_mode(model):
        for start in range(0, images.shape[0], batch_size):
            outputs = activations(model, images[start:start + batch_size].to(device), names)
            for name in names:
                sums[name] += outputs[name].abs().sum(dtype=torch.float64).item()
                count[name] += outputs[name].numel()
    return {name: sums[name] / count[name] for name in names}


def relative_sensitivity(layer_sens: dict[str, float], scale: dict[str, float]) -> dict[str, float]:
    """Scale-free layer sensitivity: ``mean_i sigma_l^i / mean |F_l(x)|`` for each layer ``l``.

    Unchanged when a layer's output is multiplied by a constant, unlike the raw
    :func:`layer_sensitivity`; so it is the one to compare between models.

    Args:
        layer_sens (dict): :func:`layer_sensitivity`'s ``{layer: mean sigma}``.
        scale (dict): :func:`activation_scale`'s ``{layer: mean |F_l(x)|}`` on the same benign images.

    Example:
        >>> relative_sensitivity({"fc1": 0.5}, {"fc1": 2.0})
        {'fc1': 0.25}
    """
    missing = [name for name in layer_sens if name not in scale]
    if missing:
        raise KeyError(f"no activation scale for layers {missing}; measure them with activation_scale "
                       f"(have {list(scale)}).")
    return {name: value / scale[name] if scale[name] > 0 else float("nan") for name, value in layer_sens.items()}


def _check_sensitivity(sensitivity, *, nan: bool = True) -> None:
    if not isinstance(sensitivity, dict) or not sensitivity:
        raise TypeError(f"sensitivity must be a non-empty dict {{layer name: tensor of shape "
                        f"(neurons,)}} as returned by neuron_sensitivity, got "
                        f"{type(sensitivity).__name__}.")
    for name, sigma in sensitivity.items():
        if not isinstance(sigma, torch.Tensor) or sigma.dim() != 1 or sigma.numel() == 0:
            shape = tuple(sigma.shape) if isinstance(sigma, torch.Tensor) else type(sigma).__name__
            raise ValueError(f"sensitivity[{name!r}] must be a non-empty 1-D tensor (one value per "
                             f"neuron), got {shape}.")
        if nan and torch.isnan(sigma).any():   # reading the answer waits for the device
            raise ValueError(f"sensitivity[{name!r}] contains NaN; recompute it on finite inputs.")


def rank_neurons(scores: torch.Tensor, *, largest: bool = True, on_device: bool = False) -> torch.Tensor:
    """Neuron indices ordered by score, most sensitive first (``largest=False``: least first).

    The one top-k rule of nslib (``sensitive_neurons``, the ablation's top/bottom-k, SNS,
    the explorer): a stable sort, so ties go to the lower index and the choice is
    deterministic. Shape: ``scores`` ``(neurons,)`` -> LongTensor ``(neurons,)`` on the CPU,
    or with ``on_device`` on ``scores``' device (the same order: a stable sort is defined
    by its input alone; SNS's training step sorts there so that it need not wait for a GPU).

    Example:
        >>> rank_neurons(torch.tensor([0.1, 0.9, 0.5, 0.9]))
        tensor([1, 3, 2, 0])
    """
    scores = scores.detach() if on_device else scores.detach().cpu()
    return torch.sort(scores, descending=largest, stable=True).indices


def _top_count(k: int | float, max_k: int | None, neurons: int) -> int:
    if isinstance(k, float):  # a fraction of the layer, rounded up, capped at max_k
        count = math.ceil(round(k * neurons, 9))  # round: 0.07 * 100 is 7.000000000000001
        if max_k is not None:
            count = min(count, max_k)
        return max(count, 1)
    return min(k, neurons)


def sensitive_neurons(sensitivity: dict[str, torch.Tensor], k: int | float = 0.1,
                      max_k: int | None = 10, *, largest: bool = True,
                      on_device: bool = False) -> dict[str, torch.Tensor]:
    """The top-k most (or least) sensitive neurons of each layer, by ``sigma_l^i``.

    The authors' code takes 10 % of a layer's neurons, at most 10 (the defaults).

    Args:
        sensitivity (dict[str, Tensor]): ``{layer: sigma of shape (neurons,)}``, the
            output of :func:`neuron_sensitivity`.
        k (int or float, optional): an int is a count of neurons (``0`` gives none;
            more than the layer has gives all of them); a float in ``(0, 1]`` is a
            fraction of each layer's neurons, rounded up (so at least 1) and capped at
            ``max_k``. Default: ``0.1``.
        max_k (int, optional): the cap on a fractional ``k`` (ours: an int ``k`` is an
            explicit count and is not capped). ``None`` means no cap. Default: ``10``.
        largest (bool, optional): ``True`` for the most sensitive neurons, ``False``
            for the least sensitive (bottom-k, a control in the ablation of E3).
            Default: ``True``.
        on_device (bool, optional): keep each layer's indices on its ``sigma``'s device and skip
            the NaN check, so that nothing waits for a GPU (SNS's per-step choice; a NaN there
            makes the loss NaN, which the training loop reports). Default: ``False``.

    Returns:
        dict[str, LongTensor]: ``{layer: neuron indices}`` on the CPU (``on_device``: on
        ``sigma``'s device), ordered from the
        most sensitive down (``largest=False``: from the least sensitive up). Ties go
        to the lower index first (a stable sort), so the choice is deterministic.

    Example:
        >>> sensitive_neurons({"fc1": torch.tensor([0.1, 0.9, 0.5, 0.9])}, k=2)
        {'fc1': tensor([1, 3])}
    """
    _check_sensitivity(sensitivity, nan=not on_device)
    if isinstance(k, bool) or not isinstance(k, (int, float)):
        raise TypeError(f"k must be an int (a count) or a float in (0, 1] (a fraction), got "
                        f"{type(k).__name__}.")
    if isinstance(k, float) and not 0 < k <= 1:
        raise ValueError(f"a fractional k must lie in (0, 1], got {k}; for a count pass an int, "
                         f"e.g. k={max(1, round(k))}.")
    if isinstance(k, int) and k < 0:
        raise ValueError(f"k must be a count >= 0 or a fraction in (0, 1], got {k}.")
    if max_k is not None and (isinstance(max_k, bool) or not isinstance(max_k, int) or max_k < 1):
        raise ValueError(f"max_k must be a positive int or None (no cap), got {max_k!r}.")
    chosen = {}
    for name, sigma in sensitivity.items():
        chosen[name] = rank_neurons(sigma, largest=largest, on_device=on_device)[:_top_count(k, max_k, sigma.numel())]
    return chosen
