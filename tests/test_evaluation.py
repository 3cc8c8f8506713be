"""Evaluation: accuracy by hand count, table structure, gradient-masking flags."""
import csv

import pytest
import torch
from torch import nn

from nslib.data import load, make_loader
from nslib.attacks import FGSM, PGD
from nslib.evaluation import (CSV_COLUMNS, accuracy, compare_worst_case, default_suite, describe_spec, flag_masking,
                              format_table, headline_metrics,
                              masking_warnings, robust_accuracy_curve, robustness_table, save_csv)
from nslib.models import build
from nslib.training import train


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: threads only add overhead


class Binarize(nn.Module):
    """``round(x)``: a step function, so every input gradient is exactly 0 (masked)."""

    def forward(self, x):
        return torch.round(x)


@pytest.fixture(scope="module")
def trained(device):
    torch.manual_seed(0)
    model = build("smallcnn", dataset="mnist5k")
    train(model, load("mnist5k", "train", limit=1000), "standard", 2, progress=False, device=device)
    return model


@pytest.fixture(scope="module")
def test_xy(device):
    return tuple(t.to(device) for t in load("mnist5k", "test").tensors(100))


SUITE = {
    "clean": {"attack": "clean"},
    "fgsm": {"attack": "fgsm", "eps": 0.3},
    "pgd5": {"attack": "pgd", "eps": 0.3, "alpha": 0.15, "steps": 5},
    "pgd10": {"attack": "pgd", "eps": 0.3, "alpha": 0.075, "steps": 10},
    "pgd10@0.6": {"attack": "pgd", "eps": 0.6, "alpha": 0.15, "steps": 10},
}


def test_accuracy_matches_hand_count(device):
    model = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(3))          # predicts argmax of the input
    model.to(device)
    x = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 0, 1]], device=device)
    y = torch.tensor([0, 1, 0, 2, 2], device=device)  # right: rows 0, 1, 4 -> 3 / 5
    assert accuracy(model, x, y) == 3 / 5
    assert accuracy(model, x, y, batch_size=2) == 3 / 5
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=2)
    assert accuracy(model, loader) == 3 / 5
    with pytest.raises(ValueError, match="labels"):
        accuracy(model, x)
    with pytest.raises(ValueError, match="shape"):
        accuracy(model, x, y[:3])


def test_accuracy_restores_mode_and_takes_a_dataset_loader(trained):
    trained.train()
    acc = accuracy(trained, make_loader(load("mnist5k", "test", limit=100), 50))
    assert trained.training and 0.5 < acc <= 1
    trained.eval()


def test_table_structure_and_normal_model_not_flagged(trained, test_xy, tmp_path):
    rows = robustness_table({"std": trained}, test_xy, SUITE)
    assert [r["attack"] for r in rows] == list(SUITE)
    assert all(set(CSV_COLUMNS) <= set(r) for r in rows)
    acc = {r["attack"]: r["accuracy"] for r in rows}
    assert acc["clean"] == accuracy(trained, *test_xy)
    assert acc["clean"] >= acc["fgsm"] >= acc["pgd10"] - 0.01
    assert acc["pgd10@0.6"] < 0.05
    assert masking_warnings(rows) == []
    text = format_table(rows)
    assert text.splitlines()[0].split() == ["model", *SUITE]
    assert text.splitlines()[1].startswith("std")
    save_csv(rows, tmp_path / "t.csv")
    with open(tmp_path / "t.csv") as fh:
        back = list(csv.DictReader(fh))
    assert [r["attack"] for r in back] == list(SUITE) and float(back[0]["accuracy"]) == acc["clean"]


def test_gradient_masked_model_is_flagged(trained, test_xy):
    masked = nn.Sequential(Binarize(), trained)
    rows = robustness_table({"std": trained, "masked": masked}, test_xy, SUITE)
    flagged = {r["model"] for r in rows if r["flags"]}
    assert flagged == {"masked"}
    fgsm = next(r for r in rows if r["model"] == "masked" and r["attack"] == "fgsm")
    clean = next(r for r in rows if r["model"] == "masked" and r["attack"] == "clean")
    assert fgsm["accuracy"] == clean["accuracy"]  # zero gradient: FGSM cannot move
    assert any("large eps" in w for w in masking_warnings(rows))
    assert "*" in format_table(rows).splitlines()[2]


def _row(attack, kind, accuracy, eps=0.3, steps=None, restarts=None, loss=None, alpha=None):
    return {"model": "m", "attack": attack, "kind": kind, "eps": eps, "steps": steps, "alpha": alpha,
            "restarts": restarts, "loss": loss, "accuracy": accuracy, "n": 100, "flags": []}


def test_flag_rules_on_hand_made_rows():
    rows = flag_masking([
        _row("clean", "clean", 0.95, eps=0.0),
        _row("fgsm", "fgsm", 0.40, steps=1),
        _row("pgd10", "pgd", 0.50, steps=10, restarts=1, loss="ce"),     # > FGSM
        _row("pgd40", "pgd", 0.30, steps=40, restarts=1, loss="ce"),
        _row("pgd100", "pgd", 0.35, steps=100, restarts=1, loss="ce"),   # > pgd40
        _row("pgd40x5", "pgd", 0.305, steps=40, restarts=5, loss="ce"),  # within tolerance
        _row("pgd40_cw", "pgd", 0.31, steps=40, restarts=1, loss="cw"),  # other loss: not compared
        _row("big", "pgd", 0.20, eps=0.6, steps=40, restarts=1, loss="ce"),  # >= 5 % at 2 eps
    ])
    flags = {r["attack"]: r["flags"] for r in rows}
    assert flags["clean"] == [] and flags["fgsm"] == [] and flags["pgd40"] == []
    assert flags["pgd40x5"] == [] and flags["pgd40_cw"] == []
    assert any("FGSM" in f for f in flags["pgd10"])
    assert any("pgd40" in f for f in flags["pgd100"])
    assert any("large eps" in f for f in flags["big"])


def test_more_steps_are_compared_only_at_the_same_step_size():
    rows = flag_masking([
        _row("pgd10", "pgd", 0.50, steps=10, restarts=1, loss="ce", alpha=0.075),
        _row("pgd40", "pgd", 0.56, steps=40, restarts=1, loss="ce", alpha=0.01),   # smaller step: not compared
        _row("pgd100", "pgd", 0.60, steps=100, restarts=1, loss="ce", alpha=0.01),  # > pgd40, same step
    ])
    flags = {r["attack"]: r["flags"] for r in rows}
    assert flags["pgd40"] == []
    assert len(flags["pgd100"]) == 1 and "pgd40" in flags["pgd100"][0]


def test_headline_metrics_are_clean_fgsm_seeded_pgd40_and_the_per_example_worst_case(trained, test_xy):
    x, y = test_xy
    torch.manual_seed(3)
    fgsm_ok = trained(FGSM(trained, eps=0.2)(x, y)).argmax(1) == y
    torch.manual_seed(3)
    pgd40 = PGD(trained, eps=0.2, alpha=0.2 / 30, steps=40)(x, y)       # the same seed, step eps/30
    clean_ok, pgd_ok = trained(x).argmax(1) == y, trained(pgd40).argmax(1) == y
    expected = {"clean_acc": accuracy(trained, x, y), "fgsm_acc": (clean_ok & fgsm_ok).float().mean().item(),
                "pgd40_acc": (clean_ok & pgd_ok).float().mean().item(),
                "worst_acc": (clean_ok & fgsm_ok & pgd_ok).float().mean().item(), "n": len(y), "eps": 0.2}
    got = headline_metrics(trained, x, y, eps=0.2, seed=3, autoattack=None)
    assert got == pytest.approx(expected)
    assert expected["worst_acc"] <= min(expected["fgsm_acc"], expected["pgd40_acc"])
    assert expected["pgd40_acc"] < expected["clean_acc"]


def test_compare_worst_case_on_hand_made_rows():
    rows = [{"model": m, "attack": a, "accuracy": v} for m, a, v in [
        ("pgd_at", "fgsm", 0.95), ("pgd_at", "pgd40", 0.90), ("pgd_at", "cw_l2", 0.10),
        ("sns", "fgsm", 0.96), ("sns", "pgd40", 0.94), ("sns", "cw_l2", 0.05)]]
    # noise = 2 sqrt(2 * 0.9 * 0.1 / n): 0.06 at n = 200, 0.024 at n = 1250
    wide = compare_worst_case(rows, "sns", "pgd_at", ["fgsm", "pgd40"], 200)
    assert wide["worst"] == {"pgd_at": 0.90, "sns": 0.94}            # cw_l2 is not among the attacks
    assert wide["difference"] == pytest.approx(0.04) and wide["noise"] == pytest.approx(0.06)
    assert wide["verdict"] == "matched"
    assert compare_worst_case(rows, "sns", "pgd_at", ["fgsm", "pgd40"], 1250)["verdict"] == "beat"
    assert compare_worst_case(rows, "pgd_at", "sns", ["fgsm", "pgd40"], 5000)["verdict"] == "fell behind"


def test_curve_starts_at_clean_and_falls(trained, test_xy):
    curve = robust_accuracy_curve(trained, *test_xy, [0, 0.1, 0.3], steps=5)
    assert curve[0] == accuracy(trained, *test_xy)
    assert curve[0] >= curve[1] >= curve[2]
    with pytest.raises(ValueError, match="unknown attack"):
        robust_accuracy_curve(trained, *test_xy, [0.1], attack="nope")


def test_default_suite_has_the_standard_attacks():
    suite = default_suite(0.3)
    assert {"clean", "fgsm", "pgd10", "pgd40", "pgd100", "pgd40x5", "pgd40_cw", "mim", "pgd100_l2", "cw_l2",
            "pgd40@0.6"} <= set(suite)
    assert "autoattack" not in suite and "autoattack_quick" not in suite   # only when asked for
    assert suite["pgd40"]["alpha"] == pytest.approx(0.01)
    assert default_suite(0.3, autoattack="standard")["autoattack"] == {
        "attack": "autoattack", "eps": 0.3, "norm": "Linf", "version": "standard"}
    assert default_suite(8 / 255, autoattack="quick")["autoattack_quick"]["version"] == "quick"
    with pytest.raises(ValueError, match="autoattack takes a version name"):
        default_suite(0.3, autoattack=False)
    with pytest.raises(ValueError, match="unknown AutoAttack version 'plus'"):
        default_suite(0.3, autoattack="plus")


# --------------------------------------------------------------------------- strict specs


class PickInput(nn.Module):
    """Logits = the first 3 inputs: predicts the arg-max of the input (hand-checkable)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.scale * x.flatten(1)[:, :3]


@pytest.mark.parametrize("spec, bad", [
    ({"attack": "pgd", "eps": 0.3, "nrom": "L2"}, "nrom"),              # misspelt norm
    ({"attack": "mim", "eps": 0.3, "restarts": 3}, "restarts"),         # MIM has no random start
    ({"attack": "fgsm", "eps": 0.3, "steps": 10}, "steps"),             # FGSM has one step
    ({"attack": "cw", "c": 1.0, "eps": 0.3}, "eps"),                     # C&W's budget is l2_max
    ({"attack": "autoattack", "eps": 0.3, "versoin": "rand"}, "versoin"),
])
def test_unknown_spec_key_raises_before_any_attack_and_lists_valid_keys(trained, test_xy, spec, bad):
    calls = []
    suite = {"first": lambda model: calls.append(1) or (lambda x, y: x), "bad": spec}
    with pytest.raises(ValueError, match=f"unknown key '{bad}'.*valid keys: attack, ") as error:
        robustness_table(trained, test_xy, suite)
    assert calls == []                                   # nothing ran before the check
    valid = str(error.value).split("valid keys: ")[1]
    assert bad not in valid.replace(".", ",").split(", ")


def test_unknown_attack_name_lists_the_registry(trained, test_xy):
    with pytest.raises(ValueError, match=r"unknown attack 'pgdd'.*'bim'.*'autoattack'"):
        robustness_table(trained, test_xy, {"x": {"attack": "pgdd", "eps": 0.3}})


def test_targeted_spec_is_refused(trained, test_xy):
    with pytest.raises(ValueError, match="untargeted"):
        robustness_table(trained, test_xy, {"t": {"attack": "pgd", "eps": 0.3, "targeted": True}})


def test_l2_spec_runs_l2_pgd_and_its_row_says_so(trained, test_xy):
    x, y = test_xy
    spec = {"attack": "pgd", "norm": "L2", "eps": 1.5, "alpha": 0.25, "steps": 10}
    rows = robustness_table(trained, (x, y), {"pgd_l2": spec, "pgd_linf": {**spec, "norm": "Linf"}})
    torch.manual_seed(0)
    by_hand = PGD(trained, eps=1.5, alpha=0.25, steps=10, norm="L2")(x, y)
    expected = ((trained(x).argmax(1) == y) & (trained(by_hand).argmax(1) == y)).sum().item() / len(y)
    l2, linf = rows
    assert l2["norm"] == "L2" and linf["norm"] == "Linf"
    assert l2["accuracy"] == pytest.approx(expected)
    assert linf["accuracy"] < 0.05 < l2["accuracy"]      # L-inf at 1.5 covers the whole image box


def test_row_metadata_comes_from_the_attack_object(trained, test_xy):
    (row,) = robustness_table(trained, test_xy, {"pgd": {"attack": "pgd", "eps": 0.3, "steps": 3}})
    default = PGD(trained)
    assert (row["alpha"], row["loss"], row["restarts"], row["norm"]) == (default.alpha, default.loss, 1, "Linf")


def test_restarts_and_l2_cap_are_evaluation_wrappers(trained, test_xy):
    x, y = test_xy
    spec = {"attack": "pgd", "eps": 0.15, "alpha": 0.02, "steps": 5, "restarts": 3}
    (row,) = robustness_table(trained, (x, y), {"r": spec}, seed=4)
    torch.manual_seed(4)
    survived = trained(x).argmax(1) == y
    for _ in range(3):
        survived &= trained(PGD(trained, eps=0.15, alpha=0.02, steps=5)(x, y)).argmax(1) == y
    assert row["accuracy"] == survived.sum().item() / len(y)
    one_c = {"attack": "cw", "c": 10.0, "steps": 20, "lr": 0.1, "binary_search_steps": 1}
    capped = robustness_table(trained, (x, y), {"near": {**one_c, "l2_max": 0.01}, "far": one_c})
    assert (capped[0]["eps"], capped[1]["eps"]) == (0.01, None)  # a C&W row's radius is its l2_max
    assert capped[0]["accuracy"] > capped[1]["accuracy"]  # successes beyond L2 0.01 do not count


def test_a_table_stops_pgd_once_every_image_is_fooled_and_reports_the_same_accuracy(trained, test_xy):
    # the big-budget check fools every image in a few of its 40 steps; every step gives the same table
    suite = {"pgd40@0.6": {"attack": "pgd", "eps": 0.6, "alpha": 0.04, "steps": 40},
             "pgd10": {"attack": "pgd", "eps": 0.3, "alpha": 0.075, "steps": 10}}
    every_step = {name: {**spec, "stop_when_fooled": False} for name, spec in suite.items()}
    calls = []
    handle = trained.register_forward_hook(lambda *_: calls.append(1))
    try:
        rows = robustness_table(trained, test_xy, suite, seed=3)
        stopped = len(calls)
        calls.clear()
        reference = robustness_table(trained, test_xy, every_step, seed=3)
    finally:
        handle.remove()
    assert [r["accuracy"] for r in rows] == [r["accuracy"] for r in reference]
    assert rows[0]["accuracy"] == 0.0 and stopped < len(calls)


def test_a_misclassified_clean_image_is_never_robust(device):
    model = PickInput().to(device)
    x = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], device=device)
    y = torch.tensor([1, 1], device=device)              # row 0 is wrong on the clean image
    helpful = {"fixes": lambda m: (lambda images, labels: torch.tensor([[0.0, 1.0, 0.0]] * 2, device=device))}
    (row,) = robustness_table(model, (x, y), helpful)
    assert row["accuracy"] == 0.5                         # not 1.0: row 0 was never right


def test_l2_rows_are_not_held_against_linf_fgsm():
    rows = flag_masking([
        {**_row("fgsm", "fgsm", 0.40, steps=1), "norm": "Linf"},
        {**_row("pgd_l2", "pgd", 0.80, steps=10, restarts=1, loss="ce"), "norm": "L2"},
        {**_row("pgd_linf", "pgd", 0.80, steps=10, restarts=1, loss="ce"), "norm": "Linf"},
    ])
    flags = {r["attack"]: r["flags"] for r in rows}
    assert flags["pgd_l2"] == [] and any("FGSM" in f for f in flags["pgd_linf"])


def _l2_row(attack, kind, accuracy, eps=2.0, norm="L2", model="m", **keys):
    return {**_row(attack, kind, accuracy, eps=eps, **keys), "norm": norm, "model": model}


def test_l2_attacks_weaker_than_pgd_l2_beyond_noise_are_flagged():
    # p = 0.30 on n = 100: noise = 2 sqrt(2 * 0.3 * 0.7 / 100) = 0.1296
    pgd = dict(steps=100, restarts=1, loss="ce")
    rows = flag_masking([
        _l2_row("pgd100_l2", "pgd", 0.30, model="weak", **pgd),
        _l2_row("cw_l2", "cw", 0.45, model="weak", steps=100),            # 0.15 above: flagged
        _l2_row("pgd100_l2", "pgd", 0.30, model="close", **pgd),
        _l2_row("cw_l2", "cw", 0.42, model="close", steps=100),           # 0.12 above: noise
        _l2_row("cw_l2@1", "cw", 0.90, eps=1.0, model="close", steps=100),  # other radius: not compared
        _l2_row("pgd10_l2", "pgd", 0.50, model="close", steps=10, restarts=1, loss="ce"),  # fewer steps: not held
    ])
    flags = {(r["model"], r["attack"]): r["flags"] for r in rows}
    assert len(flags[("weak", "cw_l2")]) == 1 and "pgd100_l2" in flags[("weak", "cw_l2")][0]
    assert all(f == [] for key, f in flags.items() if key != ("weak", "cw_l2"))


def test_l2_rows_are_never_compared_with_linf_ones():
    rows = flag_masking([
        _l2_row("pgd_linf@2", "pgd", 0.0, norm="Linf", steps=100, restarts=1, loss="ce"),
        _l2_row("cw_l2", "cw", 0.60, norm=None, steps=100),        # a C&W row without norm is L2
        _l2_row("pgd_l2", "pgd", 0.90, steps=100, restarts=1, loss="ce"),
        _l2_row("pgd_linf", "pgd", 0.95, norm="Linf", steps=100, restarts=1, loss="ce"),
    ])
    flags = {r["attack"]: r["flags"] for r in rows}
    assert flags["cw_l2"] == [] and flags["pgd_l2"] == []
    assert not any("L2 radius" in f for f in flags["pgd_linf"] + flags["pgd_linf@2"])


def test_default_suite_measures_l2_with_pgd_l2_at_the_standard_radius():
    mnist, cifar = default_suite(0.3), default_suite(8 / 255)
    assert default_suite(0.3, l2_eps=1.5)["pgd100_l2"]["eps"] == 1.5
    for suite, radius in ((mnist, 2.0), (cifar, 0.5)):
        assert suite["pgd100_l2"] == {"attack": "pgd", "norm": "L2", "eps": radius,
                                      "alpha": pytest.approx(2.5 * radius / 100), "steps": 100}
        assert suite["cw_l2"]["l2_max"] == radius and suite["cw_l2"]["binary_search_steps"] > 1
        row = describe_spec("cw_l2", suite["cw_l2"], build("smallcnn"))
        assert (row["kind"], row["norm"], row["eps"]) == ("cw", "L2", radius)


def test_curve_refuses_restarts_without_a_random_start(trained, test_xy):
    with pytest.raises(ValueError, match="restarts"):
        robust_accuracy_curve(trained, *test_xy, [0.1], attack="mim", restarts=3)


def test_compare_over_seeds_by_hand():
    """Two seeds a side: means 0.92 vs 0.90, stds 0.02 and 0.0, n = 1000 images."""
    from nslib.evaluation import compare_over_seeds

    result = compare_over_seeds([0.90, 0.94], [0.90, 0.90], n=1000)
    se = (0.02 ** 2 * 2 / 2 + 0 + 2 * 0.9 * 0.1 / 1000) ** 0.5  # s_a^2/S_a with s_a = sqrt(0.0008) = 0.0283
    assert result["mean"] == pytest.approx((0.92, 0.90))
    assert result["std"] == pytest.approx((0.0008 ** 0.5, 0.0))
    assert result["se"] == pytest.approx(se)
    assert result["difference"] == pytest.approx(0.02)
    assert result["verdict"] == "matched"          # 0.02 < 2 SE = 0.048
    assert result["seed_variance_known"] and result["seeds"] == (2, 2)


def test_compare_over_seeds_verdicts_and_one_seed():
    from nslib.evaluation import compare_over_seeds

    assert compare_over_seeds([0.95, 0.95, 0.95], [0.90, 0.90, 0.90], n=1000)["verdict"] == "beat"
    assert compare_over_seeds([0.85, 0.86, 0.85], [0.90, 0.91, 0.90], n=1000)["verdict"] == "fell behind"
    # seed noise widens the band: the same means with a large spread between seeds are a match
    assert compare_over_seeds([0.99, 0.91, 0.95], [0.90, 0.90, 0.90], n=1000)["verdict"] == "matched"
    one = compare_over_seeds([0.93], [0.90], n=1000)
    assert not one["seed_variance_known"] and one["std"] == (0.0, 0.0)
    assert one["noise"] == pytest.approx(2 * (2 * 0.9 * 0.1 / 1000) ** 0.5)
    # at an accuracy of 0 or 1 the binomial term is one image's worth, not zero: a one-image
    # difference between two smoke-run models is no verdict
    for p in (0.0, 1.0):
        edge = compare_over_seeds([p + (0.001 if p == 0 else -0.001)], [p], n=1000)
        assert edge["noise"] == pytest.approx(2 * 2 ** 0.5 / 1000) and edge["verdict"] == "matched"
    with pytest.raises(ValueError, match="at least one"):
        compare_over_seeds([], [0.9], n=10)


def test_worst_case_is_per_example():
    """Each attack breaks a different example: the worst case is below every single attack."""
    from nslib.evaluation import worst_case

    rows = [{"model": "m", "attack": "a", "accuracy": 0.75, "robust": torch.tensor([False, True, True, True])},
            {"model": "m", "attack": "b", "accuracy": 0.75, "robust": torch.tensor([True, False, True, True])}]
    assert worst_case(rows, "m", ["a", "b"]) == 0.5
    assert worst_case([{k: v for k, v in r.items() if k != "robust"} for r in rows], "m", ["a", "b"]) == 0.75
    with pytest.raises(ValueError, match=r"no rows of model 'm' for attacks \['c'\]"):
        worst_case(rows, "m", ["a", "c"])


def test_format_layer_table_has_one_line_per_model_and_a_column_per_layer():
    from nslib.evaluation import format_layer_table

    raw = {"pgd": {"a": 1.0, "b": 2.0}, "sns": {"a": 0.1, "b": 0.4}}
    table = format_layer_table(raw).splitlines()
    assert table[0].split() == ["model", "a", "b"] and table[2].split() == ["sns", "0.100", "0.400"]
    assert format_layer_table(raw, ["b"], digits=1).splitlines()[1].split() == ["pgd", "2.0"]

