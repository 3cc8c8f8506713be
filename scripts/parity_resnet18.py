"""bf16 parity on a trained ResNet-18: PGD-40 robust accuracy in bf16 within 0.5 points of fp32.

There are no CIFAR-10 files on the GPU machines, so the script makes a learnable stand-in: the
5,000 MNIST digits that ship with the course (``mnist5k``), upsampled to 32x32 and repeated
over three channels, so that ``resnet18`` (PreAct ResNet-18, CIFAR-10's input) takes them. It
trains the model briefly with PGD-AT at eps 8/255 (``nslib.training.train``) until it has real
decision boundaries (clean accuracy well above chance, checked), then attacks the same test
images with PGD-40 (eps 8/255, step eps/30, random start; the evaluation suite's, with the same
seed) once in fp32 (true float32: TF32 off) and once in bf16 (``precision="bf16"``, a channels_last copy of the model:
``nslib.precision``), and judges both sets of images with the model in fp32, the reference.
Parity concerns the numerics of the attack, not the data set.

    python scripts/parity_resnet18.py --device cuda        # about a minute on one GPU
    python scripts/parity_resnet18.py --tiny               # a smoke run on the CPU; the verdict means nothing

Prints the clean accuracy, both robust accuracies, their difference in points and a verdict:
``PASS`` when the model learnt (clean accuracy >= 50 %, chance is 10 %) and the difference is at
most 0.5 points; exit status 0 on PASS (and on any ``--tiny`` run), 1 on FAIL.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: The target: PGD-40 robust accuracy in bf16 within this many points of fp32.
TARGET_POINTS = 0.5
#: The model must have learnt: clean accuracy at least this (chance: 0.1).
MIN_CLEAN = 0.5


def stand_in(split: str, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` mnist5k images of ``split`` as ``(n, 3, 32, 32)`` in [0, 1] (bilinear upsampling, grey
    repeated over RGB), and their labels ``(n,)``."""
    from nslib import data

    x, y = data.load("mnist5k", split).tensors(n)
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).clamp(0, 1)
    return x.repeat(1, 3, 1, 1).contiguous(), y


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--train-n", type=int, default=4000, help="training images (default: all 4,000)")
    p.add_argument("--test-n", type=int, default=1000, help="attacked test images (default: all 1,000)")
    p.add_argument("--epochs", type=int, default=5, help="PGD-AT epochs (default: 5)")
    p.add_argument("--train-steps", type=int, default=5, help="PGD steps while training (default: 5)")
    p.add_argument("--pgd-steps", type=int, default=40, help="steps of the compared attack (default: 40)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true",
                   help="a smoke run on tiny sizes (64 training and 16 test images, 1 epoch, PGD-5): checks the "
                        "script end to end on a CPU; its verdict means nothing")
    args = p.parse_args(argv)
    if args.tiny:
        args.train_n, args.test_n, args.epochs, args.train_steps, args.pgd_steps = 64, 16, 1, 1, 5
    return args


def train_model(args) -> torch.nn.Module:
    """ResNet-18 trained with PGD-AT at 8/255 on the stand-in (bf16 on CUDA: it only has to learn)."""
    from nslib.models import build
    from nslib.training import train
    from nslib.utils import pgd_step, seed_everything

    seed_everything(args.seed)
    model = build("resnet18")
    eps = 8 / 255
    cuda = torch.device(args.device).type == "cuda"
    train(model, stand_in("train", args.train_n), "pgd_at", args.epochs, eps=eps, steps=args.train_steps,
          alpha=pgd_step(eps, args.train_steps), lr=1e-3, batch_size=128, precision="bf16" if cuda else "fp32",
          device=args.device, progress=False, seed=args.seed)
    return model.eval()


def robust_accuracy(model, x, y, precision: str, steps: int, seed: int) -> float:
    """Accuracy (judged in fp32) on PGD-``steps`` images made in ``precision`` from the same seed."""
    from nslib.attacks import pgd
    from nslib.evaluation import accuracy, default_suite
    from nslib.precision import prepare_model

    eps = 8 / 255
    attacked = prepare_model(copy.deepcopy(model), precision) if precision != "fp32" else model
    torch.manual_seed(seed)
    adv = torch.cat([pgd(attacked, x[i:i + 250], y[i:i + 250], eps=eps, alpha=default_suite(eps)["pgd40"]["alpha"],
                         steps=steps, precision=precision) for i in range(0, len(x), 250)])
    return accuracy(model, adv, y)


def verdict(clean: float, acc: dict[str, float]) -> tuple[bool, list[str]]:
    """``(passed, reasons it failed)`` for a clean accuracy and ``{"fp32": ..., "bf16": ...}`` robust ones."""
    points = 100 * (acc["bf16"] - acc["fp32"])
    why = [] if clean >= MIN_CLEAN else [f"the model did not learn (clean {100 * clean:.1f} % < {100 * MIN_CLEAN:.0f} %)"]
    why += [] if abs(points) <= TARGET_POINTS + 1e-9 else [f"bf16 is {points:+.1f} points from fp32"]
    return not why, why


def main(argv=None) -> int:
    args = parse_args(argv)
    from nslib.evaluation import accuracy

    # fp32 is the reference: true float32, not TF32 (which cuDNN allows by default for convolutions)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False

    started = time.perf_counter()
    model = train_model(args)
    print(f"trained ResNet-18 with PGD-AT on {args.train_n} upsampled mnist5k images, {args.epochs} epochs, "
          f"{time.perf_counter() - started:.0f} s, on {args.device}", flush=True)
    x, y = (t.to(args.device) for t in stand_in("test", args.test_n))
    clean = accuracy(model, x, y)
    acc = {p: robust_accuracy(model, x, y, p, args.pgd_steps, args.seed) for p in ("fp32", "bf16")}
    points = 100 * (acc["bf16"] - acc["fp32"])
    print(f"clean {100 * clean:.1f} % (chance 10 %); PGD-{args.pgd_steps} at 8/255 on the same {len(y)} images: "
          f"fp32 {100 * acc['fp32']:.1f} %, bf16 {100 * acc['bf16']:.1f} %, bf16 - fp32 {points:+.1f} points "
          f"(target: within {TARGET_POINTS})")
    passed, why = verdict(clean, acc)
    print(f"{'PASS' if passed else 'FAIL'}: bf16 parity on a trained ResNet-18" + (f" ({'; '.join(why)})" if why else "")
          + (" [--tiny: a smoke run, the verdict means nothing]" if args.tiny else "")
          + f"; {time.perf_counter() - started:.0f} s in all")
    return 0 if passed or args.tiny else 1


if __name__ == "__main__":
    raise SystemExit(main())
