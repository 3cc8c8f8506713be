"""Evaluation: accuracy, the robustness table with gradient-masking checks, accuracy vs eps.

Taught in lesson 04 (``04_robust_training_and_sns.ipynb``).
"""
from __future__ import annotations

import torch
from torch import nn

from .utils import default_eps, default_l2_eps, eval_mode, mean_std, model_device, pgd_step

__all__ = ["accuracy", "headline_metrics", "compare_worst_case", "compare_over_seeds", "worst_case", "default_suite",
           "autoattack_suite", "spec_attack", "describe_spec", "stages_of", "robustness_table", "masking_warnings",
           "flag_masking", "format_table", "save_csv", "robust_accuracy_curve", "CSV_COLUMNS", "EVAL_OPTIONS",
           "format_layer_table"]


def accuracy(model: nn.Module, data, labels: torch.Tensor | None = None, *,
             batch_size: int = 500) -> float:
    """Fraction of examples whose arg-max logit is the label, in eval mode, without gradients.

    Args:
        model (nn.Module): classifier on images in [0, 1].
        data (Tensor or iterable): images ``(N, C, H, W)`` with ``labels``, or a DataLoader
            (any iterable) of ``(images, labels)`` batches.
        labels (Tensor, optional): ``(N,)`` classes, when ``data`` is a tensor.
        batch_size (int, optional): images per forward pass for tensor input. Default: ``500``.

    Returns:
        float: accuracy in [0, 1].

    Example:
        >>> model = nslib.models.build("smallcnn")          # doctest: +SKIP
        >>> accuracy(model, *nslib.data.load("mnist5k", "test").tensors(100))  # doctest: +SKIP
    """
    if isinstance(data, torch.Tensor):
        if labels is None:
            raise ValueError("accuracy(model, images, labels): labels are missing; pass the (N,) "
                             "class tensor, or a DataLoader of (images, labels).")
        if labels.shape != (data.shape[0],):
            raise ValueError(f"labels must have shape ({data.shape[0]},) to match the images, "
                             f"got {tuple(labels.shape)}.")
        batches = ((data[i:i + batch_size], labels[i:i + batch_size])
                   for i in range(0, data.shape[0], batch_size))
    else:
        if labels is not None:
            raise ValueError("labels are given by the data loader; call accuracy(model, loader).")
        batches = ((b[0], b[1]) for b in data)
    device = model_device(model)
    correct = total = 0
    with eval_mode(model), torch.no_grad():
        for x, y in batches:
            y = y.to(device)
            correct += (model(x.to(device)).argmax(1) == y).sum().item()
            total += y.shape[0]
    if total == 0:
        raise ValueError("no examples to evaluate: the data is empty.")
    return correct / total


def headline_metrics(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, eps: float = 0.3,
                     seed: int = 0, autoattack: str | None = "quick") -> dict:
    """The numbers a checkpoint carries: clean, FGSM, PGD-40 and AutoAttack accuracy at ``eps``.

    PGD-40 is L-inf with step ``eps / 30`` (0.01 at MNIST's 0.3) and a random start; each
    attack runs after ``torch.manual_seed(seed)`` (:func:`robustness_table`). ``worst_acc``
    is the per-example worst case: an image counts only if it survives every attack.

    Args:
        autoattack (str, optional): AutoAttack version (``"standard"`` on a GPU, our CPU
            subset ``"quick"``: ``nslib.autoattack``), or ``None`` to leave it out.

    Returns:
        dict: ``clean_acc``, ``fgsm_acc``, ``pgd40_acc``, with AutoAttack also ``aa_acc``
        and ``aa_version`` (its label); ``worst_acc``; ``n`` (images); ``eps``.
    """
    suite = {"clean": {"attack": "clean"}, "fgsm": {"attack": "fgsm", "eps": eps},
             "pgd40": {"attack": "pgd", "eps": eps, "alpha": eps / 30, "steps": 40}}
    if autoattack is not None:
        suite["aa"] = next(iter(autoattack_suite(eps, autoattack).values()))
    rows = robustness_table(model, (images, labels), suite, seed=seed)
    metrics = {f"{r['attack']}_acc": r["accuracy"] for r in rows}
    if autoattack is not None:
        from .autoattack import describe_version

        metrics["aa_version"] = describe_version(autoattack)
    metrics.update(worst_acc=worst_case(rows, "model", list(suite)), n=int(labels.shape[0]), eps=eps)
    return metrics


# --------------------------------------------------------------------------- attack suites
#: An attack spec is a dict ``{"attack": name, **keys}``, or a callable
#: ``factory(model) -> attack(images, labels)`` for anything else. ``name`` is ``"clean"``,
#: ``"autoattack"`` or an attack of ``nslib.attacks.ATTACKS`` (fgsm, bim, pgd, mim, cw), whose
#: class's constructor arguments are the valid keys (``PGD.options()``: eps, alpha, steps,
#: random_start, norm, loss, kappa, targeted), plus the evaluation-level options in
#: ``EVAL_OPTIONS``. Any other key is an error that lists the valid ones.

#: Evaluation-level spec keys (not hyper-parameters of the attack) -> the attacks that take them.
EVAL_OPTIONS = {
    "restarts": ("pgd",),   # run the attack this many times; an example is robust only if it survives all
    "l2_max": ("cw",),      # an adversarial example counts only within this L2 distance of its image
}
#: Keys of the ``"autoattack"`` spec: Croce & Hein's ``AutoAttack(model, norm, eps, version)``.
AUTOATTACK_OPTIONS = ("eps", "norm", "version")


def default_suite(eps: float = 0.3, *, l2_eps: float | None = None,
                  autoattack: str | None = None) -> dict[str, dict]:
    """The standard attack suite: L-inf at budget ``eps``, L2 at radius ``l2_eps``.

    An example is *robust* under a threat model when the model classifies it correctly
    and also every ``x'`` the attack finds with ``||x' - x||_p <= eps`` (``p`` = inf or 2).

    Names -> specs, L-inf at ``eps`` (MNIST 0.3, CIFAR-10 8/255): ``clean``; ``fgsm``;
    ``pgd10`` (step ``2.5*eps/10``), ``pgd40`` and ``pgd100`` (step ``eps/30``, 0.01 at
    0.3); ``pgd40@eps/3`` and ``pgd40@2eps/3``; ``pgd40x5`` (5 random restarts, an
    example counts as robust only if it survives all 5); ``pgd40_cw`` (C&W margin loss);
    ``mim`` (40 steps, decay 1.0); ``pgd40@2eps`` (the sanity check: accuracy must be ~0
    at twice the budget, step ``2 eps/15``). L2 at ``l2_eps``: ``pgd100_l2`` (PGD-L2,
    100 steps of ``2.5*l2_eps/100``: the L2 robustness number) and ``cw_l2``
    (Carlini-Wagner L2 with its binary search over ``c``: 5 searches of 100 Adam steps,
    ``lr`` 0.1, initial ``c`` 1; an example counts as broken only if fooled within
    ``l2_max = l2_eps``; the masking check flags it when it is weaker than
    ``pgd100_l2`` beyond sampling noise). With ``autoattack="standard"`` (or ``"quick"``),
    AutoAttack at ``eps`` (L-inf) joins as ``autoattack`` (or ``autoattack_quick``): see
    ``nslib.autoattack``.

    Args:
        eps (float, optional): the L-inf budget. Default: ``0.3`` (MNIST).
        l2_eps (float, optional): the L2 radius. Default: the standard radius of the
            data set whose L-inf budget ``eps`` is (``nslib.utils.default_l2_eps``):
            ``2.0`` when ``eps >= 0.1`` (MNIST-like), else ``0.5`` (CIFAR-10-like).
        autoattack (str, optional): the AutoAttack version to add (``"standard"``, or our
            CPU subset ``"quick"``); ``None`` leaves it out (it is the slowest attack).

    Example:
        >>> list(default_suite(0.3))[:4]
        ['clean', 'fgsm', 'pgd10', 'pgd40']
    """
    if l2_eps is None:
        l2_eps = default_l2_eps(1 if eps >= 0.1 else 3)
    third = round(eps / 3, 6)
    suite = {
        "clean": {"attack": "clean"},
        "fgsm": {"attack": "fgsm", "eps": eps},
        "pgd10": {"attack": "pgd", "eps": eps, "alpha": pgd_step(eps, 10), "steps": 10},
        "pgd40": {"attack": "pgd", "eps": eps, "alpha": eps / 30, "steps": 40},
        "pgd100": {"attack": "pgd", "eps": eps, "alpha": eps / 30, "steps": 100},
        f"pgd40@{third:g}": {"attack": "pgd", "eps": third, "alpha": third / 30 * 2.5, "steps": 40},
        f"pgd40@{2 * third:g}": {"attack": "pgd", "eps": 2 * third, "alpha": 2 * third / 30 * 1.25,
                                 "steps": 40},
        "pgd40x5": {"attack": "pgd", "eps": eps, "alpha": eps / 30, "steps": 40, "restarts": 5},
        "pgd40_cw": {"attack": "pgd", "eps": eps, "alpha": eps / 30, "steps": 40, "loss": "cw"},
        "mim": {"attack": "mim", "eps": eps, "alpha": eps / 30, "steps": 40},
        "pgd100_l2": {"attack": "pgd", "norm": "L2", "eps": l2_eps, "alpha": pgd_step(l2_eps, 100), "steps": 100},
        "cw_l2": {"attack": "cw", "c": 1.0, "steps": 100, "lr": 0.1, "binary_search_steps": 5, "l2_max": l2_eps},
        f"pgd40@{2 * eps:g}": {"attack": "pgd", "eps": 2 * eps, "alpha": 2 * eps / 15, "steps": 40},
    }
    if autoattack is not None:
        suite.update(autoattack_suite(eps, autoattack))
    return suite


def autoattack_suite(eps: float, version: str = "standard", norm: str = "Linf") -> dict[str, dict]:
    """``{name: spec}`` of AutoAttack at ``eps``: ``autoattack`` (standard, L-inf), with
    ``_quick`` for the quick subset and ``_l2`` for the L2 threat model.

    Example:
        >>> autoattack_suite(0.3, "quick")
        {'autoattack_quick': {'attack': 'autoattack', 'eps': 0.3, 'norm': 'Linf', 'version': 'quick'}}
        >>> list(autoattack_suite(2.0, "standard", norm="L2"))
        ['autoattack_l2']
    """
    from .autoattack import check_version

    if not isinstance(version, str):
        raise ValueError(f"autoattack takes a version name ('standard' or 'quick') or None, got {version!r}.")
    check_version(version)
    name = ("autoattack" + ("" if version == "standard" else f"_{version}")
            + ("" if norm == "Linf" else f"_{norm.lower()}"))
    return {name: {"attack": "autoattack", "eps": eps, "norm": norm, "version": version}}


def spec_attack(model: nn.Module, spec: dict):
    """The attack object and the evaluation options of one spec; unknown keys raise.

    Args:
        model (nn.Module): the model the attack runs against.
        spec (dict): ``{"attack": name, ...}`` (see ``EVAL_OPTIONS`` and :func:`default_suite`).

    Returns:
        tuple: ``(attack, options)``: ``attack`` is ``None`` for ``"clean"``, the dict of
        AutoAttack's arguments for ``"autoattack"``, else an instance of the class in
        ``nslib.attacks.ATTACKS`` built from the spec (its constructor validates the
        values); ``options`` holds the evaluation-level keys (``restarts``, ``l2_max``).
        A PGD in fp32 gets ``stop_when_fooled=True`` unless the spec says otherwise: it stops
        on a batch once every image is misclassified, which leaves the accuracy as it is.

    Raises:
        ValueError: an unknown attack name or key (the message lists the valid ones), or
            ``targeted=True`` (robustness is measured against untargeted attacks).

    Example:
        >>> from nslib.models import build
        >>> spec_attack(build("smallcnn"), {"attack": "pgd", "eps": 0.3, "nrom": "L2"})
        Traceback (most recent call last):
        ...
        ValueError: unknown key 'nrom' in the pgd spec {'attack': 'pgd', 'eps': 0.3, 'nrom': 'L2'}; valid keys: attack, eps, alpha, steps, random_start, norm, loss, kappa, targeted, restarts.
    """
    from .attacks import ATTACKS

    if not isinstance(spec, dict):
        raise TypeError(f"an attack spec is a dict {{'attack': name, ...}} or a callable factory(model) -> "
                        f"attack, got {type(spec).__name__}.")
    kind = spec.get("attack", "clean")
    if kind == "clean":
        valid: tuple[str, ...] = ()
    elif kind == "autoattack":
        valid = AUTOATTACK_OPTIONS
    elif kind in ATTACKS:
        valid = ATTACKS[kind].options() + tuple(k for k, kinds in EVAL_OPTIONS.items() if kind in kinds)
    else:
        raise ValueError(f"unknown attack {kind!r} in spec {spec}; choose one of "
                         f"{['clean', *ATTACKS, 'autoattack']}, or pass a callable factory(model) -> attack.")
    unknown = [key for key in spec if key != "attack" and key not in valid]
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} in the {kind} spec {spec}; valid keys: "
                         + ", ".join(("attack",) + valid) + ".")
    if spec.get("targeted"):
        raise ValueError(f"the spec {spec} asks for a targeted attack, but robust accuracy is measured "
                         "against untargeted attacks (the labels given are the true classes); drop "
                         "'targeted', or call the attack yourself with target labels.")
    options = {key: spec[key] for key in EVAL_OPTIONS if key in spec}
    hyper = {key: value for key, value in spec.items() if key != "attack" and key not in options}
    if kind == "clean":
        return None, options
    if kind == "autoattack":
        from .autoattack import NORMS, check_version

        check_version(hyper.get("version", "standard"))
        if hyper.get("norm", "Linf") not in NORMS:
            raise ValueError(f"unknown norm {hyper['norm']!r} in spec {spec}; AutoAttack takes {list(NORMS)}.")
        if "eps" not in hyper:
            raise ValueError(f"the autoattack spec {spec} needs 'eps' (MNIST L-inf 0.3, CIFAR-10 8/255).")
        return {"norm": "Linf", "version": "standard", **hyper}, options
    restarts = options.get("restarts", 1)
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise ValueError(f"restarts must be an int >= 1, got {restarts!r} in spec {spec}.")
    if restarts > 1 and not spec.get("random_start", True):
        raise ValueError(f"restarts={restarts} without a random start repeats the same attack; "
                         f"set random_start=True or drop restarts (spec {spec}).")
    if kind == "pgd" and hyper.get("precision", "fp32") == "fp32":
        hyper.setdefault("stop_when_fooled", True)   # the same accuracy, without the steps after it reached zero
    return ATTACKS[kind](model, **hyper), options


def _run_spec(model: nn.Module, spec, x: torch.Tensor, y: torch.Tensor, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """Per-example robustness (bool ``(N,)``, on the CPU) of ``model`` under one attack spec.

    An example is robust when the model classifies it correctly *and* every run of the
    attack (``restarts``) leaves it correctly classified: a misclassified clean image is
    never robust, since the attacker could return it unchanged. Returns ``{"robust": flags}``;
    for AutoAttack also each cascade stage by component name (``nslib.autoattack``); for a
    PGD that stops once every image is fooled also ``"steps_run"``, the steps it took (summed
    over restarts) for each example of the batch (a progress bar's count).
    """
    robust = _correct(model, x, y)
    if callable(spec):
        return {"robust": robust & _correct(model, spec(model)(x, y), y)}
    attack, options = spec_attack(model, spec)
    if attack is None:
        return {"robust": robust}
    if isinstance(attack, dict):
        from .autoattack import autoattack_robust

        stages = autoattack_robust(model, x, y, seed=seed, **attack)
        return {"robust": robust & list(stages.values())[-1], **stages}
    steps_run = []   # one PGD step is one forward pass of the model
    counter = model.register_forward_pre_hook(lambda *_: steps_run.append(1))
    try:
        for _ in range(options.get("restarts", 1)):
            x_adv = attack(x, y)
            survived = _correct(model, x_adv, y)
            if "l2_max" in options:  # a success farther than l2_max does not count
                survived |= (x_adv - x.to(x_adv.device)).flatten(1).norm(dim=1).cpu() > options["l2_max"]
            robust &= survived
    finally:
        counter.remove()
    if not getattr(attack, "stop_when_fooled", False):
        return {"robust": robust}
    taken = len(steps_run) - options.get("restarts", 1)   # less the forward pass of each _correct
    return {"robust": robust, "steps_run": torch.full(robust.shape, taken)}


def _run_batches(model: nn.Module, spec, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                 seed: int) -> dict[str, torch.Tensor]:
    """:func:`_run_spec` over batches of ``batch_size``, concatenated (after ``torch.manual_seed(seed)``)."""
    torch.manual_seed(seed)
    parts = [_run_spec(model, spec, x[i:i + batch_size], y[i:i + batch_size], seed=seed)
             for i in range(0, x.shape[0], batch_size)]
    return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}


def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    device = model_device(model)
    with eval_mode(model), torch.no_grad():
        return (model(x.to(device)).argmax(1) == y.to(device)).cpu()


def describe_spec(name: str, spec, model: nn.Module | None = None) -> dict:
    """A table row's metadata for one spec, read from the attack object the spec builds.

    Returns ``{"attack": name, "kind", "norm", "eps", "steps", "alpha", "restarts", "loss"}``;
    a key that does not apply to the attack is ``None`` (clean has ``eps`` 0, FGSM 1 step).
    A C&W row's ``eps`` is its ``l2_max`` (the L2 radius within which a success counts;
    ``None`` without a cap) and its ``steps`` the Adam steps per binary-search step.
    """
    row = {"attack": name, "kind": "custom", "norm": None, "eps": None, "steps": None, "alpha": None,
           "restarts": None, "loss": None}
    if callable(spec):
        return row
    attack, options = spec_attack(model if model is not None else nn.Identity(), spec)
    row["kind"] = spec.get("attack", "clean")
    if attack is None:
        return {**row, "eps": 0.0}
    hyper = dict(attack) if isinstance(attack, dict) else attack.hyper
    norm = hyper.get("norm", "L2" if row["kind"] == "cw" else "Linf")
    row.update(norm=norm, eps=hyper.get("eps"), alpha=hyper.get("alpha"),
               steps=hyper.get("steps", 1 if row["kind"] == "fgsm" else None))
    if row["kind"] == "pgd":
        row.update(restarts=options.get("restarts", 1), loss=hyper["loss"])
    if row["kind"] == "cw":  # C&W minimises the distance; its radius is the cap l2_max (None: no cap)
        row["eps"] = options.get("l2_max")
    return row


def robustness_table(models, data, attacks: dict | None = None, *, batch_size: int = 500,
                     seed: int = 0, tolerance: float = 0.01, large_eps_max: float = 0.05,
                     autoattack_gap: float = 0.10, progress: bool = False, cache: bool = False) -> list[dict]:
    """Accuracy of every model under every attack, as a tidy list of rows, with masking checks.

    Gradient-masking checks (Athalye et al., 2018; Carlini et al., 2019), each flagged on
    the row that fails it (``flags``; :func:`masking_warnings` lists them):

    * an iterative attack (PGD, MIM) at eps must not be weaker than FGSM at the same eps;
    * PGD with more steps, or with restarts, must not be weaker than with fewer steps /
      one start (same eps, loss and step size ``alpha``: with a larger step, fewer steps
      can legitimately find more on a barely robust model, so that pair says more about
      the step than about masking);
    * no attack may give higher accuracy than clean;
    * at the largest eps of the suite (at least twice the main budget), accuracy must be
      below ``large_eps_max``;
    * AutoAttack's black-box Square must not break examples that its white-box attacks
      (APGD-CE, APGD-T, FAB-T) left standing (Croce & Hein's own check);
    * PGD must not sit more than ``autoattack_gap`` above AutoAttack at the same eps and
      norm: a PGD number that AutoAttack undercuts by that much is not a robustness number;
    * an L2 attack (C&W within ``l2_max``, AutoAttack L2) must not be weaker than PGD-L2 at
      the same radius by more than the sampling noise (see :func:`flag_masking`).

    "Weaker" means a higher accuracy by more than ``tolerance``.

    Args:
        models (dict[str, nn.Module] or nn.Module): models by name (one model is named "model").
        data (tuple): ``(images (N, C, H, W) in [0, 1], labels (N,))``.
        attacks (dict, optional): ``{name: spec}``, a spec being a dict as in
            :func:`default_suite` or a callable ``factory(model) -> attack``. Default:
            ``default_suite(0.3)`` for 1-channel images, ``default_suite(8/255)`` otherwise.
        batch_size (int, optional): images per attack call. Default: ``500``.
        seed (int, optional): ``torch.manual_seed`` before each (model, attack) pair, so
            random starts are reproducible. Default: ``0``.
        tolerance (float, optional): slack of the ordering checks. Default: ``0.01``.
        large_eps_max (float, optional): largest accuracy allowed at the large eps.
            Default: ``0.05``.
        autoattack_gap (float, optional): how far PGD may sit above AutoAttack. Default: ``0.10``.
        progress (bool, optional): a tqdm bar over (model, attack) pairs. Default: ``False``.
        cache (bool, optional): reuse the rows of an earlier call with the same weights, images,
            specs and settings, and the same code (``nslib.cache``; specs must be dicts).
            Default: ``False``.

    Returns:
        list of dict: one row per (model, attack): ``model``, ``attack`` (its name in the
        suite), ``kind`` (clean, fgsm, bim, pgd, mim, cw, autoattack, custom), ``norm``
        (Linf, L2), ``eps``, ``steps``, ``alpha``, ``restarts``, ``loss`` (read from the
        attack object the spec builds), ``accuracy`` (in [0, 1]: correct on the clean image
        and on every adversarial one), ``n``, ``stages`` (AutoAttack: the accuracy after
        each component of its cascade, ``{"apgd-ce": ..., ...}``; else empty), ``robust``
        (bool ``(N,)`` on the CPU: which examples survived; for per-example worst cases,
        :func:`worst_case`), ``flags`` (list of str).

    Raises:
        ValueError: a spec with an unknown attack or key (see :func:`spec_attack`), before
            any attack runs.

    Example:
        >>> rows = robustness_table({"std": model}, (x, y), {"clean": {"attack": "clean"},
        ...                         "fgsm": {"attack": "fgsm", "eps": 0.3}})  # doctest: +SKIP
        >>> print(format_table(rows))                                         # doctest: +SKIP
    """
    if isinstance(models, nn.Module):
        models = {"model": models}
    if not isinstance(models, dict) or not models:
        raise TypeError("models must be a non-empty dict {name: nn.Module} (or one nn.Module).")
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError("data must be an (images, labels) pair, e.g. "
                        "nslib.data.load('mnist5k', 'test').tensors(1000).")
    x, y = data
    if attacks is None:
        attacks = default_suite(default_eps(x.shape[1]))
    for name, spec in attacks.items():  # every spec is checked before the first attack runs
        describe_spec(name, spec, next(iter(models.values())))
    if cache:
        from .cache import attack_inputs, cached

        settings = dict(batch_size=batch_size, seed=seed, tolerance=tolerance, large_eps_max=large_eps_max,
                        autoattack_gap=autoattack_gap)
        return cached("robustness_table", attack_inputs(models, x, y, attacks, **settings),
                      lambda: robustness_table(models, data, attacks, progress=progress, **settings))
    pairs = [(m, a) for m in models for a in attacks]
    bar = None
    if progress:  # weighted by each attack's gradient passes, so the estimate of the time left holds
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(_passes(attacks[a]) for _, a in pairs), desc="robustness table", unit="step")
    rows = []
    for model_name, attack_name in pairs:
        model, spec = models[model_name], attacks[attack_name]
        if bar is not None:
            bar.set_postfix_str(f"{model_name}: {attack_name}")
        result = _run_batches(model, spec, x, y, batch_size, seed)
        robust, steps_run = result.pop("robust"), result.pop("steps_run", None)
        if bar is not None:
            _advance(bar, spec, result, steps_run)
        rows.append({"model": model_name, **describe_spec(attack_name, spec, model),
                     "accuracy": robust.sum().item() / robust.numel(), "n": int(x.shape[0]),
                     "stages": {k: v.sum().item() / v.numel() for k, v in result.items()}, "robust": robust,
                     "flags": []})
    if bar is not None:
        bar.close()
    return flag_masking(rows, tolerance=tolerance, large_eps_max=large_eps_max, autoattack_gap=autoattack_gap)


def _passes(spec) -> int:
    """About how many gradient passes per image an attack spec takes (a progress bar's weight; clean counts 1)."""
    if callable(spec) or spec.get("attack", "clean") in ("clean", "fgsm"):
        return 1
    if spec["attack"] == "autoattack":
        from .autoattack import gradient_passes

        return gradient_passes(spec.get("version", "standard"))
    if spec["attack"] == "cw":
        return spec.get("steps", 100) * spec.get("binary_search_steps", 1)
    return spec.get("steps", 10) * spec.get("restarts", 1)


def _advance(bar, spec, stages: dict, steps_run: torch.Tensor | None = None) -> None:
    """Move ``bar`` by the passes an attack took; AutoAttack's cascade takes fewer than :func:`_passes` when its
    first components break most images, and a PGD that stops once every image is fooled fewer than its steps
    (``steps_run``, per example): the bar's total shrinks by the difference."""
    planned = taken = _passes(spec)
    if steps_run is not None:
        taken = round(steps_run.double().mean().item())
        _shrink_total(bar, planned - taken)
    elif stages and not callable(spec) and spec.get("attack") == "autoattack":
        from .autoattack import gradient_passes

        left = [flags.float().mean().item() for flags in stages.values()]
        taken = gradient_passes(spec.get("version", "standard"), [1.0] + left[:-1])
        _shrink_total(bar, planned - taken)
    bar.update(taken)


def _shrink_total(bar, by: int) -> None:
    """Lower a tqdm bar's total by ``by``; in a notebook also the drawn bar's end (``tqdm.notebook`` sets its
    widget's ``max`` once, so a bar with a smaller total would end short of full)."""
    bar.total -= by
    widget = getattr(bar, "container", None)   # tqdm.notebook: an HBox of (label, IntProgress, text)
    if widget is not None:
        widget.children[1].max = bar.total


def flag_masking(rows: list[dict], *, tolerance: float = 0.01, large_eps_max: float = 0.05,
                 autoattack_gap: float = 0.10) -> list[dict]:
    """Add to each row's ``flags`` the gradient-masking checks it fails (see :func:`robustness_table`).

    Works on the tidy rows alone (their ``kind``, ``norm``, ``eps``, ``steps``, ``restarts``,
    ``loss`` and ``accuracy``), so it also checks tables read back from a CSV or typed by
    hand. The ordering and large-eps checks compare L-inf attacks only (a row without
    ``norm`` counts as L-inf when its kind is fgsm, bim, pgd or mim), so an L2 attack is
    never held against an L-inf one of the same numeric eps. An L2 row is flagged when it
    sits above PGD-L2 at the same radius (accuracy ``p``) by more than the sampling noise
    ``2 sqrt(2 p (1 - p) / n)``, and at least ``tolerance`` (:func:`_l2_flags`; a C&W
    row's radius is its ``l2_max``, which :func:`describe_spec` puts in ``eps``). Returns
    the same rows.
    """
    by_model: dict[str, list[dict]] = {}
    for row in rows:
        row.setdefault("flags", [])
        by_model.setdefault(row["model"], []).append(row)
    for model_rows in by_model.values():
        _autoattack_flags(model_rows, tolerance, autoattack_gap)
        _l2_flags(model_rows, tolerance)
        clean = next((r for r in model_rows if r["kind"] == "clean"), None)
        linf_rows = [r for r in model_rows if _is_linf(r)]
        linf = [r["eps"] for r in linf_rows if r["eps"]]
        for row in model_rows:
            kind, acc = row["kind"], row["accuracy"]
            if clean is not None and row is not clean and acc > clean["accuracy"] + tolerance:
                row["flags"].append(f"accuracy {acc:.3f} above clean {clean['accuracy']:.3f}")
            if row not in linf_rows:  # the checks below compare L-inf attacks only
                continue
            if kind in ("pgd", "mim", "bim"):
                for fg in linf_rows:
                    if fg["kind"] == "fgsm" and fg["eps"] == row["eps"] and acc > fg["accuracy"] + tolerance:
                        row["flags"].append(f"weaker than FGSM at eps {row['eps']:g} "
                                            f"({acc:.3f} > {fg['accuracy']:.3f})")
            if kind == "pgd":
                for other in linf_rows:
                    if (other is not row and other["kind"] == "pgd" and other["eps"] == row["eps"]
                            and other["loss"] == row["loss"] and other.get("alpha") == row.get("alpha")
                            and other["steps"] <= row["steps"]
                            and other["restarts"] <= row["restarts"] and acc > other["accuracy"] + tolerance):
                        row["flags"].append(f"weaker than {other['attack']} with fewer steps/restarts "
                                            f"({acc:.3f} > {other['accuracy']:.3f})")
            if linf and row["eps"] == max(linf) and row["eps"] >= 2 * min(linf) and acc >= large_eps_max:
                row["flags"].append(f"accuracy {acc:.3f} at large eps {row['eps']:g} (expected < "
                                    f"{large_eps_max:g})")
    return rows


def stages_of(row: dict) -> dict[str, float]:
    """An AutoAttack row's accuracy after each cascade stage (from a table, or a CSV's text)."""
    stages = row.get("stages") or {}
    if isinstance(stages, str):  # read back from a CSV: "apgd-ce=0.875; apgd-t=0.87"
        stages = {k: float(v) for k, v in (part.split("=") for part in stages.split("; "))}
    return stages


def _autoattack_flags(model_rows: list[dict], tolerance: float, gap: float) -> None:
    """Flag Square beating the white-box attacks (on the AutoAttack row) and PGD far above AutoAttack."""
    from .autoattack import BLACK_BOX

    for aa in (r for r in model_rows if r["kind"] == "autoattack"):
        stages = list(stages_of(aa).items())
        for i, (name, acc) in enumerate(stages):
            if name in BLACK_BOX and i > 0 and stages[i - 1][1] - acc > tolerance:
                aa["flags"].append(f"black-box {name} broke {stages[i - 1][1] - acc:.3f} more than the white-box "
                                   f"attacks ({stages[i - 1][1]:.3f} -> {acc:.3f})")
        for row in model_rows:
            if (row["kind"] == "pgd" and row["eps"] == aa["eps"] and (row.get("norm") or "Linf") == aa["norm"]
                    and row["accuracy"] - aa["accuracy"] > gap):
                row["flags"].append(f"{row['accuracy'] - aa['accuracy']:.3f} above {aa['attack']} "
                                    f"({row['accuracy']:.3f} > {aa['accuracy']:.3f})")


def _is_l2(row: dict) -> bool:
    """An L2 attack row: its ``norm`` is L2, or it is a C&W row without a ``norm``."""
    return row.get("norm") == "L2" or (row["kind"] == "cw" and row.get("norm") in (None, ""))


def _l2_flags(model_rows: list[dict], tolerance: float) -> None:
    """Flag an L2 attack weaker than PGD-L2 at the same radius by more than sampling noise.

    PGD-L2 (Madry et al., 2018) at radius ``eps`` is the reference: every other L2 row at
    that radius (C&W with ``l2_max = eps``, AutoAttack L2, a PGD-L2 with at least as many
    steps and restarts) should leave at most its accuracy ``p``. A row is flagged when its
    accuracy exceeds the lowest such reference by more than ``max(noise, tolerance)``, with
    ``noise = 2 sqrt(2 p (1 - p) / n)`` (:func:`_noise`) on the rows' ``n`` images. L2 rows
    are never compared with L-inf ones, whatever their numeric eps.
    """
    l2_rows = [r for r in model_rows if _is_l2(r) and r["kind"] != "clean" and r.get("eps")]
    pgd_l2 = [r for r in l2_rows if r["kind"] == "pgd"]
    for row in l2_rows:
        refs = [r for r in pgd_l2 if r is not row and r["eps"] == row["eps"]
                and (row["kind"] != "pgd" or (r["steps"] <= row["steps"] and r["restarts"] <= row["restarts"]))]
        if not refs:
            continue
        ref = min(refs, key=lambda r: r["accuracy"])
        noise = _noise(ref["accuracy"], min(row["n"], ref["n"]))
        if row["accuracy"] > ref["accuracy"] + max(noise, tolerance):
            row["flags"].append(f"weaker than {ref['attack']} at L2 radius {row['eps']:g} "
                                f"({row['accuracy']:.3f} > {ref['accuracy']:.3f} + noise {noise:.3f})")


def _is_linf(row: dict) -> bool:
    return row["kind"] in ("fgsm", "bim", "pgd", "mim") and row.get("norm") in (None, "", "Linf")


def _noise(p: float, n: int) -> float:
    """Two standard errors of a difference of two accuracies near ``p`` on ``n`` images each.

    ``2 sqrt(2 p (1 - p) / n)``: the standard error of one accuracy is ``sqrt(p (1 - p) / n)``,
    and a difference of two independent ones has twice its variance. E.g. 0.06 at
    ``p = 0.9``, ``n = 200``.
    """
    return 2 * (2 * p * (1 - p) / n) ** 0.5


def compare_worst_case(rows: list[dict], model: str, baseline: str, attacks: list[str], n: int) -> dict:
    """Finding 3's test: is ``model`` more robust than ``baseline`` beyond sampling noise?

    Each model's worst case is its per-example worst case over ``attacks`` (names in ``rows``,
    e.g. every L-inf attack at the budget; :func:`worst_case`). The difference counts only beyond two standard errors
    of a difference of two accuracies on ``n`` images, ``noise = 2 sqrt(2 p (1 - p) / n)``
    with ``p`` the baseline's worst case.

    Returns:
        dict: ``worst`` ({model name: worst accuracy}, every model in ``rows``),
        ``difference`` (model - baseline), ``noise`` and ``verdict`` (``"beat"``,
        ``"fell behind"`` or ``"matched"``).
    """
    worst = {m: worst_case(rows, m, attacks) for m in dict.fromkeys(r["model"] for r in rows)}
    difference = worst[model] - worst[baseline]
    noise = _noise(worst[baseline], n)
    verdict = "beat" if difference > noise else "fell behind" if difference < -noise else "matched"
    return {"worst": worst, "difference": difference, "noise": noise, "verdict": verdict}


def worst_case(rows: list[dict], model: str, attacks: list[str]) -> float:
    """The accuracy of ``model`` when each example faces its own worst attack among ``attacks``.

    An example counts as robust only if it survives every attack: the per-example AND of
    the rows' ``robust`` flags. Rows read back from a CSV have no flags; their worst case
    falls back to the lowest accuracy, an upper bound on the per-example one.
    """
    chosen = [r for r in rows if r["model"] == model and r["attack"] in attacks]
    missing = set(attacks) - {r["attack"] for r in chosen}
    if missing:
        raise ValueError(f"no rows of model {model!r} for attacks {sorted(missing)}; rows have "
                         f"{sorted({r['attack'] for r in rows if r['model'] == model})}.")
    if all(isinstance(r.get("robust"), torch.Tensor) for r in chosen):
        robust = torch.stack([r["robust"] for r in chosen]).all(0)
        return robust.sum().item() / robust.numel()
    return min(r["accuracy"] for r in chosen)


def compare_over_seeds(model: list[float], baseline: list[float], n: int) -> dict:
    """Finding 3's test over training seeds: is ``model``'s mean accuracy above ``baseline``'s?

    ``model`` and ``baseline`` hold one (worst-case) accuracy per training seed, each
    measured on the same ``n`` test images. The statistic is the difference of the means,
    ``d = mean(a) - mean(b)``, against two standard errors that count both sources of
    noise, treated as independent:

        SE^2 = s_a^2 / S_a + s_b^2 / S_b + 2 p (1 - p) / n

    with ``s`` the standard deviation over seeds (training variance; needs 2 seeds or more,
    else it is unknown and counted as 0, which the result says), ``S`` the number of seeds,
    and the last term the binomial sampling variance of a difference of two accuracies on
    ``n`` images at the baseline's mean ``p`` (``p (1 - p)`` at least ``1 / n``: at ``p`` = 0 or 1,
    one image's worth, not zero). The verdict is ``"beat"`` when ``d > 2 SE``,
    ``"fell behind"`` when ``d < -2 SE``, else ``"matched"``. With 3 seeds a side, ``2 SE``
    is roughly a 90 % interval (a t distribution with about 4 degrees of freedom).

    Returns:
        dict: ``mean``/``std`` (``(model, baseline)``), ``difference``, ``se``, ``noise``
        (``2 SE``), ``seeds`` (``(S_a, S_b)``), ``seed_variance_known`` and ``verdict``.
    """
    if not model or not baseline:
        raise ValueError("compare_over_seeds needs at least one accuracy per side.")
    (mean_a, std_a), (p, std_b) = mean_std(model), mean_std(baseline)
    sampling = max(_noise(p, n) / 2, 2 ** 0.5 / n)   # p (1 - p) at least 1 / n
    se = (std_a ** 2 / len(model) + std_b ** 2 / len(baseline) + sampling ** 2) ** 0.5
    difference = mean_a - p
    verdict = "beat" if difference > 2 * se else "fell behind" if difference < -2 * se else "matched"
    return {"mean": (mean_a, p), "std": (std_a, std_b), "difference": difference, "se": se, "noise": 2 * se,
            "seeds": (len(model), len(baseline)), "seed_variance_known": len(model) > 1 and len(baseline) > 1,
            "verdict": verdict}


def masking_warnings(rows: list[dict]) -> list[str]:
    """One readable line per flag of :func:`robustness_table`'s rows (empty when all checks pass)."""
    return [f"{r['model']} / {r['attack']}: {flag} - suspect gradient masking; "
            "try more steps, restarts or another loss before trusting this number."
            for r in rows for flag in r["flags"]]


def format_table(rows: list[dict], *, digits: int = 1) -> str:
    """A wide text table: one line per model, one column per attack, accuracy in % (``*`` = flagged)."""
    attacks = list(dict.fromkeys(r["attack"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    cell = {(r["model"], r["attack"]): f"{100 * r['accuracy']:.{digits}f}" + ("*" if r["flags"] else "")
            for r in rows}
    width = max([len(m) for m in models] + [5])
    cols = [max(len(a), 6) for a in attacks]
    lines = [" ".join([f"{'model':<{width}}"] + [f"{a:>{w}}" for a, w in zip(attacks, cols)])]
    for m in models:
        lines.append(" ".join([f"{m:<{width}}"] + [f"{cell.get((m, a), '-'):>{w}}"
                                                    for a, w in zip(attacks, cols)]))
    return "\n".join(lines)



def format_layer_table(values: dict[str, dict[str, float]], layers: list[str] | None = None, *,
                       digits: int = 3, label: str = "model") -> str:
    """A text table of per-layer values (layer sensitivity, raw or relative): one line per model.

    Args:
        values (dict): ``{model: {layer: value}}``.
        layers (list of str, optional): the columns. Default: the first model's layers.
    """
    layers = list(layers or next(iter(values.values())))
    width = max([len(m) for m in values] + [len(label)])
    cols = [max(len(layer), digits + 5) for layer in layers]
    lines = [" ".join([f"{label:<{width}}"] + [f"{layer:>{w}}" for layer, w in zip(layers, cols)])]
    for model, row in values.items():
        lines.append(" ".join([f"{model:<{width}}"] + [f"{row[layer]:>{w}.{digits}f}" for layer, w in zip(layers, cols)]))
    return "\n".join(lines)


#: The columns of a robustness table saved by ``save_csv``, in order.
CSV_COLUMNS = ("model", "attack", "kind", "norm", "eps", "steps", "alpha", "restarts", "loss", "accuracy", "n",
               "stages", "flags")


def save_csv(rows: list[dict], path) -> None:
    """Write the tidy rows to ``path`` as CSV (flags joined with ``"; "``)."""
    import csv
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            stages = "; ".join(f"{k}={v:.4f}" for k, v in stages_of(row).items())
            writer.writerow({**{k: row.get(k) for k in CSV_COLUMNS}, "stages": stages,
                             "flags": "; ".join(row["flags"])})


def robust_accuracy_curve(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                          eps_list, *, attack: str = "pgd", steps: int = 40,
                          alpha: float | None = None, restarts: int = 1, batch_size: int = 500,
                          seed: int = 0, progress: bool = False, cache: bool = False) -> list[float]:
    """Accuracy under ``attack`` at each eps of ``eps_list`` (eps 0 is clean accuracy).

    Args:
        model (nn.Module): classifier on images in [0, 1].
        images (Tensor): ``(N, C, H, W)`` in [0, 1]. labels (Tensor): ``(N,)``.
        eps_list (list of float): Linf budgets.
        attack (str, optional): ``"pgd"``, ``"fgsm"`` or ``"mim"``. Default: ``"pgd"``.
        steps (int, optional): iterations (pgd, mim). Default: ``40``.
        alpha (float, optional): step size. Default: ``2.5 * eps / steps``.
        restarts (int, optional): PGD random restarts. Default: ``1``.
        seed (int, optional): ``torch.manual_seed`` before each eps. Default: ``0``.
        cache (bool, optional): reuse an earlier call's curve (as in :func:`robustness_table`).
            Default: ``False``.

    Returns:
        list of float: one accuracy per eps.

    Example:
        >>> robust_accuracy_curve(model, x, y, [0, 0.1, 0.2, 0.3])  # doctest: +SKIP
        [0.98, 0.95, 0.93, 0.9]
    """
    if attack not in ("pgd", "fgsm", "mim"):
        raise ValueError(f"unknown attack {attack!r}; choose 'pgd', 'fgsm' or 'mim'.")
    if restarts != 1 and attack != "pgd":
        raise ValueError(f"restarts={restarts} needs a random start, which only 'pgd' has; "
                         f"{attack!r} is deterministic, so drop restarts.")
    if cache:
        from .cache import attack_inputs, cached

        settings = dict(attack=attack, steps=steps, alpha=alpha, restarts=restarts, batch_size=batch_size, seed=seed)
        return cached("robust_accuracy_curve", attack_inputs({"model": model}, images, labels, list(eps_list), **settings),
                      lambda: robust_accuracy_curve(model, images, labels, eps_list, progress=progress, **settings))
    eps_iter = eps_list
    if progress:
        from tqdm.auto import tqdm

        eps_iter = tqdm(eps_list, desc=f"{attack} accuracy vs eps", unit="eps")
    result = []
    for eps in eps_iter:
        if eps == 0:
            spec = {"attack": "clean"}
        else:
            spec = {"attack": attack, "eps": eps}
            if attack != "fgsm":
                spec.update(alpha=alpha if alpha is not None else pgd_step(eps, steps), steps=steps)
            if attack == "pgd":
                spec["restarts"] = restarts
        robust = _run_batches(model, spec, images, labels, batch_size, seed)["robust"]
        result.append(robust.sum().item() / robust.numel())
    return result
