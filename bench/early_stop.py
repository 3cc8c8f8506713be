"""Time E5's quick attack table with PGD's ``stop_when_fooled`` on (the evaluation's default) and off.

The four shipped MNIST checkpoints, the first ``--n`` test images, the quick suite of
``python -m nslib reproduce --quick`` without AutoAttack (as notebook 04 runs it) and the
accuracy-vs-eps curve of notebook 04 (PGD-20 at eps 0.1-0.4). The two settings run
alternately, ``--repeats`` times each, so drifts in machine load hit both alike; each line
prints the median seconds, the ratio on / off (< 1: stopping early is faster) and whether the
two gave the same accuracies (they must: a batch stops only once every image is fooled).

    python bench/early_stop.py                  # CPU, 200 images, 2 repeats (about 4 minutes)
    python bench/early_stop.py --device cuda --n 1000
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nslib import data, evaluation  # noqa: E402
from nslib.checkpoints import load_pretrained  # noqa: E402
from nslib.experiments import robustness  # noqa: E402
from nslib.utils import pgd_step  # noqa: E402

MODELS = ("mnist_standard", "mnist_pgd_at", "mnist_trades", "mnist_sns")


def workloads(eps: float = 0.3) -> dict[str, dict]:
    """``{name: suite}``: E5's quick table (no AutoAttack) and notebook 04's curve as one suite."""
    table = {name: spec for name, spec in robustness.attack_suite(True, "quick", eps).items()
             if spec["attack"] != "autoattack"}
    curve = {f"pgd20@{e:g}": {"attack": "pgd", "eps": e, "alpha": pgd_step(e, 20), "steps": 20}
             for e in (0.1, 0.2, 0.3, 0.4)}
    return {"E5 quick table": table, "accuracy-vs-eps curve": curve}


def run(models: dict, xy: tuple, suite: dict, stop: bool) -> tuple[float, list[float]]:
    """Seconds for one table over all models, and its accuracies."""
    if not stop:
        suite = {name: {**spec, "stop_when_fooled": False} if spec["attack"] == "pgd" else spec
                 for name, spec in suite.items()}
    if xy[0].is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    rows = evaluation.robustness_table(models, xy, suite, seed=0)
    if xy[0].is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, [row["accuracy"] for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="test images (default 200, notebook 04's quick N)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each setting (default 2)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    models = {name: load_pretrained(name, map_location=device)[0].eval() for name in MODELS}
    x, y = data.load("mnist5k", "test").tensors(args.n)
    xy = (x.to(device), y.to(device))
    print(f"{args.n} test images, {device.type}, {torch.get_num_threads()} threads, median of {args.repeats}")
    for name, suite in workloads().items():
        times = {True: [], False: []}
        accuracies = {}
        for _ in range(args.repeats):
            for stop in (False, True):
                seconds, accuracies[stop] = run(models, xy, suite, stop)
                times[stop].append(seconds)
        on, off = statistics.median(times[True]), statistics.median(times[False])
        print(f"{name:24s} off {off:6.1f} s  on {on:6.1f} s  on/off {on / off:.2f}  "
              f"same accuracies: {accuracies[True] == accuracies[False]}")


if __name__ == "__main__":
    main()
