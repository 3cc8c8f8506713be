"""Time `python -m nslib reproduce --setting cifar10-...` on a GPU without the CIFAR-10 files.

Writes 50,000 + 10,000 random images in CIFAR-10's real on-disk format and size
(``nslib.data.write_cifar10_files``) into a scratch folder, bypasses torchvision's md5 check
for them, runs ``reproduce`` with the arguments given, and prints the wall time of each step
and of the whole run. **The images are noise: every accuracy in the output means nothing;
only the timing counts.** With the real files, run ``python -m nslib reproduce`` itself.

    python scripts/time_cifar10_reproduce.py --setting cifar10-resnet18 --full --seeds 1 --precision bf16
    python scripts/time_cifar10_reproduce.py --setting cifar10-resnet18 --full --seeds 1 --epochs 1 \
        --precision bf16 --compile reduce-overhead                                # projected, by parts
    python scripts/time_cifar10_reproduce.py --setting cifar10-vgg16 --quick      # a smoke run, minutes
    python scripts/time_cifar10_reproduce.py --full --seeds 1 --epochs 1 --images 8 --device cpu \
        --precision fp32                                                          # the script end to end, CPU

``--epochs E`` trains every model and every E7 sweep run for E epochs instead of the setting's
(30 and 10) and projects the full run: the time the two training steps spent in ``train()``
(each checkpoint's and each sweep record's ``train_seconds``, the per-epoch check included)
scaled by epochs / E, everything else (the final evaluation of each model and sweep run, the
other steps) as measured, at its real size. Each step's time, and with ``--epochs`` its
projection and the projected total so far, is printed as the step ends, so a run cut short by
a time limit still reports the parts it finished. The evaluation on noise is a lower bound:
models score about chance on it, and the attacks (AutoAttack above all) skip the images a
model already gets wrong, which on real data are far fewer.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def training_seconds(out: Path, step: str) -> float:
    """The seconds step ``step`` of a run into ``out`` spent in ``train()`` (its part that grows with
    the epochs): the models' checkpoints' and the E7 sweep records' ``train_seconds``; 0 for another step."""
    from nslib.checkpoints import read_checkpoint

    if step == "models":
        return sum(read_checkpoint(path)["metrics"].get("train_seconds", 0) for path in (out / "models").glob("*.pt"))
    sweep = out / "sns_sweep.json"
    if step == "sns_knobs" and sweep.exists():
        return sum(run.get("train_seconds", 0) for run in json.loads(sweep.read_text())["runs"])
    return 0.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--setting", default="cifar10-resnet18", choices=["cifar10-resnet18", "cifar10-vgg16"])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="quick", action="store_true", default=False)
    mode.add_argument("--full", dest="quick", action="store_false")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--precision", default="bf16")
    p.add_argument("--compile", nargs="?", const="default", default=False, metavar="MODE",
                   help="reproduce --compile: torch.compile the training (reduce-overhead: CUDA graphs). Default: off")
    p.add_argument("--device", default="cuda")
    p.add_argument("--images", type=int, default=10000, help="images per batch file (10000: the real size)")
    p.add_argument("--out", default=None, help="results folder. Default: a scratch folder")
    p.add_argument("--epochs", type=int, default=None,
                   help="train each model and sweep run for this many epochs and project the full run's time")
    args = p.parse_args(argv)
    if args.epochs is not None and (args.epochs < 1 or args.quick):
        p.error("--epochs is a positive count of epochs, for --full runs (quick mode trains quick_epochs)")

    import torchvision.datasets.cifar as cifar

    from nslib import reproduce as rp
    from nslib import settings
    from nslib.data import write_cifar10_files

    setting = settings.get(args.setting)
    full_epochs = {"models": setting.recipe("pgd_at")["epochs"], "sns_knobs": setting.sweep["epochs"]}
    if args.epochs is not None:   # the same setting, every training run shortened to --epochs
        recipes = {r: {**setting.recipe(r), "epochs": args.epochs} for r in settings.RECIPE_NAMES}
        settings.REGISTRY[args.setting] = dataclasses.replace(
            setting, recipes=recipes, sweep={**setting.sweep, "epochs": args.epochs})

    scratch = Path(tempfile.mkdtemp(prefix="nslib-cifar10-timing-"))
    write_cifar10_files(scratch / "data", n=args.images)
    cifar.check_integrity = lambda path, md5=None: Path(path).is_file()   # random files: no md5 to match
    os.environ["NSLIB_DATA_ROOT"] = str(scratch / "data")
    steps, projected = {}, {}
    run_step = rp.run_step

    def timed(ctx, name, code):
        start = time.perf_counter()
        result = run_step(ctx, name, code)
        steps[name] = time.perf_counter() - start
        line = f"timed: {name} {steps[name] / 60:.1f} min"
        if args.epochs is not None:   # train() time scaled to the setting's epochs, the rest as measured
            trained = min(training_seconds(ctx.out, name), steps[name])
            projected[name] = steps[name] + trained * (full_epochs.get(name, args.epochs) / args.epochs - 1)
            line += (f" ({trained / 60:.1f} in train()); projected to the setting's epochs {projected[name] / 60:.1f} "
                     f"min, the run so far {sum(projected.values()) / 60:.1f} min")
        print(line, flush=True)   # kept if a time limit cuts the run
        return result

    rp.run_step = timed
    start = time.perf_counter()
    rp.reproduce(args.out or scratch / "results", quick=args.quick, seeds=args.seeds, setting=args.setting,
                 precision=args.precision, compile=args.compile, device=args.device, progress=False,
                 force=True)  # every step timed
    total = time.perf_counter() - start
    print(f"\n{args.setting}, {'quick' if args.quick else 'full'}, seeds {args.seeds}, precision {args.precision}, "
          f"compile {args.compile or 'off'}, "
          f"{5 * args.images} + {args.images} random images (the accuracies mean nothing; only the timing counts)")
    for name, seconds in steps.items():
        print(f"  {name:28s} {seconds / 60:7.1f} min")
    print(f"  {'total':28s} {total / 60:7.1f} min")
    if args.epochs is not None:
        print(f"projected with the setting's epochs ({full_epochs['models']} per model, {full_epochs['sns_knobs']} "
              f"per sweep run; measured with {args.epochs}; the evaluation on noise a lower bound):")
        for name in projected:
            print(f"  {name:28s} {projected[name] / 60:7.1f} min")
        print(f"  {'total':28s} {sum(projected.values()) / 60:7.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
