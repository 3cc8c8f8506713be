"""Throughput and peak memory of ``nslib.sensitivity.neuron_sensitivity``.

Shows that the measurement streams: peak memory stays flat as the number of pairs N
grows, while the time grows linearly. Each (architecture, N) runs in a fresh
subprocess, so its peak resident memory (``ru_maxrss``; on CUDA also
``torch.cuda.max_memory_allocated``) belongs to that configuration alone.

The data are synthetic (seeded uniform images, made batch by batch so the data
themselves take O(batch) memory) and the "attack" is benign + 8/255 random sign noise,
clipped to [0, 1]: the attack is not what is measured. ``--mode tensor`` instead passes
two whole (N, C, H, W) tensors, as a notebook would; then the inputs are O(N) by
construction, and the "during call" column shows that the function adds only O(batch).

Examples::

    python bench/sensitivity.py                                   # both models, N = 1k and 10k
    python bench/sensitivity.py --archs smallcnn --n 1000 10000 100000
    python bench/sensitivity.py --device cuda --batch-size 512
    python bench/sensitivity.py --device cuda --batch-size 512 --precision bf16   # nslib.precision
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from nslib.models import ARCHITECTURES, build
from nslib.precision import PRECISIONS, prepare_model
from nslib.sensitivity import default_layers, neuron_sensitivity


class SyntheticBatches:
    """``(images, labels)`` batches of seeded uniform noise, made on demand."""

    def __init__(self, n: int, batch_size: int, shape: tuple[int, ...], seed: int = 0) -> None:
        self.n, self.batch_size, self.shape, self.seed = n, batch_size, shape, seed

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed)
        for start in range(0, self.n, self.batch_size):
            rows = min(self.batch_size, self.n - start)
            yield torch.rand(rows, *self.shape, generator=gen), torch.randint(0, 10, (rows,), generator=gen)


def noise_attack(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Stand-in attack: ``clip(x + 8/255 * sign(noise), 0, 1)``."""
    return (images + 8 / 255 * torch.randn_like(images).sign()).clamp(0, 1)


def rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args: argparse.Namespace) -> dict:
    """Run one configuration and return its measurements."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = prepare_model(build(args.arch).eval().to(device), args.precision)
    shape = ARCHITECTURES[args.arch][1]
    layers = default_layers(model)
    if args.mode == "tensor":
        x, _ = next(iter(SyntheticBatches(args.n, args.n, shape)))
        call = dict(benign=x, adversarial=noise_attack(x, None))
    else:
        call = dict(benign=SyntheticBatches(args.n, args.batch_size, shape), attack=noise_attack)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = rss_mib()
    start = time.perf_counter()
    sens = neuron_sensitivity(model, layers=layers, batch_size=args.batch_size, device=device,
                              precision=args.precision, **call)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {
        "arch": args.arch, "n": args.n, "mode": args.mode, "precision": args.precision, "batch_size": args.batch_size,
        "device": str(device), "threads": torch.get_num_threads(), "layers": len(layers),
        "neurons": sum(s.numel() for s in sens.values()), "seconds": seconds,
        "pairs_per_s": args.n / seconds, "rss_before_mib": before, "rss_peak_mib": rss_mib(),
        "cuda_peak_mib": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", nargs="+", default=["smallcnn", "resnet18"],
                        choices=sorted(ARCHITECTURES), help="models (default: smallcnn resnet18)")
    parser.add_argument("--n", nargs="+", type=int, default=[1000, 10000],
                        help="numbers of pairs N (default: 1000 10000)")
    parser.add_argument("--batch-size", type=int, default=128, help="pairs per batch (default: 128)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--mode", choices=["loader", "tensor"], default="loader",
                        help="stream batches with an attack, or pass two whole tensors (default: loader)")
    parser.add_argument("--precision", choices=list(PRECISIONS), default="fp32",
                        help="the forward passes' precision (nslib.precision; default: fp32)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--arch", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        args.n = args.n[0]
        print(json.dumps(worker(args)))
        return

    rows = []
    header = (f"{'model':9} {'N':>7} {'layers':>6} {'neurons':>7} {'time s':>8} {'pairs/s':>8} "
              f"{'RSS before':>10} {'RSS peak':>9} {'during call':>11} {'CUDA peak':>9}")
    print(f"neuron_sensitivity, all Conv2d+Linear layers, batch {args.batch_size}, "
          f"device {args.device}, mode {args.mode}, precision {args.precision}; memory in MiB")
    print(header)
    for arch in args.archs:
        for n in args.n:
            cmd = [sys.executable, __file__, "--worker", "--arch", arch, "--n", str(n),
                   "--batch-size", str(args.batch_size), "--device", args.device,
                   "--mode", args.mode, "--threads", str(args.threads), "--precision", args.precision]
            out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            rows.append(row)
            cuda = f"{row['cuda_peak_mib']:9.1f}" if row["cuda_peak_mib"] is not None else f"{'-':>9}"
            print(f"{arch:9} {n:7d} {row['layers']:6d} {row['neurons']:7d} {row['seconds']:8.2f} "
                  f"{row['pairs_per_s']:8.1f} {row['rss_before_mib']:10.1f} {row['rss_peak_mib']:9.1f} "
                  f"{row['rss_peak_mib'] - row['rss_before_mib']:11.1f} {cuda}", flush=True)
    print("\nratios, largest N / smallest N (memory flat in N means about 1.0):")
    for arch in args.archs:
        mine = sorted((r for r in rows if r["arch"] == arch), key=lambda r: r["n"])
        if len(mine) < 2:
            continue
        lo, hi = mine[0], mine[-1]
        during = [r["rss_peak_mib"] - r["rss_before_mib"] for r in (lo, hi)]
        parts = [f"N x{hi['n'] / lo['n']:.0f}", f"time x{hi['seconds'] / lo['seconds']:.2f}",
                 f"peak RSS x{hi['rss_peak_mib'] / lo['rss_peak_mib']:.3f}",
                 f"during call x{during[1] / max(during[0], 1e-9):.3f}"]
        if lo["cuda_peak_mib"]:
            parts.append(f"CUDA peak x{hi['cuda_peak_mib'] / lo['cuda_peak_mib']:.3f}")
        print(f"  {arch}: " + ", ".join(parts))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
