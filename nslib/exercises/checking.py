"""What every checker shares: :class:`Checked`, the :func:`checker` decorator, the guards around
the student's code (a time budget, a tripwire on nslib's own implementations), the registry of
passing functions (:func:`yours_or`), and the helpers that print ``[PASS]``/``[FAIL]`` lines."""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import signal
import sys
import threading
import time
import traceback
import weakref
from pathlib import Path
from typing import Callable

import torch
from torch import nn

__all__ = ["Checked", "checker", "grader_run", "yours_or", "tiny_model", "BUDGET_S"]

#: Seconds of the student's own code one checker allows before it reports a [FAIL] (a loop that never ends).
BUDGET_S = 40
#: The values of ``NBGRADER_EXECUTION`` (set by nbgrader in the kernel) under which the test cells grade.
GRADER_RUNS = ("autograde", "validate")

#: The checker that is running: its [PASS]/[FAIL] outcomes, forbidden calls seen and deadline.
_state: dict | None = None
#: The functions whose last check passed (what :func:`yours_or` hands on).
_passing: weakref.WeakSet = weakref.WeakSet()


def grader_run() -> bool:
    """True inside nbgrader's ``autograde`` or ``validate`` (which set ``NBGRADER_EXECUTION``)."""
    return os.environ.get("NBGRADER_EXECUTION", "") in GRADER_RUNS


class Checked:
    """What a checker returns: true when all its checks passed; displays nothing in a notebook.

    Attributes:
        passed (int): checks passed.  failed (int): checks failed.  checks (int): checks of a
        correct answer.  shortcut (str | None): the nslib implementation the answer called where
        the exercise forbids it.  stub (bool): the function still raises NotImplementedError.
        score (float): the share of the points, in [0, 1]: ``passed / checks`` once one of the
        main checks (``core``) passed; 0 with a shortcut.
    """

    def __init__(self, outcomes: list[tuple[bool, bool]], checks: int = 0, shortcut: str | None = None,
                 stub: bool = False):
        self.passed, self.stub = sum(ok for ok, _ in outcomes), stub
        self.failed, self.checks, self.shortcut = len(outcomes) - self.passed, max(checks, len(outcomes)), shortcut
        core = any(ok and core for ok, core in outcomes)
        self.score = 0.0 if shortcut or not core else min(1.0, self.passed / self.checks)

    def __bool__(self) -> bool:
        return self.failed == 0 and self.passed > 0 and self.shortcut is None

    def __repr__(self) -> str:
        return f"Checked(passed={self.passed}, failed={self.failed}, checks={self.checks}, score={self.score:.2f})"

    def _ipython_display_(self) -> None:  # the [PASS]/[FAIL] lines are already printed
        pass


class _Stop(BaseException):
    """Ends a checker early (the student's code ran out of time); its [FAIL] line is printed."""


class _OutOfTime(BaseException):
    """Raised inside the student's code when the checker's time budget is spent."""


def checker(*, checks: int, forbid: tuple[str, ...] = (), allow: tuple[str, ...] = ()) -> Callable:
    """Make a checker of ``check``: collect its [PASS]/[FAIL] outcomes into a :class:`Checked`, turn an
    exception raised by the checker itself (a result it could not compare) into a ``[FAIL]`` line, give
    the student's code :data:`BUDGET_S` seconds, and fail (0 points) an answer that runs code of
    ``forbid`` (nslib modules, functions or classes by dotted name, e.g. ``"nslib.attacks"``).

    Args:
        checks: how many [PASS] lines a correct answer gets (the denominator of partial credit).
        forbid: the implementations the exercise asks the student to write instead of calling.
        allow: nslib tools the exercise's text suggests (its prose may name them; see the tests).

    Under nbgrader (:func:`grader_run`) the checker called in the exercise cell only says that the
    test cell grades; :func:`nslib.exercises.grading.grade` calls ``.graded`` instead.
    """
    def decorate(check: Callable) -> Callable:
        @functools.wraps(check)
        def graded(*args) -> Checked:
            return _run(check, checks, forbid, args)

        @functools.wraps(check)
        def run(*args) -> Checked:
            if grader_run():
                print("(graded by the test cell below)")
                return Checked([], checks)
            return graded(*args)

        run.graded, run.checks, run.forbid, run.allow = graded, checks, forbid, allow
        return run
    return decorate


def _run(check: Callable, checks: int, forbid: tuple[str, ...], args: tuple) -> Checked:
    global _state
    outer, _state = _state, {"outcomes": [], "forbidden": _resolve(forbid), "hits": [],
                             "deadline": time.monotonic() + BUDGET_S}
    try:
        check(*args)
    except _Stop:
        pass
    except Exception as error:  # noqa: BLE001 - shown to the student as a [FAIL] line
        _report(check.__name__.removeprefix("check_").replace("_", " "), False,
                f"your result could not be checked ({type(error).__name__}: {error}); "
                "compare its type and shape with what the exercise asks for")
    finally:
        state, _state = _state, outer
    shortcut = ", ".join(state["hits"]) or None
    if shortcut:
        _print_fail(check.__name__.removeprefix("check_").replace("_", " "),
                    f"your code calls {shortcut}, which this exercise asks you to write yourself: "
                    "no points until it works without it")
    result = Checked(state["outcomes"], checks, shortcut, state.get("stub", False))
    if len(args) == 1 and callable(args[0]):
        (_passing.add if result else _passing.discard)(args[0])
    return result


def yours_or(name: str, namespace: dict, fallback: Callable | None, fallback_name: str):
    """``(function, what it is)`` for a cell that uses an exercise's function ``name`` from the
    notebook's ``namespace`` (``globals()``): the student's while it passes its checker, else
    ``fallback``, with one printed line saying which the notebook uses.

    Example:
        >>> attack, source = yours_or("my_pgd", globals(), nslib_pgd, "nslib.attacks.PGD")  # doctest: +SKIP
        using nslib.attacks.PGD until your my_pgd passes its checks
    """
    fn = namespace.get(name)
    if fn is not None and fn in _passing:
        print(f"using your {name} (it passes its checks)")
        return fn, f"your {name}"
    print(f"using {fallback_name} until your {name} passes its checks")
    return fallback, fallback_name


def _report(name: str, ok: bool, detail: str = "", *, core: bool = True) -> bool:
    """Print a [PASS]/[FAIL] line and record it; ``core``: a check that a trivial answer (a no-op,
    a constant) cannot pass, one of which must pass before the others earn partial credit."""
    if ok:
        print(f"[PASS] {name}")
    else:
        _print_fail(name, detail)
    if _state is not None:
        _state["outcomes"].append((bool(ok), core))
    return ok


def _print_fail(name: str, detail: str) -> None:
    print(f"[FAIL] {name}: {detail}")


def _describe(value) -> str:
    """A short description of one input of a failing call: a tensor's shape and dtype, else its repr."""
    if isinstance(value, torch.Tensor):
        if value.numel() <= 8:
            return f"tensor({[round(v, 4) for v in value.flatten().tolist()]}, shape {tuple(value.shape)})"
        return f"tensor of shape {tuple(value.shape)} ({str(value.dtype).removeprefix('torch.')})"
    if isinstance(value, nn.Module):
        return f"a {type(value).__name__} model"
    return f"{value!r:.60}"


def _call(name: str, fn: Callable, *args):
    """Call the student's function (guarded by :func:`student_code`): ``(True, result)``, or
    ``(False, None)`` after a [FAIL] line for a stub (``NotImplementedError``) or any exception."""
    try:
        with student_code(name):
            return True, fn(*args)
    except NotImplementedError:
        _report(name, False, "not implemented yet (the function still raises NotImplementedError)")
        if _state is not None:
            _state["stub"] = True
    except Exception as error:  # noqa: BLE001 - the student's error, shown as a [FAIL] line
        inputs = ", ".join(_describe(a) for a in args)
        _report(name, False, f"your function raised {type(error).__name__}: {error} {_where(error)}| called with "
                f"({inputs}) | hint: call it yourself on inputs like these")
    return False, None


def _where(error: BaseException) -> str:
    """``at `<line>` (line N of your cell) `` for the innermost frame of the student's code, if any."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not _is_library(f.filename)]
    if not frames or not frames[-1].line:
        return ""
    return f"at `{frames[-1].line.strip()}` (line {frames[-1].lineno} of {frames[-1].name}) "


def _is_library(filename: str) -> bool:
    return filename.startswith((str(Path(__file__).resolve().parents[1]), str(Path(torch.__file__).parent)))


@contextlib.contextmanager
def student_code(name: str):
    """Run the student's code: stop it (a [FAIL] line, then :class:`_Stop`) when the checker's
    :data:`BUDGET_S` is spent, and note every call into the checker's forbidden implementations."""
    if _state is None:
        yield
        return
    left = _state["deadline"] - time.monotonic()
    with _time_limit(max(left, 0.01)), _tripwire(_state["forbidden"], _state["hits"]):
        try:
            yield
        except _OutOfTime:
            pass
        else:
            return
    _print_fail(name, f"your code was still running after {BUDGET_S} s in total, so the check stopped it: "
                "does a loop ever end (a `while` whose condition never changes, a step count that is never "
                "reached)? Try your function on a small input and count the steps it takes")
    _state["outcomes"].append((False, True))
    raise _Stop


def watched(fn: Callable) -> Callable:
    """``fn`` (a function the student's code returned, such as a hook) run as student code on every call."""
    if not callable(fn):
        return fn

    @functools.wraps(fn)
    def call(*args, **kwargs):
        with student_code(getattr(fn, "__name__", "your function")):
            return fn(*args, **kwargs)
    return call


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raise :class:`_OutOfTime` in the running code after ``seconds`` (main thread, POSIX; else no limit)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        signal.setitimer(signal.ITIMER_REAL, 1.0)  # again in a second, should the code swallow this one
        raise _OutOfTime

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _resolve(names: tuple[str, ...]) -> list[tuple[str, str | None, str]]:
    """``(file or folder, qualified name or None, dotted name)`` of each forbidden implementation."""
    out = []
    for name in names:
        spec = _find_spec(name)
        if spec is not None and spec.origin:  # a module or package: all of its code
            path = Path(spec.origin).resolve()
            out.append((str(path.parent) + os.sep if path.name == "__init__.py" else str(path), None, name))
            continue
        module, _, attr = name.rpartition(".")
        spec = _find_spec(module)
        if spec is not None and spec.origin:
            out.append((str(Path(spec.origin).resolve()), attr, name))
    return out


def _find_spec(name: str):
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


@contextlib.contextmanager
def _tripwire(forbidden: list[tuple[str, str | None, str]], hits: list[str]):
    """Note in ``hits`` the dotted name of each forbidden implementation whose code runs (sys.setprofile)."""
    if not forbidden:
        yield
        return
    seen: dict = {}

    def label(code) -> str | None:
        if code not in seen:
            path = code.co_filename
            qualname = getattr(code, "co_qualname", code.co_name)
            seen[code] = next((name for where, attr, name in forbidden if (
                path.startswith(where) if attr is None else
                path == where and (qualname == attr or qualname.startswith(attr + ".")))), None)
        return seen[code]

    def profile(frame, event, arg):
        if event == "call":
            name = label(frame.f_code)
            if name is not None and name not in hits:
                hits.append(name)

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield
    finally:
        sys.setprofile(previous)


def _close(name: str, got, expected: torch.Tensor, atol: float = 1e-6, *, inputs: str = "",
           hint: str = "") -> bool:
    """[PASS] when ``got`` equals ``expected`` within ``atol``; a [FAIL] shows both when they are
    small, the failing case's ``inputs`` and a ``hint``."""
    if not isinstance(got, torch.Tensor):
        return _report(name, False, f"expected a tensor, got {type(got).__name__}")
    if got.shape != expected.shape:
        return _report(name, False, f"expected shape {tuple(expected.shape)}, got {tuple(got.shape)}")
    err = (got.double() - expected.double()).abs().max().item()
    if expected.numel() <= 8:
        detail = f"expected {_describe(expected)}, got {_describe(got.detach())}"
    else:
        detail = f"values differ from the reference by up to {err:.3g} (allowed {atol:g})"
    return _report(name, err <= atol, detail + (f" | inputs: {inputs}" if inputs else "")
                   + (f" | hint: {hint}" if hint else ""))


def tiny_model(seed: int = 0) -> nn.Module:
    """An untrained ``smallcnn`` (MNIST-sized inputs) with weights from ``seed``, in eval mode."""
    from ..models import build

    torch.manual_seed(seed)
    return build("smallcnn").eval()
