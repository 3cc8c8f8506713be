"""nbval's comparison of stored notebook outputs, made to hold on any CPU and thread count
(a pytest plugin, loaded by the repository's root ``conftest.py``).

Floating-point results drift in their last digits between machines (kernel paths, thread
counts), so an exact comparison passes only where the outputs were stored. Here a stored
output still has to match the new one word for word, with one exception: the numbers in it.

- By default a printed decimal may differ by one unit in its last printed place (5.358 vs
  5.359: a value that sits on a rounding boundary), and integers must be equal.
- A cell whose numbers depend on training may state a wider tolerance, measured from the
  spread across CPU kernels and thread counts, in a comment line::

      # NBVAL_TOLERANCE abs=1.5   (points of accuracy; see docs/instructor.md#...)

  which allows every number of that cell's outputs to differ by up to 1.5 (integers too).

Everything else is as strict as nbval: other words, a changed verdict, a missing output,
an error, a number off by more than its tolerance all fail. Student editions drop the marker
line with nbval's others (``nslib.editions.drop_test_markers``).
"""
from __future__ import annotations

import math
import re

#: A number as printed: sign, digits, an optional decimal part and exponent.
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
TOLERANCE_MARKER = re.compile(r"^\s*#\s*NBVAL_TOLERANCE\b(.*)$", re.M)


def cell_tolerance(source: str) -> float | None:
    """The ``abs=`` tolerance a cell states with ``# NBVAL_TOLERANCE abs=X``, or ``None``."""
    match = TOLERANCE_MARKER.search(source)
    if match is None:
        return None
    setting = re.match(r"\s+abs=(\S+)", match.group(1))
    try:
        value = float(setting.group(1)) if setting else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"a cell's marker {match.group(0).strip()!r} must read `# NBVAL_TOLERANCE abs=X` "
                         "with X a finite number >= 0")
    return value


def _last_place(token: str) -> float:
    """One unit in the last printed place of a decimal (``5.358`` -> 0.001); 0 for an integer."""
    mantissa, _, exponent = token.lower().partition("e")
    if "." not in mantissa:
        return 0.0
    decimals = len(mantissa.split(".")[1])
    return 10.0 ** (-decimals + (int(exponent) if exponent else 0))


def texts_match(stored: str, new: str, tolerance: float | None = None) -> bool:
    """Whether ``new`` equals ``stored`` but for numbers within the tolerance (see the module docstring)."""
    if stored == new:
        return True
    if NUMBER.split(stored) != NUMBER.split(new):  # the words between the numbers differ
        return False
    for a, b in zip(NUMBER.findall(stored), NUMBER.findall(new)):
        if a == b:
            continue
        allowed = max(_last_place(a), _last_place(b)) * 1.0000001  # ±1 in the last place, float-safe
        if tolerance is not None:
            allowed = max(allowed, tolerance + 1e-12)
        if abs(float(a) - float(b)) > allowed:
            return False
    return True


def _text(value) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "".join(value)
    return None


def reconcile(cell_item, new_outputs, stored_outputs) -> None:
    """Where a new text output matches its stored twin within the tolerance, give it the stored
    text, so that nbval's exact comparison that follows passes it; everything else is left to nbval."""
    tolerance = cell_tolerance(cell_item.cell.source)
    stored_by_kind: dict[tuple, list] = {}
    for output in stored_outputs:
        stored_by_kind.setdefault((output.get("output_type"), output.get("name")), []).append(output)
    for output in new_outputs:
        twins = stored_by_kind.get((output.get("output_type"), output.get("name")))
        if not twins:
            continue
        twin = twins.pop(0)
        if output.get("output_type") == "stream":
            _take_if_close(cell_item, output, twin, "text", tolerance)
        elif "data" in output and "data" in twin:
            for key in output["data"]:
                if key in twin["data"]:
                    _take_if_close(cell_item, output["data"], twin["data"], key, tolerance)


def _take_if_close(cell_item, new: dict, stored: dict, key: str, tolerance: float | None) -> None:
    new_text, stored_text = _text(new[key]), _text(stored[key])
    if new_text is None or stored_text is None:
        return
    if texts_match(cell_item.sanitize(stored_text), cell_item.sanitize(new_text), tolerance):
        new[key] = stored[key]


def pytest_configure(config):
    """Wrap nbval's ``compare_outputs`` (when nbval is in use) with :func:`reconcile`."""
    if not (getattr(config.option, "nbval", False) or getattr(config.option, "nbval_lax", False)):
        return
    from nbval.plugin import IPyNbCell

    if getattr(IPyNbCell.compare_outputs, "_nslib_tolerant", False):
        return
    exact = IPyNbCell.compare_outputs

    def compare_outputs(self, test, ref, skip_compare=None):
        reconcile(self, test, ref)
        return exact(self, test, ref, skip_compare)

    compare_outputs._nslib_tolerant = True
    IPyNbCell.compare_outputs = compare_outputs
