"""Time one SNS training step against one PGD-AT step on the same model, data and device.

Both recipes run ``--batches`` optimizer steps (PGD-10, eps 0.3, batch 100 on mnist5k by
default) from the same weights; runs are interleaved (pgd_at, sns, pgd_at, sns, ...)
after a warm-up so drifts in machine load hit both alike. Prints the median seconds per
step of each and the ratio sns / pgd_at (target: <= 1.10), which is also the
ratio of epoch times, since an epoch is the same number of such steps.

    python bench/training.py                        # CPU, smallcnn, 1 thread
    python bench/training.py --threads 2 --batches 20 --repeats 7
    python bench/training.py --device cuda
    python bench/training.py --device cuda --arch resnet18 --batch-size 512 --precision bf16 --compile

``--arch resnet18`` trains PreAct ResNet-18 on random 32x32 colour images (CIFAR-10's size) at
eps 8/255, and also prints the time of a 50,000-image epoch (CIFAR-10's training set) that
the per-step median projects. ``--precision bf16`` runs the steps as ``train(precision=...)``
does: the model channels_last, the loss and its attack under bf16 autocast
(``nslib.precision``); ``--compile`` adds ``torch.compile``.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nslib import data, models  # noqa: E402
from nslib.training import RECIPES  # noqa: E402
from nslib.precision import PRECISIONS, autocast, prepare_model  # noqa: E402
from nslib.utils import pgd_step  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    p.add_argument("--batches", type=int, default=10, help="steps per timed run (default: 10)")
    p.add_argument("--batch-size", type=int, default=100, help="default: 100")
    p.add_argument("--steps", type=int, default=10, help="PGD steps (default: 10)")
    p.add_argument("--eps", type=float, default=0.3, help="default: 0.3")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per recipe (default: 5)")
    p.add_argument("--lam", type=float, default=0.01, help="SNS lambda (default: 0.01)")
    p.add_argument("--arch", default="smallcnn", choices=["smallcnn", "resnet18"],
                   help="smallcnn on mnist5k, or resnet18 on random 32x32 images (default: smallcnn)")
    p.add_argument("--precision", default="fp32", choices=list(PRECISIONS), help="default: fp32")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    return p.parse_args(argv)


def run(recipe: str, model, batches, args) -> float:
    """Seconds per optimizer step of ``recipe`` over ``batches``."""
    model = prepare_model(copy.deepcopy(model).train(), args.precision)
    net = torch.compile(model) if args.compile else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    options = {"lam": args.lam} if recipe == "sns" else {}
    state: dict = {}
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for x, y in batches:
        with autocast(args.precision, args.device):
            loss, _ = RECIPES[recipe](model, x, y, net=net, eps=args.eps, alpha=pgd_step(args.eps, args.steps),
                                      steps=args.steps, state=state, **options)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / len(batches)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n = args.batches * args.batch_size
    if args.arch == "smallcnn":
        model = models.build("smallcnn", dataset="mnist5k").to(args.device)
        x, y = data.load("mnist5k", "train").tensors(n)
    else:
        model = models.build("resnet18").to(args.device)
        x, y = torch.rand(n, 3, 32, 32), torch.randint(0, 10, (n,))
        if args.eps == 0.3:   # the MNIST default: use CIFAR-10's
            args.eps = 8 / 255
    batches = [(x[i:i + args.batch_size].to(args.device), y[i:i + args.batch_size].to(args.device))
               for i in range(0, x.shape[0], args.batch_size)]
    run("pgd_at", model, batches[:2], args)
    run("sns", model, batches[:2], args)  # warm-up
    times = {"pgd_at": [], "sns": []}
    for _ in range(args.repeats):
        for recipe in times:
            times[recipe].append(run(recipe, model, batches, args))
    pgd_at, sns = statistics.median(times["pgd_at"]), statistics.median(times["sns"])
    ratios = [s / p for p, s in zip(times["pgd_at"], times["sns"])]
    print(f"device {args.device}, threads {torch.get_num_threads()}, {args.arch}, batch {args.batch_size}, "
          f"PGD-{args.steps} at eps {args.eps:.4g}, precision {args.precision}{' + compile' if args.compile else ''}, "
          f"{args.batches} steps x {args.repeats} interleaved runs")
    print(f"pgd_at: {pgd_at * 1000:.1f} ms/step   sns: {sns * 1000:.1f} ms/step")
    if args.arch == "resnet18":
        steps = 50_000 / args.batch_size
        print(f"a 50,000-image epoch: pgd_at {pgd_at * steps:.1f} s, sns {sns * steps:.1f} s")
    print(f"ratio sns / pgd_at: {sns / pgd_at:.3f} (median of per-pair ratios "
          f"{statistics.median(ratios):.3f}, range {min(ratios):.3f}-{max(ratios):.3f}; target <= 1.10)")


if __name__ == "__main__":
    main()
