#!/usr/bin/env python3
"""Train the MNIST models the course ships in data/checkpoints/ (see data/checkpoints/README.md).

    python scripts/train_shipped.py                     # all four: standard, pgd_at, trades, sns
    python scripts/train_shipped.py mnist_pgd_at        # just one
    NSLIB_THREADS=2 python scripts/train_shipped.py     # two CPU threads per run (default: one)

Each model trains from its recipe in nslib.experiments.models.SHIPPED_RECIPES (the one
place the four recipes are written) on the embedded mnist5k train split into
runs/shipped/<name>/ (resumable: run the same command again after a crash), is evaluated
on the 1,000 held-out test images (clean, FGSM eps 0.3, PGD-40 eps 0.3 step 0.01 random
start, seed 0), saved as data/checkpoints/<name>.pt with its recipe and metrics, and
recorded in data/checkpoints/manifest.json. It trains with nslib.experiments.models.retrain,
the function `python -m nslib reproduce --full` retrains the shipped models with. One CPU
thread per run by default, so several runs (one model each) can share a small machine.
Run it with the course's environment (``.venv/bin/python``, where nslib is installed).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from nslib.checkpoints import CHECKPOINT_DIR, read_checkpoint, update_manifest
from nslib.experiments.models import SHIPPED_ARCH, SHIPPED_DATASET, SHIPPED_RECIPES, retrain

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="name",
                        help=f"models to train, of {' '.join(SHIPPED_RECIPES)}. Default: all four")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "shipped",
                        help="folder of the training runs. Default: runs/shipped")
    parser.add_argument("--checkpoints", type=Path, default=CHECKPOINT_DIR,
                        help="where the checkpoints and manifest.json go. Default: data/checkpoints")
    parser.add_argument("--n", type=int, default=1000, help="test images of the metrics. Default: %(default)s")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in SHIPPED_RECIPES]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {' '.join(SHIPPED_RECIPES)}")
    args.names = args.names or list(SHIPPED_RECIPES)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(int(os.environ.get("NSLIB_THREADS") or 1))
    for name in args.names:
        print(f"== {name}: {SHIPPED_RECIPES[name]}", flush=True)
        path = retrain(name, args.runs / name, args.checkpoints / f"{name}.pt",
                       {"arch": SHIPPED_ARCH, "dataset": SHIPPED_DATASET, **SHIPPED_RECIPES[name]},
                       progress=False, n=args.n, seed=0, command=f"python scripts/train_shipped.py {name}")
        update_manifest(name, path, args.checkpoints)
        info = read_checkpoint(path)
        print(json.dumps({"name": name, **info["metrics"]}))
        with open(args.runs / "summary.jsonl", "a") as fh:
            fh.write(json.dumps({"name": name, "recipe": info["recipe"], **info["metrics"]}) + "\n")


if __name__ == "__main__":
    main()
