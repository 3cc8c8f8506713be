"""The newcomer test: a fresh clone, a fresh environment, the README's main command.

The other tests import nslib from the developer's environment, where an uncommitted file,
a package installed by hand or a stale ``.venv`` can hide a broken Makefile, a missing
dependency or a data file that was never committed. This test does what a newcomer does:
it clones the repository into a temporary folder, runs ``make reproduce`` there in a clean
environment (a new ``.venv`` built from the system Python, not nested in ours), and checks
that every figure and table promised by the README and ``results/REPORT.md`` appears; then
that a second ``make reproduce`` reuses the environment, skips every step and leaves the
tables byte-identical.

It tests the last commit (HEAD), not uncommitted changes. It takes a few minutes: installing
the environment (from pip's cache) and the quick reproduction on a laptop CPU.

In CI (``.ci/run`` sets ``NSLIB_FRESH_CHECKOUT=1``) the checkout itself is such a clone, whose
``.venv`` ``make`` has just built from nothing: there, when git shows no change, ``make reproduce``
runs in the checkout instead of a second clone with a second environment. Both runs keep E5's
attack tables in the session's ``NSLIB_RUNS`` cache, which tests/test_wheel.py's reproduction of
the same code then reads back.
"""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # `make test` runs it; `make test-fast` leaves it out
ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 1800  # seconds per `make reproduce`

# What nslib/reproduce.py writes into results/ (the README's "every figure and table of E1-E7").
TABLES = ["models.csv", "attacks.csv", "e1_layer_sensitivity.csv", "e2_neuron_sensitivity.csv", "e3_ablation.csv",
          "e4_sensitive_neurons.csv", "e5_robustness.csv", "e5_accuracy_vs_eps.csv",
          "e6_sensitivity_vs_robustness.csv", "e7_sns_knobs.csv"]
FIGURES = ["adversarial_examples.png", "e1_layer_sensitivity.png", "e2_sensitivity_distribution.png",
           "e3_ablation.png", "e4_feature_maps.png", "e5_accuracy_vs_eps.png",
           "e6_sensitivity_vs_robustness.png", "e7_sns_knobs.png"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _in_virtualenv(entry: str) -> bool:
    """Whether a PATH entry is (inside) a virtual environment: ours, or any with a pyvenv.cfg."""
    path = Path(entry).resolve()
    if sys.prefix != sys.base_prefix and path.is_relative_to(Path(sys.prefix).resolve()):
        return True
    return any((p / "pyvenv.cfg").exists() for p in (path, *path.parents))


def _base_python() -> str:
    """The interpreter our virtual environment was made from (the "system" Python)."""
    candidates = [getattr(sys, "_base_executable", ""), Path(sys.base_prefix) / "bin" / "python3"]
    for candidate in candidates:
        if candidate and Path(candidate).exists() and not _in_virtualenv(str(Path(candidate).parent)):
            return str(Path(candidate).resolve())
    pytest.skip(f"no base Python found (tried {candidates})")


def _clean_env() -> dict:
    """os.environ without our virtualenv, make's recursion flags or nslib's settings; pip's config kept."""
    drop = {"VIRTUAL_ENV", "MAKEFLAGS", "MAKELEVEL", "MFLAGS", "VENV", "PYTHONPATH", "PYTHONHOME"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("NSLIB_")}
    env["PATH"] = os.pathsep.join(e for e in env.get("PATH", "").split(os.pathsep) if e and not _in_virtualenv(e))
    env["PYTHON"] = _base_python()
    return env


def _make_reproduce(clone: Path, runs: Path) -> str:
    """Run `make reproduce` in ``clone`` (its attack tables cached in ``runs``); fail with the end of its
    output unless it exits 0."""
    run = subprocess.run(["make", "reproduce"], cwd=clone, env={**_clean_env(), "NSLIB_RUNS": str(runs)},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)
    assert run.returncode == 0, f"`make reproduce` exited {run.returncode} in a fresh clone:\n{run.stdout[-4000:]}"
    return run.stdout


def _is_fresh_ci_checkout() -> bool:
    """Whether CI says this checkout is a fresh clone with a fresh .venv, and git shows no change in it."""
    if os.environ.get("NSLIB_FRESH_CHECKOUT") != "1":
        return False
    status = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    return status.returncode == 0 and not status.stdout.strip() and not (ROOT / "results").exists()


@pytest.fixture(scope="module")
def clone(tmp_path_factory, notebook_runs):
    """A clone of HEAD in which `make reproduce` has run once; removed afterwards (its .venv is GBs).
    In CI, the checkout itself (see the module docstring)."""
    for tool in ("git", "make"):
        if shutil.which(tool) is None:
            pytest.skip(f"`{tool}` is not installed; the newcomer test needs git and make")
    if not (ROOT / ".git").exists():
        pytest.skip(f"{ROOT} is not a git checkout, so there is nothing to clone")
    if _is_fresh_ci_checkout():
        _make_reproduce(ROOT, notebook_runs)
        yield ROOT
        return
    folder = tmp_path_factory.mktemp("newcomer") / "nslib"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(folder)], check=True, timeout=300)
    _make_reproduce(folder, notebook_runs)
    yield folder
    shutil.rmtree(folder.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def clone_info(clone):
    """What the clone's own interpreter says: its prefix, where nslib comes from, the steps."""
    code = ("import json, sys, nslib; from nslib.reproduce import STEPS; print(json.dumps({'prefix': sys.prefix, "
            "'nslib': nslib.__file__, 'steps': {n: t for n, (_, t) in STEPS.items()}}))")
    python = clone / ".venv" / "bin" / "python"
    assert python.exists(), "`make reproduce` did not create .venv/bin/python in the clone"
    run = subprocess.run([str(python), "-c", code], cwd=clone, env=_clean_env(), capture_output=True, text=True,
                         check=True, timeout=300)
    return json.loads(run.stdout)


def test_fresh_environment_in_the_clone(clone, clone_info):
    assert Path(clone_info["prefix"]).resolve() == (clone / ".venv").resolve()
    assert Path(clone_info["nslib"]).resolve().is_relative_to(clone.resolve())  # the editable install


def test_every_figure_and_table_appears(clone):
    results = clone / "results"
    for name in FIGURES:
        assert (results / name).read_bytes().startswith(PNG_SIGNATURE), f"{name} is missing or not a PNG"
    for name in TABLES:
        with open(results / name, newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert rows and all(None not in row for row in rows), f"{name} has no rows or ragged rows"


def test_report_has_every_step_and_links_every_figure(clone, clone_info):
    results = clone / "results"
    report = (results / "REPORT.md").read_text()
    sections = [line[3:] for line in report.splitlines() if line.startswith("## ")]
    assert sections == list(clone_info["steps"].values())
    for name in clone_info["steps"]:
        assert (results / ".stamps" / f"{name}.json").stat().st_size > 0
    for name in FIGURES:
        assert f"]({name})" in report, f"REPORT.md does not link {name}"
    linked = [part.split(")")[0] for part in report.split("](")[1:]]
    assert linked and all((results / target).is_file() for target in linked), linked


def test_second_run_skips_every_step_and_changes_nothing(clone, clone_info, notebook_runs):
    tables = {name: (clone / "results" / name).read_bytes() for name in TABLES}
    output = _make_reproduce(clone, notebook_runs)
    assert "pip install" not in output, "the second run reinstalled the environment"
    titles = clone_info["steps"].values()
    for i, title in enumerate(titles, start=1):
        assert f"[{i}/{len(titles)}] {title}: up to date, skipped" in output, output[-4000:]
    assert {name: (clone / "results" / name).read_bytes() for name in TABLES} == tables
