"""E5: SNS against the baselines under attack (the paper's Finding 3: SNS is at least as
robust as PGD-AT), judged by AutoAttack over several training seeds.

Two parts:

* **The attack suite on seed 0** (``nslib.evaluation.robustness_table``, with its
  gradient-masking checks): the first ``n`` test images under every attack of
  ``nslib.evaluation.default_suite(0.3)`` plus AutoAttack, and PGD accuracy against eps.
* **The verdict over seeds**: every training seed's headline metrics, measured when the
  checkpoint was made on 1,000 test images (quick: the shipped seeds; full: the seeds
  retrained by the ``models`` step on ``n`` images): clean, FGSM, PGD-40, AutoAttack and
  the per-example worst case over the three attacks. The verdict compares SNS with PGD-AT
  on that worst case, mean over seeds, against two standard errors that count the spread
  between seeds *and* the test-set sampling (``nslib.evaluation.compare_over_seeds``).

Our choices: AutoAttack is the authors' code (``nslib.autoattack``), the standard version
in full mode and our CPU subset in quick mode (APGD-CE + APGD-T on 3 target classes,
labelled "quick subset" wherever it is shown). Quick mode, to stay within minutes on a
CPU, also leaves out PGD-100, PGD-40 x 5 restarts, MIM, C&W-L2 and PGD-40 at eps/3 and
2 eps/3 (the eps curve covers those budgets), and measures L2 with PGD-L2 of 40 steps;
full mode runs everything, adds AutoAttack in L2 at radius 2.0, and holds C&W-L2 against
PGD-L2 in the masking check. C&W-L2 with its binary search can be stronger than PGD-L2 (on
the PGD-AT model by several points), so L2 robustness is the per-example worst case over
the L2 attacks. The eps curve is PGD-20 at eps 0, 0.1, ..., 0.4 (quick) or PGD-40 at
eps 0, 0.05, ..., 0.4 (full).

With ``$NSLIB_RUNS`` set, the table and the curves are kept in its cache (``nslib.cache``, keyed
by the weights, the images, the suite, nslib's source and the library versions), so a rerun of
the step, or a second ``reproduce`` with the same code and models, reads them back; unset,
``reproduce`` writes nothing outside its ``--out`` folder.
"""
from __future__ import annotations

import os

from .context import Context, Result, short_name

#: The budgets of the accuracy-vs-eps curve at MNIST's eps 0.3 (full mode; quick mode every other
#: one); another setting's are these times its eps / 0.3 (:func:`eps_list`).
EPS_LIST = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4]
#: The per-seed metrics the seed table shows (``nslib.evaluation.headline_metrics``), with labels.
SEED_METRICS = {"clean_acc": "clean", "fgsm_acc": "FGSM", "pgd40_acc": "PGD-40", "aa_acc": "AutoAttack",
                "worst_acc": "worst case"}


def eps_list(quick: bool, eps: float = 0.3) -> list[float]:
    """The budgets of the accuracy-vs-eps curve for a setting's ``eps``: :data:`EPS_LIST` scaled by
    ``eps / 0.3`` (unchanged on MNIST), every other one in quick mode."""
    scaled = [e * (eps / 0.3) for e in EPS_LIST]
    return scaled[::2] if quick else scaled


def attack_suite(quick: bool, autoattack: str = "standard", eps: float = 0.3) -> dict:
    """E5's attacks by name (specs of ``nslib.evaluation.robustness_table``) at ``eps`` (the setting's)."""
    from ..evaluation import autoattack_suite, default_suite
    from ..utils import pgd_step

    suite = default_suite(eps, autoattack=autoattack)
    if not quick:  # L2 robustness: the per-example worst case of PGD-L2, C&W-L2 and AutoAttack-L2
        suite.update(autoattack_suite(suite["pgd100_l2"]["eps"], autoattack, norm="L2"))
    if quick:  # what a CPU can run in minutes; the rest is left for --full
        smaller = [name for name, spec in suite.items() if name.startswith("pgd40@") and spec["eps"] < eps]
        for name in ("pgd100", "pgd40x5", "cw_l2", "mim", *smaller):   # smaller: eps/3 and 2 eps/3
            suite.pop(name)
        l2 = suite.pop("pgd100_l2")
        suite["pgd40_l2"] = {**l2, "steps": 40, "alpha": pgd_step(l2["eps"], 40)}
    return suite


def describe_attack(name: str, spec: dict, eps: float = 0.3) -> str:
    """One attack of a suite in words, as the notebooks' prose names it: ``"PGD-40 (step 0.01)"``.

    ``eps`` is the suite's main budget: an L-inf attack at another budget says which.

    Example:
        >>> describe_attack("pgd40x5", {"attack": "pgd", "eps": 0.3, "alpha": 0.01, "steps": 40, "restarts": 5})
        'PGD-40 × 5 restarts (step 0.01)'
    """
    from ..autoattack import describe_version
    from ..evaluation import describe_spec

    row = describe_spec(name, spec)
    kind, steps = row["kind"], row["steps"]
    at = "" if row["norm"] != "Linf" or row["eps"] == eps else f" at ε = {row['eps']:g}"
    if kind == "clean":
        return "clean images"
    if kind == "fgsm":
        return "FGSM" + at
    if kind == "autoattack":
        return describe_version(spec.get("version", "standard")) + (
            f" in L2 at radius {row['eps']:g}" if row["norm"] != "Linf" else at)
    if kind == "cw":
        return f"C&W-L2 ({spec.get('binary_search_steps', 1)} searches over c; counted within L2 distance {row['eps']:g})"
    if row["norm"] == "L2":
        return f"PGD-L2-{steps} at radius {row['eps']:g}"
    label = {"pgd": "PGD", "mim": "MIM", "bim": "BIM"}.get(kind, kind)
    restarts = f" × {row['restarts']} restarts" if (row["restarts"] or 1) > 1 else ""
    loss = " with the C&W margin loss" if row["loss"] == "cw" else ""
    return f"{label}-{steps}{restarts}{loss}{at} (step {row['alpha']:.3g})"


def suite_text(quick: bool, eps: float = 0.3, recorded: int | None = None) -> str:
    """E5's suite in words: what this mode runs, and what the other mode runs instead or adds (notebook 04).

    Quick mode's AutoAttack is the quick subset, full mode's the standard version (as in
    :class:`~nslib.experiments.context.Context`); both suites are :func:`attack_suite`'s. With
    ``recorded`` (quick mode), the text says AutoAttack is read from the checkpoints, which
    measured it on that many test images (:func:`merge_tables`).
    """
    suites = {mode: attack_suite(mode, "quick" if mode else "standard", eps) for mode in (True, False)}
    ran, other = suites[quick], suites[not quick]
    words = {name: describe_attack(name, spec, eps) for suite in suites.values() for name, spec in suite.items()}
    kind = {name: (spec.get("attack"), spec.get("norm", "L2" if spec.get("attack") == "cw" else "Linf"))
            for suite in suites.values() for name, spec in suite.items()}
    missing = [n for n in ran if n not in other]
    swaps = {}
    for name in (n for n in other if n not in ran):  # the other mode's attack of the same kind and norm
        twin = next((m for m in missing if kind[m] == kind[name] and m not in swaps.values()), None)
        if twin is not None:
            swaps[name] = twin
    added = [n for n in other if n not in ran and n not in swaps]
    listed, shown = dict(words), {n: n for n in ran}
    if recorded and quick:  # the name merge_tables gives the column
        for name in (n for n in ran if kind[n][0] == "autoattack"):
            shown[name] = f"{name}@{recorded}"
            listed[name] += (f", read from each checkpoint, which ran it on all {recorded:,} test images when it was "
                             "made (the costliest attack by far; full mode runs it here)")
    mode, other_mode = ("quick", "full") if quick else ("full", "quick")
    order = sorted((n for n in ran if n != "clean"), key=lambda n: shown[n] != n)  # recorded last, as in the table
    text = (f"**This run's suite** ({mode} mode; at ε = {eps:g} unless named), beside the clean images:\n\n"
            + "".join(f"- `{shown[n]}`: {listed[n]}\n" for n in order) + "\n")
    changes = [f"{words[n]} instead of {words[m]}" for n, m in swaps.items()]
    changes += [f"{'adds' if quick else 'also runs'} " + "; ".join(words[n] for n in added)] if added else []
    dropped = [n for n in missing if n not in swaps.values()]
    changes += ["leaves out " + "; ".join(words[n] for n in dropped)] if dropped else []
    return text + (f"**{other_mode.capitalize()} mode** (`NSLIB_QUICK={0 if quick else 1}`) runs "
                   + ", and ".join(changes) + "." if changes else "")


def _same_step(a: dict, b: dict) -> bool:
    """Two L-inf PGD rows (or specs' rows) of one budget, loss and step size: the masking check compares them."""
    return all(a.get(key) == b.get(key) for key in ("kind", "norm", "eps", "loss", "alpha")) and a["kind"] == "pgd"


def _more_steps_weaker(rows: list[dict]) -> list[tuple[dict, dict]]:
    """``(fewer, more)`` pairs of one model's L-inf PGD rows (same budget, loss and restarts) where the row with
    more steps, and so a smaller step size, has the higher accuracy; all of the first such pair of attacks."""
    pgd = [r for r in rows if r["kind"] == "pgd" and r["norm"] == "Linf"]
    pairs = [(few, many) for few in pgd for many in pgd
             if few["model"] == many["model"] and (few["eps"], few["loss"], few["restarts"]) == (
                 many["eps"], many["loss"], many["restarts"])
             and few["steps"] < many["steps"] and few["alpha"] > many["alpha"] and many["accuracy"] > few["accuracy"]]
    first = (pairs[0][0]["attack"], pairs[0][1]["attack"]) if pairs else None
    return [(a, b) for a, b in pairs if (a["attack"], b["attack"]) == first]


def _step_checks(rows: list[dict], model: str, eps: float, quick: bool) -> str:
    """Which PGD rows of ``model`` the masking check compared (same step size), in words."""
    from ..evaluation import describe_spec

    pgd = [r for r in rows if r["model"] == model]
    checked = [(a["attack"], b["attack"]) for a in pgd for b in pgd
               if _same_step(a, b) and (a["steps"], a["restarts"]) < (b["steps"], b["restarts"])]
    if checked:
        return "here it compared " + ", ".join(f"`{a}` with `{b}`" for a, b in checked)
    full = {m: describe_spec(m, spec) for m, spec in attack_suite(False, eps=eps).items()}
    shared = [f"`{m}`" for m, row in full.items() if m != "pgd40" and _same_step(row, full["pgd40"])]
    return ("no two PGD attacks of this suite share a step, so it had nothing to compare here"
            + (f" (full mode runs {' and '.join(shared)} at PGD-40's step)" if quick and shared else ""))


def _count(flags) -> str:
    """``"none"``, ``"1 image"``, ``"3 images"``: how many of ``flags`` are set."""
    n = int(flags.sum())
    return "none" if n == 0 else f"{n} image" + "s" * (n != 1)


def steps_text(rows: list[dict], quick: bool = True) -> str:
    """Why a PGD attack with more steps can leave more images standing than one with fewer: Markdown, computed.

    For each model where an L-inf PGD row with more (smaller) steps has a higher accuracy than
    one with fewer (larger) steps: the images each attack alone broke, the two step sizes, which
    rows the masking check did compare, and the per-example worst case over the two. Empty when
    ``rows`` (``robustness_table``'s, with ``robust`` flags) have no such pair.
    """
    from ..evaluation import worst_case

    pairs = _more_steps_weaker(rows)
    if not pairs:
        return ""
    few, many = pairs[0]
    short, long = (f"PGD-{r['steps']}" for r in (few, many))
    eps = few["eps"]
    per_model = "; ".join(
        f"{a['model']} {100 * b['accuracy']:.1f} vs {100 * a['accuracy']:.1f} % ({short} broke "
        f"{_count(b['robust'] & ~a['robust'])} that {long} missed, {long} "
        f"{_count(a['robust'] & ~b['robust'])} that {short} missed)" for a, b in pairs)
    steps = ", ".join(f"{label} steps {r['alpha']:.3g} (ε/{eps / r['alpha']:.3g}, {r['alpha'] * r['steps']:.2g} in all)"
                      for label, r in ((short, few), (long, many)))
    worst = ", ".join(f"{a['model']} {100 * worst_case(rows, a['model'], [few['attack'], many['attack']]):.1f} %"
                      for a, _ in pairs)
    return (f"**More steps, fewer images broken?** {long} leaves more images standing than {short}: {per_model}. "
            "It looks as if the rule \"more steps must not be weaker\" were broken, but the two attacks differ in "
            f"step size as well: {steps}. Big steps cross the ε-box in a few moves and reach corners that small steps "
            "never explore, so on a robust model the shorter attack sometimes finds an adversarial example the longer "
            "one misses (the counts above are on the same images). The masking check compares step counts only at the "
            f"same step size: {_step_checks(rows, few['model'], eps, quick)}. That is why robustness is read from the "
            f"per-example worst case over the attacks, never from one: over {short} and {long} it is {worst}.")


def split_suite(suite: dict, eps: float = 0.3) -> tuple[dict, dict]:
    """A suite in the two parts notebook 04 runs in two cells: clean and the L-inf attacks at ``eps``, then the
    checks at other budgets and in other norms (twice the budget, eps/3 and 2 eps/3, L2)."""
    from ..evaluation import describe_spec

    rows = {name: describe_spec(name, spec) for name, spec in suite.items()}
    at_eps = [n for n, r in rows.items() if r["kind"] == "clean" or (r["norm"] == "Linf" and r["eps"] == eps)]
    return ({n: suite[n] for n in at_eps}, {n: spec for n, spec in suite.items() if n not in at_eps})


def merge_tables(*tables: list[dict], infos: dict[str, dict] | None = None) -> list[dict]:
    """The rows of several ``robustness_table`` calls as one table, the masking checks redone over all of them.

    With ``infos`` (``{model name: checkpoint info}``, ``nslib.checkpoints.read_checkpoint``), each
    model's AutoAttack joins as its checkpoint recorded it: a shipped checkpoint carries
    AutoAttack's accuracy on all its test images (``metrics``: ``aa_acc`` on ``n`` images at
    ``eps``, version ``aa_version``), measured when it was made, and quick mode reads it rather
    than running AutoAttack, the costliest attack by far, again. That row is named
    ``autoattack_<version>@<n>`` and has no per-example flags (a worst case over it falls back to
    its accuracy, ``nslib.evaluation.worst_case``). The rows given are not changed.
    """
    from ..autoattack import VERSIONS, describe_version
    from ..evaluation import flag_masking

    rows = [{**r, "flags": []} for table in tables for r in table]
    versions = {describe_version(v): v for v in VERSIONS}
    for model in dict.fromkeys(r["model"] for r in rows) if infos is not None else ():
        metrics = infos[model]["metrics"]
        if "aa_acc" not in metrics:
            raise ValueError(f"the checkpoint of {model!r} records no AutoAttack accuracy (metrics: {sorted(metrics)}); "
                             "run AutoAttack here instead (a suite with autoattack='quick').")
        rows.append({"model": model, "attack": f"autoattack_{versions[metrics['aa_version']]}@{metrics['n']}",
                     "kind": "autoattack", "norm": "Linf", "eps": metrics["eps"], "steps": None, "alpha": None,
                     "restarts": None, "loss": None, "accuracy": metrics["aa_acc"], "n": metrics["n"],
                     "stages": {}, "robust": None, "flags": []})
    return flag_masking(rows)


def seed_table(ctx: Context) -> tuple[list[dict], list[dict], dict]:
    """Every training seed's headline metrics, their mean ± std per model, and the verdict.

    Returns ``(seed_rows, summary, verdict)``: one ``models.csv``-style row per (model,
    seed) (``nslib.experiments.models.model_row``), ``seed_summary`` of them, and
    :func:`seed_verdict`. The metrics are those each checkpoint carries (measured when it
    was made), so this costs no attack.
    """
    from .models import model_row, seed_summary

    seed_rows = [model_row(name, seed, ctx.checkpoint_info(name, seed)) for name in ctx.models
                 for seed in ctx.seeds_of(name)]
    return seed_rows, seed_summary(seed_rows), seed_verdict(seed_rows)


def seed_verdict(seed_rows: list[dict]) -> dict:
    """SNS vs PGD-AT on the per-example worst case, over training seeds (``compare_over_seeds``)."""
    from ..evaluation import compare_over_seeds

    worst = {m: [r["worst_acc"] for r in seed_rows if r["model"] == m] for m in ("sns", "pgd_at")}
    if any(v is None for values in worst.values() for v in values):
        raise ValueError("a checkpoint lacks the worst-case metric (made before AutoAttack joined the metrics); "
                         "recompute it: python scripts/train_shipped.py --metrics-only (see its --help).")
    return compare_over_seeds(worst["sns"], worst["pgd_at"], n=seed_rows[0]["n"])


def verdict_text(seed_rows: list[dict], summary: list[dict], verdict: dict) -> str:
    """Finding 3's verdict over seeds as Markdown, every number computed (for REPORT.md and notebook 04)."""
    aside = " (the difference is within the noise)" if verdict["verdict"] == "matched" else ""
    counts = f"SNS {verdict['seeds'][0]}, PGD-AT {verdict['seeds'][1]} training seed" + (
        "" if verdict["seeds"] == (1, 1) else "s")
    noise_kind = ("the spread between seeds and test-set sampling" if verdict["seed_variance_known"]
                  else "test-set sampling only: one seed, so the spread between training runs is unmeasured")
    aa = ", ".join(f"{r['model']} {r['aa_acc_mean']:.1%} ± {r['aa_acc_std']:.1%} (seeds: {r['seeds']})"
                   for r in summary if r["aa_acc_mean"] is not None)
    return (f"**Finding 3: SNS {verdict['verdict']} PGD-AT{aside}** on the per-example worst case over FGSM, PGD-40 and "
            f"{seed_rows[0]['autoattack']} ({counts}; {seed_rows[0]['n']} test images): "
            f"SNS {verdict['mean'][0]:.1%} ± {verdict['std'][0]:.1%}, "
            f"PGD-AT {verdict['mean'][1]:.1%} ± {verdict['std'][1]:.1%} "
            f"(difference {verdict['difference']:+.1%}; two standard errors "
            f"{verdict['noise']:.1%}, counting {noise_kind}). AutoAttack accuracy, mean ± std over seeds: {aa}.")


def _finding(ctx: Context, rows: list[dict], warnings: list[str], seed_text: str) -> str:
    """Finding 3's verdict over seeds, then the seed-0 suite's AutoAttack row and its masking checks."""
    from ..autoattack import describe_version

    from ..evaluation import worst_case

    aa_name = next(r["attack"] for r in rows if r["kind"] == "autoattack" and r["norm"] == "Linf")
    models = list(dict.fromkeys(r["model"] for r in rows))
    l2 = list(dict.fromkeys(r["attack"] for r in rows if r["norm"] == "L2"))
    radius = next(r["eps"] for r in rows if r["norm"] == "L2")
    return (seed_text + f" On seed 0 and {ctx.n} images, {describe_version(ctx.autoattack)}: "
            + ", ".join(f"{r['model']} {r['accuracy']:.1%}" for r in rows if r["attack"] == aa_name)
            + f"; L2 robustness at radius {radius:g}, the per-example worst case over {', '.join(l2)}: "
            + ", ".join(f"{m} {worst_case(rows, m, l2):.1%}" for m in models)
            + " (`e5_robustness.csv`, with every attack of the suite). "
            + ("No gradient-masking check failed." if not warnings else
               f"{len(warnings)} gradient-masking check(s) failed: see `e5_robustness.csv` (flags)."))


def run(ctx: Context) -> Result:
    """E5: the four models under a suite of attacks and AutoAttack (seed 0), and the verdict over seeds."""
    from ..evaluation import masking_warnings, robust_accuracy_curve, robustness_table
    from ..plotting import plot_accuracy_vs_eps, plot_seed_metrics
    x, y = ctx.test_batch()
    eps = ctx.setting.eps
    models = {short_name(n): ctx.model(n) for n in ctx.models}
    # with $NSLIB_RUNS set, its cache (nslib.cache) keeps the attack tables, as the notebooks' do
    cache = bool(os.environ.get("NSLIB_RUNS"))
    rows = robustness_table(models, (x, y), attack_suite(ctx.quick, ctx.autoattack, eps), seed=ctx.seed,
                            progress=ctx.progress, cache=cache)
    budgets = eps_list(ctx.quick, eps)
    curves = {m: (budgets, robust_accuracy_curve(model, x, y, budgets, steps=20 if ctx.quick else 40,
                                                 seed=ctx.seed, cache=cache)) for m, model in models.items()}
    curve_rows = [{"model": m, "eps": e, "accuracy": a} for m, (es, accs) in curves.items() for e, a in zip(es, accs)]
    warnings = masking_warnings(rows)
    for w in warnings:
        print("  WARNING", w)
    seed_rows, summary, verdict = seed_table(ctx)
    for r in summary:
        print(f"  {r['model']:8s} " + "  ".join(
            f"{label} {r[key + '_mean']:.3f}±{r[key + '_std']:.3f}" for key, label in SEED_METRICS.items()
            if r[key + "_mean"] is not None))
    print(f"  SNS - PGD-AT (worst case, over seeds) {verdict['difference']:+.3f}, 2 SE {verdict['noise']:.3f}: "
          f"{verdict['verdict']}")
    return Result(_finding(ctx, rows, warnings, verdict_text(seed_rows, summary, verdict)), {
        "e5_robustness.csv": rows, "e5_seeds.csv": seed_rows, "e5_seed_summary.csv": summary,
        "e5_seeds.png": plot_seed_metrics(summary, SEED_METRICS,
                                          title=f"E5: accuracy at ε = {eps:.4g} over training seeds (mean ± std, "
                                                f"{seed_rows[0]['n']} images)"),
        "e5_accuracy_vs_eps.csv": curve_rows, "e5_accuracy_vs_eps.png": plot_accuracy_vs_eps(curves)})
