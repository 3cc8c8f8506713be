"""The autograded test cell of an exercise: :func:`grade` runs a fresh copy of the exercise's
checker on the student's function and prints one line; under nbgrader it also prints the
``[FAIL]`` lines and shows the points (nbgrader's partial credit: a test cell whose result is a
number scores that many points).

A fresh copy: every ``nslib`` module the check uses (the checker, the reference implementations it
compares with, the models it builds) is imported anew from the installed files for the check, and
the kernel's own modules are put back afterwards. Whatever a notebook rebinds in the kernel
(``exercises.check_pgd = ...``, ``nslib.attacks.pgd = ...``) is not what grades it. What a student
could still tamper with in the same process (Python's import machinery, torch itself, IPython's
display) is what :mod:`nslib.classroom`'s audit of the submitted notebook looks for.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import sys
from typing import Callable

__all__ = ["grade"]


def grade(check: str, fn: Callable | None, points: float, name: str = "your function") -> float | None:
    """Grade ``fn`` with a fresh copy of ``nslib.exercises.<check>``, out of ``points``.

    Prints one line (passed, or how many checks pass and that the notebook goes on without it).
    Under nbgrader (``NBGRADER_EXECUTION``: autograde, validate) the ``[FAIL]`` lines are printed
    too and the points earned are returned (the test cell shows them; nbgrader reads them).

    Example:
        >>> grade("check_pgd", globals().get("my_pgd"), 4, "my_pgd")  # doctest: +SKIP
        my_pgd passes all 10 checks (4 of 4 points).
    """
    from .checking import _passing, grader_run

    if fn is None:
        print(f"{name} is not defined: run its exercise cell above (the notebook goes on without it); 0 of "
              f"{points:g} points.")
        return 0.0 if grader_run() else None
    printed = io.StringIO()
    with _fresh_nslib() as fresh, contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
        result = getattr(importlib.import_module(f"{fresh}.exercises"), check).graded(fn)
    (_passing.add if result else _passing.discard)(fn)
    earned = round(points * result.score, 2)
    if grader_run():
        print("\n".join(line for line in printed.getvalue().splitlines() if line.startswith("[FAIL]")))
    print(_summary(name, result, earned, points))
    return earned if grader_run() else None


def _summary(name: str, result, earned: float, points: float) -> str:
    if result:
        return f"{name} passes all {result.passed} checks ({earned:g} of {points:g} points)."
    if result.shortcut:
        return (f"{name} calls {result.shortcut}, which this exercise asks you to write yourself: 0 of {points:g} "
                "points (the notebook goes on without it).")
    if result.stub:
        return (f"{name} is not written yet (it raises NotImplementedError): 0 of {points:g} points; the notebook "
                "goes on without it.")
    return (f"{name} does not pass yet: {result.passed} of {result.checks} checks pass ({earned:g} of {points:g} "
            "points, see the [FAIL] lines); the notebook goes on without it.")


@contextlib.contextmanager
def _fresh_nslib():
    """Within the block, ``sys.modules`` holds a fresh import of ``nslib`` (name: yielded); the kernel's
    own ``nslib`` modules, whatever was done to them, are back in place afterwards."""
    kernel = {key: module for key, module in sys.modules.items() if key == "nslib" or key.startswith("nslib.")}
    for key in kernel:
        del sys.modules[key]
    try:
        importlib.import_module("nslib")
        yield "nslib"
    finally:
        for key in [key for key in sys.modules if key == "nslib" or key.startswith("nslib.")]:
            del sys.modules[key]
        sys.modules.update(kernel)
