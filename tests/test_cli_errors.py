"""Command-line errors: a user's mistake is one line on stderr and exit status 2; --debug shows the traceback."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nslib.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _fails(argv, capsys) -> str:
    """Run ``main(argv)``, check exit status 2 and return the one line it printed on stderr."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    captured = capsys.readouterr()
    assert exit_.value.code == 2, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nslib: error: "), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


@pytest.mark.parametrize("argv, expected", [
    (["evaluate", "no/such/run"], "is neither a run folder, a checkpoint file nor a shipped model (mnist_pgd_at"),
    (["evaluate", "mnist_standard", "--data", "mnits"], "unknown data set 'mnits'; choose one of"),
    (["evaluate", "mnist_standard", "--attacks", "pgd7"], "unknown attacks ['pgd7'] at eps 0.3; choose from clean,"),
    (["train", "--data", "mnits", "--out", "unused"], "unknown data set 'mnits'"),
    (["train", "--precision", "bf16", "--device", "cpu", "--out", "unused"],
     "--precision bf16 needs a CUDA GPU, and this run is on cpu; drop --precision"),
    (["reproduce", "--precision", "bf16", "--device", "cpu"], "--precision bf16 needs a CUDA GPU"),
    (["reproduce", "--setting", "cifar10-vgg16", "--out", "unused"], "data set 'cifar10' not found"),
    (["reproduce", "--setting", "fashion-mnist-smallcnn", "--out", "unused"], "`python -m nslib download fashion-mnist`"),
    (["reproduce", "--seeds", "4"], "quick mode uses the shipped seeds, and 3 are shipped; got seeds=4. Use --seeds 3"),
    (["reproduce", "--seeds", "0"], "seeds (training seeds per recipe) must be an int >= 1, got 0"),
])
def test_user_mistakes_print_one_line_and_exit_2(argv, expected, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("NSLIB_DEBUG", raising=False)
    monkeypatch.setenv("NSLIB_DATA_ROOT", str(tmp_path / "no-downloads"))   # no CIFAR-10 files, on any machine
    monkeypatch.chdir(tmp_path)                  # nothing may be written where the user stands
    assert expected in _fails(argv, capsys)
    assert list(tmp_path.iterdir()) == []


def test_an_empty_run_folder_says_training_is_not_finished(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("NSLIB_DEBUG", raising=False)
    assert "has no model.pt (training not finished?)" in _fails(["evaluate", str(tmp_path)], capsys)


def test_debug_flag_and_environment_show_the_traceback(monkeypatch):
    monkeypatch.delenv("NSLIB_DEBUG", raising=False)
    with pytest.raises(ValueError, match="unknown data set"):
        main(["--debug", "evaluate", "mnist_standard", "--data", "mnits"])
    with pytest.raises(ValueError, match="unknown data set"):
        main(["evaluate", "mnist_standard", "--data", "mnits", "--debug"])
    monkeypatch.setenv("NSLIB_DEBUG", "1")
    with pytest.raises(ValueError, match="unknown data set"):
        main(["evaluate", "mnist_standard", "--data", "mnits"])


def test_python_dash_m_exits_2_with_one_line():
    env = {k: v for k, v in os.environ.items() if k != "NSLIB_DEBUG"}
    result = subprocess.run([sys.executable, "-m", "nslib", "evaluate", "mnist_nope"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("nslib: error: 'mnist_nope' is neither") and result.stderr.count("\n") == 1
    debug = subprocess.run([sys.executable, "-m", "nslib", "evaluate", "mnist_nope"], cwd=ROOT,
                           env=dict(env, NSLIB_DEBUG="1"), capture_output=True, text=True, timeout=120)
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr


def test_reproduce_refuses_unknown_steps_and_settings(tmp_path, capsys, monkeypatch):
    from nslib.reproduce import reproduce

    with pytest.raises(ValueError, match=r"unknown steps \['e5'\]; choose from \['models'"):
        reproduce(tmp_path, steps=["e5"])
    with pytest.raises(TypeError, match="stepz"):
        reproduce(tmp_path, stepz=["models"])
    with pytest.raises(ValueError, match="positive int"):
        reproduce(tmp_path, n=0)
    monkeypatch.delenv("NSLIB_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_:          # argparse's own one-line error
        main(["reproduce", "--steps", "e5", "--out", str(tmp_path)])
    assert exit_.value.code == 2 and "invalid choice: 'e5'" in capsys.readouterr().err


@pytest.mark.parametrize("value, expected", [("", True), ("1", True), ("TRUE", True), (" yes", True),
                                             ("0", False), ("false", False), ("Off", False)])
def test_quick_mode_reads_yes_and_no(monkeypatch, value, expected):
    from nslib.utils import quick_mode

    monkeypatch.setenv("NSLIB_QUICK", value)
    assert quick_mode() is expected


@pytest.mark.parametrize("value", ["2", "full", "quick", "flase"])
def test_a_switch_that_is_neither_yes_nor_no_raises(monkeypatch, capsys, value):
    from nslib.utils import quick_mode

    monkeypatch.setenv("NSLIB_QUICK", value)
    with pytest.raises(ValueError, match=f"NSLIB_QUICK='{value}' is not a yes/no value"):
        quick_mode()
    monkeypatch.setenv("NSLIB_DEBUG", value)
    assert "NSLIB_DEBUG" in _fails(["evaluate", "mnist_standard", "--attacks", "clean"], capsys)
