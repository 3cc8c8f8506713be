"""E5: SNS against the baselines under attack (the paper's Finding 3: SNS is at least as
robust as PGD-AT).

Clean and robust accuracy of the four models under a suite of attacks
(``nslib.evaluation.robustness_table``, with its gradient-masking checks), and PGD
accuracy against the budget eps.

Our choices: the first ``n`` test images; ``nslib.evaluation.default_suite(0.3)`` without
AutoAttack, plus C&W-L2 with c = 10 (an example counts as broken within L2 <= 2); quick
mode drops PGD-100 and PGD-40 x 5 restarts for PGD-40 x 2. The verdict compares SNS and
PGD-AT at their worst case over the L-inf attacks at eps 0.3, against two standard errors
of the difference (``nslib.evaluation.compare_worst_case``). The eps curve is PGD-20
(quick) or PGD-40 (full) at eps 0 to 0.4.
"""
from __future__ import annotations

from .context import MODELS, Context, Result, short_name

#: The budgets of the accuracy-vs-eps curve.
EPS_LIST = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4]


def attack_suite(quick: bool) -> dict:
    """E5's attacks by name (specs of ``nslib.evaluation.robustness_table``)."""
    from ..evaluation import default_suite

    suite = default_suite(0.3, autoattack=False)
    suite["cw_l2"] = {"attack": "cw", "c": 10.0, "steps": 100, "lr": 0.1, "l2_max": 2.0}
    if quick:  # the most expensive attacks, left for --full
        for name in ("pgd100", "pgd40x5"):
            suite.pop(name)
        suite["pgd40x2"] = {"attack": "pgd", "eps": 0.3, "alpha": 0.01, "steps": 40, "restarts": 2}
    return suite


def _finding(ctx: Context, rows: list[dict], warnings: list[str]) -> str:
    """Finding 3's verdict from the robustness rows and the masking warnings."""
    from ..evaluation import compare_worst_case

    acc = {(r["model"], r["attack"]): r["accuracy"] for r in rows}
    models = [short_name(n) for n in MODELS]
    linf = [r["attack"] for r in rows if r["model"] == "sns" and r["norm"] == "Linf" and r["eps"] == 0.3]
    comparison = compare_worst_case(rows, "sns", "pgd_at", linf, ctx.n)  # worst case over the L-inf attacks
    verdict = {"matched": "matched (the difference is within sampling noise)"}.get(comparison["verdict"],
                                                                                  comparison["verdict"])
    return (f"**Finding 3: SNS {verdict} PGD-AT here.** Under PGD-40 at ε = 0.3 on {ctx.n} test images: "
            + ", ".join(f"{m} {acc[(m, 'pgd40')]:.1%}" for m in models)
            + "; worst case over the L∞ attacks at ε = 0.3 (FGSM, PGD-10/40, restarts, C&W loss, MIM): "
            + ", ".join(f"{m} {w:.1%}" for m, w in comparison["worst"].items())
            + f" (SNS − PGD-AT = {comparison['difference']:+.1%}, two standard errors = {comparison['noise']:.1%}). "
            "C&W-L2 (within L2 ≤ 2): "
            + ", ".join(f"{m} {acc[(m, 'cw_l2')]:.1%}" for m in models) + ". "
            + ("No gradient-masking check failed." if not warnings else
               f"{len(warnings)} gradient-masking check(s) failed: see `e5_robustness.csv` (flags)."))


def run(ctx: Context) -> Result:
    """E5: clean and robust accuracy of the four models under a suite of attacks, and vs eps."""
    from ..evaluation import masking_warnings, robust_accuracy_curve, robustness_table
    from ..plotting import plot_accuracy_vs_eps

    x, y = ctx.test_batch()
    models = {short_name(n): ctx.model(n) for n in MODELS}
    rows = robustness_table(models, (x, y), attack_suite(ctx.quick), seed=ctx.seed, progress=ctx.progress)
    curves = {m: (EPS_LIST, robust_accuracy_curve(model, x, y, EPS_LIST, steps=20 if ctx.quick else 40,
                                                  seed=ctx.seed)) for m, model in models.items()}
    curve_rows = [{"model": m, "eps": e, "accuracy": a} for m, (es, accs) in curves.items() for e, a in zip(es, accs)]
    fig = plot_accuracy_vs_eps(curves)
    warnings = masking_warnings(rows)
    for w in warnings:
        print("  WARNING", w)
    acc = {(r["model"], r["attack"]): r["accuracy"] for r in rows}
    for m in models:
        print(f"  {m:8s} clean {acc[(m, 'clean')]:.3f}  FGSM {acc[(m, 'fgsm')]:.3f}  PGD-40 {acc[(m, 'pgd40')]:.3f}"
              f"  PGD-40 C&W loss {acc[(m, 'pgd40_cw')]:.3f}")
    return Result(_finding(ctx, rows, warnings), {"e5_robustness.csv": rows, "e5_accuracy_vs_eps.csv": curve_rows,
                                                  "e5_accuracy_vs_eps.png": fig})
