"""What every attack shares: input checks, a safe context to run the model, losses, projections.

An attack in nslib is a plain function ``attack(model, images, labels, **hyper)`` that
does the work, and a small class holding the hyper-parameters, called as
``atk(images, labels)``. The class adds nothing but validation and a readable repr.

Rules every attack keeps (checked in ``tests/test_attacks.py``):

* inputs and outputs are images in [0, 1]; the model owns its normalisation;
* the model runs in eval mode during the attack; afterwards every submodule's
  train/eval flag and every parameter's ``requires_grad`` are as they were;
* the caller's tensors are never modified; the parameters' ``.grad`` is never touched
  (gradients are taken with ``torch.autograd.grad`` w.r.t. the input only);
* it works inside ``torch.no_grad()``; the output's dtype is the input's.

Taught in lesson 01 (``01_attacks.ipynb``).
"""
from __future__ import annotations

import contextlib
import inspect
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..precision import autocast, channels_last
from ..utils import check_eps, check_images, check_labels, eval_mode, start_range_check

__all__ = ["Attack", "attack_context", "prepare", "prepare_deferred", "check_steps", "check_choice", "margin",
           "adversarial_loss", "input_gradient", "project_linf", "project_l2", "LOSSES", "NORMS"]

#: The losses an attack can ascend: cross-entropy, or the C&W margin.
LOSSES = ("ce", "cw")
#: The threat models: an L-inf ball or an L2 ball of radius eps.
NORMS = ("Linf", "L2")


def check_steps(steps: int, name: str = "steps") -> None:
    """Raise ``ValueError``/``TypeError`` unless ``steps`` is an integer >= 1."""
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError(f"{name} must be an int >= 1, got {steps!r} ({type(steps).__name__}).")
    if steps < 1:
        raise ValueError(f"{name} must be >= 1 (the number of gradient steps), got {steps}.")


def check_choice(value: str, name: str, choices: tuple[str, ...]) -> str:
    """Return the canonical spelling of ``value`` among ``choices`` (case-insensitive), else raise."""
    if isinstance(value, str):
        for choice in choices:
            if value.lower() == choice.lower():
                return choice
    raise ValueError(f"unknown {name} {value!r}; choose one of {list(choices)}.")


def prepare(model: nn.Module, images: torch.Tensor,
            labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Check the inputs and return detached copies on the model's device.

    Raises ``TypeError``/``ValueError`` for a model that is not an ``nn.Module``, images
    that are not a float batch in [0, 1], labels that are not ``N`` integer classes, or
    images whose dtype differs from the model's floating parameters.

    Shape: images ``(N, ...)`` (usually ``(N, C, H, W)``), labels ``(N)``.
    Returns: ``(images, labels)``, detached (they may share the caller's storage, so
    attacks must not modify them in place).
    """
    images, labels, verdict = prepare_deferred(model, images, labels)
    verdict()
    return images, labels


def prepare_deferred(model: nn.Module, images: torch.Tensor, labels: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, Callable[[], None]]:
    """:func:`prepare`, except that on CUDA the [0, 1] check of the images is only started.

    Returns ``(images, labels, verdict)``: call ``verdict()`` once the attack's work is
    queued; it raises ``ValueError`` for images outside [0, 1]. Getting the answer of a
    check that reads the whole batch makes the CPU wait for the GPU; asked at the end it is
    ready by then, so the attack does not stall the device once per call
    (:func:`nslib.utils.start_range_check`). On the CPU the check is done at once.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    check_images(images, values=False)
    verdict = start_range_check(images)
    check_labels(images, labels)
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    if param is not None:
        if param.dtype != images.dtype:
            raise TypeError(
                f"images have dtype {images.dtype} but the model's parameters are {param.dtype}; "
                f"convert one of them, e.g. images.to({param.dtype}) or model.to({images.dtype})."
            )
        device = param.device
    else:
        device = images.device
    # No copy needed: the attacks never write into ``images`` in place.
    return images.detach().to(device), labels.detach().to(device), verdict


@contextlib.contextmanager
def attack_context(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` for an attack: eval mode, gradients on, parameters frozen.

    Freezing the parameters (``requires_grad=False``) means autograd builds the graph
    for the input only, so each backward pass skips the weight gradients. Every
    submodule's train/eval flag and every parameter's ``requires_grad`` are restored in
    ``finally``, even if the attack raises.
    """
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        with eval_mode(model), torch.enable_grad():
            for p, _ in flags:
                p.requires_grad_(False)
            yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``Z_y - max_{j != y} Z_j`` per sample: the C&W margin of class ``labels``.

    Shape: logits ``(N, K)``, labels ``(N)`` -> ``(N)``.
    """
    own = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), float("-inf"))
    return own - others.amax(dim=1)


def adversarial_loss(logits: torch.Tensor, labels: torch.Tensor, *, loss: str = "ce",
                     targeted: bool = False, kappa: float | None = None) -> torch.Tensor:
    """The scalar an attack *maximises* (gradient ascent on the input).

    * ``"ce"``: ``CE(Z, y)`` (mean over the batch, as torchattacks), or ``-CE(Z, t)``
      when targeted.
    * ``"cw"``: the C&W margin (Carlini & Wagner, 2017), summed over the batch:
      ``max_{j != y} Z_j - Z_y`` untargeted, ``Z_t - max_{j != t} Z_j`` targeted,
      each clamped at ``kappa`` from above when ``kappa`` is given (no gain once the
      wrong class wins by ``kappa``).

    Shape: logits ``(N, K)``, labels ``(N)`` -> scalar.
    """
    if loss == "ce":
        value = F.cross_entropy(logits, labels)
        return -value if targeted else value
    m = margin(logits, labels)
    m = m if targeted else -m
    if kappa is not None:
        m = m.clamp(max=kappa)
    return m.sum()


def input_gradient(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                   precision: str = "fp32", with_logits: bool = False, **loss_kwargs: Any):
    """``d loss / d images`` with ``torch.autograd.grad`` (never touches parameters' ``.grad``).

    The forward pass runs in ``precision`` (``nslib.precision``: under bf16 autocast, the
    input in channels_last); there the logits are cast to float32 before the loss, so the
    loss and the gradient w.r.t. the float32 ``images`` are float32. In fp32 nothing is cast
    (a float64 model stays float64, as the reference tests need). ``with_logits``: returns
    ``(gradient, logits)``, the logits of that forward pass detached.
    """
    images = images.detach().requires_grad_(True)
    with autocast(precision, images.device):
        logits = model(channels_last(images, precision))
    if precision != "fp32":
        logits = logits.float()   # the loss in float32, not in the autocast dtype
    value = adversarial_loss(logits, labels, **loss_kwargs)
    grad = torch.autograd.grad(value, images)[0]
    return (grad, logits.detach()) if with_logits else grad


def project_linf(adv: torch.Tensor, images: torch.Tensor, eps: float) -> torch.Tensor:
    """Project onto ``{x' : ||x' - x||_inf <= eps} ∩ [0, 1]`` (as torchattacks.PGD)."""
    delta = torch.clamp(adv - images, min=-eps, max=eps)
    return torch.clamp(images + delta, min=0, max=1).detach()


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape ``(N)`` to ``(N, 1, ..., 1)`` to broadcast against ``like`` (any number of dims)."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def project_l2(adv: torch.Tensor, images: torch.Tensor, eps: float) -> torch.Tensor:
    """Project onto ``{x' : ||x' - x||_2 <= eps}`` per sample, then clamp to [0, 1] (as torchattacks.PGDL2).

    Clamping to [0, 1] afterwards can only shrink each coordinate of the perturbation,
    so the L2 bound still holds.
    """
    delta = adv - images
    norms = delta.flatten(1).norm(p=2, dim=1)
    # min(eps / norm, 1) without the 0/0 of torchattacks when eps = norm = 0.
    factor = torch.where(norms > eps, eps / norms, torch.ones_like(norms))
    delta = delta * _per_sample(factor, delta)
    return torch.clamp(images + delta, min=0, max=1).detach()


def _format(value: Any) -> str:
    if isinstance(value, float):
        text = repr(value)  # 0.3 stays 0.3, 8/255 becomes 0.0313725
        return text if len(text) <= 8 else f"{value:.6g}"
    if isinstance(value, nn.Module):
        return type(value).__name__
    return repr(value)


class Attack:
    """Base class: holds the model and the hyper-parameters, calls the attack's function.

    Subclasses set ``function`` (the plain function doing the work) and pass their
    hyper-parameters to ``__init__`` as keywords; each becomes an attribute, is
    validated by ``validate`` and appears in the repr. No mode setters, no prints:
    ``targeted=True`` means the labels given to ``__call__`` are the target classes.
    """

    function: Callable[..., torch.Tensor]

    def __init__(self, model: nn.Module, **hyper: Any) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        self.model = model
        self._names = tuple(hyper)
        for name, value in hyper.items():
            setattr(self, name, value)
        self.validate()

    @classmethod
    def options(cls) -> tuple[str, ...]:
        """The keyword hyper-parameters the constructor takes, in order (e.g. ``PGD.options()``)."""
        return tuple(name for name, p in inspect.signature(cls.__init__).parameters.items()
                     if p.kind is inspect.Parameter.KEYWORD_ONLY)

    @property
    def hyper(self) -> dict[str, Any]:
        """The hyper-parameters as a dict (current attribute values)."""
        return {name: getattr(self, name) for name in self._names}

    def validate(self) -> None:
        """Check the hyper-parameters (``ValueError``/``TypeError`` naming the bad one)."""
        hyper = self.hyper
        for name in ("eps", "alpha", "c", "lr"):
            if name in hyper:
                check_eps(hyper[name], name)
        if "steps" in hyper:
            check_steps(hyper["steps"])

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Adversarial examples for ``images``; ``labels`` are the true (or target) classes.

        Shape: images ``(N, C, H, W)`` in [0, 1], labels ``(N)`` -> ``(N, C, H, W)`` in [0, 1].
        """
        return type(self).function(self.model, images, labels, **self.hyper)

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={_format(value)}" for name, value in self.hyper.items())
        return f"{type(self).__name__}(model={type(self.model).__name__}, {args})"
