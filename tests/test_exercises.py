"""Exercises: the student edition is current; each checker fails the stub, passes the solution.

Each exercise cell runs on its own after the notebook's setup cell (its first code cell),
because the checkers in ``nslib.exercises`` build their own inputs.
"""
import contextlib
import io
from pathlib import Path

import nbformat
import pytest

from nslib import editions

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_strip_solutions_keeps_indentation_and_rejects_unbalanced_markers():
    src = "def f(x):\n    # BEGIN SOLUTION\n    return x + 1\n    # END SOLUTION\n\ncheck(f)"
    assert editions.strip_solutions(src) == f"def f(x):\n    {editions.STUB}\n\ncheck(f)"
    with pytest.raises(ValueError, match="without"):
        editions.strip_solutions("# BEGIN SOLUTION\nx = 1")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_edition_is_current(path):
    student_path = ROOT / "student" / path.name
    assert student_path.exists(), "run `python -m nslib student` to write the student edition"
    expected = editions.student_notebook(nbformat.read(path, as_version=4))
    actual = nbformat.read(student_path, as_version=4)
    assert [c.source for c in actual.cells] == [c.source for c in expected.cells], (
        "student edition is stale: run `python -m nslib student`")
    assert all(not c.get("outputs") for c in actual.cells if c.cell_type == "code")


def _run(cells, namespace):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for source in cells:
            exec(compile(source, "<cell>", "exec"), namespace)
    return out.getvalue()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_checkers_fail_the_stub_and_pass_the_solution(path, monkeypatch):
    monkeypatch.setenv("NSLIB_QUICK", "1")
    notebook = nbformat.read(path, as_version=4)
    indices = editions.exercise_cells(notebook)
    assert len(indices) >= 2, f"{path.name} should have at least two exercises"
    setup = next(c.source for c in notebook.cells if c.cell_type == "code")
    for i in indices:
        solution = notebook.cells[i].source
        stub = editions.strip_solutions(solution)
        solved = _run([setup, solution], {"__name__": "__main__"})
        assert "[PASS]" in solved and "[FAIL]" not in solved, f"cell {i} solution:\n{solved}"
        unsolved = _run([setup, stub], {"__name__": "__main__"})
        assert "[FAIL]" in unsolved and "[PASS]" not in unsolved, f"cell {i} stub:\n{unsolved}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_carry_no_machine_noise(path):
    """No execution timestamps or widget state: run `python -m nslib clean-notebooks`."""
    notebook = nbformat.read(path, as_version=4)
    assert "widgets" not in notebook.metadata
    assert not any("execution" in c.metadata for c in notebook.cells)
