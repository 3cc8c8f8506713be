"""How far each notebook's printed numbers move on another CPU kernel path or thread count.

Executes the instructor notebooks (quick mode, no cache, a fresh runs folder) under the current
environment and compares every cell's text outputs with the stored ones, number by number, as
tests/nbval_tolerance.py does. Prints, per cell that differs, the largest difference of a number,
whether the words differ too, and whether the cell's tolerance covers it. Run it once per setting:

    ATEN_CPU_CAPABILITY=avx2 .venv/bin/python scripts/notebook_drift.py [notebooks/02_*.ipynb ...]

    DRIFT_SAVE=drift/avx2 ... (keep the executed notebooks)
    .venv/bin/python scripts/notebook_drift.py --against drift/avx2   (compare again, no execution)

Exit status 1 if a cell is outside its tolerance.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from nbval_tolerance import NUMBER, cell_tolerance, texts_match  # noqa: E402


def _texts(cell) -> list[str]:
    """A cell's text outputs as nbval compares them: each stream's chunks joined, then rich outputs."""
    streams: dict[str, str] = {}
    texts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            streams[output["name"]] = streams.get(output["name"], "") + output["text"]
        elif "data" in output:
            for mime in ("text/plain", "text/markdown"):
                if mime in output["data"]:
                    texts.append(output["data"][mime])
    return list(streams.values()) + texts


def _largest_difference(stored: str, new: str) -> float:
    pairs = zip(NUMBER.findall(stored), NUMBER.findall(new))
    return max((abs(float(a) - float(b)) for a, b in pairs), default=0.0)


def execute(path: Path) -> nbformat.NotebookNode:
    """``path`` executed afresh; kept in ``$DRIFT_SAVE`` (a folder) when that is set."""
    fresh = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as runs:
        os.environ.update(NSLIB_QUICK="1", NSLIB_CACHE="0", NSLIB_RUNS=runs)
        NotebookClient(fresh, timeout=900, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    if os.environ.get("DRIFT_SAVE"):
        Path(os.environ["DRIFT_SAVE"]).mkdir(parents=True, exist_ok=True)
        nbformat.write(fresh, Path(os.environ["DRIFT_SAVE"]) / path.name)
    return fresh


def compare(path: Path, fresh: nbformat.NotebookNode | None = None) -> bool:
    """Print the cells of ``path`` whose outputs differ from ``fresh`` (default: ``path`` executed now)."""
    stored = nbformat.read(path, as_version=4)
    fresh = fresh if fresh is not None else execute(path)
    ok, index = True, -1
    for cell, new in zip(stored.cells, fresh.cells):
        if cell.cell_type != "code":
            continue
        index += 1
        if "NBVAL_IGNORE_OUTPUT" in cell.source or "NBVAL_SKIP" in cell.source:
            continue
        tolerance = cell_tolerance(cell.source)
        for a, b in zip(_texts(cell), _texts(new)):
            if a == b:
                continue
            words = NUMBER.split(a) != NUMBER.split(b)
            passes = texts_match(a, b, tolerance)
            ok &= passes
            print(f"{path.stem} cell {index}: largest difference {_largest_difference(a, b):.4g}"
                  f"{', words differ' if words else ''}; tolerance {tolerance}; {'ok' if passes else 'FAILS'}")
            if not passes:
                for line_a, line_b in zip(a.splitlines(), b.splitlines()):
                    if line_a != line_b:
                        print(f"    stored: {line_a[:150]}\n    now:    {line_b[:150]}")
    return ok


if __name__ == "__main__":
    # --against FOLDER compares with notebooks executed earlier (saved there through DRIFT_SAVE)
    against = Path(sys.argv[2]) if sys.argv[1:2] == ["--against"] else None
    args = sys.argv[3:] if against else sys.argv[1:]
    paths = [Path(p) for p in args] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    results = [compare(p, nbformat.read(against / p.name, as_version=4) if against else None) for p in paths]
    sys.exit(0 if all(results) else 1)
