"""One TrainConfig for train(), the CLI and checkpoints; unknown settings and recipe options are errors."""
import inspect

import pytest
import torch

import nslib.data
from nslib.checkpoints import pretrained_names, pretrained_path, read_checkpoint, upgrade_recipe
from nslib.cli import _recipe_flags, build_parser, run_train, train_config
from nslib.data import load
from nslib.models import build
from nslib.recipes import RECIPES, recipe_options, standard_loss
from nslib.runstate import check_resume
from nslib.training import SETTINGS, TrainConfig, train

SNS_OPTIONS = "lam, layers, k, max_k, topk_every, momentum, ce_on, fuse"
#: The keys (in order) every checkpoint's recipe dict has before the recipe options (checkpoints
#: written before precision existed have ``amp`` in its place: ``upgrade_recipe``).
CHECKPOINT_KEYS = ["recipe", "epochs", "lr", "optimizer", "weight_decay", "batch_size", "schedule", "eps",
                   "alpha", "steps", "eps_warmup_epochs", "seed", "precision", "compile", "world_size",
                   "max_batches"]
TINY = dict(batch_size=50, steps=1, eps=0.3, max_batches=1, progress=False)  # tests that train add device=


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_set():
    return load("mnist5k", "train", limit=100)


def _model():
    torch.manual_seed(0)
    return build("smallcnn", dataset="mnist5k")


def _args(*argv):
    return build_parser().parse_args(["train", *argv, "--out", "unused"])


# ----------------------------------------------------------------------------- train()

def test_a_misspelt_option_raises_before_any_training(tiny_set, tmp_path):
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as err:
        train(model, tiny_set, "sns", 1, lamda=0.1, out=tmp_path / "run", **TINY)
    assert str(err.value).startswith(f"unknown option 'lamda' for recipe 'sns'; options: {SNS_OPTIONS}.")
    assert "Did you mean 'lam'?" in str(err.value)
    assert not (tmp_path / "run").exists()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_an_option_of_another_recipe_raises_and_names_its_recipe(tiny_set):
    with pytest.raises(ValueError, match=r"recipe 'pgd_at' takes no option 'beta' \(an option of 'trades'\); "
                                         r"options of 'pgd_at': none"):
        train(_model(), tiny_set, "pgd_at", 1, beta=3.0, **TINY)
    with pytest.raises(ValueError, match=f"recipe 'sns' takes no option 'beta'.*options of 'sns': {SNS_OPTIONS}"):
        train(_model(), tiny_set, "sns", 1, beta=3.0, **TINY)
    with pytest.raises(ValueError, match="recipe 'standard' takes no option 'lam'"):
        train(_model(), tiny_set, lam=0.1, **TINY)


def test_an_unknown_setting_names_the_valid_settings(tiny_set):
    with pytest.raises(ValueError, match="unknown option 'evaln' for recipe 'standard'; options: none") as err:
        train(_model(), tiny_set, "standard", 1, evaln=10, **TINY)
    assert "Did you mean 'eval_n'?" in str(err.value)
    assert "Training settings: " + ", ".join(SETTINGS) in str(err.value)
    with pytest.raises(ValueError, match="unknown recipe 'madry'"):
        train(_model(), tiny_set, "madry", 1, **TINY)
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        train(_model(), tiny_set, config={"recipe": "sns"})


def test_recipes_take_no_catch_all_keywords():
    for name, loss in RECIPES.items():
        kinds = [p.kind for p in inspect.signature(loss).parameters.values()]
        assert inspect.Parameter.VAR_KEYWORD not in kinds, name
    assert ", ".join(recipe_options("sns")) == SNS_OPTIONS
    assert recipe_options("trades") == {"beta": 6.0} and recipe_options("pgd_at") == {}
    x, y = load("mnist5k", "test").tensors(4)
    with pytest.raises(TypeError, match="lamda"):
        standard_loss(_model(), x, y, lamda=0.1)


def test_config_and_keywords_train_the_same_weights(tiny_set, device):
    by_keywords, by_config = _model(), _model()
    train(by_keywords, tiny_set, "sns", 1, lam=0.1, k=2, device=device, **TINY)
    settings = {k: v for k, v in TINY.items() if k != "progress"}
    config = TrainConfig.from_dict({"recipe": "sns", "epochs": 1, "lam": 0.1, "k": 2, **settings})
    train(by_config, tiny_set, config=config, progress=False, device=device)
    a, b = by_keywords.state_dict(), by_config.state_dict()
    assert all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def test_checkpoints_keep_the_flat_recipe_dict(tiny_set, tmp_path, device):
    train(_model(), tiny_set, "sns", 1, out=tmp_path, lam=0.1, layers=("conv4", "fc1"), device=device, **TINY)
    recipe = read_checkpoint(tmp_path / "model.pt")["recipe"]
    assert list(recipe) == CHECKPOINT_KEYS + ["lam", "layers"]
    assert recipe["layers"] == ["conv4", "fc1"] and recipe["alpha"] == pytest.approx(0.75)
    last = torch.load(tmp_path / "last.pt", map_location="cpu", weights_only=True)
    assert last["config"] == recipe


# ----------------------------------------------------------------------------- TrainConfig

@pytest.mark.parametrize("name", ["mnist_standard", "mnist_pgd_at", "mnist_trades", "mnist_sns"])
def test_a_shipped_checkpoints_recipe_replays(name):
    assert name in pretrained_names()
    recipe = upgrade_recipe(read_checkpoint(pretrained_path(name))["recipe"])  # shipped with amp=False
    config = TrainConfig.from_dict(recipe)
    assert config.recipe == name.removeprefix("mnist_")
    expected = {k: v for k, v in recipe.items() if k != "command"}
    assert config.to_dict(world_size=recipe["world_size"]) == expected
    assert list(config.to_dict()) == list(expected)


def test_from_dict_is_strict_but_accepts_provenance():
    with pytest.raises(ValueError, match="unknown option 'lr_decay' for recipe 'pgd_at'.*Training settings: recipe, "
                                         "epochs, lr"):
        TrainConfig.from_dict({"recipe": "pgd_at", "lr_decay": 0.1})
    with pytest.raises(ValueError, match="unknown option 'lamda' for recipe 'sns'"):
        TrainConfig.from_dict({"recipe": "sns", "lamda": 0.1})
    config = TrainConfig.from_dict({"recipe": "trades", "beta": 1.0, "world_size": 2, "command": "python -m ..."})
    assert config.options == {"beta": 1.0} and config.epochs == TrainConfig().epochs
    with pytest.raises(TypeError, match="dict"):
        TrainConfig.from_dict([("recipe", "sns")])


def test_config_checks_its_values_and_replace_keeps_options():
    for bad, match in [({"epochs": 0}, "epochs must be a positive int"), ({"optimizer": "rmsprop"}, "unknown optimizer"),
                       ({"schedule": "linear"}, "unknown schedule"), ({"recipe": "madry"}, "unknown recipe")]:
        with pytest.raises(ValueError, match=match):
            TrainConfig(**bad)
    config = TrainConfig(recipe="sns", options={"lam": 0.1, "layers": ("fc1",)})
    assert config.options == {"lam": 0.1, "layers": ["fc1"]}
    changed = config.replace(lr=0.1, k=3)
    assert (changed.lr, changed.options) == (0.1, {"lam": 0.1, "layers": ["fc1"], "k": 3})
    assert changed.options_with_defaults()["max_k"] == inspect.signature(RECIPES["sns"]).parameters["max_k"].default
    with pytest.raises(ValueError, match="recipe 'pgd_at' takes no option 'lam'"):
        config.replace(recipe="pgd_at")


def test_resume_counts_a_missing_option_as_its_default(tmp_path):
    saved = TrainConfig(recipe="sns", options={"lam": 0.1}).to_dict()
    check_resume(saved, {**saved, "momentum": 0.9, "ce_on": "adv"}, tmp_path / "last.pt")
    with pytest.raises(ValueError, match="other settings.*momentum"):
        check_resume(saved, {**saved, "momentum": 0.5}, tmp_path / "last.pt")


def test_a_run_resumes_when_the_defaults_are_spelt_out(tiny_set, tmp_path, capsys, device):
    train(_model(), tiny_set, "sns", 1, out=tmp_path, lam=0.1, device=device, **TINY)
    spelt_out = {**recipe_options("sns"), "lam": 0.1}
    del spelt_out["layers"]  # None: the model's default layers
    log = train(_model(), tiny_set, "sns", 2, out=tmp_path, device=device, **spelt_out, **TINY)
    assert [r["epoch"] for r in log] == [1, 2]
    assert "resuming from epoch 1" in capsys.readouterr().out


# ----------------------------------------------------------------------------- CLI

def test_cli_defaults_are_the_configs():
    assert train_config(_args()) == TrainConfig()
    sns = {k: v for k, v in recipe_options("sns").items() if v is not None}
    assert train_config(_args("--recipe", "sns")) == TrainConfig(recipe="sns", options=sns)
    config = train_config(_args("--recipe", "trades", "--beta", "2", "--epochs", "3", "--eval-n", "7"))
    assert (config.options, config.epochs, config.eval_n) == ({"beta": 2.0}, 3, 7)
    every_option = {name for recipe in RECIPES for name in recipe_options(recipe)}
    assert set(_recipe_flags()) == every_option  # each recipe option can be set from the command line


def test_cli_help_shows_every_default(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split()).split("data and model:", 1)[1]  # past the usage line
    defaults = TrainConfig()
    for flag, value in [("--epochs", defaults.epochs), ("--lr", defaults.lr), ("--steps", defaults.steps),
                        ("--eval-n", defaults.eval_n), ("--beta", 6.0), ("--lambda", 0.01), ("--max-k", 10),
                        ("--momentum", 0.9), ("--ce-on {adv,clean,both} sns: cross-entropy", "adv")]:
        assert f"{flag} " in text and f"Default: {value}" in text.split(flag, 1)[1][:200], flag


@pytest.mark.parametrize("argv, message", [
    (["--recipe", "sns", "--beta", "3"], r"--beta is an option of --recipe trades, not of --recipe sns "
                                         r"\(its options: --lambda --layers --k --max-k --topk-every --momentum --ce-on --fuse\)"),
    (["--recipe", "pgd_at", "--layers", "conv3"], r"--layers is an option of --recipe sns, not of --recipe pgd_at "
                                                  r"\(its options: none\)"),
    (["--lambda", "0.1"], "--lambda is an option of --recipe sns, not of --recipe standard"),
])
def test_cli_rejects_an_option_of_another_recipe_before_loading_data(argv, message, monkeypatch):
    def no_data(*args, **kwargs):
        raise AssertionError("data was loaded before the options were checked")

    monkeypatch.setattr(nslib.data, "load", no_data)
    with pytest.raises(ValueError, match=message):
        run_train(_args(*argv))


def test_a_checkpoint_written_with_amp_reads_as_precision_and_resumes(tmp_path):
    legacy = {**TrainConfig(recipe="pgd_at").to_dict(), "amp": True}
    del legacy["precision"], legacy["compile"]
    assert TrainConfig.from_dict(legacy).precision == "fp16"
    assert TrainConfig.from_dict({**legacy, "amp": False}).precision == "fp32"
    check_resume({**legacy, "amp": False}, TrainConfig(recipe="pgd_at").to_dict(), tmp_path / "last.pt")
    with pytest.raises(ValueError, match="other settings.*precision"):
        check_resume(legacy, TrainConfig(recipe="pgd_at").to_dict(), tmp_path / "last.pt")
    with pytest.raises(ValueError, match="both 'amp' and 'precision'"):
        TrainConfig.from_dict({**legacy, "precision": "bf16"})
    with pytest.raises(ValueError, match=r"unknown precision 'bf32'.*'fp32', 'bf16', 'fp16'"):
        TrainConfig(precision="bf32")
