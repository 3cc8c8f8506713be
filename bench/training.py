"""Time training steps as ``train()`` runs them: PGD-AT against SNS, and SNS with its fused pass.

Each variant is one call of ``nslib.training.train`` for one epoch of ``--batches`` steps, with
the setting's recipe (``cifar10-resnet18`` for ``--arch resnet18``: SGD, PGD-10 at 8/255;
``mnist-smallcnn`` for smallcnn: Adam, PGD-10 at 0.3), at each ``--batch-size`` and each
``--compile`` mode. So what is timed is the real loop: the data loader, the attack, the loss,
the backward pass and the optimizer, with the same switches (precision, compile, fuse) as
``python -m nslib train``. The variants are interleaved (pgd_at, sns, sns+fuse, pgd_at, ...)
after one warm-up call each (which compiles), so drifts in machine load hit them alike. Each
row is printed as soon as it is measured: ms per step (median over the repeats), with
``--arch resnet18`` the 50,000-image epoch it projects (CIFAR-10's training set; target
<= 15 s at the recipe's batch of 128), and each SNS variant's ratio to PGD-AT (target <= 1.10).

    python bench/training.py                        # CPU, smallcnn, 1 thread
    python bench/training.py --threads 2 --batches 20 --repeats 7
    python bench/training.py --device cuda --arch resnet18 --batch-size 128 512 --precision bf16 \\
        --compile default reduce-overhead

``--compile`` alone is mode ``default``; several modes give a block each; without it, eager.
The images are random (the timing does not depend on them). ``torch._dynamo``'s count of CUDA
graphs that were skipped (``cudagraph skips``) is printed with a CUDA-graph mode: not 0 means a
pass fell back to launching its kernels one by one. The targets and what is measured so far:
``docs/gpu.md#what-is-measured-and-what-is-estimated``; the GPU run that measures them:
``docs/gpu.md#the-command-still-to-run``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nslib import data, models, settings  # noqa: E402
from nslib.precision import COMPILE_MODES, CUDA_GRAPH_MODES, PRECISIONS  # noqa: E402
from nslib.training import TrainConfig, train  # noqa: E402

#: name -> (recipe, extra options)
VARIANTS = {"pgd_at": ("pgd_at", {}), "sns": ("sns", {}), "sns+fuse": ("sns", {"fuse": True})}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    p.add_argument("--arch", default="smallcnn", choices=["smallcnn", "resnet18"],
                   help="smallcnn on mnist5k (mnist-smallcnn's recipes), or resnet18 on random 32x32 images "
                        "(cifar10-resnet18's recipes). Default: smallcnn")
    p.add_argument("--batch-size", type=int, nargs="+", default=None,
                   help="one block per batch size. Default: the setting's (100 smallcnn, 128 resnet18)")
    p.add_argument("--batches", type=int, default=10, help="steps per timed run (default: 10)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per variant (default: 5)")
    p.add_argument("--precision", default="fp32", choices=list(PRECISIONS), help="default: fp32")
    p.add_argument("--compile", nargs="*", default=None, metavar="MODE",
                   help=f"torch.compile modes, one block each ({', '.join(COMPILE_MODES)}); alone: default. "
                        "Default: eager")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                   help="default: all; the first is the reference of the ratios")
    return p.parse_args(argv)


def config(args, variant: str, batch_size: int, mode) -> TrainConfig:
    """The setting's recipe for ``variant``: one epoch of ``--batches`` steps, no evaluation."""
    recipe, options = VARIANTS[variant]
    setting = settings.get("cifar10-resnet18" if args.arch == "resnet18" else "mnist-smallcnn")
    return TrainConfig.from_dict({**setting.recipe(recipe), **options, "epochs": 1, "batch_size": batch_size,
                                  "max_batches": args.batches, "precision": args.precision,
                                  "compile": mode or False, "eval_n": 0})


def images(args, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` training images of the model's input (mnist5k's for smallcnn, random 32x32 for resnet18)."""
    if args.arch == "smallcnn":
        x, y = data.load("mnist5k", "train").tensors(n)
        repeat = -(-n // len(x))
        return x.repeat(repeat, 1, 1, 1)[:n], y.repeat(repeat)[:n]
    return torch.rand(n, 3, 32, 32), torch.randint(0, 10, (n,))


def seconds_per_step(model, train_set, cfg: TrainConfig, device: str) -> float:
    """One ``train()`` call of one epoch; its logged epoch time (the loop, read back from the device) per step."""
    log = train(model, train_set, config=cfg, device=device, progress=False)
    return log[-1]["time_s"] / cfg.max_batches


def block(args, batch_size: int, mode) -> None:
    """Warm up, time and print every variant at one batch size and compile mode."""
    import torch._dynamo

    torch._dynamo.utils.counters.clear()
    train_set = images(args, args.batches * batch_size)
    nets = {v: models.build(args.arch).to(args.device) for v in args.variants}   # each trains on its own copy
    configs = {v: config(args, v, batch_size, mode) for v in args.variants}
    for v in args.variants:                                                      # warm-up: compiles
        seconds_per_step(nets[v], train_set, configs[v], args.device)
    times = {v: [] for v in args.variants}
    for _ in range(args.repeats):
        for v in args.variants:
            times[v].append(seconds_per_step(nets[v], train_set, configs[v], args.device))
    reference = args.variants[0]
    label = f"compile {mode}" if mode else "eager"
    for v in args.variants:
        ms = statistics.median(times[v]) * 1000
        line = f"batch {batch_size:5d}  {label:<26}{v:<10}{ms:9.1f} ms/step"
        if args.arch == "resnet18":
            line += f"  50,000-image epoch {ms / 1000 * 50_000 / batch_size:6.1f} s"
        if v != reference:
            ratios = [s / p for p, s in zip(times[reference], times[v])]
            line += (f"  {v}/{reference} {ms / (statistics.median(times[reference]) * 1000):.3f} (per-pair median "
                     f"{statistics.median(ratios):.3f}, range {min(ratios):.3f}-{max(ratios):.3f})")
        print(line, flush=True)
    if mode in CUDA_GRAPH_MODES:
        print(f"  cudagraph skips: {dict(torch._dynamo.utils.counters['inductor']).get('cudagraph_skips', 0)}",
              flush=True)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    default_batch = 128 if args.arch == "resnet18" else 100
    modes = [None] if args.compile is None else (args.compile or ["default"])
    print(f"device {args.device} ({torch.cuda.get_device_name() if args.device.startswith('cuda') else 'cpu'}), "
          f"threads {torch.get_num_threads()}, {args.arch}, precision {args.precision}, torch {torch.__version__}, "
          f"{args.batches} steps x {args.repeats} interleaved runs per variant; targets: epoch <= 15 s at batch 128, "
          "sns/pgd_at <= 1.10", flush=True)
    for batch_size in args.batch_size or [default_batch]:
        for mode in modes:
            block(args, batch_size, mode)


if __name__ == "__main__":
    main()
