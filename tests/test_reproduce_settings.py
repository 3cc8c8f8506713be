"""`reproduce --setting cifar10-vgg16` (the cheaper of the two CIFAR-10 settings on a CPU): every step E1-E7 runs in the CIFAR-10 setting, on tiny
files in CIFAR-10's on-disk format written by the test (`tests/fakedata.py`; torchvision's md5
check is the only thing bypassed), at a smoke budget; and without the files it stops at once."""
import csv
import dataclasses
import json
import time
from pathlib import Path

import pytest
import torch

from fakedata import write_cifar
from nslib import reproduce as rp
from nslib import settings, sweep
from nslib.checkpoints import read_checkpoint

NAME = "cifar10-vgg16"


@pytest.fixture
def tiny_cifar(tmp_path, monkeypatch):
    """8 training images per batch file (40 in all) and 8 test images; a one-epoch budget and a
    two-run E7 sweep (PGD-AT and SNS at lambda 0.01), so the whole pipeline runs in minutes."""
    import torchvision.datasets.cifar as cifar

    write_cifar(tmp_path / "data", n=8)
    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())
    monkeypatch.setenv("NSLIB_DATA_ROOT", str(tmp_path / "data"))
    setting = settings.get(NAME)
    small = dataclasses.replace(setting, quick_epochs=1, sweep={**setting.sweep, "train_n": 16, "test_n": 8})
    monkeypatch.setitem(settings.REGISTRY, NAME, small)
    real = sweep.knobs
    monkeypatch.setattr(sweep, "knobs", lambda layers: [k for k in real(layers) if k[1] in ("lam0", "lam0.01")])
    torch.set_num_threads(2)
    return small


@pytest.mark.slow
def test_reproduce_runs_e1_to_e7_in_the_cifar10_setting(tiny_cifar, tmp_path, device):
    out = tmp_path / "results"
    start = time.time()
    report = rp.reproduce(out, quick=True, n=8, seeds=1, setting=NAME, progress=False, device=device)
    print(f"reproduce --setting {NAME} on tiny files: {time.time() - start:.0f} s")
    text = report.read_text()
    for title in ("E1, E2", "E3", "E4", "E5", "E6", "E7"):
        assert title in text
    assert "vgg16 on cifar10" in text and "a smoke run, not a result" in text and "ε = 0.03137" in text
    for recipe in settings.RECIPE_NAMES:   # the four models, trained here from the setting's recipes
        info = read_checkpoint(out / "models" / f"cifar10_vgg16_{recipe}.pt")
        assert (info["arch"], info["dataset"]) == ("vgg16", "cifar10")
        assert info["recipe"]["optimizer"] == "sgd" and info["recipe"]["epochs"] == 1
        assert info["recipe"]["eps"] == pytest.approx(8 / 255)
        assert set(info["log"][-1]["sensitivity"]) == {"relu4_3", "relu5_3"}   # every model logs E6's layers
    with open(out / "e1_layer_sensitivity.csv") as fh:
        layers = [r["layer"] for r in csv.DictReader(fh) if r["model"] == "standard"]
    assert layers == list(tiny_cifar.layers)
    with open(out / "e4_sensitive_neurons.csv") as fh:
        assert {r["layer"] for r in csv.DictReader(fh)} == {"relu2_2"}
    with open(out / "e3_ablation.csv") as fh:
        assert {r["layer"] for r in csv.DictReader(fh)} == {"relu5_3"}
    runs = json.loads((out / "sns_sweep.json").read_text())
    assert [r["name"] for r in runs["runs"]] == ["lam0", "lam0.01"]
    assert runs["default"]["layers"] == ["relu4_3", "relu5_3"] and runs["runs"][0]["test_n"] == 8
    stamp = json.loads((out / ".stamps" / "sensitivity.json").read_text())
    assert any(path.endswith("test_batch") for path in stamp["data"].values())


def test_reproduce_in_a_cifar10_setting_without_the_files_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("NSLIB_DATA_ROOT", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="python -m nslib download cifar10"):
        rp.reproduce(tmp_path / "results", setting="cifar10-resnet18", progress=False)
    assert not (tmp_path / "results").exists()
    with pytest.raises(ValueError, match=r"unknown setting 'cifar100'; choose one of \['mnist-smallcnn'"):
        rp.reproduce(tmp_path / "results", setting="cifar100")
