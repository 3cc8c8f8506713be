"""E1 (layer sensitivity) and E2 (per-neuron sensitivity distributions) of the four models.

E1: how much each layer's output changes between a benign input and its adversarial twin
(``nslib.sensitivity.layer_sensitivity``, the mean over neurons of sigma), model by model
and training seed by training seed (``ctx.common_seeds()``), reported as the mean and standard
deviation over the seeds; the paper's Finding 2 is that robust models are less sensitive
than the standard one. Beside the raw sensitivity (in each model's own activation units)
E1 reports the relative one, ``sigma / mean |F_l(x)|`` (``nslib.sensitivity.relative_sensitivity``):
an L1 change can be lowered by shrinking the activations alone, so the verdict follows the
relative numbers where the two disagree. E2: the distribution of sigma over the neurons of
a layer: a long tail of a few very sensitive neurons; shown for training seed 0 only.

Our choices (MNIST; ``nslib.settings`` names each setting's): the first ``n`` test images;
white-box PGD at the setting's eps (0.3) against each
model itself, every seed attacked on its own (PGD-20 quick, PGD-40 full, step 2.5 eps /
steps, ``context.pgd_inputs``), so each seed costs what seed 0 costs; the setting's
``layers`` (all seven on MNIST);
the activation scale on the same benign images; Finding 2 "held" when each robust model's
mean over seeds is below the standard one's in all but at most one layer; E2 shows the
setting's ``distribution_layers`` (conv2, conv4, fc1 and fc2) sorted.
"""
from __future__ import annotations

import torch

from ..settings import DEFAULT
from .context import Context, Result, mean_std, pgd_inputs, short_name

#: The layers of ``smallcnn`` measured by E1 and E2.
LAYERS = DEFAULT.layers
#: Relative ratios within this distance of 1 in every layer are flagged as a likely tie.
TIE = 0.1
#: The y-axis label of the relative panels.
RELATIVE_LABEL = "relative sensitivity (σ / mean |F(x)|)"


def _below(values: dict[str, dict[str, float]], model: str, reference: str) -> list[str]:
    """The layers where ``model``'s value is below ``reference``'s."""
    return [l for l in values[reference] if values[model][l] < values[reference][l]]


def _ratios(values: dict[str, dict[str, float]], model: str, reference: str) -> str:
    """``"0.21–0.69"``: the range of ``model``'s per-layer ratio to ``reference``."""
    ratios = [values[model][l] / values[reference][l] for l in values[reference]]
    return f"{min(ratios):.2f}–{max(ratios):.2f}"


#: The verdict's first sentence, by (held in raw units, held relative to activation size).
_HEADS = {
    (True, True): "**The claim “{claim}” held, and it survives the scale control**: less sensitive than "
                  "{reference} both in raw units and relative to activation size.",
    (False, True): "**The claim “{claim}” held once activation scale is controlled**: the raw exceptions are "
                   "a matter of scale (those layers' activations are larger), and relative to activation size "
                   "the models are less sensitive than {reference}; the relative claim is the one that survives.",
    (True, False): "**The claim “{claim}” held in raw units only**: part of the raw reduction is smaller "
                   "activations, not steadier ones. What survives the scale control is the weaker claim in the "
                   "relative counts below.",
    (False, False): "**The claim “{claim}” held only in part**, in raw units and relative to activation size "
                    "alike; the relative counts below are the ones to trust.",
}


def _comparison_line(raw: dict, relative: dict, model: str, reference: str, raw_below: list[str],
                     rel_below: list[str]) -> str:
    """One bullet of :func:`compare_to_reference`: counts, ratio ranges, the layers where raw and relative disagree."""
    n = len(raw[reference])
    disagree = [l for l in raw[reference] if (l in raw_below) != (l in rel_below)]
    return (f"- **{model}** vs {reference}: lower in {len(raw_below)} of {n} layers in raw units "
            f"(ratio {_ratios(raw, model, reference)}), in {len(rel_below)} of {n} relative to activation size "
            f"(ratio {_ratios(relative, model, reference)})"
            + (f"; raw and relative disagree in {', '.join(disagree)}" if disagree else ""))


def compare_to_reference(raw: dict[str, dict[str, float]], relative: dict[str, dict[str, float]],
                         reference: str = "standard",
                         claim: str = "robust models are less sensitive (Finding 2)") -> str:
    """Finding 2's verdict, raw and scale-controlled: is each model less sensitive than ``reference``?

    Args:
        raw (dict): ``{model: {layer: layer sensitivity}}`` (mean sigma, activation units).
        relative (dict): the same models and layers, divided by ``mean |F_l(x)|``
            (``nslib.sensitivity.relative_sensitivity``).
        reference (str): the model the others are compared with. Default: ``"standard"``.
        claim (str): the claim in words: the others are less sensitive than ``reference``.
            Default: the paper's Finding 2.

    Returns:
        str: Markdown: per model, in how many layers it is below ``reference`` (raw and
        relative), the range of its ratios, the layers where the two disagree, which claim
        survives the scale control, and a caution when every relative ratio is within
        ``TIE`` of 1. "Held" means below in all but at most one layer.

    Example:
        >>> raw = {"standard": {"a": 1.0, "b": 1.0}, "at": {"a": 0.5, "b": 2.0}}
        >>> rel = {"standard": {"a": 1.0, "b": 1.0}, "at": {"a": 0.5, "b": 0.5}}
        >>> "survives the scale control" in compare_to_reference(raw, rel)
        True
    """
    if reference not in raw or reference not in relative:
        raise KeyError(f"reference model {reference!r} missing; have {list(raw)}.")
    n = len(raw[reference])
    others = [m for m in raw if m != reference]
    lower = {m: (_below(raw, m, reference), _below(relative, m, reference)) for m in others}
    held_raw = all(len(r) >= n - 1 for r, _ in lower.values())
    held_rel = all(len(r) >= n - 1 for _, r in lower.values())
    lines = [_comparison_line(raw, relative, m, reference, r, q) for m, (r, q) in lower.items()]
    head = _HEADS[held_raw, held_rel].format(claim=claim, reference=reference)
    close = [m for m in others if all(abs(relative[m][l] / relative[reference][l] - 1) <= TIE for l in raw[reference])]
    if close and len(close) == len(others):  # "held relative to activation size" would overstate a tie
        raw_part = "held in raw units" if held_raw else "held only in part in raw units"
        head = (f"**The claim “{claim}” {raw_part}; relative to activation size it is a tie**: "
                f"{', '.join(close)} and {reference} differ by at most {TIE:.0%} in every layer, so without a "
                "noise estimate (several seeds or image batches) neither is steadier than the other.")
    elif close:
        head += (f" Relative to activation size, though, {', '.join(close)} and {reference} differ by at most "
                 f"{TIE:.0%} in every layer: without a noise estimate (several seeds or image batches), "
                 "call it a tie.")
    return head + "\n\n" + "\n".join(lines)


def ratio_text(values: dict[str, dict[str, float]], model: str, reference: str = "standard") -> str:
    """One comparison in words: in how many layers ``model`` is below ``reference``, and every layer's ratio.

    Args:
        values (dict): ``{model: {layer: layer sensitivity}}`` (raw or relative).

    Example:
        >>> ratio_text({"std": {"a": 2.0, "b": 1.0}, "at": {"a": 1.0, "b": 1.5}}, "at", "std")
        'lower in 1 of 2 layers (ratio at/std: a 0.50, b 1.50; higher in b)'
    """
    below = _below(values, model, reference)
    higher = [l for l in values[reference] if l not in below]
    ratios = ", ".join(f"{l} {values[model][l] / values[reference][l]:.2f}" for l in values[reference])
    return (f"lower in {len(below)} of {len(values[reference])} layers (ratio {model}/{reference}: {ratios}"
            + (f"; higher in {', '.join(higher)})" if higher else ")"))


def tail_summary(sigma: dict[str, dict[str, torch.Tensor]], layers, reference: str = "standard",
                 top: float = 0.1) -> str:
    """E2 in words: how long each model's tail is, and whether another model's top neurons sit
    below the ``reference`` model's typical (median) neuron.

    Args:
        sigma (dict): ``{model: {layer: sigma (neurons,)}}`` (``neuron_sensitivity`` per model).
        layers (list of str): the layers to summarise.
        reference (str): the model the others are compared with. Default: ``"standard"``.
        top (float): the top fraction whose share of the layer's total is reported. Default: ``0.1``.

    Returns:
        str: Markdown, one bullet per model and a last one comparing with ``reference``.
    """
    lines = []
    for model, per_layer in sigma.items():
        share, peak = [], []
        for layer in layers:
            s = per_layer[layer].double()
            head = s.sort(descending=True).values[: max(1, int(s.numel() * top))]
            share.append(float(head.sum() / s.sum()))
            peak.append(float(s.max() / s.median()))
        lines.append(f"- **{model}**: the top {top:.0%} of a layer's neurons carry {min(share):.0%}–{max(share):.0%} "
                     f"of its total sensitivity; the most sensitive neuron changes {min(peak):.1f}–{max(peak):.1f} "
                     "times as much as the median one.")
    for model in (m for m in sigma if m != reference):
        quiet = [l for l in layers if sigma[model][l].max() < sigma[reference][l].median()]
        lines.append(f"- **{model}**'s most sensitive neuron is below the {reference} model's median neuron in "
                     + (f"{len(quiet)} of {len(layers)} layers ({', '.join(quiet)})" if quiet else "no layer") + ".")
    return "\n".join(lines)


def _finding(raw: dict[str, dict[str, float]], relative: dict[str, dict[str, float]], seeds: int,
             eps: float = DEFAULT.eps) -> str:
    """E1's finding from ``{model: {layer: mean over seeds}}``, raw and relative."""
    spread = (f"means over {seeds} training seeds per model; the standard deviations are the table's "
              "`sensitivity_std` and `relative_sensitivity_std` and the figure's error bars" if seeds > 1 else
              "one training seed per model, so the spread between training runs is unmeasured")
    text = (f"Layer sensitivity under white-box PGD (ε = {eps:.4g}), raw and divided by each layer's mean benign "
            f"activation |F_l(x)| ({spread}). " + compare_to_reference(raw, relative))
    if {"sns", "pgd_at"} <= set(raw):  # SNS's own claim: steadier than PGD-AT, not only quieter
        raw_pair, rel_pair = ({m: v[m] for m in ("pgd_at", "sns")} for v in (raw, relative))
        text += "\n\nSNS against PGD-AT: " + compare_to_reference(raw_pair, rel_pair, "pgd_at",
                                                                   claim="SNS is less sensitive than PGD-AT")
    return (text
            + "\n\nE2 shows each layer's long tail (training seed 0): a few neurons change far more than the rest.")


def seed_sensitivity(ctx: Context, x: torch.Tensor, y: torch.Tensor, seed: int) -> dict[str, dict[str, torch.Tensor]]:
    """``sigma_l^i`` of every model's training ``seed`` on its own white-box PGD inputs.

    Shape: ``x`` ``(N, 1, 28, 28)`` in [0, 1], ``y`` ``(N,)`` -> ``{model: {layer: sigma (neurons,)}}``.
    """
    from ..sensitivity import neuron_sensitivity

    sigma = {}
    for name in ctx.models:
        model = ctx.model(name, seed)
        sigma[short_name(name)] = neuron_sensitivity(model, x, pgd_inputs(ctx, model, x, y),
                                                     list(ctx.setting.layers))
    return sigma


def seed_scale(ctx: Context, x: torch.Tensor, seed: int) -> dict[str, dict[str, float]]:
    """``mean |F_l(x)|`` of every model's training ``seed`` on the benign ``x``: ``{model: {layer: scale}}``."""
    from ..sensitivity import activation_scale

    return {short_name(name): activation_scale(ctx.model(name, seed), x, list(ctx.setting.layers))
            for name in ctx.models}


def summarise_seeds(per_seed: dict[int, dict[str, dict[str, float]]],
                    scale: dict[int, dict[str, dict[str, float]]] | None = None) -> list[dict]:
    """The E1 table: per (model, layer), the mean and std over seeds of the layer sensitivity.

    Args:
        per_seed (dict): ``{seed: {model: {layer: layer sensitivity}}}``, every seed with the
            same models and layers; the models must include ``"standard"``.
        scale (dict, optional): ``{seed: {model: {layer: mean |F_l(x)|}}}`` of the same seeds
            (:func:`seed_scale`); adds the relative sensitivity, seed by seed ``sigma / scale``.

    Returns:
        list of dict: ``{"model", "layer", "sensitivity" (the mean), "sensitivity_std",
        "seeds", "ratio_to_standard" (of the means)}``, models then layers in input order;
        with ``scale`` also ``"activation_scale"`` (its mean), ``"relative_sensitivity"``,
        ``"relative_sensitivity_std"`` and ``"relative_ratio_to_standard"``.
    """
    first = next(iter(per_seed.values()))
    stats = {m: {l: mean_std([per_seed[s][m][l] for s in per_seed]) for l in first[m]} for m in first}
    rows = [{"model": m, "layer": l, "sensitivity": mean, "sensitivity_std": std, "seeds": len(per_seed),
             "ratio_to_standard": mean / stats["standard"][l][0]} for m in stats for l, (mean, std) in stats[m].items()]
    if scale is None:
        return rows
    rel = {m: {l: mean_std([per_seed[s][m][l] / scale[s][m][l] for s in per_seed]) for l in first[m]} for m in first}
    for row in rows:
        m, l = row["model"], row["layer"]
        row.update(activation_scale=mean_std([scale[s][m][l] for s in per_seed])[0],
                   relative_sensitivity=rel[m][l][0], relative_sensitivity_std=rel[m][l][1],
                   relative_ratio_to_standard=rel[m][l][0] / rel["standard"][l][0])
    return rows


def layer_figure(raw: dict, relative: dict, *, raw_errors: dict | None = None, relative_errors: dict | None = None,
                 title: str = "Layer sensitivity per model (E1)"):
    """E1's figure: raw layer sensitivity (top) and relative sensitivity (bottom), grouped bars.

    ``raw``/``relative``: ``{model: {layer: value}}``; the optional errors have the same shape (std over seeds).
    """
    import matplotlib.pyplot as plt

    from ..plotting import plot_layer_sensitivity

    fig, axes = plt.subplots(2, 1, figsize=(8.5, 7.0), layout="constrained", sharex=True)
    plot_layer_sensitivity(raw, ax=axes[0], errors=raw_errors, title="raw: in each model's activation units")
    plot_layer_sensitivity(relative, ax=axes[1], errors=relative_errors,
                           title="relative: divided by the layer's mean benign |F(x)|")
    axes[0].set_xlabel("")
    axes[1].set_ylabel(RELATIVE_LABEL)
    axes[1].get_legend().remove()
    fig.suptitle(title)
    return fig


def _table(rows: list[dict], key: str) -> dict[str, dict[str, float]]:
    """``{model: {layer: row[key]}}`` from E1's rows."""
    out = {}
    for r in rows:
        out.setdefault(r["model"], {})[r["layer"]] = r[key]
    return out


def run(ctx: Context) -> Result:
    """E1 (layer sensitivity, raw and relative, mean ± std over training seeds) and E2 (seed 0's distributions)."""
    from ..plotting import plot_sensitivity_distribution
    from ..sensitivity import layer_sensitivity

    layers = list(ctx.setting.layers)
    x, y = ctx.test_batch()
    seeds = ctx.common_seeds()
    sigma = {seed: seed_sensitivity(ctx, x, y, seed) for seed in seeds}
    scale = {seed: seed_scale(ctx, x, seed) for seed in seeds}
    rows = summarise_seeds({seed: {m: layer_sensitivity(s) for m, s in per_model.items()}
                            for seed, per_model in sigma.items()}, scale)
    mean, std = _table(rows, "sensitivity"), _table(rows, "sensitivity_std")
    rel, rel_std = _table(rows, "relative_sensitivity"), _table(rows, "relative_sensitivity_std")
    neuron_rows = [{"model": m, "layer": l, "neuron": i, "sigma": float(v)}
                   for m in sigma[0] for l in layers for i, v in enumerate(sigma[0][m][l].tolist())]
    for m in mean:
        print(f"  {m:8s} " + " ".join(f"{l}={mean[m][l]:.3f}" + (f"±{std[m][l]:.3f}" if len(seeds) > 1 else "")
                                      + f" (rel {rel[m][l]:.3f})" for l in layers))
    title = f"Layer sensitivity per model (E1; mean ± std over {len(seeds)} training seeds)" if len(seeds) > 1 else \
        "Layer sensitivity per model (E1; one training seed)"
    several = len(seeds) > 1
    return Result(_finding(mean, rel, len(seeds), ctx.setting.eps), {
        "e1_layer_sensitivity.csv": rows,
        "e1_layer_sensitivity.png": layer_figure(mean, rel, raw_errors=std if several else None,
                                                 relative_errors=rel_std if several else None, title=title),
        "e2_neuron_sensitivity.csv": neuron_rows,
        "e2_sensitivity_distribution.png": plot_sensitivity_distribution(sigma[0], list(ctx.setting.distribution_layers),
                                                                         kind="sorted")})
