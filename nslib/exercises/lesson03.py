"""The checkers of notebook 03_sensitive_neurons_and_ablation: check_deactivation_hook,
check_stabilised_success_rate, check_stabilising_hook."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .checking import Checked, _call, _close, _report, checker, student_code, watched

__all__ = ["check_deactivation_hook", "check_stabilised_success_rate", "check_stabilising_hook"]


def _ablation_model() -> nn.Module:
    """A tiny conv + linear classifier of 8x8 grey images whose predictions vary with the input."""
    from collections import OrderedDict

    with torch.random.fork_rng():  # fixed weights, without touching the notebook's RNG
        torch.manual_seed(0)
        return nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 6, 3), relu=nn.ReLU(), flatten=nn.Flatten(),
                                         fc=nn.Linear(6 * 6 * 6, 5))).eval()


def _ablation_data(model: nn.Module):
    """Benign images, labels (4 in 5 equal to the model's prediction) and their FGSM twins."""
    from ..attacks import fgsm

    images = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        labels = model(images).argmax(dim=1)
    labels[::5] = (labels[::5] + 1) % 5
    return images, labels, fgsm(model, images, labels, eps=0.15)


@checker(checks=3, forbid=("nslib.ablation",))
def check_deactivation_hook(fn: Callable) -> Checked:
    """``fn(indices)`` must return a forward hook ``hook(module, inputs, output)`` that returns a
    copy of the output with the neurons ``indices`` (along dim 1) set to zero, as
    ``nslib.ablation.deactivate``; the layer's own output must not change."""
    from ..ablation import deactivate
    from ..hooks import capture, forward_hooks

    model = _ablation_model()
    images, _, _ = _ablation_data(model)
    for layer, indices in (("conv", [0, 2]), ("conv", [5]), ("fc", [1, 3, 4])):
        name = f"logits with neurons {indices} of {layer!r} deactivated"
        module = model.get_submodule(layer)
        done, hook = _call("deactivation hook", fn, list(indices))
        if not done:
            return
        if not callable(hook):
            _report("deactivation hook", False, f"expected a function (the hook), got {type(hook).__name__}")
            return
        with capture(model, [layer, "flatten"]) as out, torch.no_grad():
            model(images)
        output = out[layer].clone()
        zeroed = output.clone()
        zeroed[:, indices] = 0
        if not _check_hook_call(name, hook, module, out["flatten"] if layer == "fc" else images, output, zeroed,
                                lambda got, before, i=indices: _deactivation_diagnosis(got, before, i)):
            return
        with forward_hooks([(module, watched(hook))]), torch.no_grad():
            got = model(images)
        with deactivate(model, {layer: indices}), torch.no_grad():
            expected = model(images)
        _close(name, got, expected, atol=1e-5)


def _deactivation_diagnosis(got: torch.Tensor, output: torch.Tensor, indices) -> str:
    """What a wrong deactivated output looks like it did."""
    if torch.equal(got, output):
        return "nothing was set to zero: the hook returned the output unchanged"
    wrong = output.clone()
    wrong[indices] = 0
    if torch.equal(got, wrong):
        return (f"entries {indices} were zeroed along dim 0, which holds the images of the batch; a layer's "
                "neurons lie along dim 1")
    return f"only the neurons {indices} (along dim 1) should change, to 0, for every image of the batch"


@checker(checks=3, allow=("nslib.ablation.stabilise",))
def check_stabilised_success_rate(fn: Callable) -> Checked:
    """``fn(model, benign, adversarial, labels, neurons)`` must return the attack success rate
    when ``neurons`` (``{layer: indices}``) are stabilised: among the benign inputs the plain
    model classifies correctly, the fraction whose adversarial input is still misclassified
    with those neurons' benign outputs put back (``nslib.ablation.stabilise``)."""
    from ..ablation import stabilise

    model = _ablation_model()
    images, labels, adversarial = _ablation_data(model)
    with torch.no_grad():
        correct = model(images).argmax(dim=1) == labels
        plain = correct & (model(adversarial).argmax(dim=1) != labels)
    for neurons in ({"conv": [0, 2]}, {"conv": [1, 3, 5]}, {"fc": list(range(2))}):
        done, got = _call("stabilised success rate", fn, model, images.clone(), adversarial.clone(),
                          labels.clone(), neurons)
        if not done:
            return
        with stabilise(model, neurons, images), torch.no_grad():
            fooled = correct & (model(adversarial).argmax(dim=1) != labels)
        n_correct, n_fooled = correct.sum().item(), fooled.sum().item()
        expected, got = n_fooled / n_correct, float(got)
        _report(f"success rate with {neurons} stabilised", abs(got - expected) < 1e-6,
                f"expected {n_fooled}/{n_correct} = {expected:.4f}, got {got:.4f} | inputs: {len(labels)} benign "
                f"images, {n_correct} of them classified correctly by the plain model; with {neurons} stabilised, "
                f"{n_fooled} of those {n_correct} have an adversarial twin still misclassified | hint: "
                + _stabilised_mistake(got, n_fooled, len(labels), plain.sum().item() / n_correct))


def _stabilised_mistake(got: float, fooled: int, images: int, plain_rate: float) -> str:
    if abs(got - fooled / images) < 1e-6:
        return f"{fooled}/{images} divides by all images; the rate counts only the correctly classified ones"
    if abs(got - plain_rate) < 1e-6:
        return ("that is the success rate without stabilisation: the adversarial twins must be classified while "
                "the neurons hold their benign values")
    return ("correctness is judged on the benign images by the plain model; misclassification on the "
            "adversarial twins with the neurons stabilised")


def _replaced_along(output: torch.Tensor, benign: torch.Tensor, indices, dim: int) -> torch.Tensor | None:
    """``output`` with entries ``indices`` along ``dim`` taken from ``benign`` (None if out of range)."""
    if dim >= output.dim() or max(indices) >= output.shape[dim]:
        return None
    patched, index = output.clone(), torch.tensor(indices)
    patched.index_copy_(dim, index, benign.index_select(dim, index))
    return patched


def _stabilising_diagnosis(got: torch.Tensor, output: torch.Tensor, benign: torch.Tensor, indices) -> str:
    """What a wrong stabilised output looks like it did, for the common wrong answers."""
    zeroed = output.clone()
    zeroed[:, indices] = 0
    if torch.equal(got, benign):
        return "every neuron of the layer was replaced by its benign output: replace only the neurons `indices`"
    if torch.equal(got, zeroed):
        return ("the neurons were set to zero (that is deactivation, exercise 1): put back their benign "
                "values benign_output[:, indices]")
    if torch.equal(got, output):
        return "nothing was replaced: the hook returned the adversarial output unchanged"
    for dim in (0, *range(2, output.dim())):
        wrong = _replaced_along(output, benign, indices, dim)
        if wrong is not None and torch.equal(got, wrong):
            return (f"entries {indices} were replaced along dim {dim}; neurons lie along dim 1 "
                    "(dim 0 is the batch): index output[:, indices]")
    err = (got.double() - _replaced_along(output, benign, indices, 1).double()).abs().max().item()
    return (f"values differ from the expected output by up to {err:.3g}: only the neurons `indices` "
            "(along dim 1) should change, to their benign values")


def _check_hook_call(name: str, hook: Callable, module: nn.Module, layer_input: torch.Tensor,
                     output: torch.Tensor, expected: torch.Tensor, diagnose: Callable,
                     benign: torch.Tensor | None = None) -> bool:
    """Call the student's hook once by hand, as PyTorch would, on ``output`` (the layer's output),
    and name what went wrong: an error, ``None``, a changed ``output`` or ``benign``, a wrong value."""
    before, benign_copy = output.clone(), None if benign is None else benign.clone()
    try:
        with student_code(name):
            got = hook(module, (layer_input,), output)
    except Exception as error:  # noqa: BLE001 - the student's error, shown as a [FAIL] line
        return _report(name, False, f"your hook raised {type(error).__name__}: {error} | called as hook(module, "
                       f"(input,), output) with output of shape {tuple(output.shape)}")
    if benign is not None and not torch.equal(benign, benign_copy):
        return _report(name, False, "your hook changed benign_output (the stored benign tensor): build the new "
                       "output from a copy of `output`, never write into benign_output")
    why_copy = ("the layer's output tensor is shared: autograd may keep it for the backward pass, and other hooks "
                "and the caller hold it too, so writing into it changes their values behind their back")
    if got is None:
        changed = "it changed `output` in place, but " if not torch.equal(output, before) else ""
        return _report(name, False, f"your hook returned None: {changed}a forward hook replaces the layer's "
                       f"output only with what it returns; return a patched copy ({why_copy})")
    if not torch.equal(output, before):
        return _report(name, False, f"your hook wrote into the layer's own output tensor: patch a copy "
                       f"(output.clone()) and return it ({why_copy})")
    if not isinstance(got, torch.Tensor) or got.shape != output.shape:
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        return _report(name, False, f"expected a tensor of the layer's output shape {tuple(output.shape)}, "
                       f"got {shape}")
    if not torch.equal(got, expected):
        return _report(name, False, diagnose(got, before))
    return True


@checker(checks=4, forbid=("nslib.ablation",))
def check_stabilising_hook(fn: Callable) -> Checked:
    """``fn(indices, benign_output)`` must return a forward hook ``hook(module, inputs, output)``
    that returns a copy of ``output`` whose neurons ``indices`` (along dim 1) hold their values
    in ``benign_output`` (the layer's output on the paired benign batch), as
    ``nslib.ablation.stabilise``; a batch of another size than ``benign_output``'s is an error."""
    from ..ablation import stabilise
    from ..hooks import capture, forward_hooks

    model = _ablation_model()
    images, _, adversarial = _ablation_data(model)
    for layer, indices in (("conv", [0, 2]), ("conv", [5]), ("fc", [1, 3, 4])):
        name = f"logits with neurons {indices} of {layer!r} stabilised"
        module = model.get_submodule(layer)
        with capture(model, [layer]) as benign_out, torch.no_grad():
            model(images)
        with capture(model, [layer, "flatten"]) as adv_out, torch.no_grad():
            model(adversarial)
        benign = benign_out[layer]
        done, hook = _call("stabilising hook", fn, list(indices), benign)
        if not done:
            return
        if not callable(hook):
            _report("stabilising hook", False, f"expected a function (the hook), got {type(hook).__name__}")
            return
        layer_input = adv_out["flatten"] if layer == "fc" else adversarial
        output = adv_out[layer].clone()
        if not _check_hook_call(name, hook, module, layer_input, output,
                                _replaced_along(output, benign, indices, 1),
                                lambda got, before, i=indices: _stabilising_diagnosis(got, before, benign, i),
                                benign=benign):
            return
        with forward_hooks([(module, watched(hook))]), torch.no_grad():
            got = model(adversarial)
        with stabilise(model, {layer: indices}, images), torch.no_grad():
            expected = model(adversarial)
        _close(name, got, expected, atol=1e-6)
    done, hook = _call("stabilising hook", fn, [0], benign[:1].clone())  # benign output of 1 image
    if not done:
        return
    try:  # ... and the layer's output on a batch of 4
        watched(hook)(module, (adv_out["flatten"][:4],), adv_out[layer][:4].clone())
    except ValueError:
        _report("a batch of another size than benign_output raises ValueError", True, core=False)
    except Exception as error:  # noqa: BLE001 - the student's error, shown as a [FAIL] line
        _report("batch size mismatch", False, core=False,
                detail=f"your hook raised {type(error).__name__} ({error}); check output.shape[0] == "
                       "benign_output.shape[0] yourself and raise a ValueError naming both sizes")
    else:
        _report("batch size mismatch", False, core=False,
                detail="with benign_output of 1 image and a batch of 4, your hook broadcast the one benign image "
                       "over the whole batch; check output.shape[0] == benign_output.shape[0] and raise a "
                       "ValueError naming both sizes (the pairs must match)")
