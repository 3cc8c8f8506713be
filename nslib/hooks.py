"""Layer outputs by dotted name, with hooks that are always removed.

Captum-style: a layer is looked up by its dotted name in ``model.named_modules()``
(an unknown name lists the valid ones); forward hooks are registered inside ``try``
and removed in ``finally``; captured outputs are cloned, so a later in-place op
(``ReLU(inplace=True)``) cannot change them. Taught in
lesson 02 (``02_neuron_sensitivity.ipynb``).
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator, Union

import torch
from torch import nn

__all__ = ["LayerSpec", "layer_names", "get_layer", "resolve_layers", "forward_hooks", "capture", "activations",
           "summary"]

#: A layer given by dotted name (``"layer2.0.conv1"``) or as the module itself.
LayerSpec = Union[str, nn.Module]


def layer_names(model: nn.Module, *, kinds: tuple[type, ...] | None = None) -> list[str]:
    """Dotted names of ``model``'s submodules (optionally only those of ``kinds``), in order."""
    return [name for name, module in model.named_modules()
            if name and (kinds is None or isinstance(module, kinds))]


def get_layer(model: nn.Module, layer: LayerSpec) -> nn.Module:
    """The submodule named ``layer`` (or ``layer`` itself if it is a submodule of ``model``).

    Raises:
        ValueError: the name is unknown; the message lists the valid names.
    """
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise ValueError("the module passed as a layer is not part of this model; pass a "
                             f"dotted name instead, one of {layer_names(model)}.")
        return layer
    if not isinstance(layer, str):
        raise TypeError(f"a layer is a dotted name (str) or an nn.Module, got {type(layer).__name__}.")
    try:
        return model.get_submodule(layer) if layer else _raise_unknown(model, layer)
    except AttributeError:
        return _raise_unknown(model, layer)


def _raise_unknown(model: nn.Module, layer: str) -> nn.Module:
    raise ValueError(f"unknown layer {layer!r}; valid layer names are {layer_names(model)}.")


def _name_of(model: nn.Module, module: nn.Module) -> str:
    return next(name for name, m in model.named_modules() if m is module)


def resolve_layers(model: nn.Module, layers: LayerSpec | Iterable[LayerSpec]) -> dict[str, nn.Module]:
    """``{dotted name: module}`` for one layer or several, in the order given."""
    if isinstance(layers, (str, nn.Module)):
        layers = [layers]
    resolved = {}
    for layer in layers:
        module = get_layer(model, layer)
        resolved[layer if isinstance(layer, str) else _name_of(model, module)] = module
    if not resolved:
        raise ValueError(f"no layers given; choose from {layer_names(model)}.")
    return resolved


@contextlib.contextmanager
def forward_hooks(hooks: Iterable[tuple[nn.Module, Callable]]) -> Iterator[None]:
    """Register each ``(module, hook)`` forward hook for the ``with`` block; remove them all in ``finally``.

    The one place nslib registers hooks: every handle is removed even if the block (or
    the registration of a later hook) raises. A hook that returns a tensor replaces the
    module's output (ablation); one that returns ``None`` only observes (capture).

    Example:
        >>> seen = []
        >>> layer = nn.Linear(2, 2)
        >>> with forward_hooks([(layer, lambda m, i, o: seen.append(o.shape))]):
        ...     _ = layer(torch.zeros(1, 2))
        >>> seen, len(layer._forward_hooks)
        ([torch.Size([1, 2])], 0)
    """
    handles = []
    try:
        for module, hook in hooks:
            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def capture(model: nn.Module, layers: LayerSpec | Iterable[LayerSpec], *,
            detach: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of ``layers`` on every forward pass inside the ``with`` block.

    The yielded dict maps each layer's name to its output on the latest forward pass.

    Args:
        model (nn.Module): the model.
        layers (str, nn.Module or a list of them): dotted names or modules.
        detach (bool, optional): store detached clones (for measuring). With
            ``False`` the stored clone keeps its autograd graph, so a loss on it
            trains the model (SNS). Default: ``True``.

    Shape:
        each value has the layer's output shape, batch along dim 0: ``(N, C, H, W)``
        for a conv layer, ``(N, units)`` for a linear one.

    Example:
        >>> with capture(model, ["conv1", "fc1"]) as acts:  # doctest: +SKIP
        ...     model(x)
        >>> acts["conv1"].shape  # doctest: +SKIP
    """
    resolved = resolve_layers(model, layers)
    store: dict[str, torch.Tensor] = {}

    def make_hook(name: str):
        def hook(module: nn.Module, inputs, output):
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"layer {name!r} returns {type(output).__name__}, not a tensor; "
                                "pick a layer that outputs one tensor.")
            store[name] = output.detach().clone() if detach else output.clone()
        return hook

    with forward_hooks((module, make_hook(name)) for name, module in resolved.items()):
        yield store


def activations(model: nn.Module, images: torch.Tensor,
                layers: LayerSpec | Iterable[LayerSpec]) -> dict[str, torch.Tensor]:
    """Outputs of ``layers`` for ``images``, one forward pass without gradients.

    ``images`` go to the model's device first; the outputs stay there.

    Raises ``RuntimeError`` naming the layers whose hook never fired (a layer the
    forward pass does not use).
    """
    with torch.no_grad(), capture(model, layers) as store:
        model(_on_model_device(model, images))
    names = list(resolve_layers(model, layers))
    missing = [n for n in names if n not in store]
    if missing:
        raise RuntimeError(f"layers {missing} were never called in the forward pass, so they "
                           "have no output; pick layers the model uses.")
    return {n: store[n] for n in names}


def summary(model: nn.Module, example: torch.Tensor) -> list[dict]:
    """One row per leaf layer the forward pass uses: its name, type, output shape and neurons.

    Args:
        model (nn.Module): the model.
        example (Tensor): one input batch, e.g. ``(1, C, H, W)`` (moved to the model's device).

    Returns:
        list of dict: ``{"name", "type", "shape" (output shape without the batch dim),
        "neurons" (size of dim 1: channels of a conv, units of a linear)}``, in call order.

    Example:
        >>> for row in summary(model, x[:1]):  # doctest: +SKIP
        ...     print(row["name"], row["shape"], row["neurons"])
    """
    leaves = [name for name, m in model.named_modules() if name and not any(True for _ in m.children())]
    order: list[str] = []
    with capture(model, leaves) as store, forward_hooks(
            (model.get_submodule(n), lambda m, i, o, n=n: order.append(n)) for n in leaves):
        with torch.no_grad():
            model(_on_model_device(model, example))
    return [{"name": n, "type": type(model.get_submodule(n)).__name__,
             "shape": tuple(store[n].shape[1:]), "neurons": store[n].shape[1]}
            for n in dict.fromkeys(order)]


def _on_model_device(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``images`` on the device of ``model``'s parameters (or buffers); as given for a model with neither."""
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    return images if tensor is None else images.to(tensor.device)
