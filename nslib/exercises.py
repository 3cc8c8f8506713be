"""Checkers for the notebooks' exercises: ``check_<what>(your_function)`` prints
``[PASS] <what>`` or ``[FAIL] <what>: <what is wrong>`` lines and returns a :class:`Checked`,
true when every check passed (so an nbgrader test cell can ``assert check_<what>(fn)``); a
notebook cell that ends with the call shows only the printed lines.

A checker never shows a traceback of its own: a function that still raises
``NotImplementedError`` (the exercise stub) is reported as ``[FAIL] ... not implemented yet``,
any other exception in your function as a ``[FAIL]`` naming the exception and the input that
raised it, with a hint. One section per notebook. Every checker builds its own small inputs
(and model), so an exercise cell runs on its own after the notebook's setup cell; that is how
``tests/test_exercises.py`` runs each checker on the stub and on the solution.
"""
from __future__ import annotations

import contextlib
import functools
import io
from typing import Callable

import torch
from torch import nn

__all__ = ["Checked", "ExerciseFailed", "require", "check_normalize", "check_neuron_count", "check_fgsm", "check_success_rate"]

#: The [PASS]/[FAIL] outcomes of the checker that is running (``None`` outside a checker).
_outcomes: list[bool] | None = None


class Checked:
    """What a checker returns: true when all its checks passed; displays nothing in a notebook.

    Attributes:
        passed (int): checks passed.  failed (int): checks failed.
    """

    def __init__(self, outcomes: list[bool]):
        self.passed, self.failed = sum(outcomes), len(outcomes) - sum(outcomes)

    def __bool__(self) -> bool:
        return self.failed == 0 and self.passed > 0

    def __repr__(self) -> str:
        return f"Checked(passed={self.passed}, failed={self.failed})"

    def _ipython_display_(self) -> None:  # the [PASS]/[FAIL] lines are already printed
        pass


def checker(check: Callable) -> Callable:
    """Make ``check`` a checker: collect its [PASS]/[FAIL] outcomes into a :class:`Checked`, and
    turn an exception raised by the checker itself (the student's result was of a shape or type
    it could not compare) into a ``[FAIL]`` line instead of a traceback."""
    @functools.wraps(check)
    def run(*args, **kwargs) -> Checked:
        global _outcomes
        outer, _outcomes = _outcomes, []
        try:
            check(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - shown to the student as a [FAIL] line
            _report(check.__name__.removeprefix("check_").replace("_", " "), False,
                    f"your result could not be checked ({type(error).__name__}: {error}); "
                    "compare its type and shape with what the exercise asks for")
        finally:
            outcomes, _outcomes = _outcomes, outer
        return Checked(outcomes)
    return run


class ExerciseFailed(AssertionError):
    """Raised by :func:`require` when an exercise fails its checks; shown as its [FAIL] lines only."""

    def _render_traceback_(self) -> list[str]:  # IPython shows these lines instead of a traceback
        return str(self).splitlines()


def require(check: Callable, *args) -> None:
    """An autograded test cell (nbgrader): run ``check(*args)`` without printing; raise
    :class:`ExerciseFailed` with its ``[FAIL]`` lines unless every check passed.

    The exercise cell above already printed the same checks; this cell is what nbgrader
    grades (an error in a test cell scores zero), and it stays silent when all is well.

    Example:
        >>> require(check_success_rate, lambda clean, adv, labels: 0.0)  # doctest: +SKIP
        ExerciseFailed: [FAIL] success rate on [0, 1, 2, 3]: expected 0.6667, got 0.0000
    """
    printed = io.StringIO()  # stderr too: nbgrader scores a test cell that writes to stderr as failed
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
        result = check(*args)
    if not result:
        fails = [line for line in printed.getvalue().splitlines() if line.startswith("[FAIL]")]
        raise ExerciseFailed("\n".join(fails) or f"{getattr(check, '__name__', check)}: no check ran")


def _report(name: str, ok: bool, detail: str = "") -> bool:
    print(f"[PASS] {name}" if ok else f"[FAIL] {name}: {detail}")
    if _outcomes is not None:
        _outcomes.append(bool(ok))
    return ok


def _describe(value) -> str:
    """A short description of one input of a failing call: a tensor's shape and dtype, else its repr."""
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)} ({str(value.dtype).removeprefix('torch.')})"
    if isinstance(value, nn.Module):
        return f"a {type(value).__name__} model"
    return f"{value!r:.60}"


def _call(name: str, fn: Callable, *args):
    """Call the student's function: ``(True, result)``, or ``(False, None)`` after a [FAIL] line
    for a stub (``NotImplementedError``) or for any exception the function raised."""
    try:
        return True, fn(*args)
    except NotImplementedError:
        _report(name, False, "not implemented yet (the function still raises NotImplementedError)")
    except Exception as error:  # noqa: BLE001 - the student's error, shown as a [FAIL] line
        inputs = ", ".join(_describe(a) for a in args)
        _report(name, False, f"your function raised {type(error).__name__}: {error} | called with ({inputs}) | "
                "hint: call it yourself on inputs like these and read the line the error points to")
    return False, None


def _close(name: str, got, expected: torch.Tensor, atol: float = 1e-6) -> bool:
    if not isinstance(got, torch.Tensor):
        return _report(name, False, f"expected a tensor, got {type(got).__name__}")
    if got.shape != expected.shape:
        return _report(name, False, f"expected shape {tuple(expected.shape)}, got {tuple(got.shape)}")
    err = (got.double() - expected.double()).abs().max().item()
    return _report(name, err <= atol, f"values differ from the reference by up to {err:.3g} (allowed {atol:g})")


# --- 00_setup_and_data -------------------------------------------------------------------

@checker
def check_normalize(fn: Callable) -> Checked:
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


@checker
def check_neuron_count(fn: Callable) -> Checked:
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

@checker
def check_fgsm(fn: Callable, eps: float = 0.1) -> Checked:
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


@checker
def check_success_rate(fn: Callable) -> Checked:
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


__all__ += ["check_pgd"]


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
                "PGD starts from a random point of the eps-ball, x + noise uniform in [-eps, eps]")
    elif moved > eps + 1e-6:
        _report("pgd random start", False, f"with steps=0 max |x' - x| = {moved:.3f} > eps = {eps}: "
                "draw the start noise uniformly in [-eps, eps]")
    else:
        _report("pgd random start", not torch.equal(start, start2),
                "two calls with different RNG states gave the same start: draw the noise from torch's "
                "global random generator (torch.rand_like, uniform_), without seeding inside your function")
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
                "after the random start and after every step")
    interior = 0.4 + 0.2 * torch.rand(16, 1, 8, 8, generator=gen)  # pixels in [0.4, 0.6]: no [0, 1] clipping
    eps = 0.1
    done, got = _run_pgd(fn, model, interior, labels, eps, 0.5, 5)
    if done:
        moved = (got - interior).abs().max().item()
        _report("pgd stays in the eps-ball", moved <= eps + 1e-6,
                f"with alpha = 0.5 and 5 steps max |x' - x| = {moved:.3f} > eps = {eps}: not projected back "
                "into the eps-ball; after each step clip x' - x to [-eps, eps]")


def _check_pgd_signed_ascent(fn: Callable, model: nn.Module) -> None:
    """On the 2-class linear model the result is known exactly (see :func:`_pgd_models`)."""
    from .attacks import pgd

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
            "call model.eval() before the first forward pass")
    _report("pgd gives the model back in the mode it came in", model.training,
            "the model came in train mode and left in eval mode: remember model.training before "
            "model.eval() and restore it with model.train(...) before returning")
    leaked = [n for n, p in model.named_parameters() if p.grad is not None]
    _report("pgd leaves the parameters' .grad empty", not leaked,
            f"parameters {leaked[:3]} got a .grad: loss.backward() fills the weights' gradients; use "
            "torch.autograd.grad(loss, x_adv), which returns the input's gradient only")
    _report("pgd leaves the input images unchanged", not images.requires_grad and torch.equal(images, original),
        "your function changed the images it was given (values or requires_grad): work on a copy, "
        "images.clone().detach()")


def _check_pgd_strength(fn: Callable, model: nn.Module) -> None:
    """The loss goes up, and the attack is about as strong as nslib's PGD (mean CE within 3 %)."""
    from .attacks import pgd

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
                   "step is too small to undo the random start)"):
        return
    _report(f"pgd as strong as nslib.attacks.PGD (eps {eps}, {steps} steps on a small CNN)",
            loss["yours"] >= 0.97 * loss["nslib"] and acc["yours"] <= acc["nslib"] + 0.05,
            f"your attack reaches a mean loss of {loss['yours']:.3f} and accuracy {acc['yours']:.3f}, nslib's "
            f"{loss['nslib']:.3f} and {acc['nslib']:.3f}: is the gradient recomputed at the current x' in "
            "every step, and the projection applied after every step?")


@checker
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


# --- 02_neuron_sensitivity ----------------------------------------------------------------

__all__ += ["check_sensitivity_from_activations", "check_top_k_neurons", "check_sensitivity_ratio"]


@checker
def check_sensitivity_from_activations(fn: Callable) -> Checked:
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


@checker
def check_top_k_neurons(fn: Callable) -> Checked:
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
        got_list = got.tolist() if hasattr(got, "tolist") else list(got) if isinstance(got, tuple) else got
        shown = [round(v, 3) for v in sigma.tolist()] if sigma.numel() <= 5 else f"{sigma.numel()} values"
        mistake = _top_k_mistake(sigma, k, got_list, expected.tolist())
        _report(f"top-{k} of {shown}", got_list == expected.tolist(),
                f"expected {expected.tolist()}, got {got_list}: {mistake}")
        if got_list == expected.tolist() and not (isinstance(got, torch.Tensor) and got.dtype == torch.long):
            _report(f"top-{k} is a LongTensor", False, f"got {type(got).__name__} "
                    f"{getattr(got, 'dtype', '')}: return the indices as a LongTensor (torch.long)")
            return


def _top_k_mistake(sigma: torch.Tensor, k: int, got, expected: list[int]) -> str:
    """What a wrong top-k answer most likely got wrong (``got``: a list, ideally of ints)."""
    from .sensitivity import rank_neurons

    if not isinstance(got, list) or not all(isinstance(v, int) for v in got):
        return "return the neurons' indices (integers), not their sensitivities"
    if len(got) != k:
        return f"{len(got)} indices instead of k = {k}: keep only the first k"
    if not all(0 <= v < sigma.numel() for v in got):
        return f"indices outside 0..{sigma.numel() - 1}"
    if got == rank_neurons(sigma, largest=False).tolist()[:k]:
        return "these are the k *least* sensitive neurons: sort in descending order"
    values = sigma[got].tolist()
    if values == sorted(values, reverse=True) and sorted(values) == sorted(sigma[expected].tolist()):
        return "equal sensitivities must keep the lower index first: use a stable sort"
    if sorted(got) == sorted(expected):
        return "the right neurons in the wrong order: the most sensitive first"
    return "not the k largest values"


@checker
def check_sensitivity_ratio(fn: Callable) -> Checked:
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
        mean_a, mean_b = sigma_a[layer].double().mean().item(), sigma_b[layer].double().mean().item()
        expected, value = mean_a / mean_b, float(got[layer])
        hint = (": inverted, divide a's layer sensitivity by b's" if abs(value - mean_b / mean_a) < 1e-5 else
                ": the ratio of the layer means, not the mean of per-neuron ratios"
                if abs(value - (sigma_a[layer] / sigma_b[layer]).double().mean().item()) < 1e-5 else "")
        _report(f"sensitivity ratio of {layer}", abs(value - expected) < 1e-5,
                f"expected {expected:.4f}, got {value:.4f}{hint}")


# --- 03_sensitive_neurons_and_ablation ----------------------------------------------------

__all__ += ["check_deactivation_hook", "check_stabilised_success_rate", "check_stabilising_hook"]


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


@checker
def check_deactivation_hook(fn: Callable) -> Checked:
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


@checker
def check_stabilised_success_rate(fn: Callable) -> Checked:
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


def _check_stabilising_call(name: str, hook: Callable, module: nn.Module, layer_input: torch.Tensor,
                            output: torch.Tensor, benign: torch.Tensor, benign_copy: torch.Tensor,
                            indices) -> bool:
    """Call the student's hook once by hand, as PyTorch would, and name what went wrong."""
    before = output.clone()
    try:
        got = hook(module, (layer_input,), output)
    except Exception as error:  # noqa: BLE001 - the student's error, shown as a [FAIL] line
        return _report(name, False, f"your hook raised {type(error).__name__}: {error} | called as hook(module, "
                       f"(input,), output) with output of shape {tuple(output.shape)}")
    if not torch.equal(benign, benign_copy):
        return _report(name, False, "your hook changed benign_output (the stored benign tensor): build the new "
                       "output from a copy of `output`, never write into benign_output")
    if got is None:
        changed = "it changed `output` in place, but " if not torch.equal(output, before) else ""
        return _report(name, False, f"your hook returned None: {changed}a forward hook replaces the layer's "
                       "output only with what it returns; return the patched copy")
    if not torch.equal(output, before):
        return _report(name, False, "your hook wrote into the layer's own output tensor: clone it first "
                       "(output.clone()) and patch the copy")
    if not isinstance(got, torch.Tensor) or got.shape != output.shape:
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        return _report(name, False, f"expected a tensor of the layer's output shape {tuple(output.shape)}, "
                       f"got {shape}")
    expected = _replaced_along(before, benign, indices, 1)
    if not torch.equal(got, expected):
        return _report(name, False, _stabilising_diagnosis(got, before, benign, indices))
    return True


@checker
def check_stabilising_hook(fn: Callable) -> Checked:
    """``fn(indices, benign_output)`` must return a forward hook ``hook(module, inputs, output)``
    that returns a copy of ``output`` whose neurons ``indices`` (along dim 1) hold their values
    in ``benign_output`` (the layer's output on the paired benign batch), as
    ``nslib.ablation.stabilise``; a batch of another size than ``benign_output``'s is an error."""
    from .ablation import stabilise
    from .hooks import capture, forward_hooks

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
        if not _check_stabilising_call(name, hook, module, layer_input, adv_out[layer].clone(), benign,
                                       benign.clone(), indices):
            return
        with forward_hooks([(module, hook)]), torch.no_grad():
            got = model(adversarial)
        with stabilise(model, {layer: indices}, images), torch.no_grad():
            expected = model(adversarial)
        _close(name, got, expected, atol=1e-6)
    done, hook = _call("stabilising hook", fn, [0], benign[:1].clone())  # benign output of 1 image
    if not done:
        return
    try:  # ... and the layer's output on a batch of 4
        hook(module, (adv_out["flatten"][:4],), adv_out[layer][:4].clone())
    except ValueError:
        _report("a batch of another size than benign_output raises ValueError", True)
    except Exception as error:  # noqa: BLE001 - the student's error, shown as a [FAIL] line
        _report("batch size mismatch", False, f"your hook raised {type(error).__name__} ({error}); check "
                "output.shape[0] == benign_output.shape[0] yourself and raise a ValueError naming both sizes")
    else:
        _report("batch size mismatch", False, "with benign_output of 1 image and a batch of 4, your hook "
                "broadcast the one benign image over the whole batch; check output.shape[0] == "
                "benign_output.shape[0] and raise a ValueError naming both sizes (the pairs must match)")


# --- 04_robust_training_and_sns -----------------------------------------------------------

__all__ += ["check_sns_penalty", "check_trades_kl", "check_eps_ramp", "check_pgd_at_step", "check_sns_step"]


@checker
def check_sns_penalty(fn: Callable) -> Checked:
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


@checker
def check_trades_kl(fn: Callable) -> Checked:
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


@checker
def check_eps_ramp(fn: Callable) -> Checked:
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


def _step_model(batchnorm: bool) -> nn.Module:
    """A tiny CNN for 8x8 one-channel images; with ``batchnorm``, a BatchNorm layer whose
    running statistics tell train-mode forward passes from eval-mode ones."""
    from collections import OrderedDict

    torch.manual_seed(0)
    layers = [("conv1", nn.Conv2d(1, 4, 3, padding=1))] + ([("bn1", nn.BatchNorm2d(4))] if batchnorm else []) + [
        ("relu1", nn.ReLU()), ("conv2", nn.Conv2d(4, 6, 3, stride=2, padding=1)), ("relu2", nn.ReLU()),
        ("flat", nn.Flatten()), ("fc1", nn.Linear(6 * 4 * 4, 12)), ("relu3", nn.ReLU()), ("fc2", nn.Linear(12, 10))]
    return nn.Sequential(OrderedDict(layers))


def _step_data(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(16, 1, 8, 8, generator=gen), torch.randint(0, 10, (16,), generator=gen)


def _flat_params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()]).double()


def _flat_grad(model: nn.Module, loss: torch.Tensor) -> torch.Tensor:
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten()
                      for p, g in zip(model.parameters(), grads)]).double()


def _student_step(name: str, fn: Callable, model: nn.Module, stale: torch.Tensor, *args):
    """Run the student's one-step function on ``model`` with a fresh SGD(lr=1) optimizer whose
    parameters carry the stale gradient ``stale`` (a previous step's), after ``torch.manual_seed(0)``.

    Returns ``(done, loss, gradient the step used)``: with SGD at lr 1 the update is minus the
    gradient, so ``w_before - w_after`` is exactly what the step descended along."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    offset = 0
    for p in model.parameters():
        p.grad = stale[offset:offset + p.numel()].view_as(p).to(p.dtype).clone()
        offset += p.numel()
    before = _flat_params(model)
    torch.manual_seed(0)
    done, loss = _call(name, fn, model, optimizer, *args)
    return done, loss, before - _flat_params(model)


def _as_float(value) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.detach())
    return None


def _match_update(name: str, used: torch.Tensor, expected: torch.Tensor,
                  wrong: list[tuple[torch.Tensor, str]], default: str) -> bool:
    """[PASS] when the step's gradient ``used`` is ``expected``; else the [FAIL] names the first
    common mistake in ``wrong`` ((its gradient, what is wrong)) that ``used`` matches, or ``default``."""
    def same(a, b):
        return (a - b).abs().max().item() <= 1e-4 * max(1.0, b.abs().max().item())

    if same(used, expected):
        return _report(name, True)
    if used.abs().max().item() == 0:
        return _report(name, False, "the weights did not change: call optimizer.step() after loss.backward()")
    detail = next((why for grad, why in wrong if same(used, grad)), default)
    return _report(name, False, detail)


@checker
def check_pgd_at_step(fn: Callable) -> Checked:
    """``fn(model, optimizer, images, labels, eps, alpha, steps)`` must make ``x'`` by PGD (random
    start, ``nslib.attacks.pgd``) with the model in eval mode, then take one optimizer step on
    ``CE(f(x'), y)`` with the model in train mode, the old gradients zeroed, and return the loss.

    Compared with that reference step under the same seed, on a tiny CNN with BatchNorm (whose
    ``num_batches_tracked`` counts the train-mode forward passes), handed over in eval mode and
    in train mode, its parameters carrying a stale gradient from a "previous step"."""
    import torch.nn.functional as F

    from .attacks import pgd

    x, y = _step_data()
    eps, alpha, steps = 0.1, 0.04, 3
    for start in ("eval", "train"):
        model = _step_model(batchnorm=True)
        stale = 0.1 * torch.randn(_flat_params(model).numel(), generator=torch.Generator().manual_seed(1))
        # the reference: the attack in eval mode, then a train-mode forward, backward and step
        ref = _step_model(batchnorm=True)
        torch.manual_seed(0)
        x_adv = pgd(ref, x, y, eps=eps, alpha=alpha, steps=steps)
        ref.train()
        loss_adv = F.cross_entropy(ref(x_adv), y)
        g_adv = _flat_grad(ref, loss_adv)
        probe = _step_model(batchnorm=True).train()
        loss_clean = F.cross_entropy(probe(x), y)
        g_clean = _flat_grad(probe, loss_clean)
        model.train(start == "train")
        bn = model.bn1
        done, got, used = _student_step("PGD-AT step", fn, model, stale, x, y, eps, alpha, steps)
        if not done:
            return
        case = f"(model handed over in {start} mode)"
        passes = int(bn.num_batches_tracked)
        if passes != 1:
            _report(f"PGD-AT step: one train-mode forward pass {case}", False,
                    "the BatchNorm layer saw no train-mode forward pass: call model.train() before the "
                    "training forward" if passes == 0 else
                    f"the BatchNorm layer saw {passes} train-mode forward passes, expected 1 (the training "
                    "forward on x'): run the attack with the model in eval mode (model.eval(), or nslib's "
                    "PGD, which does it), then model.train() for the training step")
            continue
        _report(f"PGD-AT step: one train-mode forward pass {case}", True)
        value = _as_float(got)
        if value is None:
            _report(f"PGD-AT step: returned loss {case}", False,
                    f"return the training loss as a float (loss.item()), got {type(got).__name__}")
        else:
            _report(f"PGD-AT step: returned loss {case}", abs(value - loss_adv.item()) < 1e-4,
                    f"expected CE(f(x'), y) = {loss_adv.item():.4f}, got {value:.4f}"
                    + (": that is the clean loss CE(f(x), y)" if abs(value - loss_clean.item()) < 1e-4 else ""))
        _match_update(f"PGD-AT step: weight update {case}", used, g_adv, [
            (g_adv + stale.double(), "the old .grad was added to this step's gradient: call "
                                     "optimizer.zero_grad() before loss.backward()"),
            (g_clean, "the step descends the clean loss CE(f(x), y); train on the adversarial x'"),
            (g_clean + stale.double(), "the step descends the clean loss CE(f(x), y) plus the old .grad: train "
                                       "on x', and call optimizer.zero_grad() before loss.backward()")],
            "the step's gradient is not that of CE(f(x'), y): if your attack calls loss.backward(), it also "
            "writes into the parameters' .grad; zero the gradients after the attack, just before "
            "loss.backward() (or use nslib.attacks.PGD, which freezes the parameters while it attacks)")


def _sns_reference(model: nn.Module, x_adv: torch.Tensor, x: torch.Tensor, y: torch.Tensor, layers: list[str],
                   k: int, lam: float, variant: str = "") -> torch.Tensor:
    """SNS's loss on a given ``x'`` (as ``nslib.recipes.sns_loss``), or one of its common mistakes:
    ``"last"``/``"first"`` (one layer's penalty only), ``"mean"`` (mean over layers), ``"per_example"``
    (top-k chosen per example), ``"detached"`` (penalty without gradient), ``"benign_detached"``."""
    import torch.nn.functional as F

    from .hooks import capture
    from .sensitivity import neuron_distance

    with capture(model, layers, detach=False) as store:
        logits_adv = model(x_adv)
        adv = dict(store)
        model(x)
        clean = dict(store)
    terms = []
    for name in layers:
        benign = clean[name].detach() if variant in ("detached", "benign_detached") else clean[name]
        other = adv[name].detach() if variant == "detached" else adv[name]
        dist = neuron_distance(benign, other)
        if variant == "per_example":
            terms.append(dist.topk(k, dim=1).values.sum() / x.shape[0])
        else:
            terms.append(dist[:, dist.detach().mean(0).topk(k).indices].sum() / x.shape[0])
    penalty = {"last": terms[-1], "first": terms[0], "mean": sum(terms) / len(terms)}.get(variant, sum(terms))
    return F.cross_entropy(logits_adv, y) + lam * penalty


#: The common mistakes of an SNS step: (variant of ``_sns_reference``, lambda factor, what is wrong).
_SNS_MISTAKES = (
    ("last", 1.0, "only the last layer's penalty counts: add the layers' penalties up (penalty = penalty + ...)"),
    ("first", 1.0, "only the first layer's penalty counts: add every layer's penalty up"),
    ("mean", 1.0, "the layers' penalties are averaged: SNS sums them over the layers"),
    ("per_example", 1.0, "the top-k neurons are chosen per example: choose them once for the batch, from the "
                         "distances averaged over the batch"),
    ("", None, "the penalty is not multiplied by lam"),
    ("detached", 1.0, "the penalty does not move the weights: it carries no gradient (keep the activations' "
                      "graph: store the hook's output without .detach(); only the choice of neurons is detached)"),
    ("", 0.0, "the loss is the cross-entropy alone: add lam times the penalty"),
    ("benign_detached", 1.0, "the benign activations are detached: the penalty must reach the weights through "
                             "both forward passes"),
)


def _sns_variants(x_adv, x, y, layers, k, lam) -> list[tuple[float, torch.Tensor, str]]:
    """``(loss, gradient, what is wrong)`` of each mistake in ``_SNS_MISTAKES`` on fresh copies of the model."""
    out = []
    for variant, factor, why in _SNS_MISTAKES:
        probe = _step_model(batchnorm=False)
        weight = 1.0 if factor is None else factor * lam
        loss = _sns_reference(probe, x_adv, x, y, layers, k, weight, variant)
        out.append((loss.item(), _flat_grad(probe, loss), why))
    return out


@checker
def check_sns_step(fn: Callable) -> Checked:
    """``fn(model, optimizer, images, labels, layers, k, lam, eps, alpha, steps)`` must take one SNS
    step: ``x'`` by PGD (random start) against the model, then one optimizer step on
    ``CE(f(x'), y) + lam * sum_{l in layers} sum_{i in topk_l} (1/B) sum_j (1/dim)||F_l^i(x_j) - F_l^i(x'_j)||_1``
    (the top-``k`` chosen from the batch's own sensitivity, without gradient), return the loss,
    and leave no forward hook on the model. Compared with ``nslib.recipes.sns_loss``."""
    from .attacks import pgd
    from .recipes import sns_loss

    x, y = _step_data(1)
    layers, k, eps, alpha, steps = ["conv1", "conv2", "fc1"], 2, 0.1, 0.04, 3
    for lam in (0.5, 2.0):
        case = f"(lam = {lam:g})"
        ref = _step_model(batchnorm=False)
        torch.manual_seed(0)
        expected, _ = sns_loss(ref, x, y, net=ref, eps=eps, alpha=alpha, steps=steps, state={}, lam=lam,
                               layers=layers, k=k)
        g_ref = _flat_grad(ref, expected)
        torch.manual_seed(0)
        mistakes = _sns_variants(pgd(ref, x, y, eps=eps, alpha=alpha, steps=steps), x, y, layers, k, lam)
        model = _step_model(batchnorm=False)
        stale = 0.1 * torch.randn(_flat_params(model).numel(), generator=torch.Generator().manual_seed(2))
        done, got, used = _student_step("SNS step", fn, model, stale, x, y, layers, k, lam, eps, alpha, steps)
        if not done:
            return
        hooks = [n or "the model itself" for n, m in model.named_modules() if m._forward_hooks]
        _report(f"SNS step leaves no forward hook {case}", not hooks,
                f"forward hooks are still attached to {', '.join(hooks)}: remove each one (handle.remove(), "
                "in a finally block) or capture inside `with nslib.hooks.capture(...)`")
        value = _as_float(got)
        if value is None:
            _report(f"SNS step: returned loss {case}", False,
                    f"return the training loss as a float (loss.item()), got {type(got).__name__}")
        else:
            wrong = next((why for loss, _, why in mistakes
                          if abs(value - loss) < 1e-4 and abs(loss - expected.item()) > 1e-4), None)
            _report(f"SNS step: returned loss {case}", abs(value - expected.item()) < 1e-4,
                    wrong or f"expected {expected.item():.4f}, got {value:.4f}")
        wrong = [(grad, why) for _, grad, why in mistakes]
        wrong.append((g_ref + stale.double(), "the old .grad was added to this step's gradient: call "
                                              "optimizer.zero_grad() before loss.backward()"))
        _match_update(f"SNS step: weight update {case}", used, g_ref, wrong,
                      "the step's gradient is not that of the SNS loss on x': check the attack (PGD with a "
                      "random start, in eval mode), the layers, k, and the order zero_grad, backward, step")


# --- 05_your_own_model --------------------------------------------------------------------

__all__ += ["check_relative_sensitivity", "check_top_k_overlap"]


def _own_model() -> nn.Module:
    """A small nn.Module that nslib did not build: conv -> ReLU -> flatten -> linear (layers "0", "3")."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()


@checker
def check_relative_sensitivity(fn: Callable) -> Checked:
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
        ok = abs(got_last - expected) <= 1e-5 * max(1.0, expected)
        mistake = "" if ok else _relative_mistake(got_last, benign, adversarial)
        _report(f"relative sensitivity of layer {layer!r}", ok, f"expected {expected:.5f}, got {got_last:.5f}{mistake}")
    scaled = copy.deepcopy(model)  # the same network with the last layer's output scaled by 10
    with torch.no_grad():
        scaled[3].weight.mul_(10)
        scaled[3].bias.mul_(10)
    done, got = _call("relative sensitivity", fn, scaled, x, x_adv, "3")
    if done:
        _report("unchanged when the layer's output is scaled by 10", abs(float(got) - got_last) <= 1e-5 * max(1.0, got_last),
                f"got {float(got):.5f} instead of {got_last:.5f}")


def _relative_mistake(got: float, benign: torch.Tensor, adversarial: torch.Tensor) -> str:
    """The likely slip behind a wrong relative sensitivity (outputs ``(N, ...)`` of one layer)."""
    change = (benign - adversarial).abs()

    def near(value) -> bool:
        return abs(got - float(value)) <= 1e-5 * max(1.0, abs(float(value)))

    if near(change.mean() / adversarial.abs().mean()):
        return ": the denominator must use the benign outputs F(x), not the adversarial ones"
    if benign.mean() != 0 and near(change.mean() / benign.mean()):
        return ": take the absolute value in the denominator, mean |F(x)|, not mean F(x)"
    if near(change.mean()):
        return ": that is the layer sensitivity alone; divide by mean |F(x)|"
    return ""


@checker
def check_top_k_overlap(fn: Callable) -> Checked:
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
        n = sigma_a.numel()
        hint = (f": divide the number of shared neurons by k = {k}, not by the {n} neurons"
                if abs(value * n / k - expected) < 1e-9 and abs(value - expected) > 1e-9 else
                ": a fraction in [0, 1] is expected, not a count" if value > 1 else "")
        _report(f"top-{k} overlap, {name}", abs(value - expected) < 1e-9,
                f"expected {expected:.2f}, got {value:.2f}{hint}")
