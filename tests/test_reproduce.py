"""nslib.reproduce: outputs written, current steps skipped, reruns identical, interruptions safe.

Uses the two steps that need no attack (E6 from the checkpoints' logs, E7 from the recorded
sweep), so the test stays fast; the attack-based steps run in the notebooks and `make reproduce`.
The cache's keys (code, data files, stamp format) are tested in test_reproduce_cache.py.
"""
import csv
import json

import pytest

from nslib import reproduce as rp
from nslib.experiments import models as experiment_models
from nslib.experiments import sensitivity_vs_robustness
from nslib.experiments.context import MODELS, Context, Result

STEPS = ["sensitivity_vs_robustness", "sns_knobs"]


def test_writes_outputs_and_report_then_skips(tmp_path, capsys):
    rp.reproduce(tmp_path, steps=STEPS, progress=False)
    report = (tmp_path / "REPORT.md").read_text()
    for name in ("e6_sensitivity_vs_robustness.csv", "e6_sensitivity_vs_robustness.png",
                 "e7_sns_knobs.csv", "e7_sns_knobs.png"):
        assert (tmp_path / name).stat().st_size > 0
        assert name in report
    assert "Spearman" in report
    first = {p.name: p.read_bytes() for p in tmp_path.glob("*.csv")}
    capsys.readouterr()
    rp.reproduce(tmp_path, steps=STEPS, progress=False)
    assert capsys.readouterr().out.count("up to date, skipped") == 2
    rp.reproduce(tmp_path, steps=STEPS, progress=False, force=True)
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.csv")} == first  # identical tables


def test_missing_output_or_stamp_reruns_the_step(tmp_path, capsys):
    rp.reproduce(tmp_path, steps=STEPS, progress=False)
    (tmp_path / "e7_sns_knobs.png").unlink()            # an output lost
    (tmp_path / ".stamps" / "sensitivity_vs_robustness.json").unlink()  # a step interrupted
    capsys.readouterr()
    rp.reproduce(tmp_path, steps=STEPS, progress=False)
    out = capsys.readouterr().out
    assert "skipped" not in out and (tmp_path / "e7_sns_knobs.png").exists()


def test_stamp_key_follows_checkpoints(tmp_path):
    rp.reproduce(tmp_path, steps=["sensitivity_vs_robustness"], progress=False)
    stamp = json.loads((tmp_path / ".stamps" / "sensitivity_vs_robustness.json").read_text())
    assert sorted(stamp["checkpoints"]) == sorted(MODELS)
    assert stamp["data"] == {}                          # E6 reads the checkpoints' logs only
    code = rp.source_hash()
    ctx = Context(tmp_path, used_checkpoints=stamp["checkpoints"])
    assert rp.step_key(ctx, "sensitivity_vs_robustness", code) == stamp["key"]
    copy = tmp_path / "copy.pt"                       # same label, different file: a new key
    copy.write_bytes(b"not the shipped weights")
    ctx = Context(tmp_path, used_checkpoints={**stamp["checkpoints"], "mnist_sns": str(copy)})
    assert rp.step_key(ctx, "sensitivity_vs_robustness", code) != stamp["key"]


def test_an_experiment_returns_its_outputs_and_writes_nothing(tmp_path):
    result = sensitivity_vs_robustness.run(Context(tmp_path / "out"))
    assert isinstance(result, Result) and "Spearman" in result.finding
    assert list(result.tables) == ["e6_sensitivity_vs_robustness.csv"]
    assert list(result.figures) == ["e6_sensitivity_vs_robustness.png"]
    assert not (tmp_path / "out").exists()


def test_models_step_quick_reports_the_shipped_metrics(tmp_path):
    from nslib.checkpoints import load_pretrained

    rp.reproduce(tmp_path, steps=["models"], progress=False)
    with open(tmp_path / "models.csv") as fh:
        rows = {r["model"]: r for r in csv.DictReader(fh)}
    assert list(rows) == ["standard", "pgd_at", "trades", "sns"]
    for name in MODELS:
        _, info = load_pretrained(name)
        row = rows[name.removeprefix("mnist_")]
        assert row["recipe"] == info["recipe"]["recipe"]
        assert float(row["pgd40_acc"]) == pytest.approx(info["metrics"]["pgd40_acc"], abs=1e-4)


def test_retrain_settings_are_the_shipped_recipe():
    settings = rp.retrain_settings("mnist_sns")
    assert (settings["recipe"], settings["lam"], settings["layers"]) == ("sns", 0.01, ["conv3", "conv4", "fc1"])
    assert "command" not in settings and settings["arch"] == "smallcnn"


def test_full_mode_retrains_and_uses_the_retrained_models(tmp_path, monkeypatch, capsys):
    """--full on a tiny budget: trains into out/runs, saves out/models, and E6/E7 read those."""
    from nslib import sweep

    shipped = experiment_models.retrain_settings
    monkeypatch.setattr(experiment_models, "retrain_settings",
                        lambda name: {**shipped(name), "epochs": 2, "max_batches": 2, "batch_size": 10,
                                      "eps_warmup_epochs": 0})
    monkeypatch.setattr(sweep, "BUDGET", {**sweep.BUDGET, "train_n": 20, "batch_size": 10, "epochs": 1,
                                          "test_n": 20})
    monkeypatch.setattr(sweep, "SETTINGS", sweep.SETTINGS[:2])
    steps = ["models", "sensitivity_vs_robustness", "sns_knobs"]
    rp.reproduce(tmp_path, quick=False, steps=steps, n=20, progress=False)
    for name in MODELS:
        assert (tmp_path / "runs" / name / "last.pt").exists()
        assert (tmp_path / "models" / f"{name}.pt").exists()
    stamp = json.loads((tmp_path / ".stamps" / "sensitivity_vs_robustness.json").read_text())
    assert all(f.startswith(str(tmp_path / "models")) for f in stamp["checkpoints"].values())
    with open(tmp_path / "e6_sensitivity_vs_robustness.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 2 * len(MODELS)      # 2 retrained epochs, not the shipped 40
    runs = json.loads((tmp_path / "sns_sweep.json").read_text())["runs"]
    assert [r["name"] for r in runs] == ["lam0", "lam0.003"] and (tmp_path / "runs" / "sweep" / "lam0").is_dir()
    capsys.readouterr()
    rp.reproduce(tmp_path, quick=False, steps=steps, n=20, progress=False)
    assert capsys.readouterr().out.count("up to date, skipped") == 3


def test_full_mode_without_retrained_models_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="--steps models"):
        rp.reproduce(tmp_path, quick=False, steps=["sensitivity_vs_robustness"], progress=False)


def test_unknown_step_lists_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="sns_knobs"):
        rp.reproduce(tmp_path, steps=["e99"])


def test_spearman_on_hand_cases():
    spearman = sensitivity_vs_robustness.spearman
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
