"""An interactive explorer of neuron sensitivity: pick an image, eps, layer and neuron.

Shows the neuron's feature map on the benign image and on its adversarial twin (made
by ``attack_factory(eps)``), upsampled over the image (:func:`nslib.plotting.plot_feature_maps`),
with the neuron's sensitivity on this pair, ``(1/dim) ||F_l^i(x) - F_l^i(x')||_1``, and,
if given, over a whole data set (``sigma_l^i``). Built with ``ipywidgets``; without them
or without a running Jupyter kernel it degrades to one static figure. A saved notebook
keeps no live widget: show the first selection with ``static=True`` in one cell (what
nbval and a static viewer see), and the live explorer in a cell of its own marked
``# NBVAL_IGNORE_OUTPUT``. Its saved output carries, beside the widget, the first selection as
a picture with a one-line note (:data:`EXPLORER_TEXT`), which a saved notebook, nbconvert's HTML
and the course's website show (``nslib.editions.clean_notebook`` drops the stale widget view).
In Colab, ``sensitivity_explorer`` switches on Colab's custom widget manager itself. Taught in
lesson 03 (``03_sensitive_neurons_and_ablation.ipynb``). Needs ``ipywidgets`` (the ``course``
extra: ``pip install "nslib-course[course]"``) when a kernel shows it live.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import nn

from nslib.hooks import capture, resolve_layers
from nslib.plotting import plot_feature_maps
from nslib.sensitivity import neuron_distance, rank_neurons
from nslib.utils import check_images, check_labels, eval_mode, model_device

__all__ = ["widgets_available", "sensitivity_explorer", "EXPLORER_TEXT"]

#: What the live explorer shows where widgets cannot render (a saved notebook, a static viewer).
EXPLORER_TEXT = "[sensitivity explorer: a picture of its first selection; run this cell in Jupyter to use it]"


def widgets_available() -> bool:
    """``True`` when a Jupyter kernel is running (a frontend can show widgets).

    Raises:
        ImportError: a kernel runs but ``ipywidgets`` is missing; the message names the extra.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    _import_ipywidgets()
    return True


def _import_ipywidgets():
    try:
        import ipywidgets
    except ImportError as error:
        raise ImportError('the interactive explorer needs ipywidgets: pip install "nslib-course[course]" '
                          "(or pip install ipywidgets), then restart the kernel; static=True draws a static "
                          "figure instead.") from error
    return ipywidgets


def _enable_colab_widgets() -> None:
    """In Google Colab, switch on its custom widget manager (ipywidgets 8 needs it); elsewhere nothing."""
    try:
        from google.colab import output  # type: ignore[import-not-found]
    except ImportError:
        return
    output.enable_custom_widget_manager()


def _png(fig: Figure) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


class _Pairs:
    """Lazily computed and cached adversarial images, layer outputs and predictions."""

    def __init__(self, model, images, labels, layers, attack_factory):
        self.model, self.images, self.labels = model, images, labels
        self.layers, self.attack_factory = layers, attack_factory
        self.cache: dict = {}
        self.device = model_device(model)

    def forward(self, x: torch.Tensor):
        with eval_mode(self.model), torch.no_grad(), capture(self.model, self.layers) as store:
            logits = self.model(x.to(self.device))
        for name in self.layers:
            if name not in store:
                raise RuntimeError(f"layer {name!r} was not called in the forward pass; pick layers "
                                   "the model uses.")
            if store[name].dim() != 4:
                raise ValueError(f"layer {name!r} outputs shape {tuple(store[name].shape)}, not a feature "
                                 "map (N, C, H, W); the explorer shows conv layers only.")
        return {n: store[n][0].cpu() for n in self.layers}, int(logits.argmax(dim=1)[0])

    def get(self, index: int, eps: float):
        if ("benign", index) not in self.cache:
            self.cache[("benign", index)] = self.forward(self.images[index:index + 1])
        if (index, eps) not in self.cache:
            attack = self.attack_factory(eps)
            x = self.images[index:index + 1].to(self.device)
            adversarial = attack(x, self.labels[index:index + 1].to(self.device)).detach()
            self.cache[(index, eps)] = (adversarial[0].cpu(), *self.forward(adversarial))
        maps, pred = self.cache[("benign", index)]
        adversarial, adv_maps, adv_pred = self.cache[(index, eps)]
        return maps, pred, adversarial, adv_maps, adv_pred


def _pair_sigma(maps: torch.Tensor, adv_maps: torch.Tensor) -> torch.Tensor:
    """Per-neuron ``(1/dim) ||F(x) - F(x')||_1`` for one pair: ``(C, H, W)`` maps -> ``(C,)``."""
    return neuron_distance(maps[None], adv_maps[None])[0]


def sensitivity_explorer(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                         layers: Sequence[str], attack_factory: Callable[[float], Callable],
                         eps_values: Sequence[float], sensitivity: Mapping[str, torch.Tensor] | None = None,
                         *, index: int = 0, eps: float | None = None, layer: str | None = None,
                         neuron: int | None = None, static: bool | None = None):
    """Explore one neuron's benign vs adversarial feature maps and its sensitivity.

    Args:
        model (nn.Module): the classifier (evaluated in eval mode, mode restored).
        images (Tensor): candidate images ``(N, C, H, W)`` in [0, 1].
        labels (Tensor): their classes ``(N,)``.
        layers (list of str): conv layers to choose from (dotted names).
        attack_factory (callable): ``eps -> attack``, the attack called as
            ``attack(images, labels)``, e.g. ``lambda eps: PGD(model, eps=eps, alpha=eps / 4)``.
        eps_values (list of float): the budgets to choose from.
        sensitivity (dict, optional): ``{layer: sigma (neurons,)}`` measured on a data set;
            shown next to the pair's own value, and neurons are then listed from the most
            sensitive down. Default: ``None``.
        index, eps, layer, neuron (optional): the first selection. Defaults: image 0, the
            largest eps, the first layer, its most sensitive neuron (by ``sensitivity``,
            else on this pair).
        static (bool, optional): ``None`` picks widgets when ``ipywidgets`` and a running
            kernel are available, else a static figure; ``True`` forces the static figure;
            ``False`` forces the widgets (needs ``ipywidgets``). Default: ``None``.

    Returns:
        an ``ipywidgets.VBox`` (controls ``image``, ``eps``, ``layer``, ``neuron`` and the
        figure; its plain-text form is :data:`EXPLORER_TEXT`), or a matplotlib Figure of
        the first selection in static mode.

    Example:
        >>> sensitivity_explorer(model, x[:16], y[:16], ["conv1", "conv3"],  # doctest: +SKIP
        ...                      lambda eps: PGD(model, eps=eps), [0.1, 0.2, 0.3])
    """
    check_images(images)
    check_labels(images, labels)
    names = list(resolve_layers(model, layers))
    eps_values = [float(e) for e in eps_values]
    if not eps_values:
        raise ValueError("eps_values is empty; pass the budgets to choose from, e.g. [0.1, 0.3].")
    eps = eps_values[-1] if eps is None else float(eps)
    layer = names[0] if layer is None else layer
    if eps not in eps_values or layer not in names or not 0 <= index < len(images):
        raise ValueError(f"the first selection must be among the choices: eps in {eps_values}, layer "
                         f"in {names}, index in [0, {len(images)}); got eps={eps}, layer={layer!r}, "
                         f"index={index}.")
    if sensitivity is not None and not set(names) <= set(sensitivity):
        raise ValueError(f"sensitivity lacks layers {sorted(set(names) - set(sensitivity))}.")
    pairs = _Pairs(model, images, labels, names, attack_factory)

    def default_neuron(i: int, e: float, name: str) -> int:
        if sensitivity is not None:
            return int(torch.argmax(sensitivity[name]))
        maps, _, _, adv_maps, _ = pairs.get(i, e)
        return int(torch.argmax(_pair_sigma(maps[name], adv_maps[name])))

    def render(i: int, e: float, name: str, c: int) -> Figure:
        maps, pred, adversarial, adv_maps, adv_pred = pairs.get(i, e)
        pair = _pair_sigma(maps[name], adv_maps[name])
        if not 0 <= c < len(pair):
            raise ValueError(f"neuron must be in [0, {len(pair)}) for layer {name!r}, got {c}.")
        data = f", over the data set {float(sensitivity[name][c]):.3g}" if sensitivity is not None else ""
        title = (f"image {i} (label {int(labels[i])}), ε = {e:g}: prediction {pred} → {adv_pred}\n"
                 f"{name} neuron {c}: sensitivity on this pair {float(pair[c]):.3g}{data}")
        return plot_feature_maps(images[i], adversarial, maps[name], adv_maps[name], [c],
                                 sensitivity=sensitivity[name] if sensitivity is not None else pair,
                                 layer_name=name, title=title)

    neuron = default_neuron(index, eps, layer) if neuron is None else int(neuron)
    if static is None:
        static = not widgets_available()
    if static:
        return render(index, eps, layer, neuron)
    return _build_widgets(render, pairs, sensitivity, len(images), eps_values, names,
                          (index, eps, layer, neuron), default_neuron)


def _build_widgets(render, pairs, sensitivity, n_images, eps_values, names, first, default_neuron):
    W = _import_ipywidgets()
    from IPython.display import display

    _enable_colab_widgets()
    index, eps, layer, neuron = first

    def neuron_options(name: str, i: int, e: float):
        if sensitivity is not None:
            sigma = sensitivity[name]
            order = rank_neurons(sigma).tolist()
            return [(f"{c} (σ = {float(sigma[c]):.3g})", c) for c in order]
        return [(str(c), c) for c in range(pairs.get(i, e)[0][name].shape[0])]

    image_w = W.BoundedIntText(value=index, min=0, max=n_images - 1, description="image")
    eps_w = W.SelectionSlider(options=[(f"{e:g}", e) for e in eps_values], value=eps, description="eps")
    layer_w = W.Dropdown(options=names, value=layer, description="layer")
    neuron_w = W.Dropdown(options=neuron_options(layer, index, eps), value=neuron, description="neuron")
    out = W.Output()
    busy = [False]

    def redraw(change=None):
        if busy[0]:
            return
        with out:
            out.clear_output(wait=True)
            fig = render(image_w.value, eps_w.value, layer_w.value, neuron_w.value)
            display(fig)
            plt.close(fig)

    def on_layer(change):
        busy[0] = True
        try:
            neuron_w.options = neuron_options(change["new"], image_w.value, eps_w.value)
            neuron_w.value = default_neuron(image_w.value, eps_w.value, change["new"])
        finally:
            busy[0] = False
        redraw()

    for control in (image_w, eps_w, neuron_w):
        control.observe(redraw, names="value")
    layer_w.observe(on_layer, names="value")
    redraw()

    first_png = _png(render(*first))

    class Explorer(W.VBox):
        """The explorer's box. Where widgets cannot run (a saved notebook, nbconvert's HTML, the
        website) it shows the first selection as a picture with a one-line note."""

        def __repr__(self) -> str:
            return EXPLORER_TEXT

        def _repr_mimebundle_(self, **kwargs):
            import base64
            import html

            bundle = super()._repr_mimebundle_(**kwargs)
            encoded = base64.b64encode(first_png).decode("ascii")
            bundle["image/png"] = encoded
            bundle["text/html"] = (f'<figure><img alt="sensitivity explorer, first selection" '
                                   f'src="data:image/png;base64,{encoded}"/>'
                                   f"<figcaption>{html.escape(EXPLORER_TEXT)}</figcaption></figure>")
            return bundle

    return Explorer([W.HBox([image_w, eps_w]), W.HBox([layer_w, neuron_w]), out])
