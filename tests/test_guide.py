"""The instructor guide works as written: the commands of docs/instructor.md section 2, taken from
the guide itself (its ```bash blocks marked ``<!-- guide-test: NAME -->``), run in order on notebook
00 in a temporary course, each in a shell whose PATH holds no environment (the block activates it),
the instructor and a student in separate homes. Between the blocks the test does what a person
would: a student fills in the notebook, another submits it unchanged, the instructor grades the
open answers (through nbgrader's gradebook, as the formgrader does).
"""
import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from nslib import editions

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "instructor.md"
ASSIGNMENT = "00_setup_and_data"
BLOCKS = ["settings", "course", "release", "student-fetch", "student-submit", "autograde", "feedback",
          "student-feedback"]


def _blocks() -> dict[str, str]:
    return dict(re.findall(r"<!-- guide-test: ([\w-]+) -->\n```bash\n(.*?)\n```", GUIDE.read_text(), re.S))


def test_the_guide_marks_its_commands_in_order():
    blocks = _blocks()
    assert list(blocks) == BLOCKS
    activates = [block.startswith('source "$VENV/bin/activate"') for name, block in blocks.items()
                 if name != "settings"]
    assert all(activates), "every block activates the course's environment first"


@pytest.mark.slow
def test_the_instructor_guide_works_as_written(tmp_path):
    pytest.importorskip("nbgrader")
    from nbgrader.api import Gradebook

    blocks = _blocks()
    settings = {"VENV": sys.prefix, "NSLIB": str(ROOT), "COURSE": str(tmp_path / "course"),
                "EXCHANGE": str(tmp_path / "exchange"), "ASSIGNMENT": ASSIGNMENT}
    assert set(re.findall(r"^export (\w+)=", blocks["settings"], re.M)) == set(settings)
    instructor, student = tmp_path / "instructor", tmp_path / "student"
    instructor.mkdir()
    student.mkdir()

    def run(name: str, home: Path, ok: bool = True) -> subprocess.CompletedProcess:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", **settings}
        env.update({k: v for k, v in os.environ.items() if k in ("NSLIB_DEVICE", "OMP_NUM_THREADS", "TMPDIR")})
        result = subprocess.run(["bash", "-e", "-c", blocks[name]], env=env, capture_output=True, text=True,
                                timeout=1800)
        assert (result.returncode == 0) == ok, f"{name}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result

    course = tmp_path / "course"
    run("course", instructor)
    run("release", instructor)
    released = nbformat.read(course / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    ours = nbformat.read(ROOT / "student" / f"{ASSIGNMENT}.ipynb", as_version=4)
    # the same cells as our student edition, but for nbval's marker lines, which nbgrader keeps
    assert [(c.cell_type, editions.drop_test_markers(c.source)) for c in released.cells] == \
        [(c.cell_type, c.source) for c in ours.cells]

    run("student-fetch", student)
    fetched = student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    solved = nbformat.read(ROOT / "notebooks" / f"{ASSIGNMENT}.ipynb", as_version=4)
    work = nbformat.read(fetched, as_version=4)
    for cell, solution in zip(work.cells, solved.cells):  # the student writes every exercise and answer
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = solution.source if cell.cell_type == "code" else "**Your answer.** The budget grows."
    nbformat.write(work, fetched)
    validated = run("student-submit", student)
    assert "Success! Your notebook passes all the tests." in validated.stdout, validated.stdout
    unchanged = course / "submitted" / "unchanged" / ASSIGNMENT
    unchanged.mkdir(parents=True)  # a second student submitted the released notebook as it is
    shutil.copy(course / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", unchanged)
    (unchanged / "timestamp.txt").write_text("2026-01-05 10:00:00.000000 UTC")  # as `submit` and `collect` write
    (unchanged / "submission_secret.txt").write_text("unchanged-secret")

    graded = run("autograde", instructor)
    me = next(p.name for p in (course / "submitted").iterdir() if p.name != "unchanged")
    assert f"pending: {me} {ASSIGNMENT}" in graded.stdout, graded.stdout
    tests = sum(editions.POINTS[c.metadata["nbgrader"]["grade_id"].split("_test_")[1]]
                for c in released.cells if "_test_" in c.metadata.get("nbgrader", {}).get("grade_id", ""))
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        assert gradebook.find_submission(ASSIGNMENT, me).score == pytest.approx(tests)  # the answer waits
        assert gradebook.find_submission(ASSIGNMENT, "unchanged").score == 0

    run("feedback", instructor, ok=False)  # an answer waits: no feedback yet
    assert not (course / "feedback").exists()
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:  # the formgrader's manual grade
        for notebook in gradebook.find_submission(ASSIGNMENT, me).notebooks:
            for grade in notebook.grades:
                if grade.needs_manual_grade:
                    grade.manual_score, grade.needs_manual_grade = 1.0, False
        gradebook.db.commit()
    run("feedback", instructor)
    html = (course / "feedback" / me / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "<math" in html and "pre-wrap" in html and "Score: " in html
    rows = {row["student_id"]: row for row in csv.DictReader((course / "grades.csv").open())}
    assert float(rows[me]["score"]) == pytest.approx(tests + 1) and rows[me]["needs_manual_grade"] == "no"
    assert float(rows["unchanged"]["score"]) == 0

    run("student-feedback", student)
    assert list((student / ASSIGNMENT / "feedback").glob(f"*/{ASSIGNMENT}.html"))
