"""AutoAttack through the authors' code: our cascade equals theirs, and the masking flags
fire on models built to mask gradients (and not on an honest one)."""
import pytest
import torch
from torch import nn

from nslib import data
from nslib.autoattack import VERSIONS, autoattack_robust, describe_version
from nslib.checkpoints import load_pretrained
from nslib.evaluation import masking_warnings, robustness_table, save_csv, spec_attack, stages_of

pyautoattack = pytest.importorskip("pyautoattack")
pytestmark = pytest.mark.usefixtures("one_thread")  # small batches: threads only add overhead


@pytest.fixture(scope="module")
def mnist_batch():
    return data.load("mnist5k", "test").tensors(24)


def shipped(name, device):
    model, _ = load_pretrained(name, map_location=device)
    return model.to(device).eval()


class SaturatedLogits(nn.Module):
    """Logits times 10^4: the softmax saturates, so cross-entropy gradients vanish (masking)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x) * 1e4


class QuantisedInput(nn.Module):
    """Input rounded to 4 grey levels first: torch.round has zero gradient everywhere, so every
    white-box attack is blind, while a black-box search still finds adversarial examples."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(torch.round(x * 3) / 3)


def test_cascade_matches_the_authors_run(mnist_batch, device):
    """Our stage-by-stage cascade gives exactly the robust set of the authors' own cascade."""
    from pyautoattack import AutoAttack

    model = shipped("mnist_pgd_at", device)
    x, y = (t.to(device) for t in mnist_batch)
    stages = autoattack_robust(model, x, y, eps=0.3, version="quick", seed=3)
    assert list(stages) == list(VERSIONS["quick"])
    theirs = AutoAttack(model, eps=0.3, norm="Linf", version="standard", seed=3, device=device)
    theirs.verbose = False
    theirs.apgd_targeted.n_target_classes = 3
    theirs.attacks_to_run = ["apgd-ce", "apgd-t"]
    x_adv, _ = theirs.run_standard_evaluation(x, y, batch_size=500)
    with torch.no_grad():
        robust_theirs = (model(x_adv).argmax(1) == y).cpu()
    assert torch.equal(stages["apgd-t"], robust_theirs)
    assert (stages["apgd-t"] <= stages["apgd-ce"]).all()  # a cascade only removes examples


def test_autoattack_is_no_weaker_than_pgd_on_an_honest_model(mnist_batch, device):
    model = shipped("mnist_pgd_at", device)
    x, y = (t.to(device) for t in mnist_batch)
    rows = robustness_table(model, (x, y), {
        "clean": {"attack": "clean"},
        "pgd40": {"attack": "pgd", "eps": 0.3, "alpha": 0.01, "steps": 40},
        "aa": {"attack": "autoattack", "eps": 0.3, "version": "quick"}})
    acc = {r["attack"]: r for r in rows}
    assert acc["aa"]["accuracy"] <= acc["pgd40"]["accuracy"] + 1 / len(y)
    assert acc["aa"]["accuracy"] < acc["clean"]["accuracy"]  # it attacks at all
    assert acc["aa"]["stages"]["apgd-t"] == acc["aa"]["accuracy"]
    assert not masking_warnings(rows)
    assert acc["aa"]["robust"].shape == (len(y),) and acc["aa"]["robust"].dtype == torch.bool


def test_flag_when_pgd_sits_far_above_autoattack(mnist_batch, device):
    """Saturated softmax: PGD on cross-entropy sees no gradient, APGD-T's DLR loss (scale-free) does."""
    model = SaturatedLogits(shipped("mnist_standard", device)).eval()
    x, y = (t.to(device) for t in mnist_batch)
    rows = robustness_table(model, (x, y), {
        "pgd40": {"attack": "pgd", "eps": 0.3, "alpha": 0.01, "steps": 40},
        "aa": {"attack": "autoattack", "eps": 0.3, "version": "quick"}})
    pgd_row, aa_row = rows
    assert pgd_row["accuracy"] - aa_row["accuracy"] > 0.10
    assert any("above aa" in flag for flag in pgd_row["flags"]), pgd_row["flags"]
    assert not aa_row["flags"]


def test_flag_when_square_beats_the_white_box_attacks(device):
    """Zero gradients: Square's random search breaks what APGD and FAB cannot see."""
    model = QuantisedInput(shipped("mnist_standard", device)).eval()
    x, y = (t.to(device) for t in data.load("mnist5k", "test").tensors(8))
    rows = robustness_table(model, (x, y), {"aa": {"attack": "autoattack", "eps": 0.3, "version": "standard"}})
    stages = rows[0]["stages"]
    assert list(stages) == list(VERSIONS["standard"])
    assert stages["fab-t"] - stages["square"] > 0.01
    assert any("black-box square" in flag for flag in rows[0]["flags"]), rows[0]["flags"]


def test_flags_survive_a_csv_round_trip(tmp_path):
    import csv

    from nslib.evaluation import flag_masking

    rows = [{"model": "m", "attack": "aa", "kind": "autoattack", "norm": "Linf", "eps": 0.3, "accuracy": 0.2,
             "n": 100, "stages": {"apgd-ce": 0.5, "apgd-t": 0.4, "fab-t": 0.4, "square": 0.2}, "flags": []},
            {"model": "m", "attack": "pgd40", "kind": "pgd", "norm": "Linf", "eps": 0.3, "steps": 40, "alpha": 0.01,
             "restarts": 1, "loss": "ce", "accuracy": 0.6, "n": 100, "flags": []}]
    save_csv(rows, tmp_path / "t.csv")
    back = list(csv.DictReader(open(tmp_path / "t.csv")))
    assert stages_of(back[0]) == rows[0]["stages"]
    for row in back:
        row.update(accuracy=float(row["accuracy"]), eps=float(row["eps"]), flags=[])
    flagged = flag_masking([{**r, "steps": 40, "restarts": 1} for r in back])
    assert any("black-box square" in f for f in flagged[0]["flags"])
    assert any("above aa" in f for f in flagged[1]["flags"])


@pytest.mark.parametrize("spec, message", [
    ({"attack": "autoattack", "eps": 0.3, "version": "plus"}, "unknown AutoAttack version 'plus'"),
    ({"attack": "autoattack", "eps": 0.3, "norm": "Linfinity"}, "unknown norm 'Linfinity'"),
    ({"attack": "autoattack", "version": "quick"}, "needs 'eps'"),
])
def test_bad_autoattack_specs_raise(spec, message):
    with pytest.raises(ValueError, match=message):
        spec_attack(nn.Identity(), spec)


def test_quick_version_is_labelled():
    assert "quick subset" in describe_version("quick") and "3 target classes" in describe_version("quick")
    assert describe_version("standard").endswith("(APGD-CE + APGD-T + FAB-T + SQUARE)")
