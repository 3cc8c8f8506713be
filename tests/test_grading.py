"""The classroom kit: the instructor notebooks carry nbgrader's metadata, nbgrader's
``generate_assignment`` makes our student edition, and ``autograde`` gives a correct
submission full points and the unchanged student version zero.

Runs nbgrader itself (a subprocess per command) on a temporary course directory with one
notebook, 00 (the quickest to execute; autograde executes it twice).
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from nslib import editions

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
GRADED = ROOT / "notebooks" / "00_setup_and_data.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_instructor_notebooks_carry_current_nbgrader_metadata(path):
    notebook = nbformat.read(path, as_version=4)
    expected = editions.add_grading(nbformat.from_dict(notebook), path.stem.split("_")[0])
    assert nbformat.writes(expected) == nbformat.writes(notebook), "run `python -m nslib clean-notebooks`"
    kinds = [c.metadata["nbgrader"] for c in notebook.cells if "nbgrader" in c.metadata]
    solutions = [m for m in kinds if m["solution"] and not m["grade"]]
    tests = [m for m in kinds if m["grade"] and not m["solution"]]
    assert len(solutions) == len(tests) == len(editions.exercise_cells(notebook)) >= 2
    assert all(m["locked"] and m["points"] == editions.POINTS for m in tests)
    assert len({m["grade_id"] for m in kinds}) == len(kinds), "grade ids must be unique"


def test_add_grading_rejects_an_exercise_without_its_checker_call():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        f"def f(x):\n    {editions.BEGIN}\n    return x\n    {editions.END}\nprint(f(1))")])
    with pytest.raises(ValueError, match=r"must end with its checker call .*print\(f\(1\)\)"):
        editions.add_grading(notebook, "99")


def _nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    # nbgrader runs `alembic` by name: put the environment's scripts first on PATH (make test
    # calls .venv/bin/python without activating the environment)
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    result = subprocess.run([sys.executable, "-m", "nbgrader", *args, "--force"], cwd=course,
                            capture_output=True, text=True, timeout=1800, env={**os.environ, "PATH": path})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_nbgrader_generates_our_student_edition_and_autogrades(tmp_path, monkeypatch):
    pytest.importorskip("nbgrader")
    from nbgrader.api import Gradebook

    monkeypatch.setenv("NSLIB_QUICK", "1")
    course = tmp_path / "course"
    (course / "source" / "lab").mkdir(parents=True)
    settings = "\n".join(f"c.{section}.{key} = {json.dumps(value)}"
                         for section, values in editions.NBGRADER_CONFIG.items() for key, value in values.items())
    (course / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.root = {str(course)!r}\n{settings}\n")
    shutil.copy(GRADED, course / "source" / "lab" / GRADED.name)

    _nbgrader(course, "generate_assignment", "lab")
    released = nbformat.read(course / "release" / "lab" / GRADED.name, as_version=4)
    ours = nbformat.read(ROOT / "student" / GRADED.name, as_version=4)
    # the same cells, but for nbval's marker lines, which nbgrader keeps and our edition drops
    assert [(c.cell_type, editions.drop_test_markers(c.source)) for c in released.cells] == \
        [(c.cell_type, c.source) for c in ours.cells]

    for student, notebook in (("solved", GRADED), ("untouched", course / "release" / "lab" / GRADED.name)):
        (course / "submitted" / student / "lab").mkdir(parents=True)
        shutil.copy(notebook, course / "submitted" / student / "lab" / GRADED.name)
        _nbgrader(course, "autograde", "lab", "--student", student)

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        assignment = gradebook.find_assignment("lab")
        notebook = nbformat.read(GRADED, as_version=4)
        tests = editions.POINTS * len(editions.exercise_cells(notebook))
        answers = editions.ANSWER_POINTS * sum(c.source.startswith(editions.ANSWER) for c in notebook.cells)
        assert assignment.max_score == pytest.approx(tests + answers)
        solved = gradebook.find_submission("lab", "solved")
        untouched = gradebook.find_submission("lab", "untouched")
        # autograde scores the test cells; the open questions wait for a person (formgrader)
        assert solved.score == pytest.approx(tests) and solved.needs_manual_grade
        assert untouched.score == 0
