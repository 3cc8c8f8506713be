"""nslib.reproduce: outputs written, current steps skipped, reruns identical, interruptions safe.

Uses the two steps that need no attack (E6 from the checkpoints' logs, E7 from the recorded
sweep), so the test stays fast; the attack-based steps run in the notebooks and `make reproduce`
(E1 runs here once, on 20 images, to check its mean and std over training seeds). Quick runs use
``seeds=1``, the shipped seed 0; several seeds use copies of it in full mode's ``out/models``.
E1 and E6 also report the relative (scale-free) sensitivity, sigma / mean |F_l(x)|.
The cache's keys (code, data files, stamp format) are tested in test_reproduce_cache.py.
"""
import csv
import json

import pytest
import torch

from nslib import reproduce as rp
from nslib.experiments import models as experiment_models
from nslib.experiments import sensitivity_vs_robustness
from nslib.experiments.context import MODELS, Context, Result

STEPS = ["sensitivity_vs_robustness", "sns_knobs"]


def test_writes_outputs_and_report_then_skips(tmp_path, capsys, device):
    rp.reproduce(tmp_path, steps=STEPS, progress=False, device=device, seeds=1)
    report = (tmp_path / "REPORT.md").read_text()
    for name in ("e6_sensitivity_vs_robustness.csv", "e6_sensitivity_vs_robustness.png",
                 "e7_sns_knobs.csv", "e7_sns_knobs.png"):
        assert (tmp_path / name).stat().st_size > 0
        assert name in report
    assert "Spearman" in report
    first = {p.name: p.read_bytes() for p in tmp_path.glob("*.csv")}
    capsys.readouterr()
    rp.reproduce(tmp_path, steps=STEPS, progress=False, seeds=1)
    assert capsys.readouterr().out.count("up to date, skipped") == 2
    rp.reproduce(tmp_path, steps=STEPS, progress=False, force=True, seeds=1)
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.csv")} == first  # identical tables


def test_missing_output_or_stamp_reruns_the_step(tmp_path, capsys):
    rp.reproduce(tmp_path, steps=STEPS, progress=False, seeds=1)
    (tmp_path / "e7_sns_knobs.png").unlink()            # an output lost
    (tmp_path / ".stamps" / "sensitivity_vs_robustness.json").unlink()  # a step interrupted
    capsys.readouterr()
    rp.reproduce(tmp_path, steps=STEPS, progress=False, seeds=1)
    out = capsys.readouterr().out
    assert "skipped" not in out and (tmp_path / "e7_sns_knobs.png").exists()


def test_stamp_key_follows_checkpoints(tmp_path):
    rp.reproduce(tmp_path, steps=["sensitivity_vs_robustness"], progress=False, seeds=1)
    stamp = json.loads((tmp_path / ".stamps" / "sensitivity_vs_robustness.json").read_text())
    assert sorted(stamp["checkpoints"]) == sorted(MODELS)
    assert list(stamp["data"]) == ["mnist5k"]           # E6: the logs, and benign images for the activation scale
    code = rp.source_hash()
    ctx = Context(tmp_path, used_checkpoints=stamp["checkpoints"], used_data=stamp["data"], seeds=1)
    assert rp.step_key(ctx, "sensitivity_vs_robustness", code) == stamp["key"]
    copy = tmp_path / "copy.pt"                       # same label, different file: a new key
    copy.write_bytes(b"not the shipped weights")
    ctx = Context(tmp_path, used_checkpoints={**stamp["checkpoints"], "mnist_sns": str(copy)},
                  used_data=stamp["data"], seeds=1)
    assert rp.step_key(ctx, "sensitivity_vs_robustness", code) != stamp["key"]


def test_an_experiment_returns_its_outputs_and_writes_nothing(tmp_path, device):
    result = sensitivity_vs_robustness.run(Context(tmp_path / "out", device=device, seeds=1))
    assert isinstance(result, Result) and "Spearman" in result.finding
    assert list(result.tables) == ["e6_sensitivity_vs_robustness.csv"]
    assert list(result.figures) == ["e6_sensitivity_vs_robustness.png"]
    assert not (tmp_path / "out").exists()


def test_models_step_quick_reports_the_shipped_metrics(tmp_path, device):
    from nslib.checkpoints import load_pretrained

    from nslib.checkpoints import pretrained_names
    from nslib.experiments.context import seed_name

    rp.reproduce(tmp_path, steps=["models"], progress=False, device=device)
    with open(tmp_path / "models.csv") as fh:
        rows = {(r["model"], int(r["seed"])): r for r in csv.DictReader(fh)}
    assert list(dict.fromkeys(m for m, _ in rows)) == ["standard", "pgd_at", "trades", "sns"]
    for (model, seed), row in rows.items():
        _, info = load_pretrained(seed_name("mnist_" + model, seed))
        assert row["recipe"] == info["recipe"]["recipe"] and info["recipe"]["seed"] == seed
        assert float(row["pgd40_acc"]) == pytest.approx(info["metrics"]["pgd40_acc"], abs=1e-4)
    shipped = set(pretrained_names())  # every shipped seed is used, and only those
    assert {(m, s) for m in ["standard", "pgd_at", "trades", "sns"] for s in range(3)
            if seed_name("mnist_" + m, s) in shipped} == set(rows)
    with open(tmp_path / "models_seeds.csv") as fh:
        summary = {r["model"]: r for r in csv.DictReader(fh)}
    sns = [float(r["pgd40_acc"]) for (m, _), r in rows.items() if m == "sns"]
    assert float(summary["sns"]["pgd40_acc_mean"]) == pytest.approx(sum(sns) / len(sns), abs=1e-4)


def test_retrain_settings_are_the_shipped_recipe():
    settings = rp.retrain_settings("mnist_sns")
    assert (settings["recipe"], settings["lam"], settings["layers"]) == ("sns", 0.01, ["conv3", "conv4", "fc1"])
    assert "command" not in settings and settings["arch"] == "smallcnn"


def test_full_mode_retrains_and_uses_the_retrained_models(tmp_path, monkeypatch, capsys, device):
    """--full on a tiny budget: trains into out/runs, saves out/models, and E6/E7 read those."""
    from nslib import sweep

    shipped = experiment_models.retrain_settings
    monkeypatch.setattr(experiment_models, "retrain_settings",
                        lambda name: {**shipped(name), "epochs": 2, "max_batches": 2, "batch_size": 10,
                                      "eps_warmup_epochs": 0})
    monkeypatch.setattr(sweep, "BUDGET", {**sweep.BUDGET, "train_n": 20, "batch_size": 10, "epochs": 1,
                                          "test_n": 20})
    monkeypatch.setattr(sweep, "SETTINGS", sweep.SETTINGS[:2])
    steps = ["models", "sensitivity_vs_robustness", "sns_knobs"]
    options = dict(quick=False, steps=steps, n=20, progress=False, device=device, seeds=2, autoattack="quick")
    rp.reproduce(tmp_path, **options)
    for name in MODELS:
        for run in (name, name + "_seed1"):  # --seeds 2: seeds 0 and 1, each from the recipe with its seed
            assert (tmp_path / "runs" / run / "last.pt").exists()
            assert (tmp_path / "models" / f"{run}.pt").exists()
        seeds = [torch.load(tmp_path / "models" / f"{run}.pt", weights_only=True)["recipe"]["seed"]
                 for run in (name, name + "_seed1")]
        assert seeds == [0, 1]
    stamp = json.loads((tmp_path / ".stamps" / "sensitivity_vs_robustness.json").read_text())
    assert all(f.startswith(str(tmp_path / "models")) for f in stamp["checkpoints"].values())
    with open(tmp_path / "e6_sensitivity_vs_robustness.csv") as fh:
        e6 = list(csv.DictReader(fh))
    assert len(e6) == 2 * len(MODELS) * 2                  # 2 retrained epochs (not the shipped 40), 2 seeds
    assert sorted({int(r["seed"]) for r in e6}) == [0, 1]
    runs = json.loads((tmp_path / "sns_sweep.json").read_text())["runs"]
    assert [(r["name"], r["seed"]) for r in runs] == [("lam0", 0), ("lam0", 1), ("lam0.003", 0), ("lam0.003", 1)]
    assert all((tmp_path / "runs" / "sweep" / run).is_dir() for run in ("lam0", "lam0_seed1"))
    with open(tmp_path / "e7_sns_knobs.csv") as fh:
        assert [int(r["seeds"]) for r in csv.DictReader(fh)] == [2, 2]
    capsys.readouterr()
    rp.reproduce(tmp_path, **options)
    assert capsys.readouterr().out.count("up to date, skipped") == 3


def test_full_mode_without_retrained_models_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="--steps models"):
        rp.reproduce(tmp_path, quick=False, steps=["sensitivity_vs_robustness"], progress=False)


def test_unknown_step_lists_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="sns_knobs"):
        rp.reproduce(tmp_path, steps=["e99"])


def test_spearman_on_hand_cases():
    spearman = sensitivity_vs_robustness.spearman
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)


# --- training seeds: E1, E6 and E7 report the mean and std over seeds ---------------------------

def _two_identical_seeds(out):
    """Full mode's out/models with seed 1 of every model a copy of the shipped seed 0."""
    import shutil

    from nslib.checkpoints import pretrained_path

    (out / "models").mkdir(parents=True)
    for name in MODELS:
        for run in (name, name + "_seed1"):
            shutil.copy(pretrained_path(name), out / "models" / f"{run}.pt")


def test_e1_over_two_identical_seeds_has_seed_0s_mean_and_no_spread(tmp_path, device):
    from matplotlib.container import BarContainer

    from nslib.experiments import sensitivity

    _two_identical_seeds(tmp_path)
    one, two = (sensitivity.run(Context(tmp_path, quick=False, n_images=20, seeds=s, device=device)) for s in (1, 2))
    rows_one, rows_two = one.tables["e1_layer_sensitivity.csv"], two.tables["e1_layer_sensitivity.csv"]
    assert [(r["model"], r["layer"]) for r in rows_two] == [(r["model"], r["layer"]) for r in rows_one]
    assert len(rows_two) == len(MODELS) * len(sensitivity.LAYERS)
    for a, b in zip(rows_one, rows_two):
        assert (a["seeds"], b["seeds"]) == (1, 2) and b["sensitivity_std"] == 0
        assert b["sensitivity"] == pytest.approx(a["sensitivity"], rel=1e-9)
        assert b["ratio_to_standard"] == pytest.approx(a["ratio_to_standard"], rel=1e-9)
        assert b["relative_sensitivity_std"] == 0                            # the relative columns too
        assert b["relative_sensitivity"] == pytest.approx(a["relative_sensitivity"], rel=1e-9)
        assert a["relative_sensitivity"] == pytest.approx(a["sensitivity"] / a["activation_scale"], rel=1e-6)
    assert "over 2 training seeds" in two.finding and "unmeasured" in one.finding
    assert "scale control" in one.finding and "SNS against PGD-AT" in one.finding
    assert [ax.get_ylabel() for ax in one.figures["e1_layer_sensitivity.png"].axes[:2]][1] == sensitivity.RELATIVE_LABEL
    assert two.tables["e2_neuron_sensitivity.csv"] == one.tables["e2_neuron_sensitivity.csv"]  # E2: seed 0
    bars_one, bars_two = ([c for c in result.figures["e1_layer_sensitivity.png"].axes[0].containers
                           if isinstance(c, BarContainer)] for result in (one, two))
    assert len(bars_one) == len(MODELS) and all(c.errorbar is None for c in bars_one)  # one seed: no error bars
    assert len(bars_two) == len(MODELS) and all(c.errorbar is not None for c in bars_two)
    segments = bars_two[0].errorbar.lines[2][0].get_segments()            # std 0: bars of no height
    assert len(segments) == len(sensitivity.LAYERS) and all(s[1][1] == s[0][1] for s in segments)


def test_e1_summary_of_hand_made_seeds():
    from nslib.experiments.sensitivity import summarise_seeds

    per_seed = {0: {"standard": {"fc1": 2.0}, "sns": {"fc1": 0.2}},
                1: {"standard": {"fc1": 4.0}, "sns": {"fc1": 0.6}}}
    rows = summarise_seeds(per_seed)
    assert [(r["model"], r["seeds"]) for r in rows] == [("standard", 2), ("sns", 2)]
    assert rows[1]["sensitivity"] == pytest.approx(0.4) and rows[1]["sensitivity_std"] == pytest.approx(0.4 / 2 ** 0.5)
    assert rows[1]["ratio_to_standard"] == pytest.approx(0.4 / 3.0)               # a ratio of the means
    assert rows[0]["sensitivity_std"] == pytest.approx(2 ** 0.5)
    assert "relative_sensitivity" not in rows[0]                              # no scale, no relative columns


def test_e1_relative_columns_are_per_seed_ratios_then_averaged():
    from nslib.experiments.sensitivity import summarise_seeds

    per_seed = {0: {"standard": {"fc1": 2.0}, "sns": {"fc1": 0.2}},
                1: {"standard": {"fc1": 4.0}, "sns": {"fc1": 0.6}}}
    scale = {0: {"standard": {"fc1": 4.0}, "sns": {"fc1": 0.2}},    # sns: quieter activations
             1: {"standard": {"fc1": 4.0}, "sns": {"fc1": 0.6}}}
    rows = summarise_seeds(per_seed, scale)
    assert rows[1]["activation_scale"] == pytest.approx(0.4)
    assert rows[1]["relative_sensitivity"] == pytest.approx(1.0) and rows[1]["relative_sensitivity_std"] == 0
    assert rows[0]["relative_sensitivity"] == pytest.approx(0.75)                # (0.5 + 1.0) / 2
    assert rows[1]["relative_ratio_to_standard"] == pytest.approx(1.0 / 0.75)    # raw lower, relative higher


@pytest.mark.parametrize("rel_at, verdict", [
    ({"a": 0.5, "b": 0.5, "c": 0.5}, "held, and it survives the scale control"),
    ({"a": 2.0, "b": 2.0, "c": 0.5}, "held in raw units only"),
])
def test_e1_verdict_follows_the_relative_sensitivity(rel_at, verdict):
    from nslib.experiments.sensitivity import compare_to_reference

    raw = {"standard": {"a": 1.0, "b": 1.0, "c": 1.0}, "at": {"a": 0.5, "b": 0.5, "c": 0.5}}
    rel = {"standard": {"a": 1.0, "b": 1.0, "c": 1.0}, "at": rel_at}
    text = compare_to_reference(raw, rel)
    assert verdict in text and "3 of 3 layers in raw units" in text
    assert ("disagree in a, b" in text) == (verdict == "held in raw units only")
    raw_only = compare_to_reference({"standard": raw["standard"], "at": {"a": 2.0, "b": 2.0, "c": 0.5}},
                                    {"standard": rel["standard"], "at": {"a": 0.5, "b": 0.5, "c": 0.5}})
    assert "held once activation scale is controlled" in raw_only
    tie = compare_to_reference(raw, {"standard": rel["standard"], "at": {"a": 0.95, "b": 0.95, "c": 0.99}})
    assert "held in raw units; relative to activation size it is a tie" in tie   # lower, but barely
    assert "survives" not in tie and "neither is steadier" in tie
    assert "a tie" not in text
    three = {"standard": rel["standard"], "at": {"a": 0.95, "b": 0.95, "c": 0.99}, "sns": rel_at}
    some = compare_to_reference({**raw, "sns": raw["at"]}, three)                  # one model ties, one does not
    assert "call it a tie" in some and "at and standard differ by at most" in some


def test_e6_gives_one_correlation_per_seed_and_the_pooled_one(tmp_path, monkeypatch, device):
    """Seed 1's log is seed 0's with robust accuracy = -sensitivity: its rho is exactly -1."""
    _two_identical_seeds(tmp_path)
    original = Context.checkpoint_info

    def anticorrelated(self, name, seed=0):
        info = original(self, name, seed)
        for record in info.get("log", []) if seed == 1 else []:
            if "robust_acc" in record and record.get("sensitivity"):
                record["robust_acc"] = -sum(record["sensitivity"].values()) / len(record["sensitivity"])
        return info

    monkeypatch.setattr(Context, "checkpoint_info", anticorrelated)
    result = sensitivity_vs_robustness.run(Context(tmp_path, quick=False, seeds=2, device=device))
    rows = result.tables["e6_sensitivity_vs_robustness.csv"]
    assert [r["seed"] for r in rows].count(0) == [r["seed"] for r in rows].count(1) > 0
    rho = sensitivity_vs_robustness.seed_correlations(rows)
    seed0 = [r for r in rows if r["seed"] == 0]
    assert rho[1] == pytest.approx(-1.0)
    assert rho[0] == pytest.approx(sensitivity_vs_robustness.spearman([r["sensitivity"] for r in seed0],
                                                                      [r["robust_acc"] for r in seed0]))
    assert rho[0] > -0.99
    mean, std = (rho[0] + rho[1]) / 2, abs(rho[0] - rho[1]) / 2 ** 0.5
    pooled = sensitivity_vs_robustness.spearman([r["sensitivity"] for r in rows], [r["robust_acc"] for r in rows])
    assert f"ρ = {mean:.2f} ± {std:.2f}" in result.finding and f"seed 1 {rho[1]:.2f}" in result.finding
    fig = result.figures["e6_sensitivity_vs_robustness.png"]
    ax = fig.axes[0]
    assert f"{mean:.2f} ± {std:.2f} over 2 training seeds" in fig._suptitle.get_text()
    assert f"pooled ρ = {pooled:.2f}" in fig._suptitle.get_text()
    assert len(ax.lines) == 2 * len(MODELS)                                  # one line per (model, seed)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [m.removeprefix("mnist_") for m in MODELS]
    final = [r for r in rows if r["relative_sensitivity"] is not None]     # the scale control: last epochs only
    assert sorted((r["group"], r["seed"]) for r in final) == sorted((m.removeprefix("mnist_"), s)
                                                                     for m in MODELS for s in (0, 1))
    last = max(r["epoch"] for r in seed0 if r["group"] == "sns")
    assert all(r["epoch"] == last for r in final if r["group"] == "sns")
    assert all(r["activation_scale"] is None for r in rows if r["relative_sensitivity"] is None)
    corr = sensitivity_vs_robustness.final_correlations(rows)
    assert corr["n"] == 2 * len(MODELS) and f"raw sensitivity is {corr['raw']:.2f}" in result.finding
    right = result.figures["e6_sensitivity_vs_robustness.png"].axes[1]
    assert "relative" in right.get_xlabel() and len(right.collections) == len(MODELS)


def test_e6_relative_sensitivity_is_the_mean_of_each_layers_ratio(tmp_path, device):
    from nslib.sensitivity import activation_scale

    ctx = Context(tmp_path, seeds=1, device=device)
    x = sensitivity_vs_robustness._eval_images(ctx)[:50]
    points = sensitivity_vs_robustness.log_points(ctx, 0, x)
    end = [p for p in points if p["group"] == "sns" and p["relative_sensitivity"] is not None]
    assert len(end) == 1
    record = ctx.checkpoint_info("mnist_sns")["log"][-1]
    scale = activation_scale(ctx.model("mnist_sns"), x, list(record["sensitivity"]))
    expected = sum(record["sensitivity"][l] / scale[l] for l in scale) / len(scale)
    assert end[0]["relative_sensitivity"] == pytest.approx(expected)
    assert all(p["relative_sensitivity"] is None for p in sensitivity_vs_robustness.log_points(ctx, 0))


@pytest.mark.parametrize("raw, rel, says", [(-0.9, -0.8, "survives the scale control"),
                                           (-0.9, 0.1, "holds in raw units only"),
                                           (0.1, -0.9, "only once activation scale is controlled"),
                                           (0.1, 0.2, "neither ranks")])
def test_e6_scale_verdict(raw, rel, says):
    assert says in sensitivity_vs_robustness.scale_verdict({"raw": raw, "relative": rel, "n": 8})
    assert "none was measured" in sensitivity_vs_robustness.scale_verdict(None)


def _sweep_record(name, knob, lam, pgd, clean, sens, seed=None):
    record = {"name": name, "knob": knob, "recipe": "sns" if lam else "pgd_at", "lam": lam, "k": 0.1,
              "layers": ["conv3", "fc1"], "clean_acc": clean, "pgd40_acc": pgd,
              "sensitivity": {"conv3": sens, "fc1": 3 * sens}, "train_seconds": 1}
    return record if seed is None else {**record, "seed": seed}


def test_e7_aggregates_each_setting_over_its_seeds():
    from nslib.experiments.sns_knobs import aggregate

    runs = [_sweep_record("lam0", "lambda", 0.0, 0.80, 0.97, 0.5),              # no seed key: seed 0
            _sweep_record("lam0", "lambda", 0.0, 0.84, 0.95, 1.0, seed=1),
            _sweep_record("lam0.01", "lambda", 0.01, 0.82, 0.96, 0.2, seed=0)]
    lam0, lam001 = aggregate(runs)
    assert (lam0["name"], lam0["seeds"], lam001["seeds"]) == ("lam0", 2, 1)
    assert lam0["pgd40_acc"] == pytest.approx(0.82) and lam0["pgd40_acc_std"] == pytest.approx(0.02 * 2 ** 0.5)
    assert lam0["clean_acc"] == pytest.approx(0.96) and lam0["clean_acc_std"] == pytest.approx(0.01 * 2 ** 0.5)
    assert lam0["mean_sensitivity"] == pytest.approx(1.5)                       # (1.0 + 2.0) / 2
    assert lam0["mean_sensitivity_std"] == pytest.approx(0.5 * 2 ** 0.5)
    assert lam001["pgd40_acc_std"] == 0 and lam001["layers"] == "conv3+fc1"


def test_e7_says_how_many_seeds_and_draws_error_bars_when_there_are_several(tmp_path, monkeypatch):
    from nslib.experiments import sns_knobs
    from nslib.sweep import record_seed

    recorded = json.loads(sns_knobs.RECORDED_SWEEP.read_text())
    assert sorted({record_seed(r) for r in recorded["runs"]}) == [0, 1, 2]   # three seeds of every setting ship
    three = sns_knobs.run(Context(tmp_path, seeds=1))
    assert "3 training seeds for each" in three.finding
    assert "seeds 0,1,2" in three.figures["e7_sns_knobs.png"].get_suptitle()
    (pgd, clean) = three.figures["e7_sns_knobs.png"].axes[0].containers  # PGD-40 and clean accuracy, error bars
    bars = [s[1][1] - s[0][1] for s in pgd.lines[2][0].get_segments()]  # one vertical bar per lambda
    stds = [r["pgd40_acc_std"] for r in sns_knobs.aggregate(recorded["runs"]) if r["knob"] == "lambda"]
    assert len(bars) == 5 and sorted(bars) == pytest.approx(sorted(2 * 100 * s for s in stds))   # ± one std
    only_seed_0 = {**recorded, "runs": [r for r in recorded["runs"] if record_seed(r) == 0]}
    path = tmp_path / "sns_sweep.json"
    path.write_text(json.dumps(only_seed_0))
    monkeypatch.setattr(sns_knobs, "RECORDED_SWEEP", path)
    one = sns_knobs.run(Context(tmp_path, seeds=1))
    assert "one training seed for each" in one.finding and "unmeasured" in one.finding
    assert not one.figures["e7_sns_knobs.png"].axes[0].containers
