#!/usr/bin/env python3
"""Train the MNIST models the course ships in data/checkpoints/ (see data/checkpoints/README.md).

    python scripts/train_shipped.py                     # all four: standard, pgd_at, trades, sns
    python scripts/train_shipped.py mnist_pgd_at        # just one
    NSLIB_THREADS=2 python scripts/train_shipped.py     # two CPU threads per run (default: one)
    python scripts/train_shipped.py --seed 1 --no-manifest   # another seed: mnist_<recipe>_seed1.pt
    python scripts/train_shipped.py --tables            # the READMEs' tables, from the checkpoints

Seed 0 is the course's shipped model (``mnist_pgd_at``); seed s > 0 is saved as
``mnist_pgd_at_seed<s>.pt``, the same recipe with only its ``seed`` changed (initial
weights, batch order, PGD random starts). E1, E5, E6 and E7 report the mean and standard
deviation over the shipped seeds (``nslib.experiments.context.SHIPPED_SEEDS``).

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

from nslib.checkpoints import CHECKPOINT_DIR, pretrained_names, pretrained_path, read_checkpoint, update_manifest
from nslib.experiments.models import (METRICS, SHIPPED_ARCH, SHIPPED_DATASET, SHIPPED_RECIPES, model_row, reevaluate,
                                      retrain, seed_name, seed_summary)

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
    parser.add_argument("--seed", type=int, default=0,
                        help="the recipe's seed; s > 0 saves <name>_seed<s>.pt. Default: %(default)s")
    parser.add_argument("--metrics-only", action="store_true",
                        help="do not train: recompute the metrics of the existing checkpoints and save them again")
    parser.add_argument("--autoattack", choices=("quick", "standard"), default="quick",
                        help="AutoAttack version of the metrics ('quick': our CPU subset). Default: %(default)s")
    parser.add_argument("--tables", action="store_true",
                        help="print the Markdown tables of README.md and data/checkpoints/README.md and stop")
    parser.add_argument("--no-manifest", action="store_true",
                        help="do not update manifest.json (several runs at once; update it afterwards)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in SHIPPED_RECIPES]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {' '.join(SHIPPED_RECIPES)}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    args.names = args.names or list(SHIPPED_RECIPES)
    return args


#: The tables' labels of the recipes (``models.csv``'s short names).
LABELS = {"standard": "standard", "pgd_at": "PGD-AT", "trades": "TRADES (beta 6)", "sns": "SNS (lambda 0.01)"}


def tables() -> tuple[str, str]:
    """The shipped checkpoints' metrics as the READMEs show them, in %: one row per checkpoint
    (``data/checkpoints/README.md``), and the mean ± std over seeds per recipe (both READMEs;
    one seed: its value). ``tests/test_train_shipped.py`` checks the READMEs carry them."""
    rows, lines = [], ["| model | seed | clean | FGSM | PGD-40 | AutoAttack (quick subset) | worst case | train time* |",
                       "|---|---|---|---|---|---|---|---|"]
    for base in SHIPPED_RECIPES:
        for seed in sorted(s for s in range(10) if seed_name(base, s) in pretrained_names()):
            info = read_checkpoint(pretrained_path(seed_name(base, seed)))
            rows.append(model_row(base, seed, info))
            minutes = info["metrics"]["train_seconds"] / 60
            lines.append(f"| `{seed_name(base, seed)}` | {seed} | "
                         + " | ".join(f"{100 * rows[-1][k]:.1f} %" for k in METRICS) + f" | {minutes:.1f} min |")
    summary = ["| model | seeds | clean | FGSM | PGD-40 | AutoAttack (quick subset) | worst case |",
               "|---|---|---|---|---|---|---|"]
    for r in seed_summary(rows):
        cells = [f"{100 * r[k + '_mean']:.1f}" + (f" ± {100 * r[k + '_std']:.1f}" if r["seeds"] > 1 else "")
                 for k in METRICS]
        summary.append(f"| {LABELS[r['model']]} | {r['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines), "\n".join(summary)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.tables:
        print("\n\n".join(tables()))
        return
    torch.set_num_threads(int(os.environ.get("NSLIB_THREADS") or 1))
    for base in args.names:
        name = seed_name(base, args.seed)
        if args.metrics_only:
            path = args.checkpoints / f"{name}.pt"
            print(json.dumps({"name": name, **reevaluate(path, n=args.n, autoattack=args.autoattack)}), flush=True)
            if not args.no_manifest:
                update_manifest(name, path, args.checkpoints)
            continue
        recipe = {**SHIPPED_RECIPES[base], "seed": args.seed}
        print(f"== {name}: {recipe}", flush=True)
        command = f"python scripts/train_shipped.py {base}" + (f" --seed {args.seed}" if args.seed else "")
        path = retrain(name, args.runs / name, args.checkpoints / f"{name}.pt",
                       {"arch": SHIPPED_ARCH, "dataset": SHIPPED_DATASET, **recipe},
                       progress=False, n=args.n, seed=0, command=command, autoattack=args.autoattack)
        if not args.no_manifest:
            update_manifest(name, path, args.checkpoints)
        info = read_checkpoint(path)
        print(json.dumps({"name": name, **info["metrics"]}), flush=True)
        with open(args.runs / "summary.jsonl", "a") as fh:
            fh.write(json.dumps({"name": name, "recipe": info["recipe"], **info["metrics"]}) + "\n")


if __name__ == "__main__":
    main()
