"""Command line: help texts, train + evaluate round trip, and train under torchrun (DDP, 2 CPU processes,
a setting's recipe)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nslib.checkpoints import load_checkpoint, save_checkpoint
from nslib.cli import COMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, NSLIB_THREADS="1", OMP_NUM_THREADS="1")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_command_has_help_with_examples(capsys):
    assert {"train", "evaluate", "download"} <= set(COMMANDS)
    for name in ("train", "evaluate"):
        with pytest.raises(SystemExit) as exit_:
            main([name, "--help"])
        assert exit_.value.code == 0
        text = capsys.readouterr().out
        assert "examples:" in text and f"python -m nslib {name}" in text
    with pytest.raises(SystemExit):
        main([])  # a command is required
    assert "unknown" not in capsys.readouterr().out


def test_train_arguments_reach_the_recipe():
    args = build_parser().parse_args(["train", "--recipe", "sns", "--lambda", "0.5", "--k", "3",
                                      "--layers", "conv4", "fc1", "--out", "x"])
    assert (args.lam, args.k, args.layers) == (0.5, 3, ["conv4", "fc1"])
    assert build_parser().parse_args(["train", "--k", "0.2", "--out", "x"]).k == 0.2


def test_every_command_that_computes_takes_a_device():
    for argv in (["train", "--out", "x"], ["evaluate", "m"], ["reproduce"]):
        assert build_parser().parse_args([*argv, "--device", "cuda:1"]).device == "cuda:1"
        assert build_parser().parse_args(argv).device is None  # then NSLIB_DEVICE, else cuda if available


def test_train_then_evaluate(tmp_path, capsys, device):
    out = tmp_path / "run"
    assert main(["train", "--recipe", "standard", "--epochs", "1", "--limit", "300", "--device", str(device),
                 "--eval-n", "50", "--eval-steps", "2", "--eps", "0.2", "--no-progress", "--out", str(out)]) == 0
    model, info = load_checkpoint(out / "model.pt")
    assert info["recipe"]["recipe"] == "standard" and info["recipe"]["epochs"] == 1
    assert 0 <= info["metrics"]["clean_acc"] <= 1
    capsys.readouterr()
    csv_path = tmp_path / "table.csv"
    assert main(["evaluate", str(out), "--n", "50", "--attacks", "clean", "fgsm", "pgd10", "--device", str(device),
                 "--csv", str(csv_path), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split() == ["model", "clean", "fgsm", "pgd10"]
    assert text.splitlines()[1].startswith("run")
    assert csv_path.read_text().count("\n") == 4  # header + 3 rows
    with pytest.raises(SystemExit) as exit_:   # the suite is at the eps the model was trained for
        main(["evaluate", str(out), "--n", "10", "--attacks", "pgd7"])
    assert exit_.value.code == 2 and "nslib: error: unknown attacks ['pgd7'] at eps 0.2;" in capsys.readouterr().err
    other = save_checkpoint(tmp_path / "other.pt", model, arch=info["arch"], dataset=info["dataset"],
                            recipe={**info["recipe"], "eps": 0.3}, metrics=info["metrics"])
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(out), str(other), "--n", "10", "--attacks", "clean"])
    assert exit_.value.code == 2 and "trained for different eps" in capsys.readouterr().err
    assert main(["evaluate", str(out), str(other), "--n", "10", "--attacks", "pgd40@0.1", "--eps", "0.3",
                 "--device", str(device), "--no-progress"]) == 0


def test_train_under_torchrun_with_two_cpu_processes(tmp_path):
    # CPU on purpose (gloo, whatever the test device): two CUDA processes would need two GPUs.
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip(f"no torchrun next to {sys.executable}")
    out = tmp_path / "ddp"
    result = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "nslib", "train", "--setting", "mnist-smallcnn",
         "--recipe", "standard", "--epochs", "2", "--limit", "600", "--eval-n", "200",
         "--eval-steps", "1", "--no-progress", "--device", "cpu", "--out", str(out)],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    model, info = load_checkpoint(out / "model.pt")
    assert info["recipe"]["world_size"] == 2 and info["recipe"]["epochs"] == 2   # the flag beat the setting's 10
    assert info["recipe"]["batch_size"] == 100 and info["recipe"]["seed"] == 0  # the setting's, in every process
    log = info["log"]
    assert log[-1]["loss"] < log[0]["loss"]
    assert info["metrics"]["clean_acc"] > 0.3  # chance is 0.1
    assert result.stdout.count("done:") == 1  # only rank 0 reports and writes
