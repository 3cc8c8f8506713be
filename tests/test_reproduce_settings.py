"""`reproduce --setting NAME` for a setting that ships no models: every step E1-E7 runs in
`cifar10-vgg16` (the cheaper of the two CIFAR-10 settings on a CPU) and in
`fashion-mnist-smallcnn`, on tiny files in the data set's real on-disk format written by the test
(`tests/fakedata.py`; torchvision's md5 check of CIFAR-10 is the only thing bypassed), at a
smoke budget; and without the files it stops at once."""
import csv
import dataclasses
import json
import time
from pathlib import Path

import pytest
import torch

from fakedata import write_cifar, write_mnist_like
from nslib import reproduce as rp
from nslib import settings, sweep
from nslib.checkpoints import read_checkpoint

def tiny_setting(name: str, root: Path, monkeypatch) -> settings.Setting:
    """``name``'s data as tiny files under ``root`` (8 images per CIFAR-10 batch file, 40 training
    images in all; 16 per MNIST-family split), a one-epoch budget, a two-run E7 sweep (PGD-AT
    and SNS at lambda 0.01) and, for VGG-16, its layers at an eighth of their widths (the same
    names, depth, batch norm and pooling; the full widths' attacks took two minutes of this test),
    so the whole pipeline runs in a minute on a CPU."""
    import torchvision.datasets.cifar as cifar

    from nslib import models

    setting = settings.get(name)
    if setting.dataset == "cifar10":
        write_cifar(root, n=8)
        monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())
    else:
        write_mnist_like(root, {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}[setting.dataset], n=16)
    monkeypatch.setenv("NSLIB_DATA_ROOT", str(root))
    monkeypatch.setattr(models, "_VGG16_WIDTHS", tuple(w // 8 for w in models._VGG16_WIDTHS))
    small = dataclasses.replace(setting, quick_epochs=1, sweep={**setting.sweep, "train_n": 16, "test_n": 8})
    monkeypatch.setitem(settings.REGISTRY, name, small)
    real = sweep.knobs
    monkeypatch.setattr(sweep, "knobs", lambda layers: [k for k in real(layers) if k[1] in ("lam0", "lam0.01")])
    torch.set_num_threads(2)
    return small


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cifar10-vgg16", "fashion-mnist-smallcnn"])
def test_reproduce_runs_e1_to_e7_in_a_setting_that_ships_no_models(name, tmp_path, monkeypatch, device):
    setting = tiny_setting(name, tmp_path / "data", monkeypatch)
    out = tmp_path / "results"
    start = time.time()
    report = rp.reproduce(out, quick=True, n=8, seeds=1, setting=name, progress=False, device=device)
    print(f"reproduce --setting {name} on tiny files: {time.time() - start:.0f} s")
    text = report.read_text()
    for title in ("E1, E2", "E3", "E4", "E5", "E6", "E7"):
        assert title in text
    assert f"{setting.arch} on {setting.dataset}" in text and "a smoke run, not a result" in text
    assert f"ε = {setting.eps:.4g}" in text
    for recipe in settings.RECIPE_NAMES:   # the four models, trained here from the setting's recipes
        info = read_checkpoint(out / "models" / f"{setting.model_name(recipe)}.pt")
        assert (info["arch"], info["dataset"]) == (setting.arch, setting.dataset)
        expected = setting.recipe(recipe)
        assert info["recipe"]["optimizer"] == expected["optimizer"] and info["recipe"]["epochs"] == 1
        assert info["recipe"]["eps"] == pytest.approx(setting.eps)
        assert f"PGD-40 Linf eps {setting.eps:g} " in info["metrics"]["eval"]   # measured at the setting's eps
        assert set(info["log"][-1]["sensitivity"]) == set(setting.sns_layers)   # every model logs E6's layers
    with open(out / "e1_layer_sensitivity.csv") as fh:
        layers = [r["layer"] for r in csv.DictReader(fh) if r["model"] == "standard"]
    assert layers == list(setting.layers)
    with open(out / "e4_sensitive_neurons.csv") as fh:
        assert {r["layer"] for r in csv.DictReader(fh)} == {setting.feature_layer}
    with open(out / "e3_ablation.csv") as fh:
        assert {r["layer"] for r in csv.DictReader(fh)} == set(setting.ablation_layers)
    runs = json.loads((out / "sns_sweep.json").read_text())
    assert [r["name"] for r in runs["runs"]] == ["lam0", "lam0.01"]
    assert runs["default"]["layers"] == list(setting.sns_layers) and runs["runs"][0]["test_n"] == 8
    stamp = json.loads((out / ".stamps" / "sensitivity.json").read_text())
    assert str(tmp_path / "data") in " ".join(stamp["data"].values())   # the test images read are an input


def test_reproduce_in_a_cifar10_setting_without_the_files_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("NSLIB_DATA_ROOT", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="python -m nslib download cifar10"):
        rp.reproduce(tmp_path / "results", setting="cifar10-resnet18", progress=False)
    assert not (tmp_path / "results").exists()
    with pytest.raises(ValueError, match=r"unknown setting 'cifar100'; choose one of \['mnist-smallcnn'"):
        rp.reproduce(tmp_path / "results", setting="cifar100")
