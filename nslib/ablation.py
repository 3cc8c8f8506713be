"""Neuron ablation and stabilisation: do the sensitive neurons drive the wrong prediction?

Experiment E3 (finding 1 of Zhang et al., 2021; ``docs/experiments.md#e3-ablation``).
On adversarial inputs ``x'`` we change a few neurons of one layer and look at the
prediction:

- *stabilise*: the chosen neurons output what they output on the paired benign input,
  ``F_l^i(x') <- F_l^i(x)``, the rest of the layer keeps its adversarial output;
- *deactivate*: the chosen neurons output zero (or a constant, or their mean over
  benign data).

If the top-k most sensitive neurons (largest ``sigma_l^i``) matter, changing them
moves the prediction back far more than k random or the k least sensitive neurons.
Choose the neurons on other images than those the ablation is measured on
(:func:`selection_split`): top-k chosen on the very pairs it is then evaluated on is
flattered by a selection bias (the neurons the attack happened to move most on *these*
pairs).

As in Captum, an ablation is a forward hook that *returns* the replacement output; the
hooks are registered inside ``try`` and removed in ``finally``. A neuron is one entry
along dim 1 (a channel of a conv output ``(N, C, H, W)``, a unit of a linear output
``(N, units)``); dim 0 is the batch. Layers are given by dotted name (or module).

Hook order matters when you also record activations with :func:`nslib.hooks.capture`:
forward hooks run in registration order and a returned value replaces the output for
the hooks after it. A ``capture`` entered *inside* ``deactivate``/``stabilise`` sees
the ablated output; one entered *outside* (before) sees the layer's original output.
Every later layer always sees the ablated output.

Taught in lesson 03 (``03_sensitive_neurons_and_ablation.ipynb``).
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterable, Iterator, Mapping, Sequence, Union

import torch
from torch import nn

from nslib.hooks import LayerSpec, forward_hooks, resolve_layers
from nslib.sensitivity import rank_neurons
from nslib.utils import check_images, check_labels, eval_mode, model_device

__all__ = ["Neurons", "select_neurons", "selection_split", "neuron_means", "deactivate", "stabilise",
           "stabilize", "ablation_sweep", "summarise_sweep", "SELECTIONS", "MODES"]

#: Chosen neurons: ``{layer (dotted name or module): indices along dim 1}``.
Neurons = Mapping[LayerSpec, Union[Sequence[int], torch.Tensor]]
#: How :func:`select_neurons` picks k neurons: the k largest scores, k at random, the k smallest.
SELECTIONS = ("top", "random", "bottom")
#: The two ablations of E3: :func:`stabilise` (benign outputs on adversarial inputs) and :func:`deactivate` (a constant).
MODES = ("stabilise", "deactivate")


def select_neurons(scores: torch.Tensor, k: int, selection: str = "top", *,
                   seed: int | None = None) -> torch.Tensor:
    """Indices of ``k`` neurons chosen from their scores (e.g. sensitivity ``sigma_l``).

    Args:
        scores (Tensor): one score per neuron, shape ``(neurons,)``.
        k (int): how many neurons, ``0 <= k <= neurons``.
        selection (str, optional): ``"top"`` (largest scores first), ``"bottom"``
            (smallest first) or ``"random"`` (a uniform random subset). Ties go to the
            lower index (a stable sort), so top/bottom are deterministic. Default: ``"top"``.
        seed (int, optional): seed of the ``torch.Generator`` for ``"random"`` (required
            there). With one seed the random sets are nested: the k-set is the first k of
            one permutation. Default: ``None``.

    Returns:
        LongTensor of shape ``(k,)`` on the CPU.

    Example:
        >>> select_neurons(torch.tensor([0.1, 0.9, 0.5, 0.9]), 2)
        tensor([1, 3])
    """
    if not isinstance(scores, torch.Tensor) or scores.dim() != 1:
        got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"scores must be a 1-D tensor with one value per neuron, got {got}.")
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= scores.numel():
        raise ValueError(f"k must be an int in [0, {scores.numel()}] (the layer's neurons), got {k!r}.")
    if selection in ("top", "bottom"):
        return rank_neurons(scores, largest=selection == "top")[:k]
    if selection == "random":
        if seed is None:
            raise ValueError("selection='random' needs a seed, e.g. seed=0.")
        generator = torch.Generator().manual_seed(seed)
        return torch.randperm(scores.numel(), generator=generator, device="cpu")[:k]
    raise ValueError(f"unknown selection {selection!r}; use one of {SELECTIONS}.")


def selection_split(*tensors: torch.Tensor, n_select: int
                    ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """Split paired tensors into a *selection* part and a disjoint *evaluation* part.

    E3's protocol: the sensitivity ``sigma_l`` that picks the top-k neurons is measured on
    the selection pairs, the ablation (:func:`ablation_sweep`) on the evaluation pairs, so
    the neurons are not chosen on the images they are judged on. The split is by position:
    the first ``n_select`` entries along dim 0 select, the rest evaluate (unshuffled, so it
    is the same on every run).

    Args:
        *tensors (Tensor): paired tensors with the same length ``N`` along dim 0, e.g.
            ``benign (N, C, H, W)``, ``adversarial (N, C, H, W)``, ``labels (N,)``.
        n_select (int): entries used for selection, ``1 <= n_select < N``.

    Returns:
        ``(selection, evaluation)``: two tuples holding ``t[:n_select]`` and ``t[n_select:]``
        of every tensor, in the order given (views, not copies).

    Example:
        >>> (x_s, y_s), (x_e, y_e) = selection_split(torch.zeros(10, 1, 2, 2), torch.arange(10), n_select=4)
        >>> y_s.tolist(), y_e.tolist()
        ([0, 1, 2, 3], [4, 5, 6, 7, 8, 9])
    """
    if not tensors or not all(isinstance(t, torch.Tensor) and t.dim() >= 1 for t in tensors):
        raise TypeError("selection_split takes the paired tensors to split, e.g. "
                        "selection_split(benign, adversarial, labels, n_select=100).")
    lengths = [len(t) for t in tensors]
    if len(set(lengths)) != 1:
        raise ValueError(f"the tensors must be paired (same length along dim 0), got lengths {lengths}.")
    n = lengths[0]
    if isinstance(n_select, bool) or not isinstance(n_select, int) or not 1 <= n_select < n:
        raise ValueError(f"n_select must be an int in [1, {n - 1}] so that both parts are non-empty "
                         f"(N = {n}), got {n_select!r}.")
    return tuple(t[:n_select] for t in tensors), tuple(t[n_select:] for t in tensors)


def _resolve_neurons(model: nn.Module, neurons: Neurons) -> dict[str, tuple[nn.Module, torch.Tensor]]:
    """``{name: (module, LongTensor of indices)}``; unknown layers list the valid names."""
    if not isinstance(neurons, Mapping) or not neurons:
        raise TypeError("neurons must be a non-empty dict {layer name: neuron indices}, e.g. "
                        f"{{'conv1': [0, 3]}}; got {type(neurons).__name__}.")
    resolved = {}
    for layer, indices in neurons.items():
        (name, module), = resolve_layers(model, [layer]).items()
        index = torch.as_tensor(indices, device="cpu").detach()
        if index.numel() == 0:
            index = index.long()
        if index.dim() != 1 or index.is_floating_point() or index.dtype == torch.bool:
            raise ValueError(f"neurons[{name!r}] must be a 1-D list/tensor of integer indices "
                             f"along dim 1, got {indices!r}.")
        if index.numel() and index.min() < 0:
            raise ValueError(f"neurons[{name!r}] has negative indices {index.tolist()}; pass "
                             "indices in [0, neurons).")
        resolved[name] = (module, index.long())
    return resolved


def _check_output(name: str, output, index: torch.Tensor) -> None:
    if not isinstance(output, torch.Tensor) or output.dim() < 2:
        raise TypeError(f"layer {name!r} must output one tensor of shape (N, neurons, ...) to "
                        f"ablate neurons along dim 1, got {type(output).__name__}.")
    if index.numel() and index.max() >= output.shape[1]:
        raise ValueError(f"neuron index {index.max().item()} is out of range for layer {name!r}, "
                         f"which has {output.shape[1]} neurons (dim 1 of {tuple(output.shape)}).")


def _broadcast(values: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """Per-neuron values ``(k,)`` shaped to broadcast over ``output[:, index]``."""
    return values.view(-1, *([1] * (output.dim() - 2))).to(output.device, output.dtype)


@contextlib.contextmanager
def _patched(resolved: dict[str, tuple[nn.Module, torch.Tensor]], replace) -> Iterator[None]:
    """Register hooks returning ``out`` with ``out[:, index] = replace(name, output, index)``."""

    def make_hook(name: str, index: torch.Tensor):
        def hook(module, inputs, output):
            _check_output(name, output, index)
            if index.numel() == 0:
                return None
            patched = output.clone()  # never write into the layer's own output tensor
            patched[:, index.to(output.device)] = replace(name, output, index)
            return patched
        return hook

    with forward_hooks((module, make_hook(name, index)) for name, (module, index) in resolved.items()):
        yield


def _batches(images: torch.Tensor, batch_size: int) -> Iterable[torch.Tensor]:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    return images.split(batch_size)


def neuron_means(model: nn.Module, images: torch.Tensor, layers: LayerSpec | Iterable[LayerSpec], *,
                 batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Mean output of every neuron over ``images``: over the batch *and* spatial positions.

    Used by ``deactivate(..., value="mean")``. Streams over batches; eval mode, no grad.

    Shape:
        ``images`` ``(N, C, H, W)`` in [0, 1]; each result ``(neurons,)``.

    Returns:
        dict[str, Tensor]: ``{layer: per-neuron mean}`` (float64 accumulation, returned
        in the layer's dtype).
    """
    check_images(images)
    names = list(resolve_layers(model, layers))
    sums: dict[str, torch.Tensor] = {}
    counts = dict.fromkeys(names, 0)
    dtypes = {}
    device = model_device(model)

    def make_hook(name: str):
        def hook(module, inputs, output):
            _check_output(name, output, torch.empty(0, dtype=torch.long))
            flat = output.detach().transpose(0, 1).reshape(output.shape[1], -1).double()
            sums[name] = sums.get(name, 0) + flat.sum(dim=1)
            counts[name] += flat.shape[1]
            dtypes[name] = output.dtype
        return hook

    hooks = [(module, make_hook(name)) for name, module in resolve_layers(model, layers).items()]
    with forward_hooks(hooks), eval_mode(model), torch.no_grad():
        for batch in _batches(images, batch_size):
            model(batch.to(device))
    missing = [n for n in names if not counts[n]]
    if missing:
        raise RuntimeError(f"layers {missing} were never called in the forward pass; pick layers "
                           "the model uses.")
    return {n: (sums[n] / counts[n]).to(dtypes[n]) for n in names}


def _check_value(value, baseline) -> None:
    if isinstance(value, str):
        if value != "mean":
            raise ValueError(f"value must be a number or 'mean', got {value!r}.")
        if baseline is None:
            raise ValueError("value='mean' needs baseline images (benign data) to average over; "
                             "pass baseline=x_benign.")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"value must be a finite number or 'mean', got {value!r}.")
    if baseline is not None:
        raise ValueError("baseline is only used with value='mean'; drop it or pass value='mean'.")


def _fill(values: float | dict[str, torch.Tensor]):
    """A ``replace`` function giving a constant, or per-neuron values ``{name: (k,)}``."""
    def replace(name, output, index):
        if isinstance(values, float):
            return torch.full((), values, dtype=output.dtype, device=output.device)
        return _broadcast(values[name], output)
    return replace


@contextlib.contextmanager
def deactivate(model: nn.Module, neurons: Neurons, *, value: float | str = 0.0,
               baseline: torch.Tensor | None = None, batch_size: int = 256) -> Iterator[nn.Module]:
    """Set the chosen neurons' outputs to zero, a constant, or their benign mean.

    *Deactivation* of E3: ``F_l^i(x') <- v`` for every chosen neuron ``i`` of layer ``l``
    and every spatial position, on every forward pass inside the ``with`` block.

    Args:
        model (nn.Module): the model (its mode is not changed).
        neurons (dict): ``{layer: indices along dim 1}``, e.g. ``{"conv3": [5, 17]}``.
        value (float or "mean", optional): the constant, or ``"mean"``: each neuron's mean
            output over ``baseline`` (ours: the mean over the batch *and* the spatial
            positions, one number per neuron broadcast over its feature map; computed on
            entry in eval mode, see :func:`neuron_means`). Default: ``0.0``.
        baseline (Tensor, optional): benign images ``(N, C, H, W)`` in [0, 1], only with
            ``value="mean"``. Default: ``None``.
        batch_size (int, optional): batch size for the baseline means. Default: ``256``.

    Shape:
        any input the model takes; dim 0 is the batch. The layer's output shape is kept.

    Yields:
        the model.

    Example:
        >>> with deactivate(model, {"conv1": [0, 3]}):  # doctest: +SKIP
        ...     logits = model(x_adv)
    """
    resolved = _resolve_neurons(model, neurons)
    _check_value(value, baseline)
    if value == "mean":
        means = neuron_means(model, baseline, list(resolved), batch_size=batch_size)
        for name, (module, index) in resolved.items():
            _check_output(name, means[name].unsqueeze(0), index)
        replace = _fill({name: means[name][index.to(means[name].device)]
                         for name, (module, index) in resolved.items()})
    else:
        replace = _fill(float(value))

    with _patched(resolved, replace):
        yield model


@contextlib.contextmanager
def stabilise(model: nn.Module, neurons: Neurons, benign: torch.Tensor) -> Iterator[nn.Module]:
    """Replace the chosen neurons' outputs on adversarial inputs with their benign outputs.

    *Stabilisation* of E3: ``F_l^i(x'_j) <- F_l^i(x_j)`` for every chosen neuron ``i``
    of layer ``l``; the other neurons keep their adversarial outputs. On entry one clean
    forward pass on ``benign`` (eval mode, no grad, no ablation) records the benign
    outputs of *all* chosen layers, so stabilising an early layer cannot change what is
    recorded for a later one. Every forward pass inside the block must then be on the
    paired adversarial batch: same size, same order as ``benign``.

    Args:
        model (nn.Module): the model (its mode is restored after the benign pass).
        neurons (dict): ``{layer: indices along dim 1}``, e.g. ``{"conv3": [5, 17]}``.
        benign (Tensor): the benign images ``x``, ``(N, C, H, W)`` in [0, 1].

    Shape:
        ``benign`` and the inputs inside the block ``(N, ...)`` with the same ``N``.

    Raises:
        ValueError: a forward pass inside the block has a different batch size (or
            layer shape) than ``benign``.

    Example:
        >>> with stabilise(model, {"conv3": [5, 17]}, x):  # doctest: +SKIP
        ...     logits = model(x_adv)
    """
    resolved = _resolve_neurons(model, neurons)
    check_images(benign, "benign")
    clean = _layer_outputs(model, benign.to(model_device(model)), resolved)
    for name, (module, index) in resolved.items():
        _check_output(name, clean[name], index)
    stored = {name: clean[name][:, index.to(clean[name].device)]
              for name, (module, index) in resolved.items()}
    del clean

    with _patched(resolved, _from_stored(stored)):
        yield model


stabilize = stabilise  #: American spelling, as in the paper's "Sensitive Neuron Stabilizing".


def _from_stored(stored: dict[str, torch.Tensor]):
    """A ``replace`` function giving ``stored[name]`` (benign outputs of the chosen neurons)."""
    def replace(name, output, index):
        expected = stored[name]
        if output.shape[0] != expected.shape[0]:
            raise ValueError(f"stabilise: the forward pass has batch size {output.shape[0]} but the "
                             f"benign batch has {expected.shape[0]}; pass the adversarial batch "
                             "paired with (same size and order as) the benign one.")
        if output.shape[2:] != expected.shape[2:]:
            raise ValueError(f"stabilise: layer {name!r} outputs shape {tuple(output.shape)} but the "
                             f"benign pass gave {tuple(expected.shape[2:])} after the neurons; the "
                             "adversarial inputs must have the benign inputs' shape.")
        return expected.to(output.device, output.dtype)
    return replace


def _layer_outputs(model: nn.Module, images: torch.Tensor, resolved) -> dict[str, torch.Tensor]:
    """One clean forward pass (eval mode, no grad): the outputs of the resolved layers."""
    store: dict[str, torch.Tensor] = {}
    hooks = [(module, lambda m, i, o, name=name: store.setdefault(name, o.detach().clone())
              if isinstance(o, torch.Tensor) else None) for name, (module, _) in resolved.items()]
    with forward_hooks(hooks), eval_mode(model), torch.no_grad():
        model(images)
    missing = [n for n in resolved if n not in store]
    if missing:
        raise RuntimeError(f"layers {missing} gave no tensor output in the forward pass; pick "
                           "layers the model uses that output one tensor.")
    return store


def _sweep_inputs(model, benign, adversarial, labels, sensitivity, layer, mode, selections, random_seeds):
    """Check :func:`ablation_sweep`'s inputs; return ``(layer name, module, sigma of the layer)``."""
    check_images(benign, "benign")
    check_images(adversarial, "adversarial")
    check_labels(benign, labels)
    if adversarial.shape != benign.shape:
        raise ValueError(f"adversarial must have the benign shape {tuple(benign.shape)} (paired, same "
                         f"order), got {tuple(adversarial.shape)}.")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {MODES}.")
    for selection in selections:
        if selection not in SELECTIONS:
            raise ValueError(f"unknown selection {selection!r}; use any of {SELECTIONS}.")
    (name, module), = resolve_layers(model, [layer]).items()
    scores = sensitivity
    if isinstance(sensitivity, Mapping):
        if name not in sensitivity:
            raise ValueError(f"sensitivity has no entry for layer {name!r}; it has {list(sensitivity)}.")
        scores = sensitivity[name]
    if not isinstance(scores, torch.Tensor) or scores.dim() != 1:
        raise ValueError("sensitivity must be {layer: tensor (neurons,)} or a 1-D tensor, got "
                         f"{type(scores).__name__}.")
    if "random" in selections and not random_seeds:
        raise ValueError("selection 'random' needs at least one seed in random_seeds.")
    return name, module, scores


def ablation_sweep(model: nn.Module, benign: torch.Tensor, adversarial: torch.Tensor,
                   labels: torch.Tensor, sensitivity, layer: LayerSpec, ks: Sequence[int], *,
                   mode: str = "stabilise", selections: Sequence[str] = SELECTIONS,
                   random_seeds: Sequence[int] = (0, 1, 2, 3, 4), value: float | str = 0.0,
                   batch_size: int = 256, progress: bool = False) -> list[dict]:
    """Adversarial accuracy and attack success rate when k neurons of one layer are ablated.

    E3 (``docs/experiments.md#e3-ablation``): for each selection (top-k by ``sigma_l``,
    k random with several seeds, bottom-k) and each k, stabilise (``F_l^i(x') <- F_l^i(x)``)
    or deactivate (``F_l^i(x') <- value``) the chosen neurons and classify the adversarial
    inputs.

    The neurons are chosen from ``sensitivity`` alone, so *where* it was measured is the
    caller's choice: measure it on other pairs than ``benign``/``adversarial``
    (:func:`selection_split`), or top-k profits from a selection bias.

    Args:
        model (nn.Module): the classifier; run in eval mode, the caller's mode restored.
        benign (Tensor): benign images ``x``, ``(N, C, H, W)`` in [0, 1].
        adversarial (Tensor): their adversarial examples ``x'``, same shape and order.
        labels (Tensor): true classes ``(N,)``.
        sensitivity (dict or Tensor): ``{layer: sigma (neurons,)}`` from
            :func:`nslib.sensitivity.neuron_sensitivity`, or the layer's tensor itself:
            the scores that pick the neurons, measured on *selection* pairs disjoint from
            ``benign``/``adversarial`` (:func:`selection_split`).
        layer (str or nn.Module): the layer whose neurons are ablated.
        ks (sequence of int): the numbers of neurons; ``0`` gives the plain attack.
        mode (str, optional): ``"stabilise"`` or ``"deactivate"``. Default: ``"stabilise"``.
        selections (sequence of str, optional): any of ``"top"``, ``"random"``,
            ``"bottom"``. Default: all three.
        random_seeds (sequence of int, optional): one random set per seed (nested in k
            for one seed). Default: ``(0, 1, 2, 3, 4)``.
        value (float or "mean", optional): the deactivation value; ``"mean"`` uses each
            neuron's mean over ``benign`` (batch and spatial positions). Default: ``0.0``.
        batch_size (int, optional): images per forward pass. Default: ``256``.
        progress (bool, optional): show a ``tqdm`` bar over batches. Default: ``False``.

    Returns:
        list of dict, one per (selection, k, seed): ``selection``, ``k``, ``seed`` (``None``
        unless random), ``neurons`` (the indices, a list), ``layer``, ``mode``,
        ``accuracy`` (fraction of adversarial inputs classified correctly under the
        ablation) and ``success_rate`` (among benign inputs the plain model classifies
        correctly, the fraction whose ablated adversarial prediction is wrong; NaN if
        there are none). Summarise with :func:`summarise_sweep`.

    Example:
        >>> select, evaluate = selection_split(x, x_adv, y, n_select=100)  # doctest: +SKIP
        >>> sigma = neuron_sensitivity(model, select[0], select[1], ["conv3"])  # doctest: +SKIP
        >>> records = ablation_sweep(model, *evaluate, sigma, "conv3", [0, 1, 5])  # doctest: +SKIP
        >>> summarise_sweep(records)[0]["accuracy_mean"]  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    name, module, scores = _sweep_inputs(model, benign, adversarial, labels, sensitivity, layer, mode,
                                         selections, random_seeds)
    configs = []  # (selection, k, seed, indices)
    for selection in selections:
        for k in ks:
            for seed in (random_seeds if selection == "random" else (None,)):
                configs.append((selection, k, seed, select_neurons(scores, k, selection, seed=seed)))
    resolved = {name: (module, torch.empty(0, dtype=torch.long))}
    correct = [0] * len(configs)
    fooled = [0] * len(configs)
    originally_correct = 0
    device = model_device(model)
    means = None
    if mode == "deactivate":
        _check_value(value, benign if value == "mean" else None)
        if value == "mean":
            means = neuron_means(model, benign, [name], batch_size=batch_size)[name]

    with eval_mode(model), torch.no_grad():
        pairs = zip(_batches(benign, batch_size), adversarial.split(batch_size), labels.split(batch_size))
        total = math.ceil(len(benign) / batch_size)
        for x, x_adv, y in tqdm(pairs, total=total, desc="ablation sweep", disable=not progress):
            x, x_adv, y = x.to(device), x_adv.to(device), y.to(device)
            clean = _layer_outputs(model, x, resolved)[name]  # benign output of the whole layer
            _check_output(name, clean, torch.empty(0, dtype=torch.long))
            if clean.shape[1] != scores.numel():
                raise ValueError(f"sensitivity has {scores.numel()} values but layer {name!r} has "
                                 f"{clean.shape[1]} neurons.")
            benign_ok = model(x).argmax(dim=1) == y
            originally_correct += int(benign_ok.sum())
            for c, (selection, k, seed, index) in enumerate(configs):
                if mode == "stabilise":
                    replace = _from_stored({name: clean[:, index.to(device)]})
                elif means is not None:
                    replace = _fill({name: means[index.to(means.device)]})
                else:
                    replace = _fill(float(value))
                with _patched({name: (module, index)}, replace):
                    adv_ok = model(x_adv).argmax(dim=1) == y
                correct[c] += int(adv_ok.sum())
                fooled[c] += int((benign_ok & ~adv_ok).sum())

    n = len(benign)
    return [{"selection": selection, "k": k, "seed": seed, "neurons": index.tolist(), "layer": name,
             "mode": mode, "accuracy": correct[c] / n,
             "success_rate": fooled[c] / originally_correct if originally_correct else float("nan")}
            for c, (selection, k, seed, index) in enumerate(configs)]


def summarise_sweep(records: Sequence[dict]) -> list[dict]:
    """Mean and spread over seeds of each (selection, k) in :func:`ablation_sweep`'s records.

    Returns:
        list of dict, in first-seen order: ``selection``, ``k``, ``layer``, ``mode``, ``n``
        (records averaged), ``accuracy_mean``, ``accuracy_std``, ``success_rate_mean``,
        ``success_rate_std``. The std is the sample std (``n - 1``) over seeds, ``0.0``
        for one record (top/bottom are deterministic).

    Example:
        >>> rows = [{"selection": "random", "k": 1, "accuracy": a, "success_rate": 1 - a}
        ...         for a in (0.5, 0.7)]
        >>> summarise_sweep(rows)[0]["accuracy_mean"]
        0.6
    """
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        key = (record.get("layer"), record.get("mode"), record["selection"], record["k"])
        groups.setdefault(key, []).append(record)
    summary = []
    for (layer, mode, selection, k), group in groups.items():
        row = {"selection": selection, "k": k, "layer": layer, "mode": mode, "n": len(group)}
        for metric in ("accuracy", "success_rate"):
            values = [r[metric] for r in group]
            mean = math.fsum(values) / len(values)
            spread = math.fsum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean, math.sqrt(spread)
        summary.append(row)
    return summary
