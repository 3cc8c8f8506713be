"""Student and instructor editions of the notebooks.

The notebooks in ``notebooks/`` are the instructor edition: each exercise's solution sits
between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` lines (as in nbgrader). The student
edition replaces each such block with ``raise NotImplementedError(...)`` at the same
indentation and clears every output::

    python -m nslib student            # writes student/*.ipynb

``tests/test_exercises.py`` checks the student edition is current, and that each
checker prints ``[FAIL]`` on the stub and ``[PASS]`` on the solution.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat

__all__ = ["BEGIN", "END", "strip_solutions", "student_notebook", "write_student_edition", "clean_notebook"]

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
STUB = 'raise NotImplementedError("Exercise: replace this line with your code.")'
ROOT = Path(__file__).resolve().parent.parent


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


def clean_notebook(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop machine-specific noise in place: execution timestamps and saved widget state.

    Run after executing a notebook (``python -m nslib clean-notebooks``) so diffs stay small.
    """
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
    return notebook


def clean_notebooks(src: str | Path = ROOT / "notebooks") -> list[Path]:
    """:func:`clean_notebook` on every ``src/*.ipynb``, rewriting only those that change."""
    changed = []
    for path in sorted(Path(src).glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        before = nbformat.writes(notebook)
        if nbformat.writes(clean_notebook(notebook)) != before:
            nbformat.write(notebook, path)
            changed.append(path)
    return changed


def student_notebook(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``notebook`` with solutions stubbed out and all outputs cleared."""
    student = clean_notebook(nbformat.from_dict(notebook))
    for cell in student.cells:
        if cell.cell_type != "code":
            continue
        cell.source = strip_solutions(cell.source)
        cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)
    return student


def write_student_edition(src: str | Path = ROOT / "notebooks", dst: str | Path = ROOT / "student") -> list[Path]:
    """Write the student edition of every ``src/*.ipynb`` into ``dst``; returns the files."""
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(src.glob("[0-9][0-9]_*.ipynb")):
        notebook = student_notebook(nbformat.read(path, as_version=4))
        target = dst / path.name
        nbformat.write(notebook, target)
        written.append(target)
    return written


def exercise_cells(notebook: nbformat.NotebookNode) -> list[int]:
    """Indices of the code cells that hold a solution block."""
    return [i for i, cell in enumerate(notebook.cells)
            if cell.cell_type == "code" and re.search(rf"^\s*{BEGIN}\s*$", cell.source, re.M)]
