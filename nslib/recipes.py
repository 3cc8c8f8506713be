"""Training recipes: the loss of one batch under standard, PGD-AT, TRADES and SNS training.

A *recipe* is a function ``recipe(model, x, y, *, net, eps, alpha, steps, state, **options)``
returning ``(loss, stats)``, looked up by name in ``RECIPES``:

* ``"standard"``: ``CE(f(x), y)``.
* ``"pgd_at"`` (Madry et al., 2018): ``CE(f(x'), y)`` with ``x'`` from PGD against the
  current model.
* ``"trades"`` (Zhang et al., 2019): ``CE(f(x), y) + beta * KL(f(x) || f(x'))`` with
  ``x'`` maximising the KL term by PGD started at ``x + 0.001 * N(0, I)``.
* ``"sns"`` (Sensitive Neuron Stabilizing, Zhang et al., 2021; ``docs/experiments.md#sns-loss``)::

      L = CE + lambda * sum_{l in L} sum_{i in topk_l} (1/dim) ||F_l^i(x) - F_l^i(x')||_1 / batch

  with ``x'`` from PGD against the current model.

The keywords every recipe takes (``COMMON``): ``net``, the plain module the attack uses
(``model`` may be a DistributedDataParallel wrapper the loss's forward passes go
through); ``eps``/``alpha``/``steps``, this step's (ramped) PGD budget; ``state``, a dict
kept across steps and checkpointed. A recipe's *options* are its other keyword-only
parameters, with their defaults in its signature: :func:`recipe_options` reads them and
:func:`check_options` rejects any other name, so a misspelt option is an error, never
silently ignored. ``stats`` is a dict of detached 0-dim tensors (the training loop averages
them over the epoch for the log and reads them once, at its end: a step never waits for the
GPU to hand back a number; ``float(stats["ce"])`` reads one).
Taught in lesson 04 (``04_robust_training_and_sns.ipynb``).
"""
from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .attacks import pgd
from .attacks.base import attack_context, project_linf
from .fusion import fused_forward
from .hooks import capture
from .sensitivity import default_layers, neuron_distance, sensitive_neurons

__all__ = ["RECIPES", "ADVERSARIAL", "COMMON", "CE_ON", "standard_loss", "pgd_at_loss", "trades_loss",
           "sns_loss", "sns_layers", "recipe_options", "check_options"]

#: The keywords the loop passes to every recipe; a recipe's other keyword-only parameters are its options.
COMMON = ("net", "eps", "alpha", "steps", "state")
#: Where SNS puts its cross-entropy: on ``x'``, on ``x``, or the mean of both.
CE_ON = ("adv", "clean", "both")


def standard_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, net: nn.Module | None = None,
                  eps: float = 0.0, alpha: float = 0.0, steps: int = 0, state: dict | None = None):
    """Standard training: ``CE(f(x), y)``; no ``x'``, so the attack keywords are unused.

    Returns:
        tuple: ``(loss, {})``.
    """
    return F.cross_entropy(model(x), y), {}


def pgd_at_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, net: nn.Module,
                eps: float, alpha: float, steps: int, state: dict | None = None):
    """PGD adversarial training (Madry et al., 2018, arXiv 1706.06083): ``CE(f(x'), y)``.

    ``x' = PGD(x)`` (Linf, random start, ``steps`` steps of ``alpha``) against the
    current model, made with the model in eval mode (``nslib.attacks.pgd``). No options.

    Returns:
        tuple: ``(loss, {})``.
    """
    x_adv = _pgd(net, x, y, eps, alpha, steps)
    return F.cross_entropy(model(x_adv), y), {}


def trades_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, net: nn.Module,
                eps: float, alpha: float, steps: int, state: dict | None = None, beta: float = 6.0):
    """TRADES (Zhang et al., 2019, arXiv 1901.08573): ``CE(f(x), y) + beta * KL(f(x) || f(x'))``.

    ``x'`` maximises ``KL(softmax f(x) || softmax f(x'))`` over the Linf eps-ball by
    ``steps`` signed-gradient steps of ``alpha``, started at ``x + 0.001 * N(0, I)``, with
    the model in eval mode, as the authors' code. The KL term is summed over classes and
    averaged over the batch.

    Args:
        beta (float, optional): weight of the robustness (KL) term. Default: ``6.0``
            (the authors' CIFAR-10 value; they use 1.0 on MNIST).

    Returns:
        tuple: ``(loss, {"ce": natural CE, "kl": the KL term})``.
    """
    x_adv = _trades_attack(net, x, eps, alpha, steps)
    logits, logits_adv = _two_forwards(model, x, x_adv)
    natural = F.cross_entropy(logits, y)
    robust = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits, dim=1),
                      reduction="batchmean")
    return natural + beta * robust, {"ce": natural.detach(), "kl": robust.detach()}


def sns_layers(model: nn.Module) -> list[str]:
    """The default constrained layers of SNS (ours).

    ``smallcnn``: ``["conv3", "conv4", "fc1"]``, the last two conv layers and the first
    fully connected one. Deep layers are where standard and robust models differ most
    in neuron sensitivity (E1), while the first layers' change is set almost entirely by
    eps and the logit layer's by the CE term itself. Other models: the last three
    ``Conv2d``/``Linear`` layers before the logit layer.

    Returns:
        list of str: dotted layer names.
    """
    if getattr(model, "arch", None) == "smallcnn":
        return ["conv3", "conv4", "fc1"]
    return default_layers(model)[:-1][-3:]


def sns_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, net: nn.Module,
             eps: float, alpha: float, steps: int, state: dict,
             lam: float = 0.01, layers: Iterable[str] | None = None, k: int | float = 0.1,
             max_k: int | None = 10, topk_every: int = 0, momentum: float = 0.9,
             ce_on: str = "adv", fuse: bool = False):
    """Sensitive Neuron Stabilizing (Zhang et al., 2021, arXiv 1909.06978; ``docs/experiments.md#sns-loss``).

    ``L = CE + lam * sum_{l in layers} sum_{i in topk_l} (1/dim)||F_l^i(x) - F_l^i(x')||_1 / batch``

    with ``x' = PGD(x)`` against the current model (the same attack as ``pgd_at``). The
    activations of ``x`` and ``x'`` are captured with graph-keeping hooks during the two
    forward passes the loss needs anyway (one on ``x'`` for the CE, one on ``x``), so an
    SNS step costs PGD-AT's plus one forward (and its backward) on ``x``; with ``fuse`` the
    two are one pass on ``cat([x', x])`` (``nslib.fusion``). The arguments below are the open
    choices of SNS, all ours.

    Args:
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
        fuse (bool, optional): one forward pass on the 2N batch ``cat([x', x])`` instead of two
            of N: fewer kernel launches, the same loss and gradient (BatchNorm layers keep each
            half's own statistics, ``nslib.fusion``; ``docs/experiments.md#sns-loss``).
            Default: ``False``.

    Returns:
        tuple: ``(loss, stats)``, stats holding ``ce``, ``penalty`` and ``sens_<layer>``
        (the batch's layer mean of ``sigma``) per constrained layer, as 0-dim tensors.
    """
    if ce_on not in CE_ON:
        raise ValueError(f"ce_on must be 'adv', 'clean' or 'both', got {ce_on!r}.")
    if not isinstance(fuse, bool):
        raise TypeError(f"fuse must be True or False, got {fuse!r}.")
    names = list(layers) if layers is not None else sns_layers(net)
    x_adv = _pgd(net, x, y, eps, alpha, steps)
    with capture(net, names, detach=False) as store:
        logits, logits_adv = _two_forwards(model, x, x_adv, store=store, fuse=fuse)
    if ce_on == "adv":
        ce = F.cross_entropy(logits_adv, y)
    elif ce_on == "clean":
        ce = F.cross_entropy(logits, y)
    else:
        ce = 0.5 * (F.cross_entropy(logits, y) + F.cross_entropy(logits_adv, y))
    penalty = logits.new_zeros(())
    stats = {"ce": ce.detach()}
    step = state.get("step", 0)
    for name in names:
        dist = neuron_distance(store["clean"][name].float(), store["adv"][name].float())  # (N, neurons)
        sigma = dist.detach().mean(0)
        index = _top_neurons(state, name, sigma, step, k, max_k, topk_every, momentum)
        penalty = penalty + dist[:, index.to(dist.device)].sum() / x.shape[0]
        stats[f"sens_{name}"] = sigma.mean()
    state["step"] = step + 1
    stats["penalty"] = penalty.detach()
    return ce + lam * penalty, stats


def recipe_options(recipe: str) -> dict[str, Any]:
    """``{option: default}`` of a recipe, in its signature's order (its keyword-only parameters but ``COMMON``).

    Example:
        >>> recipe_options("trades")
        {'beta': 6.0}

    Raises:
        ValueError: an unknown recipe; the message lists the known ones.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {sorted(RECIPES)}.")
    return {name: p.default for name, p in inspect.signature(RECIPES[recipe]).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in COMMON}


def check_options(recipe: str, names: Iterable[str], settings: Sequence[str] = ()) -> None:
    """Raise ``ValueError`` unless every name is an option of ``recipe``.

    The message names the bad option and the recipe's options (in signature order); an
    option of another recipe says whose it is; a near miss of an option or of one of
    ``settings`` (the training settings, listed too) is suggested.
    """
    valid = list(recipe_options(recipe))
    for name in names:
        if name in valid:
            continue
        listed = ", ".join(valid) or "none"
        owners = [r for r in RECIPES if r != recipe and name in recipe_options(r)]
        if owners:
            raise ValueError(f"recipe {recipe!r} takes no option {name!r} (an option of "
                             f"{' and '.join(map(repr, owners))}); options of {recipe!r}: {listed}. "
                             f"Drop {name!r} or use recipe={owners[0]!r}.")
        close = difflib.get_close_matches(name, [*valid, *settings], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        also = f" Training settings: {', '.join(settings)}." if settings else ""
        raise ValueError(f"unknown option {name!r} for recipe {recipe!r}; options: {listed}.{hint}{also}")


def _top_neurons(state: dict, name: str, sigma: torch.Tensor, step: int, k: int | float,
                 max_k: int | None, topk_every: int, momentum: float) -> torch.Tensor:
    """SNS's top-k of layer ``name``: from this batch's ``sigma``, or every ``topk_every`` steps from its EMA.

    Chosen on ``sigma``'s device (``on_device``): the step never waits for the GPU. The EMA
    (``state["sigma"]``) and the current choice (``state["chosen"]``) live in ``state``, so
    they are checkpointed with it; read back from a checkpoint (on the CPU) they are moved.
    """
    if not topk_every:
        return sensitive_neurons({name: sigma}, k, max_k, on_device=True)[name]
    ema = state.setdefault("sigma", {})
    ema[name] = (sigma.clone() if name not in ema
                 else momentum * ema[name].to(sigma.device) + (1 - momentum) * sigma)
    chosen = state.setdefault("chosen", {})
    if step % topk_every == 0 or name not in chosen:
        chosen[name] = sensitive_neurons({name: ema[name]}, k, max_k, on_device=True)[name]
    return chosen[name]


def _pgd(net, x, y, eps, alpha, steps):
    """PGD-AT's and SNS's ``x'``: Linf PGD with a random start against ``net`` (``x`` itself at eps 0)."""
    if eps == 0:
        return x
    return pgd(net, x, y, eps=eps, alpha=alpha, steps=steps, random_start=True)


def _trades_attack(net: nn.Module, x: torch.Tensor, eps: float, alpha: float, steps: int) -> torch.Tensor:
    """TRADES's ``x'``: signed-gradient ascent on ``KL(f(x) || f(x'))`` from ``x + 0.001 * N(0, I)``, eval mode."""
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


def _two_forwards(model, x, x_adv, store: dict | None = None, fuse: bool = False):
    """Logits on ``x`` and ``x'``; with ``store`` (a capture dict) also each pass's activations.

    ``store`` is replaced by ``{"clean": {...}, "adv": {...}}`` copies of the captured dict.
    ``fuse``: one pass on ``cat([x', x])`` (``nslib.fusion.fused_forward``), split afterwards.
    """
    if fuse:
        logits_adv, logits = fused_forward(model, [x_adv, x])
        if store is not None:
            n = x_adv.shape[0]
            both = dict(store)
            store.clear()
            store.update(clean={k: v[n:] for k, v in both.items()}, adv={k: v[:n] for k, v in both.items()})
        return logits, logits_adv
    logits_adv = model(x_adv)
    adv_acts = dict(store) if store is not None else None
    logits = model(x)
    if store is not None:
        clean_acts = dict(store)
        store.clear()
        store.update(clean=clean_acts, adv=adv_acts)
    return logits, logits_adv


#: The training losses by name: ``RECIPES[name](model, x, y, ...)`` returns ``(loss, stats)``.
RECIPES: dict[str, Callable] = {
    "standard": standard_loss,
    "pgd_at": pgd_at_loss,
    "trades": trades_loss,
    "sns": sns_loss,
}
#: The recipes that train on adversarial examples.
ADVERSARIAL = ("pgd_at", "trades", "sns")
