"""What every checker shares: :class:`Checked`, the :func:`checker` decorator, :func:`require`
(an autograded test cell), and the helpers that print ``[PASS]``/``[FAIL]`` lines."""
from __future__ import annotations

import contextlib
import functools
import io
from typing import Callable

import torch
from torch import nn

__all__ = ["Checked", "ExerciseFailed", "checker", "require", "tiny_model"]

#: The [PASS]/[FAIL] outcomes of the checker that is running (``None`` outside a checker).
_outcomes: list[bool] | None = None


class Checked:
    """What a checker returns: true when all its checks passed; displays nothing in a notebook.

    Attributes:
        passed (int): checks passed.  failed (int): checks failed.
    """

    def __init__(self, outcomes: list[bool]):
        self.passed, self.failed = sum(outcomes), len(outcomes) - sum(outcomes)

    def __bool__(self) -> bool:
        return self.failed == 0 and self.passed > 0

    def __repr__(self) -> str:
        return f"Checked(passed={self.passed}, failed={self.failed})"

    def _ipython_display_(self) -> None:  # the [PASS]/[FAIL] lines are already printed
        pass


def checker(check: Callable) -> Callable:
    """Make ``check`` a checker: collect its [PASS]/[FAIL] outcomes into a :class:`Checked`, and
    turn an exception raised by the checker itself (the student's result was of a shape or type
    it could not compare) into a ``[FAIL]`` line instead of a traceback."""
    @functools.wraps(check)
    def run(*args, **kwargs) -> Checked:
        global _outcomes
        outer, _outcomes = _outcomes, []
        try:
            check(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - shown to the student as a [FAIL] line
            _report(check.__name__.removeprefix("check_").replace("_", " "), False,
                    f"your result could not be checked ({type(error).__name__}: {error}); "
                    "compare its type and shape with what the exercise asks for")
        finally:
            outcomes, _outcomes = _outcomes, outer
        return Checked(outcomes)
    return run


class ExerciseFailed(AssertionError):
    """Raised by :func:`require` when an exercise fails its checks; shown as its [FAIL] lines only."""

    def _render_traceback_(self) -> list[str]:  # IPython shows these lines instead of a traceback
        return str(self).splitlines()


def require(check: Callable, *args) -> None:
    """An autograded test cell (nbgrader): run ``check(*args)`` without printing; raise
    :class:`ExerciseFailed` with its ``[FAIL]`` lines unless every check passed.

    The exercise cell above already printed the same checks; this cell is what nbgrader
    grades (an error in a test cell scores zero), and it stays silent when all is well.

    Example:
        >>> require(check_success_rate, lambda clean, adv, labels: 0.0)  # doctest: +SKIP
        ExerciseFailed: [FAIL] success rate on [0, 1, 2, 3]: expected 0.6667, got 0.0000
    """
    printed = io.StringIO()  # stderr too: nbgrader scores a test cell that writes to stderr as failed
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
        result = check(*args)
    if not result:
        fails = [line for line in printed.getvalue().splitlines() if line.startswith("[FAIL]")]
        raise ExerciseFailed("\n".join(fails) or f"{getattr(check, '__name__', check)}: no check ran")


def _report(name: str, ok: bool, detail: str = "") -> bool:
    print(f"[PASS] {name}" if ok else f"[FAIL] {name}: {detail}")
    if _outcomes is not None:
        _outcomes.append(bool(ok))
    return ok


def _describe(value) -> str:
    """A short description of one input of a failing call: a tensor's shape and dtype, else its repr."""
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)} ({str(value.dtype).removeprefix('torch.')})"
    if isinstance(value, nn.Module):
        return f"a {type(value).__name__} model"
    return f"{value!r:.60}"


def _call(name: str, fn: Callable, *args):
    """Call the student's function: ``(True, result)``, or ``(False, None)`` after a [FAIL] line
    for a stub (``NotImplementedError``) or for any exception the function raised."""
    try:
        return True, fn(*args)
    except NotImplementedError:
        _report(name, False, "not implemented yet (the function still raises NotImplementedError)")
    except Exception as error:  # noqa: BLE001 - the student's error, shown as a [FAIL] line
        inputs = ", ".join(_describe(a) for a in args)
        _report(name, False, f"your function raised {type(error).__name__}: {error} | called with ({inputs}) | "
                "hint: call it yourself on inputs like these and read the line the error points to")
    return False, None


def _close(name: str, got, expected: torch.Tensor, atol: float = 1e-6) -> bool:
    if not isinstance(got, torch.Tensor):
        return _report(name, False, f"expected a tensor, got {type(got).__name__}")
    if got.shape != expected.shape:
        return _report(name, False, f"expected shape {tuple(expected.shape)}, got {tuple(got.shape)}")
    err = (got.double() - expected.double()).abs().max().item()
    return _report(name, err <= atol, f"values differ from the reference by up to {err:.3g} (allowed {atol:g})")


def tiny_model(seed: int = 0) -> nn.Module:
    """An untrained ``smallcnn`` (MNIST-sized inputs) with weights from ``seed``, in eval mode."""
    from ..models import build

    torch.manual_seed(seed)
    return build("smallcnn").eval()
