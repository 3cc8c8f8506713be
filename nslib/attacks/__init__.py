"""Adversarial attacks in pixel space [0, 1]: FGSM, BIM, PGD (Linf/L2, CE/CW loss), MIM, C&W.

Each attack is a plain function ``attack(model, images, labels, **hyper)`` and a small
class holding the hyper-parameters, called as ``atk(images, labels)``:

    >>> atk = PGD(model, eps=0.3, alpha=0.01, steps=40)   # doctest: +SKIP
    >>> x_adv = atk(x, y)                                 # doctest: +SKIP

Grouped by distance measure: Linf — FGSM, BIM, PGD, MIM; L2 — PGD(norm="L2"), CW.
``ATTACKS`` maps a lower-case name to its class. Taught in lesson 01 (``01_attacks.ipynb``).
"""
from .base import Attack
from .bim import BIM, bim
from .cw import CW, cw
from .fgsm import FGSM, fgsm
from .mim import MIM, mim
from .pgd import PGD, pgd

__all__ = ["Attack", "FGSM", "BIM", "PGD", "MIM", "CW", "fgsm", "bim", "pgd", "mim", "cw", "ATTACKS"]

#: Attack classes by name, for attack specs such as ``{"attack": "pgd", "steps": 40}``.
ATTACKS: dict[str, type[Attack]] = {"fgsm": FGSM, "bim": BIM, "pgd": PGD, "mim": MIM, "cw": CW}
