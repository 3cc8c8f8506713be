"""AutoAttack (Croce & Hein, ICML 2020) through the authors' own code, the PyPI package
``pyautoattack`` (https://github.com/fra31/auto-attack): the field's standard robust accuracy.

AutoAttack's *standard* version runs four parameter-free attacks in a cascade, each with
the settings RobustBench uses: APGD-CE (PGD with an adaptive step size on the
cross-entropy, 100 iterations), APGD-T (targeted APGD on the DLR loss, 9 target classes x
100 iterations), FAB-T (targeted minimum-norm attack, 9 target classes) and Square (a
black-box random search, 5,000 queries). Each attack runs on the examples that every
earlier one failed to break; an example is robust only if it survives all four.

``version="quick"`` is our cheaper subset for a CPU: APGD-CE + APGD-T on the 3 most likely
wrong classes (instead of 9), with the standard version's other settings. It is a lower
bound on strength (it can only report a higher accuracy than ``standard``), and it is
labelled as such wherever it is shown (:func:`describe_version`).

Gradient-masking signals read from the cascade (:func:`autoattack_robust` returns the
examples still robust after each component): the black-box Square breaking examples that
every white-box attack left standing means the gradients mislead (AutoAttack's own
``check_square_sr``); ``nslib.evaluation.flag_masking`` flags it.

Taught in lesson 04 (``04_robust_training_and_sns.ipynb``).
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch
from torch import nn

from .utils import check_eps, eval_mode, model_device

__all__ = ["VERSIONS", "NORMS", "BLACK_BOX", "PASSES", "autoattack_robust", "describe_version", "check_version",
           "gradient_passes"]

#: Our version names -> AutoAttack's attack names, in the order the cascade runs them.
VERSIONS = {
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "quick": ("apgd-ce", "apgd-t"),
}
#: Target classes of APGD-T (and FAB-T) per version: 9 is AutoAttack's standard setting.
TARGET_CLASSES = {"standard": 9, "quick": 3}
#: The threat models AutoAttack supports.
NORMS = ("Linf", "L2", "L1")
#: Components that use no gradient (the check that they do not beat the white-box ones).
BLACK_BOX = ("square",)
#: Gradient passes per image of each component, per target class for the targeted ones: the standard
#: version's 100 iterations; Square's 5,000 queries are forward passes, about a third of one each.
PASSES = {"apgd-ce": 100, "apgd-t": 100, "fab-t": 100, "square": 5000 // 3}


def gradient_passes(version: str, attacked: Sequence[float] | None = None) -> int:
    """About how many gradient passes per image AutoAttack ``version`` takes (a progress bar's weight).

    ``attacked`` (optional): the fraction of the images each component of the cascade ran on
    (each runs only on those the earlier ones left standing); default: all of them.

    Example:
        >>> gradient_passes("quick"), gradient_passes("quick", [1.0, 0.0])
        (400, 100)
    """
    check_version(version)
    attacked = [1.0] * len(VERSIONS[version]) if attacked is None else list(attacked)
    return round(sum(PASSES[name] * (TARGET_CLASSES[version] if name in ("apgd-t", "fab-t") else 1) * share
                     for name, share in zip(VERSIONS[version], attacked)))


def describe_version(version: str) -> str:
    """A label for tables and prose.

    Example:
        >>> describe_version("quick")
        'AutoAttack quick subset (APGD-CE + APGD-T, 3 target classes)'
        >>> describe_version("standard")
        'AutoAttack standard (APGD-CE + APGD-T + FAB-T + SQUARE)'
    """
    check_version(version)
    names = " + ".join(a.upper() for a in VERSIONS[version])
    if version == "quick":
        return f"AutoAttack quick subset ({names}, {TARGET_CLASSES[version]} target classes)"
    return f"AutoAttack {version} ({names})"


def check_version(version: str) -> None:
    """Raise a ValueError naming the valid versions when ``version`` is not one of them."""
    if version not in VERSIONS:
        raise ValueError(f"unknown AutoAttack version {version!r}; choose one of {list(VERSIONS)} "
                         "('quick' is our APGD-CE + APGD-T subset for CPUs).")


def _adversary(model: nn.Module, eps: float, norm: str, version: str, seed: int, device):
    """The authors' ``AutoAttack`` object with the standard version's settings (quick: fewer targets)."""
    from pyautoattack import AutoAttack

    adversary = AutoAttack(model, eps=eps, norm=norm, version="standard", seed=seed, device=device)
    adversary.verbose = False
    adversary.logger.setLevel(logging.ERROR)  # its progress lines; the masking check is ours
    adversary.apgd_targeted.n_target_classes = TARGET_CLASSES[version]
    adversary.fab.n_target_classes = TARGET_CLASSES[version]
    return adversary


def autoattack_robust(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, eps: float,
                      norm: str = "Linf", version: str = "standard", seed: int = 0,
                      batch_size: int = 500) -> dict[str, torch.Tensor]:
    """Per-example robustness of ``model`` after each stage of AutoAttack's cascade.

    Args:
        model (nn.Module): classifier on images in [0, 1] returning logits (at least 4
            classes for the quick version's 3 targets, 10 for the standard version's 9).
        images (Tensor): ``(N, C, H, W)`` in [0, 1]. labels (Tensor): ``(N,)`` true classes.
        eps (float): the budget (MNIST L-inf 0.3; CIFAR-10 8/255).
        norm (str, optional): ``"Linf"``, ``"L2"`` or ``"L1"``. Default: ``"Linf"``.
        version (str, optional): ``"standard"`` or ``"quick"`` (see ``VERSIONS``).
        seed (int, optional): AutoAttack's seed (its random starts and Square's search).
        batch_size (int, optional): images per attack call. Default: ``500``.

    Returns:
        dict[str, Tensor]: component name -> bool ``(N,)`` on the CPU, in cascade order:
        True where the clean image is classified correctly and no component up to and
        including this one found an adversarial example. The last entry is AutoAttack's
        robust accuracy per example.

    Example:
        >>> stages = autoattack_robust(model, x, y, eps=0.3, version="quick")  # doctest: +SKIP
        >>> stages["apgd-t"].float().mean()                                   # doctest: +SKIP
    """
    check_version(version)
    check_eps(eps)
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r} for AutoAttack; choose one of {list(NORMS)}.")
    device = model_device(model)
    x, y = images.to(device), labels.to(device)
    with eval_mode(model), torch.no_grad():
        robust = (model(x).argmax(1) == y).cpu()
    stages = {}
    with eval_mode(model):
        adversary = _adversary(model, eps, norm, version, seed, device)
        for attack in VERSIONS[version]:
            left = robust.nonzero().flatten()
            if len(left):  # the cascade: each attack runs on what the earlier ones left
                adversary.attacks_to_run = [attack]
                x_adv, _ = adversary.run_standard_evaluation(x[left.to(device)], y[left.to(device)],
                                                             batch_size=batch_size)
                with torch.no_grad():
                    still = (model(x_adv).argmax(1) == y[left.to(device)]).cpu()
                robust = robust.clone()
                robust[left] = still
            stages[attack] = robust
    return stages
