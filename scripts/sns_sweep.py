"""E7: train and evaluate the SNS knob sweep (``nslib.sweep``) into data/sweeps/sns_sweep.json.

The course ships the result, so notebook 04 and ``reproduce --quick`` show E7 without
retraining. Each run trains into ``runs/sweep/<name>/`` (``<name>_seed<s>/`` for a training
seed s > 0; resumable), and the file keeps one record per (setting, seed).

    python scripts/sns_sweep.py             # all settings, seed 0, two at a time (one thread each)
    python scripts/sns_sweep.py --jobs 1 --only lam0.01
    python scripts/sns_sweep.py --seeds 1 2 # add training seeds 1 and 2 of every setting
"""
from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from nslib.sweep import SETTINGS, run_setting, write_sweep

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "data" / "sweeps" / "sns_sweep.json"


def _run(job: tuple) -> dict:
    """One (knob, name, change, seed) of the sweep, in a worker process with one thread."""
    knob, name, change, seed = job
    return run_setting(name, knob, change, ROOT / "runs" / "sweep", threads=1, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side (one thread each)")
    parser.add_argument("--only", nargs="*", help="names of settings to run (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="training seeds to run (default: 0)")
    args = parser.parse_args()
    names = [n for _, n, _ in SETTINGS]
    unknown = sorted(set(args.only or []) - set(names))
    if unknown:
        parser.error(f"unknown settings {unknown}; choose from {names}")
    if any(seed < 0 for seed in args.seeds):
        parser.error(f"--seeds are training seeds >= 0, got {args.seeds}")
    chosen = [(k, n, c, seed) for k, n, c in SETTINGS if not args.only or n in args.only
              for seed in dict.fromkeys(args.seeds)]
    with ProcessPoolExecutor(args.jobs) as pool:
        for record in pool.map(_run, chosen):  # each record is kept as soon as it (and those before it) end
            print(json.dumps(record))
            print(f"wrote {write_sweep([record], OUT)}")


if __name__ == "__main__":
    main()
