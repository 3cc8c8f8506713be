"""Checkers for the notebooks' exercises: ``check_<what>(your_function)`` prints
``[PASS] <what>`` or ``[FAIL] <what>: <what is wrong>`` lines and returns a :class:`Checked`,
true when every check passed (so an nbgrader test cell can ``assert check_<what>(fn)``); a
notebook cell that ends with the call shows only the printed lines.

A checker never shows a traceback of its own: a function that still raises
``NotImplementedError`` (the exercise stub) is reported as ``[FAIL] ... not implemented yet``,
any other exception in your function as a ``[FAIL]`` naming the exception and the input that
raised it, with a hint. One module per notebook (``lesson01`` holds ``01_attacks``'s checkers;
``checking`` what they share). Every checker builds its own small inputs (and model), so an
exercise cell runs on its own after the notebook's setup cell; that is how
``tests/test_exercises.py`` runs each checker on the stub and on the solution.
"""
from .checking import Checked, ExerciseFailed, checker, require
from .lesson00 import check_normalize, check_neuron_count
from .lesson01 import check_fgsm, check_success_rate, check_pgd
from .lesson02 import check_sensitivity_from_activations, check_top_k_neurons, check_sensitivity_ratio
from .lesson03 import check_deactivation_hook, check_stabilised_success_rate, check_stabilising_hook
from .lesson04 import check_sns_penalty, check_trades_kl, check_eps_ramp, check_pgd_at_step, check_sns_step
from .lesson05 import check_relative_sensitivity, check_top_k_overlap

__all__ = ["Checked", "ExerciseFailed", "checker", "require", "check_normalize",
           "check_neuron_count", "check_fgsm", "check_success_rate", "check_pgd",
           "check_sensitivity_from_activations", "check_top_k_neurons", "check_sensitivity_ratio",
           "check_deactivation_hook", "check_stabilised_success_rate", "check_stabilising_hook",
           "check_sns_penalty", "check_trades_kl", "check_eps_ramp", "check_pgd_at_step",
           "check_sns_step", "check_relative_sensitivity", "check_top_k_overlap"]
