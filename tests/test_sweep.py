"""The E7 sweep (nslib.sweep): one setting's record depends on the budget's seed alone."""
import torch

from nslib import sweep


def test_a_setting_gives_the_same_record_whatever_ran_before(tmp_path, monkeypatch):
    tiny = {"train_n": 100, "epochs": 1, "eps": 0.3, "steps": 1, "eps_warmup_epochs": 0, "lr": 1e-3,
            "batch_size": 50, "seed": 0, "test_n": 20}
    monkeypatch.setattr(sweep, "BUDGET", tiny)
    records = []
    for run, noise in enumerate((1, 2)):
        torch.manual_seed(noise)            # another process, or another run before this one
        torch.rand(noise * 7)
        record = sweep.run_setting("lam0.01", "lambda", {"lam": 0.01}, tmp_path / f"runs{run}", device="cpu")
        record.pop("train_seconds")
        records.append(record)
    assert records[0] == records[1]
    assert records[0]["recipe"] == "sns" and 0 <= records[0]["clean_acc"] <= 1
