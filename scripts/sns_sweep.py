"""E7: train and evaluate the SNS knob sweep (``nslib.sweep``) into data/sweeps/sns_sweep.json.

The course ships the result, so notebook 04 and ``reproduce --quick`` show E7 without
retraining. Each run trains into ``runs/sweep/<name>/`` (resumable).

    python scripts/sns_sweep.py             # all settings, two at a time (one thread each)
    python scripts/sns_sweep.py --jobs 1 --only lam0.01
"""
from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

from nslib.sweep import SETTINGS, run_setting, write_sweep

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "data" / "sweeps" / "sns_sweep.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side (one thread each)")
    parser.add_argument("--only", nargs="*", help="names of settings to run (default: all)")
    args = parser.parse_args()
    chosen = [s for s in SETTINGS if not args.only or s[1] in args.only]
    run = partial(run_setting, runs_dir=ROOT / "runs" / "sweep", threads=1)
    with ProcessPoolExecutor(args.jobs) as pool:
        records = list(pool.map(run, *zip(*[(n, k, c) for k, n, c in chosen])))
    for record in records:
        print(json.dumps(record))
    print(f"wrote {write_sweep(records, OUT)}")


if __name__ == "__main__":
    main()
