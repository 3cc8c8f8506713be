"""The checkers of notebook 01_attacks: check_fgsm, check_success_rate, check_pgd."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .checking import Checked, _call, _close, _report, checker, tiny_model

__all__ = ["check_fgsm", "check_success_rate", "check_pgd"]


_ATTACKS = ("nslib.attacks", "torchattacks")


@checker(checks=3, forbid=_ATTACKS)
def check_fgsm(fn: Callable, eps: float = 0.1) -> Checked:
    """``fn(model, images, labels, eps)`` must equal FGSM (Goodfellow et al., 2015):
    ``clip(x + eps * sign(grad_x CE(f(x), y)), 0, 1)``."""
    from ..attacks import fgsm

    gen = torch.Generator().manual_seed(0)
    model, images = tiny_model(), torch.rand(16, 1, 28, 28, generator=gen)
    labels = torch.randint(0, 10, (16,), generator=gen)

    done, got = _call("fgsm", fn, model, images.clone(), labels, eps)
    if not done:
        return
    expected = fgsm(model, images, labels, eps=eps)
    shaped = isinstance(got, torch.Tensor) and got.shape == images.shape
    wrong = shaped and (got.detach() - expected).abs().max().item() > 1e-5
    _close("fgsm matches the reference", got, expected, atol=1e-5,
           hint=_fgsm_mistake(model, images, labels, eps, got) if wrong else "")
    if shaped:
        _report("fgsm stays in [0, 1]", bool(got.min() >= 0 and got.max() <= 1),
                f"values in [{got.min().item():.3f}, {got.max().item():.3f}]", core=False)
        step = (got - images).abs().max().item()
        _report("fgsm stays within eps", step <= eps + 1e-6, f"max |x' - x| = {step:.4f} > eps = {eps}", core=False)


def _fgsm_mistake(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, got: torch.Tensor) -> str:
    """What a wrong FGSM result looks like it did (a hint on the concept)."""
    x = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(nn.functional.cross_entropy(model(x), labels), x)
    wrong = [((images + eps * grad.sign()), "the step is right but x' is not clipped to the image range [0, 1]"),
             ((images - eps * grad.sign()).clamp(0, 1), "every pixel went the wrong way: that lowers the loss "
                                                        "(gradient descent); an attack ascends it"),
             ((images + eps * grad).clamp(0, 1), "the step follows the raw gradient, which is tiny: FGSM moves "
                                                 "every pixel by the full eps, along the gradient's sign")]
    detail = next((why for candidate, why in wrong if (got.detach() - candidate).abs().max().item() <= 1e-5), None)
    return detail or ("x' = clip(x + eps * sign(gradient of the loss at x), 0, 1), "
                                             "with the gradient taken with respect to the images")


@checker(checks=3)
def check_success_rate(fn: Callable) -> Checked:
    """``fn(clean_pred, adv_pred, labels)``: among inputs classified correctly when clean,
    the fraction whose adversarial prediction is wrong."""
    cases = [  # (clean predictions, adversarial predictions, labels), the rate, a core case
        ((torch.tensor([0, 1, 2, 3]), torch.tensor([0, 5, 5, 3]), torch.tensor([0, 1, 2, 9])), 2 / 3, True),
        ((torch.tensor([4, 4, 1, 0, 7]), torch.tensor([4, 2, 1, 3, 7]), torch.tensor([4, 4, 2, 0, 7])), 2 / 4, True),
        ((torch.tensor([1, 1]), torch.tensor([1, 1]), torch.tensor([1, 1])), 0.0, False),
    ]
    for args, expected, core in cases:
        done, got = _call("success rate", fn, *args)
        if not done:
            return
        got = float(got)
        clean, adv, labels = (t.tolist() for t in args)
        _report(f"success rate on clean_pred={clean}, adv_pred={adv}, labels={labels}", abs(got - expected) < 1e-6,
                f"expected {expected:.4f}, got {got:.4f}{_success_rate_mistake(got, *args)}", core=core)


def _success_rate_mistake(got: float, clean: torch.Tensor, adv: torch.Tensor, labels: torch.Tensor) -> str:
    correct, fooled = clean == labels, adv != labels
    if abs(got - (correct & fooled).sum().item() / len(labels)) < 1e-6:
        return (f" = {(correct & fooled).sum().item()}/{len(labels)} | hint: the rate is among the images "
                "classified correctly when clean, so divide by how many those are")
    if abs(got - fooled.float().mean().item()) < 1e-6:
        return (" | hint: that counts every wrong adversarial prediction, also of images the model already "
                "got wrong when clean; the attack can only be credited with the ones it changed")
    return (f" | hint: {correct.sum().item()} images are classified correctly when clean; among them, how many "
            "are wrong after the attack?")


def _pgd_models() -> dict[str, nn.Module]:
    """Three fixed tiny models for :func:`check_pgd` (built without touching the caller's RNG).

    ``linear``: 2 classes, logits ``W x`` on 1x8x8 images; the cross-entropy's input gradient of
    class ``y`` is ``p_other (w_other - w_y)``, so its sign is the same everywhere and PGD with
    ``alpha * steps >= 2 eps`` ends exactly at ``clip(x + eps sign(w_other - w_y))`` whatever the start.
    ``batchnorm``: conv -> BatchNorm -> linear on 1x8x8, handed over in train mode.
    ``conv``: two ReLU convolutions and a linear layer on 1x12x12, weights scaled by 4 so the
    loss is far from linear in the input (PGD beats FGSM on it).
    """
    from collections import OrderedDict

    with torch.random.fork_rng():
        torch.manual_seed(0)
        linear = nn.Sequential(nn.Flatten(), nn.Linear(64, 2, bias=False)).eval()
        batchnorm = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                                  nn.Linear(4 * 6 * 6, 10)).train()
        torch.manual_seed(0)
        conv = nn.Sequential(OrderedDict(conv1=nn.Conv2d(1, 8, 3), relu1=nn.ReLU(), conv2=nn.Conv2d(8, 8, 3),
                                         relu2=nn.ReLU(), flatten=nn.Flatten(), fc=nn.Linear(8 * 8 * 8, 10))).eval()
    with torch.no_grad():
        for p in conv.parameters():
            p.mul_(4)
    return {"linear": linear, "batchnorm": batchnorm, "conv": conv}


def _run_pgd(fn: Callable, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float,
             alpha: float, steps: int, seed: int = 0):
    """``_call`` of the student's PGD under ``torch.manual_seed(seed)``, without touching the
    caller's RNG; ``(done, result)``, and a [FAIL] line for a result that is not an image batch."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        done, got = _call("pgd", fn, model, images.clone(), labels.clone(), eps, alpha, steps)
    if done and not (isinstance(got, torch.Tensor) and got.shape == images.shape):
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        _report("pgd returns the adversarial images", False,
                f"expected a tensor of shape {tuple(images.shape)} (like the images), got {shape}")
        done = False
    return done, (got.detach() if done else None)


def _check_pgd_start(fn: Callable, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> bool:
    """steps=0 must return a random point of the eps-ball, different for two RNG states.
    Returns whether the student's function ran (False for the stub or an error)."""
    eps = 0.1
    done, start = _run_pgd(fn, model, images, labels, eps, 0.01, 0, seed=1)
    done2, start2 = _run_pgd(fn, model, images, labels, eps, 0.01, 0, seed=2) if done else (False, None)
    if not done2:
        return False
    moved = (start - images).abs().max().item()
    if moved == 0:
        _report("pgd random start", False, "with steps=0 your function returned the input unchanged: "
                "PGD starts from a random point of the eps-ball, x + noise uniform in [-eps, eps]", core=False)
    elif moved > eps + 1e-6:
        _report("pgd random start", False, f"with steps=0 max |x' - x| = {moved:.3f} > eps = {eps}: "
                "draw the start noise uniformly in [-eps, eps]", core=False)
    else:
        _report("pgd random start", not torch.equal(start, start2),
                "two calls with different RNG states gave the same start: draw the noise from torch's "
                "global random generator (torch.rand_like, uniform_), without seeding inside your function", core=False)
    return True


def _check_pgd_box(fn: Callable, model: nn.Module) -> None:
    """Large steps: the result must stay in [0, 1] and in the eps-ball."""
    gen = torch.Generator().manual_seed(1)
    binary = (torch.rand(16, 1, 8, 8, generator=gen) > 0.5).float()  # every pixel at 0 or 1
    labels = torch.randint(0, 2, (16,), generator=gen)
    done, got = _run_pgd(fn, model, binary, labels, 0.3, 0.1, 5)
    if done:
        low, high = got.min().item(), got.max().item()
        _report("pgd stays in [0, 1]", low >= 0 and high <= 1,
                f"values in [{low:.3f}, {high:.3f}] on images whose pixels are 0 or 1: clamp x' to [0, 1] "
                "after the random start and after every step", core=False)
    interior = 0.4 + 0.2 * torch.rand(16, 1, 8, 8, generator=gen)  # pixels in [0.4, 0.6]: no [0, 1] clipping
    eps = 0.1
    done, got = _run_pgd(fn, model, interior, labels, eps, 0.5, 5)
    if done:
        moved = (got - interior).abs().max().item()
        _report("pgd stays in the eps-ball", moved <= eps + 1e-6,
                f"with alpha = 0.5 and 5 steps max |x' - x| = {moved:.3f} > eps = {eps}: not projected back "
                "into the eps-ball; after each step clip x' - x to [-eps, eps]", core=False)


def _check_pgd_signed_ascent(fn: Callable, model: nn.Module) -> None:
    """On the 2-class linear model the result is known exactly (see :func:`_pgd_models`)."""
    from ..attacks import pgd

    gen = torch.Generator().manual_seed(2)
    images = 0.4 + 0.2 * torch.rand(16, 1, 8, 8, generator=gen)
    labels = torch.arange(16) % 2
    eps, alpha, steps = 0.1, 0.025, 10
    done, got = _run_pgd(fn, model, images, labels, eps, alpha, steps)
    if not done:
        return
    with torch.random.fork_rng():  # its end point does not depend on the start
        expected = pgd(model, images, labels, eps=eps, alpha=alpha, steps=steps)
    name = "pgd takes signed ascent steps (exact on a linear model, as nslib.attacks.pgd)"
    err = (got - expected).abs().max().item()
    if err <= 1e-5:
        _report(name, True)
        return
    delta = got - images
    at_eps = ((delta.abs() - eps).abs() <= 1e-5).float().mean().item()
    if (got - (2 * images - expected)).abs().max().item() <= 1e-5:
        detail = ("every pixel went the wrong way: that is gradient descent, which lowers the loss; "
                  "an attack ascends it, x' = x' + alpha * sign(grad)")
    elif delta.abs().max().item() > eps + 1e-6:
        detail = "x' leaves the eps-ball (see the eps-ball check)"
    elif at_eps < 0.5:
        detail = (f"only {at_eps:.0%} of the pixels moved by the full eps after {steps} steps of alpha = {alpha}: "
                  "step by alpha * grad.sign(), not by the raw gradient (which is tiny and uneven)")
    else:
        detail = f"values differ from the reference by up to {err:.3g}"
    _report(name, False, detail)


def _check_pgd_side_effects(fn: Callable, model: nn.Module) -> None:
    """The model handed in train mode must run in eval mode, come back in train mode, with
    untouched parameters' ``.grad``; the input images must not change."""
    gen = torch.Generator().manual_seed(3)
    images, labels = torch.rand(8, 1, 8, 8, generator=gen), torch.randint(0, 10, (8,), generator=gen)
    original, stats = images.clone(), [b.clone() for b in model.buffers()]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        done, _ = _call("pgd", fn, model, images, labels, 0.1, 0.02, 3)
    if not done:
        return
    changed = any(not torch.equal(b, s) for b, s in zip(model.buffers(), stats))
    _report("pgd runs the model in eval mode", not changed,
            "the BatchNorm running statistics changed, so the model ran in train mode during your attack: "
            "call model.eval() before the first forward pass", core=False)
    _report("pgd gives the model back in the mode it came in", model.training,
            "the model came in train mode and left in eval mode: remember model.training before "
            "model.eval() and restore it with model.train(...) before returning", core=False)
    leaked = [n for n, p in model.named_parameters() if p.grad is not None]
    _report("pgd leaves the parameters' .grad empty", not leaked,
            f"parameters {leaked[:3]} got a .grad: loss.backward() fills the weights' gradients; use "
            "torch.autograd.grad(loss, x_adv), which returns the input's gradient only", core=False)
    _report("pgd leaves the input images unchanged", not images.requires_grad and torch.equal(images, original),
        "your function changed the images it was given (values or requires_grad): work on a copy, "
        "images.clone().detach()", core=False)


def _check_pgd_strength(fn: Callable, model: nn.Module) -> None:
    """The loss goes up, and the attack is about as strong as nslib's PGD (mean CE within 3 %)."""
    from ..attacks import pgd

    images = torch.rand(128, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        labels = model(images).argmax(dim=1)  # clean accuracy 1
    eps, alpha, steps = 0.1, 0.025, 10
    done, got = _run_pgd(fn, model, images, labels, eps, alpha, steps)
    if not done:
        return
    with torch.random.fork_rng():
        torch.manual_seed(0)
        expected = pgd(model, images, labels, eps=eps, alpha=alpha, steps=steps)
    with torch.no_grad():
        loss = {k: nn.functional.cross_entropy(model(v), labels).item()
                for k, v in (("clean", images), ("yours", got), ("nslib", expected))}
        acc = {k: (model(v).argmax(1) == labels).float().mean().item()
               for k, v in (("yours", got), ("nslib", expected))}
    if not _report("pgd increases the loss", loss["yours"] > loss["clean"],
                   f"the mean cross-entropy went down from {loss['clean']:.3f} to {loss['yours']:.3f}: each step "
                   "must go up the loss, + alpha * sign(grad) (a minus sign is gradient descent; a raw-gradient "
                   "step is too small to undo the random start)", core=False):
        return
    _report(f"pgd as strong as nslib.attacks.PGD (eps {eps}, {steps} steps on a small CNN)",
            loss["yours"] >= 0.97 * loss["nslib"] and acc["yours"] <= acc["nslib"] + 0.05,
            f"your attack reaches a mean loss of {loss['yours']:.3f} and accuracy {acc['yours']:.3f}, nslib's "
            f"{loss['nslib']:.3f} and {acc['nslib']:.3f}: is the gradient recomputed at the current x' in "
            "every step, and the projection applied after every step?")


@checker(checks=10, forbid=_ATTACKS)
def check_pgd(fn: Callable) -> Checked:
    """``fn(model, images, labels, eps, alpha, steps)`` must be L-inf PGD (Madry et al., 2018):
    a uniform random start in the eps-ball, then ``steps`` times ``x' <- clip_[0,1](clip_[x-eps, x+eps](
    x' + alpha * sign(grad_x' CE(f(x'), y))))``, with the model in eval mode (its mode restored) and
    its parameters' ``.grad`` untouched. Property checks, one exact case on a linear model, and a
    strength check against ``nslib.attacks.pgd`` (the random starts need not match nslib's)."""
    models = _pgd_models()
    gen = torch.Generator().manual_seed(0)
    images, labels = 0.4 + 0.2 * torch.rand(16, 1, 8, 8, generator=gen), torch.arange(16) % 2
    if not _check_pgd_start(fn, models["linear"], images, labels):
        return  # the stub or an error: its one [FAIL] line is enough
    _check_pgd_box(fn, models["linear"])
    _check_pgd_signed_ascent(fn, models["linear"])
    _check_pgd_side_effects(fn, models["batchnorm"])
    _check_pgd_strength(fn, models["conv"])
