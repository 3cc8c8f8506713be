"""The command line: ``python -m nslib <command>``, with ``train``, ``evaluate``, ``download``,
``reproduce`` and ``student``.

Each command is a pair ``(add_arguments(parser), run(args))`` in ``COMMANDS``; adding one
is adding an entry. ``train`` runs unchanged under ``torchrun --nproc_per_node=K``
(DistributedDataParallel, gloo on CPU, nccl on CUDA).

A user's mistake (an unknown data set, a missing file, a bad layer name, a misspelt
option) prints one line, ``nslib: error: ...`` with the fix, and exits with status 2, as
argparse does for its own errors; ``--debug`` (or ``NSLIB_DEBUG=1``) shows the traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

__all__ = ["main", "COMMANDS", "build_parser", "USER_ERRORS"]

#: What a user's mistake raises (nslib's messages name the problem and the fix): shown as one
#: line with exit status 2. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, TypeError, OSError, FloatingPointError)

TRAIN_EPILOG = """\
examples:
  # standard training, 10 epochs, on the embedded MNIST subset (4,000 images)
  python -m nslib train --recipe standard --epochs 10 --out runs/standard
  # PGD adversarial training as the shipped model (eps 0.3, PGD-10, eps ramp over 16 epochs)
  python -m nslib train --recipe pgd_at --epochs 40 --eps 0.3 --eps-warmup-epochs 16 --out runs/pgd_at
  # SNS: PGD-AT plus lambda x the sensitivity of the top-10% neurons of conv3, conv4, fc1
  python -m nslib train --recipe sns --lambda 0.01 --layers conv3 conv4 fc1 --out runs/sns
  # a setting's recipe as written in nslib.settings (here PGD-AT on CIFAR-10, ResNet-18), on a GPU in bf16
  python -m nslib train --setting cifar10-resnet18 --recipe pgd_at --precision bf16 --out runs/c10_pgd_at
  # two processes on one machine (DistributedDataParallel)
  torchrun --nproc_per_node=2 -m nslib train --recipe pgd_at --out runs/ddp

A run folder holds last.pt (written every epoch), log.jsonl and, at the end, model.pt.
Run the same command again after an interruption and it resumes from last.pt.
A recipe option belongs to its recipe: --beta with --recipe sns is an error, not ignored.
"""

EVALUATE_EPILOG = """\
examples:
  python -m nslib evaluate runs/pgd_at                 # the standard MNIST attack suite, 1000 images
  python -m nslib evaluate mnist_pgd_at mnist_sns      # shipped checkpoints, by name
  python -m nslib evaluate runs/a runs/b --n 200 --attacks clean fgsm pgd40 --csv results/table.csv

Prints one row per (model, attack) with the accuracy, and warnings when a model's
numbers look like gradient masking (a stronger attack doing worse than a weaker one,
or accuracy far from 0 at a huge eps).
"""


def _threads(args: argparse.Namespace) -> None:
    import torch

    threads = args.threads or int(os.environ.get("NSLIB_THREADS", "0") or 0)
    if threads:
        torch.set_num_threads(threads)


def _number(text: str) -> int | float:
    """An int if it looks like one (a count), else a float (a fraction)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


# --------------------------------------------------------------------------- train


def _recipe_flags() -> dict[str, tuple[str, dict, str]]:
    """``{recipe option: (flag, argparse keywords, help)}``; the defaults come from the recipe's signature."""
    from .recipes import CE_ON

    return {
        "beta": ("--beta", {"type": float}, "weight of the KL term"),
        "lam": ("--lambda", {"type": float}, "weight of the sensitivity penalty"),
        "layers": ("--layers", {"nargs": "+"}, "constrained layers. Default: conv3 conv4 fc1 for smallcnn"),
        "k": ("--k", {"type": _number}, "top-k neurons per layer, a count (10) or a fraction (0.1)"),
        "max_k": ("--max-k", {"type": int}, "cap on a fractional k"),
        "topk_every": ("--topk-every", {"type": int},
                       "0 = top-k from each batch; n = from a running estimate every n steps"),
        "momentum": ("--momentum", {"type": float}, "momentum of that running estimate"),
        "ce_on": ("--ce-on", {"choices": CE_ON}, "cross-entropy on x' (adv), x (clean) or both"),
        "fuse": ("--fuse", {"action": "store_const", "const": True},
                 "one forward pass on the 2N batch [x', x] instead of two (BatchNorm keeps each half's statistics)"),
    }


def _add_recipe_option_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per recipe option, its help naming its recipe and its signature default; unset = ``None``."""
    from .recipes import RECIPES, recipe_options

    g = p.add_argument_group("recipe options (each only with its own --recipe)")
    for name, (flag, kwargs, text) in _recipe_flags().items():
        owners = [recipe for recipe in RECIPES if name in recipe_options(recipe)]
        default = recipe_options(owners[0])[name]
        shown = "" if default is None else f". Default: {default}"
        if "choices" not in kwargs and "action" not in kwargs:
            kwargs = dict(kwargs, metavar=flag[2:].upper().replace("-", "_"))
        g.add_argument(flag, dest=name, default=None, help=f"{', '.join(owners)}: {text}{shown}", **kwargs)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The ``train`` flags; every default is ``TrainConfig``'s or the recipe signature's, shown in ``--help``."""
    from . import settings
    from .precision import COMPILE_MODES, PRECISIONS
    from .recipes import RECIPES
    from .training import OPTIMIZERS, SCHEDULES, TrainConfig

    d = TrainConfig()  # every training default, written once there
    g = p.add_argument_group("data and model")
    g.add_argument("--setting", default=None, choices=list(settings.REGISTRY),
                   help="train --recipe as this setting writes it (nslib.settings: data set, model, "
                        "augmentation, every training setting and recipe option); flags given "
                        "explicitly override it. Default: none, the flags' defaults")
    g.add_argument("--data", default="mnist5k", help="data set: mnist5k (embedded), mnist, "
                   "fashion-mnist, cifar10 (download first). Default: %(default)s")
    g.add_argument("--model", default="smallcnn", help="smallcnn (28x28), vgg16 or resnet18 "
                   "(32x32). Default: %(default)s")
    g.add_argument("--limit", type=int, default=None, help="train on the first N images only")
    g.add_argument("--augment", action="store_true", help="random crop + flip (CIFAR-10)")
    g = p.add_argument_group("training")
    g.add_argument("--recipe", default=d.recipe, choices=list(RECIPES),
                   help="loss: standard CE, PGD-AT (Madry), TRADES, SNS. Default: %(default)s")
    g.add_argument("--epochs", type=int, default=d.epochs, help="Default: %(default)s")
    g.add_argument("--lr", type=float, default=d.lr, help="learning rate. Default: %(default)s")
    g.add_argument("--optimizer", default=d.optimizer, choices=OPTIMIZERS, help="Default: %(default)s")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, help="Default: %(default)s")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch size. Default: %(default)s")
    g.add_argument("--schedule", default=d.schedule, choices=SCHEDULES,
                   help="learning-rate schedule, stepped per epoch. Default: constant")
    g.add_argument("--seed", type=int, default=d.seed, help="Default: %(default)s")
    g.add_argument("--out", required=True, help="run folder (created; resumed if it has last.pt)")
    g = p.add_argument_group("adversary used in training (pgd_at, trades, sns) and in the per-epoch check")
    g.add_argument("--eps", type=float, default=d.eps,
                   help="Linf budget. Default: the data set's usual one (nslib.data.DatasetInfo.eps): 0.3 on "
                        "MNIST, 0.1 on Fashion-MNIST, 8/255 on CIFAR-10")
    g.add_argument("--alpha", type=float, default=d.alpha, help="PGD step. Default: 2.5*eps/steps")
    g.add_argument("--steps", type=int, default=d.steps, help="PGD steps. Default: %(default)s")
    g.add_argument("--eps-warmup-epochs", type=float, default=d.eps_warmup_epochs,
                   help="ramp eps linearly from 0 over this many epochs. Default: %(default)s")
    _add_recipe_option_arguments(p)
    g = p.add_argument_group("machine and logging")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... Default: cuda if available")
    g.add_argument("--precision", choices=list(PRECISIONS), default=d.precision,
                   help="fp32 (the reference), bf16 (autocast + channels_last, the fast path) or fp16 "
                        "(autocast + loss scaling); CUDA only. Default: %(default)s")
    g.add_argument("--compile", nargs="?", const="default", default=d.compile, metavar="MODE",
                   help="torch.compile the model for the run (the attack, the loss, the evaluation; the first "
                        "batches compile): --compile alone is mode 'default'; MODE is one of "
                        f"{', '.join(COMPILE_MODES)} (reduce-overhead adds CUDA graphs: the fast path at small "
                        "batches; CUDA only). Default: off")
    g.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (also $NSLIB_THREADS). Default: torch's choice")
    g.add_argument("--eval-n", type=int, default=d.eval_n,
                   help="test images for the per-epoch clean/robust check. Default: %(default)s")
    g.add_argument("--eval-every", type=int, default=d.eval_every, help="Default: %(default)s")
    g.add_argument("--eval-steps", type=int, default=d.eval_steps,
                   help="PGD steps of the check. Default: %(default)s")
    g.add_argument("--max-batches", type=int, default=d.max_batches, help="batches per epoch (quick runs)")
    g.add_argument("--eval-layers", nargs="+", default=d.eval_layers, metavar="LAYER",
                   help="layers whose sensitivity the per-epoch check logs. Default: --layers of sns, else the "
                        "model's deep layers (nslib.recipes.sns_layers)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def train_config(args: argparse.Namespace):
    """The ``TrainConfig`` of parsed ``train`` arguments.

    The recipe's options are those given, the rest at their signature defaults (an
    unset ``--layers`` stays unset: the model's default layers).

    Raises:
        ValueError: a recipe option was given that the chosen recipe does not take
            (e.g. ``--beta 3 --recipe sns``); the message names the recipe's own options.
    """
    from .recipes import RECIPES, recipe_options
    from .training import SETTINGS, TrainConfig

    flags = _recipe_flags()
    valid = recipe_options(args.recipe)
    given = {name: getattr(args, name) for name in flags if getattr(args, name) is not None}
    for name in given:
        if name not in valid:
            owners = [recipe for recipe in RECIPES if name in recipe_options(recipe)]
            own = " ".join(flags[n][0] for n in valid) or "none"
            raise ValueError(f"{flags[name][0]} is an option of --recipe {' or '.join(owners)}, not of "
                             f"--recipe {args.recipe} (its options: {own}); drop {flags[name][0]} or use "
                             f"--recipe {owners[0]}.")
    options = {name: given.get(name, default) for name, default in valid.items()
               if given.get(name, default) is not None}
    return TrainConfig.from_dict({**{name: getattr(args, name) for name in SETTINGS}, **options})


def _device(name: str | None):
    """The torch device of ``--device`` (``None``: ``nslib.utils.default_device()``)."""
    import torch

    from .utils import default_device

    return torch.device(name) if name else default_device()


def _check_precision_device(precision: str, device: str | None, compile: bool | str = False) -> None:
    """``--precision`` other than fp32, and a ``--compile`` mode that captures CUDA graphs, need CUDA:
    ``ValueError`` (one line, exit 2) on another device."""
    from .precision import CUDA_GRAPH_MODES

    device = _device(device)
    if precision != "fp32" and device.type != "cuda":
        raise ValueError(f"--precision {precision} needs a CUDA GPU, and this run is on {device.type}; "
                         "drop --precision to train in fp32 (the reference), or pass --device cuda.")
    if compile in CUDA_GRAPH_MODES and device.type != "cuda":
        raise ValueError(f"--compile {compile} captures CUDA graphs and needs a CUDA GPU, and this run is on "
                         f"{device.type}; use --compile default, or pass --device cuda.")


def run_train(args: argparse.Namespace) -> int:
    """``python -m nslib train``: check the settings, load the data, build the model, train; return 0."""
    import torch

    from .data import load
    from .models import build
    from .training import train
    from .utils import seed_everything

    config = train_config(args)  # a wrong option fails here, before any data is read
    _check_precision_device(config.precision, args.device, config.compile)
    _threads(args)
    train_set = load(args.data, "train", limit=args.limit, augment=args.augment)
    test_set = load(args.data, "test")
    seed_everything(args.seed)
    model = build(args.model, dataset=args.data)
    log = train(model, train_set, test_data=test_set, out=args.out, device=args.device,
                progress=not args.no_progress, config=config)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"done: {len(log)} epochs; model at {Path(args.out) / 'model.pt'}")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


# --------------------------------------------------------------------------- evaluate


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="+",
                   help="run folders (their model.pt), checkpoint files, or shipped names (mnist_pgd_at)")
    p.add_argument("--data", default=None, help="data set. Default: the one the model was trained on")
    p.add_argument("--n", type=int, default=1000, help="test images. Default: %(default)s")
    p.add_argument("--attacks", nargs="+", default=None,
                   help="attacks from nslib.evaluation.default_suite; at eps 0.3: clean fgsm pgd10 pgd40 "
                        "pgd100 pgd40@0.1 pgd40@0.2 pgd40x5 pgd40_cw mim pgd100_l2 cw_l2 pgd40@0.6, and "
                        "autoattack (or autoattack_quick). Default: all")
    p.add_argument("--autoattack", choices=("standard", "quick", "none"), default="standard",
                   help="AutoAttack, the headline robust accuracy: 'standard' (APGD-CE, APGD-T, FAB-T, Square), "
                        "'quick' (our CPU subset: APGD-CE + APGD-T on 3 targets) or 'none'. Default: %(default)s")
    p.add_argument("--eps", type=float, default=None,
                   help="scale the suite to this eps. Default: the eps the models were trained for (their "
                        "checkpoints' recipe), else the data set's usual one (0.3 MNIST, 0.1 Fashion-MNIST, 8/255 "
                        "CIFAR-10)")
    p.add_argument("--csv", default=None, help="also write the table to this CSV file")
    p.add_argument("--seed", type=int, default=0, help="seed of the random starts. Default: %(default)s")
    p.add_argument("--device", default=None, help="Default: cuda if available")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _load_model(spec: str):
    from .checkpoints import load_checkpoint, load_pretrained, pretrained_names

    path = Path(spec)
    if path.is_dir():
        path = path / "model.pt"
        if not path.exists():
            raise FileNotFoundError(f"{spec} has no model.pt (training not finished?); pass a checkpoint "
                                    "file or a finished run folder.")
    if path.exists():
        return path.stem if path.name != "model.pt" else path.parent.name, *load_checkpoint(path)
    if spec in pretrained_names():
        return spec, *load_pretrained(spec)
    raise FileNotFoundError(f"{spec!r} is neither a run folder, a checkpoint file nor a shipped model "
                            f"({', '.join(pretrained_names())}).")


def run_evaluate(args: argparse.Namespace) -> int:
    from .data import dataset_info, load
    from .evaluation import default_suite, format_table, masking_warnings, robustness_table, save_csv

    _threads(args)
    device = _device(args.device)
    models, dataset, trained_eps = {}, args.data, {}
    for spec in args.models:
        name, model, info = _load_model(spec)
        models[name] = model.to(device)
        dataset = dataset or info.get("dataset") or "mnist5k"
        trained_eps[name] = (info.get("recipe") or {}).get("eps")
    x, y = load(dataset, "test").tensors(args.n)
    eps = args.eps
    if eps is None:
        known = {round(e, 6): e for e in trained_eps.values() if e is not None}   # rounded only to compare
        if len(known) > 1:
            raise ValueError(f"the models were trained for different eps ({trained_eps}); choose the one to "
                             "evaluate at with --eps.")
        eps = next(iter(known.values())) if known else dataset_info(dataset).eps
    suite = default_suite(eps, autoattack=None if args.autoattack == "none" else args.autoattack)
    if args.attacks:
        unknown = [a for a in args.attacks if a not in suite]
        if unknown:
            raise ValueError(f"unknown attacks {unknown} at eps {eps:g}; choose from {', '.join(suite)}.")
        suite = {a: suite[a] for a in args.attacks}
    rows = robustness_table(models, (x, y), suite, seed=args.seed, progress=not args.no_progress)
    print(format_table(rows))
    for warning in masking_warnings(rows):
        print("WARNING:", warning)
    if args.csv:
        save_csv(rows, args.csv)
        print(f"wrote {args.csv}")
    return 0


# --------------------------------------------------------------------------- download


def add_download_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="+", choices=["mnist", "fashion-mnist", "cifar10"],
                   help="data sets to fetch with torchvision (needs internet)")
    p.add_argument("--root", default=None, help="folder. Default: $NSLIB_DATA_ROOT, else ~/.cache/nslib/datasets")


def run_download(args: argparse.Namespace) -> int:
    from .data import download_root, load

    for name in args.names:
        for split in ("train", "test"):
            ds = load(name, split, root=args.root, download=True)
            print(f"{name} {split}: {len(ds)} images in {args.root or download_root()}")
    return 0


# --------------------------------------------------------------------------- reproduce

REPRODUCE_EPILOG = """\
examples:
  python -m nslib reproduce                  # quick: shipped checkpoints, 200 test images, minutes on a CPU
  python -m nslib reproduce --full           # retrain the four models (3 seeds each) and the E7 sweep,
                                             # 1000 test images, the full suite and standard AutoAttack:
                                             # for a GPU (hours on a CPU; --seeds 1 --autoattack quick is cheaper)
  python -m nslib reproduce --full --seeds 5 # more training seeds per recipe
  python -m nslib reproduce --steps robustness --force
  # CIFAR-10 on a GPU: the four ResNet-18 models and the E7 sweep trained from the setting's recipes
  python -m nslib reproduce --full --seeds 1 --setting cifar10-resnet18 --device cuda --precision bf16
                                             # into results/cifar10-resnet18/ (needs the CIFAR-10 files)

Writes PNG figures, CSV tables and results/REPORT.md. A step whose outputs are current
is skipped, so an interrupted run can simply be started again.
"""


def add_reproduce_arguments(p: argparse.ArgumentParser) -> None:
    from . import settings
    from .precision import COMPILE_MODES, PRECISIONS
    from .reproduce import STEPS

    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="quick", action="store_true", default=True,
                      help="shipped checkpoints, small N (default)")
    mode.add_argument("--full", dest="quick", action="store_false",
                      help="retrain the models and the E7 sweep from their recipes; N = 1000, full attack suite")
    p.add_argument("--n", type=int, default=None, help="test images of the attack steps. Default: 200 quick, 1000 full")
    p.add_argument("--setting", default="mnist-smallcnn", choices=list(settings.REGISTRY),
                   help="the experimental setting (nslib.settings): the course's shipped MNIST models, or a "
                        "setting trained here from its recipes (needs its data set's files: python -m nslib "
                        "download <data set>). Default: %(default)s")
    p.add_argument("--out", default=None, help="output folder. Default: results (results/<setting> for another "
                                               "setting)")
    p.add_argument("--steps", nargs="+", choices=list(STEPS), help="run only these steps. Default: all")
    p.add_argument("--force", action="store_true", help="rerun steps even when their outputs are current")
    p.add_argument("--seed", type=int, default=0, help="the one seed. Default: 0")
    p.add_argument("--seeds", type=int, default=3,
                   help="training seeds per recipe: the shipped ones (quick, at most 3) or retrained (--full). "
                        "Default: 3")
    p.add_argument("--autoattack", choices=("standard", "quick"), default=None,
                   help="AutoAttack version: 'standard' (APGD-CE, APGD-T, FAB-T, Square) or 'quick' (our CPU subset: "
                        "APGD-CE + APGD-T, 3 targets). Default: quick with --quick, standard with --full")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:1 ... Default: $NSLIB_DEVICE, else cuda if available")
    p.add_argument("--precision", choices=list(PRECISIONS), default="fp32",
                   help="the precision models and the E7 sweep are trained in (bf16: the fast GPU path; CUDA "
                        "only); the measurements stay fp32. Default: %(default)s")
    p.add_argument("--compile", nargs="?", const="default", default=False, metavar="MODE",
                   help="torch.compile the training of the models and the E7 sweep (as train --compile; MODE one "
                        f"of {', '.join(COMPILE_MODES)}; reduce-overhead: CUDA graphs, CUDA only). Default: off")


def run_reproduce(args: argparse.Namespace) -> int:
    from .reproduce import reproduce

    _check_precision_device(args.precision, args.device, args.compile)
    out = args.out or ("results" if args.setting == "mnist-smallcnn" else f"results/{args.setting}")
    reproduce(out, quick=args.quick, steps=args.steps, force=args.force, seed=args.seed, n=args.n,
              progress=args.progress, device=args.device, seeds=args.seeds, autoattack=args.autoattack,
              setting=args.setting, precision=args.precision, compile=args.compile)
    return 0


def add_student_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None, help="folder. Default: student/ (run from the repository's root)")


def run_student(args: argparse.Namespace) -> int:
    from .editions import STUDENT_DIR, write_student_edition
    from .launch import repository_url, why_no_links

    for path in write_student_edition(dst=args.out or STUDENT_DIR, url=repository_url()):
        print("wrote", path)
    if why_no_links():
        print(why_no_links())
    return 0


def run_clean_notebooks(args: argparse.Namespace) -> int:
    from .editions import clean_notebooks
    from .launch import repository_url, why_no_links

    for path in clean_notebooks(url=repository_url()):
        print("cleaned", path)
    _refresh_readme_links(repository_url())
    if why_no_links():
        print(why_no_links())
    return 0


def _refresh_readme_links(url: str | None) -> None:
    """The README's launch block (``nslib.launch.readme_block``), for the student edition's lessons."""
    from pathlib import Path

    from .editions import STUDENT_DIR
    from .launch import set_readme_block

    readme = Path("README.md")
    lessons = [f"{STUDENT_DIR.name}/{p.name}" for p in sorted(STUDENT_DIR.glob("[0-9][0-9]_*.ipynb"))]
    text = readme.read_text(encoding="utf-8")
    updated = set_readme_block(text, url, lessons)
    if updated != text:
        readme.write_text(updated, encoding="utf-8")
        print("updated the launch links in", readme)


#: command -> (help, description epilog, add_arguments, run)
COMMANDS: dict[str, tuple[str, str, Callable, Callable]] = {
    "train": ("train a model with a recipe (standard, pgd_at, trades, sns)", TRAIN_EPILOG,
              add_train_arguments, run_train),
    "evaluate": ("robustness table of trained models under a suite of attacks", EVALUATE_EPILOG,
                 add_evaluate_arguments, run_evaluate),
    "download": ("download MNIST, Fashion-MNIST or CIFAR-10 with torchvision", "",
                 add_download_arguments, run_download),
    "reproduce": ("regenerate every figure and table of experiments E1-E7 into results/",
                  REPRODUCE_EPILOG, add_reproduce_arguments, run_reproduce),
    "student": ("write the student edition of the notebooks (solutions stubbed, outputs cleared)", "",
                add_student_arguments, run_student),
    "clean-notebooks": ("strip execution timestamps and widget state from notebooks/ (small diffs)", "",
                        lambda p: None, run_clean_notebooks),
}


def setting_defaults(name: str, recipe: str) -> dict:
    """The ``train`` flags' defaults of ``--setting name --recipe recipe``: its data set, model,
    augmentation, every setting and option of its recipe (``nslib.settings``) and, for the
    per-epoch log, the layers SNS constrains in it (every recipe logs the same layers), by ``dest``."""
    from .settings import get

    setting = get(name)
    return {"data": setting.dataset, "model": setting.arch, "augment": setting.augment,
            "eval_layers": list(setting.sns_layers), **setting.recipe(recipe)}


def build_parser(train_defaults: dict | None = None) -> argparse.ArgumentParser:
    """The parser of ``python -m nslib``: one subcommand per entry of ``COMMANDS`` (``train_defaults``:
    the defaults of ``train``'s options, a setting's recipe for example)."""
    parser = argparse.ArgumentParser(
        prog="python -m nslib",
        description="nslib: neuron sensitivity and Sensitive Neuron Stabilizing (SNS). "
                    "Run `python -m nslib <command> --help` for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also NSLIB_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)
    for name, (help_text, epilog, add_arguments, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add_arguments(p)
        if name == "train" and train_defaults:
            p.set_defaults(**train_defaults)
        # also after the command; SUPPRESS keeps a --debug given before it
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the full traceback of an error (also NSLIB_DEBUG=1)")
    return parser


def _with_setting(args: argparse.Namespace, argv: list[str] | None) -> argparse.Namespace:
    """``train --setting``: the arguments parsed again with the setting's recipe as the defaults."""
    if args.command != "train" or not args.setting:
        return args
    return build_parser(setting_defaults(args.setting, args.recipe)).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run one command; a user's mistake becomes one line on stderr and exit status 2.

    Returns the command's exit status (0). Errors in ``USER_ERRORS`` print
    ``nslib: error: <message>`` (the message names the fix) and exit 2; Ctrl-C prints
    that the run can be resumed and exits 130. With ``--debug`` or ``NSLIB_DEBUG=1`` the
    error is raised with its traceback instead.
    """
    from .utils import env_flag

    parser = build_parser()
    args = parser.parse_args(argv)
    run = COMMANDS[args.command][3]
    try:
        debug = args.debug or env_flag("NSLIB_DEBUG", False)
    except ValueError as error:
        parser.exit(2, f"nslib: error: {error}\n")
    if debug:
        return run(_with_setting(args, argv))  # errors keep their traceback
    try:
        return run(_with_setting(args, argv))
    except USER_ERRORS as error:
        message = " ".join(str(error).split()) or type(error).__name__
        parser.exit(2, f"nslib: error: {message} (--debug shows the traceback)\n")
    except KeyboardInterrupt:
        parser.exit(130, "nslib: interrupted; run the same command again to resume a run that has an out "
                         "folder.\n")


if __name__ == "__main__":
    sys.exit(main())
