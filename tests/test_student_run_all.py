"""A student's Run All reaches the end of every student notebook (issue 21), in a fresh kernel of the
installed wheel's environment (tests/installed.py), in an empty folder outside the checkout, and
without --allow-errors (the first error would stop the run and fail the test):

* with every exercise unfilled, as the student edition is: each test cell says in one line that its
  exercise does not pass yet, and the lesson goes on with nslib's implementation;
* with the first exercise filled wrongly, and the other exercises (their cells and test cells) and
  the cells tagged ``optional`` skipped: nothing later needs them.

Quick mode. The second run is the cheaper one (no optional cells).
"""
import os
import re
from pathlib import Path

import nbformat
import pytest

from nslib import editions
from nslib.classroom import SKIP_TAG

ROOT = Path(__file__).resolve().parent.parent
STUDENT = sorted((ROOT / "student").glob("[0-9][0-9]_*.ipynb"))


def _execute(notebook: nbformat.NotebookNode, tmp_path: Path, runs: Path, course) -> nbformat.NotebookNode:
    """``notebook`` run in ``tmp_path`` (an empty folder) by a kernel of the installed wheel's environment."""
    from nbclient import NotebookClient

    settings = {"NSLIB_QUICK": os.environ.get("NSLIB_QUICK", "1"),
                "NSLIB_RUNS": str(runs),  # notebook 05 trains: never into the checkout (conftest.notebook_runs)
                "JUPYTER_PATH": str(tmp_path / "jupyter")}
    kernel = course.kernel(tmp_path / "jupyter")
    notebook.cells.append(nbformat.v4.new_code_cell("import nslib\nprint(nslib.__file__)"))  # where nslib came from
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        NotebookClient(notebook, timeout=1800, kernel_name=kernel, allow_errors=False,
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        nbformat.write(notebook, tmp_path / "executed.ipynb")  # what the student saw, to look at after a failure
    origin = _text(notebook.cells.pop())
    assert origin.startswith(str(course.package)), f"the kernel imported nslib from {origin}, not the wheel"
    return notebook


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def _is_test(cell) -> bool:
    return cell.cell_type == "code" and cell.source.startswith(editions.TEST_HEADER)


def _assert_reached_the_end(notebook) -> None:
    code = [c for c in notebook.cells if c.cell_type == "code" and c.source.strip()]  # an empty cell never runs
    assert all(c.execution_count is not None for c in code), "a cell did not run"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]


def _stub_cells(notebook) -> list[int]:
    return [i for i, c in enumerate(notebook.cells) if c.cell_type == "code" and editions.STUB in c.source]


@pytest.mark.slow
@pytest.mark.parametrize("path", STUDENT, ids=lambda p: p.stem)
def test_run_all_reaches_the_end_with_the_exercises_unfilled(path, installed_course, notebook_runs, tmp_path):
    notebook = _execute(nbformat.read(path, as_version=4), tmp_path, notebook_runs, installed_course)
    _assert_reached_the_end(notebook)
    tests = [c for c in notebook.cells if _is_test(c)]
    assert tests and all(re.fullmatch(r"\w+ is not written yet \(.*\n", _text(c)) for c in tests), [
        _text(c) for c in tests]
    fallbacks = [line for c in notebook.cells if c.cell_type == "code" and not _is_test(c)
                 for line in _text(c).splitlines() if line.startswith("using ")]
    assert all("until your" in line for line in fallbacks), fallbacks


@pytest.mark.slow
@pytest.mark.parametrize("path", STUDENT, ids=lambda p: p.stem)
def test_run_all_reaches_the_end_with_one_exercise_wrong_and_the_rest_skipped(path, installed_course, notebook_runs,
                                                                              tmp_path):
    notebook = nbformat.read(path, as_version=4)
    first, *others = _stub_cells(notebook)
    notebook.cells[first].source = notebook.cells[first].source.replace(editions.STUB, "return None")
    skipped = {i for i in others} | {i + 1 for i in others if _is_test(notebook.cells[i + 1])}
    skipped |= {i for i, c in enumerate(notebook.cells) if SKIP_TAG in c.metadata.get("tags", [])}
    notebook.cells = [c for i, c in enumerate(notebook.cells) if i not in skipped]
    notebook = _execute(notebook, tmp_path, notebook_runs, installed_course)
    _assert_reached_the_end(notebook)
    wrong_test = next(c for c in notebook.cells if _is_test(c))
    assert "does not pass yet" in _text(wrong_test) and _text(wrong_test).count("\n") == 1, _text(wrong_test)
