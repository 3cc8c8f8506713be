"""BIM / I-FGSM: FGSM repeated with a small step, clipped to the eps-ball (Kurakin et al., 2017).

Taught in lesson 01 (``01_attacks.ipynb``).
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Attack
from .pgd import pgd

__all__ = ["bim", "BIM"]


def bim(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
        eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 10,
        targeted: bool = False) -> torch.Tensor:
    r"""Basic Iterative Method: ``x_{t+1} = clip_{x, eps}(x_t + alpha * sign(∇_x L(f(x_t), y)))``, from ``x_0 = x``.

    Paper: Kurakin, Goodfellow, Bengio, "Adversarial Examples in the Physical World",
    ICLR 2017 workshop, https://arxiv.org/abs/1607.02533. It is Linf PGD without the
    random start (``pgd(..., random_start=False)``) and equals ``torchattacks.BIM``
    (whose ``steps=0`` rule is not copied: give ``steps`` explicitly).

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
        >>> bim(model, x, y, eps=0.3, alpha=0.05, steps=5).shape
        torch.Size([4, 1, 28, 28])

    Taught in lesson 01 (01_attacks.ipynb).
    """
    return pgd(model, images, labels, eps=eps, alpha=alpha, steps=steps,
               random_start=False, norm="Linf", loss="ce", targeted=targeted)


class BIM(Attack):
    r"""BIM / I-FGSM as a callable holding its hyper-parameters; see :func:`bim`.

    Paper: Kurakin et al., "Adversarial Examples in the Physical World",
    https://arxiv.org/abs/1607.02533. Distance measure: Linf.

    Args:
        model (nn.Module): classifier on images in [0, 1].
        eps (float, optional): maximum perturbation. Default: ``8/255``.
        alpha (float, optional): step size. Default: ``2/255``.
        steps (int, optional): number of steps. Default: ``10``.
        targeted (bool, optional): labels are target classes. Default: ``False``.

    Shape: images ``(N, C, H, W)`` in [0, 1], labels ``(N)`` -> ``(N, C, H, W)``.

    Example:
        >>> from nslib.models import build
        >>> atk = BIM(build("smallcnn"), eps=0.3, alpha=0.01, steps=40)
        >>> atk(torch.rand(2, 1, 28, 28), torch.tensor([3, 7])).shape
        torch.Size([2, 1, 28, 28])

    Taught in lesson 01 (01_attacks.ipynb).
    """

    function = staticmethod(bim)

    def __init__(self, model: nn.Module, *, eps: float = 8 / 255, alpha: float = 2 / 255,
                 steps: int = 10, targeted: bool = False) -> None:
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, targeted=targeted)
