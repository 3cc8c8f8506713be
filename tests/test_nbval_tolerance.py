"""The notebooks' stored outputs hold on any CPU within a stated tolerance (the root conftest.py), and a
doctored output still fails: a number off by more than its tolerance, a changed verdict, an error."""
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from nbval_tolerance import cell_tolerance, texts_match

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("stored, new", [
    ("sensitivity 5.358", "sensitivity 5.359"),        # a value on a rounding boundary
    ("inside the box: 39.0%", "inside the box: 38.9%"),
    ("1.25e-03 and 7", "1.26e-03 and 7"),
    ("difference -0.001", "difference +0.000"),
])
def test_last_place_drift_passes_by_default(stored, new):
    assert texts_match(stored, new)


@pytest.mark.parametrize("stored, new", [
    ("sensitivity 5.358", "sensitivity 5.360"),        # two units in the last place
    ("top neurons [3, 77]", "top neurons [3, 104]"),   # integers are exact by default
    ("SNS is more robust", "SNS is less robust"),      # a changed verdict
    ("accuracy 0.93", "accuracy 0.93 (masked?)"),      # an extra word
    ("clean 97.8", "clean 87.8"),
])
def test_anything_else_fails_by_default(stored, new):
    assert not texts_match(stored, new)


def test_a_stated_tolerance_widens_only_the_numbers():
    assert texts_match("PGD-AT 49.5 SNS 51.0", "PGD-AT 51.0 SNS 49.5", tolerance=1.5)
    assert not texts_match("PGD-AT 49.5 SNS 51.0", "PGD-AT 51.5 SNS 49.5", tolerance=1.5)
    assert not texts_match("PGD-AT 49.5: SNS wins", "PGD-AT 49.5: PGD-AT wins", tolerance=1.5)
    assert cell_tolerance("# NBVAL_TOLERANCE abs=1.5   (measured spread)\nprint(x)") == 1.5
    assert cell_tolerance("print(x)") is None
    with pytest.raises(ValueError, match="finite number"):
        cell_tolerance("# NBVAL_TOLERANCE abs=nan")


def _notebook(tmp_path, cells: list[tuple[str, list]]) -> Path:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for i, (source, outputs) in enumerate(cells, start=1):
        cell = nbformat.v4.new_code_cell(source, execution_count=i)
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text) for text in outputs]
        notebook.cells.append(cell)
    path = tmp_path / "doctored.ipynb"
    nbformat.write(notebook, path)
    _plugin_beside(tmp_path)
    return path


def _plugin_beside(folder: Path) -> None:
    """The repository's root conftest.py and the plugin it loads, copied beside a notebook under test."""
    (folder / "tests").mkdir(exist_ok=True)
    shutil.copy(ROOT / "conftest.py", folder / "conftest.py")
    shutil.copy(ROOT / "tests" / "nbval_tolerance.py", folder / "tests" / "nbval_tolerance.py")


def _nbval(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", str(path), "--nbval", "--nbval-current-env", "-q",
                           "-p", "no:cacheprovider", "--rootdir", str(path.parent)],
                          cwd=path.parent, capture_output=True, text=True, timeout=300)


def test_nbval_passes_drift_and_fails_doctored_outputs(tmp_path):
    """Real nbval runs on a notebook whose stored outputs were edited: drift within the tolerance
    passes; a number beyond it, a changed word and an error fail, each in its own cell."""
    path = _notebook(tmp_path, [
        ("print(f'{2/3:.3f}')", ["0.666\n"]),                                   # stored one place off: passes
        ("# NBVAL_TOLERANCE abs=1.5\nprint(f'{49.5 + 1.0:.1f}')", ["49.5\n"]),  # within the stated 1.5: passes
        ("print(f'{2/3:.3f}')", ["0.650\n"]),                                   # off by 0.017: fails
        ("print('SNS is more robust')", ["SNS is less robust\n"]),              # a changed verdict: fails
        ("# NBVAL_TOLERANCE abs=1.5\nprint(f'{49.5 + 2.0:.1f}')", ["49.5\n"]),  # beyond the stated 1.5: fails
        ("1 / 0", []),                                                          # an error: fails
    ])
    result = _nbval(path)
    summary = result.stdout.strip().splitlines()[-1]
    assert "4 failed, 2 passed" in summary, result.stdout[-3000:]
    failed = sorted(" ".join(line.split("::")[1].split()[:2]) for line in result.stdout.splitlines()
                    if line.startswith("FAILED"))
    assert failed == ["Cell 2", "Cell 3", "Cell 4", "Cell 5"], failed


@pytest.mark.slow
def test_a_doctored_number_in_a_course_notebook_fails(tmp_path):
    """The stored outputs of notebook 00 pass as they are; with one printed number changed beyond its
    last place, exactly that cell fails."""
    source = ROOT / "notebooks" / "00_setup_and_data.ipynb"
    notebook = nbformat.read(source, as_version=4)
    doctored = None
    for index, cell in enumerate(notebook.cells):
        if "NBVAL_IGNORE_OUTPUT" in cell.source or "NBVAL_SKIP" in cell.source:
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and any(ch.isdigit() for ch in output.get("text", "")):
                text = output["text"]
                digit = next(i for i, ch in enumerate(text) if ch.isdigit())
                output["text"] = text[:digit] + str((int(text[digit]) + 5) % 10) + text[digit + 1:]
                doctored = index
                break
        if doctored is not None:
            break
    assert doctored is not None, "notebook 00 prints no number to doctor"
    work = tmp_path / "nb"
    work.mkdir()
    nbformat.write(notebook, work / source.name)
    _plugin_beside(work)
    result = _nbval(work / source.name)
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    code_index = sum(c.cell_type == "code" for c in notebook.cells[:doctored])
    assert len(failed) == 1 and f"Cell {code_index}" in failed[0], result.stdout[-3000:]
