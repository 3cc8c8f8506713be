"""What a JupyterHub gets (docs/instructor.md section 6, `make hub`): the wheel and the student
edition. The student edition holds no line of any ``BEGIN SOLUTION`` block of notebooks/ and no
instructor answer; the wheel carries no notebook, no docs and no instructor guide, no instructor
answer anywhere, and no solution outside nslib's own modules; nslib's docstrings name the lessons,
not the instructor notebooks.

By design the wheel does hold the library the course teaches, and some exercises rebuild one of its
functions (``nslib.training.ramp`` is the eps warm-up of notebook 04): a student may read it, and
an answer that calls it fails its checker (tests/test_exercises.py)."""
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from nslib import editions

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _solutions_and_answers() -> tuple[list[str], list[str]]:
    """Each solution block's distinctive lines (not just a common call such as ``return x``), and
    each instructor answer's sentences."""
    solutions, answers = [], []
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code" and editions.BEGIN in cell.source:
                block = cell.source.split(editions.BEGIN)[1].split(editions.END)[0]
                solutions += [line.strip() for line in block.splitlines() if len(line.strip()) >= 30]
            if cell.cell_type == "markdown" and cell.source.startswith(editions.ANSWER):
                text = " ".join(cell.source.removeprefix(editions.ANSWER).split())
                answers += [s.strip() for s in re.split(r"(?<=[.:;])\s", text) if len(s.strip()) >= 40]
    return solutions, answers


def _secrets() -> list[str]:
    solutions, answers = _solutions_and_answers()
    return solutions + answers


def _leaks(text: str, secrets: list[str]) -> list[str]:
    flat = " ".join(text.split())
    return [s for s in secrets if " ".join(s.split()) in flat]


def test_the_solutions_are_what_this_test_looks_for():
    secrets = _secrets()
    assert len(secrets) > 40 and any("uniform_(-eps, eps)" in s for s in secrets)
    notebook = "\n".join(c.source for c in nbformat.read(NOTEBOOKS[1], as_version=4).cells)
    assert _leaks(notebook, secrets), "the instructor edition itself must show as leaking"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_student_edition_holds_no_solution_text(path):
    student = nbformat.read(ROOT / "student" / path.name, as_version=4)
    text = "\n".join(c.source for c in student.cells) + "\n".join(
        str(o) for c in student.cells if c.cell_type == "code" for o in c.outputs)
    assert _leaks(text, _secrets()) == []


def test_nslib_docstrings_point_to_lessons_not_to_the_instructor_notebooks():
    for path in (ROOT / "nslib").rglob("*.py"):
        if path.name in ("editions.py", "cli.py"):  # the tools that write the editions, from a clone
            continue
        assert "notebooks/" not in path.read_text(), f"{path.relative_to(ROOT)} names the instructor notebooks"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built as `make hub` builds it."""
    out = tmp_path_factory.mktemp("hub")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
                   check=True, capture_output=True, timeout=900)
    return next(out.glob("nslib_course-*.whl"))


@pytest.mark.slow
def test_the_wheel_holds_no_notebook_guide_or_solution(wheel):
    solutions, answers = _solutions_and_answers()
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "nslib/exercises/grading.py" in names and "nslib/_shipped/mnist5k.npz" in names
        assert not [n for n in names if n.endswith(".ipynb") or "instructor" in n
                    or n.startswith(("docs/", "notebooks/"))]
        texts = {n: archive.read(n).decode() for n in names
                 if n.endswith((".py", ".md", ".txt", ".json")) or "METADATA" in n}
    assert {n: found for n, text in texts.items() if (found := _leaks(text, answers))} == {}
    assert {n: found for n, text in texts.items() if not n.endswith(".py") and (found := _leaks(text, solutions))} == {}
    for name, text in texts.items():  # nslib's modules are the repository's, nothing added
        if name.startswith("nslib/") and name.endswith(".py"):
            assert text == (ROOT / name).read_text(), name
