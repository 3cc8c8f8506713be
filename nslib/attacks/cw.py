"""C&W L2: optimise the perturbation in tanh space with Adam (Carlini & Wagner, 2017).

Taught in ``notebooks/01_attacks.ipynb``.
"""
from __future__ import annotations

import torch
from torch import nn

from ..utils import check_eps
from .base import Attack, _per_sample, attack_context, check_steps, margin, prepare

__all__ = ["cw", "CW"]

# (ours) atanh(2x - 1) is clamped to +-(1 - 1e-6) so that pixels at exactly 0 or 1 start
# at a finite w and may still move; torchattacks starts them at -inf / +inf (stuck).
_EDGE = 1e-6


def tanh_space(w: torch.Tensor) -> torch.Tensor:
    """``x = (tanh(w) + 1) / 2``: any real ``w`` maps into [0, 1] (the box constraint)."""
    return 1 / 2 * (torch.tanh(w) + 1)


def inverse_tanh_space(x: torch.Tensor) -> torch.Tensor:
    """``w = atanh(2x - 1)``, with ``2x - 1`` clamped to ``[-1 + 1e-6, 1 - 1e-6]`` (ours)."""
    z = torch.clamp(x * 2 - 1, min=-1 + _EDGE, max=1 - _EDGE)
    return 0.5 * torch.log((1 + z) / (1 - z))  # the formula torchattacks uses, bit for bit


def cw(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
       c: float = 1.0, kappa: float = 0.0, steps: int = 50, lr: float = 0.01,
       targeted: bool = False) -> torch.Tensor:
    r"""Carlini-Wagner L2 attack: ``min_w ||x'(w) - x||_2^2 + c * f(x'(w))`` with ``x'(w) = (tanh(w) + 1) / 2``.

    Paper: Carlini, Wagner, "Towards Evaluating the Robustness of Neural Networks",
    IEEE S&P 2017, https://arxiv.org/abs/1608.04644. ``f`` is the margin loss
    ``max(Z_y - max_{j≠y} Z_j, -kappa)`` (untargeted) or
    ``max(max_{j≠t} Z_j - Z_t, -kappa)`` (targeted). Adam on ``w`` for ``steps`` steps,
    keeping for each input the successful example with the smallest L2 distance
    (inputs never fooled are returned unchanged), and stopping early when the total
    cost rose since the last of ten checkpoints — all as ``torchattacks.CW``. No binary
    search over ``c``. Differences from torchattacks (ours): the margin uses the true
    maximum over the other logits (torchattacks' masked max is wrong when logits are
    negative); ``2x - 1`` is clamped to ``±(1 - 1e-6)`` before ``atanh`` so that pixels
    at exactly 0 or 1 can move; gradients come from ``torch.autograd.grad`` so the
    model's ``.grad`` is never touched.

    Distance measure: L2 (no eps bound: the distance is minimised, not capped).

    Args:
        model (nn.Module): classifier taking images in [0, 1] and returning logits.
            It runs in eval mode during the attack; its modes and ``requires_grad``
            flags are restored afterwards.
        images (Tensor): clean images in [0, 1].
        labels (Tensor): true classes, or the target classes when ``targeted``.
        c (float, optional): weight of the margin loss against the distance. Default: ``1.0``.
        kappa (float, optional): confidence: how far past the decision boundary the
            optimisation still pushes. Default: ``0.0``.
        steps (int, optional): Adam steps (>= 1). Default: ``50``.
        lr (float, optional): Adam learning rate in tanh space. Default: ``0.01``.
            On MNIST, where most pixels sit at 0 or 1 (far out in tanh space), a larger
            rate (e.g. ``0.1``) or more steps make the attack much stronger.
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
        >>> cw(model, x, y, c=1.0, steps=10).shape
        torch.Size([4, 1, 28, 28])

    Taught in notebooks/01_attacks.ipynb.
    """
    check_eps(c, "c")
    check_eps(kappa, "kappa")
    check_eps(lr, "lr")
    check_steps(steps)
    images, labels = prepare(model, images, labels)
    w = inverse_tanh_space(images).detach().requires_grad_(True)
    best_adv = images.clone()
    best_l2 = torch.full((len(images),), 1e10, dtype=images.dtype, device=images.device)
    prev_cost = float("inf")
    optimizer = torch.optim.Adam([w], lr=lr)
    check_every = max(steps // 10, 1)
    with attack_context(model):
        for step in range(steps):
            adv = tanh_space(w)
            current_l2 = ((adv - images) ** 2).flatten(1).sum(dim=1)
            logits = model(adv)
            m = margin(logits, labels)
            f = torch.clamp(-m if targeted else m, min=-kappa)
            cost = current_l2.sum() + c * f.sum()
            w.grad = torch.autograd.grad(cost, w)[0]
            optimizer.step()

            pred = logits.detach().argmax(dim=1)
            success = pred == labels if targeted else pred != labels
            better = success & (best_l2 > current_l2.detach())
            best_l2 = torch.where(better, current_l2.detach(), best_l2)
            best_adv = torch.where(_per_sample(better, adv), adv.detach(), best_adv)

            if step % check_every == 0:
                value = cost.item()
                if value > prev_cost:
                    break
                prev_cost = value
    return best_adv


class CW(Attack):
    r"""C&W L2 as a callable holding its hyper-parameters; see :func:`cw`.

    Paper: Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks",
    https://arxiv.org/abs/1608.04644. Distance measure: L2.

    Args:
        model (nn.Module): classifier on images in [0, 1].
        c (float, optional): weight of the margin loss. Default: ``1.0``.
        kappa (float, optional): confidence margin. Default: ``0.0``.
        steps (int, optional): Adam steps. Default: ``50``.
        lr (float, optional): Adam learning rate. Default: ``0.01``.
        targeted (bool, optional): labels are target classes. Default: ``False``.

    Shape: images ``(N, C, H, W)`` in [0, 1], labels ``(N)`` -> ``(N, C, H, W)``.

    Example:
        >>> from nslib.models import build
        >>> atk = CW(build("smallcnn"), c=1.0, steps=10)
        >>> atk(torch.rand(2, 1, 28, 28), torch.tensor([3, 7])).shape
        torch.Size([2, 1, 28, 28])

    Taught in notebooks/01_attacks.ipynb.
    """

    function = staticmethod(cw)

    def __init__(self, model: nn.Module, *, c: float = 1.0, kappa: float = 0.0, steps: int = 50,
                 lr: float = 0.01, targeted: bool = False) -> None:
        check_eps(kappa, "kappa")
        super().__init__(model, c=c, kappa=kappa, steps=steps, lr=lr, targeted=targeted)
