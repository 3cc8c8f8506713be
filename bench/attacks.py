"""Time nslib's PGD and FGSM against torchattacks on the same model, data and device.

For each ``--batch-size``, torchattacks' runs and ours are interleaved (theirs, ours, ours in
bf16, ..., theirs, ...) after one warm-up each, so drifts in machine load hit all alike; each
row is printed as soon as it is measured: the median seconds per run over all ``--n`` images,
ours / theirs (< 1 means nslib is faster), the speed-up (theirs / ours: the throughput ratio;
target >= 3x for PGD-10 on ResNet-18 at batch 512), our image-steps per second, and whether
the two give the same adversarial images under the same seed (max abs difference).

    python bench/attacks.py                                   # smallcnn on mnist5k test, CPU
    python bench/attacks.py --arch resnet18 --n 256 --device cuda
    python bench/attacks.py --arch resnet18 --n 8192 --batch-size 128 512 2048 --device cuda \
        --compile default reduce-overhead

The mixed-precision rows (``nslib.precision``) run our PGD with ``precision="bf16"`` on a
channels_last copy of the model (and each ``--compile`` mode: ``torch.compile``-d as well;
``--compile`` alone is ``default``) against torchattacks in fp32: the speed-up of the fast
path over the reference library. Their ``max |diff|`` is not 0 (bf16 rounds differently);
``acc diff`` is the accuracy under ours minus under theirs, in points, and must stay near 0.
On the CPU, bf16 runs under CPU autocast and is rarely faster. ``--rows`` picks the rows
(default all: fgsm pgd pgd-bf16, plus one per compile mode).

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
from nslib.precision import COMPILE_MODES, CUDA_GRAPH_MODES, prepare_model  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--arch", default="smallcnn", choices=["smallcnn", "resnet18"],
                   help="smallcnn on mnist5k test images, or resnet18 on random 32x32 images")
    p.add_argument("--n", type=int, default=1000, help="number of images (default: 1000)")
    p.add_argument("--batch-size", type=int, nargs="+", default=[250],
                   help="images per attack call; several: one block each (default: 250)")
    p.add_argument("--steps", type=int, default=10, help="PGD steps (default: 10)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per implementation (default: 5)")
    p.add_argument("--compile", nargs="*", default=None, metavar="MODE",
                   help=f"also time PGD in bf16 under torch.compile in each MODE ({', '.join(COMPILE_MODES)}; "
                        "alone: default)")
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS),
                   help="rows besides the compiled ones (default: all)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (default: 0 = leave torch's default)")
    return p.parse_args(argv)


#: row -> (our attack's class name, its precision, torchattacks' counterpart)
ROWS = {"fgsm": ("FGSM", "fp32", "FGSM"), "pgd": ("PGD", "fp32", "PGD"), "pgd-bf16": ("PGD", "bf16", "PGD")}


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


def attacks(model, args, eps, alpha) -> dict:
    """``{row name: (our attack, torchattacks' attack)}``, the compiled rows last."""
    kw = {"FGSM": dict(eps=eps), "PGD": dict(eps=eps, alpha=alpha, steps=args.steps)}
    fast = prepare_model(copy.deepcopy(model), "bf16")
    theirs = {name: getattr(torchattacks, name)(model, **kw[name]) for name in ("FGSM", "PGD")}
    label = {"FGSM": "FGSM", "PGD": f"PGD-{args.steps}"}
    pairs = {}
    for row in args.rows:
        name, precision, ref = ROWS[row]
        ours = getattr(A, name)(fast if precision == "bf16" else model, **kw[name],
                                **({"precision": precision} if name == "PGD" else {}))
        pairs[label[name] + (" bf16" if precision == "bf16" else "")] = ours, theirs[ref]
    for mode in ([] if args.compile is None else args.compile or ["default"]):
        compiled = prepare_model(copy.deepcopy(model), "bf16", compile=mode)
        pairs[f"{label['PGD']} bf16+{mode}"] = A.PGD(compiled, **kw["PGD"], precision="bf16"), theirs["PGD"]
    return pairs


def block(model, x, y, pairs, batch_size, args) -> None:
    """Warm up, time (interleaved) and print every row at one batch size."""
    device = x.device
    fns = {name: (lambda a=ours: run_batches(a, x, y, batch_size)) for name, (ours, _) in pairs.items()}
    theirs = {id(t): (lambda a=t: run_batches(a, x, y, batch_size)) for _, t in pairs.values()}
    outs = {}
    for key, fn in [*theirs.items(), *fns.items()]:   # warm-up (compiles), the same random start for the check
        torch.manual_seed(1)
        outs[key] = fn()
    times = {key: [] for key in [*theirs, *fns]}
    for _ in range(args.repeats):
        for key, fn in [*theirs.items(), *fns.items()]:
            times[key].append(timed(fn, device)[0])
    for name, (_, their) in pairs.items():
        ours_s, theirs_s = statistics.median(times[name]), statistics.median(times[id(their)])
        diff = (outs[name] - outs[id(their)]).abs().max().item()
        acc_diff = 100 * (accuracy(model, outs[name], y) - accuracy(model, outs[id(their)], y))
        steps = 1 if name == "FGSM" else args.steps
        print(f"{batch_size:>6}  {name:<28}{ours_s:>9.4f}{theirs_s:>11.4f}{ours_s / theirs_s:>13.3f}"
              f"{theirs_s / ours_s:>9.2f}x{len(x) * steps / ours_s:>18,.0f}{diff:>12.2e}{acc_diff:>+10.2f}", flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, x, y, eps, alpha = setup(args)
    device = x.device
    pairs = attacks(model, args, eps, alpha)
    print(f"device={device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"threads={torch.get_num_threads()}, arch={args.arch}, n={args.n}, repeats={args.repeats}, "
          f"torch {torch.__version__}, torchattacks {torchattacks.__version__} (fp32)")
    print(f"{'batch':>6}  {'attack':<28}{'ours (s)':>9}{'theirs (s)':>11}{'ours/theirs':>13}{'speed-up':>10}"
          f"{'ours img-steps/s':>18}{'max |diff|':>12}{'acc diff':>10}", flush=True)
    for batch_size in args.batch_size:
        block(model, x, y, pairs, batch_size, args)
    if set(args.compile or []) & set(CUDA_GRAPH_MODES):   # not 0: a pass fell back to one launch per kernel
        import torch._dynamo

        print(f"cudagraph skips: {dict(torch._dynamo.utils.counters['inductor']).get('cudagraph_skips', 0)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
