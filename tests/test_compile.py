"""The compile switch (nslib.precision.COMPILE_MODES): False (eager, the default), True or a
torch.compile mode. Compiled attacks and training compute eager's values up to float rounding;
the CUDA-graph modes (reduce-overhead) are refused off CUDA by the command line and fall back to
'default' with a warning in Python; on CUDA (NSLIB_TEST_DEVICE=cuda) they are checked against
eager like the rest. No timing here: bench/ measures speed."""
import subprocess
import sys
import warnings

import pytest
import torch

from nslib import data
from nslib.attacks import pgd
from nslib.models import build
from nslib.precision import (COMPILE_MODES, CUDA_GRAPH_MODES, check_compile, compile_mode, compiled,
                             prepare_model)
from nslib.training import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")


def _modes(device):
    """The modes worth running on ``device``: CUDA graphs only where they exist."""
    return ["default", "reduce-overhead"] if device.type == "cuda" else ["default"]


def test_the_switch_takes_false_true_or_a_mode_and_names_them_otherwise():
    assert check_compile(False) is None and check_compile(None) is None
    assert check_compile(True) == "default"
    assert [check_compile(m) for m in COMPILE_MODES] == list(COMPILE_MODES)
    assert set(CUDA_GRAPH_MODES) < set(COMPILE_MODES)
    with pytest.raises(ValueError, match=r"unknown compile mode 'fast'; choose one of \['default', 'reduce-overhead'"):
        check_compile("fast")
    with pytest.raises(ValueError, match="unknown compile mode 1"):
        check_compile(1)
    assert TrainConfig().compile is False                   # off by default
    assert TrainConfig(compile=True).compile == "default"   # stored by name
    assert TrainConfig(compile="reduce-overhead").to_dict()["compile"] == "reduce-overhead"
    with pytest.raises(ValueError, match="unknown compile mode 'cudagraph'"):
        TrainConfig(compile="cudagraph")


def test_cuda_graph_modes_fall_back_off_cuda_with_a_warning():
    with pytest.warns(UserWarning, match="'reduce-overhead' captures CUDA graphs.*mode 'default' instead"):
        assert compile_mode("reduce-overhead", "cpu") == "default"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compile_mode("reduce-overhead", "cuda") == "reduce-overhead"   # no device needed to decide
        assert compile_mode("default", "cpu") == "default" and compile_mode(False, "cpu") is None


@pytest.mark.parametrize("argv, message", [
    (["--compile", "fast"], "unknown compile mode 'fast'; choose one of"),
    (["--compile", "reduce-overhead", "--device", "cpu"], "--compile reduce-overhead captures CUDA graphs and "
                                                          "needs a CUDA GPU, and this run is on cpu"),
])
def test_the_command_line_refuses_a_bad_mode_in_one_line(argv, message, tmp_path):
    result = subprocess.run([sys.executable, "-m", "nslib", "train", *argv, "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nslib: error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


def test_compiled_is_in_place_keeps_hooks_and_ends_eager():
    from nslib.hooks import activations

    net = build("smallcnn")
    x = torch.rand(2, 1, 28, 28)
    with compiled(net, "default") as same:
        assert same is net and net._compiled_call_impl is not None
        inside = activations(net, x, ["conv2"])["conv2"]   # hooks on submodules fire in compiled code
    assert net._compiled_call_impl is None
    assert torch.allclose(inside, activations(net, x, ["conv2"])["conv2"], atol=1e-5)
    with compiled(net, False) as same:
        assert same is net and net._compiled_call_impl is None


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_compiled_pgd_gives_eagers_images(precision, device):
    """PGD through ``prepare_model(compile=mode)``: the same images as eager PGD under the same
    seed, but for pixels where a gradient's sign flips on rounding (few, and in bf16 a few more)."""
    import torch._dynamo

    torch.manual_seed(0)
    model = build("smallcnn", dataset="mnist5k").to(device).eval()
    x, y = (t.to(device) for t in data.load("mnist5k", "test").tensors(64))
    torch.manual_seed(1)
    want = pgd(model, x, y, eps=0.3, alpha=0.01, steps=5, precision=precision)
    for mode in _modes(device):
        torch._dynamo.reset()
        copy = build("smallcnn", dataset="mnist5k").to(device).eval()
        copy.load_state_dict(model.state_dict())
        fast = prepare_model(copy, precision, compile=mode)
        assert fast is not copy   # the compiled wrapper
        for _ in range(2):   # the second call replays what the first compiled (and, in reduce-overhead, recorded)
            torch.manual_seed(1)
            got = pgd(fast, x, y, eps=0.3, alpha=0.01, steps=5, precision=precision)
            same = (got - want).abs() < 1e-5
            assert same.float().mean() > (0.98 if precision == "fp32" else 0.9), (mode, same.float().mean())
            assert float((got - x).abs().max()) <= 0.3 + 1e-6


def test_training_in_a_cuda_graph_mode_off_cuda_warns_and_trains(recwarn):
    if torch.cuda.is_available():
        pytest.skip("on a machine with CUDA the CPU run could be mistaken for the CUDA one; the CPU covers it")
    log = train(build("smallcnn"), data.load("mnist5k", "train", limit=50), "pgd_at", 1, eps=0.3, steps=1,
                batch_size=50, compile="reduce-overhead", progress=False, device="cpu")
    assert any("captures CUDA graphs" in str(w.message) for w in recwarn.list)
    assert len(log) == 1 and log[0]["loss"] > 0


@pytest.mark.parametrize("recipe", ["pgd_at", "sns"])
def test_compiled_training_logs_what_eager_training_logs(recipe, device):
    """Every mode that runs on ``device`` (on CUDA, reduce-overhead's CUDA graphs too): one epoch of
    ``train(compile=mode)``, the attack compiled with it, is compiled (not ignored) and logs eager's
    loss, CE and penalty. Not bit for bit: float sums in another order flip the sign of a few
    tiny input gradients, so PGD's x' and then the weights drift apart a little."""
    import torch._dynamo

    train_set = data.load("mnist5k", "train", limit=100)
    options = {"fuse": True} if recipe == "sns" else {}
    logs = {}
    for mode in [False, *_modes(device)]:
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        torch.manual_seed(0)
        logs[mode] = train(build("smallcnn"), train_set, recipe, 1, eps=0.3, steps=2, batch_size=50, compile=mode,
                           progress=False, device=device, seed=0, **options)[-1]
        assert (torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0) == bool(mode), mode
    for mode in _modes(device):
        for key in ("loss", "ce", "penalty") if recipe == "sns" else ("loss",):
            assert logs[mode][key] == pytest.approx(logs[False][key], rel=1e-2), (mode, key)


def test_hooks_registered_after_compiling_still_fire(device):
    """torch._dynamo by default does not guard on hooks: a pass with SNS's capture hooks (or the
    evaluation's) would reuse a graph traced without them, and the hooks would never fire. Inside
    ``compiled`` it guards on them: SNS after PGD-AT in one process (reproduce trains both), and the
    per-epoch evaluation (a clean pass, then the sensitivity's hooked pass), give eager's numbers."""
    import torch._dynamo

    from nslib.recipes import pgd_at_loss, sns_loss
    from nslib.training import evaluate_epoch

    torch._dynamo.reset()
    x, y = (t.to(device) for t in data.load("mnist5k", "test").tensors(16))
    first, second = build("smallcnn").to(device).train(), build("smallcnn").to(device).train()
    with compiled(first, "default"):
        pgd_at_loss(first, x, y, net=first, eps=0.3, alpha=0.1, steps=1)[0].backward()
    penalties = []
    for mode in ("default", False):
        with compiled(second, mode):
            torch.manual_seed(0)
            _, stats = sns_loss(second, x, y, net=second, eps=0.3, alpha=0.1, steps=1, state={})
            penalties.append(float(stats["penalty"]))
    assert penalties[0] > 0 and penalties[0] == pytest.approx(penalties[1], rel=1e-3)
    records = []
    for mode in ("default", False):
        with compiled(second.eval(), mode):
            torch.manual_seed(0)
            records.append(evaluate_epoch(second, x, y, eps=0.3, steps=2, layers=["conv3", "fc1"]))
    assert records[0]["clean_acc"] == records[1]["clean_acc"]
    for layer in ("conv3", "fc1"):
        assert records[0]["sensitivity"][layer] == pytest.approx(records[1]["sensitivity"][layer], rel=1e-2), layer
