"""Model zoo: a small MNIST CNN, VGG-16 and pre-activation ResNet-18 for 32x32 colour.

Every model takes images in [0, 1] and owns its normalisation (a ``Normalize`` module
named ``normalize``), so attacks work in pixel space. Layer names are stable and
readable, because the course addresses layers by dotted name
(``model.get_submodule("conv3")``). Taught in lesson 00 (``00_setup_and_data.ipynb``).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Sequence

import torch
from torch import nn

__all__ = ["Normalize", "SmallCNN", "VGG16", "PreActResNet18", "build", "ARCHITECTURES"]


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; the first module of every nslib model.

    Shape: ``(N, C, H, W) -> (N, C, H, W)``.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class SmallCNN(nn.Sequential):
    """4 conv + 3 FC network for 28x28 grey images (the MNIST CNN of Carlini & Wagner, 2017).

    Layers, in order: ``normalize``, ``conv1`` (32), ``conv2`` (32), ``pool1``,
    ``conv3`` (64), ``conv4`` (64), ``pool2``, ``fc1`` (200), ``fc2`` (200), ``fc3``
    (logits), each conv/fc followed by ``reluN``. A "neuron" of ``convN`` is one output
    channel, of ``fcN`` one unit.

    Shape: ``(N, 1, 28, 28)`` in [0, 1] -> logits ``(N, num_classes)``.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1,
                 mean: Sequence[float] = (0.1307,), std: Sequence[float] = (0.3081,)) -> None:
        super().__init__(OrderedDict([
            ("normalize", Normalize(mean, std)),
            ("conv1", nn.Conv2d(in_channels, 32, 3)), ("relu1", nn.ReLU()),
            ("conv2", nn.Conv2d(32, 32, 3)), ("relu2", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2)),
            ("conv3", nn.Conv2d(32, 64, 3)), ("relu3", nn.ReLU()),
            ("conv4", nn.Conv2d(64, 64, 3)), ("relu4", nn.ReLU()),
            ("pool2", nn.MaxPool2d(2)),
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(64 * 4 * 4, 200)), ("relu5", nn.ReLU()),
            ("fc2", nn.Linear(200, 200)), ("relu6", nn.ReLU()),
            ("fc3", nn.Linear(200, num_classes)),
        ]))


_VGG16_STAGES = (2, 2, 3, 3, 3)
_VGG16_WIDTHS = (64, 128, 256, 512, 512)


class VGG16(nn.Sequential):
    """VGG-16 with batch norm for 32x32 colour images (as in CIFAR-10 robustness work).

    Layers: ``normalize``, then ``conv{stage}_{i}`` / ``bn{stage}_{i}`` / ``relu{stage}_{i}``
    for stages 1-5 each ending in ``pool{stage}``, then ``flatten`` and ``fc`` (logits).

    Shape: ``(N, 3, 32, 32)`` in [0, 1] -> logits ``(N, num_classes)``.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3,
                 mean: Sequence[float] = (0.4914, 0.4822, 0.4465),
                 std: Sequence[float] = (0.2471, 0.2435, 0.2616)) -> None:
        layers: list[tuple[str, nn.Module]] = [("normalize", Normalize(mean, std))]
        channels = in_channels
        for stage, (repeats, width) in enumerate(zip(_VGG16_STAGES, _VGG16_WIDTHS), start=1):
            for i in range(1, repeats + 1):
                layers += [
                    (f"conv{stage}_{i}", nn.Conv2d(channels, width, 3, padding=1, bias=False)),
                    (f"bn{stage}_{i}", nn.BatchNorm2d(width)),
                    (f"relu{stage}_{i}", nn.ReLU()),
                ]
                channels = width
            layers.append((f"pool{stage}", nn.MaxPool2d(2)))
        layers += [("flatten", nn.Flatten()), ("fc", nn.Linear(channels, num_classes))]
        super().__init__(OrderedDict(layers))


class PreActBlock(nn.Module):
    """Pre-activation residual block (He et al., 2016): BN-ReLU-conv, BN-ReLU-conv, + shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.relu2(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """Pre-activation ResNet-18 for 32x32 colour images (the usual CIFAR-10 AT backbone).

    Layers: ``normalize``, ``conv1``, ``layer1``..``layer4`` (two ``PreActBlock`` each,
    named ``layer2.0`` etc., with ``conv1``/``conv2`` inside), ``bn``, ``relu``,
    ``pool``, ``flatten``, ``fc``.

    Shape: ``(N, 3, 32, 32)`` in [0, 1] -> logits ``(N, num_classes)``.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3,
                 mean: Sequence[float] = (0.4914, 0.4822, 0.4465),
                 std: Sequence[float] = (0.2471, 0.2435, 0.2616)) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(in_channels, 64, 3, padding=1, bias=False)
        planes, layers = 64, []
        for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers.append(nn.Sequential(PreActBlock(planes, width, stride), PreActBlock(width, width)))
            planes = width
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.bn = nn.BatchNorm2d(512)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.normalize(x))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.fc(self.flatten(self.pool(self.relu(self.bn(out)))))


#: name -> (constructor, input shape ``(C, H, W)``)
ARCHITECTURES: dict[str, tuple[Callable[..., nn.Module], tuple[int, int, int]]] = {
    "smallcnn": (SmallCNN, (1, 28, 28)),
    "vgg16": (VGG16, (3, 32, 32)),
    "resnet18": (PreActResNet18, (3, 32, 32)),
}


def build(name: str, *, num_classes: int = 10, dataset: str | None = None) -> nn.Module:
    """Build an untrained model by name.

    Args:
        name (str): one of ``"smallcnn"``, ``"vgg16"``, ``"resnet18"``.
        num_classes (int, optional): size of the logit vector. Default: ``10``.
        dataset (str, optional): a data set name from ``nslib.data.DATASETS``; its channel
            count and normalisation statistics are used. Default: ``None`` (the
            architecture's own: MNIST statistics for ``smallcnn``, CIFAR-10 for the others).

    Returns:
        nn.Module: the model, in train mode, on the CPU. Its attribute ``arch`` holds
        ``name`` and ``dataset`` the data set name (or ``None``), which checkpoints record.

    Example:
        >>> model = build("smallcnn")
        >>> model(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(ARCHITECTURES)}.")
    constructor, (channels, size, _) = ARCHITECTURES[key]
    kwargs: dict = {"num_classes": num_classes}
    if dataset is not None:
        from .data import dataset_info  # local import: data imports nothing from models

        info = dataset_info(dataset)
        if info.image_size != size:
            raise ValueError(
                f"model {name!r} expects {size}x{size} images but data set {dataset!r} has "
                f"{info.image_size}x{info.image_size}; use "
                f"{[n for n, (_, s) in ARCHITECTURES.items() if s[1] == info.image_size]}."
            )
        kwargs.update(in_channels=info.channels, mean=info.mean, std=info.std)
    model = constructor(**kwargs)
    model.arch = key
    model.dataset = dataset
    return model
