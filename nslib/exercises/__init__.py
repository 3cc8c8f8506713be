"""Checkers for the notebooks' exercises: ``check_<what>(your_function)`` prints
``[PASS] <what>`` or ``[FAIL] <what>: <what is wrong>`` lines and returns a :class:`Checked`,
true when every check passed; a notebook cell that ends with the call shows only the printed lines.

A checker never shows a traceback of its own: a function that still raises
``NotImplementedError`` (the exercise stub) is reported as ``[FAIL] ... not implemented yet``,
any other exception in your function as a ``[FAIL]`` naming the exception, the line of your code
that raised it and the inputs, with a hint. It gives your code :data:`BUDGET_S` seconds, and an
answer that calls the nslib implementation the exercise asks you to write fails. One module per
notebook (``lesson01`` holds ``01_attacks``'s checkers; ``checking`` what they share); the test
cell after each exercise grades it with :func:`nslib.exercises.grading.grade`. Every checker builds
its own small inputs (and model), so an exercise cell runs on its own after the notebook's setup
cell; that is how ``tests/test_exercises.py`` runs each checker on the stub and on the solution.
"""
from .checking import BUDGET_S, Checked, checker, grader_run, yours_or
from .lesson00 import check_normalize, check_neuron_count
from .lesson01 import check_fgsm, check_success_rate, check_pgd
from .lesson02 import check_sensitivity_from_activations, check_top_k_neurons, check_sensitivity_ratio
from .lesson03 import check_deactivation_hook, check_stabilised_success_rate, check_stabilising_hook
from .lesson04 import check_sns_penalty, check_trades_kl, check_eps_ramp, check_pgd_at_step, check_sns_step
from .lesson05 import check_relative_sensitivity, check_top_k_overlap

__all__ = ["BUDGET_S", "Checked", "checker", "grader_run", "yours_or", "check_normalize",
           "check_neuron_count", "check_fgsm", "check_success_rate", "check_pgd",
           "check_sensitivity_from_activations", "check_top_k_neurons", "check_sensitivity_ratio",
           "check_deactivation_hook", "check_stabilised_success_rate", "check_stabilising_hook",
           "check_sns_penalty", "check_trades_kl", "check_eps_ramp", "check_pgd_at_step",
           "check_sns_step", "check_relative_sensitivity", "check_top_k_overlap"]
