"""What notebook 04 shows around its E5 table: the suite in words, the note on PGD-10 against
PGD-40, AutoAttack read from the checkpoints, and a progress bar whose estimate holds."""
import pytest
import torch

from nslib import evaluation
from nslib.autoattack import gradient_passes
from nslib.experiments import robustness as e5


def _pgd(model, attack, steps, alpha, robust, n=200):
    robust = torch.tensor(robust)
    return {"model": model, "attack": attack, "kind": "pgd", "norm": "Linf", "eps": 0.3, "steps": steps,
            "alpha": alpha, "restarts": 1, "loss": "ce", "accuracy": robust.float().mean().item(), "n": n,
            "robust": robust, "flags": []}


@pytest.mark.parametrize("quick", [True, False])
def test_the_suite_text_names_every_attack_this_mode_runs_and_what_the_other_changes(quick):
    text = e5.suite_text(quick)
    ran, other = e5.attack_suite(quick, "quick" if quick else "standard"), e5.attack_suite(not quick)
    listed = [line.split("`")[1] for line in text.splitlines() if line.startswith("- `")]
    assert listed == [name for name in ran if name != "clean"]
    rest = text.split("mode** (`NSLIB_QUICK")[1]
    for name in set(other) ^ set(ran):  # each attack only one mode runs, in words, after the list
        assert e5.describe_attack(name, {**other, **ran}[name]) in rest, name
    assert ("adds PGD-100" in rest) == quick and ("leaves out PGD-100" in rest) == (not quick)


def test_the_suite_text_says_where_a_recorded_autoattack_comes_from_and_lists_it_last():
    text = e5.suite_text(True, recorded=1000)
    items = [line for line in text.splitlines() if line.startswith("- `")]
    assert items[-1].startswith("- `autoattack_quick@1000`") and "all 1,000 test images" in items[-1]
    assert "1,000" not in e5.suite_text(False, recorded=1000)  # full mode runs AutoAttack itself


def test_describe_attack_reads_the_spec():
    suite = evaluation.default_suite(0.3)
    assert e5.describe_attack("pgd40x5", suite["pgd40x5"]) == "PGD-40 × 5 restarts (step 0.01)"
    assert e5.describe_attack("pgd40_cw", suite["pgd40_cw"]) == "PGD-40 with the C&W margin loss (step 0.01)"
    assert e5.describe_attack("pgd40@0.6", suite["pgd40@0.6"]) == "PGD-40 at ε = 0.6 (step 0.04)"
    assert e5.describe_attack("pgd100_l2", suite["pgd100_l2"]) == "PGD-L2-100 at radius 2"
    assert e5.describe_attack("fgsm", suite["fgsm"], eps=0.1) == "FGSM at ε = 0.3"


def test_the_steps_note_counts_the_images_each_attack_alone_broke():
    short = [i % 10 != 0 for i in range(200)]            # 180 robust
    long = list(short)
    for i in (0, 10, 20):                                 # PGD-40 misses three that PGD-10 broke...
        long[i] = True
    long[5] = False                                       # ...and breaks one that PGD-10 missed
    rows = [_pgd("sns", "pgd10", 10, 0.075, short), _pgd("sns", "pgd40", 40, 0.01, long),
            _pgd("pgd_at", "pgd10", 10, 0.075, short), _pgd("pgd_at", "pgd40", 40, 0.01, short)]
    text = e5.steps_text(rows)
    assert "sns 91.0 vs 90.0 %" in text and "PGD-10 broke 3 images that PGD-40 missed, PGD-40 1 image that" in text
    assert "pgd_at" not in text.split("It looks")[0]      # equal there: no contradiction to explain
    assert "nothing to compare here" in text
    assert "it is sns 89.5 %" in text                     # both attacks together: 200 - 20 - 1 images
    assert e5.steps_text(rows[2:]) == ""


def test_the_steps_note_names_the_pairs_the_check_did_compare():
    short = [True] * 100 + [False] * 100
    long = [True] * 180 + [False] * 20
    rows = [_pgd("m", "pgd10", 10, 0.075, short), _pgd("m", "pgd40", 40, 0.01, long),
            _pgd("m", "pgd100", 100, 0.01, long)]
    text = e5.steps_text(rows)
    assert "PGD-40 none that PGD-10 missed" in text and "compared `pgd40` with `pgd100`" in text


def test_split_suite_puts_the_attacks_at_the_budget_first_and_the_checks_second():
    for quick in (True, False):
        suite = e5.attack_suite(quick, "quick" if quick else "standard")
        at_eps, checks = e5.split_suite(suite)
        assert list(at_eps) + list(checks) == [n for n in suite if n in at_eps] + [n for n in suite if n in checks]
        assert {"clean", "fgsm", "pgd10", "pgd40", "pgd40_cw"} <= set(at_eps) and "pgd40@0.6" in checks
        assert all("l2" in n or "@" in n for n in checks), checks
    assert "cw_l2" in e5.split_suite(e5.attack_suite(False))[1]        # C&W: an L2 attack, whatever its keys


def test_tables_merged_redo_the_checks_that_need_rows_of_both():
    big = _pgd("a", "pgd40@0.6", 40, 0.04, [True] * 20 + [False] * 180)   # 10 % at twice the budget
    big["eps"] = 0.6
    at_eps = [_pgd("a", "pgd40", 40, 0.01, [True] * 150 + [False] * 50)]
    assert evaluation.flag_masking([dict(big, flags=[])])[0]["flags"] == []  # alone: no budget to compare with
    merged = e5.merge_tables(at_eps, [big])
    assert [len(r["flags"]) for r in merged] == [0, 1] and "large eps" in merged[1]["flags"][0]


def test_autoattack_read_from_the_checkpoints_joins_the_table_and_its_masking_check():
    rows = [_pgd("a", "pgd40", 40, 0.01, [True] * 190 + [False] * 10),
            _pgd("b", "pgd40", 40, 0.01, [True] * 150 + [False] * 50)]
    rows[0]["flags"] = ["a flag from an earlier check"]
    label = "AutoAttack quick subset (APGD-CE + APGD-T, 3 target classes)"
    infos = {"a": {"metrics": {"aa_acc": 0.80, "n": 1000, "eps": 0.3, "aa_version": label}},   # PGD 15 points above
             "b": {"metrics": {"aa_acc": 0.74, "n": 1000, "eps": 0.3, "aa_version": label}}}
    merged = e5.merge_tables(rows[:1], rows[1:], infos=infos)
    aa = {r["model"]: r for r in merged if r["kind"] == "autoattack"}
    assert {r["attack"] for r in aa.values()} == {"autoattack_quick@1000"}
    assert (aa["a"]["accuracy"], aa["a"]["n"]) == (0.80, 1000)
    flags = {r["model"]: r["flags"] for r in merged if r["kind"] == "pgd"}
    assert len(flags["a"]) == 1 and "above autoattack_quick@1000" in flags["a"][0] and flags["b"] == []
    assert rows[0]["flags"] == ["a flag from an earlier check"]  # the caller's rows are left alone
    with pytest.raises(ValueError, match="records no AutoAttack"):
        e5.merge_tables(rows, infos={"a": {"metrics": {}}, "b": infos["b"]})


class _Bar:
    def __init__(self, total):
        self.total, self.n = total, 0

    def update(self, n):
        self.n += n


def test_the_progress_bar_weighs_attacks_by_their_gradient_passes():
    suite = evaluation.default_suite(0.3, autoattack="quick")
    passes = {name: evaluation._passes(spec) for name, spec in suite.items()}
    assert passes["clean"] == passes["fgsm"] == 1 and passes["pgd40x5"] == 200 and passes["cw_l2"] == 500
    assert passes["autoattack_quick"] == gradient_passes("quick") == 100 + 3 * 100


def test_the_bar_shrinks_its_total_when_autoattack_runs_on_fewer_images():
    spec = evaluation.autoattack_suite(0.3, "quick")["autoattack_quick"]
    bar = _Bar(total=1 + 400)
    bar.update(1)
    stages = {"apgd-ce": torch.tensor([False] * 3 + [True]), "apgd-t": torch.tensor([False] * 4)}
    evaluation._advance(bar, spec, stages)            # APGD-T ran on a quarter of the images
    assert bar.n == bar.total == 1 + 100 + 75


def test_the_bar_counts_the_steps_a_pgd_ran_before_every_image_was_fooled(monkeypatch):
    # one model that misclassifies everything: PGD stops at its first step, and the bar says so
    bars = []

    class Recording(_Bar):
        def __init__(self, total, **_):
            super().__init__(total)
            bars.append(self)

        def set_postfix_str(self, _):
            pass

        def close(self):
            pass

    import tqdm.auto
    monkeypatch.setattr(tqdm.auto, "tqdm", Recording)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([0.0, 0.0, 5.0]))   # always class 2
    x, y = torch.rand(6, 1, 2, 2), torch.tensor([0, 1, 0, 1, 0, 1])
    spec = {"attack": "pgd", "eps": 0.3, "alpha": 0.1, "steps": 40, "restarts": 2}
    (row,) = evaluation.robustness_table({"m": model}, (x, y), {"pgd": spec}, progress=True)
    assert row["accuracy"] == 0.0 and "steps_run" not in row["stages"]
    assert bars[0].n == bars[0].total == 2   # one step of each restart, not 2 x 40


def test_in_a_notebook_the_drawn_bar_ends_full_when_its_total_shrinks(monkeypatch):
    # tqdm.notebook draws an IntProgress whose max is set once; a total lowered by the skipped steps
    # must lower it too, or the bar stops short of full at 100 %
    pytest.importorskip("ipywidgets")
    import tqdm.auto
    import tqdm.notebook

    bars = []

    def notebook_bar(**kwargs):
        bars.append(tqdm.notebook.tqdm(**kwargs, display=False))
        return bars[-1]

    monkeypatch.setattr(tqdm.auto, "tqdm", notebook_bar)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([0.0, 0.0, 5.0]))   # always class 2: PGD stops at its first step
    x, y = torch.rand(6, 1, 2, 2), torch.tensor([0, 1, 0, 1, 0, 1])
    spec = {"attack": "pgd", "eps": 0.3, "alpha": 0.1, "steps": 40}
    evaluation.robustness_table({"m": model}, (x, y), {"pgd": spec}, progress=True)
    drawn = bars[0].container.children[1]
    assert bars[0].n == bars[0].total == 1 and (drawn.value, drawn.max) == (1, 1)
