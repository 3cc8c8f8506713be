"""The precision switch (nslib.precision): bf16 autocast + channels_last for attacks and the
sensitivity, with fp32 as the reference. Parity is tested on the shipped models: robust
accuracy under bf16 PGD-40 within 0.5 points of fp32 (on the CPU under CPU autocast when
the test device is the CPU), and the option is never silently ignored."""
import pytest
import torch

from nslib import data, sensitivity
from nslib.attacks import PGD, pgd
from nslib.attacks.base import input_gradient
from nslib.checkpoints import load_pretrained
from nslib.evaluation import accuracy
from nslib.models import build
from nslib.precision import PRECISIONS, autocast, channels_last, check_precision, prepare_model


def test_an_unknown_precision_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown precision 'bf32'; choose one of \['fp32', 'bf16', 'fp16'\]"):
        check_precision("bf32")
    model = build("smallcnn")
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        PGD(model, eps=0.3, precision="half")
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        pgd(model, torch.rand(2, 1, 28, 28), torch.tensor([0, 1]), precision="half")
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        sensitivity.neuron_sensitivity(model, torch.rand(2, 1, 28, 28), torch.rand(2, 1, 28, 28), ["fc1"],
                                       precision="half")


def test_autocast_lowers_the_math_and_fp32_is_untouched(device):
    layer = torch.nn.Linear(4, 2).to(device)
    x = torch.ones(3, 4, device=device)
    with autocast("fp32", device):
        assert layer(x).dtype == torch.float32
    with autocast("bf16", device):
        assert layer(x).dtype == torch.bfloat16
    images = torch.rand(2, 3, 8, 8)
    assert channels_last(images, "fp32") is images
    assert channels_last(images, "bf16").is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(channels_last(images, "bf16"), images)
    model = prepare_model(build("resnet18"), "bf16")
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and conv.weight.dtype == torch.float32
    assert set(PRECISIONS) == {"fp32", "bf16", "fp16"}


def test_bf16_pgd_keeps_the_attack_contract_and_is_not_ignored(device):
    model, _ = load_pretrained("mnist_pgd_at")
    model = model.to(device).eval()
    x, y = data.load("mnist5k", "test").tensors(64)
    x, y = x.to(device), y.to(device)
    grad32 = input_gradient(model, x, y)
    grad16 = input_gradient(model, x, y, precision="bf16")
    assert grad16.dtype == torch.float32 and grad16.shape == x.shape
    moved = grad32 != 0
    agree = (grad16.sign() == grad32.sign())[moved].float().mean().item()
    assert agree > 0.8, f"bf16 and fp32 input gradients agree in sign on only {agree:.0%} of the pixels"
    torch.manual_seed(0)
    adv32 = PGD(model, eps=0.3, alpha=0.01, steps=10)(x, y)
    torch.manual_seed(0)
    atk = PGD(model, eps=0.3, alpha=0.01, steps=10, precision="bf16")
    adv16 = atk(x, y)
    assert "precision='bf16'" in repr(atk)
    assert adv16.dtype == torch.float32 and float((adv16 - x).abs().max()) <= 0.3 + 1e-6
    assert float(adv16.min()) >= 0 and float(adv16.max()) <= 1
    assert not torch.equal(adv16, adv32), "bf16 gave fp32's exact images: the precision was ignored"
    assert not model.training and all(p.requires_grad for p in model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mnist_pgd_at", "mnist_sns"])
def test_bf16_pgd40_robust_accuracy_is_within_half_a_point_of_fp32(name, device):
    model, _ = load_pretrained(name)
    model = model.to(device).eval()
    x, y = data.load("mnist5k", "test").tensors(500)
    x, y = x.to(device), y.to(device)
    acc = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        adv = pgd(model, x, y, eps=0.3, alpha=0.01, steps=40, precision=precision)
        acc[precision] = accuracy(model, adv, y)   # the model itself judged in fp32, the reference
    assert 0.8 < acc["fp32"] < 1, acc            # a robust model: the comparison means something
    assert abs(acc["bf16"] - acc["fp32"]) <= 0.005, f"{name}: PGD-40 accuracy fp32 vs bf16 {acc}"


def test_bf16_sensitivity_matches_fp32_within_a_few_percent(device):
    model, _ = load_pretrained("mnist_standard")
    model = model.to(device).eval()
    x, y = data.load("mnist5k", "test").tensors(128)
    x = x.to(device)
    x_adv = (x + 0.3 * torch.randn_like(x).sign()).clamp(0, 1)
    layers = ["conv1", "conv3", "fc1"]
    sigma32 = sensitivity.neuron_sensitivity(model, x, x_adv, layers)
    sigma16 = sensitivity.neuron_sensitivity(model, x, x_adv, layers, precision="bf16")
    for name in layers:
        assert sigma16[name].dtype == torch.float32
        ratio = sigma16[name].mean() / sigma32[name].mean()
        assert abs(float(ratio) - 1) < 0.05, f"{name}: bf16/fp32 layer sensitivity {float(ratio):.3f}"
        assert not torch.equal(sigma16[name], sigma32[name]), f"{name}: bf16 gave fp32's exact values"


def test_sns_through_a_compiled_forward_captures_each_steps_activations(device):
    """``train(compile=True)`` runs the loss's forward passes through ``torch.compile``. SNS
    registers its capture hooks afresh at every step around those passes; compiled, they must
    still capture that step's activations: the loss and the gradient equal the eager ones at
    every step (a stale or empty capture would change the penalty, or raise)."""
    import torch._dynamo

    from nslib.recipes import sns_loss

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()   # reset() keeps them
    torch.manual_seed(0)
    net = build("smallcnn").to(device)
    compiled = torch.compile(net)
    images, labels = data.load("mnist5k", "train").tensors(32)
    for step in range(3):   # from the second step on, new hooks meet an already compiled graph
        x, y = images[8 * step:8 * step + 8].to(device), labels[8 * step:8 * step + 8].to(device)
        results = {}
        for name, forward in (("eager", net), ("compiled", compiled)):
            torch.manual_seed(step)   # the same PGD random start
            loss, stats = sns_loss(forward, x, y, net=net, eps=0.3, alpha=0.1, steps=2, state={}, lam=1.0)
            grads = torch.autograd.grad(loss, list(net.parameters()))
            results[name] = loss.item(), float(stats["penalty"]), torch.cat([g.flatten() for g in grads])
        (loss_e, pen_e, grad_e), (loss_c, pen_c, grad_c) = results["eager"], results["compiled"]
        assert pen_e > 0 and pen_c == pytest.approx(pen_e, rel=1e-4) and loss_c == pytest.approx(loss_e, rel=1e-4)
        assert torch.allclose(grad_c, grad_e, rtol=1e-3, atol=1e-5), step
        with torch.no_grad():   # a training step, so the next step's weights are new
            for parameter, grad in zip(net.parameters(), grads):
                parameter -= 0.1 * grad
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0   # it was compiled, not ignored
