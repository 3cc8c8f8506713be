"""E7: SNS's knobs: the penalty weight lambda, the number k of neurons constrained per
layer, and which layers are constrained; each setting judged against PGD-AT (lambda = 0)
trained at the same budget.

Our choices (``nslib.sweep``): a reduced budget (2,000 training images, 10 epochs, PGD-10,
evaluation on 500 test images), one knob changed at a time from lambda 0.01, k = 10 %
(at most 10), layers conv3 + conv4 + fc1. Quick mode reads the sweep recorded by
``scripts/sns_sweep.py`` (``data/sweeps/sns_sweep.json``); full mode reruns it.
"""
from __future__ import annotations

import json
from pathlib import Path

from .. import data
from .context import Context, Result, data_file

#: The recorded sweep that quick mode reads.
RECORDED_SWEEP = data.EMBEDDED_DIR / "sweeps" / "sns_sweep.json"


def sweep_file(ctx: Context) -> Path:
    """The recorded sweep (quick), or the sweep rerun into ``out/sns_sweep.json`` (full); recorded as an input."""
    if ctx.quick:
        return ctx.uses("sns_sweep", RECORDED_SWEEP)
    from tqdm.auto import tqdm

    from .. import sweep

    ctx.uses("mnist5k", data_file("mnist5k"))
    path = ctx.out / "sns_sweep.json"
    for knob, name, change in tqdm(sweep.SETTINGS, desc="E7 sweep", unit="run", disable=not ctx.progress):
        sweep.write_sweep([sweep.run_setting(name, knob, change, ctx.out / "runs" / "sweep", device=ctx.device)], path)
    return ctx.uses("sns_sweep", path)


def run(ctx: Context) -> Result:
    """E7: SNS's lambda, k and constrained layers, from the recorded sweep (scripts/sns_sweep.py)."""
    from ..plotting import plot_sns_knobs

    sweep = json.loads(sweep_file(ctx).read_text())
    runs = sweep["runs"]
    base = next(r for r in runs if r["lam"] == 0)
    rows = [{"name": r["name"], "knob": r["knob"], "lam": r["lam"], "k": r["k"], "layers": "+".join(r["layers"]),
             "clean_acc": r["clean_acc"], "pgd40_acc": r["pgd40_acc"],
             "mean_sensitivity": sum(r["sensitivity"].values()) / len(r["sensitivity"])} for r in runs]
    fig = plot_sns_knobs(rows, base, sweep["budget"])
    best = max((r for r in rows if r["lam"] > 0), key=lambda r: r["pgd40_acc"])
    print(f"  PGD-AT {base['pgd40_acc']:.3f}; best SNS {best['name']} {best['pgd40_acc']:.3f}")
    finding = (f"At the sweep's reduced budget PGD-AT reaches {base['pgd40_acc']:.1%} under PGD-40; the best SNS "
               f"setting ({best['name']}) {best['pgd40_acc']:.1%}. Larger λ and k lower the sensitivity steadily; "
               "robust accuracy moves by a few points at most ("
               + ("recorded runs: `data/sweeps/sns_sweep.json`" if ctx.quick else "rerun here: `sns_sweep.json`")
               + ").")
    return Result(finding, {"e7_sns_knobs.csv": rows, "e7_sns_knobs.png": fig})
