"""MIM / MI-FGSM: iterative FGSM with a momentum of normalised gradients (Dong et al., 2018).

Taught in lesson 01 (``01_attacks.ipynb``).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..utils import check_eps
from .base import Attack, attack_context, check_steps, input_gradient, prepare_deferred, project_linf

__all__ = ["mim", "MIM"]


def _check_decay(decay: float) -> None:
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not math.isfinite(decay):
        raise TypeError(f"decay must be a finite number (the momentum factor mu), got {decay!r}.")


def mim(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
        eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 10, decay: float = 1.0,
        targeted: bool = False) -> torch.Tensor:
    r"""Momentum Iterative FGSM: ``g_{t+1} = mu * g_t + ∇L / mean|∇L|``, ``x_{t+1} = clip_{x, eps}(x_t + alpha * sign(g_{t+1}))``.

    Paper: Dong, Liao, Pang, Su, Zhu, Hu, Li, "Boosting Adversarial Attacks with
    Momentum", CVPR 2018, https://arxiv.org/abs/1710.06081. Equals
    ``torchattacks.MIFGSM``, except that the gradient is normalised by its mean
    absolute value over *all* non-batch dimensions of any input shape (torchattacks
    assumes 4-D), and an all-zero gradient stays zero instead of becoming NaN.

    Distance measure: Linf.

    Args:
        model (nn.Module): classifier taking images in [0, 1] and returning logits.
            It runs in eval mode during the attack; its modes and ``requires_grad``
            flags are restored afterwards.
        images (Tensor): clean images in [0, 1].
        labels (Tensor): true classes, or the target classes when ``targeted``.
        eps (float, optional): maximum perturbation ``||x' - x||_inf``. Default: ``8/255``.
        alpha (float, optional): step size. Default: ``2/255``.
        steps (int, optional): number of steps (>= 1). Default: ``10``.
        decay (float, optional): momentum factor ``mu``. Default: ``1.0``.
        targeted (bool, optional): ``labels`` are target classes to reach. Default: ``False``.

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
        >>> mim(model, x, y, eps=0.3, alpha=0.03, steps=10).shape
        torch.Size([4, 1, 28, 28])

    Taught in lesson 01 (01_attacks.ipynb).
    """
    check_eps(eps, "eps")
    check_eps(alpha, "alpha")
    check_steps(steps)
    _check_decay(decay)
    images, labels, verdict = prepare_deferred(model, images, labels)
    dims = tuple(range(1, images.dim()))
    momentum = torch.zeros_like(images)
    adv = images
    with attack_context(model):
        for _ in range(steps):
            grad = input_gradient(model, adv, labels, targeted=targeted)
            scale = grad.abs().mean(dim=dims, keepdim=True)
            grad = grad / torch.where(scale == 0, torch.ones_like(scale), scale)
            grad = grad + momentum * decay
            momentum = grad
            adv = project_linf(adv + alpha * grad.sign(), images, eps)
    verdict()  # images outside [0, 1] raise; asked last, so a CUDA check does not stall the device
    return adv


class MIM(Attack):
    r"""MIM / MI-FGSM as a callable holding its hyper-parameters; see :func:`mim`.

    Paper: Dong et al., "Boosting Adversarial Attacks with Momentum",
    https://arxiv.org/abs/1710.06081. Distance measure: Linf.

    Args:
        model (nn.Module): classifier on images in [0, 1].
        eps (float, optional): maximum perturbation. Default: ``8/255``.
        alpha (float, optional): step size. Default: ``2/255``.
        steps (int, optional): number of steps. Default: ``10``.
        decay (float, optional): momentum factor. Default: ``1.0``.
        targeted (bool, optional): labels are target classes. Default: ``False``.

    Shape: images ``(N, C, H, W)`` in [0, 1], labels ``(N)`` -> ``(N, C, H, W)``.

    Example:
        >>> from nslib.models import build
        >>> atk = MIM(build("smallcnn"), eps=0.3, alpha=0.01, steps=40)
        >>> atk(torch.rand(2, 1, 28, 28), torch.tensor([3, 7])).shape
        torch.Size([2, 1, 28, 28])

    Taught in lesson 01 (01_attacks.ipynb).
    """

    function = staticmethod(mim)

    def __init__(self, model: nn.Module, *, eps: float = 8 / 255, alpha: float = 2 / 255,
                 steps: int = 10, decay: float = 1.0, targeted: bool = False) -> None:
        _check_decay(decay)
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, decay=decay, targeted=targeted)
