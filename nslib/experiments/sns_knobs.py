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
from .context import Context, Result, data_file, mean_std

#: The recorded sweep that quick mode reads.
RECORDED_SWEEP = data.EMBEDDED_DIR / "sweeps" / "sns_sweep.json"
#: The columns of ``e7_sns_knobs.csv`` averaged over seeds (each gets a ``<column>_std`` beside it).
AVERAGED = ("clean_acc", "pgd40_acc", "mean_sensitivity")


def sweep_file(ctx: Context) -> Path:
    """The recorded sweep (quick), or the sweep rerun for ``ctx.seed_list`` into ``out/sns_sweep.json``
    (full); recorded as an input."""
    if ctx.quick:
        return ctx.uses("sns_sweep", RECORDED_SWEEP)
    from tqdm.auto import tqdm

    from .. import sweep

    ctx.uses("mnist5k", data_file("mnist5k"))
    path = ctx.out / "sns_sweep.json"
    runs = [(setting, seed) for setting in sweep.SETTINGS for seed in ctx.seed_list]
    for (knob, name, change), seed in tqdm(runs, desc="E7 sweep", unit="run", disable=not ctx.progress):
        record = sweep.run_setting(name, knob, change, ctx.out / "runs" / "sweep", device=ctx.device, seed=seed)
        sweep.write_sweep([record], path)
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


def _percent(row: dict, key: str = "pgd40_acc") -> str:
    """A row's mean accuracy in percent, with ``± std`` when it has more than one seed."""
    return f"{row[key]:.1%}" + (f" ± {row[f'{key}_std']:.1%}" if row["seeds"] > 1 else "")


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
    fig = plot_sns_knobs(rows, base, budget)
    best = max((r for r in rows if r["lam"] > 0), key=lambda r: r["pgd40_acc"])
    print(f"  PGD-AT {base['pgd40_acc']:.3f}±{base['pgd40_acc_std']:.3f}; best SNS {best['name']} "
          f"{best['pgd40_acc']:.3f}±{best['pgd40_acc_std']:.3f}")
    finding = (f"At the sweep's reduced budget PGD-AT reaches {_percent(base)} under PGD-40; the best SNS "
               f"setting ({best['name']}) {_percent(best)}. Larger λ and k lower the sensitivity steadily; "
               f"robust accuracy moves by a few points at most ({_seeds_text(rows)}; "
               + ("recorded runs: `data/sweeps/sns_sweep.json`" if ctx.quick else "rerun here: `sns_sweep.json`")
               + ").")
    return Result(finding, {"e7_sns_knobs.csv": rows, "e7_sns_knobs.png": fig})
