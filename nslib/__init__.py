"""nslib: neuron sensitivity and Sensitive Neuron Stabilizing (SNS), a course library.

Reproduces Zhang et al., "Interpreting and Improving Adversarial Robustness of Deep Neural
Networks with Neuron Sensitivity", IEEE TIP 30 (2021), arXiv 1909.06978.

One module per concept::

    nslib.data          data sets by name (embedded "mnist5k", torchvision's full sets)
    nslib.models        build("smallcnn" | "vgg16" | "resnet18")
    nslib.checkpoints   save / load checkpoints, shipped models by name
    nslib.attacks       FGSM, BIM, PGD, MIM, CW: atk = PGD(model, eps=0.3); atk(x, y)
    nslib.hooks         layer outputs by dotted name
    nslib.sensitivity   neuron and layer sensitivity, sensitive neurons (top-k)
    nslib.ablation      stabilise / deactivate neurons, ablation sweeps
    nslib.recipes       the training losses: standard, PGD-AT, TRADES, SNS
    nslib.fusion        SNS's clean and adversarial passes as one batch (BatchNorm per half)
    nslib.trainconfig   TrainConfig: every setting of a training run, each default once
    nslib.training      the training loop (resumable)
    nslib.runstate      a run's last.pt, resume check and RNG state
    nslib.distributed   torchrun / DistributedDataParallel set-up
    nslib.precision     the precision switch: fp32 (reference), bf16 autocast + channels_last, compile
    nslib.settings      experimental settings as data: MNIST/smallcnn, CIFAR-10/ResNet-18, CIFAR-10/VGG-16
    nslib.evaluation    accuracy, robustness tables, gradient-masking checks
    nslib.plotting      the course's figures (E1-E7)
    nslib.widgets       an interactive sensitivity explorer
    nslib.experiments   one module per experiment E1-E7 (tables, figures, finding)
    nslib.reproduce     `python -m nslib reproduce`: runs, caches and reports the experiments
"""
import importlib

from . import attacks, checkpoints, data, hooks, models, sensitivity, utils
from .attacks import BIM, CW, FGSM, MIM, PGD
from .checkpoints import load_checkpoint, load_pretrained, save_checkpoint
from .data import load, make_loader
from .hooks import activations, capture
from .models import build
from .sensitivity import layer_sensitivity, neuron_sensitivity, sensitive_neurons
from .utils import seed_everything

#: The package's version (the distribution ``nslib-course``).
__version__ = "0.1.0"

_LAZY = ("ablation", "recipes", "fusion", "trainconfig", "training", "runstate", "distributed", "evaluation",
         "plotting", "widgets", "experiments", "reproduce", "editions", "exercises", "cli")

__all__ = [
    "attacks", "checkpoints", "data", "hooks", "models", "sensitivity", "utils", *_LAZY,
    "FGSM", "BIM", "PGD", "MIM", "CW",
    "load", "make_loader", "build", "save_checkpoint", "load_checkpoint", "load_pretrained",
    "capture", "activations", "neuron_sensitivity", "layer_sensitivity", "sensitive_neurons",
    "seed_everything", "__version__",
]


def __getattr__(name: str):
    """Import the heavier modules (matplotlib, ipywidgets, ...) on first use."""
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'nslib' has no attribute {name!r}")
