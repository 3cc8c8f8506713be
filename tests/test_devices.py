"""Devices: nothing in nslib depends on torch's default device, outputs come back where the
inputs are, and on CUDA the attacks never make the CPU wait for the GPU.

The first test catches, without a GPU, the bug behind most CUDA crashes: a tensor made with
``torch.zeros``/``arange``/``tensor``/``randperm``... and no ``device=``, which lands on the
default device while the model's tensors live elsewhere. The model and the data stay on the
test device; only the *default* device is ``meta`` (as a user's
``torch.set_default_device("cuda")`` would make it ``cuda``), so such a stray tensor either
has no data (the call fails) or shows up in the output (the device check fails).
"""
from collections import OrderedDict

import pytest
import torch
from torch import nn

import nslib.attacks as A
from nslib import ablation, evaluation, hooks, recipes, sensitivity
from nslib.utils import start_range_check


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: threads only add overhead


def small_cnn(device):
    """(N, 1, 8, 8) -> 3 classes: conv (4 channels) -> ReLU -> linear (6 units) -> ReLU -> linear."""
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(1, 4, 3)), ("relu1", nn.ReLU()), ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(4 * 6 * 6, 6)), ("relu2", nn.ReLU()), ("fc2", nn.Linear(6, 3)),
    ])).eval().to(device)


def batch(device, n=6):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 8, 8, generator=g).to(device), (torch.arange(n) % 3).to(device)


def devices_in(value) -> set:
    """The device types of every tensor in ``value`` (nested dicts, lists and tuples)."""
    if isinstance(value, torch.Tensor):
        return {value.device.type}
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return set().union(set(), *(devices_in(v) for v in value))
    return set()


def library_calls(model, x, y):
    """name -> (call, the device type its tensors must have); every public path with a device subject."""
    x_adv = (x + 0.1 * torch.sign(torch.randn_like(x))).clamp(0, 1)
    sigma = sensitivity.neuron_sensitivity(model, x, x_adv, ["conv", "fc1"])
    suite = {"clean": {"attack": "clean"}, "fgsm": {"attack": "fgsm", "eps": 0.1},
             "pgd": {"attack": "pgd", "eps": 0.1, "alpha": 0.05, "steps": 2, "restarts": 2},
             "cw": {"attack": "cw", "c": 1.0, "steps": 2, "l2_max": 1.0}}

    def in_block(manager):
        with manager, torch.no_grad():
            return model(x_adv)

    on, cpu = x.device.type, "cpu"
    return {
        **{name: (lambda cls=cls: cls(model, **({"steps": 2} if cls is not A.FGSM else {}))(x, y), on)
           for name, cls in A.ATTACKS.items()},
        "pgd_l2": (lambda: A.pgd(model, x, y, eps=0.5, alpha=0.2, steps=2, norm="L2"), on),
        "pgd_cw_loss": (lambda: A.pgd(model, x, y, eps=0.1, alpha=0.05, steps=2, loss="cw", kappa=1.0), on),
        "neuron_sensitivity": (lambda: sensitivity.neuron_sensitivity(model, x, x_adv, ["conv", "fc1"]), cpu),
        "neuron_sensitivity_attack": (lambda: sensitivity.neuron_sensitivity(
            model, x, layers=["fc1"], attack=A.FGSM(model, eps=0.1), labels=y, batch_size=4), cpu),
        "sensitive_neurons": (lambda: sensitivity.sensitive_neurons(sigma, k=2), cpu),
        "select_random": (lambda: ablation.select_neurons(sigma["fc1"], 3, "random", seed=0), cpu),
        "neuron_means": (lambda: ablation.neuron_means(model, x, ["conv"]), on),
        "deactivate": (lambda: in_block(ablation.deactivate(model, {"conv": [1, 2]})), on),
        "deactivate_mean": (lambda: in_block(ablation.deactivate(model, {"fc1": [0]}, value="mean", baseline=x)), on),
        "stabilise": (lambda: in_block(ablation.stabilise(model, {"conv": [0], "fc1": [1, 4]}, x)), on),
        "sweep_stabilise": (lambda: ablation.ablation_sweep(model, x, x_adv, y, sigma, "fc1", [0, 2],
                                                            random_seeds=(0,), batch_size=4), cpu),
        "sweep_deactivate_mean": (lambda: ablation.ablation_sweep(model, x, x_adv, y, sigma, "conv", [1],
                                                                  mode="deactivate", value="mean",
                                                                  random_seeds=(0,)), cpu),
        "activations": (lambda: hooks.activations(model, x, ["conv", "fc2"]), on),
        "summary": (lambda: hooks.summary(model, x[:1]), cpu),
        "accuracy": (lambda: evaluation.accuracy(model, x, y), cpu),
        "robustness_table": (lambda: evaluation.robustness_table(model, (x, y), suite), cpu),
        "robust_accuracy_curve": (lambda: evaluation.robust_accuracy_curve(model, x, y, [0.0, 0.1], steps=2), cpu),
        "sns_loss": (lambda: recipes.sns_loss(model, x, y, net=model, eps=0.1, alpha=0.05, steps=2, state={},
                                              layers=["conv", "fc1"], k=2), on),
        "sns_loss_running_topk": (lambda: [recipes.sns_loss(model, x, y, net=model, eps=0.1, alpha=0.05, steps=1,
                                                            state=state, layers=["fc1"], k=2, topk_every=2)[0]
                                           for state in [{}] for _ in range(3)], on),
        "trades_loss": (lambda: recipes.trades_loss(model, x, y, net=model, eps=0.1, alpha=0.05, steps=2), on),
    }


@pytest.mark.parametrize("name", list(library_calls(small_cnn("cpu"), *batch("cpu"))))
def test_nothing_depends_on_the_default_device(name, device):
    model, (x, y) = small_cnn(device), batch(device)
    call, expected = library_calls(model, x, y)[name]
    # A tensor made without device= lands on the default device: "meta" (no data) on the CPU
    # run. On CUDA it is the CPU, where such a tensor then meets CUDA ones and raises: torch's
    # own Adam (C&W) keeps its step count on the default device by design, which meta breaks.
    stray = "cpu" if device.type == "cuda" else "meta"
    with torch.device(stray):
        result = call()
    assert devices_in(result) <= {expected}, f"{name} returned tensors on {devices_in(result)}"


def test_attack_outputs_stay_on_the_device_of_the_model_whatever_the_input(device):
    model, (x, y) = small_cnn(device), batch("cpu")
    for name, cls in A.ATTACKS.items():
        adv = cls(model, **({"steps": 2} if name != "fgsm" else {}))(x, y)  # CPU images, model on the device
        assert adv.device.type == device.type, name


def test_the_range_check_answers_at_once_on_the_cpu_and_when_asked_on_cuda(device):
    start_range_check(torch.rand(3, 2, device=device))()
    start_range_check(torch.empty(0, 3, device=device))()  # nothing to check
    start_range_check(torch.tensor([[0.5, float("nan")]], device=device))()  # NaN passes, as it always did
    bad = torch.tensor([[0.5, 2.0], [-0.25, 1.0]], device=device)
    message = r"images must lie in \[0, 1\].*got values in \[-0.25, 2\]"
    if device.type == "cuda":
        verdict = start_range_check(bad)  # queued: nothing waited for yet
        with pytest.raises(ValueError, match=message):
            verdict()
    else:
        with pytest.raises(ValueError, match=message):
            start_range_check(bad)


def test_attacks_do_not_make_the_cpu_wait_for_the_gpu(device):
    """FGSM and PGD queue their work without one host-device synchronisation (CUDA only)."""
    if device.type != "cuda":
        pytest.skip("a CUDA test: on the CPU there is nothing to wait for")
    model, (x, y) = small_cnn(device), batch(device)
    A.fgsm(model, x, y, eps=0.1), A.pgd(model, x, y, eps=0.1, steps=2)  # warm-up: lazy CUDA set-up may sync
    torch.cuda.synchronize(device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for attack in (lambda: A.fgsm(model, x, y, eps=0.1), lambda: A.pgd(model, x, y, eps=0.1, steps=2),
                       lambda: A.pgd(model, x, y, eps=0.5, alpha=0.2, steps=2, norm="L2")):
            attack()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_torchrun_device_and_backend_follow_the_device_asked_for(monkeypatch):
    from nslib.distributed import start_process_group, train_device

    assert train_device("cuda", 1, 2) == torch.device("cuda:1")  # "cuda" under torchrun: this rank's GPU
    assert train_device("cuda:0", 1, 2) == torch.device("cuda:0") and train_device("cuda", 0, 1) == torch.device("cuda")
    assert train_device(torch.device("cpu"), 1, 2) == torch.device("cpu")
    backends = []
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group", backends.append)
    for device in ("cpu", torch.device("cpu"), "cuda:1", torch.device("cuda")):
        start_process_group(2, device)
    assert backends == ["gloo", "gloo", "nccl", "nccl"]
