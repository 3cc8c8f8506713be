"""Settings as data (nslib.settings): each setting is consistent with its model, the MNIST one
is the shipped models' recipes, and `train --setting` trains a setting's recipe as written."""
import dataclasses
from pathlib import Path

import pytest
import torch

from fakedata import write_cifar
from nslib import data, settings
from nslib.checkpoints import read_checkpoint
from nslib.cli import main
from nslib.experiments.models import SHIPPED_RECIPES
from nslib.hooks import activations
from nslib.models import build
from nslib.training import TrainConfig


@pytest.mark.parametrize("name", list(settings.REGISTRY))
def test_a_setting_fits_its_model_and_its_recipes_are_valid(name):
    setting = settings.get(name)
    model = build(setting.arch, dataset=setting.dataset).eval()
    info = data.dataset_info(setting.dataset)
    channels, size = info.channels, info.image_size
    layers = list(dict.fromkeys([*setting.layers, *setting.sns_layers, *setting.ablation_layers,
                                 *setting.distribution_layers, setting.feature_layer]))
    outputs = activations(model, torch.rand(2, channels, size, size), layers)  # unknown names raise
    assert outputs[setting.feature_layer].dim() == 4 and outputs[setting.feature_layer].shape[-1] >= 8
    assert set(setting.sns_layers) <= set(setting.layers) and set(setting.ablation_layers) <= set(setting.layers)
    assert set(setting.distribution_layers) <= set(setting.layers) and len(setting.distribution_layers) == 4
    assert TrainConfig.from_dict({"recipe": "sns", **{k: v for k, v in setting.sweep.items()
                                                      if k not in ("train_n", "test_n")}}).eps == setting.eps
    for recipe in settings.RECIPE_NAMES:
        config = TrainConfig.from_dict(setting.recipe(recipe))        # strict: a misspelt key raises
        assert config.recipe == recipe and config.eps == pytest.approx(setting.eps)
    assert setting.recipe("sns")["layers"] == list(setting.sns_layers)
    assert setting.model_names == tuple(f"{setting.prefix}_{r}" for r in settings.RECIPE_NAMES)


def test_the_mnist_setting_is_the_shipped_models_and_names_are_checked():
    assert settings.DEFAULT.name == "mnist-smallcnn"
    assert {settings.DEFAULT.model_name(r): settings.DEFAULT.recipe(r) for r in settings.RECIPE_NAMES} \
        == SHIPPED_RECIPES
    with pytest.raises(ValueError, match=r"unknown setting 'cifar100'; choose one of \['mnist-smallcnn', "):
        settings.get("cifar100")
    with pytest.raises(ValueError, match="lacks the recipes"):
        settings.Setting("x", "mnist5k", "smallcnn", 0.3, {}, ("fc1",), ("fc1",), ("fc1",), "conv1", ("fc1",), "x", {})
    with pytest.raises(ValueError, match="write the layers once"):
        recipes = {r: settings.DEFAULT.recipe(r) for r in settings.RECIPE_NAMES}
        settings.Setting("x", "mnist5k", "smallcnn", 0.3, recipes, ("fc1",), ("fc1",), ("fc1",), "conv1", ("fc1",), "x", {})
    with pytest.raises(ValueError, match=r"has eps 0.1, but .*'pgd_at': 0.3.* train at another"):
        dataclasses.replace(settings.DEFAULT, name="fashion", eps=0.1, sweep={**settings.DEFAULT.sweep, "eps": 0.1})
    assert settings.get("fashion-mnist-smallcnn").recipe("trades")["eps"] == 0.1 == data.dataset_info("fashion-mnist").eps


def test_train_with_a_setting_uses_its_recipe_and_explicit_flags_win(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as cifar

    write_cifar(tmp_path / "data", n=16)
    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())  # fake files
    monkeypatch.setenv("NSLIB_DATA_ROOT", str(tmp_path / "data"))
    torch.set_num_threads(1)
    out = tmp_path / "run"
    assert main(["train", "--setting", "cifar10-resnet18", "--recipe", "sns", "--epochs", "1", "--batch-size", "8",
                 "--steps", "1", "--max-batches", "1", "--eval-n", "4", "--eval-steps", "1", "--lr", "0.05",
                 "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    info = read_checkpoint(out / "model.pt")
    recipe = info["recipe"]
    assert (info["arch"], info["dataset"]) == ("resnet18", "cifar10")
    assert recipe["optimizer"] == "sgd" and recipe["weight_decay"] == 5e-4 and recipe["schedule"] == "multistep"
    assert recipe["eps"] == pytest.approx(8 / 255) and recipe["alpha"] == pytest.approx(2 / 255)
    assert recipe["layers"] == ["layer3", "layer4"] and recipe["lam"] == 0.01
    assert recipe["lr"] == 0.05 and recipe["batch_size"] == 8      # given on the command line: they win


def test_train_with_a_cifar10_setting_and_no_files_stops_at_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NSLIB_DATA_ROOT", str(tmp_path / "nothing"))
    monkeypatch.delenv("NSLIB_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--setting", "cifar10-vgg16", "--recipe", "pgd_at", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1
    assert "cifar-10-batches-py" in err[0] and "python -m nslib download cifar10" in err[0]
    assert not (tmp_path / "run").exists()


def test_a_run_in_another_setting_trains_its_recipes_in_the_runs_precision(tmp_path):
    from nslib.experiments.context import Context, short_name
    from nslib.experiments.models import train_settings

    ctx = Context(tmp_path, quick=True, setting=settings.get("cifar10-vgg16"), precision="bf16",
                  compile="reduce-overhead", device="cpu")
    assert not ctx.shipped and ctx.models[1] == "cifar10_vgg16_pgd_at" and short_name(ctx.models[1]) == "pgd_at"
    assert ctx.seeds_of(ctx.models[0]) == [0, 1, 2]             # no shipped seeds: every seed is trained
    run = train_settings(ctx, "cifar10_vgg16_sns")
    assert run["precision"] == "bf16" and run["epochs"] == settings.get("cifar10-vgg16").quick_epochs
    assert run["compile"] == "reduce-overhead"
    assert run["layers"] == run["eval_layers"] == ["relu4_3", "relu5_3"] and run["augment"] is True
    full = train_settings(Context(tmp_path, quick=False, setting=settings.get("cifar10-vgg16"), device="cpu"),
                            "cifar10_vgg16_trades")
    assert full["epochs"] == 30 and full["beta"] == 6.0 and full["precision"] == "fp32" and full["compile"] is False
    with pytest.raises(ValueError, match="unknown precision"):
        Context(tmp_path, precision="fp64")
    with pytest.raises(ValueError, match="unknown compile mode 'fast'"):
        Context(tmp_path, compile="fast")
