"""Time nbgrader's autograde per submission of whole notebooks, as an instructor grading a class would.

For each notebook: a temporary course with the course's configuration (``nslib.classroom``), the
instructor notebook released, and submissions: ``correct`` (the instructor's solutions and an
answer), ``stub`` (the released notebook unchanged) and, with ``--runaway``, ``runaway`` (the
first exercise an endless loop). Prints the seconds ``nbgrader autograde`` takes for each (one
command per submission, as `nbgrader autograde ASSIGNMENT` runs them one after another) and the
points each earned.

    python bench/autograde.py 01_attacks 04_robust_training_and_sns
    python bench/autograde.py 04_robust_training_and_sns --plain-config    # nbgrader's stubs, 900 s per cell only

``--plain-config`` writes the configuration the guide wrote before issue 23 (no skipped cells, a
900 s timeout for every cell): with an older checkout on PYTHONPATH it times "before".
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent


def _config(course: Path, plain: bool) -> str:
    from nslib.editions import NBGRADER_CONFIG

    if not plain:
        from nslib.classroom import course_config
        return course_config(course, "nslib", course / "exchange")
    stubs = "\n".join(f"c.{s}.{k} = {json.dumps(v)}" for s, values in NBGRADER_CONFIG.items() for k, v in values.items()
                      if s == "ClearSolutions")
    return f"c = get_config()\nc.CourseDirectory.root = {str(course)!r}\n{stubs}\nc.Execute.timeout = 900\n"


def _submission(released: Path, solved: Path, kind: str) -> nbformat.NotebookNode:
    notebook = nbformat.read(released, as_version=4)
    if kind == "stub":
        return notebook
    solutions = nbformat.read(solved, as_version=4).cells
    ids = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in solutions}
    first = True
    for cell in notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("solution"):
            continue
        if cell.cell_type == "markdown":
            cell.source = "**Your answer.** What I did, saw and conclude."
        elif kind == "runaway" and first:
            lines = ids[meta["grade_id"]].source.splitlines()
            cell.source = "\n".join([lines[0], "    while True:", "        pass", *lines[1:]])
            first = False
        else:
            cell.source = ids[meta["grade_id"]].source
    return notebook


def time_notebook(stem: str, kinds: list[str], plain: bool) -> None:
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    with tempfile.TemporaryDirectory() as tmp:
        course = Path(tmp) / "course"
        (course / "source" / stem).mkdir(parents=True)
        (course / "nbgrader_config.py").write_text(_config(course, plain))
        shutil.copy(ROOT / "notebooks" / f"{stem}.ipynb", course / "source" / stem)
        subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", stem], cwd=course, env=env,
                       check=True, capture_output=True)
        released = course / "release" / stem / f"{stem}.ipynb"
        for kind in kinds:
            folder = course / "submitted" / kind / stem
            folder.mkdir(parents=True)
            nbformat.write(_submission(released, ROOT / "notebooks" / f"{stem}.ipynb", kind), folder / released.name)
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "nbgrader", "autograde", stem, "--student", kind], cwd=course,
                           env=env, check=True, capture_output=True)
            seconds = time.perf_counter() - start
            from nbgrader.api import Gradebook
            with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
                score = gradebook.find_submission(stem, kind).score
            print(f"{stem:28s} {kind:8s} {seconds:7.1f} s  score {score:g}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", help="notebook stems, e.g. 01_attacks")
    parser.add_argument("--plain-config", action="store_true", help="the configuration before issue 23")
    parser.add_argument("--runaway", action="store_true", help="also a submission whose first exercise never ends")
    args = parser.parse_args()
    for stem in args.notebooks:
        time_notebook(stem, ["correct", "stub"] + (["runaway"] if args.runaway else []), args.plain_config)


if __name__ == "__main__":
    main()
