"""Evaluation: accuracy, the robustness table with gradient-masking checks, accuracy vs eps.

Taught in ``notebooks/04_robust_training_and_sns.ipynb``.
"""
from __future__ import annotations

import torch
from torch import nn

from .utils import default_eps, eval_mode, model_device, pgd_step

__all__ = ["accuracy", "headline_metrics", "compare_worst_case", "default_suite", "spec_attack", "describe_spec",
           "robustness_table", "masking_warnings", "flag_masking", "format_table", "save_csv",
           "robust_accuracy_curve", "CSV_COLUMNS", "EVAL_OPTIONS"]


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
                     seed: int = 0) -> dict[str, float]:
    """The three numbers a checkpoint carries: clean, FGSM and PGD-40 accuracy at ``eps``.

    PGD-40 is L-inf with step ``eps / 30`` (0.01 at MNIST's 0.3) and a random start drawn
    after ``torch.manual_seed(seed)``. Returns ``{"clean_acc", "fgsm_acc", "pgd40_acc"}``.
    """
    from .attacks import fgsm, pgd

    torch.manual_seed(seed)
    return {"clean_acc": accuracy(model, images, labels),
            "fgsm_acc": accuracy(model, fgsm(model, images, labels, eps=eps), labels),
            "pgd40_acc": accuracy(model, pgd(model, images, labels, eps=eps, alpha=eps / 30, steps=40), labels)}


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


def default_suite(eps: float = 0.3, *, autoattack: bool | None = None) -> dict[str, dict]:
    """The standard Linf attack suite at budget ``eps`` (MNIST: 0.3; CIFAR-10: 8/255).

    Names -> specs: ``clean``; ``fgsm``; ``pgd10`` (step ``2.5*eps/10``), ``pgd40`` and
    ``pgd100`` (step ``eps/30``, 0.01 at 0.3) at ``eps``; ``pgd40@eps/3`` and
    ``pgd40@2eps/3``; ``pgd40x5`` (5 random restarts, an example counts as robust only
    if it survives all 5); ``pgd40_cw`` (C&W margin loss); ``mim`` (40 steps, decay
    1.0); ``cw_l2`` (Carlini-Wagner L2, c=1, 100 steps; an example counts as broken only
    if fooled within L2 distance ``l2_max`` = ``6.67 * eps``, 2.0 at 0.3) and
    ``pgd40@2eps`` (the sanity check: accuracy must be ~0 at twice the budget, step
    ``2 eps/15``). AutoAttack (standard, Linf) is added when ``autoattack`` is
    importable (or ``autoattack=True``).

    Example:
        >>> list(default_suite(0.3))[:4]
        ['clean', 'fgsm', 'pgd10', 'pgd40']
    """
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
        "cw_l2": {"attack": "cw", "c": 1.0, "steps": 100, "lr": 0.01, "l2_max": round(eps * 20 / 3, 6)},
        f"pgd40@{2 * eps:g}": {"attack": "pgd", "eps": 2 * eps, "alpha": 2 * eps / 15, "steps": 40},
    }
    if autoattack or (autoattack is None and _autoattack_class() is not None):
        suite["autoattack"] = {"attack": "autoattack", "eps": eps}
    return suite


def _autoattack_class():
    try:
        from autoattack import AutoAttack  # the `autoattack` / `pyautoattack` package
    except ImportError:
        return None
    return AutoAttack


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
        return hyper, options
    restarts = options.get("restarts", 1)
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise ValueError(f"restarts must be an int >= 1, got {restarts!r} in spec {spec}.")
    if restarts > 1 and not spec.get("random_start", True):
        raise ValueError(f"restarts={restarts} without a random start repeats the same attack; "
                         f"set random_start=True or drop restarts (spec {spec}).")
    return ATTACKS[kind](model, **hyper), options


def _run_spec(model: nn.Module, spec, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example robustness (bool ``(N,)``, on the CPU) of ``model`` under one attack spec.

    An example is robust when the model classifies it correctly *and* every run of the
    attack (``restarts``) leaves it correctly classified: a misclassified clean image is
    never robust, since the attacker could return it unchanged.
    """
    robust = _correct(model, x, y)
    if callable(spec):
        return robust & _correct(model, spec(model)(x, y), y)
    attack, options = spec_attack(model, spec)
    if attack is None:
        return robust
    if isinstance(attack, dict):
        return robust & _autoattack_correct(model, attack, x, y)
    for _ in range(options.get("restarts", 1)):
        x_adv = attack(x, y)
        survived = _correct(model, x_adv, y)
        if "l2_max" in options:  # a success farther than l2_max does not count
            survived |= (x_adv - x.to(x_adv.device)).flatten(1).norm(dim=1).cpu() > options["l2_max"]
        robust &= survived
    return robust


def _autoattack_correct(model: nn.Module, arguments: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    cls = _autoattack_class()
    if cls is None:
        raise ValueError("the autoattack package is not installed; `pip install pyautoattack` or drop "
                         "'autoattack' from the suite.")
    arguments = {"norm": "Linf", "version": "standard", **arguments}
    adversary = cls(model, verbose=False, **arguments)
    return _correct(model, adversary.run_standard_evaluation(x, y, bs=x.shape[0]), y)


def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    device = model_device(model)
    with eval_mode(model), torch.no_grad():
        return (model(x.to(device)).argmax(1) == y.to(device)).cpu()


def describe_spec(name: str, spec, model: nn.Module | None = None) -> dict:
    """A table row's metadata for one spec, read from the attack object the spec builds.

    Returns ``{"attack": name, "kind", "norm", "eps", "steps", "alpha", "restarts", "loss"}``;
    a key that does not apply to the attack is ``None`` (clean has ``eps`` 0, FGSM 1 step).
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
    return row


def robustness_table(models, data, attacks: dict | None = None, *, batch_size: int = 500,
                     seed: int = 0, tolerance: float = 0.01, large_eps_max: float = 0.05,
                     progress: bool = False) -> list[dict]:
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
      below ``large_eps_max``.

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
        progress (bool, optional): a tqdm bar over (model, attack) pairs. Default: ``False``.

    Returns:
        list of dict: one row per (model, attack): ``model``, ``attack`` (its name in the
        suite), ``kind`` (clean, fgsm, bim, pgd, mim, cw, autoattack, custom), ``norm``
        (Linf, L2), ``eps``, ``steps``, ``alpha``, ``restarts``, ``loss`` (read from the
        attack object the spec builds), ``accuracy`` (in [0, 1]: correct on the clean image
        and on every adversarial one), ``n``, ``flags`` (list of str).

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
    pairs = [(m, a) for m in models for a in attacks]
    if progress:
        from tqdm.auto import tqdm

        pairs = tqdm(pairs, desc="robustness table", unit="attack")
    rows = []
    for model_name, attack_name in pairs:
        model, spec = models[model_name], attacks[attack_name]
        torch.manual_seed(seed)
        robust = torch.cat([_run_spec(model, spec, x[i:i + batch_size], y[i:i + batch_size])
                            for i in range(0, x.shape[0], batch_size)])
        rows.append({"model": model_name, **describe_spec(attack_name, spec, model),
                     "accuracy": robust.sum().item() / robust.numel(), "n": int(x.shape[0]), "flags": []})
    return flag_masking(rows, tolerance=tolerance, large_eps_max=large_eps_max)


def flag_masking(rows: list[dict], *, tolerance: float = 0.01, large_eps_max: float = 0.05) -> list[dict]:
    """Add to each row's ``flags`` the gradient-masking checks it fails (see :func:`robustness_table`).

    Works on the tidy rows alone (their ``kind``, ``norm``, ``eps``, ``steps``, ``restarts``,
    ``loss`` and ``accuracy``), so it also checks tables read back from a CSV or typed by
    hand. The ordering and large-eps checks compare L-inf attacks only (a row without
    ``norm`` counts as L-inf when its kind is fgsm, bim, pgd or mim), so an L2 attack is
    never held against an L-inf one of the same numeric eps. Returns the same rows.
    """
    by_model: dict[str, list[dict]] = {}
    for row in rows:
        row.setdefault("flags", [])
        by_model.setdefault(row["model"], []).append(row)
    for model_rows in by_model.values():
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


def _is_linf(row: dict) -> bool:
    return row["kind"] in ("fgsm", "bim", "pgd", "mim") and row.get("norm") in (None, "", "Linf")


def compare_worst_case(rows: list[dict], model: str, baseline: str, attacks: list[str], n: int) -> dict:
    """Finding 3's test: is ``model`` more robust than ``baseline`` beyond sampling noise?

    Each model's worst case is its lowest accuracy over ``attacks`` (names in ``rows``, e.g.
    every L-inf attack at the budget). The difference counts only beyond two standard errors
    of a difference of two accuracies on ``n`` images, ``noise = 2 sqrt(2 p (1 - p) / n)``
    with ``p`` the baseline's worst case.

    Returns:
        dict: ``worst`` ({model name: worst accuracy}, every model in ``rows``),
        ``difference`` (model - baseline), ``noise`` and ``verdict`` (``"beat"``,
        ``"fell behind"`` or ``"matched"``).
    """
    acc = {(r["model"], r["attack"]): r["accuracy"] for r in rows}
    worst = {m: min(acc[(m, a)] for a in attacks) for m in dict.fromkeys(r["model"] for r in rows)}
    difference = worst[model] - worst[baseline]
    noise = 2 * (2 * worst[baseline] * (1 - worst[baseline]) / n) ** 0.5
    verdict = "beat" if difference > noise else "fell behind" if difference < -noise else "matched"
    return {"worst": worst, "difference": difference, "noise": noise, "verdict": verdict}


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


CSV_COLUMNS = ("model", "attack", "kind", "norm", "eps", "steps", "alpha", "restarts", "loss", "accuracy", "n", "flags")


def save_csv(rows: list[dict], path) -> None:
    """Write the tidy rows to ``path`` as CSV (flags joined with ``; ``)."""
    import csv
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({**{k: row.get(k) for k in CSV_COLUMNS}, "flags": "; ".join(row["flags"])})


def robust_accuracy_curve(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                          eps_list, *, attack: str = "pgd", steps: int = 40,
                          alpha: float | None = None, restarts: int = 1, batch_size: int = 500,
                          seed: int = 0, progress: bool = False) -> list[float]:
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
        torch.manual_seed(seed)
        robust = torch.cat([_run_spec(model, spec, images[i:i + batch_size], labels[i:i + batch_size])
                            for i in range(0, images.shape[0], batch_size)])
        result.append(robust.sum().item() / robust.numel())
    return result
