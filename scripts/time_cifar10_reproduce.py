"""Time `python -m nslib reproduce --setting cifar10-...` on a GPU without the CIFAR-10 files.

Writes 50,000 + 10,000 random images in CIFAR-10's real on-disk format and size
(``nslib.data.write_cifar10_files``) into a scratch folder, bypasses torchvision's md5 check
for them, runs ``reproduce`` with the arguments given, and prints the wall time of each step
and of the whole run. **The images are noise: every accuracy in the output means nothing;
only the timing counts.** With the real files, run ``python -m nslib reproduce`` itself.

    python scripts/time_cifar10_reproduce.py --setting cifar10-resnet18 --full --seeds 1 --precision bf16
    python scripts/time_cifar10_reproduce.py --setting cifar10-vgg16 --quick      # a smoke run, minutes
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--setting", default="cifar10-resnet18", choices=["cifar10-resnet18", "cifar10-vgg16"])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="quick", action="store_true", default=False)
    mode.add_argument("--full", dest="quick", action="store_false")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--precision", default="bf16")
    p.add_argument("--device", default="cuda")
    p.add_argument("--images", type=int, default=10000, help="images per batch file (10000: the real size)")
    p.add_argument("--out", default=None, help="results folder. Default: a scratch folder")
    args = p.parse_args(argv)

    import torchvision.datasets.cifar as cifar

    from nslib import reproduce as rp
    from nslib.data import write_cifar10_files

    scratch = Path(tempfile.mkdtemp(prefix="nslib-cifar10-timing-"))
    write_cifar10_files(scratch / "data", n=args.images)
    cifar.check_integrity = lambda path, md5=None: Path(path).is_file()   # random files: no md5 to match
    os.environ["NSLIB_DATA_ROOT"] = str(scratch / "data")
    steps = {}
    run_step = rp.run_step

    def timed(ctx, name, code):
        start = time.perf_counter()
        result = run_step(ctx, name, code)
        steps[name] = time.perf_counter() - start
        return result

    rp.run_step = timed
    start = time.perf_counter()
    rp.reproduce(args.out or scratch / "results", quick=args.quick, seeds=args.seeds, setting=args.setting,
                 precision=args.precision, device=args.device, progress=False)
    total = time.perf_counter() - start
    print(f"\n{args.setting}, {'quick' if args.quick else 'full'}, seeds {args.seeds}, precision {args.precision}, "
          f"{5 * args.images} + {args.images} random images (the accuracies mean nothing; only the timing counts)")
    for name, seconds in steps.items():
        print(f"  {name:28s} {seconds / 60:7.1f} min")
    print(f"  {'total':28s} {total / 60:7.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
