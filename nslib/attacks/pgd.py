"""PGD: projected gradient ascent from a random start (Madry et al., 2018), Linf or L2.

Taught in lesson 01 (``01_attacks.ipynb``).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..precision import check_precision
from ..utils import check_eps
from .base import (LOSSES, NORMS, Attack, _per_sample, attack_context, check_choice,
                   check_steps, input_gradient, prepare_deferred, project_l2, project_linf)

__all__ = ["pgd", "PGD", "random_start_linf", "random_start_l2"]


def random_start_linf(images: torch.Tensor, eps: float) -> torch.Tensor:
    """A uniform point of the Linf ball, clamped to [0, 1].

    Uses ``torch.empty_like(x).uniform_(-eps, eps)``, the same random numbers as
    ``torchattacks.PGD``: under the same ``torch.manual_seed`` both start alike.
    """
    noise = torch.empty_like(images).uniform_(-eps, eps)
    return torch.clamp(images + noise, min=0, max=1).detach()


def random_start_l2(images: torch.Tensor, eps: float) -> torch.Tensor:
    """A random point of the L2 ball (Gaussian direction, radius ``eps * U(0, 1)``), clamped to [0, 1].

    The same random numbers and arithmetic as ``torchattacks.PGDL2``.
    """
    delta = torch.empty_like(images).normal_()
    norms = _per_sample(delta.flatten(1).norm(p=2, dim=1), delta)
    radius = torch.zeros_like(norms).uniform_(0, 1)
    delta *= radius / norms * eps
    return torch.clamp(images + delta, min=0, max=1).detach()


def _check_kappa(kappa: float | None) -> None:
    if kappa is not None and (isinstance(kappa, bool) or not isinstance(kappa, (int, float))
                              or not math.isfinite(kappa)):
        raise TypeError(f"kappa must be a finite number or None, got {kappa!r}.")


def pgd(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
        eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 10,
        random_start: bool = True, norm: str = "Linf", loss: str = "ce",
        kappa: float | None = None, targeted: bool = False, precision: str = "fp32",
        stop_when_fooled: bool = False) -> torch.Tensor:
    r"""Projected Gradient Descent: ``steps`` ascent steps of size ``alpha``, each projected on the eps-ball.

    Paper: Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models
    Resistant to Adversarial Attacks", ICLR 2018, https://arxiv.org/abs/1706.06083.

    Linf: ``x_{t+1} = Π_{B_inf(x, eps) ∩ [0,1]}(x_t + alpha * sign(∇ L))``, equal to
    ``torchattacks.PGD``. L2: ``x_{t+1} = Π_{B_2(x, eps)}(x_t + alpha * ∇L / ||∇L||_2)``
    then clamped to [0, 1], equal to ``torchattacks.PGDL2``. ``loss="cw"`` ascends the
    C&W margin instead of the cross-entropy (Carlini & Wagner 2017,
    https://arxiv.org/abs/1608.04644): ``max_{j≠y} Z_j - Z_y`` (untargeted) or
    ``Z_t - max_{j≠t} Z_j`` (targeted), clamped at ``kappa`` when given.

    Distance measure: Linf or L2 (``norm``).

    Args:
        model (nn.Module): classifier taking images in [0, 1] and returning logits.
            It runs in eval mode during the attack; its modes and ``requires_grad``
            flags are restored afterwards.
        images (Tensor): clean images in [0, 1].
        labels (Tensor): true classes, or the target classes when ``targeted``.
        eps (float, optional): radius of the ball ``||x' - x|| <= eps``. Default: ``8/255``
            (typical L2 radii are larger, e.g. ``0.5`` on CIFAR-10, ``2.0`` on MNIST).
        alpha (float, optional): step size. Default: ``2/255``.
        steps (int, optional): number of steps (>= 1). Default: ``10``.
        random_start (bool, optional): start from a random point of the ball (uniform
            for Linf as torchattacks.PGD; Gaussian direction and uniform radius for L2
            as torchattacks.PGDL2). Default: ``True``.
        norm (str, optional): ``"Linf"`` or ``"L2"``. Default: ``"Linf"``.
        loss (str, optional): ``"ce"`` (cross-entropy) or ``"cw"`` (C&W margin).
            Default: ``"ce"``.
        kappa (float, optional): with ``loss="cw"``, stop gaining once the wrong class
            wins by ``kappa`` (the margin is clamped from above); ``None`` never clamps.
            Default: ``None``.
        targeted (bool, optional): ``labels`` are target classes to reach. Default: ``False``.
        precision (str, optional): ``"fp32"`` or ``"bf16"`` (the model's forward passes under
            bf16 autocast, inputs channels_last; the iterates, loss, gradient and projection
            stay float32; see ``nslib.precision``). Default: ``"fp32"``, the reference.
        stop_when_fooled (bool, optional): return the current iterate as soon as the model
            misclassifies every image of the batch (untargeted, fp32 only): more steps cannot
            lower the accuracy below zero, so an evaluation loses nothing and saves the
            remaining steps (``nslib.evaluation`` sets it). Otherwise the result is the same
            as without it. Default: ``False``, every step, as torchattacks.

    Shape:
        - images: ``(N, C, H, W)`` in [0, 1] (any ``(N, ...)`` works).
        - labels: ``(N)`` integer classes.
        - output: ``(N, C, H, W)`` in [0, 1], same dtype as ``images``.

    Returns:
        Tensor: the adversarial images (detached, on the model's device).

    Example:
        >>> from nslib.models import build
        >>> model = build("smallcnn")
        >>> x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
        >>> x_adv = pgd(model, x, y, eps=0.3, alpha=0.01, steps=5)
        >>> bool((x_adv - x).abs().max() <= 0.3 + 1e-6)
        True

    Taught in lesson 01 (01_attacks.ipynb).
    """
    check_eps(eps, "eps")
    check_eps(alpha, "alpha")
    check_steps(steps)
    norm = check_choice(norm, "norm", NORMS)
    loss = check_choice(loss, "loss", LOSSES)
    _check_kappa(kappa)
    check_precision(precision)
    if stop_when_fooled and (targeted or precision != "fp32"):
        raise ValueError("stop_when_fooled needs an untargeted attack in fp32 (it reads 'fooled' from the "
                         f"attack's own logits); got targeted={targeted}, precision={precision!r}.")
    images, labels, verdict = prepare_deferred(model, images, labels)
    with attack_context(model):
        if random_start:
            adv = (random_start_linf if norm == "Linf" else random_start_l2)(images, eps)
        else:
            adv = images
        for _ in range(steps):
            grad, logits = input_gradient(model, adv, labels, loss=loss, targeted=targeted, kappa=kappa,
                                          precision=precision, with_logits=True)
            if stop_when_fooled and bool((logits.argmax(dim=1) != labels).all()):
                break   # every image misclassified at this iterate: the accuracy is already zero
            if norm == "Linf":
                adv = project_linf(adv + alpha * grad.sign(), images, eps)
            else:
                grad_norms = grad.flatten(1).norm(p=2, dim=1) + 1e-10
                adv = project_l2(adv + alpha * (grad / _per_sample(grad_norms, grad)), images, eps)
    verdict()  # images outside [0, 1] raise; asked last, so a CUDA check does not stall the device
    return adv


class PGD(Attack):
    r"""PGD as a callable holding its hyper-parameters; see :func:`pgd`.

    Paper: Madry et al., "Towards Deep Learning Models Resistant to Adversarial
    Attacks", https://arxiv.org/abs/1706.06083. Distance measure: Linf or L2.

    Args:
        model (nn.Module): classifier on images in [0, 1].
        eps (float, optional): radius of the eps-ball. Default: ``8/255``.
        alpha (float, optional): step size. Default: ``2/255``.
        steps (int, optional): number of steps. Default: ``10``.
        random_start (bool, optional): random start in the ball. Default: ``True``.
        norm (str, optional): ``"Linf"`` or ``"L2"``. Default: ``"Linf"``.
        loss (str, optional): ``"ce"`` or ``"cw"``. Default: ``"ce"``.
        kappa (float, optional): clamp of the C&W margin. Default: ``None``.
        targeted (bool, optional): labels are target classes. Default: ``False``.
        precision (str, optional): ``"fp32"`` or ``"bf16"`` (``nslib.precision``). Default: ``"fp32"``.
        stop_when_fooled (bool, optional): stop once every image is misclassified. Default: ``False``.

    Shape: images ``(N, C, H, W)`` in [0, 1], labels ``(N)`` -> ``(N, C, H, W)``.

    Example:
        >>> from nslib.models import build
        >>> atk = PGD(build("smallcnn"), eps=0.3, alpha=0.01, steps=40)
        >>> atk(torch.rand(2, 1, 28, 28), torch.tensor([3, 7])).shape
        torch.Size([2, 1, 28, 28])

    Taught in lesson 01 (01_attacks.ipynb).
    """

    function = staticmethod(pgd)

    def __init__(self, model: nn.Module, *, eps: float = 8 / 255, alpha: float = 2 / 255,
                 steps: int = 10, random_start: bool = True, norm: str = "Linf",
                 loss: str = "ce", kappa: float | None = None, targeted: bool = False,
                 precision: str = "fp32", stop_when_fooled: bool = False) -> None:
        norm = check_choice(norm, "norm", NORMS)
        loss = check_choice(loss, "loss", LOSSES)
        _check_kappa(kappa)
        check_precision(precision)
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start,
                         norm=norm, loss=loss, kappa=kappa, targeted=targeted, precision=precision,
                         stop_when_fooled=stop_when_fooled)
