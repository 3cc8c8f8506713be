"""The checkers of notebook 04_robust_training_and_sns: check_sns_penalty, check_trades_kl,
check_eps_ramp, check_pgd_at_step, check_sns_step."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .checking import Checked, _call, _close, _report, checker

__all__ = ["check_sns_penalty", "check_trades_kl", "check_eps_ramp", "check_pgd_at_step", "check_sns_step"]


_LOSSES = ("nslib.recipes",)  # the training losses of nslib: PGD-AT, TRADES, SNS


@checker(checks=6, forbid=_LOSSES, allow=("nslib.sensitivity.neuron_distance",))
def check_sns_penalty(fn: Callable) -> Checked:
    """``fn(benign_act, adv_act, k)`` must return the SNS penalty of one layer on one batch:
    ``sum_{i in topk} (1/N) sum_j (1/dim) ||F^i(x_j) - F^i(x'_j)||_1``, the ``k`` (an int)
    neurons chosen by this batch's own sensitivity, and differentiable in both activations
    (only the choice of neurons is made without gradient), as ``nslib.recipes.sns_loss``."""
    from ..sensitivity import neuron_distance, sensitive_neurons

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
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.reshape(())
        if not _close(f"SNS penalty on the {name}", got, expected.detach(), atol=1e-5,
                      inputs=f"benign_act = {benign.tolist()}, adv_act = {adv.tolist()}, k = {k}" if benign.numel() <= 8
                      else f"activations of shape {tuple(benign.shape)}, k = {k}",
                      hint="a neuron's distance is its mean |benign - adversarial| over positions; its sensitivity "
                           "the mean of that over the batch; the penalty adds the batch-averaged distances of the k "
                           "most sensitive neurons"):
            continue
        if not got.requires_grad:
            _report(f"SNS penalty is differentiable ({name})", False,
                    "the result carries no gradient; detach only the sensitivity used to choose the neurons",
                    core=False)
            continue
        grads = torch.autograd.grad(got, got_in, allow_unused=True)
        grads = [torch.zeros_like(x) if g is None else g for x, g in zip(got_in, grads)]
        err = max((g - e).abs().max().item() for g, e in zip(grads, expected_grad))
        _report(f"gradient of the SNS penalty ({name})", err <= 1e-5,
                f"the gradient differs from the reference by up to {err:.3g}: is the choice of "
                "neurons detached, and are the distances averaged over the batch?", core=False)


@checker(checks=3, forbid=_LOSSES)
def check_trades_kl(fn: Callable) -> Checked:
    """``fn(logits_clean, logits_adv)`` must return TRADES' robustness term
    ``KL(softmax f(x) || softmax f(x'))``, summed over classes and averaged over the batch."""
    def kl(clean, adv):  # KL(p || q) per image, p = softmax(clean), q = softmax(adv)
        clean, adv = clean.double(), adv.double()
        return (clean.softmax(1) * (clean.log_softmax(1) - adv.log_softmax(1))).sum(1)

    gen = torch.Generator().manual_seed(0)
    same = torch.randn(2, 3, generator=gen).mul(4).round().div(4)
    # p = (1/2, 1/2), q = (1/4, 3/4): KL(p||q) = 1/2 ln 2 + 1/2 ln(2/3) = 1/2 ln(4/3) = 0.1438
    hand = (torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, float(torch.tensor(3.0).log())]]))
    two = (torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 1.0]]))
    cases = [("identical logits (KL = 0)", same, same.clone(), False),
             ("a hand-made case (KL = ln(4/3)/2)", *hand, True), ("two images of three classes", *two, True)]
    for name, clean, adv, core in cases:
        done, got = _call("TRADES KL", fn, clean.clone(), adv.clone())
        if not done:
            return
        if isinstance(got, (int, float)):
            got = torch.tensor(float(got))
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.reshape(())
        expected = kl(clean, adv).mean()
        value = float(got) if isinstance(got, torch.Tensor) and got.numel() == 1 else None
        _report(f"TRADES KL term on {name}", value is not None and abs(value - expected.item()) <= 1e-5,
                f"expected {expected.item():.5f}, got {got if value is None else f'{value:.5f}'} | inputs: "
                f"logits_clean = {clean.tolist()}, logits_adv = {adv.tolist()} | hint: "
                + _kl_mistake(value, clean, adv, kl), core=core)


def _kl_mistake(value: float | None, clean: torch.Tensor, adv: torch.Tensor, kl: Callable) -> str:
    """The likely slip behind a wrong TRADES term (a hint on the concept)."""
    p, q = clean.double().softmax(1), adv.double().softmax(1)
    wrong = [(kl(adv, clean).mean(), "that is KL(p(x') || p(x)): the clean prediction p(x) is the reference "
                                     "distribution, KL(p || q) = sum p log(p / q)"),
             (kl(clean, adv).sum(), "summed over the images too: average over the batch, sum over the classes"),
             (kl(clean, adv).mean() / clean.shape[1], "averaged over the classes too: sum over the classes, "
                                                      "average over the images only"),
             ((p * (p.log() - q)).sum(1).mean(), "the adversarial distribution entered as probabilities where "
                                                 "log-probabilities belong")]
    if value is not None:
        for candidate, why in wrong:
            if abs(value - candidate.item()) <= 1e-5:
                return why
    return ("with p = softmax(clean logits) and q = softmax(adversarial logits), KL(p || q) = "
            "sum_c p_c (log p_c - log q_c) per image")


@checker(checks=7, forbid=("nslib.training",))
def check_eps_ramp(fn: Callable) -> Checked:
    """``fn(eps, epoch, step, steps_per_epoch, warmup_epochs)`` must return the linear eps
    warm-up of ``nslib.training.ramp``: ``eps * min(1, (epoch + (step + 1) / steps_per_epoch)
    / warmup_epochs)`` (epoch and step from 0), and ``eps`` itself when ``warmup_epochs`` is 0."""
    from ..training import ramp

    cases = [(0.3, 0, 49, 100, 16), (0.3, 0, 0, 40, 16), (0.3, 15, 39, 40, 16), (0.3, 30, 5, 40, 16),
             (8 / 255, 2, 9, 10, 5), (0.3, 0, 0, 40, 0), (0.3, 1, 19, 40, 2.5)]
    for args in cases:
        done, got = _call("eps ramp", fn, *args)
        if not done:
            return
        expected = ramp(*args)
        ok = isinstance(got, (int, float)) or (isinstance(got, torch.Tensor) and got.numel() == 1)
        value = float(got) if ok else float("nan")
        eps, epoch, step, steps_per_epoch, warmup = args
        call = (f"eps_ramp(eps={eps:.6g}, epoch={epoch}, step={step}, steps_per_epoch={steps_per_epoch}, "
                f"warmup_epochs={warmup:g})")
        _report(call, ok and abs(value - expected) < 1e-9,
                f"expected {expected:.6f}, got {got if not ok else f'{value:.6f}'} | hint: "
                + _ramp_mistake(value, *args), core=expected != eps)


def _ramp_mistake(value: float, eps: float, epoch: int, step: int, steps_per_epoch: int, warmup: float) -> str:
    """The likely slip behind a wrong eps ramp (a hint on the concept)."""
    done = epoch + (step + 1) / steps_per_epoch  # epochs of training done, the current batch included
    if warmup > 0 and abs(value - eps * min(1.0, (epoch + step / steps_per_epoch) / warmup)) < 1e-9:
        return (f"the current batch counts as done: after batch {step} of epoch {epoch}, {done:g} epochs of "
                "training are done")
    if warmup > 0 and abs(value - eps * done / warmup) < 1e-9:
        return "past the warm-up the budget stays at eps: it never grows beyond it"
    return (f"{done:g} epochs of training are done (the current batch included) out of a warm-up of {warmup:g}; "
            "the budget grows linearly with that fraction up to eps" if warmup > 0 else
            "warmup_epochs = 0 means no warm-up: the full eps from the first batch")


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


@checker(checks=6, forbid=_LOSSES, allow=("nslib.attacks.PGD", "nslib.attacks.pgd"))
def check_pgd_at_step(fn: Callable) -> Checked:
    """``fn(model, optimizer, images, labels, eps, alpha, steps)`` must make ``x'`` by PGD (random
    start, ``nslib.attacks.pgd``) with the model in eval mode, then take one optimizer step on
    ``CE(f(x'), y)`` with the model in train mode, the old gradients zeroed, and return the loss.

    Compared with that reference step under the same seed, on a tiny CNN with BatchNorm (whose
    ``num_batches_tracked`` counts the train-mode forward passes), handed over in eval mode and
    in train mode, its parameters carrying a stale gradient from a "previous step"."""
    import torch.nn.functional as F

    from ..attacks import pgd

    x, y = _step_data()
    eps, alpha, steps = 0.1, 0.04, 3
    for start in ("eval", "train"):
        model = _step_model(batchnorm=True).train(start == "train")
        stale = 0.1 * torch.randn(_flat_params(model).numel(), generator=torch.Generator().manual_seed(1))
        done, got, used = _student_step("PGD-AT step", fn, model, stale, x, y, eps, alpha, steps)
        if not done:
            return
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
        bn = model.bn1
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

    from ..hooks import capture
    from ..sensitivity import neuron_distance

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


@checker(checks=6, forbid=_LOSSES, allow=("nslib.hooks.capture", "nslib.attacks.PGD",
                                            "nslib.sensitivity.neuron_distance"))
def check_sns_step(fn: Callable) -> Checked:
    """``fn(model, optimizer, images, labels, layers, k, lam, eps, alpha, steps)`` must take one SNS
    step: ``x'`` by PGD (random start) against the model, then one optimizer step on
    ``CE(f(x'), y) + lam * sum_{l in layers} sum_{i in topk_l} (1/B) sum_j (1/dim)||F_l^i(x_j) - F_l^i(x'_j)||_1``
    (the top-``k`` chosen from the batch's own sensitivity, without gradient), return the loss,
    and leave no forward hook on the model. Compared with ``nslib.recipes.sns_loss``."""
    from ..attacks import pgd
    from ..recipes import sns_loss

    x, y = _step_data(1)
    layers, k, eps, alpha, steps = ["conv1", "conv2", "fc1"], 2, 0.1, 0.04, 3
    for lam in (0.5, 2.0):
        case = f"(lam = {lam:g})"
        model = _step_model(batchnorm=False)
        stale = 0.1 * torch.randn(_flat_params(model).numel(), generator=torch.Generator().manual_seed(2))
        done, got, used = _student_step("SNS step", fn, model, stale, x, y, layers, k, lam, eps, alpha, steps)
        if not done:
            return
        ref = _step_model(batchnorm=False)
        torch.manual_seed(0)
        expected, _ = sns_loss(ref, x, y, net=ref, eps=eps, alpha=alpha, steps=steps, state={}, lam=lam,
                               layers=layers, k=k)
        g_ref = _flat_grad(ref, expected)
        torch.manual_seed(0)
        mistakes = _sns_variants(pgd(ref, x, y, eps=eps, alpha=alpha, steps=steps), x, y, layers, k, lam)
        hooks = [n or "the model itself" for n, m in model.named_modules() if m._forward_hooks]
        _report(f"SNS step leaves no forward hook {case}", not hooks,
                f"forward hooks are still attached to {', '.join(hooks)}: remove each one (handle.remove(), "
                "in a finally block) or capture inside `with nslib.hooks.capture(...)`", core=False)
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
