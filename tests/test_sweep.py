"""The E7 sweep (nslib.sweep): one setting's record depends on its training seed alone; the sweep
file keeps one record per (setting, seed)."""
import json

import pytest
import torch

from nslib import sweep


def test_a_setting_gives_the_same_record_whatever_ran_before(tmp_path, monkeypatch, device):
    tiny = {"train_n": 100, "epochs": 1, "eps": 0.3, "steps": 1, "eps_warmup_epochs": 0, "lr": 1e-3,
            "batch_size": 50, "seed": 0, "test_n": 20}
    monkeypatch.setattr(sweep, "BUDGET", tiny)
    records = []
    for run, noise in enumerate((1, 2)):
        torch.manual_seed(noise)            # another process, or another run before this one
        torch.rand(noise * 7)
        record = sweep.run_setting("lam0.01", "lambda", {"lam": 0.01}, tmp_path / f"runs{run}", device=device)
        record.pop("train_seconds")
        records.append(record)
    assert records[0] == records[1]
    assert records[0]["recipe"] == "sns" and 0 <= records[0]["clean_acc"] <= 1


def _record(name, seed=None, pgd=0.5):
    record = {"name": name, "knob": "lambda", "lam": 0.01, "pgd40_acc": pgd}
    return record if seed is None else {**record, "seed": seed}


def test_write_sweep_merges_by_name_and_seed_a_missing_seed_being_0(tmp_path):
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps({"runs": [_record("lam0.01", pgd=0.1), _record("lam0", pgd=0.2)]}))  # no seed keys
    sweep.write_sweep([_record("lam0.01", seed=1, pgd=0.3), _record("lam0", seed=0, pgd=0.4),
                       _record("not_a_setting", seed=0)], path)
    runs = json.loads(path.read_text())["runs"]
    assert [(r["name"], sweep.record_seed(r), r["pgd40_acc"]) for r in runs] == [
        ("lam0", 0, 0.4), ("lam0.01", 0, 0.1), ("lam0.01", 1, 0.3)]  # SETTINGS order, then seed; lam0 replaced
    assert "seed" not in runs[1]                                       # an old record is kept as it was
    assert json.loads(path.read_text())["budget"] == sweep.BUDGET


def test_a_training_seed_has_its_own_folder_and_record(tmp_path, monkeypatch, device):
    monkeypatch.setattr(sweep, "BUDGET", {"train_n": 100, "epochs": 1, "eps": 0.3, "steps": 1, "eps_warmup_epochs": 0,
                                          "lr": 1e-3, "batch_size": 50, "seed": 0, "test_n": 20})
    records = {seed: sweep.run_setting("lam0.01", "lambda", {"lam": 0.01}, tmp_path, device=device, seed=seed)
               for seed in (0, 1)}
    assert [records[s]["seed"] for s in (0, 1)] == [0, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lam0.01", "lam0.01_seed1"]
    assert records[0]["sensitivity"] != records[1]["sensitivity"]     # other initial weights, other model
    with pytest.raises(ValueError, match="seed"):
        sweep.run_setting("lam0.01", "lambda", {"lam": 0.01}, tmp_path, device=device, seed=-1)


def test_sns_knobs_table_and_text_are_computed_from_the_rows():
    from nslib.experiments.sns_knobs import aggregate, format_table, knobs_text

    def record(name, knob, lam, pgd, sens, k=0.1, seed=0):
        return {"name": name, "knob": knob, "lam": lam, "k": k, "layers": ["conv3", "conv4", "fc1"], "seed": seed,
                "clean_acc": 0.96, "pgd40_acc": pgd, "sensitivity": {"conv3": sens, "conv4": sens, "fc1": sens}}

    runs = [record("lam0", "lambda", 0.0, 0.80, 0.5), record("lam0.01", "lambda", 0.01, 0.81, 0.2),
            record("lam0.1", "lambda", 0.1, 0.79, 0.05), record("k1", "k", 0.01, 0.83, 0.3, k=1)]
    lines = format_table(aggregate(runs)).splitlines()
    assert lines[0].split()[:3] == ["setting", "lambda", "k"] and lines[1].split()[-2:] == ["0.800", "0.500"]
    text = knobs_text(runs, 500)
    assert "falls steadily with λ, from 0.500 at λ = 0 to 0.050 at λ = 0.1 (10.0 times lower)" in text
    assert "the PGD-40 accuracy moves without a steady trend, from 80.0 % to 79.0 %" in text
    assert "2 of the 3 SNS settings are at or above PGD-AT's 80.0 %" in text
    # best k1: +3.0 points; one seed a side: 2 SE = 2 sqrt(2 * 0.8 * 0.2 / 500) = 5.1 points
    assert "`k1`, reaches 83.0 %, +3.0 points" in text and "are 5.1 points" in text
    assert "no clearly better setting" in text and "one training seed for each of the 4 settings" in text
    assert "the sampling noise of 500 test images only: with one seed" in text
    # three seeds a side, k1 at 0.83, 0.84, 0.85 against 0.80, 0.80, 0.80: d = 4.0 points,
    # SE^2 = 0.01^2 / 3 + 0 + 2 * 0.8 * 0.2 / 500 -> 2 SE = 5.2 points: still within the noise
    runs3 = [record(r["name"], r["knob"], r["lam"], r["pgd40_acc"] + (0.01 * seed if r["name"] == "k1" else 0),
                    r["sensitivity"]["conv3"], k=r["k"], seed=seed) for r in runs for seed in range(3)]
    text = knobs_text(runs3, 500)
    assert "`k1`, reaches 84.0 %, +4.0 points" in text and "are 5.2 points" in text
    assert "3 training seeds for each of the 4 settings" in text and "no clearly better setting" in text
    assert "(the spread over training seeds and the sampling noise of 500 test images)" in text
    rising = [dict(r, pgd40_acc=0.9) if r["name"] == "lam0.1" else r for r in runs]
    assert "the PGD-40 accuracy rises steadily, from 80.0 % to 90.0 %" in knobs_text(rising, 500)
    # on 50,000 images the sampling noise is small and the seed spread decides: 2 SE = 1.3 points
    assert "are 1.3 points, and it is above them" in knobs_text(runs3, 50000)