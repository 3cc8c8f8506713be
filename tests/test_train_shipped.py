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
from nslib.checkpoints import upgrade_recipe
from nslib.training import PROVENANCE, TrainConfig

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "train_shipped.py"


@pytest.mark.parametrize("name", MODELS)
def test_shipped_recipes_are_the_recipes_in_the_shipped_checkpoints(name):
    info = read_checkpoint(pretrained_path(name))
    stored = {k: v for k, v in upgrade_recipe(info["recipe"]).items() if k not in PROVENANCE}  # amp -> precision
    assert SHIPPED_RECIPES[name] == stored
    assert TrainConfig.from_dict(SHIPPED_RECIPES[name]).to_dict() == {**stored, "world_size": 1}
    assert (info["arch"], info["dataset"]) == (SHIPPED_ARCH, SHIPPED_DATASET)
    assert experiment_models.retrain_settings(name) == {"arch": SHIPPED_ARCH, "dataset": SHIPPED_DATASET,
                                                        **SHIPPED_RECIPES[name]}


def shipped_seeds():
    from nslib.checkpoints import pretrained_names
    from nslib.experiments.context import SHIPPED_SEEDS, seed_name

    shipped = set(pretrained_names())
    return [(name, seed) for name in MODELS for seed in SHIPPED_SEEDS[1:] if seed_name(name, seed) in shipped]


@pytest.mark.parametrize("name, seed", shipped_seeds())
def test_shipped_seeds_are_the_shipped_recipe_with_another_seed(name, seed):
    from nslib.experiments.context import seed_name

    info = read_checkpoint(pretrained_path(seed_name(name, seed)))
    stored = {k: v for k, v in upgrade_recipe(info["recipe"]).items() if k not in PROVENANCE}
    assert stored == {**SHIPPED_RECIPES[name], "seed": seed}
    assert info["recipe"]["command"] == f"python scripts/train_shipped.py {name} --seed {seed}"
    assert {"clean_acc", "pgd40_acc", "eval"} <= set(info["metrics"])


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


def test_script_trains_another_seed_and_reevaluates(tmp_path, monkeypatch):
    """--seed 1 saves <name>_seed1.pt with the recipe's seed changed; --metrics-only recomputes the
    metrics (AutoAttack and the worst case included) and keeps the weights, recipe and log."""
    import torch

    spec = importlib.util.spec_from_file_location("train_shipped", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setitem(SHIPPED_RECIPES, "mnist_standard", {**SHIPPED_RECIPES["mnist_standard"], "epochs": 1,
                                                            "max_batches": 2, "batch_size": 10})
    monkeypatch.setenv("NSLIB_THREADS", "1")
    common = ["--runs", str(tmp_path / "runs"), "--checkpoints", str(tmp_path / "ckpt"), "--n", "12"]
    script.main(["mnist_standard", "--seed", "1", "--autoattack", "quick", *common])
    model, info = load_pretrained("mnist_standard_seed1", directory=tmp_path / "ckpt")
    assert info["recipe"]["seed"] == 1 and info["metrics"]["n"] == 12
    assert info["metrics"]["worst_acc"] <= min(info["metrics"][k] for k in ("fgsm_acc", "pgd40_acc", "aa_acc"))
    assert "quick subset" in info["metrics"]["aa_version"]
    script.main(["mnist_standard", "--seed", "1", "--metrics-only", "--autoattack", "quick",
                 *common[2:], "--n", "8"])
    again, after = load_pretrained("mnist_standard_seed1", directory=tmp_path / "ckpt")  # manifest updated
    assert after["metrics"]["n"] == 8 and after["recipe"] == info["recipe"] and after["log"] == info["log"]
    assert after["metrics"]["train_seconds"] == info["metrics"]["train_seconds"]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_load_or_train_loads_the_shipped_model_else_trains_a_stand_in(device, capsys):
    """The notebooks' load-or-train: the shipped weights when shipped, a 2-epoch stand-in
    (quick) from the shipped recipe when not; an unknown name raises naming the valid ones."""
    import torch

    from nslib.checkpoints import load_pretrained

    model, info = experiment_models.load_or_train("mnist_standard", device=device)
    shipped, _ = load_pretrained("mnist_standard")
    assert not model.training and next(model.parameters()).device.type == device.type
    assert all(torch.equal(a.cpu(), b) for a, b in zip(model.state_dict().values(), shipped.state_dict().values()))
    assert info["metrics"]["clean_acc"] > 0.9 and "loaded the shipped checkpoint" in capsys.readouterr().out

    stand_in, info = experiment_models.load_or_train("mnist_standard", device=device, seed=7)  # not shipped
    assert "stand-in" in capsys.readouterr().out
    assert info["recipe"]["epochs"] == 2 and info["recipe"]["seed"] == 7 and len(info["log"]) == 2
    assert not stand_in.training
    with pytest.raises(ValueError, match="mnist_standard, mnist_pgd_at"):
        experiment_models.load_or_train("mnist_resnet")


def test_the_readmes_tables_are_the_shipped_checkpoints_metrics():
    """The numbers typed in README.md and data/checkpoints/README.md are those the shipped
    checkpoints carry (regenerate with `python scripts/train_shipped.py --tables`)."""
    spec = importlib.util.spec_from_file_location("train_shipped", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    per_checkpoint, per_recipe = script.tables()
    assert per_checkpoint.count("\n") == 1 + len(json.loads((ROOT / "data/checkpoints/manifest.json").read_text()))
    checkpoints_readme = (ROOT / "data" / "checkpoints" / "README.md").read_text()
    assert per_checkpoint in checkpoints_readme and per_recipe in checkpoints_readme, (
        "data/checkpoints/README.md is stale: paste `python scripts/train_shipped.py --tables`")
    assert per_recipe in (ROOT / "README.md").read_text(), (
        "README.md's results table is stale: paste `python scripts/train_shipped.py --tables`")
