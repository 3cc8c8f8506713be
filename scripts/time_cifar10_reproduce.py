"""Time `python -m nslib reproduce --setting cifar10-...` on a GPU without the CIFAR-10 files, by parts.

Writes 50,000 + 10,000 random images in CIFAR-10's real on-disk format and size
(``nslib.data.write_cifar10_files``), bypasses torchvision's md5 check for them, runs
``reproduce`` with the arguments given, and prints the wall time of every part: each of the four
models, each E7 sweep run, each step. **The images are noise: every accuracy in the output means
nothing; only the timing counts.** With the real files, run ``python -m nslib reproduce`` itself.

    python scripts/time_cifar10_reproduce.py --setting cifar10-resnet18 --full --seeds 1 --epochs 1 \\
        --precision bf16 --compile reduce-overhead --out /tmp/timing --resume    # projected, by parts
    python scripts/time_cifar10_reproduce.py --setting cifar10-resnet18 --full --seeds 1 --precision bf16
    python scripts/time_cifar10_reproduce.py --setting cifar10-vgg16 --quick      # a smoke run, minutes

``--epochs E`` trains every model and every E7 sweep run for E epochs instead of the setting's
(30 and 10) and projects the full run: the time each model and sweep run spent in ``train()``
(its checkpoint's or record's ``train_seconds``, the per-epoch check included) scaled by
epochs / E, everything else (each model's and run's final evaluation, the other steps) as
measured, at its real size. Each part is printed as it ends, with its projection and the
projected total so far, so a run cut short by a time limit still reports what it finished.

``--out DIR --resume`` makes a cut run resumable: the parts that ended are recorded in
``DIR/timing.json`` and not run again (nor the steps, by reproduce's own stamps); a part cut
half-way starts afresh. So the whole run can be measured in several calls of a few minutes. The
evaluation on noise is a lower bound: models score about chance on it, and the attacks
(AutoAttack above all) skip the images a model already gets wrong, which on real data are fewer.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv=None) -> argparse.Namespace:
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
    p.add_argument("--autoattack", choices=("standard", "quick"), default=None,
                   help="reproduce --autoattack. Default: reproduce's (standard with --full): the real run's")
    p.add_argument("--images", type=int, default=10000, help="images per batch file (10000: the real size)")
    p.add_argument("--out", default=None, help="results folder (and data/, timing.json). Default: a scratch folder")
    p.add_argument("--resume", action="store_true", help="with --out: skip the parts a cut run finished")
    p.add_argument("--epochs", type=int, default=None,
                   help="train each model and sweep run for this many epochs and project the full run's time")
    args = p.parse_args(argv)
    if args.epochs is not None and (args.epochs < 1 or args.quick):
        p.error("--epochs is a positive count of epochs, for --full runs (quick mode trains quick_epochs)")
    if args.resume and args.out is None:
        p.error("--resume needs --out, the folder of the run to resume")
    return args


class Parts:
    """The run's parts that ended, ``{key: {"step", "wall", "trained", "projected", ...}}``, kept in
    ``path`` (``timing.json``); with ``resume``, read from it unless it holds other settings or code
    (then :attr:`fresh`: the run starts afresh)."""

    def __init__(self, path: Path | None, header: dict, factors: dict[str, float], resume: bool) -> None:
        self.path, self.header, self.factors = path, header, factors
        saved = json.loads(path.read_text()) if resume and path is not None and path.exists() else {}
        self.fresh = saved.get("header") != header
        self.done = {} if self.fresh else saved["parts"]
        self.now: list[tuple[str, bool]] = []   # (key, ran in this call) of the step under way

    def add(self, key: str, step: str, wall: float, trained: float, **extra) -> dict:
        """Record a part that ended, ``trained`` of its ``wall`` seconds in ``train()``; print it."""
        projected = wall + trained * (self.factors.get(step, 1) - 1)
        self.done[key] = {"step": step, "wall": wall, "trained": trained, "projected": projected, **extra}
        self.save()
        print(f"timed: {key} {wall / 60:.1f} min ({trained / 60:.1f} in train()); projected "
              f"{projected / 60:.1f} min", flush=True)
        return self.done[key]

    def save(self) -> None:
        if self.path is not None:
            self.path.write_text(json.dumps({"header": self.header, "parts": self.done}, indent=1))

    def steps(self) -> dict[str, dict]:
        return {key[len("step:"):]: value for key, value in self.done.items() if key.startswith("step:")}


def time_each(parts: Parts, step: str, function, folder, trained, cached):
    """``function`` timed as a part of ``step`` (a model, a sweep run): a part recorded as ended is not run
    again (``cached(record)`` stands for its result); one that is not starts afresh in ``folder(...)``."""
    def timed(*args, **kwargs):
        key = f"{step}:{folder(*args, **kwargs).name}"
        parts.now.append((key, key not in parts.done))
        if key in parts.done:
            print(f"timed: {key} ended in an earlier call, not run again", flush=True)
            return cached(parts.done[key])
        shutil.rmtree(folder(*args, **kwargs), ignore_errors=True)   # cut half-way last time: from the start
        start = time.perf_counter()
        result = function(*args, **kwargs)
        record = parts.add(key, step, time.perf_counter() - start, trained(result),
                           result=result if isinstance(result, dict) else str(result))
        return cached(record)
    return timed


def instrument(parts: Parts, stack: contextlib.ExitStack) -> None:
    """Time each model (``retrain``), each sweep run (``run_setting``) and each step (``run_step``) until
    ``stack`` closes."""
    from nslib import reproduce as rp
    from nslib import sweep
    from nslib.checkpoints import read_checkpoint
    from nslib.experiments import models
    from nslib.utils import seed_name

    stack.enter_context(mock.patch.object(models, "retrain", time_each(
        parts, "models", models.retrain, lambda name, run_dir, *a, **k: Path(run_dir),
        lambda path: read_checkpoint(path)["metrics"].get("train_seconds", 0), lambda record: Path(record["result"]))))
    stack.enter_context(mock.patch.object(sweep, "run_setting", time_each(
        parts, "sns_knobs", sweep.run_setting,
        lambda name, knob, change, runs_dir, *, seed=0, **k: Path(runs_dir) / seed_name(name, seed),
        lambda record: record["train_seconds"], lambda record: record["result"])))
    run_step = rp.run_step

    def timed_step(ctx, name, code):
        parts.now = []
        start = time.perf_counter()
        result = run_step(ctx, name, code)
        wall = time.perf_counter() - start
        inner = [parts.done[key] for key, _ in parts.now]
        overhead = max(wall - sum(parts.done[key]["wall"] for key, ran in parts.now if ran), 0.0)   # the step's own
        record = {"step": name, "wall": overhead + sum(p["wall"] for p in inner), "trained": 0.0,
                  "projected": overhead + sum(p["projected"] for p in inner)}
        parts.done[f"step:{name}"] = record
        parts.save()
        total = sum(s["projected"] for s in parts.steps().values())
        print(f"timed: step {name} {record['wall'] / 60:.1f} min; projected to the setting's epochs "
              f"{record['projected'] / 60:.1f} min; the run so far {total / 60:.1f} min", flush=True)
        return result

    stack.enter_context(mock.patch.object(rp, "run_step", timed_step))


def main(argv=None) -> int:
    args = parse_args(argv)
    import torchvision.datasets.cifar as cifar

    from nslib import reproduce as rp
    from nslib import settings
    from nslib.data import write_cifar10_files

    setting = settings.get(args.setting)
    full = {"models": setting.recipe("pgd_at")["epochs"], "sns_knobs": setting.sweep["epochs"]}
    epochs = args.epochs
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="nslib-cifar10-timing-"))
    header = {k: getattr(args, k) for k in ("setting", "quick", "seeds", "precision", "compile", "images", "epochs",
                                            "autoattack")}
    header["code"] = rp.source_hash()
    parts = Parts(out / "timing.json", header, {step: full[step] / epochs for step in full} if epochs else {},
                  args.resume)
    if parts.fresh:   # nothing to resume: no results or data of another run
        if out.exists() and any(out.iterdir()) and not (out / "timing.json").exists():
            raise SystemExit(f"--out {out} is not empty and was not made by this script (no timing.json): "
                             "give a new folder")
        for folder in (out / "results", out / "data"):
            shutil.rmtree(folder, ignore_errors=True)
        write_cifar10_files(out / "data", n=args.images)
    with contextlib.ExitStack() as stack:   # every change below is undone at the end
        if epochs is not None:   # the same setting, every training run shortened to --epochs
            recipes = {r: {**setting.recipe(r), "epochs": epochs} for r in settings.RECIPE_NAMES}
            stack.enter_context(mock.patch.dict(settings.REGISTRY, {args.setting: dataclasses.replace(
                setting, recipes=recipes, sweep={**setting.sweep, "epochs": epochs})}))
        stack.enter_context(mock.patch.object(cifar, "check_integrity", lambda path, md5=None: Path(path).is_file()))
        stack.enter_context(mock.patch.dict(os.environ, {"NSLIB_DATA_ROOT": str(out / "data")}))  # no md5: random
        instrument(parts, stack)
        rp.reproduce(out / "results", quick=args.quick, seeds=args.seeds, setting=args.setting,
                     precision=args.precision, compile=args.compile, device=args.device, autoattack=args.autoattack,
                     progress=False,
                     force=not args.resume)   # every step timed, unless a resumed run finished it
    steps = parts.steps()
    print(f"\n{args.setting}, {'quick' if args.quick else 'full'}, seeds {args.seeds}, precision {args.precision}, "
          f"compile {args.compile or 'off'}, {5 * args.images} + {args.images} random images (the accuracies mean "
          "nothing; only the timing counts)" + (f"; trained {epochs} epoch(s), projected to the setting's "
                                                f"{full['models']} per model and {full['sns_knobs']} per sweep run"
                                                if epochs else ""))
    print(f"  {'step':28s} {'measured':>9s} {'projected':>10s}")
    for name, record in steps.items():
        print(f"  {name:28s} {record['wall'] / 60:5.1f} min {record['projected'] / 60:6.1f} min")
    print(f"  {'total':28s} {sum(s['wall'] for s in steps.values()) / 60:5.1f} min "
          f"{sum(s['projected'] for s in steps.values()) / 60:6.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
