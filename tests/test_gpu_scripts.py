"""The prepared GPU run (scripts/gpu_check.sh) and the scripts it calls, checked on the CPU at tiny sizes:
the parity script end to end and its verdict, the timing script's projection, the check's parts and
their time limits. The numbers they measure on a GPU are not tested here (docs/gpu.md)."""
import importlib.util
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch

from nslib import data
from nslib.models import build

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("one_thread")


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_stand_in_is_mnist5k_at_cifar10s_shape():
    parity = _script("parity_resnet18")
    x, y = parity.stand_in("test", 8)
    digits, labels = data.load("mnist5k", "test").tensors(8)
    assert x.shape == (8, 3, 32, 32) and x.min() >= 0 and x.max() <= 1 and torch.equal(y, labels)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])          # grey over RGB
    back = torch.nn.functional.interpolate(x[:, :1], size=(28, 28), mode="bilinear", align_corners=False)
    assert (back - digits).abs().mean() < 0.05                                       # the same digits


def test_the_parity_verdict():
    verdict = _script("parity_resnet18").verdict
    assert verdict(0.9, {"fp32": 0.800, "bf16": 0.805}) == (True, [])            # 0.5 points: within
    passed, why = verdict(0.9, {"fp32": 0.800, "bf16": 0.794})
    assert not passed and why == ["bf16 is -0.6 points from fp32"]
    passed, why = verdict(0.3, {"fp32": 0.2, "bf16": 0.2})
    assert not passed and "did not learn" in why[0]


def test_the_parity_script_runs_end_to_end_at_tiny_size(capsys, device):
    parity = _script("parity_resnet18")
    assert parity.main(["--tiny", "--device", str(device)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"trained ResNet-18 with PGD-AT on 64 upsampled mnist5k images, 1 epochs", out), out
    assert re.search(r"PGD-5 at 8/255 on the same 16 images: fp32 \d+\.\d %, bf16 \d+\.\d %, bf16 - fp32 [+-]\d", out)
    assert re.search(r"^(PASS|FAIL): bf16 parity on a trained ResNet-18.*--tiny: a smoke run", out, re.M), out


def test_the_gpu_check_refuses_an_unknown_part_and_fits_in_eight_minutes(tmp_path):
    result = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(tmp_path / "logs")],
                            env={"PARTS": "bench tests", "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert result.returncode == 2 and "unknown part 'bench' in PARTS; choose from: bench_attacks" in result.stderr
    assert not (tmp_path / "logs").exists()   # refused before anything is written
    text = (ROOT / "scripts" / "gpu_check.sh").read_text()
    default = re.search(r'parts=" \$\{PARTS:-([a-z_ ]+)\} "', text).group(1).split()
    limits = {name: int(limit) for name, limit in re.findall(r"^part (\w+) \"\$\{T_\w+:-(\d+)\}\"", text, re.M)}
    assert set(default) <= set(limits) and sum(limits[name] for name in default) <= 480, limits
    assert default[-1] == "timing" and {"parity", "tests", "bench_attacks", "bench_training"} <= set(default)


def test_the_timing_script_times_each_part_and_resumes_a_cut_run(tmp_path, monkeypatch, capsys):
    """reproduce stubbed on a fake clock: the models step (5 s of its own, two models of 60 s, 30 of them in
    train()), one sweep run (20 s, 10 in train()) and E5 (40 s). The first call is cut in the second model;
    the second call (--resume) does not run the first model again. With --epochs 1 the setting's 30 and 10
    epochs project each model to 60 + 30 x 29 s, the sweep run to 20 + 10 x 9 s, and the run to 33.6 min."""
    import types

    import torchvision.datasets.cifar as cifar

    from nslib import reproduce as rp
    from nslib import settings, sweep
    from nslib.checkpoints import save_checkpoint
    from nslib.experiments import models

    timing = _script("time_cifar10_reproduce")
    clock = types.SimpleNamespace(now=0.0, cut=True, trained=[])
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=lambda: clock.now))
    before = settings.REGISTRY["cifar10-resnet18"], cifar.check_integrity, os.environ.get("NSLIB_DATA_ROOT")

    def retrain(name, run_dir, checkpoint, settings_, **kwargs):
        clock.trained.append(name)
        if name == "second" and clock.cut:
            raise RuntimeError("cut by the time limit")
        clock.now += 60
        save_checkpoint(checkpoint, build("smallcnn"), recipe={}, metrics={"train_seconds": 30})
        return Path(checkpoint)

    def run_setting(name, knob, change, runs_dir, *, seed=0, **kwargs):
        clock.now += 20
        return {"name": name, "train_seconds": 10}

    def step(ctx, name, code):
        if name == "models":
            clock.now += 5
            for model in ("first", "second"):
                models.retrain(model, ctx.out / "runs" / model, ctx.out / f"{model}.pt", {})
        elif name == "sns_knobs":
            sweep.run_setting("lam_0.1", "lam", {}, ctx.out / "runs" / "sweep", seed=0)
        else:
            clock.now += 40

    def reproduce(out, **kwargs):
        assert kwargs["compile"] == "reduce-overhead" and kwargs["force"] is False   # --resume
        assert settings.get("cifar10-resnet18").recipe("sns")["epochs"] == 1          # every run shortened
        Path(out).mkdir(parents=True, exist_ok=True)
        for name in ("models", "sns_knobs", "e5_robustness"):
            rp.run_step(types.SimpleNamespace(out=Path(out)), name, "code")

    for name, stub in (("retrain", retrain), ("run_setting", run_setting)):
        monkeypatch.setattr(models if name == "retrain" else sweep, name, stub)
    monkeypatch.setattr(rp, "run_step", step)
    monkeypatch.setattr(rp, "reproduce", reproduce)
    argv = ["--full", "--epochs", "1", "--images", "2", "--compile", "reduce-overhead", "--out", str(tmp_path / "t"),
            "--resume"]
    with pytest.raises(RuntimeError, match="cut by the time limit"):
        timing.main(argv)
    assert "timed: models:first 1.0 min (0.5 in train()); projected 15.5 min" in capsys.readouterr().out
    clock.cut, clock.trained = False, []
    assert timing.main(argv) == 0
    out = capsys.readouterr().out
    assert clock.trained == ["second"] and "timed: models:first ended in an earlier call, not run again" in out
    assert "timed: step models 2.1 min; projected to the setting's epochs 31.1 min; the run so far 31.1 min" in out
    assert "timed: sns_knobs:lam_0.1 0.3 min (0.2 in train()); projected 1.8 min" in out
    assert "the run so far 33.6 min" in out
    assert re.search(r"^  total\s+3\.1 min\s+33\.6 min$", out, re.M), out
    with pytest.raises(SystemExit, match="not made by this script"):
        timing.main([*argv[:-3], "--out", str(ROOT / "tests")])   # never clears a folder it did not make
    assert (settings.REGISTRY["cifar10-resnet18"], cifar.check_integrity, os.environ.get("NSLIB_DATA_ROOT")) == before
