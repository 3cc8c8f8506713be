"""Experimental settings as data: a data set, a model, a budget, the four recipes and the layers.

A setting is one small declarative description (:class:`Setting`). ``python -m nslib train
--setting NAME --recipe R`` trains recipe ``R`` exactly as the setting writes it, and
``nslib.experiments.models.SHIPPED_RECIPES`` (the course's four shipped models) is the
``mnist-smallcnn`` setting's recipes. Adding a setting is adding an entry to
:data:`REGISTRY`: ``fashion-mnist-smallcnn`` is the MNIST entry with another data set (and so
that data set's eps, ``nslib.data.DatasetInfo.eps``).

The settings::

    | setting | data | model | eps | recipes |
    |---|---|---|---|---|
    | mnist-smallcnn (default) | mnist5k (embedded) | smallcnn | 0.3 | Adam 1e-3, 40 epochs, eps ramp over 16 |
    | fashion-mnist-smallcnn | fashion-mnist (python -m nslib download fashion-mnist) | smallcnn | 0.1 | as MNIST |
    | cifar10-resnet18 | cifar10 (python -m nslib download cifar10) | PreAct ResNet-18 | 8/255 | SGD 0.1, momentum 0.9, weight decay 5e-4, step schedule, crop+flip |
    | cifar10-vgg16 | cifar10 | VGG-16 with batch norm | 8/255 | as ResNet-18 |

The CIFAR-10 recipes follow the common PGD-AT baseline (Madry et al. 2018; Rice et al. 2020;
Pang et al. 2021, "Bag of tricks for adversarial training"): SGD with momentum 0.9, learning
rate 0.1 divided by 10 at 50 % and 75 % of the epochs, weight decay 5e-4, batch 128, random
crop (padding 4) and horizontal flip, PGD-10 at eps 8/255 with step 2/255 and a random
start. The epochs are a budget, not the literature's 100-200: see ``docs/gpu.md``.

The layers (``docs/gpu.md#layers-of-each-setting``): ``layers`` are those E1/E2 measure, in
forward order, from the first convolution to the logits; ``sns_layers`` the ones SNS
constrains (the deep layers, where E1 finds the largest gap between standard and robust
models); ``ablation_layers`` E3's; ``feature_layer`` E4's (maps large enough to look at).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from .data import dataset_info
from .utils import pgd_step

__all__ = ["Setting", "REGISTRY", "DEFAULT", "get", "RECIPE_NAMES"]

#: The four recipes every setting trains, in the order tables and figures show them.
RECIPE_NAMES = ("standard", "pgd_at", "trades", "sns")


@dataclass(frozen=True)
class Setting:
    """One experimental setting: what to train on, with what, and what to measure.

    Attributes:
        name (str): ``"cifar10-resnet18"``; the ``--setting`` of the command line.
        dataset (str): an ``nslib.data`` name.
        arch (str): an ``nslib.models`` name.
        eps (float): the L-inf budget of training and evaluation.
        recipes (mapping): recipe name (:data:`RECIPE_NAMES`) -> ``train()`` settings
            (``recipe``, ``epochs`` and every training setting and recipe option).
        augment (bool): random crop + flip on the training images.
        layers (tuple of str): the layers E1/E2 measure, in forward order.
        sns_layers (tuple of str): the layers SNS constrains (``recipes["sns"]["layers"]``).
        ablation_layers (tuple of str): E3's layers.
        feature_layer (str): E4's layer.
        distribution_layers (tuple of str): the four layers of E2's figure.
        prefix (str): model names are ``f"{prefix}_{recipe}"`` (``mnist_pgd_at``).
        sweep (mapping): E7's reduced training budget (``nslib.sweep``): ``train_n`` images,
            ``test_n`` evaluation images and ``train()`` settings.
        quick_epochs (int): the epochs of every model in quick mode when the setting ships no
            checkpoints (``reproduce --quick --setting ...``: a smoke run, not a result).
        shipped (bool): the course ships this setting's trained models (``data/checkpoints``)
            and its recorded E7 sweep, which quick mode uses.
    """

    name: str
    dataset: str
    arch: str
    eps: float
    recipes: Mapping[str, dict]
    layers: tuple[str, ...]
    sns_layers: tuple[str, ...]
    ablation_layers: tuple[str, ...]
    feature_layer: str
    distribution_layers: tuple[str, ...]
    prefix: str
    sweep: Mapping[str, object]
    augment: bool = False
    quick_epochs: int = 2
    shipped: bool = False

    def __post_init__(self) -> None:
        missing = [r for r in RECIPE_NAMES if r not in self.recipes]
        if missing:
            raise ValueError(f"setting {self.name!r} lacks the recipes {missing}; it needs {list(RECIPE_NAMES)}.")
        sns = self.recipes["sns"].get("layers")
        if sns is not None and tuple(sns) != self.sns_layers:
            raise ValueError(f"setting {self.name!r}: the SNS recipe constrains {sns}, but sns_layers is "
                             f"{list(self.sns_layers)}; write the layers once, the same in both.")
        other_eps = {name: r["eps"] for name, r in {**self.recipes, "sweep": self.sweep}.items()
                     if r.get("eps") is not None and abs(r["eps"] - self.eps) > 1e-12}
        if other_eps:
            raise ValueError(f"setting {self.name!r} has eps {self.eps:g}, but {other_eps} train at another; "
                             "write the same eps in the setting, its recipes and its sweep.")
        object.__setattr__(self, "recipes", MappingProxyType({k: dict(v) for k, v in self.recipes.items()}))
        object.__setattr__(self, "sweep", MappingProxyType(dict(self.sweep)))

    def model_name(self, recipe: str) -> str:
        """The model's name: ``Setting.model_name("pgd_at")`` is ``"mnist_pgd_at"`` in the default setting."""
        if recipe not in RECIPE_NAMES:
            raise ValueError(f"unknown recipe {recipe!r}; choose one of {list(RECIPE_NAMES)}.")
        return f"{self.prefix}_{recipe}"

    @property
    def model_names(self) -> tuple[str, ...]:
        """The four models' names, in :data:`RECIPE_NAMES` order."""
        return tuple(self.model_name(r) for r in RECIPE_NAMES)

    def recipe(self, recipe: str) -> dict:
        """A copy of the ``train()`` settings of ``recipe`` (``recipe`` and ``epochs`` included)."""
        if recipe not in self.recipes:
            raise ValueError(f"setting {self.name!r} has no recipe {recipe!r}; choose one of {list(self.recipes)}.")
        return dict(self.recipes[recipe])


#: SNS's options in every setting (``docs/experiments.md#sns-loss``); its layers are the setting's.
_SNS = {"lam": 0.01, "k": 0.1, "max_k": 10, "topk_every": 0, "ce_on": "adv"}


#: The small CNN's layers in every MNIST-family setting.
_SMALLCNN_LAYERS = {"layers": ("conv1", "conv2", "conv3", "conv4", "fc1", "fc2", "fc3"),
                    "sns_layers": ("conv3", "conv4", "fc1"), "ablation_layers": ("conv4", "fc1"),
                    "feature_layer": "conv4", "distribution_layers": ("conv2", "conv4", "fc1", "fc2")}


def _mnist_recipes(eps: float) -> dict[str, dict]:
    """The course's four shipped MNIST models (``docs/experiments.md#reference-pgd-at-recipe``) at ``eps``."""
    common = {"lr": 1e-3, "optimizer": "adam", "weight_decay": 0.0, "batch_size": 100, "schedule": None,
              "eps": eps, "alpha": pgd_step(eps, 10), "steps": 10, "seed": 0, "precision": "fp32", "compile": False,
              "max_batches": None}
    robust = {**common, "epochs": 40, "eps_warmup_epochs": 16.0}
    return {
        "standard": {"recipe": "standard", **common, "epochs": 10, "eps_warmup_epochs": 0},
        "pgd_at": {"recipe": "pgd_at", **robust},
        "trades": {"recipe": "trades", **robust, "beta": 6.0},
        "sns": {"recipe": "sns", **robust, **_SNS, "layers": list(_SMALLCNN_LAYERS["sns_layers"])},
    }


def _cifar10_recipes(sns_layers: list[str], epochs: int = 30) -> dict[str, dict]:
    """The CIFAR-10 recipes (module docstring): SGD, step schedule, PGD-10 at 8/255, step 2/255."""
    common = {"lr": 0.1, "optimizer": "sgd", "weight_decay": 5e-4, "batch_size": 128, "schedule": "multistep",
              "eps": 8 / 255, "alpha": 2 / 255, "steps": 10, "seed": 0, "precision": "fp32", "compile": False,
              "max_batches": None, "epochs": epochs}
    robust = {**common, "eps_warmup_epochs": 0}
    return {
        "standard": {"recipe": "standard", **common, "eps_warmup_epochs": 0},
        "pgd_at": {"recipe": "pgd_at", **robust},
        "trades": {"recipe": "trades", **robust, "beta": 6.0},
        "sns": {"recipe": "sns", **robust, **_SNS, "layers": list(sns_layers)},
    }


_RESNET_SNS = ["layer3", "layer4"]
_VGG_SNS = ["relu4_3", "relu5_3"]


def _mnist_sweep(eps: float) -> dict:
    """E7's sweep budget on MNIST (``nslib.sweep``): 2,000 training images, 10 epochs, eps ramped over 4."""
    return {"train_n": 2000, "epochs": 10, "eps": eps, "steps": 10, "eps_warmup_epochs": 4,
            "lr": 1e-3, "batch_size": 100, "seed": 0, "test_n": 500}


def _smallcnn_setting(name: str, dataset: str, prefix: str, **extra) -> Setting:
    """The small CNN on an MNIST-family ``dataset``: the MNIST recipes, layers and sweep budget
    at the data set's usual eps (``nslib.data.DatasetInfo.eps``)."""
    eps = dataset_info(dataset).eps
    return Setting(name, dataset, "smallcnn", eps, _mnist_recipes(eps), **_SMALLCNN_LAYERS, prefix=prefix,
                   sweep=_mnist_sweep(eps), **extra)


#: E7's sweep budget on CIFAR-10: 10,000 training images, 10 epochs of the CIFAR-10 recipe.
_CIFAR10_SWEEP = {"train_n": 10000, "epochs": 10, "eps": 8 / 255, "alpha": 2 / 255, "steps": 10,
                  "eps_warmup_epochs": 0, "lr": 0.1, "optimizer": "sgd", "weight_decay": 5e-4,
                  "schedule": "multistep", "batch_size": 128, "seed": 0, "test_n": 1000}

#: Every setting by name.
REGISTRY: dict[str, Setting] = {s.name: s for s in (
    _smallcnn_setting("mnist-smallcnn", "mnist5k", "mnist", shipped=True),
    _smallcnn_setting("fashion-mnist-smallcnn", "fashion-mnist", "fashion_mnist"),
    Setting("cifar10-resnet18", "cifar10", "resnet18", 8 / 255, _cifar10_recipes(_RESNET_SNS),
            layers=("conv1", "layer1", "layer2", "layer3", "layer4", "fc"), sns_layers=tuple(_RESNET_SNS),
            ablation_layers=("layer4",), feature_layer="layer2",
            distribution_layers=("layer1", "layer2", "layer3", "layer4"), prefix="cifar10_resnet18",
            sweep=_CIFAR10_SWEEP, augment=True),
    Setting("cifar10-vgg16", "cifar10", "vgg16", 8 / 255, _cifar10_recipes(_VGG_SNS),
            layers=("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3", "fc"), sns_layers=tuple(_VGG_SNS),
            ablation_layers=("relu5_3",), feature_layer="relu2_2",
            distribution_layers=("relu2_2", "relu3_3", "relu4_3", "relu5_3"), prefix="cifar10_vgg16",
            sweep=_CIFAR10_SWEEP, augment=True),
)}
#: The course's setting: the shipped MNIST models.
DEFAULT = REGISTRY["mnist-smallcnn"]


def get(name: str) -> Setting:
    """The setting called ``name``; ``ValueError`` naming the valid ones otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"unknown setting {name!r}; choose one of {list(REGISTRY)}.")
    return REGISTRY[name]
