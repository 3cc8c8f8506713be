"""Student and instructor editions of the notebooks.

The notebooks in ``notebooks/`` are the instructor edition: each exercise's solution sits
between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` lines (as in nbgrader), and each open
question's answer is a markdown cell that starts with ``**Instructor answer.**``. The student
edition replaces each solution block with ``raise NotImplementedError(...)`` at the same
indentation, each answer cell with :data:`TEXT_STUB`, and clears every output::

    python -m nslib student            # writes student/*.ipynb

The instructor edition carries nbgrader's cell metadata (:func:`add_grading`, run by
``python -m nslib clean-notebooks``): exercise cells are solution cells, each is followed by
a locked autograded test cell (``grade(...)`` of :mod:`nslib.exercises.grading`, :data:`POINTS`
points, partial credit per check passed), and answer cells are manually graded. ``nbgrader
generate_assignment`` with :data:`NBGRADER_CONFIG` makes the same student edition; the rest of the
classroom kit (nbgrader's configuration, the audit of submissions) is :mod:`nslib.classroom`.

``tests/test_exercises.py`` checks the student edition is current, and that each
checker prints ``[FAIL]`` on the stub and ``[PASS]`` on the solution.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat

__all__ = ["BEGIN", "END", "strip_solutions", "student_notebook", "write_student_edition", "clean_notebook",
           "add_grading", "test_source", "POINTS", "NBGRADER_CONFIG"]

#: The lines around a solution in an exercise cell of the instructor edition (as in nbgrader).
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
STUB = 'raise NotImplementedError("Exercise: replace this line with your code.")'
#: An open question's instructor answer: a markdown cell starting with this.
ANSWER = "**Instructor answer.**"
TEXT_STUB = "**Your answer.** *Write what you did, what you saw, and what you conclude.*"
#: Points of each exercise's autograded test cell, by its size (a one-line function 1, PGD or an SNS
#: step 4); a submission earns the share of its checker's checks it passes (nslib.exercises.Checked.score).
POINTS = {"check_normalize": 1, "check_neuron_count": 1,
          "check_fgsm": 2, "check_pgd": 4, "check_success_rate": 1,
          "check_sensitivity_from_activations": 2, "check_top_k_neurons": 1, "check_sensitivity_ratio": 1,
          "check_deactivation_hook": 1, "check_stabilised_success_rate": 2, "check_stabilising_hook": 3,
          "check_pgd_at_step": 3, "check_trades_kl": 1, "check_sns_penalty": 2, "check_sns_step": 4,
          "check_eps_ramp": 1,
          "check_relative_sensitivity": 2, "check_top_k_overlap": 1}
#: Points of each open question (graded by hand).
ANSWER_POINTS = 2
#: The first words of an autograded test cell.
TEST_HEADER = "# Test (locked"
#: nbgrader settings that make its student version ours (same stubs); nslib.classroom writes the rest.
NBGRADER_CONFIG = {"ClearSolutions": {"code_stub": {"python": STUB}, "text_stub": TEXT_STUB}}
#: The kernel the notebooks run in, as ipykernel installs it: a notebook whose kernelspec
#: differs opens as modified in JupyterLab (and autosave rewrites it).
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
#: A tqdm progress bar's text (``attacks:  40%|####  | 2/5 [...]``): transient, never stored.
_PROGRESS_BAR = re.compile(r"\d+%\|.*\|\s*\d+/\d+")
_CHECK_CALL = re.compile(r"^exercises\.(check_\w+)\((.*)\)\s*$")
#: Where the editions live, relative to the repository root (the folder these tools run in).
INSTRUCTOR_DIR, STUDENT_DIR = Path("notebooks"), Path("student")


def strip_solutions(source: str) -> str:
    """Replace every ``BEGIN SOLUTION`` ... ``END SOLUTION`` block of a cell with a stub."""
    out, inside = [], False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"nested {BEGIN!r} in:\n{source}")
            inside = True
            out.append(line[: len(line) - len(line.lstrip())] + STUB)
        elif stripped == END:
            if not inside:
                raise ValueError(f"{END!r} without {BEGIN!r} in:\n{source}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN!r} without {END!r} in:\n{source}")
    return "\n".join(out)


def _nbgrader(grade_id: str, *, solution: bool = False, grade: bool = False, points: int = 0) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": not solution, "schema_version": 3,
            "solution": solution, "task": False}
    return {**meta, "points": points} if grade else meta


def _is_test_cell(cell) -> bool:
    """A test cell of :func:`add_grading`: its nbgrader id (whatever its header says) or its header."""
    grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
    return cell.cell_type == "code" and ("_test_" in grade_id or cell.source.startswith(TEST_HEADER))


def add_grading(notebook: nbformat.NotebookNode, stem: str) -> nbformat.NotebookNode:
    """Give ``notebook`` (in place) nbgrader's metadata and one autograded test cell per exercise.

    Every exercise cell (a solution block, ending with ``exercises.check_<what>(<args>)``)
    becomes a solution cell and is followed by the test cell :func:`test_source`, worth
    ``POINTS["check_<what>"]``; every ``**Instructor answer.**`` cell becomes a manually graded
    answer. Idempotent; other cells lose any nbgrader metadata.

    Raises:
        ValueError: an exercise cell does not end with its checker call.
    """
    cells = [c for c in notebook.cells if not _is_test_cell(c)]
    graded, answers = [], 0
    for cell in cells:
        cell.metadata.pop("nbgrader", None)
        graded.append(cell)
        if cell.cell_type == "markdown" and cell.source.startswith(ANSWER):
            answers += 1
            cell.metadata["nbgrader"] = _nbgrader(f"{stem}_answer{answers}", solution=True, grade=True,
                                                  points=ANSWER_POINTS)
        if not _is_exercise(cell):
            continue
        call = _CHECK_CALL.match(cell.source.rstrip().splitlines()[-1])
        if call is None:
            raise ValueError(f"{stem}: an exercise cell must end with its checker call "
                             f"`exercises.check_<what>(<your function>)`; this one ends with "
                             f"{cell.source.rstrip().splitlines()[-1]!r}")
        cell.metadata["nbgrader"] = _nbgrader(f"{stem}_{call.group(1)}", solution=True)
        test = nbformat.v4.new_code_cell(test_source(call.group(1), call.group(2)))
        test.metadata["nbgrader"] = _nbgrader(f"{stem}_test_{call.group(1)}", grade=True,
                                              points=POINTS[call.group(1)])
        test.metadata["editable"] = test.metadata["deletable"] = False
        old = next((c for c in notebook.cells if _is_test_cell(c)
                    and c.metadata.get("nbgrader", {}).get("grade_id") == test.metadata["nbgrader"]["grade_id"]), None)
        if old is not None:  # keep its id (and outputs), refresh its source and metadata
            old.source, old.metadata = test.source, test.metadata
            test = old
        graded.append(test)
    notebook.cells = graded
    return notebook


def test_source(check: str, args: str) -> str:
    """The autograded test cell of the exercise whose cell ends with ``exercises.<check>(<args>)``."""
    points = POINTS[check]
    fn, name = (f"globals().get({args!r})", args) if args.isidentifier() else (args, "your function")
    return (f"{TEST_HEADER}, {points} point{'s' * (points != 1)}): the checks above again, on a fresh copy of the "
            "checker; one line says how many pass.\n"
            "from nslib.exercises.grading import grade\n"
            f"grade({check!r}, {fn}, {points}, {name!r})")


def clean_notebook(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop machine-specific noise in place (execution timestamps, saved widget state, progress
    bars, which carry a random widget id and timings, and widget views that can no longer render)
    and set the installed kernel's :data:`KERNELSPEC`.

    Run after executing a notebook (``python -m nslib clean-notebooks``) so diffs stay small.
    """
    notebook.metadata.pop("widgets", None)
    notebook.metadata["kernelspec"] = dict(KERNELSPEC)
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not _is_progress_bar(o)]
            for output in cell.outputs:
                _drop_dead_widget_view(output)
    return notebook


def _drop_dead_widget_view(output) -> None:
    """A saved widget view whose state is gone renders empty: where the output also carries a
    picture (the sensitivity explorer's), keep the picture, so saved notebooks, nbconvert's HTML and
    the website show it."""
    data = output.get("data", {})
    if "application/vnd.jupyter.widget-view+json" in data and "image/png" in data:
        del data["application/vnd.jupyter.widget-view+json"]


def _is_progress_bar(output) -> bool:
    data = output.get("data", {})
    text = data.get("text/plain", "") if "application/vnd.jupyter.widget-view+json" in data else (
        output.get("text", "") if output.get("output_type") == "stream" and output.get("name") == "stderr" else "")
    return bool(_PROGRESS_BAR.search(text if isinstance(text, str) else "".join(text)))


def _stem(path: Path) -> str:
    return path.stem.split("_")[0]


def clean_notebooks(src: str | Path = INSTRUCTOR_DIR, url: str | None = None) -> list[Path]:
    """:func:`clean_notebook`, :func:`add_grading` and the launch cells (``nslib.launch``, for the
    repository ``url``) on every ``src/*.ipynb``, rewriting only those that change.

    Run from the repository root (``python -m nslib clean-notebooks``).
    """
    from .launch import set_launch_cells

    changed = []
    for path in sorted(_checkout_folder(src).glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        before = nbformat.writes(notebook)
        set_launch_cells(add_grading(clean_notebook(notebook), _stem(path)), f"{INSTRUCTOR_DIR.name}/{path.name}", url)
        if nbformat.writes(notebook) != before:
            nbformat.write(notebook, path)
            changed.append(path)
    return changed


def _checkout_folder(folder: str | Path) -> Path:
    """``folder`` of the course's repository; a clear error when it is not there (not run from the root)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder.resolve()}: run this from the root of a clone of the course's "
                                "repository (the notebooks are not part of the installed package).")
    return folder


def drop_test_markers(source: str) -> str:
    """``source`` without nbval's marker lines (``# NBVAL_IGNORE_OUTPUT`` ...): they mean nothing to a student.

    Example:
        >>> drop_test_markers("# NBVAL_IGNORE_OUTPUT\nx = 1")
        'x = 1'
    """
    return "\n".join(line for line in source.split("\n") if not line.startswith("# NBVAL_"))


def student_notebook(notebook: nbformat.NotebookNode, path: str | None = None,
                     url: str | None = None) -> nbformat.NotebookNode:
    """A copy of ``notebook`` with solutions stubbed out, instructor answers replaced by an
    answer stub, nbval's marker lines (``# NBVAL_...``) dropped and all outputs cleared. With
    ``path`` (``student/<name>.ipynb``), its launch links point at the student edition of ``url``."""
    from .launch import set_launch_cells

    student = clean_notebook(nbformat.from_dict(notebook))
    for cell in student.cells:
        if cell.cell_type == "markdown" and cell.source.startswith(ANSWER):
            cell.source = TEXT_STUB
        if cell.cell_type != "code":
            continue
        cell.source = drop_test_markers(strip_solutions(cell.source))
        cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)
    return set_launch_cells(student, path, url) if path else student


def write_student_edition(src: str | Path = INSTRUCTOR_DIR, dst: str | Path = STUDENT_DIR,
                          url: str | None = None) -> list[Path]:
    """Write the student edition of every ``src/*.ipynb`` into ``dst`` (launch links for ``url``); returns the files."""
    src, dst = _checkout_folder(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(src.glob("[0-9][0-9]_*.ipynb")):
        notebook = student_notebook(nbformat.read(path, as_version=4), f"{STUDENT_DIR.name}/{path.name}", url)
        target = dst / path.name
        nbformat.write(notebook, target)
        written.append(target)
    return written


def exercise_cells(notebook: nbformat.NotebookNode) -> list[int]:
    """Indices of the code cells that hold a solution block."""
    return [i for i, cell in enumerate(notebook.cells) if _is_exercise(cell)]


def _is_exercise(cell) -> bool:
    """A code cell holding a solution block (a ``# BEGIN SOLUTION`` line)."""
    return cell.cell_type == "code" and re.search(rf"^\s*{BEGIN}\s*$", cell.source, re.M) is not None
