"""``python -m nslib reproduce``: regenerate the course's figures and tables into ``results/``.

The runner of the experiments in ``nslib.experiments`` (one module each, E1-E7): it runs
the steps in order, writes each step's tables (CSV) and figures (PNG), and puts each
step's one-sentence finding into ``results/REPORT.md``.

A step is skipped when its outputs exist and nothing it depends on changed: its settings
(quick/full, seed, n), the sha256 of every checkpoint and data file it read, and the code
(every ``*.py`` file of the ``nslib`` package: editing any library function reruns every
step, which is coarse but never stale) with the torch and numpy versions. So an interrupted run loses only the step it was
in; every step reseeds, so two runs give identical tables.

``--quick`` (the default) uses the shipped checkpoints, N = 200 test images, a trimmed
attack suite and the recorded E7 sweep: minutes on a laptop CPU. ``--full`` retrains the
four models from the recipes stored in the shipped checkpoints (``results/runs/``,
resumable, then ``results/models/``), reruns the E7 sweep, and uses N = 1000 and the full
attack suite (PGD-100, 5 restarts): 56 minutes on a 2-core CPU (27 of them training).

``--setting cifar10-resnet18`` (or ``cifar10-vgg16``, ``fashion-mnist-smallcnn``; ``nslib.settings``)
runs the same steps on CIFAR-10 (Fashion-MNIST): the four models and the E7 sweep are trained from that setting's recipes (quick
mode: ``quick_epochs`` each, a smoke run), each experiment reads its layers from the setting,
and ``--precision bf16`` trains on a GPU in bf16 (``docs/gpu.md``).
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from functools import partial
from pathlib import Path
from typing import Callable

import matplotlib
import torch

from . import __version__, data
from .checkpoints import atomic_write_text
from .experiments import (ablation, attacks, feature_maps, models, robustness, sensitivity,
                          sensitivity_vs_robustness, sns_knobs)
from .experiments.context import Context, Result
from .experiments.models import retrain_settings
from .settings import get as get_setting
from .utils import default_device, seed_everything

__all__ = ["reproduce", "STEPS", "DOCS", "Context", "retrain_settings", "source_hash", "library_versions",
           "write_report"]

#: step name -> (experiment's ``run(ctx) -> Result``, title). Order matters: the report follows it.
STEPS: dict[str, tuple[Callable[[Context], Result], str]] = {
    "models": (models.run, "The four models"),
    "attacks": (attacks.run, "Attacks on the standard model"),
    "sensitivity": (sensitivity.run, "E1, E2: layer and neuron sensitivity of four models"),
    "ablation": (ablation.run, "E3: neuron stabilisation and deactivation"),
    "feature_maps": (feature_maps.run, "E4: the most sensitive neurons' feature maps"),
    "robustness": (robustness.run, "E5: SNS vs baselines under attack"),
    "sensitivity_vs_robustness": (sensitivity_vs_robustness.run, "E6: sensitivity vs robustness"),
    "sns_knobs": (sns_knobs.run, "E7: SNS knobs"),
}

#: step name -> the sections of ``docs/experiments.md`` that say what it tests and how (cited in REPORT.md).
DOCS: dict[str, tuple[str, ...]] = {
    "models": ("docs/experiments.md#data-and-models",),
    "attacks": ("docs/experiments.md#premise-attacks",),
    "sensitivity": ("docs/experiments.md#e1-layer-sensitivity", "docs/experiments.md#e2-sensitivity-distribution"),
    "ablation": ("docs/experiments.md#e3-ablation",),
    "feature_maps": ("docs/experiments.md#e4-feature-maps",),
    "robustness": ("docs/experiments.md#e5-sns-vs-baselines",),
    "sensitivity_vs_robustness": ("docs/experiments.md#e6-sensitivity-vs-robustness",),
    "sns_knobs": ("docs/experiments.md#e7-sns-knobs",),
}

#: The package whose source is the code every step's key hashes.
PACKAGE_DIR = Path(__file__).resolve().parent
#: Bumped when the stamp's content changes; a stamp of another format is stale.
STAMP_FORMAT = 2


# --- writing outputs ----------------------------------------------------------------------

def write_csv(path: Path, rows: list[dict]) -> Path:
    """Write ``rows`` (dicts with the same keys) as CSV, floats rounded to 4 decimals."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    return path


def write_table(path: Path, rows: list[dict]) -> Path:
    """Write a table: rows of ``nslib.evaluation.robustness_table`` (they carry every column of
    ``evaluation.CSV_COLUMNS``) as ``evaluation.save_csv`` writes them, others with :func:`write_csv`."""
    from .evaluation import CSV_COLUMNS, save_csv

    if rows and set(CSV_COLUMNS) <= set(rows[0]):
        save_csv(rows, path)
        return path
    return write_csv(path, rows)


def save_figure(fig, path: Path) -> Path:
    """Save ``fig`` as PNG (110 dpi, no software stamp, so reruns give the same bytes) and close it."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def write_outputs(out: Path, result: Result) -> list[str]:
    """Write a step's tables and figures into ``out``; return their file names in report order."""
    for name, content in result.outputs.items():
        if isinstance(content, list):
            write_table(out / name, content)
        else:
            save_figure(content, out / name)
    return list(result.outputs)


# --- the cache ----------------------------------------------------------------------------

def source_hash(package_dir: str | os.PathLike | None = None) -> str:
    """sha256 of a package's source: every ``*.py`` under it, by relative path, path and bytes.

    Default: the installed ``nslib`` package (``PACKAGE_DIR``).
    """
    package_dir = Path(package_dir or PACKAGE_DIR)
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py"), key=lambda p: p.relative_to(package_dir).as_posix()):
        source = path.read_bytes()
        digest.update(f"{path.relative_to(package_dir).as_posix()}\0{len(source)}\0".encode())
        digest.update(source)
    return digest.hexdigest()


def file_hashes(files: dict[str, str]) -> dict[str, str]:
    """label -> sha256 of the file (``"missing"`` when it is gone, so the step reruns)."""
    return {label: (data.sha256sum(f) if Path(f).exists() else "missing") for label, f in sorted(files.items())}


def library_versions() -> dict[str, str]:
    """The versions of the libraries that compute the numbers (torch, numpy): an upgrade reruns the steps."""
    import numpy
    import torch

    return {"torch": torch.__version__, "numpy": numpy.__version__}


def step_key(ctx: Context, name: str, code: str) -> str:
    """What a step's outputs depend on: its settings, the files it read, the code (``code``) and the
    versions of torch and numpy."""
    settings = {"format": STAMP_FORMAT, "step": name, "setting": ctx.setting.name, "precision": ctx.precision,
                "quick": ctx.quick,
                "seed": ctx.seed, "n": ctx.n,
                "device": ctx.device.type,
                "seeds": ctx.seeds, "autoattack": ctx.autoattack,
                "version": __version__, "code": code, "libraries": library_versions(),
                "checkpoints": file_hashes(ctx.used_checkpoints),
                "data": file_hashes(ctx.used_data)}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def _read_stamp(path: Path) -> dict | None:
    """The stamp of a step's last run; ``None`` when there is none or it is of another format."""
    try:
        stamp = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return stamp if isinstance(stamp, dict) and stamp.get("format") == STAMP_FORMAT else None


def up_to_date(ctx: Context, name: str, code: str, stamp: dict | None) -> bool:
    """Whether ``stamp`` (the step's last run) still holds: same key, outputs all there.

    ``ctx`` is a fresh Context of this run; the files the last run read are rehashed.
    """
    if stamp is None:
        return False
    ctx.used_checkpoints, ctx.used_data = dict(stamp["checkpoints"]), dict(stamp["data"])
    return stamp["key"] == step_key(ctx, name, code) and all((ctx.out / f).exists() for f in stamp["outputs"])


# --- running the steps --------------------------------------------------------------------

def run_step(ctx: Context, name: str, code: str) -> None:
    """Run one step from a fresh seed, write its outputs, then its stamp (last: an interrupted step reruns)."""
    function, title = STEPS[name]
    seed_everything(ctx.seed)
    result = function(ctx)
    record = {"format": STAMP_FORMAT, "key": step_key(ctx, name, code), "title": title, "finding": result.finding,
              "checkpoints": ctx.used_checkpoints, "data": ctx.used_data, "outputs": write_outputs(ctx.out, result)}
    atomic_write_text(ctx.out / ".stamps" / f"{name}.json", json.dumps(record, indent=2))


def reproduce(out: str | os.PathLike = "results", *, quick: bool = True, steps: list[str] | None = None,
              force: bool = False, seed: int = 0, n: int | None = None, progress: bool = True,
              device=None, seeds: int = 3, autoattack: str | None = None,
              setting: str = "mnist-smallcnn", precision: str = "fp32", compile: bool | str = False) -> Path:
    """Run the steps (all by default), skipping those that are up to date; write REPORT.md.

    Args:
        out (path, optional): output folder. Default: ``"results"``.
        quick (bool, optional): shipped checkpoints and small N; ``False`` retrains (``--full``).
            Default: ``True``.
        steps (list of str, optional): a subset of ``STEPS``. Default: all.
        force (bool, optional): rerun steps even when up to date. Default: ``False``.
        seed (int, optional): the one seed. Default: ``0``.
        n (int, optional): test images of the attack-based steps. Default: 200 quick, 1000 full.
        device (str or torch.device, optional): where models train and run, e.g. ``"cuda"``.
            Default: ``nslib.utils.default_device()`` (``NSLIB_DEVICE``, else cuda if available).
        seeds (int, optional): training seeds per recipe: the shipped ones in quick mode (at
            most 3), retrained ones in full mode. Default: ``3``.
        autoattack (str, optional): ``"standard"`` or ``"quick"`` (``nslib.autoattack``).
            Default: ``"quick"`` in quick mode, ``"standard"`` in full mode.
        setting (str, optional): the experimental setting (``nslib.settings``): the course's
            ``"mnist-smallcnn"``, or ``"cifar10-resnet18"``, ``"cifar10-vgg16"``,
            ``"fashion-mnist-smallcnn"``, whose four
            models and E7 sweep are trained here from the setting's recipes (in quick mode for
            ``quick_epochs`` epochs: a smoke run). Its data must be on disk: without it the
            run stops before it writes anything. Default: ``"mnist-smallcnn"``.
        precision (str, optional): the precision the models and the E7 sweep are trained in
            (``nslib.precision``; ``"bf16"`` on a GPU); measurements stay fp32, the reference.
            Default: ``"fp32"``.
        compile (bool or str, optional): the ``torch.compile`` mode of that training
            (``nslib.precision.COMPILE_MODES``; ``"reduce-overhead"`` on a GPU). It changes the
            speed, not the recipe, so a step trained without it is not rerun. Default: ``False``.

    Returns:
        Path: ``out/REPORT.md``.
    """
    matplotlib.use("Agg")
    out = Path(out)
    names = list(STEPS) if steps is None else steps
    unknown = [s for s in names if s not in STEPS]
    if unknown:
        raise ValueError(f"unknown steps {unknown}; choose from {list(STEPS)}.")
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ValueError(f"n (test images) must be a positive int, got {n!r}.")
    device = default_device() if device is None else torch.device(device)
    chosen = get_setting(setting)
    data.load(chosen.dataset, "test")  # a missing data set stops the run here, before anything is written
    new_context = partial(Context, out, quick=quick, seed=seed, progress=progress, n_images=n, device=device,
                          seeds=seeds, autoattack=autoattack, setting=chosen, precision=precision,
                          compile=compile)
    new_context()  # checks seeds and autoattack before anything is written
    (out / ".stamps").mkdir(parents=True, exist_ok=True)
    code = source_hash()
    for i, name in enumerate(names, start=1):
        title = STEPS[name][1]
        if not force and up_to_date(new_context(), name, code, _read_stamp(out / ".stamps" / f"{name}.json")):
            print(f"[{i}/{len(names)}] {title}: up to date, skipped")
            continue
        print(f"[{i}/{len(names)}] {title} ...", flush=True)
        run_step(new_context(), name, code)
    return write_report(out, names)


def write_report(out: Path, names: list[str]) -> Path:
    """``REPORT.md`` (written atomically): each step's figures and tables with its one-sentence finding."""
    lines = ["# nslib: reproduction report", "",
             "Regenerated by `python -m nslib reproduce`; each section shows one experiment and says",
             "whether the paper's finding held on our data. What each experiment tests, and every",
             "choice we made, is in the repository's `docs/experiments.md` (the section named under",
             "each heading).", ""]
    for name in names:
        record = json.loads((out / ".stamps" / f"{name}.json").read_text())
        docs = ", ".join(f"`{section}`" for section in DOCS.get(name, ()))
        lines += [f"## {record['title']}", ""] + ([f"Described in {docs}.", ""] if docs else []) + [
            record["finding"], ""]
        for output in record["outputs"]:
            lines.append(f"![{output}]({output})" if output.endswith(".png") else f"- table: [`{output}`]({output})")
        lines.append("")
    report = atomic_write_text(out / "REPORT.md", "\n".join(lines))
    print(f"wrote {report}")
    return report
