"""Time nslib's PGD and FGSM against torchattacks on the same model, data and device.

Runs are interleaved (ours, theirs, ours, theirs, ...) after one warm-up each, so drifts
in machine load hit both alike; prints the median seconds per run over all ``--n`` images
and the ratio ours / torchattacks (< 1 means nslib is faster). Also checks that the two
give the same adversarial images under the same seed (max abs difference).

    python bench/attacks.py                                   # smallcnn on mnist5k test, CPU
    python bench/attacks.py --arch resnet18 --n 256 --device cuda
    python bench/attacks.py --arch resnet18 --n 8192 --batch-size 512 --device cuda --compile

The mixed-precision rows (``nslib.precision``) run our PGD with ``precision="bf16"`` on a
channels_last copy of the model (and ``--compile``: ``torch.compile``-d as well) against
torchattacks in fp32: the speed-up of the fast path over the reference library. Their
``max |diff|`` is not 0 (bf16 rounds differently); ``acc diff`` is the accuracy under ours
minus under theirs, in points, and must stay near 0. On the CPU, bf16 runs under CPU
autocast and is rarely faster.

torchattacks is a test-only reference (installed with --no-deps), imported only here.
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

import torchattacks  # noqa: E402

import nslib.attacks as A  # noqa: E402
from nslib import data, models  # noqa: E402
from nslib.evaluation import accuracy  # noqa: E402
from nslib.precision import prepare_model  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--arch", default="smallcnn", choices=["smallcnn", "resnet18"],
                   help="smallcnn on mnist5k test images, or resnet18 on random 32x32 images")
    p.add_argument("--n", type=int, default=1000, help="number of images (default: 1000)")
    p.add_argument("--batch-size", type=int, default=250, help="images per attack call (default: 250)")
    p.add_argument("--steps", type=int, default=10, help="PGD steps (default: 10)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per implementation (default: 5)")
    p.add_argument("--compile", action="store_true", help="also time PGD in bf16 under torch.compile")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (default: 0 = leave torch's default)")
    return p.parse_args(argv)


def setup(args):
    torch.manual_seed(0)
    device = torch.device(args.device)
    if args.arch == "smallcnn":
        model = models.build("smallcnn", dataset="mnist5k")
        x, y = data.load("mnist5k", "test").tensors(args.n)
        eps, alpha = 0.3, 0.01
    else:
        model = models.build("resnet18")
        x, y = torch.rand(args.n, 3, 32, 32), torch.randint(0, 10, (args.n,))
        eps, alpha = 8 / 255, 2 / 255
    return model.to(device).eval(), x.to(device), y.to(device), eps, alpha


def run_batches(attack, x, y, batch_size):
    return torch.cat([attack(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def timed(fn, device) -> tuple[float, torch.Tensor]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, out


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, x, y, eps, alpha = setup(args)
    device = x.device
    fast = prepare_model(copy.deepcopy(model), "bf16")
    pgd_kw = dict(eps=eps, alpha=alpha, steps=args.steps)
    pairs = {
        "FGSM": (A.FGSM(model, eps=eps), torchattacks.FGSM(model, eps=eps)),
        f"PGD-{args.steps}": (A.PGD(model, **pgd_kw), torchattacks.PGD(model, **pgd_kw)),
        f"PGD-{args.steps} bf16": (A.PGD(fast, **pgd_kw, precision="bf16"), torchattacks.PGD(model, **pgd_kw)),
    }
    if args.compile:
        pairs[f"PGD-{args.steps} bf16+compile"] = (A.PGD(torch.compile(fast), **pgd_kw, precision="bf16"),
                                                    torchattacks.PGD(model, **pgd_kw))
    print(f"device={device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"threads={torch.get_num_threads()}, arch={args.arch}, n={args.n}, batch={args.batch_size}, "
          f"repeats={args.repeats}, torch {torch.__version__}, torchattacks {torchattacks.__version__}")
    print(f"{'attack':<22}{'ours (s)':>10}{'theirs (s)':>12}{'ours/theirs':>13}{'ours img-steps/s':>18}"
          f"{'max |diff|':>12}{'acc diff':>10}")
    for name, (ours, theirs) in pairs.items():
        fns = {
            "ours": lambda a=ours: run_batches(a, x, y, args.batch_size),
            "theirs": lambda a=theirs: run_batches(a, x, y, args.batch_size),
        }
        outs = {}
        for key, fn in fns.items():  # warm-up (compiles), and the same random start for the equality check
            torch.manual_seed(1)
            outs[key] = fn()
        diff = (outs["ours"] - outs["theirs"]).abs().max().item()
        acc_diff = 100 * (accuracy(model, outs["ours"], y) - accuracy(model, outs["theirs"], y))
        times = {key: [] for key in fns}
        for _ in range(args.repeats):
            for key, fn in fns.items():
                times[key].append(timed(fn, device)[0])
        ours_s, theirs_s = statistics.median(times["ours"]), statistics.median(times["theirs"])
        steps = 1 if name == "FGSM" else args.steps
        print(f"{name:<22}{ours_s:>10.4f}{theirs_s:>12.4f}{ours_s / theirs_s:>13.3f}{len(x) * steps / ours_s:>18,.0f}"
              f"{diff:>12.2e}{acc_diff:>+10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
