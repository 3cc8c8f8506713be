"""Several batches through a model as one batch: SNS's clean and adversarial passes fused.

SNS needs the model's outputs (and the constrained layers' activations) on ``x'`` and on
``x``. As two passes, each pays the kernel launches of a whole forward and backward pass,
and at small batches on a GPU the launches are what a training step waits on.
:func:`fused_forward` runs ``cat([x', x])``, one batch of 2N, and splits the output.

**What stays exact, and BatchNorm (ours).** A layer that treats every sample on its own
(convolution, linear, ReLU, pooling, GroupNorm, LayerNorm) gives each sample the same
output in the 2N batch as in its own batch. BatchNorm in train mode does not: it would
normalise ``x'`` with statistics that are half ``x``'s, and update its running statistics
once, from the mixture. We keep **separate statistics**: inside :func:`part_statistics`
every BatchNorm layer in train mode normalises each part with that part's own batch
statistics and updates its running statistics part by part, in order (``x'`` first, then
``x``), as the two separate passes do. So the fused loss, its gradient and the running
statistics equal the unfused ones, with BatchNorm or without (``tests/test_fusion.py``), up
to the rounding of kernels picked for another batch size. The alternative some
implementations take, the clean pass with BatchNorm in eval mode, would change SNS's loss;
and mixing clean and adversarial statistics in one BatchNorm is known to hurt (Xie et al.,
"Adversarial Examples Improve Image Recognition", CVPR 2020, https://arxiv.org/abs/1911.09665).
BatchNorm in eval mode uses its running statistics and needs nothing. See
``docs/experiments.md#sns-loss``.

Taught in lesson 04 (``04_robust_training_and_sns.ipynb``: the SNS loss; the fusion is an option of it).
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["fused_forward", "part_statistics"]


@contextlib.contextmanager
def part_statistics(model: nn.Module, sizes: Sequence[int]) -> Iterator[None]:
    """Inside the block, every BatchNorm layer of ``model`` in train mode normalises each part of
    its batch (the first ``sizes[0]`` samples, then the next ``sizes[1]``, ...) with that part's
    own statistics, and updates its running statistics part by part, in order.

    Each layer's own ``forward`` does the work on each part, so every kind of BatchNorm
    (1d, 2d, 3d; momentum or cumulative average) behaves as when the parts are separate
    batches. The layers are given back their own ``forward`` in ``finally``.

    Args:
        model (nn.Module): the model (or a wrapper of it, e.g. DistributedDataParallel).
        sizes (list of int): the parts' batch sizes, in the order they are concatenated.

    Example:
        >>> bn = nn.BatchNorm1d(2)
        >>> a, b = torch.randn(4, 2), 10 + torch.randn(4, 2)
        >>> with part_statistics(bn, [4, 4]):
        ...     both = bn(torch.cat([a, b]))
        >>> torch.allclose(both[4:], nn.BatchNorm1d(2)(b), atol=1e-6)
        True
    """
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.training]
    try:
        for layer in layers:
            layer.forward = _per_part(layer, list(sizes))
        yield
    finally:
        for layer in layers:
            layer.__dict__.pop("forward", None)


def _per_part(layer: _BatchNorm, sizes: list[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``layer``'s forward applied to each part of its input in turn, the results concatenated."""
    own = type(layer).forward

    def forward(input: torch.Tensor) -> torch.Tensor:
        return torch.cat([own(layer, part) for part in input.split(sizes)])

    return forward


def fused_forward(model: nn.Module, batches: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``[model(b) for b in batches]``, computed as one pass on ``cat(batches)``.

    The output (and any activation a hook captures) holds the batches in order along dim 0;
    BatchNorm layers in train mode keep each batch's own statistics (:func:`part_statistics`).

    Args:
        model (nn.Module): any model whose output has the batch along dim 0.
        batches (list of Tensor): inputs of the same shape but for dim 0.

    Shape:
        batches ``[(N_1, ...), (N_2, ...), ...]`` -> ``[(N_1, K), (N_2, K), ...]`` for a model
        returning ``(N, K)`` logits.

    Returns:
        list of Tensor: the model's output on each batch (views of the one output).

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).train()
        >>> x_adv, x = torch.randn(5, 3), torch.randn(5, 3)
        >>> out_adv, out = fused_forward(net, [x_adv, x])
        >>> out_adv.shape, out.shape
        (torch.Size([5, 4]), torch.Size([5, 4]))
    """
    sizes = [batch.shape[0] for batch in batches]
    with part_statistics(model, sizes):
        output = model(torch.cat(list(batches)))
    return list(output.split(sizes))
