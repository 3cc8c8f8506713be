"""nslib.reproduce's cache is honest: a step reruns when the library code, a data file it read
or the stamp format changed, and is skipped only when nothing did.

The code a key hashes is the whole nslib package (``reproduce.source_hash``); the tests point
``reproduce.PACKAGE_DIR`` at a copy of the package and edit real source text in the copy.
"""
import ast
import json
import os
import shutil
from pathlib import Path

import pytest

import nslib
from nslib import reproduce as rp
from nslib.experiments import sns_knobs

E6 = "sensitivity_vs_robustness"


def _ran(capsys, step_title: str) -> bool:
    """Whether the last reproduce() ran the step (True) or skipped it (False)."""
    out = capsys.readouterr().out
    assert step_title in out
    return "up to date, skipped" not in out


@pytest.fixture
def package_copy(tmp_path, monkeypatch) -> Path:
    """A copy of the nslib package whose source the cache hashes."""
    copy = tmp_path / "src" / "nslib"
    shutil.copytree(Path(nslib.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(rp, "PACKAGE_DIR", copy)
    return copy


def _edit_function(path: Path, name: str) -> None:
    """Insert a statement before the last statement of function ``name`` in ``path``: a real source edit."""
    lines = path.read_text().splitlines(keepends=True)
    function = next(node for node in ast.walk(ast.parse("".join(lines)))
                    if isinstance(node, ast.FunctionDef) and node.name == name)
    last = function.body[-1]
    lines.insert(last.lineno - 1, " " * last.col_offset + "scores = scores.clone()  # an edit the cache must see\n")
    path.write_text("".join(lines))


def test_editing_a_library_function_the_step_calls_reruns_it(tmp_path, package_copy, capsys):
    out = tmp_path / "results"
    rp.reproduce(out, steps=[E6], progress=False)
    assert _ran(capsys, "E6")
    os.utime(package_copy / "sensitivity.py")                 # touched, not changed: still current
    rp.reproduce(out, steps=[E6], progress=False)
    assert not _ran(capsys, "E6")
    # E6's spearman ranks with nslib.sensitivity.rank_neurons: edit that function's source
    _edit_function(package_copy / "sensitivity.py", "rank_neurons")
    assert "an edit the cache must see" in (package_copy / "sensitivity.py").read_text()
    rp.reproduce(out, steps=[E6], progress=False)
    assert _ran(capsys, "E6")
    rp.reproduce(out, steps=[E6], progress=False)             # and the new code's stamp holds
    assert not _ran(capsys, "E6")


def test_source_hash_follows_the_python_source_only(tmp_path, package_copy):
    before = rp.source_hash(package_copy)
    assert rp.source_hash() == before                         # PACKAGE_DIR is the default
    (package_copy / "notes.txt").write_text("not code")
    assert rp.source_hash(package_copy) == before
    (package_copy / "experiments" / "new.py").write_text("X = 1\n")  # a new module, anywhere below
    assert rp.source_hash(package_copy) != before
    (package_copy / "experiments" / "new.py").unlink()
    assert rp.source_hash(package_copy) == before
    (package_copy / "experiments" / "robustness.py").write_text(
        (package_copy / "experiments" / "robustness.py").read_text() + "\n")
    assert rp.source_hash(package_copy) != before


def test_changing_a_data_file_the_step_read_reruns_it(tmp_path, monkeypatch, capsys):
    sweep = tmp_path / "sns_sweep.json"
    shutil.copy(sns_knobs.RECORDED_SWEEP, sweep)
    monkeypatch.setattr(sns_knobs, "RECORDED_SWEEP", sweep)
    out = tmp_path / "results"
    rp.reproduce(out, steps=["sns_knobs"], progress=False)
    assert _ran(capsys, "E7")
    stamp = json.loads((out / ".stamps" / "sns_knobs.json").read_text())
    assert stamp["data"] == {"sns_sweep": str(sweep)}
    table = (out / "e7_sns_knobs.csv").read_bytes()
    rp.reproduce(out, steps=["sns_knobs"], progress=False)
    assert not _ran(capsys, "E7")
    sweep.write_text(json.dumps(json.loads(sweep.read_text()), indent=2))  # same runs, other bytes
    rp.reproduce(out, steps=["sns_knobs"], progress=False)
    assert _ran(capsys, "E7")
    assert (out / "e7_sns_knobs.csv").read_bytes() == table


def test_the_test_images_are_an_input_of_the_attack_steps():
    from nslib.experiments.context import Context

    ctx = Context(Path("unused"), n_images=2)
    ctx.test_batch()
    assert ctx.used_data == {"mnist5k": str(Path(nslib.data.EMBEDDED_DIR) / "mnist5k.npz")}


@pytest.mark.parametrize("older", [
    lambda s: {k: v for k, v in s.items() if k not in ("format", "data")},  # the stamps before format 2
    lambda s: {**s, "format": 1},
    lambda s: "not json {",
])
def test_a_stamp_of_another_format_is_stale(tmp_path, capsys, older):
    rp.reproduce(tmp_path, steps=[E6], progress=False)
    stamp_path = tmp_path / ".stamps" / f"{E6}.json"
    stamp = older(json.loads(stamp_path.read_text()))
    stamp_path.write_text(stamp if isinstance(stamp, str) else json.dumps(stamp))
    capsys.readouterr()
    rp.reproduce(tmp_path, steps=[E6], progress=False)
    assert _ran(capsys, "E6")


def test_a_new_torch_version_reruns_the_step(tmp_path, monkeypatch, capsys):
    out = tmp_path / "results"
    rp.reproduce(out, steps=[E6], progress=False)
    assert _ran(capsys, "E6")
    rp.reproduce(out, steps=[E6], progress=False)
    assert not _ran(capsys, "E6")
    versions = rp.library_versions()
    monkeypatch.setattr(rp, "library_versions", lambda: {**versions, "torch": versions["torch"] + ".upgraded"})
    rp.reproduce(out, steps=[E6], progress=False)
    assert _ran(capsys, "E6")


def test_e5_keeps_its_attack_tables_in_nslib_runs_cache_and_nothing_without_it(tmp_path, monkeypatch, device):
    """With $NSLIB_RUNS, E5's suite table and eps curves go to its cache and a forced rerun reads them
    back (the same table, no attack run); without it, nothing is written outside --out."""
    from nslib import evaluation
    from nslib.experiments import robustness

    # a two-attack suite and a two-point curve: what is tested is where the results go, not the attacks
    monkeypatch.setattr(robustness, "attack_suite", lambda quick, autoattack, eps: {
        "clean": {"attack": "clean"}, "fgsm": {"attack": "fgsm", "eps": eps}})
    monkeypatch.setattr(robustness, "eps_list", lambda quick, eps: [0.0, eps])
    monkeypatch.setattr(robustness, "_finding", lambda *args: "(the finding reads AutoAttack's row, not run here)")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NSLIB_RUNS", raising=False)
    monkeypatch.delenv("NSLIB_CACHE", raising=False)
    rp.reproduce(tmp_path / "plain", steps=["robustness"], n=4, seeds=1, progress=False, device=device)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]

    monkeypatch.setenv("NSLIB_RUNS", str(tmp_path / "runs"))
    rp.reproduce(tmp_path / "out", steps=["robustness"], n=4, seeds=1, progress=False, device=device)
    kept = sorted(p.name.split("-")[0] for p in (tmp_path / "runs" / "cache").iterdir())
    assert kept == ["robust_accuracy_curve"] * 4 + ["robustness_table"]
    table = (tmp_path / "out" / "e5_robustness.csv").read_bytes()
    assert table == (tmp_path / "plain" / "e5_robustness.csv").read_bytes()

    def no_attack(*args, **kwargs):
        raise AssertionError("an attack ran although its result was in the cache")

    monkeypatch.setattr(evaluation, "_run_batches", no_attack)
    rp.reproduce(tmp_path / "out", steps=["robustness"], n=4, seeds=1, progress=False, device=device, force=True)
    assert (tmp_path / "out" / "e5_robustness.csv").read_bytes() == table
