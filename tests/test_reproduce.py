"""nslib.reproduce: outputs written, current steps skipped, reruns identical, interruptions safe.

Uses the two steps that need no attack (E6 from the checkpoints' logs, E7 from the recorded
sweep), so the test stays fast; the attack-based steps run in the notebooks and `make reproduce`.
"""
import json

import pytest

from nslib import reproduce as rp

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


def test_stamp_key_follows_checkpoints(tmp_path, monkeypatch):
    rp.reproduce(tmp_path, steps=["sensitivity_vs_robustness"], progress=False)
    stamp = json.loads((tmp_path / ".stamps" / "sensitivity_vs_robustness.json").read_text())
    assert stamp["checkpoints"] == sorted(rp.MODELS)
    monkeypatch.setattr(rp, "_checkpoint_key", lambda names: {n: "changed" for n in names})
    ctx = rp.Context(tmp_path, used_checkpoints=rp._checkpoint_key(stamp["checkpoints"]))
    assert rp._key(ctx, "sensitivity_vs_robustness") != stamp["key"]


def test_unknown_step_lists_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="sns_knobs"):
        rp.reproduce(tmp_path, steps=["e99"])


def test_spearman_on_hand_cases():
    assert rp.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert rp.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert rp.spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
