"""The instructor edition under nbval, run as a user runs it: copied into an empty folder outside the
checkout, against the installed wheel (tests/installed.py), in quick mode.

nbval re-executes each notebook in a fresh kernel and compares every cell's new outputs with the
stored ones, within the tolerance of tests/nbval_tolerance.py (copied beside the notebooks with the
root conftest.py that loads it). One test per notebook, each its own nbval run.
"""
import shutil
from pathlib import Path

import pytest

from installed import ROOT

pytestmark = pytest.mark.slow
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: nbval's limit per cell, seconds: a hung cell fails instead of holding CI.
CELL_TIMEOUT = 600


def course_folder(folder: Path, edition: str = "notebooks") -> Path:
    """``folder/<edition>`` with the edition's notebooks, and nbval's plugin and sanitizer beside them."""
    shutil.copytree(ROOT / edition, folder / edition, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "runs"))
    (folder / "tests").mkdir(exist_ok=True)
    shutil.copy(ROOT / "conftest.py", folder / "conftest.py")
    shutil.copy(ROOT / "tests" / "nbval_tolerance.py", folder / "tests" / "nbval_tolerance.py")
    shutil.copy(ROOT / ".nbval-sanitize.cfg", folder / ".nbval-sanitize.cfg")
    return folder / edition


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_instructor_notebook_passes_nbval_against_the_installed_wheel(path, installed_course, notebook_runs, tmp_path):
    edition = course_folder(tmp_path)
    before = installed_course.snapshot()
    result = installed_course.run(
        ["-m", "pytest", f"{edition.name}/{path.name}", "--nbval", "--nbval-current-env",
         "--nbval-sanitize-with", ".nbval-sanitize.cfg", f"--nbval-cell-timeout={CELL_TIMEOUT}",
         "-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path)],
        cwd=tmp_path, NSLIB_QUICK="1", NSLIB_RUNS=str(notebook_runs))
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert installed_course.snapshot() == before, "the notebook wrote into the installed package"
