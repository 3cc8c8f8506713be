"""Checkers for the notebooks' exercises: ``check_<what>(your_function)`` prints
``[PASS] <what>`` or ``[FAIL] <what>: expected ..., got ...`` (and returns nothing, so a
notebook cell shows only those lines).

A function that still raises ``NotImplementedError`` (the exercise stub) is reported as
``[FAIL] ... not implemented yet``; any other error is raised, so you see its traceback.
One section per notebook. Every checker builds its own small inputs (and model), so an
exercise cell runs on its own after the notebook's setup cell; that is how
``tests/test_exercises.py`` runs each checker on the stub and on the solution.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ["check_normalize", "check_neuron_count", "check_fgsm", "check_success_rate"]


def _report(name: str, ok: bool, detail: str = "") -> bool:
    print(f"[PASS] {name}" if ok else f"[FAIL] {name}: {detail}")
    return ok


def _call(name: str, fn: Callable, *args):
    """Call the student's function; ``(True, result)`` or ``(False, None)`` for a stub."""
    try:
        return True, fn(*args)
    except NotImplementedError:
        _report(name, False, "not implemented yet (the function still raises NotImplementedError)")
        return False, None


def _close(name: str, got, expected: torch.Tensor, atol: float = 1e-6) -> bool:
    if not isinstance(got, torch.Tensor):
        return _report(name, False, f"expected a tensor, got {type(got).__name__}")
    if got.shape != expected.shape:
        return _report(name, False, f"expected shape {tuple(expected.shape)}, got {tuple(got.shape)}")
    err = (got.double() - expected.double()).abs().max().item()
    return _report(name, err <= atol, f"values differ from the reference by up to {err:.3g} (allowed {atol:g})")


# --- 00_setup_and_data -------------------------------------------------------------------

def check_normalize(fn: Callable) -> None:
    """``fn(x, mean, std)`` must return ``(x - mean) / std`` per channel, for (N, C, H, W) ``x``."""
    from .models import Normalize

    gen = torch.Generator().manual_seed(0)
    for mean, std in (((0.1307,), (0.3081,)), ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616))):
        x = torch.rand(4, len(mean), 5, 5, generator=gen)
        done, got = _call("normalize", fn, x, mean, std)
        if not done:
            return
        _close(f"normalize with {len(mean)} channel(s)", got, Normalize(mean, std)(x))


def _tiny_model(seed: int = 0) -> nn.Module:
    from .models import build

    torch.manual_seed(seed)
    return build("smallcnn").eval()


def check_neuron_count(fn: Callable) -> None:
    """``fn(model, layer_name, example)`` must return how many neurons the layer has."""
    from .hooks import summary

    model, example = _tiny_model(), torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))

    for row in summary(model, example):
        if row["type"] not in ("Conv2d", "Linear"):
            continue
        done, got = _call("neuron count", fn, model, row["name"], example)
        if not done:
            return
        _report(f"neuron count of {row['name']}", got == row["neurons"],
                      f"expected {row['neurons']}, got {got}")


# --- 01_attacks ---------------------------------------------------------------------------

def check_fgsm(fn: Callable, eps: float = 0.1) -> None:
    """``fn(model, images, labels, eps)`` must equal FGSM (Goodfellow et al., 2015):
    ``clip(x + eps * sign(grad_x CE(f(x), y)), 0, 1)``."""
    from .attacks import fgsm

    gen = torch.Generator().manual_seed(0)
    model, images = _tiny_model(), torch.rand(16, 1, 28, 28, generator=gen)
    labels = torch.randint(0, 10, (16,), generator=gen)

    done, got = _call("fgsm", fn, model, images.clone(), labels, eps)
    if not done:
        return
    expected = fgsm(model, images, labels, eps=eps)
    _close("fgsm matches the reference", got, expected, atol=1e-5)
    if isinstance(got, torch.Tensor) and got.shape == images.shape:
        _report("fgsm stays in [0, 1]", bool(got.min() >= 0 and got.max() <= 1),
                      f"values in [{got.min().item():.3f}, {got.max().item():.3f}]")
        step = (got - images).abs().max().item()
        _report("fgsm stays within eps", step <= eps + 1e-6, f"max |x' - x| = {step:.4f} > eps = {eps}")


def check_success_rate(fn: Callable) -> None:
    """``fn(clean_pred, adv_pred, labels)``: among inputs classified correctly when clean,
    the fraction whose adversarial prediction is wrong."""
    cases = [
        ((torch.tensor([0, 1, 2, 3]), torch.tensor([0, 5, 5, 3]), torch.tensor([0, 1, 2, 9])), 2 / 3),
        ((torch.tensor([1, 1]), torch.tensor([1, 1]), torch.tensor([1, 1])), 0.0),
    ]
    for args, expected in cases:
        done, got = _call("success rate", fn, *args)
        if not done:
            return
        got = float(got)
        _report(f"success rate on {args[0].tolist()}", abs(got - expected) < 1e-6,
                      f"expected {expected:.4f}, got {got:.4f}")


# --- 02_neuron_sensitivity ----------------------------------------------------------------

__all__ += ["check_sensitivity_from_activations", "check_top_k_neurons", "check_sensitivity_ratio"]


def check_sensitivity_from_activations(fn: Callable) -> None:
    """``fn(benign_act, adv_act)`` must return ``sigma_l`` of shape ``(neurons,)``:
    ``(1/N) sum_j (1/dim) ||F_l^i(x_j) - F_l^i(x'_j)||_1`` for conv ``(N, C, H, W)`` and
    linear ``(N, units)`` activations."""
    from .sensitivity import neuron_distance

    # A case you can check on paper: 2 pairs, 2 channels of 2x2 positions.
    benign = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]],
                           [[[1.0, 1.0], [1.0, 1.0]], [[2.0, 2.0], [2.0, 2.0]]]])
    adv = torch.tensor([[[[1.0, 0.0], [3.0, 8.0]], [[1.0, -1.0], [1.0, -1.0]]],
                        [[[1.0, 1.0], [1.0, 1.0]], [[2.0, 2.0], [2.0, 6.0]]]])
    # channel 0: pair 1 (0 + 2 + 0 + 4) / 4 = 1.5, pair 2: 0  -> 0.75
    # channel 1: pair 1 (1 + 1 + 1 + 1) / 4 = 1.0, pair 2: 1  -> 1.0
    gen = torch.Generator().manual_seed(0)
    conv_a, conv_b = torch.randn(6, 4, 5, 5, generator=gen), torch.randn(6, 4, 5, 5, generator=gen)
    lin_a, lin_b = torch.randn(6, 7, generator=gen), torch.randn(6, 7, generator=gen)
    cases = [("hand-made 2x2 case", benign, adv, torch.tensor([0.75, 1.0])),
             ("conv activations (6, 4, 5, 5)", conv_a, conv_b, neuron_distance(conv_a, conv_b).mean(0)),
             ("linear activations (6, 7)", lin_a, lin_b, neuron_distance(lin_a, lin_b).mean(0))]
    for name, a, b, expected in cases:
        done, got = _call("sensitivity from activations", fn, a.clone(), b.clone())
        if not done:
            return
        _close(f"sensitivity on the {name}", got, expected, atol=1e-5)


def check_top_k_neurons(fn: Callable) -> None:
    """``fn(sigma, k)`` must return the indices of the ``k`` largest values, largest first,
    ties to the lower index (as ``nslib.sensitivity.sensitive_neurons``)."""
    from .sensitivity import sensitive_neurons

    gen = torch.Generator().manual_seed(0)
    cases = [(torch.tensor([0.1, 0.9, 0.5, 0.9, 0.2]), 2), (torch.tensor([0.3, 0.7, 0.7, 0.7, 0.1]), 3),
             (torch.rand(64, generator=gen), 6), (torch.rand(10, generator=gen), 10)]
    for sigma, k in cases:
        done, got = _call("top-k neurons", fn, sigma.clone(), k)
        if not done:
            return
        expected = sensitive_neurons({"layer": sigma}, k=k)["layer"]
        got_list = got.tolist() if isinstance(got, torch.Tensor) else got
        shown = [round(v, 3) for v in sigma.tolist()] if sigma.numel() <= 5 else f"{sigma.numel()} values"
        _report(f"top-{k} of {shown}", got_list == expected.tolist(),
                f"expected {expected.tolist()}, got {got_list}")


def check_sensitivity_ratio(fn: Callable) -> None:
    """``fn(sigma_a, sigma_b)`` must return ``{layer: mean(sigma_a[layer]) / mean(sigma_b[layer])}``."""
    gen = torch.Generator().manual_seed(0)
    sigma_a = {"conv1": torch.tensor([1.0, 2.0, 3.0]), "fc1": torch.rand(20, generator=gen)}
    sigma_b = {"conv1": torch.tensor([4.0, 4.0, 4.0]), "fc1": torch.rand(20, generator=gen) + 0.5}
    done, got = _call("sensitivity ratio", fn, sigma_a, sigma_b)
    if not done:
        return
    if not isinstance(got, dict) or set(got) != set(sigma_a):
        keys = sorted(got) if isinstance(got, dict) else type(got).__name__
        _report("sensitivity ratio", False, f"expected a dict with keys {sorted(sigma_a)}, got {keys}")
        return
    for layer in sigma_a:
        expected = (sigma_a[layer].double().mean() / sigma_b[layer].double().mean()).item()
        value = float(got[layer])
        _report(f"sensitivity ratio of {layer}", abs(value - expected) < 1e-5,
                f"expected {expected:.4f}, got {value:.4f}")


# --- 03_sensitive_neurons_and_ablation ----------------------------------------------------

__all__ += ["check_deactivation_hook", "check_stabilised_success_rate"]


def _ablation_model() -> nn.Module:
    """A tiny conv + linear classifier of 8x8 grey images whose predictions vary with the input."""
    from collections import OrderedDict

    with torch.random.fork_rng():  # fixed weights, without touching the notebook's RNG
        torch.manual_seed(0)
        return nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 6, 3), relu=nn.ReLU(), flatten=nn.Flatten(),
                                         fc=nn.Linear(6 * 6 * 6, 5))).eval()


def _ablation_data(model: nn.Module):
    """Benign images, labels (4 in 5 equal to the model's prediction) and their FGSM twins."""
    from .attacks import fgsm

    images = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        labels = model(images).argmax(dim=1)
    labels[::5] = (labels[::5] + 1) % 5
    return images, labels, fgsm(model, images, labels, eps=0.15)


def check_deactivation_hook(fn: Callable) -> None:
    """``fn(indices)`` must return a forward hook ``hook(module, inputs, output)`` that returns
    the output with the neurons ``indices`` (along dim 1) set to zero, as
    ``nslib.ablation.deactivate``."""
    from .ablation import deactivate
    from .hooks import forward_hooks

    model = _ablation_model()
    images, _, _ = _ablation_data(model)
    for layer, indices in (("conv", [0, 2]), ("conv", [5]), ("fc", [1, 3, 4])):
        done, hook = _call("deactivation hook", fn, indices)
        if not done:
            return
        if not callable(hook):
            _report("deactivation hook", False, f"expected a function (the hook), got {type(hook).__name__}")
            return
        with forward_hooks([(model.get_submodule(layer), hook)]), torch.no_grad():
            got = model(images)
        with deactivate(model, {layer: indices}), torch.no_grad():
            expected = model(images)
        _close(f"logits with neurons {indices} of {layer!r} deactivated", got, expected, atol=1e-5)


def check_stabilised_success_rate(fn: Callable) -> None:
    """``fn(model, benign, adversarial, labels, neurons)`` must return the attack success rate
    when ``neurons`` (``{layer: indices}``) are stabilised: among the benign inputs the plain
    model classifies correctly, the fraction whose adversarial input is still misclassified
    with those neurons' benign outputs put back (``nslib.ablation.stabilise``)."""
    from .ablation import stabilise

    model = _ablation_model()
    images, labels, adversarial = _ablation_data(model)
    with torch.no_grad():
        correct = model(images).argmax(dim=1) == labels
    for neurons in ({"conv": [0, 2]}, {"conv": [1, 3, 5]}, {"fc": list(range(2))}):
        done, got = _call("stabilised success rate", fn, model, images.clone(), adversarial.clone(),
                          labels.clone(), neurons)
        if not done:
            return
        with stabilise(model, neurons, images), torch.no_grad():
            fooled = correct & (model(adversarial).argmax(dim=1) != labels)
        expected = fooled.sum().item() / correct.sum().item()
        got = float(got)
        _report(f"success rate with {neurons} stabilised", abs(got - expected) < 1e-6,
                f"expected {expected:.4f}, got {got:.4f}")


# --- 04_robust_training_and_sns -----------------------------------------------------------

__all__ += ["check_sns_penalty", "check_trades_kl", "check_eps_ramp"]


def check_sns_penalty(fn: Callable) -> None:
    """``fn(benign_act, adv_act, k)`` must return the SNS penalty of one layer on one batch:
    ``sum_{i in topk} (1/N) sum_j (1/dim) ||F^i(x_j) - F^i(x'_j)||_1``, the ``k`` (an int)
    neurons chosen by this batch's own sensitivity, and differentiable in both activations
    (only the choice of neurons is made without gradient), as ``nslib.training.sns_loss``."""
    from .sensitivity import neuron_distance, sensitive_neurons

    def reference(benign, adv, k):
        dist = neuron_distance(benign, adv)
        index = sensitive_neurons({"layer": dist.detach().mean(0)}, k)["layer"]
        return dist[:, index].sum() / benign.shape[0]

    # A case you can check on paper: 2 samples, 4 linear units, benign all zero.
    # sigma = mean over the 2 samples of |adv| = [2, 1, 0, 3]; top-2 = units 3 and 0: 3 + 2 = 5.
    hand_benign = torch.zeros(2, 4)
    hand_adv = torch.tensor([[1.0, -2.0, 0.0, 4.0], [3.0, 0.0, 0.0, -2.0]])
    gen = torch.Generator().manual_seed(0)
    conv = (torch.randn(8, 6, 5, 5, generator=gen), torch.randn(8, 6, 5, 5, generator=gen))
    lin = (torch.randn(8, 20, generator=gen), torch.randn(8, 20, generator=gen))
    cases = [("hand-made case, k=2", hand_benign, hand_adv, 2), ("conv activations (8, 6, 5, 5), k=3", *conv, 3),
             ("linear activations (8, 20), k=5", *lin, 5)]
    for name, benign, adv, k in cases:
        ref_in = (benign.clone().requires_grad_(True), adv.clone().requires_grad_(True))
        expected = reference(*ref_in, k)
        expected_grad = torch.autograd.grad(expected, ref_in)
        got_in = (benign.clone().requires_grad_(True), adv.clone().requires_grad_(True))
        done, got = _call("SNS penalty", fn, *got_in, k)
        if not done:
            return
        if not _close(f"SNS penalty on the {name}", got, expected.detach(), atol=1e-5):
            continue
        if not got.requires_grad:
            _report(f"SNS penalty is differentiable ({name})", False,
                    "the result carries no gradient; detach only the sensitivity used to choose the neurons")
            continue
        grads = torch.autograd.grad(got, got_in, allow_unused=True)
        grads = [torch.zeros_like(x) if g is None else g for x, g in zip(got_in, grads)]
        err = max((g - e).abs().max().item() for g, e in zip(grads, expected_grad))
        _report(f"gradient of the SNS penalty ({name})", err <= 1e-5,
                f"the gradient differs from the reference by up to {err:.3g}: is the choice of "
                "neurons detached, and are the distances averaged over the batch?")


def check_trades_kl(fn: Callable) -> None:
    """``fn(logits_clean, logits_adv)`` must return TRADES' robustness term
    ``KL(softmax f(x) || softmax f(x'))``, summed over classes and averaged over the batch."""
    def reference(clean, adv):
        clean, adv = clean.double(), adv.double()
        p = clean.softmax(1)
        return (p * (clean.log_softmax(1) - adv.log_softmax(1))).sum(1).mean()

    gen = torch.Generator().manual_seed(0)
    same = torch.randn(4, 10, generator=gen)
    # p = (1/2, 1/2), q = (1/4, 3/4): KL(p||q) = 1/2 ln 2 + 1/2 ln(2/3) = 1/2 ln(4/3) = 0.1438
    hand = (torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, float(torch.tensor(3.0).log())]]))
    rand = (3 * torch.randn(16, 10, generator=gen), 3 * torch.randn(16, 10, generator=gen))
    cases = [("identical logits (KL = 0)", same, same.clone()), ("hand-made case (KL = ln(4/3)/2)", *hand),
             ("random logits (16, 10)", *rand)]
    for name, clean, adv in cases:
        done, got = _call("TRADES KL", fn, clean.clone(), adv.clone())
        if not done:
            return
        if isinstance(got, (int, float)):
            got = torch.tensor(float(got))
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.reshape(())
        _close(f"TRADES KL term on {name}", got, reference(clean, adv), atol=1e-5)


def check_eps_ramp(fn: Callable) -> None:
    """``fn(eps, epoch, step, steps_per_epoch, warmup_epochs)`` must return the linear eps
    warm-up of ``nslib.training.ramp``: ``eps * min(1, (epoch + (step + 1) / steps_per_epoch)
    / warmup_epochs)`` (epoch and step from 0), and ``eps`` itself when ``warmup_epochs`` is 0."""
    from .training import ramp

    cases = [(0.3, 0, 49, 100, 16), (0.3, 0, 0, 40, 16), (0.3, 15, 39, 40, 16), (0.3, 30, 5, 40, 16),
             (8 / 255, 2, 9, 10, 5), (0.3, 0, 0, 40, 0), (0.3, 1, 19, 40, 2.5)]
    for args in cases:
        done, got = _call("eps ramp", fn, *args)
        if not done:
            return
        expected = ramp(*args)
        ok = isinstance(got, (int, float)) or (isinstance(got, torch.Tensor) and got.numel() == 1)
        value = float(got) if ok else float("nan")
        _report(f"eps ramp at epoch {args[1]}, step {args[2]} of {args[3]}, warm-up {args[4]:g}",
                ok and abs(value - expected) < 1e-9,
                f"expected {expected:.6f}, got {got if not ok else f'{value:.6f}'}")


# --- 05_your_own_model --------------------------------------------------------------------

__all__ += ["check_relative_sensitivity", "check_top_k_overlap"]


def _own_model() -> nn.Module:
    """A small nn.Module that nslib did not build: conv -> ReLU -> flatten -> linear (layers "0", "3")."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()


def check_relative_sensitivity(fn: Callable) -> None:
    """``fn(model, benign, adversarial, layer)`` must return, as a float,
    ``mean |F_l(x) - F_l(x')| / mean |F_l(x)|`` (means over images, neurons and positions):
    the layer sensitivity divided by the layer's typical benign activation."""
    import copy

    model = _own_model()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 8, 8, generator=gen)
    x_adv = (x + 0.1 * (2 * torch.rand(x.shape, generator=gen) - 1)).clamp(0, 1)
    with torch.no_grad():  # the reference, straight from the modules (no hooks)
        outputs = {"0": (model[0](x), model[0](x_adv)), "3": (model(x), model(x_adv))}
    got_last = None
    for layer, (benign, adversarial) in outputs.items():
        expected = ((benign - adversarial).abs().mean() / benign.abs().mean()).item()
        done, got = _call("relative sensitivity", fn, model, x, x_adv, layer)
        if not done:
            return
        if not isinstance(got, (float, int, torch.Tensor)) or (isinstance(got, torch.Tensor) and got.numel() != 1):
            _report(f"relative sensitivity of layer {layer!r}", False, f"expected a float, got {got!r:.80}")
            return
        got_last = float(got)
        _report(f"relative sensitivity of layer {layer!r}", abs(got_last - expected) <= 1e-5 * max(1.0, expected),
                f"expected {expected:.5f}, got {got_last:.5f}")
    scaled = copy.deepcopy(model)  # the same network with the last layer's output scaled by 10
    with torch.no_grad():
        scaled[3].weight.mul_(10)
        scaled[3].bias.mul_(10)
    done, got = _call("relative sensitivity", fn, scaled, x, x_adv, "3")
    if done:
        _report("unchanged when the layer's output is scaled by 10", abs(float(got) - got_last) <= 1e-5 * max(1.0, got_last),
                f"got {float(got):.5f} instead of {got_last:.5f}")


def check_top_k_overlap(fn: Callable) -> None:
    """``fn(sigma_a, sigma_b, k)`` must return the fraction (a float in [0, 1]) of the ``k``
    most sensitive neurons of ``sigma_a`` that are also among the ``k`` most sensitive of ``sigma_b``."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(50, generator=gen), torch.rand(50, generator=gen)
    expected_random = len(set(a.topk(10).indices.tolist()) & set(b.topk(10).indices.tolist())) / 10
    cases = [("identical", a, a.clone(), 5, 1.0),
             ("reversed", torch.arange(10.0), -torch.arange(10.0), 3, 0.0),
             ("hand case", torch.tensor([0.9, 0.8, 0.1, 0.2, 0.7]), torch.tensor([0.9, 0.1, 0.8, 0.2, 0.05]), 2, 0.5),
             ("random", a, b, 10, expected_random)]
    for name, sigma_a, sigma_b, k, expected in cases:
        done, got = _call("top-k overlap", fn, sigma_a.clone(), sigma_b.clone(), k)
        if not done:
            return
        value = float(got)
        _report(f"top-{k} overlap, {name}", abs(value - expected) < 1e-9, f"expected {expected:.2f}, got {value:.2f}")
