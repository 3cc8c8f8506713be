"""nslib.checkpoints: round trip, atomic writes, and every bad-file error."""
import json
import os

import pytest
import torch

from nslib import checkpoints as ckpt
from nslib.models import build


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build("smallcnn", dataset="mnist5k")


def test_round_trip_keeps_weights_and_metadata(tmp_path, model):
    path = ckpt.save_checkpoint(tmp_path / "m.pt", model, recipe={"name": "pgd_at", "eps": 0.3},
                                metrics={"clean_acc": 0.98})
    loaded, info = ckpt.load_checkpoint(path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    assert info == {"format_version": ckpt.FORMAT_VERSION, "arch": "smallcnn", "dataset": "mnist5k",
                    "recipe": {"name": "pgd_at", "eps": 0.3}, "metrics": {"clean_acc": 0.98}}
    assert not loaded.training


def test_map_location_puts_a_built_model_on_the_device(tmp_path, model, device):
    path = ckpt.save_checkpoint(tmp_path / "m.pt", model.to(device))
    assert all(v.device.type == "cpu" for v in ckpt.read_checkpoint(path)["state_dict"].values())  # saved on the CPU
    loaded, _ = ckpt.load_checkpoint(path, map_location=device)
    assert {p.device.type for p in loaded.parameters()} | {b.device.type for b in loaded.buffers()} == {device.type}
    assert all(torch.equal(a.cpu(), b.cpu()) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    mine = build("smallcnn", dataset="mnist5k")  # a model you pass stays where it is
    ckpt.load_checkpoint(path, mine, map_location=device)
    assert mine.fc3.weight.device.type == "cpu" and torch.equal(mine.fc3.weight, model.fc3.weight.cpu())


def test_loads_with_weights_only(tmp_path, model, monkeypatch):
    seen = {}
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    ckpt.load_checkpoint(ckpt.save_checkpoint(tmp_path / "m.pt", model))
    assert seen.get("weights_only") is True


def test_wrong_architecture_is_refused(tmp_path, model):
    path = ckpt.save_checkpoint(tmp_path / "m.pt", model)
    with pytest.raises(ValueError, match="holds a 'smallcnn' model but you passed a 'vgg16'"):
        ckpt.load_checkpoint(path, build("vgg16"))


def test_mismatched_weights_are_refused(tmp_path, model):
    path = ckpt.save_checkpoint(tmp_path / "m.pt", model)
    other = build("smallcnn", num_classes=5)
    with pytest.raises(ValueError, match="does not fit this model"):
        ckpt.load_checkpoint(path, other)


def test_truncated_file_gives_a_clear_error(tmp_path, model):
    path = ckpt.save_checkpoint(tmp_path / "m.pt", model)
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size // 2)
    with pytest.raises(ValueError, match="truncated, corrupt"):
        ckpt.load_checkpoint(path)


def test_newer_format_is_refused(tmp_path, model):
    path = ckpt.save_checkpoint(tmp_path / "m.pt", model, format_version=ckpt.FORMAT_VERSION + 1)
    with pytest.raises(ValueError, match="newer than this nslib"):
        ckpt.load_checkpoint(path)


def test_not_a_checkpoint_and_missing_file(tmp_path):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not an nslib checkpoint"):
        ckpt.load_checkpoint(tmp_path / "x.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        ckpt.load_checkpoint(tmp_path / "missing.pt")


def test_atomic_save_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "state.pt"
    ckpt.atomic_save({"step": 1}, path)

    def broken_save(obj, fh):
        fh.write(b"half a file")
        raise KeyboardInterrupt  # e.g. the user pressed stop mid-write

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        ckpt.atomic_save({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert os.listdir(tmp_path) == ["state.pt"]  # no temporary file left behind


def test_manifest_by_name_checks_the_hash(tmp_path, model, device):
    path = ckpt.save_checkpoint(tmp_path / "net.pt", model)
    ckpt.update_manifest("tiny", path, directory=tmp_path)
    assert ckpt.pretrained_names(tmp_path) == ["tiny"]
    loaded, info = ckpt.load_pretrained("tiny", directory=tmp_path, map_location=device)
    assert info["arch"] == "smallcnn" and loaded.fc3.weight.device.type == device.type
    with pytest.raises(ValueError, match="unknown checkpoint 'nope'.*tiny"):
        ckpt.load_pretrained("nope", directory=tmp_path)
    with open(path, "ab") as fh:
        fh.write(b"x")
    with pytest.raises(ValueError, match="corrupt or was changed"):
        ckpt.load_pretrained("tiny", directory=tmp_path)


def test_shipped_manifest_lists_existing_files():
    manifest_file = ckpt.CHECKPOINT_DIR / "manifest.json"
    if not manifest_file.exists():
        pytest.skip("no shipped checkpoints yet")
    for name, entry in json.loads(manifest_file.read_text()).items():
        model, info = ckpt.load_pretrained(name)
        assert info["dataset"] == "mnist5k" and info["recipe"], name


class TinyNet(torch.nn.Sequential):
    """A model nslib.models.build cannot make: a student's own nn.Module."""

    def __init__(self):
        super().__init__(torch.nn.Flatten(), torch.nn.Linear(4, 3))


def test_own_model_round_trips_only_into_its_class(tmp_path):
    torch.manual_seed(0)
    net = TinyNet()
    path = ckpt.save_checkpoint(tmp_path / "own.pt", net, recipe={"recipe": "sns"})
    loaded, info = ckpt.load_checkpoint(path, TinyNet())
    assert info["arch"] == "custom:TinyNet"
    assert torch.equal(loaded[1].weight, net[1].weight)
    with pytest.raises(ValueError, match="pass an instance: load_checkpoint\\(path, model=TinyNet"):
        ckpt.load_checkpoint(path)
    with pytest.raises(ValueError, match="your own model class 'TinyNet'"):
        ckpt.load_checkpoint(path, torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)))
