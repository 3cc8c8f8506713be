"""The shipped models' recipes are written once (nslib.experiments.models.SHIPPED_RECIPES), agree
with the recipes stored in the shipped checkpoints, and scripts/train_shipped.py trains them with
the function `reproduce --full` uses (nslib.experiments.models.retrain)."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nslib.checkpoints import load_pretrained, pretrained_path, read_checkpoint
from nslib.experiments import models as experiment_models
from nslib.experiments.context import MODELS
from nslib.experiments.models import SHIPPED_ARCH, SHIPPED_DATASET, SHIPPED_RECIPES
from nslib.training import PROVENANCE, TrainConfig

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "train_shipped.py"


@pytest.mark.parametrize("name", MODELS)
def test_shipped_recipes_are_the_recipes_in_the_shipped_checkpoints(name):
    info = read_checkpoint(pretrained_path(name))
    stored = {k: v for k, v in info["recipe"].items() if k not in PROVENANCE}
    assert SHIPPED_RECIPES[name] == stored
    assert TrainConfig.from_dict(SHIPPED_RECIPES[name]).to_dict() == {**stored, "world_size": 1}
    assert (info["arch"], info["dataset"]) == (SHIPPED_ARCH, SHIPPED_DATASET)
    assert experiment_models.retrain_settings(name) == {"arch": SHIPPED_ARCH, "dataset": SHIPPED_DATASET,
                                                        **SHIPPED_RECIPES[name]}


def test_script_help_says_how_to_run_it():
    env = dict(os.environ, PYTHONPATH=str(ROOT), NSLIB_THREADS="1")
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, env=env,
                         check=True).stdout
    assert "python scripts/train_shipped.py mnist_pgd_at" in out and "NSLIB_THREADS" in out


def test_script_trains_with_retrain_and_records_the_manifest(tmp_path, monkeypatch):
    """A tiny budget: one model into a temporary checkpoint folder, through the script's main()."""
    spec = importlib.util.spec_from_file_location("train_shipped", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.retrain is experiment_models.retrain     # the function `reproduce --full` trains with
    monkeypatch.setitem(SHIPPED_RECIPES, "mnist_standard", {**SHIPPED_RECIPES["mnist_standard"], "epochs": 1,
                                                            "max_batches": 2, "batch_size": 10})
    monkeypatch.setenv("NSLIB_THREADS", "1")
    script.main(["mnist_standard", "--runs", str(tmp_path / "runs"), "--checkpoints", str(tmp_path / "ckpt"),
                 "--n", "20"])
    model, info = load_pretrained("mnist_standard", directory=tmp_path / "ckpt")  # sha256 in the manifest
    assert info["recipe"]["command"] == "python scripts/train_shipped.py mnist_standard"
    assert info["recipe"]["max_batches"] == 2 and info["metrics"]["train_threads"] == 1
    assert set(info["metrics"]) >= {"clean_acc", "fgsm_acc", "pgd40_acc", "eval", "train_seconds"}
    assert "(20)" in info["metrics"]["eval"]
    summary = [json.loads(line) for line in (tmp_path / "runs" / "summary.jsonl").read_text().splitlines()]
    assert [s["name"] for s in summary] == ["mnist_standard"]
