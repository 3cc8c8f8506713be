"""E7: SNS's knobs: the penalty weight lambda, the number k of neurons constrained per
layer, and which layers are constrained; each setting judged against PGD-AT (lambda = 0)
trained at the same budget.

Our choices (``nslib.sweep``): a reduced budget (2,000 training images, 10 epochs, PGD-10,
evaluation on 500 test images), one knob changed at a time from lambda 0.01, k = 10 %
(at most 10), layers conv3 + conv4 + fc1. Quick mode reads the sweep recorded by
``scripts/sns_sweep.py`` (``data/sweeps/sns_sweep.json``) with the training seeds it holds;
full mode reruns it for every seed of ``ctx.seed_list``. Each setting is reported as the
mean ± std over its seeds (a record without a ``seed`` is seed 0).
"""
from __future__ import annotations

import json
from pathlib import Path

from .. import data
from .context import Context, Result, mean_std

#: The recorded sweep that quick mode reads.
RECORDED_SWEEP = data.EMBEDDED_DIR / "sweeps" / "sns_sweep.json"
#: The columns of ``e7_sns_knobs.csv`` averaged over seeds (each gets a ``<column>_std`` beside it).
AVERAGED = ("clean_acc", "pgd40_acc", "mean_sensitivity")


def sweep_file(ctx: Context) -> Path:
    """The recorded sweep (quick mode in the default setting), or the sweep run for ``ctx.seed_list``
    into ``out/sns_sweep.json`` (full mode; another setting, whose quick mode trains each run for
    ``setting.quick_epochs`` epochs); recorded as an input."""
    if ctx.shipped:
        return ctx.uses("sns_sweep", RECORDED_SWEEP)
    from tqdm.auto import tqdm

    from .. import sweep

    setting, epochs = ctx.setting, (ctx.setting.quick_epochs if ctx.quick else None)
    ctx.uses(setting.dataset, data.held_out_file(setting.dataset))
    path = ctx.out / "sns_sweep.json"
    _, _, knobs = sweep.plan(setting)
    runs = [(knob, seed) for knob in knobs for seed in ctx.seed_list]
    for (knob, name, change), seed in tqdm(runs, desc="E7 sweep", unit="run", disable=not ctx.progress):
        record = sweep.run_setting(name, knob, change, ctx.out / "runs" / "sweep", device=ctx.device, seed=seed,
                                   setting=setting, epochs=epochs, precision=ctx.precision,
                                   compile=ctx.compile)
        sweep.write_sweep([record], path, setting)
    return ctx.uses("sns_sweep", path)


def aggregate(runs: list[dict]) -> list[dict]:
    """The E7 table: one row per setting, the mean and std over its training seeds.

    Args:
        runs (list of dict): the sweep's records (``nslib.sweep.run_setting``), any number of
            seeds per setting name; a record without ``seed`` is seed 0.

    Returns:
        list of dict: ``{"name", "knob", "lam", "k", "layers" (joined with +), "seeds",
        "clean_acc", "clean_acc_std", "pgd40_acc", "pgd40_acc_std", "mean_sensitivity",
        "mean_sensitivity_std"}``: the means keep the single-seed column names; settings in
        the order they first appear.
    """
    from ..sweep import record_seed

    rows = []
    for name in dict.fromkeys(r["name"] for r in runs):
        mine = sorted((r for r in runs if r["name"] == name), key=record_seed)
        first = mine[0]
        row = {"name": name, "knob": first["knob"], "lam": first["lam"], "k": first["k"],
               "layers": "+".join(first["layers"]), "seeds": len(mine)}
        values = {"clean_acc": [r["clean_acc"] for r in mine], "pgd40_acc": [r["pgd40_acc"] for r in mine],
                  "mean_sensitivity": [sum(r["sensitivity"].values()) / len(r["sensitivity"]) for r in mine]}
        for key in AVERAGED:
            row[key], row[f"{key}_std"] = mean_std(values[key])
        rows.append(row)
    return rows


def _seeds_text(rows: list[dict]) -> str:
    """How many training seeds each setting has, for the finding."""
    counts = sorted({r["seeds"] for r in rows})
    if counts == [1]:
        return (f"one training seed for each of the {len(rows)} settings, so the spread between training runs "
                "is unmeasured")
    if len(counts) == 1:
        return f"{counts[0]} training seeds for each of the {len(rows)} settings, mean ± std over them"
    return "training seeds per setting: " + ", ".join(f"{r['name']} {r['seeds']}" for r in rows) + \
        " (mean ± std where more than one)"


def format_table(rows: list[dict]) -> str:
    """The E7 table as text: one line per setting (``aggregate``'s rows), accuracies and the mean
    layer sensitivity of conv3, conv4 and fc1, with ``± std`` where a setting has several seeds."""
    def cell(row, key, digits=3):
        return f"{row[key]:.{digits}f}" + (f"±{row[key + '_std']:.{digits}f}" if row["seeds"] > 1 else "")

    header = ("setting", "lambda", "k", "layers", "seeds", "clean", "PGD-40", "sensitivity")
    lines = [[r["name"], f"{r['lam']:g}", f"{r['k']:g}", r["layers"], str(r["seeds"]), cell(r, "clean_acc"),
              cell(r, "pgd40_acc"), cell(r, "mean_sensitivity")] for r in rows]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines)]
    return "\n".join(" ".join(f"{x:<{w}}" if i == 0 else f"{x:>{w}}" for i, (x, w) in enumerate(zip(line, widths)))
                     for line in [header, *lines])


def knobs_text(runs: list[dict], test_n: int, layers=("conv3", "conv4", "fc1")) -> str:
    """The E7 reading, computed from the sweep's records (any number of training seeds per
    setting; :func:`aggregate` averages them): how far the knobs move the sensitivity, clean and
    robust accuracy, and the best setting against PGD-AT (``lam = 0``) by
    ``nslib.evaluation.compare_over_seeds``: two standard errors that count the spread over
    training seeds and the sampling noise of ``test_n`` test images. ``layers``: the layers whose
    mean sensitivity the records hold (the sweep's ``default["layers"]``).

    Returns:
        str: Markdown.
    """
    from ..evaluation import compare_over_seeds

    rows = aggregate(runs)
    base = next(r for r in rows if r["lam"] == 0)
    lam_rows = sorted((r for r in rows if r["knob"] == "lambda"), key=lambda r: r["lam"])
    sns = [r for r in rows if r["lam"] > 0]
    sens = [r["mean_sensitivity"] for r in lam_rows]
    steady = all(b < a for a, b in zip(sens, sens[1:]))
    robust_lam = [r["pgd40_acc"] for r in lam_rows]
    steps = list(zip(robust_lam, robust_lam[1:]))
    trend = ("rises steadily" if all(b > a for a, b in steps) else
             "falls steadily" if all(b < a for a, b in steps) else "moves without a steady trend")
    best = max(sns, key=lambda r: r["pgd40_acc"])
    p = base["pgd40_acc"]
    per_seed = {name: [r["pgd40_acc"] for r in runs if r["name"] == name] for name in (best["name"], base["name"])}
    comparison = compare_over_seeds(per_seed[best["name"]], per_seed[base["name"]], test_n)
    above = sum(r["pgd40_acc"] >= p for r in sns)
    clean = [r["clean_acc"] for r in rows]
    robust = [r["pgd40_acc"] for r in sns]
    verdict = {"matched": "within them, so the sweep singles out no clearly better setting",
               "beat": "above them; the best of several settings is favoured by being picked, so check it "
                       "with more training seeds",
               "fell behind": "below them: no SNS setting reached PGD-AT at this budget"}[comparison["verdict"]]
    noise_sources = (f"the spread over training seeds and the sampling noise of {test_n} test images"
                     if comparison["seed_variance_known"] else
                     f"the sampling noise of {test_n} test images only: with one seed, the spread between "
                     "training runs is not counted")
    names = ", ".join(f"`{layer}`" for layer in layers[:-1]) + f" and `{layers[-1]}`" if len(layers) > 1 \
        else f"`{layers[0]}`"
    return (f"The mean (raw) layer sensitivity of {names} falls {'steadily' if steady else 'overall'} with λ, "
            f"from {sens[0]:.3f} at λ = 0 to {sens[-1]:.3f} at λ = {lam_rows[-1]['lam']:g} "
            f"({sens[0] / sens[-1]:.1f} times lower), and the PGD-40 accuracy {trend}, from "
            f"{100 * robust_lam[0]:.1f} % to {100 * robust_lam[-1]:.1f} %. Clean accuracy stays within "
            f"{100 * min(clean):.1f}-{100 * max(clean):.1f} %. Under PGD-40, {above} of the {len(sns)} SNS settings "
            f"are at or above PGD-AT's {100 * p:.1f} % at this budget; they span {100 * min(robust):.1f}-"
            f"{100 * max(robust):.1f} %. The best, `{best['name']}`, reaches {100 * best['pgd40_acc']:.1f} %, "
            f"{100 * comparison['difference']:+.1f} points from PGD-AT; two standard errors of that difference "
            f"({noise_sources}) are {100 * comparison['noise']:.1f} points, and it is {verdict}. "
            f"Training seeds: {_seeds_text(rows)}.")


def run(ctx: Context) -> Result:
    """E7: SNS's lambda, k and constrained layers, mean ± std over each setting's seeds in the sweep."""
    from ..plotting import plot_sns_knobs
    from ..sweep import record_seed

    sweep = json.loads(sweep_file(ctx).read_text())
    rows = aggregate(sweep["runs"])
    seeds = sorted({record_seed(r) for r in sweep["runs"]})
    budget = {("seeds" if k == "seed" and len(seeds) > 1 else k): (",".join(map(str, seeds)) if k == "seed" else v)
              for k, v in sweep["budget"].items()}  # the training seeds the records hold, not just BUDGET's
    base = next(r for r in rows if r["lam"] == 0)
    layers = sweep["default"]["layers"]
    fig = plot_sns_knobs(rows, base, budget, layers=", ".join(layers))
    best = max((r for r in rows if r["lam"] > 0), key=lambda r: r["pgd40_acc"])
    print(f"  PGD-AT {base['pgd40_acc']:.3f}±{base['pgd40_acc_std']:.3f}; best SNS {best['name']} "
          f"{best['pgd40_acc']:.3f}±{best['pgd40_acc_std']:.3f}")
    test_n = min(r.get("test_n", sweep["budget"]["test_n"]) for r in sweep["runs"])  # fewer on a small test set
    finding = (knobs_text(sweep["runs"], test_n, layers) + " Source: "
               + ("the recorded runs, `data/sweeps/sns_sweep.json`." if ctx.shipped else "rerun here, `sns_sweep.json`."))
    return Result(finding, {"e7_sns_knobs.csv": rows, "e7_sns_knobs.png": fig})
