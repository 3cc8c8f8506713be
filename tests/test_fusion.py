"""SNS's fused forward (nslib.fusion, sns_loss(fuse=True)): one pass on cat([x', x]) gives the loss,
the gradient and the BatchNorm running statistics of the two separate passes. Without BatchNorm
that is the same arithmetic on each sample; with BatchNorm in train mode it is the documented
choice (each half normalised with its own statistics, docs/experiments.md#sns-loss), and a plain
2N pass, which mixes the statistics, is shown to differ."""
import pytest
import torch
from torch import nn

import nslib.recipes as recipes
from nslib.data import load
from nslib.fusion import fused_forward, part_statistics
from nslib.models import build
from nslib.recipes import sns_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def _bn_net() -> nn.Module:
    """A small CNN with BatchNorm after each convolution (as ResNet-18's blocks), 1x28x28 input."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(32, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))


def _batch(n=8, device="cpu", dtype=torch.float64):
    x, y = load("mnist5k", "test").tensors(n)
    x_adv = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)   # a fixed x', so both runs see the same one
    return x.to(device, dtype), x_adv.to(device, dtype), y.to(device)


def _sns(model, x, x_adv, y, monkeypatch, *, fuse, layers, lam=0.5, state=None):
    """SNS's loss, its gradient over every parameter, and the stats, with ``x'`` given."""
    monkeypatch.setattr(recipes, "_pgd", lambda net, x, y, eps, alpha, steps: x_adv)
    loss, stats = sns_loss(model, x, y, net=model, eps=0.3, alpha=0.1, steps=1, state={} if state is None else state,
                           lam=lam, layers=layers, k=3, max_k=None, fuse=fuse)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return loss.detach(), torch.cat([g.flatten() for g in grads]), {k: float(v) for k, v in stats.items()}


def test_fused_sns_equals_unfused_on_a_model_without_batchnorm(monkeypatch, device):
    """smallcnn (no BatchNorm, no dropout), float64: loss, penalty and gradient agree to rounding."""
    torch.manual_seed(0)
    model = build("smallcnn", dataset="mnist5k").double().to(device).train()
    x, x_adv, y = _batch(device=device)
    layers = ["conv3", "conv4", "fc1"]
    loss_2, grad_2, stats_2 = _sns(model, x, x_adv, y, monkeypatch, fuse=False, layers=layers)
    loss_1, grad_1, stats_1 = _sns(model, x, x_adv, y, monkeypatch, fuse=True, layers=layers)
    assert stats_2["penalty"] > 0 and grad_2.abs().sum() > 0          # the comparison means something
    assert stats_1.keys() == stats_2.keys()
    for key in stats_2:
        assert stats_1[key] == pytest.approx(stats_2[key], rel=1e-6, abs=1e-9), key   # the penalty is float32
    assert torch.allclose(loss_1, loss_2, rtol=1e-6)
    assert torch.allclose(grad_1, grad_2, rtol=1e-5, atol=1e-8)


def test_fused_sns_keeps_each_halfs_batchnorm_statistics(monkeypatch):
    """With BatchNorm in train mode the fused step equals two separate passes: the loss, the
    gradient, and every layer's running mean, variance and batch count afterwards. A plain 2N
    pass (statistics of x and x' mixed) gives another loss: the semantics are a real choice."""
    x, x_adv, y = _batch()
    runs = {}
    for fuse in (False, True):
        model = _bn_net().double().train()
        runs[fuse] = _sns(model, x, x_adv, y, monkeypatch, fuse=fuse, layers=["5", "10"]), model.state_dict()
    (loss_2, grad_2, stats_2), state_2 = runs[False]
    (loss_1, grad_1, stats_1), state_1 = runs[True]
    assert stats_2["penalty"] > 0
    assert torch.allclose(loss_1, loss_2, rtol=1e-6) and torch.allclose(grad_1, grad_2, rtol=1e-5, atol=1e-8)
    for key in state_2:   # running_mean, running_var, num_batches_tracked (2: one per half), weights
        assert torch.allclose(state_1[key], state_2[key], rtol=1e-9, atol=0), key
    assert int(state_1["1.num_batches_tracked"]) == 2

    mixed = _bn_net().double().train()            # the same 2N batch with the statistics mixed
    logits_adv = mixed(torch.cat([x_adv, x]))[:len(x)]
    assert not torch.allclose(nn.functional.cross_entropy(logits_adv, y), torch.tensor(stats_2["ce"], dtype=x.dtype))


def test_part_statistics_covers_every_batchnorm_and_gives_forward_back():
    """Cumulative averages (momentum=None), BatchNorm1d on (N, C) and (N, C, L), unequal parts; the
    layers' own forward afterwards; layers in eval mode are left alone (their statistics are fixed)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.BatchNorm1d(3, momentum=None), nn.Linear(5, 4), nn.BatchNorm1d(3))
    frozen = net[2].eval()
    reference = nn.Sequential(nn.BatchNorm1d(3, momentum=None), nn.Linear(5, 4), nn.BatchNorm1d(3))
    reference.load_state_dict(net.state_dict())
    reference[2].eval()
    parts = [torch.randn(4, 3, 5), 3 + 2 * torch.randn(6, 3, 5)]
    fused = fused_forward(net, parts)
    separate = [reference(p) for p in parts]
    for got, want in zip(fused, separate):
        assert got.shape == want.shape and torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(net[0].running_var, reference[0].running_var)
    assert "forward" not in net[0].__dict__ and "forward" not in frozen.__dict__
    with pytest.raises(RuntimeError):
        with part_statistics(net, [4, 6]):
            net[0](torch.randn(3, 3, 5))        # the sizes do not add up: the error is torch's ...
    assert "forward" not in net[0].__dict__      # ... and the layer has its forward back


def test_fused_sns_through_a_compiled_model_equals_eager_and_compiles_once(monkeypatch):
    """train(compile=...) compiles the model in place; the fused step with its per-step BatchNorm
    patch gives eager's loss and gradient, and the later steps reuse the compiled graphs."""
    import torch._dynamo

    from nslib.precision import compiled

    x, x_adv, y = (t.float() if t.is_floating_point() else t for t in _batch())
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    eager, compiled_net = _bn_net().train(), _bn_net().train()
    graphs = []
    with compiled(compiled_net, "default"):
        for step in range(3):
            want = _sns(eager, x, x_adv, y, monkeypatch, fuse=True, layers=["5"])
            got = _sns(compiled_net, x, x_adv, y, monkeypatch, fuse=True, layers=["5"])
            assert torch.allclose(got[0], want[0], rtol=1e-4) and torch.allclose(got[1], want[1], rtol=1e-3, atol=1e-5)
            graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    assert graphs[0] > 0 and graphs[-1] == graphs[0], graphs   # compiled, and not again at every step
    assert torch.allclose(eager[1].running_mean, compiled_net[1].running_mean, atol=1e-5)


def test_training_with_fuse_logs_what_unfused_training_logs(device):
    from nslib.training import train

    train_set = load("mnist5k", "train", limit=100)
    logs = {}
    for fuse in (False, True):
        torch.manual_seed(0)
        logs[fuse] = train(build("smallcnn"), train_set, "sns", 1, eps=0.3, steps=2, batch_size=50, fuse=fuse,
                           progress=False, device=device, seed=0)[-1]
    for key in ("loss", "ce", "penalty", "sens_conv3"):
        assert logs[True][key] == pytest.approx(logs[False][key], rel=1e-4), key


def test_fuse_is_an_option_of_sns_only():
    with pytest.raises(TypeError, match="fuse must be True or False"):
        sns_loss(build("smallcnn"), torch.rand(2, 1, 28, 28), torch.tensor([0, 1]), net=build("smallcnn"), eps=0.0,
                 alpha=0.0, steps=1, state={}, fuse="yes")
    from nslib.training import TrainConfig

    with pytest.raises(ValueError, match="takes no option 'fuse'"):
        TrainConfig(recipe="pgd_at", options={"fuse": True})
