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
"""
from __future__ import annotations

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
    rows = robustness_table(models, (x, y), attack_suite(ctx.quick, ctx.autoattack, eps), seed=ctx.seed,
                            progress=ctx.progress)
    budgets = eps_list(ctx.quick, eps)
    curves = {m: (budgets, robust_accuracy_curve(model, x, y, budgets, steps=20 if ctx.quick else 40,
                                                 seed=ctx.seed)) for m, model in models.items()}
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
