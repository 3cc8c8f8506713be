"""The prepared GPU run (scripts/gpu_check.sh) and the scripts it calls, checked on the CPU at tiny sizes:
the parity script end to end and its verdict, the timing script's projection, the check's parts and
their time limits. The numbers they measure on a GPU are not tested here (docs/gpu.md)."""
import importlib.util
import json
import re
import subprocess
from pathlib import Path

import pytest
import torch

from nslib import data

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


def test_the_timing_script_scales_only_what_train_spent(tmp_path):
    from nslib.checkpoints import save_checkpoint
    from nslib.models import build

    timing = _script("time_cifar10_reproduce")
    (tmp_path / "models").mkdir()
    for name, seconds in (("a", 12), ("b", 30)):
        save_checkpoint(tmp_path / "models" / f"{name}.pt", build("smallcnn"), recipe={"recipe": "standard"},
                        metrics={"train_seconds": seconds})
    (tmp_path / "sns_sweep.json").write_text(json.dumps({"runs": [{"train_seconds": 3}, {"train_seconds": 4}]}))
    assert timing.training_seconds(tmp_path, "models") == 42
    assert timing.training_seconds(tmp_path, "sns_knobs") == 7
    assert timing.training_seconds(tmp_path, "e5_robustness") == 0


def test_the_gpu_check_refuses_an_unknown_part_and_fits_in_eight_minutes(tmp_path):
    result = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(tmp_path / "logs")],
                            env={"PARTS": "bench tests", "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert result.returncode == 2 and "unknown part 'bench' in PARTS; choose from: bench_attacks" in result.stderr
    assert not (tmp_path / "logs").exists()   # refused before anything is written
    text = (ROOT / "scripts" / "gpu_check.sh").read_text()
    default = re.search(r'parts=" \$\{PARTS:-([a-z_ ]+)\} "', text).group(1).split()
    limits = {name: int(limit) for name, limit in re.findall(r"^part (\w+) \"\$\{T_\w+:-(\d+)\}\"", text, re.M)}
    assert set(default) <= set(limits) and sum(limits[name] for name in default) <= 480, limits
    assert default[-1] == "tests" and {"parity", "timing", "bench_attacks", "bench_training"} <= set(default)


def test_the_timing_script_prints_each_steps_projection_as_it_ends(tmp_path, monkeypatch, capsys):
    """The run stubbed (three steps on a fake clock: the models 60 s, 30 of them in train(); the sweep
    20 s, 10 in train(); E5 40 s): with --epochs 1 the setting's 30 and 10 epochs project 60 + 30 x 29 s,
    20 + 10 x 9 s and 40 s, printed step by step (kept if a time limit cuts the run), then the total."""
    import types

    import torchvision.datasets.cifar as cifar

    from nslib import reproduce as rp
    from nslib import settings
    from nslib.checkpoints import save_checkpoint
    from nslib.models import build

    timing = _script("time_cifar10_reproduce")
    clock = types.SimpleNamespace(now=0.0)
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=lambda: clock.now))
    monkeypatch.setitem(settings.REGISTRY, "cifar10-resnet18", settings.REGISTRY["cifar10-resnet18"])  # restored
    monkeypatch.setattr(cifar, "check_integrity", cifar.check_integrity)                             # restored
    monkeypatch.setenv("NSLIB_DATA_ROOT", str(tmp_path))                                              # restored

    def step(ctx, name, code):   # what each stubbed step leaves behind, and how long it "takes"
        if name == "models":
            (ctx.out / "models").mkdir(parents=True)
            save_checkpoint(ctx.out / "models" / "m.pt", build("smallcnn"), recipe={}, metrics={"train_seconds": 30})
        if name == "sns_knobs":
            (ctx.out / "sns_sweep.json").write_text(json.dumps({"runs": [{"train_seconds": 10}]}))
        clock.now += {"models": 60, "sns_knobs": 20, "e5_robustness": 40}[name]

    def reproduce(out, **kwargs):
        assert kwargs["compile"] == "reduce-overhead" and kwargs["precision"] == "bf16"
        assert settings.get("cifar10-resnet18").recipe("sns")["epochs"] == 1   # every run shortened
        for name in ("models", "sns_knobs", "e5_robustness"):
            rp.run_step(types.SimpleNamespace(out=Path(out)), name, "code")

    monkeypatch.setattr(rp, "run_step", step)
    monkeypatch.setattr(rp, "reproduce", reproduce)
    assert timing.main(["--full", "--seeds", "1", "--epochs", "1", "--images", "2", "--compile", "reduce-overhead",
                        "--out", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    projected = "projected to the setting's epochs"
    assert f"timed: models 1.0 min (0.5 in train()); {projected} 15.5 min, the run so far 15.5 min" in out
    assert f"timed: sns_knobs 0.3 min (0.2 in train()); {projected} 1.8 min, the run so far 17.3 min" in out
    assert f"timed: e5_robustness 0.7 min (0.0 in train()); {projected} 0.7 min, the run so far 18.0 min" in out
    assert re.search(r"projected with the setting's epochs \(30 per model, 10 per sweep run; measured with 1;", out)
    assert re.search(r"^  total\s+18\.0 min$", out, re.M)
