"""Figures for the course: layer sensitivity (E1), distributions (E2), ablation (E3),
feature maps (E4), examples, robust accuracy vs eps (E5), sensitivity vs robustness (E6),
SNS knobs (E7).

Every function returns the ``matplotlib`` Figure, titles it, labels its axes with units,
never calls ``plt.show()`` and works headless (``matplotlib.use("Agg")``). Where one
panel is drawn, an ``ax`` may be passed to draw into an existing figure. Figures are
made with ``pyplot``, so Jupyter's inline backend shows them at the end of the cell:
assign the result (``fig = plot_...(...)``) so it is not shown twice. Accuracies are
fractions in [0, 1] and are drawn in percent. Taught in notebooks 01-05.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

__all__ = ["upsample", "plot_layer_sensitivity", "plot_sensitivity_distribution",
           "plot_ablation_curves", "plot_ablation_grid", "plot_feature_maps", "plot_examples", "plot_accuracy_vs_eps",
           "plot_sensitivity_vs_robustness", "plot_sns_knobs", "grouped_bars", "plot_seed_metrics", "log_scale"]

SENSITIVITY_LABEL = "layer sensitivity (mean |ΔF|, activation units)"
NEURON_LABEL = "neuron sensitivity σ (mean |ΔF|, activation units)"
SELECTION_STYLE = {"top": ("tab:red", "top-k (most sensitive)"),
                   "random": ("tab:gray", "random k (mean ± std over seeds)"),
                   "bottom": ("tab:blue", "bottom-k (least sensitive)")}


def _figure(ax=None, figsize=(6.4, 4.0)):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
        return fig, ax
    return ax.figure, ax


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=float)


def log_scale(ax, axis: str = "y") -> None:
    """Put ``ax``'s ``axis`` (``"x"`` or ``"y"``) on a log scale labelled in plain numbers (0.2, 0.5, 1, 2, 5):
    matplotlib's default labels a range narrower than a decade as ``4×10⁰``."""
    from matplotlib import ticker

    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}.")
    getattr(ax, f"set_{axis}scale")("log")
    scale = ax.xaxis if axis == "x" else ax.yaxis
    scale.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    scale.set_major_formatter(ticker.FormatStrFormatter("%g"))
    scale.set_minor_formatter(ticker.NullFormatter())


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Feature maps resized to ``size`` (bilinear, ``F.interpolate``) to lay over an image.

    Shape: ``(C, h, w)`` or ``(N, C, h, w)`` -> the same with ``(H, W) = size``.
    """
    if maps.dim() not in (3, 4):
        raise ValueError(f"feature maps must be (C, h, w) or (N, C, h, w) (a conv layer's output), got "
                         f"shape {tuple(maps.shape)}; a linear layer has no spatial map to show.")
    batched = maps if maps.dim() == 4 else maps.unsqueeze(0)
    out = F.interpolate(batched.detach().float(), size=tuple(size), mode="bilinear", align_corners=False)
    return out if maps.dim() == 4 else out[0]


def grouped_bars(values: Mapping[str, Mapping[str, float]], errors: Mapping[str, Mapping[str, float]] | None = None,
                 *, ax=None, xlabel: str = "", ylabel: str = "", title: str = "", legend: str = "model") -> Figure:
    """Grouped bars: one group per inner key, one bar per outer key, with optional error bars.

    Args:
        values (dict): ``{bar name: {group: height}}``; groups in order of appearance, a
            group a bar lacks is left empty.
        errors (dict, optional): the same shape: half-heights of the error bars (e.g. the
            standard deviation over training seeds). Default: none.
    """
    if not values:
        raise ValueError("values is empty; pass {bar name: {group: height}}.")
    groups = list(dict.fromkeys(group for per_group in values.values() for group in per_group))
    fig, ax = _figure(ax, figsize=(max(6.4, 1.1 * len(groups) * max(1, len(values) / 2)), 4.0))
    width = 0.8 / len(values)
    x = np.arange(len(groups))
    colours = sns.color_palette("colorblind", len(values))
    for i, (name, per_group) in enumerate(values.items()):
        heights = [float(per_group.get(group, np.nan)) for group in groups]
        yerr = None if errors is None else [float(errors.get(name, {}).get(group, 0.0)) for group in groups]
        ax.bar(x - 0.4 + width * (i + 0.5), heights, width, yerr=yerr, capsize=3 if yerr else 0, label=name,
               color=colours[i])
    ax.set_xticks(x, groups, rotation=30 if len(groups) > 6 else 0)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(title=legend)
    return fig


def plot_layer_sensitivity(results: Mapping[str, Mapping[str, float]], *, ax=None,
                           title: str = "Layer sensitivity per model (E1)",
                           errors: Mapping[str, Mapping[str, float]] | None = None) -> Figure:
    """E1: grouped bars, one group per layer, one bar per model.

    Args:
        results (dict): ``{model name: {layer: layer sensitivity}}`` (from
            :func:`nslib.sensitivity.layer_sensitivity`); layers in the first model's order,
            a layer a model lacks is left empty.
        ax (Axes, optional): draw here. Default: a new figure.
        title (str, optional): the title.
        errors (dict, optional): ``{model name: {layer: std over seeds}}``, drawn as error bars.
    """
    if not results:
        raise ValueError("results is empty; pass {model name: {layer: sensitivity}}.")
    return grouped_bars(results, errors, ax=ax, xlabel="layer", ylabel=SENSITIVITY_LABEL, title=title)


def plot_seed_metrics(summary: Sequence[Mapping], metrics: Mapping[str, str], *, ax=None,
                      title: str = "Accuracy over training seeds (mean ± std)") -> Figure:
    """E5: each model's accuracy under each attack, mean over training seeds with std error bars.

    Args:
        summary (list of dict): rows with ``model``, ``seeds`` and ``<metric>_mean`` /
            ``<metric>_std`` (``nslib.experiments.models.seed_summary``).
        metrics (dict): ``{metric key: label}``, e.g. ``{"pgd40_acc": "PGD-40"}``; a metric a
            row lacks (None) is left empty.
    """
    values = {f"{r['model']} ({r['seeds']})": {label: r[f"{key}_mean"] for key, label in metrics.items()
                                               if r.get(f"{key}_mean") is not None} for r in summary}
    errors = {f"{r['model']} ({r['seeds']})": {label: r[f"{key}_std"] for key, label in metrics.items()
                                               if r.get(f"{key}_std") is not None} for r in summary}
    fig = grouped_bars(values, errors, ax=ax, xlabel="attack", ylabel="accuracy", title=title,
                       legend="model (seeds)")
    fig.axes[0].set_ylim(0, 1)
    return fig


def plot_sensitivity_distribution(sensitivity: Mapping[str, Mapping[str, torch.Tensor]],
                                  layers: Sequence[str] | None = None, *, kind: str = "violin",
                                  title: str = "Per-neuron sensitivity per layer (E2)") -> Figure:
    """E2: the distribution of ``sigma_l^i`` over the neurons of each layer, model by model.

    Args:
        sensitivity (dict): ``{model name: {layer: sigma (neurons,)}}`` (from
            :func:`nslib.sensitivity.neuron_sensitivity`).
        layers (list of str, optional): layers to show, one panel each. Default: all
            layers of the first model.
        kind (str, optional): ``"violin"`` (seaborn violins with the neurons as dots) or
            ``"sorted"`` (sigma sorted from the largest down against the neuron's rank: the
            long tail that defines "sensitive"). Default: ``"violin"``.
    """
    if not sensitivity:
        raise ValueError("sensitivity is empty; pass {model name: {layer: tensor (neurons,)}}.")
    if kind not in ("violin", "sorted"):
        raise ValueError(f"kind must be 'violin' or 'sorted', got {kind!r}.")
    layers = list(layers) if layers is not None else list(next(iter(sensitivity.values())))
    models = list(sensitivity)
    colours = dict(zip(models, sns.color_palette("colorblind", len(models))))
    fig, axes = plt.subplots(1, len(layers), figsize=(3.2 * len(layers) + 1, 3.8),
                             layout="constrained", squeeze=False)
    for ax, layer in zip(axes[0], layers):
        missing = [m for m in models if layer not in sensitivity[m]]
        if missing:
            raise ValueError(f"layer {layer!r} is missing for models {missing}.")
        values = {m: _numpy(sensitivity[m][layer]) for m in models}
        if kind == "violin":
            names = [m for m in models for _ in values[m]]
            data = np.concatenate([values[m] for m in models])
            sns.violinplot(x=names, y=data, hue=names, palette=colours, cut=0, inner=None,
                           density_norm="width", legend=False, ax=ax)
            sns.stripplot(x=names, y=data, color="black", size=2, alpha=0.5, ax=ax)
            ax.set_xlabel("model")
        else:
            for m in models:
                ordered = np.sort(values[m])[::-1]
                ax.plot(np.arange(1, len(ordered) + 1), ordered, marker=".", label=m, color=colours[m])
            ax.set_xlabel("neuron rank (1 = most sensitive)")
            ax.legend(title="model")
        ax.set(title=f"{layer} ({len(next(iter(values.values())))} neurons)")
    axes[0, 0].set_ylabel(NEURON_LABEL.replace(" (", "\n(", 1))  # once, on two lines: it would run into the next panel
    fig.suptitle(title)
    return fig


def plot_ablation_curves(records: Sequence[dict], metric: str = "accuracy", *, ax=None,
                         title: str | None = None, legend: bool = True) -> Figure:
    """E3: adversarial accuracy (or attack success rate) against the number k of neurons ablated.

    When the k's span more than a factor 8 (e.g. 0, 1, 2, 4, ..., all neurons) the k axis is
    log-like (``symlog``, so k = 0 stays visible) with a tick at every k swept.

    Args:
        records (list of dict): :func:`nslib.ablation.ablation_sweep`'s records or
            :func:`nslib.ablation.summarise_sweep`'s summary. Random selections are drawn
            as the mean over seeds with a ±1 std band.
        metric (str, optional): ``"accuracy"`` or ``"success_rate"``. Default: ``"accuracy"``.
        ax (Axes, optional): draw here. Default: a new figure of 7 x 4 inches.
        title (str, optional): default names the mode and the layer.
        legend (bool, optional): draw the legend in the panel. Default: ``True``.
    """
    from nslib.ablation import summarise_sweep

    if metric not in ("accuracy", "success_rate"):
        raise ValueError(f"metric must be 'accuracy' or 'success_rate', got {metric!r}.")
    if not records:
        raise ValueError("records is empty; pass the output of ablation_sweep.")
    summary = records if f"{metric}_mean" in records[0] else summarise_sweep(records)
    fig, ax = _figure(ax, figsize=(7.0, 4.0))
    for selection in dict.fromkeys(row["selection"] for row in summary):
        rows = sorted((r for r in summary if r["selection"] == selection), key=lambda r: r["k"])
        k = np.array([r["k"] for r in rows])
        mean = 100 * np.array([r[f"{metric}_mean"] for r in rows])
        std = 100 * np.array([r[f"{metric}_std"] for r in rows])
        colour, label = SELECTION_STYLE.get(selection, (None, selection))
        ax.plot(k, mean, marker="o", color=colour, label=label)
        if np.any(std > 0):
            ax.fill_between(k, mean - std, mean + std, color=colour, alpha=0.25, linewidth=0)
    ax.set(xlabel="k (neurons ablated)", ylim=(-2, 102),
           ylabel="adversarial accuracy (%)" if metric == "accuracy" else "attack success rate (%)")
    ks = sorted({r["k"] for r in summary})
    positive = [k for k in ks if k > 0]
    if positive and positive[-1] > 8 * positive[0]:
        ax.set_xscale("symlog", linthresh=1, linscale=0.5)
        ax.set_xlim(-0.2 if ks[0] == 0 else positive[0] / 1.3, ks[-1] * 1.3)
        ax.set_xticks(ks, [str(k) for k in ks], fontsize=9)
        ax.xaxis.set_minor_locator(plt.NullLocator())
    mode, layer = summary[0].get("mode"), summary[0].get("layer")
    ax.set_title(title or f"{(mode or 'ablation').capitalize()} k neurons of {layer or 'the layer'} (E3)",
                 fontsize=11)
    if legend:
        ax.legend(fontsize=9)
    return fig


def plot_ablation_grid(summaries: Mapping[tuple[str, str], Sequence[dict]], *,
                       title: str = "Ablating k neurons (E3)", metric: str = "accuracy") -> Figure:
    """E3: ablation curves of several layers and modes, one :func:`plot_ablation_curves` panel each.

    Rows are the layers, columns the modes, in the order they first appear in ``summaries``;
    the figure is at most 9 inches wide (4.5 x 3.3 inches a panel for two modes), so it stays
    readable at notebook width, with one legend for all panels below them.

    Args:
        summaries (dict): ``{(layer, mode): summary}``, each summary from
            :func:`nslib.ablation.summarise_sweep` (or the sweep's records).
        title (str, optional): the figure's title (a ``"\\n"`` breaks a long one).
        metric (str, optional): ``"accuracy"`` or ``"success_rate"``. Default: ``"accuracy"``.
    """
    if not summaries:
        raise ValueError("summaries is empty; pass {(layer, mode): summarise_sweep(...)}.")
    layers = list(dict.fromkeys(layer for layer, _ in summaries))
    modes = list(dict.fromkeys(mode for _, mode in summaries))
    width = min(9.0, 4.5 * len(modes))
    fig = plt.figure(figsize=(width, 3.3 * len(layers) + 0.9), layout="constrained")
    axes = fig.subplots(len(layers), len(modes), squeeze=False)
    for (layer, mode), summary in summaries.items():
        plot_ablation_curves(summary, metric, ax=axes[layers.index(layer), modes.index(mode)], legend=False)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=9)
    fig.suptitle(title, fontsize=11)
    return fig


def _show_image(ax, image: torch.Tensor) -> None:
    image = image.detach().cpu().float()
    if image.dim() == 4:
        image = image[0]
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())


def _blank(ax, *, xlabel: str = "", ylabel: str = "") -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def plot_feature_maps(benign_image: torch.Tensor, adversarial_image: torch.Tensor,
                      benign_maps: torch.Tensor, adversarial_maps: torch.Tensor,
                      neuron_indices: Sequence[int], sensitivity: torch.Tensor | None = None,
                      layer_name: str = "layer", *, alpha: float = 0.55, cmap: str = "jet",
                      title: str | None = None) -> Figure:
    """E4: chosen neurons' feature maps on a benign and an adversarial input, over the image.

    Row 1 is the benign input, row 2 the adversarial one; column 1 the image, then one
    column per neuron with its map upsampled bilinearly to the image size and overlaid
    with transparency ``alpha``. Both rows of a neuron share one colour scale.

    Args:
        benign_image, adversarial_image (Tensor): ``(C, H, W)`` or ``(1, C, H, W)`` in [0, 1].
        benign_maps, adversarial_maps (Tensor): the layer's output for each, ``(C_l, h, w)``
            or ``(1, C_l, h, w)``.
        neuron_indices (list of int): channels to show (e.g. the top-k by sensitivity).
        sensitivity (Tensor, optional): ``sigma`` of the layer, ``(C_l,)``, shown in titles.
        layer_name (str, optional): for the titles. Default: ``"layer"``.
    """
    benign_maps = benign_maps[0] if benign_maps.dim() == 4 else benign_maps
    adversarial_maps = adversarial_maps[0] if adversarial_maps.dim() == 4 else adversarial_maps
    if benign_maps.dim() != 3:
        raise ValueError(f"feature maps must be one image's conv output (C_l, h, w) or (1, C_l, h, w), "
                         f"got shape {tuple(benign_maps.shape)}; a linear layer has no map to show.")
    if benign_maps.shape != adversarial_maps.shape:
        raise ValueError(f"benign_maps {tuple(benign_maps.shape)} and adversarial_maps "
                         f"{tuple(adversarial_maps.shape)} must have the same shape.")
    neuron_indices = [int(i) for i in neuron_indices]
    if not neuron_indices or max(neuron_indices) >= benign_maps.shape[0] or min(neuron_indices) < 0:
        raise ValueError(f"neuron_indices must be a non-empty list in [0, {benign_maps.shape[0]}), "
                         f"got {neuron_indices}.")
    size = tuple(benign_image.shape[-2:])
    maps = upsample(torch.stack([benign_maps[neuron_indices], adversarial_maps[neuron_indices]]), size).cpu()
    fig, axes = plt.subplots(2, 1 + len(neuron_indices), figsize=(2.3 * (1 + len(neuron_indices)), 5.0),
                             layout="constrained", squeeze=False)
    for row, (image, name) in enumerate(((benign_image, "benign x"), (adversarial_image, "adversarial x'"))):
        _show_image(axes[row, 0], image)
        _blank(axes[row, 0], ylabel=name, xlabel=f"{size[1]} × {size[0]} pixels" if row else "")
        axes[row, 0].set_title("input" if row == 0 else "input (attacked)")
    for col, neuron in enumerate(neuron_indices, start=1):
        low, high = maps[:, col - 1].min().item(), maps[:, col - 1].max().item()
        for row in range(2):
            ax = axes[row, col]
            _show_image(ax, benign_image if row == 0 else adversarial_image)
            im = ax.imshow(maps[row, col - 1].numpy(), cmap=cmap, alpha=alpha, vmin=low, vmax=high)
            _blank(ax)
        sigma = f", σ = {float(sensitivity[neuron]):.3g}" if sensitivity is not None else ""
        axes[0, col].set_title(f"neuron {neuron}{sigma}", fontsize=9)
        fig.colorbar(im, ax=axes[:, col], shrink=0.5, aspect=15, pad=0.01, label="activation")
    fig.suptitle(title or f"Feature maps of {layer_name}: benign vs adversarial (E4)")
    return fig


def plot_examples(images: torch.Tensor, adversarial: torch.Tensor, labels: torch.Tensor,
                  preds_clean: torch.Tensor, preds_adv: torch.Tensor,
                  class_names: Sequence[str] | None = None, n: int = 8, *,
                  perturbation: bool = True, title: str = "Benign vs adversarial examples") -> Figure:
    """Benign images over their adversarial twins, with labels and predictions.

    Titles are green when the prediction is right, red when wrong. With ``perturbation``
    a third row shows ``x' - x`` (red positive, blue negative, symmetric scale).

    Shape: ``images``, ``adversarial`` ``(N, C, H, W)`` in [0, 1]; the rest ``(N,)``.
    """
    n = min(n, len(images))
    name = (lambda c: class_names[int(c)]) if class_names is not None else (lambda c: str(int(c)))
    rows = 3 if perturbation else 2
    fig, axes = plt.subplots(rows, n, figsize=(1.6 * n + 0.6, 1.8 * rows + 0.4),
                             layout="constrained", squeeze=False)
    delta = (adversarial[:n] - images[:n]).detach().cpu().float()
    bound = max(delta.abs().max().item(), 1e-8)
    for j in range(n):
        for row, (batch, preds) in enumerate(((images, preds_clean), (adversarial, preds_adv))):
            ax = axes[row, j]
            _show_image(ax, batch[j])
            ok = int(preds[j]) == int(labels[j])
            text = (f"label {name(labels[j])}\n" if row == 0 else "") + f"pred {name(preds[j])}"
            ax.set_title(text, fontsize=8, color="tab:green" if ok else "tab:red")
            _blank(ax, ylabel=("benign x", "adversarial x'")[row] if j == 0 else "")
        if perturbation:
            im = axes[2, j].imshow(delta[j].mean(dim=0).numpy(), cmap="seismic", vmin=-bound, vmax=bound)
            _blank(axes[2, j], ylabel="x' − x" if j == 0 else "")
    if perturbation:
        fig.colorbar(im, ax=axes[2, :], shrink=0.9, pad=0.01, label="Δ pixel ([0, 1] scale)")
    fig.suptitle(title)
    return fig


def plot_accuracy_vs_eps(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], *, ax=None,
                         xlabel: str = "ε (L∞ budget, pixel scale [0, 1])",
                         title: str = "Robust accuracy vs perturbation budget") -> Figure:
    """E5: robust accuracy (%) against the attack budget ``eps``, one line per model.

    Args:
        curves (dict): ``{model name: (eps values, accuracies as fractions in [0, 1])}``.
    """
    if not curves:
        raise ValueError("curves is empty; pass {model name: (eps list, accuracy list)}.")
    fig, ax = _figure(ax)
    for model, (eps, acc) in curves.items():
        eps, acc = _numpy(eps), _numpy(acc)
        if eps.shape != acc.shape:
            raise ValueError(f"{model!r}: {len(eps)} eps values but {len(acc)} accuracies.")
        if acc.size and (acc.min() < 0 or acc.max() > 1):
            raise ValueError(f"{model!r}: accuracies must be fractions in [0, 1], got up to "
                             f"{acc.max():.3g}; divide percentages by 100.")
        ax.plot(eps, 100 * acc, marker="o", label=model)
    ax.set(xlabel=xlabel, ylabel="robust accuracy (%)", ylim=(-2, 102), title=title)
    ax.legend(title="model")
    return fig


def plot_sensitivity_vs_robustness(points: Sequence[Mapping], *, ax=None,
                                   xlabel: str = SENSITIVITY_LABEL,
                                   title: str = "Sensitivity vs robustness (E6)") -> Figure:
    """E6: one labelled point per model or checkpoint: layer sensitivity vs robust accuracy.

    Args:
        points (list of dict): ``{"name", "sensitivity", "robust_acc"}`` (accuracy as a
            fraction in [0, 1]); an optional ``"group"`` colours the points and joins
            each group's points in the given order (checkpoints across training).
    """
    if not points:
        raise ValueError("points is empty; pass [{'name', 'sensitivity', 'robust_acc'}, ...].")
    for p in points:
        missing = {"name", "sensitivity", "robust_acc"} - set(p)
        if missing:
            raise ValueError(f"point {dict(p)} lacks keys {sorted(missing)}.")
    fig, ax = _figure(ax)
    groups = list(dict.fromkeys(p.get("group") for p in points))
    colours = dict(zip(groups, sns.color_palette("colorblind", len(groups))))
    for group in groups:
        members = [p for p in points if p.get("group") == group]
        xs = [float(p["sensitivity"]) for p in members]
        ys = [100 * float(p["robust_acc"]) for p in members]
        ax.plot(xs, ys, marker="o", linestyle="-" if group is not None and len(members) > 1 else "none",
                color=colours[group], label=group)
        for p, x, y in zip(members, xs, ys):
            ax.annotate(str(p["name"]), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set(xlabel=xlabel, ylabel="robust accuracy (%)", title=title)
    if any(g is not None for g in groups):
        ax.legend()
    return fig


def _accuracy_line(ax, labels: list[str], chosen: Sequence[Mapping], key: str, **style) -> None:
    """One knob panel's accuracy line in %; with std error bars when a setting has more than one seed."""
    means = [100 * r[key] for r in chosen]
    if any(r.get("seeds", 1) > 1 for r in chosen):
        ax.errorbar(labels, means, yerr=[100 * r.get(f"{key}_std", 0.0) for r in chosen], capsize=3, **style)
    else:
        ax.plot(labels, means, **style)


def plot_sns_knobs(rows: Sequence[Mapping], base: Mapping, budget: Mapping, *, metric: str = "accuracy",
                   layers: str = "conv3, conv4, fc1") -> Figure:
    """E7: SNS's clean and PGD-40 accuracy (or the layer sensitivity) against each knob, one panel per knob.

    Panels: lambda (the ``"lambda"`` runs), k and the constrained layers (the ``"k"`` or
    ``"layers"`` runs plus the default setting ``lam0.01``; k = 0.1 is drawn as
    "10%≤10" and placed at 10). A dashed line marks PGD-AT at the same budget. Where a
    setting has more than one training seed, the accuracies are means with std error bars
    and PGD-AT's std is a grey band.

    Args:
        rows (list of dict): one per setting: ``name``, ``knob`` (``"lambda"``, ``"k"``
            or ``"layers"``), ``lam``, ``k``, ``layers`` (joined with ``+``),
            ``clean_acc`` and ``pgd40_acc`` (fractions in [0, 1], the means over seeds), and
            optionally ``seeds`` (Default: 1), ``clean_acc_std`` and ``pgd40_acc_std``, as in
            ``e7_sns_knobs.csv``.
        base (dict): the lambda = 0 setting (PGD-AT): its ``pgd40_acc`` (and ``pgd40_acc_std``).
        budget (dict): the sweep's reduced budget (``nslib.sweep.BUDGET``), named in the title;
            its ``test_n`` (the evaluation's test images) labels the y axis.
        metric (str, optional): ``"accuracy"``, or ``"sensitivity"`` for the rows'
            ``mean_sensitivity`` (log scale; PGD-AT's as the dashed line). Default: ``"accuracy"``.
        layers (str, optional): the layers the sensitivity is the mean of, for the axis label.
            Default: MNIST's ``"conv3, conv4, fc1"``.
    """
    if metric not in ("accuracy", "sensitivity"):
        raise ValueError(f"metric must be 'accuracy' or 'sensitivity', got {metric!r}.")
    fig, axes = plt.subplots(1, 3, figsize=(9, 4), layout="constrained", sharey=True)
    for ax, knob, xlabel in zip(axes, ("lambda", "k", "layers"), ("λ (penalty weight)", "k (neurons per layer)",
                                                                 "constrained layers")):
        chosen = [r for r in rows if r["knob"] == knob or (knob != "lambda" and r["name"] == "lam0.01")]
        if knob == "k":
            chosen = sorted(chosen, key=lambda r: {0.1: 10}.get(r["k"], r["k"]))
        labels = [{"lambda": f"{r['lam']:g}", "k": ("10%≤10" if r["k"] == 0.1 else f"{r['k']:g}"),
                   "layers": r["layers"]}[knob] for r in chosen]
        if metric == "sensitivity":
            _sensitivity_line(ax, labels, chosen, base)
            ax.set(xlabel=xlabel, title=f"SNS vs {knob}")
            ax.tick_params(axis="x", rotation=30, labelsize=9)
            continue
        _accuracy_line(ax, labels, chosen, "pgd40_acc", marker="o", label="PGD-40 accuracy")
        _accuracy_line(ax, labels, chosen, "clean_acc", marker="s", label="clean accuracy")
        ax.axhline(100 * base["pgd40_acc"], color="gray", linestyle="--", label="PGD-AT, same budget")
        if base.get("seeds", 1) > 1:
            spread = 100 * base.get("pgd40_acc_std", 0.0)
            ax.axhspan(100 * base["pgd40_acc"] - spread, 100 * base["pgd40_acc"] + spread, color="gray", alpha=0.2)
        ax.set(xlabel=xlabel, title=f"SNS vs {knob}")
        ax.tick_params(axis="x", rotation=30, labelsize=9)
    if metric == "sensitivity":
        axes[0].set_ylabel(f"mean layer sensitivity\n({layers}; log scale)")
    else:
        axes[0].set_ylabel(f"accuracy on {budget.get('test_n', '?')} test images (%)")
    axes[0].legend(fontsize=9)
    items = [f"{k} {v}" for k, v in budget.items()]
    fig.suptitle("E7: SNS knobs (reduced budget: " + ", ".join(items[:5]) + ",\n" + ", ".join(items[5:]) + ")",
                 fontsize=10)
    return fig


def _sensitivity_line(ax, labels: list[str], chosen: Sequence[Mapping], base: Mapping) -> None:
    """One knob panel's mean layer sensitivity (log scale), std error bars over seeds, PGD-AT dashed."""
    means = [r["mean_sensitivity"] for r in chosen]
    if any(r.get("seeds", 1) > 1 for r in chosen):
        ax.errorbar(labels, means, yerr=[r.get("mean_sensitivity_std", 0.0) for r in chosen], capsize=3,
                    marker="o", color="C2", label="SNS")
    else:
        ax.plot(labels, means, marker="o", color="C2", label="SNS")
    ax.axhline(base["mean_sensitivity"], color="gray", linestyle="--", label="PGD-AT, same budget")
    log_scale(ax)
