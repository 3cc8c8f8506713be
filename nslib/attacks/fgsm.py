"""FGSM: one signed-gradient step of size eps (Goodfellow et al., 2015).

Taught in lesson 01 (``01_attacks.ipynb``).
"""
from __future__ import annotations

import torch
from torch import nn

from ..utils import check_eps
from .base import Attack, attack_context, input_gradient, prepare_deferred

__all__ = ["fgsm", "FGSM"]


def fgsm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
         eps: float = 8 / 255, targeted: bool = False) -> torch.Tensor:
    r"""Fast Gradient Sign Method: ``x' = clip_[0,1](x + eps * sign(grad_x L(f(x), y)))``.

    Paper: Goodfellow, Shlens, Szegedy, "Explaining and Harnessing Adversarial
    Examples", ICLR 2015, https://arxiv.org/abs/1412.6572. Equal to
    ``torchattacks.FGSM``.

    Distance measure: Linf.

    Args:
        model (nn.Module): classifier taking images in [0, 1] and returning logits.
            It runs in eval mode during the attack; its modes and ``requires_grad``
            flags are restored afterwards.
        images (Tensor): clean images in [0, 1].
        labels (Tensor): true classes, or the target classes when ``targeted``.
        eps (float, optional): maximum perturbation ``||x' - x||_inf``. Default: ``8/255``.
        targeted (bool, optional): step *down* the cross-entropy of ``labels`` (make the
            model predict them) instead of up. Default: ``False``.

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
        >>> fgsm(model, x, y, eps=0.3).shape
        torch.Size([4, 1, 28, 28])

    Taught in lesson 01 (01_attacks.ipynb).
    """
    check_eps(eps, "eps")
    images, labels, verdict = prepare_deferred(model, images, labels)
    with attack_context(model):
        grad = input_gradient(model, images, labels, targeted=targeted)
    adv = torch.clamp(images + eps * grad.sign(), min=0, max=1).detach()
    verdict()  # images outside [0, 1] raise; asked last, so a CUDA check does not stall the device
    return adv


class FGSM(Attack):
    r"""FGSM as a callable holding its hyper-parameters; see :func:`fgsm`.

    Paper: Goodfellow et al., "Explaining and Harnessing Adversarial Examples",
    https://arxiv.org/abs/1412.6572. Distance measure: Linf.

    Args:
        model (nn.Module): classifier on images in [0, 1].
        eps (float, optional): maximum perturbation. Default: ``8/255``.
        targeted (bool, optional): labels are target classes. Default: ``False``.

    Shape: images ``(N, C, H, W)`` in [0, 1], labels ``(N)`` -> ``(N, C, H, W)``.

    Example:
        >>> from nslib.models import build
        >>> atk = FGSM(build("smallcnn"), eps=0.3)
        >>> atk(torch.rand(2, 1, 28, 28), torch.tensor([3, 7])).shape
        torch.Size([2, 1, 28, 28])

    Taught in lesson 01 (01_attacks.ipynb).
    """

    function = staticmethod(fgsm)

    def __init__(self, model: nn.Module, *, eps: float = 8 / 255, targeted: bool = False) -> None:
        super().__init__(model, eps=eps, targeted=targeted)
