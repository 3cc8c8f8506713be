"""Training loop: recipes compute their equations, runs resume exactly, NaN stops cleanly."""
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import nslib.recipes as recipes
from nslib.checkpoints import load_checkpoint
from nslib.data import load
from nslib.hooks import activations
from nslib.models import build
from nslib.training import NonFiniteLossError, ramp, sns_loss, trades_loss, train

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: threads only add overhead on a shared machine
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small():
    train_set = load("mnist5k", "train", limit=150)
    test_xy = load("mnist5k", "test").tensors(20)
    return train_set, test_xy


def _model(seed=0, device="cpu"):
    torch.manual_seed(seed)
    return build("smallcnn", dataset="mnist5k").to(device)  # made on the CPU: the same weights everywhere


def _weights_equal(a, b):
    """Compared on the CPU: a trained model may be on the test device, a loaded checkpoint on the CPU."""
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


QUICK = dict(batch_size=50, steps=1, eps=0.3, eps_warmup_epochs=2, eval_n=20, eval_steps=2,
             progress=False)


# ----------------------------------------------------------------------------- recipes

def test_ramp_is_linear_then_flat():
    assert ramp(0.3, 0, 0, 10, 0) == 0.3
    assert ramp(0.3, 0, 9, 10, 2) == pytest.approx(0.15)
    assert ramp(0.3, 1, 4, 10, 2) == pytest.approx(0.225)
    assert ramp(0.3, 5, 0, 10, 2) == pytest.approx(0.3)


def test_sns_loss_matches_hand_computation(monkeypatch, device):
    model = _model(device=device)
    x, y = (t.to(device) for t in load("mnist5k", "test").tensors(8))
    x_adv = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    monkeypatch.setattr(recipes, "_pgd", lambda net, x, y, eps, alpha, steps: x_adv)
    loss, stats = sns_loss(model, x, y, net=model, eps=0.3, alpha=0.1, steps=1, state={},
                           lam=0.5, layers=["conv3", "fc1"], k=3, max_k=None)
    clean, adv = activations(model, x, ["conv3", "fc1"]), activations(model, x_adv, ["conv3", "fc1"])
    penalty = 0.0
    for name in ("conv3", "fc1"):
        d = (clean[name] - adv[name]).abs()
        d = d.flatten(2).mean(2) if d.dim() > 2 else d              # (N, neurons), 1/dim * L1
        top = d.mean(0).argsort(descending=True)[:3]
        penalty += d[:, top].sum().item() / x.shape[0]
    ce = F.cross_entropy(model(x_adv), y).item()
    assert float(stats["penalty"]) == pytest.approx(penalty, rel=1e-5)
    assert loss.item() == pytest.approx(ce + 0.5 * penalty, rel=1e-5)
    # the penalty trains the model: its gradient reaches the constrained layers' weights
    loss.backward()
    assert model.conv3.weight.grad.abs().sum() > 0


def test_sns_penalty_is_zero_without_perturbation_and_ce_on_options(device):
    model = _model(device=device)
    x, y = (t.to(device) for t in load("mnist5k", "test").tensors(8))
    for ce_on in ("adv", "clean", "both"):
        loss, stats = sns_loss(model, x, y, net=model, eps=0.0, alpha=0.0, steps=1, state={},
                               ce_on=ce_on)
        assert float(stats["penalty"]) == 0.0
        assert loss.item() == pytest.approx(F.cross_entropy(model(x), y).item(), rel=1e-6)
    with pytest.raises(ValueError, match="ce_on"):
        sns_loss(model, x, y, net=model, eps=0.0, alpha=0.0, steps=1, state={}, ce_on="x")


def test_trades_loss_is_ce_plus_beta_kl(monkeypatch, device):
    model = _model(device=device)
    x, y = (t.to(device) for t in load("mnist5k", "test").tensors(8))
    x_adv = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    monkeypatch.setattr(recipes, "_trades_attack", lambda net, x, eps, alpha, steps: x_adv)
    loss, stats = trades_loss(model, x, y, net=model, eps=0.3, alpha=0.1, steps=1, beta=2.0)
    p, q = F.softmax(model(x), 1), F.softmax(model(x_adv), 1)
    kl = (p * (p.log() - q.log())).sum(1).mean().item()
    assert loss.item() == pytest.approx(F.cross_entropy(model(x), y).item() + 2.0 * kl, rel=1e-5)


def test_trades_attack_stays_in_ball_and_raises_kl(device):
    model = _model(device=device)
    x = load("mnist5k", "test").tensors(8)[0].to(device)
    x_adv = recipes._trades_attack(model, x, 0.1, 0.02, 5)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        p = F.softmax(model(x), 1)
        kl = lambda z: F.kl_div(F.log_softmax(model(z), 1), p, reduction="sum").item()
        assert kl(x_adv) > kl((x + 0.001 * torch.randn_like(x)).clamp(0, 1))


# ----------------------------------------------------------------------------- the loop

def test_standard_training_learns(small, device):
    train_set, test_xy = small
    model = _model()
    log = train(model, load("mnist5k", "train", limit=600), "standard", 1,
                test_data=load("mnist5k", "test").tensors(100), device=device, **dict(QUICK, eval_n=100))
    assert log[0]["clean_acc"] > 0.4  # chance is 0.1
    assert not model.training
    assert model.fc3.weight.device.type == device.type  # train() moved the model to the device


@pytest.mark.parametrize("recipe", ["pgd_at", "trades", "sns"])
def test_every_recipe_runs_and_logs(small, recipe, device):
    train_set, test_xy = small
    log = train(_model(), train_set, recipe, 1, test_data=test_xy, max_batches=1, device=device, **QUICK)
    record = log[0]
    assert math.isfinite(record["loss"]) and 0 <= record["robust_acc"] <= 1
    assert set(record["sensitivity"]) == {"conv3", "conv4", "fc1"}
    if recipe == "sns":
        assert "penalty" in record and "sens_conv3" in record


def test_interrupted_run_resumes_to_the_same_weights(small, tmp_path, device):
    train_set, test_xy = small
    opts = dict(QUICK, test_data=test_xy, topk_every=2, lam=0.05, device=device)
    whole = _model()
    train(whole, train_set, "sns", 3, out=tmp_path / "whole", **opts)

    def kill_after_first_epoch(epoch, record, model):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_model(), train_set, "sns", 3, out=tmp_path / "cut", callbacks=[kill_after_first_epoch],
              **opts)
    assert not (tmp_path / "cut" / "model.pt").exists()
    resumed = _model(seed=123)  # other initial weights: they must come from last.pt
    log = train(resumed, train_set, "sns", 3, out=tmp_path / "cut", **opts)
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert _weights_equal(whole, resumed)
    saved, info = load_checkpoint(tmp_path / "cut" / "model.pt")
    assert _weights_equal(saved, resumed)
    assert info["recipe"]["recipe"] == "sns" and info["recipe"]["lam"] == 0.05
    assert (tmp_path / "cut" / "log.jsonl").read_text().count("\n") == 3


def test_resume_with_other_settings_is_refused(small, tmp_path, device):
    train_set, _ = small
    train(_model(), train_set, "standard", 1, out=tmp_path, max_batches=1, progress=False, device=device)
    with pytest.raises(ValueError, match="other settings"):
        train(_model(), train_set, "standard", 2, out=tmp_path, lr=0.1, max_batches=1, progress=False,
              device=device)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(small, tmp_path, device):
    train_set, _ = small

    def poison(epoch, record, model):
        model.fc3.bias.data.fill_(float("nan"))

    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 1.*last good checkpoint.*epoch 1"):
        train(_model(), train_set, "standard", 3, out=tmp_path, callbacks=[poison], progress=False,
              device=device)
    ckpt = torch.load(tmp_path / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def _scripted_recipe(values):
    """A stand-in for the standard recipe whose loss at the i-th call is ``values[i]`` (plus 0 x CE, so it
    has a gradient), with a statistic twice that, as a 0-dim tensor like the real recipes'."""
    calls = iter(values)

    def recipe(model, x, y, *, net=None, eps=0.0, alpha=0.0, steps=0, state=None):
        value = next(calls)
        loss = F.cross_entropy(model(x), y) * 0 + value
        return loss, {"twice": torch.tensor(2.0 * value)}

    return recipe


def test_the_epoch_log_is_the_sample_weighted_mean_of_the_steps(monkeypatch, device):
    """The loop keeps the sums on the device and reads them once: batches of 50, 50 and 20 with
    losses 1, 2, 3 log (50 + 100 + 60) / 120 = 1.75, and the statistic 3.5."""
    monkeypatch.setitem(recipes.RECIPES, "standard", _scripted_recipe([1.0, 2.0, 3.0]))
    log = train(_model(), load("mnist5k", "train", limit=120), "standard", 1, batch_size=50, progress=False,
                device=device)
    assert log[0]["loss"] == pytest.approx(1.75) and log[0]["twice"] == pytest.approx(3.5)
    assert list(log[0])[:4] == ["epoch", "loss", "lr", "eps"]


def test_a_non_finite_loss_mid_epoch_is_reported_at_its_first_step(monkeypatch, tmp_path, device):
    """The check runs on the device and is read at the end of the epoch: the error still names the
    first bad step (here step 2 of 3; step 3 is NaN too), and no checkpoint of that epoch is written."""
    monkeypatch.setitem(recipes.RECIPES, "standard", _scripted_recipe([1.0, float("inf"), float("nan")]))
    with pytest.raises(NonFiniteLossError, match=r"loss is inf at epoch 1, step 2; .*no checkpoint was written yet"):
        train(_model(), load("mnist5k", "train", limit=150), "standard", 2, batch_size=50, progress=False,
              out=tmp_path, device=device)
    assert not (tmp_path / "last.pt").exists()


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown recipe"):
        train(_model(), load("mnist5k", "train", limit=10), "madry", 1)
    with pytest.raises(TypeError, match="Dataset"):
        train(_model(), [1, 2, 3], "standard", 1)


def test_sigkill_mid_run_then_same_command_gives_same_weights(tmp_path, device):
    """A real kill: SIGKILL the CLI after its first checkpoint, run the same command again."""
    env = dict(os.environ, NSLIB_THREADS="1")

    def command(out):
        return [sys.executable, "-m", "nslib", "train", "--recipe", "standard", "--epochs", "3",
                "--limit", "200", "--eval-n", "0", "--no-progress", "--device", str(device), "--out", str(out)]

    # the uninterrupted reference, in this process, as the CLI does it (seed, build, train)
    from nslib.utils import seed_everything
    seed_everything(0)
    whole = build("smallcnn", dataset="mnist5k")
    train(whole, load("mnist5k", "train", limit=200), "standard", 3, progress=False, device=device)
    proc = subprocess.Popen(command(tmp_path / "cut"), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "cut" / "last.pt"
    deadline = time.time() + 60
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    result = subprocess.run(command(tmp_path / "cut"), check=True, cwd=ROOT, env=env,
                            capture_output=True, text=True)
    b, _ = load_checkpoint(tmp_path / "cut" / "model.pt")
    assert _weights_equal(whole, b)
    if proc.returncode == -signal.SIGKILL and "resuming" not in result.stdout:
        pytest.fail("the killed run left last.pt but the rerun did not resume:\n" + result.stdout)


def test_schedule_lowers_lr_and_bf16_falls_back_to_fp32_on_cpu(small):
    train_set, _ = small
    with pytest.warns(UserWarning, match="precision='bf16' is for CUDA GPUs; training on the CPU in fp32"):
        log = train(_model(), train_set, "standard", 4, lr=0.01, schedule="multistep", max_batches=1,
                    precision="bf16", device="cpu", progress=False)
    assert [r["lr"] for r in log] == pytest.approx([0.01, 0.01, 0.001, 0.0001])
    with pytest.raises(ValueError, match="unknown schedule"):
        train(_model(), train_set, "standard", 1, schedule="linear", max_batches=1, progress=False)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_on_cuda(small, device, precision):
    """Autocast (and for fp16 the grad scaler) on CUDA, attacks inside autocast included."""
    if device.type != "cuda":
        pytest.skip("mixed precision trains on CUDA only (the CPU falls back: "
                    "test_schedule_lowers_lr_and_bf16_falls_back_to_fp32_on_cpu)")
    train_set, test_xy = small
    log = train(_model(), train_set, "sns", 1, test_data=test_xy, max_batches=2, precision=precision,
                device=device, **QUICK)
    assert math.isfinite(log[0]["loss"]) and 0 <= log[0]["robust_acc"] <= 1


@pytest.mark.parametrize("name, folder, eps", [("mnist5k", None, 0.3), ("fashion-mnist", "FashionMNIST", 0.1)])
def test_without_eps_training_uses_the_data_sets_usual_budget(name, folder, eps, tmp_path, monkeypatch, device):
    """Not a guess from the channel count: Fashion-MNIST (1 channel) is attacked at 0.1, not MNIST's 0.3."""
    from fakedata import write_mnist_like

    if folder:
        write_mnist_like(tmp_path / "data", folder, n=50)
        monkeypatch.setenv("NSLIB_DATA_ROOT", str(tmp_path / "data"))
    settings = {k: v for k, v in QUICK.items() if k != "eps"}
    train(_model(), load(name, "train", limit=50), "pgd_at", 1, max_batches=1, device=device, out=tmp_path / "run",
          **{**settings, "eval_n": 0})
    _, info = load_checkpoint(tmp_path / "run" / "model.pt")
    assert info["recipe"]["eps"] == pytest.approx(eps) and info["recipe"]["alpha"] == pytest.approx(2.5 * eps)
