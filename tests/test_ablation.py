"""nslib.ablation: deactivate vs captum's LayerFeatureAblation, stabilise, the E3 sweep."""
from collections import OrderedDict

import pytest
import torch
from captum.attr import LayerFeatureAblation
from torch import nn

from nslib import ablation
from nslib.ablation import (ablation_sweep, deactivate, neuron_means, select_neurons, selection_split,
                            stabilise, summarise_sweep)
from nslib.hooks import capture


def conv_net(dtype=torch.float64, device="cpu") -> nn.Sequential:
    """A tiny random CNN: (N, 1, 6, 6) -> 3 classes; conv1 has 4 channels, fc1 5 units."""
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 4, 3)), ("relu1", nn.ReLU(inplace=True)),
        ("conv2", nn.Conv2d(4, 3, 3)), ("relu2", nn.ReLU()),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(3 * 2 * 2, 5)), ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(5, 3)),
    ]))
    return net.to(dtype).to(device).eval()  # made on the CPU: the same weights on every device


def images(n=4, seed=1, dtype=torch.float64, device="cpu") -> torch.Tensor:
    return torch.rand(n, 1, 6, 6, generator=torch.Generator().manual_seed(seed), dtype=dtype).to(device)


def no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks for m in model.modules())


# --- deactivate -------------------------------------------------------------------------------

@pytest.mark.parametrize("target", [0, 2])
def test_deactivate_equals_captum_layer_feature_ablation(target, device):
    model, x = conv_net(device=device), images(device=device)
    mask = torch.arange(4, device=device).view(1, 4, 1, 1)  # one group per channel of conv1
    attr = LayerFeatureAblation(model, model.conv1).attribute(x, target=target, layer_mask=mask)
    assert attr.shape == (4, 4, 4, 4)  # (N, C, H, W) of conv1's output
    with torch.no_grad():
        original = model(x)[:, target]
        for c in range(4):
            with deactivate(model, {"conv1": [c]}):
                ablated = model(x)[:, target]
            torch.testing.assert_close(attr[:, c], (original - ablated).view(-1, 1, 1).expand(-1, 4, 4),
                                       rtol=0, atol=1e-12)
    assert no_hooks(model)


def test_deactivate_mean_equals_captum_with_mean_baseline(device):
    model, x, base = conv_net(device=device), images(device=device), images(n=7, seed=5, device=device)
    means = neuron_means(model, base, "conv1")["conv1"]
    with torch.no_grad():
        reference = model.conv1(base).mean(dim=(0, 2, 3))  # batch and spatial positions
    torch.testing.assert_close(means, reference, rtol=0, atol=1e-12)
    mask = torch.arange(4, device=device).view(1, 4, 1, 1)
    attr = LayerFeatureAblation(model, model.conv1).attribute(
        x, target=1, layer_mask=mask, layer_baselines=means.view(1, 4, 1, 1))
    with torch.no_grad():
        original = model(x)[:, 1]
        for c in range(4):
            with deactivate(model, {"conv1": [c]}, value="mean", baseline=base):
                ablated = model(x)[:, 1]
            torch.testing.assert_close(attr[:, c, 0, 0], original - ablated, rtol=0, atol=1e-12)


def test_deactivate_zeros_exactly_the_chosen_channels_and_what_capture_sees(device):
    model, x = conv_net(device=device), images(device=device)
    with torch.no_grad():
        original = model.conv1(x)
        with capture(model, ["conv1"]) as outer:  # registered before the ablation hook
            with deactivate(model, {"conv1": torch.tensor([1, 3])}):
                with capture(model, ["conv1", "relu1"]) as inner:  # registered after it
                    model(x)
    # the inner capture sees the replaced output: channels 1 and 3 zero, the rest untouched
    assert inner["conv1"].shape == original.shape
    assert torch.equal(inner["conv1"][:, [1, 3]], torch.zeros(4, 2, 4, 4, dtype=x.dtype, device=device))
    assert torch.equal(inner["conv1"][:, [0, 2]], original[:, [0, 2]])
    keep = torch.tensor([1.0, 0, 1, 0], dtype=x.dtype, device=device).view(1, 4, 1, 1)
    assert torch.equal(inner["relu1"], original.clamp(min=0) * keep)
    # the outer capture's hook ran first, so it saw the layer's own output
    assert torch.equal(outer["conv1"], original)
    assert no_hooks(model)


def test_deactivate_constant_on_a_linear_layer_and_empty_selection(device):
    model, x = conv_net(device=device), images(device=device)
    with capture(model, ["fc1"]) as plain, torch.no_grad():
        model(x)
    with deactivate(model, {"fc1": [4, 0]}, value=2.5):
        with capture(model, ["fc1"]) as seen, torch.no_grad():
            model(x)
    assert torch.equal(seen["fc1"][:, [0, 4]], torch.full((4, 2), 2.5, dtype=x.dtype, device=device))
    assert torch.equal(seen["fc1"][:, 1:4], plain["fc1"][:, 1:4])
    with deactivate(model, {"fc1": []}), torch.no_grad():
        assert torch.equal(model(x), model.fc2(model.relu3(plain["fc1"])))


def test_deactivate_matches_zeroed_weights_in_value_and_gradient(device):
    """Zeroing channel c of conv1 == zeroing its filter and bias (an independent reference)."""
    model, reference, x = conv_net(device=device), conv_net(device=device), images(device=device)
    with torch.no_grad():
        reference.conv1.weight[[0, 2]] = 0
        reference.conv1.bias[[0, 2]] = 0
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    with deactivate(model, {"conv1": [0, 2]}):
        out = model(x1)
        out.sum().backward()
    expected = reference(x2)
    expected.sum().backward()
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=0, atol=1e-12)
    assert x1.grad.abs().sum() > 0
    x3 = x.clone().requires_grad_()
    with deactivate(model, {"conv1": [0, 1, 2, 3]}):  # every channel: the input no longer matters
        model(x3).sum().backward()
    assert torch.equal(x3.grad, torch.zeros_like(x))


def test_bad_arguments_raise_clear_errors(device):
    model, x = conv_net(device=device), images(device=device)
    with pytest.raises(ValueError, match="conv1"):  # unknown layer lists the valid names
        with deactivate(model, {"conv9": [0]}):
            pass
    with pytest.raises(ValueError, match="out of range.*4 neurons"):
        with deactivate(model, {"conv1": [4]}), torch.no_grad():
            model(x)
    with pytest.raises(ValueError, match="negative"):
        with deactivate(model, {"conv1": [-1]}):
            pass
    with pytest.raises(ValueError, match="baseline"):
        with deactivate(model, {"conv1": [0]}, value="mean"):
            pass
    with pytest.raises(ValueError, match="'mean'"):
        with deactivate(model, {"conv1": [0]}, value="median"):
            pass
    with pytest.raises(TypeError, match="dict"):
        with deactivate(model, [0, 1]):
            pass
    assert no_hooks(model)


def test_hooks_removed_after_an_exception(device):
    model, x = conv_net(device=device), images(device=device)
    with torch.no_grad():
        expected = model(x)
    for manager in (lambda: deactivate(model, {"conv1": [0], "fc1": [1]}),
                    lambda: stabilise(model, {"conv1": [0], "fc1": [1]}, x)):
        with pytest.raises(RuntimeError, match="boom"):
            with manager():
                raise RuntimeError("boom")
        assert no_hooks(model)
    with pytest.raises(ValueError, match="batch size"):
        with stabilise(model, {"conv1": [0]}, x), torch.no_grad():
            model(x[:3])
    assert no_hooks(model)
    with torch.no_grad():
        assert torch.equal(model(x), expected)


# --- stabilise --------------------------------------------------------------------------------

def test_stabilise_with_benign_equal_adversarial_changes_nothing(device):
    model, x = conv_net(device=device), images(device=device)
    with torch.no_grad():
        expected = model(x)
        with stabilise(model, {"conv1": [0, 2], "fc1": [1, 3]}, x):
            assert torch.equal(model(x), expected)


def test_stabilise_all_neurons_gives_the_benign_output_exactly(device):
    model, x, x_adv = conv_net(device=device), images(seed=1, device=device), images(seed=2, device=device)
    with torch.no_grad():
        benign, adversarial = model(x), model(x_adv)
        assert not torch.allclose(benign, adversarial)
        with stabilise(model, {"conv2": range(3)}, x):
            torch.testing.assert_close(model(x_adv), benign, rtol=0, atol=0)


def test_stabilise_replaces_only_the_chosen_neurons_with_paired_benign_outputs(device):
    model, x, x_adv = conv_net(device=device), images(seed=1, device=device), images(seed=2, device=device)
    with torch.no_grad():
        clean = {"conv1": model.conv1(x), "adv": model.conv1(x_adv)}
        with stabilise(model, {"conv1": [2]}, x), capture(model, ["conv1"]) as seen:
            model(x_adv)
    assert torch.equal(seen["conv1"][:, 2], clean["conv1"][:, 2])
    assert torch.equal(seen["conv1"][:, [0, 1, 3]], clean["adv"][:, [0, 1, 3]])


def test_stabilise_records_every_layer_in_one_clean_pass(device):
    """The benign outputs of a later layer are recorded without the earlier layer's patch."""
    model, x, x_adv = conv_net(device=device), images(seed=1, device=device), images(seed=2, device=device)
    with torch.no_grad(), capture(model, ["fc1"]) as plain:
        model(x)
    with torch.no_grad(), stabilise(model, {"conv1": [0], "fc1": [0, 1, 2, 3, 4]}, x):
        with capture(model, ["fc1"]) as seen:
            model(x_adv)
    assert torch.equal(seen["fc1"], plain["fc1"])


def test_stabilise_computes_benign_outputs_in_eval_mode_and_restores_the_mode(device):
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict([("conv", nn.Conv2d(1, 2, 3)), ("bn", nn.BatchNorm2d(2)),
                                       ("flatten", nn.Flatten()), ("fc", nn.Linear(2 * 4 * 4, 3))])).to(device)
    model.bn.running_mean.fill_(0.5)
    x, x_adv = (images(seed=s, dtype=torch.float32, device=device) for s in (1, 2))
    model.train()
    model.fc.eval()  # a mixed setting must come back as it was
    stats = model.bn.running_mean.clone()
    with stabilise(model, {"bn": [0, 1]}, x):
        assert model.training and model.bn.training and not model.fc.training
        assert torch.equal(model.bn.running_mean, stats)  # the benign pass did not update BN
        model.eval()
        with torch.no_grad():
            out = model(x_adv)
    with torch.no_grad():
        expected = model(x)  # eval mode: both BN outputs are the benign eval-mode ones
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


# --- selection and sweep ---------------------------------------------------------------------

def test_select_neurons_top_bottom_random():
    scores = torch.tensor([1.0, 0.1, 0.1, 0.05, 0.3, 0.2, 0.0, 0.0])
    assert select_neurons(scores, 3, "top").tolist() == [0, 4, 5]
    assert select_neurons(scores, 4, "top").tolist() == [0, 4, 5, 1]  # tie: lower index first
    assert select_neurons(scores, 3, "bottom").tolist() == [6, 7, 3]
    assert select_neurons(scores, 0, "top").tolist() == []
    a, b = select_neurons(scores, 5, "random", seed=3), select_neurons(scores, 5, "random", seed=3)
    assert torch.equal(a, b) and len(set(a.tolist())) == 5
    assert torch.equal(select_neurons(scores, 2, "random", seed=3), a[:2])  # nested in k
    with pytest.raises(ValueError, match="seed"):
        select_neurons(scores, 2, "random")
    with pytest.raises(ValueError, match=r"\[0, 8\]"):
        select_neurons(scores, 9)
    with pytest.raises(ValueError, match="selection"):
        select_neurons(scores, 1, "middle")


def toy_problem(device="cpu"):
    """8 hidden units; unit 0 is the attack's lever, the others barely matter.

    Inputs are 8 "pixels", ``hidden = identity(x)``; logits ``z0 = 0.5 + 0.01 * sum(h[1:])``,
    ``z1 = 2 * h0``. All labels are 0. Benign: ``x0 = 0`` (correct) for 5 samples, ``x0 = 1``
    for the sixth (already wrong). Adversarial: ``x0 = 1`` for all, small noise elsewhere.
    """
    hidden = nn.Linear(8, 8)
    out = nn.Linear(8, 2)
    with torch.no_grad():
        hidden.weight.copy_(torch.eye(8))
        hidden.bias.zero_()
        out.weight.zero_()
        out.weight[0, 1:] = 0.01
        out.weight[1, 0] = 2.0
        out.bias.copy_(torch.tensor([0.5, 0.0]))
    model = nn.Sequential(OrderedDict([("hidden", hidden), ("relu", nn.ReLU()), ("out", out)]))
    g = torch.Generator().manual_seed(0)
    benign = torch.rand(6, 8, generator=g) * 0.5
    benign[:, 0] = 0.0
    benign[5, 0] = 1.0
    adversarial = (benign + 0.05 * torch.rand(6, 8, generator=g)).clamp(0, 1)
    adversarial[:, 0] = 1.0
    labels = torch.zeros(6, dtype=torch.long)
    sensitivity = (adversarial - benign).abs().mean(dim=0)  # sigma of each hidden unit
    return (model.to(device), benign.to(device), adversarial.to(device), labels.to(device),
            {"hidden": sensitivity.to(device)})


@pytest.mark.parametrize("mode", ["stabilise", "deactivate"])
def test_sweep_top_k_beats_random_and_bottom_on_a_constructed_example(mode, device):
    model, x, x_adv, y, sigma = toy_problem(device)
    assert select_neurons(sigma["hidden"], 1).tolist() == [0]
    model.train()
    records = ablation_sweep(model, x, x_adv, y, sigma, "hidden", [0, 1, 4, 8], mode=mode,
                             batch_size=4)
    assert model.training and model.hidden.training  # mode restored
    by = {(r["selection"], r["k"], r["seed"]): r for r in records}
    assert len(records) == 4 * (1 + 5 + 1)
    # k = 0: the plain attack; 5 of 6 wrong, all 5 originally correct ones fooled
    for selection, seed in (("top", None), ("bottom", None), ("random", 0)):
        assert by[(selection, 0, seed)]["accuracy"] == pytest.approx(0.0)
        assert by[(selection, 0, seed)]["success_rate"] == pytest.approx(1.0)
    # top-1 is unit 0: the attack is undone on the 5 originally correct inputs (stabilise puts
    # back the sixth's benign, already wrong, x0 = 1; deactivation sets it to 0: all 6 correct)
    fixed = 5 / 6 if mode == "stabilise" else 1.0
    assert by[("top", 1, None)]["neurons"] == [0]
    assert by[("top", 1, None)]["accuracy"] == pytest.approx(fixed)
    assert by[("top", 1, None)]["success_rate"] == pytest.approx(0.0)
    # bottom-4 never touches unit 0: nothing changes
    assert 0 not in by[("bottom", 4, None)]["neurons"]
    assert by[("bottom", 4, None)]["accuracy"] == pytest.approx(0.0)
    # random-4: some seeds hit unit 0, some do not -> a spread over seeds
    summary = {(s["selection"], s["k"]): s for s in summarise_sweep(records)}
    assert summary[("random", 4)]["n"] == 5
    assert summary[("random", 4)]["accuracy_std"] > 0
    assert summary[("top", 4)]["accuracy_std"] == 0.0
    assert summary[("top", 4)]["accuracy_mean"] > summary[("random", 4)]["accuracy_mean"] \
        > summary[("bottom", 4)]["accuracy_mean"]
    hits = [0 in by[("random", 4, s)]["neurons"] for s in range(5)]
    expected = sum(fixed if hit else 0.0 for hit in hits) / 5
    assert summary[("random", 4)]["accuracy_mean"] == pytest.approx(expected)


def test_sweep_all_neurons_stabilised_gives_benign_accuracy_and_batches_agree(device):
    model, x, x_adv, y, sigma = toy_problem(device)
    one = ablation_sweep(model, x, x_adv, y, sigma["hidden"], "hidden", [8], selections=("top",))
    many = ablation_sweep(model, x, x_adv, y, sigma, "hidden", [8], selections=("top",), batch_size=1)
    benign_acc = (model(x).argmax(1) == y).double().mean().item()
    assert one[0]["accuracy"] == pytest.approx(benign_acc) == pytest.approx(5 / 6)
    assert one == many


def test_sweep_deactivate_mean_and_bad_arguments(device):
    model, x, x_adv, y, sigma = toy_problem(device)
    records = ablation_sweep(model, x, x_adv, y, sigma, "hidden", [1], mode="deactivate",
                             value="mean", selections=("top",))
    # the mean of unit 0 over benign data is 1/6: z1 = 1/3 < 0.5 + small, so all become correct
    assert records[0]["accuracy"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="mode"):
        ablation_sweep(model, x, x_adv, y, sigma, "hidden", [1], mode="zero")
    with pytest.raises(ValueError, match="no entry for layer 'out'"):
        ablation_sweep(model, x, x_adv, y, sigma, "out", [1])
    with pytest.raises(ValueError, match="8 values but layer 'out' has 2"):
        ablation_sweep(model, x, x_adv, y, sigma["hidden"], "out", [1])
    with pytest.raises(ValueError, match="shape"):
        ablation_sweep(model, x, x_adv[:3], y, sigma, "hidden", [1])


def test_summarise_sweep_handles_nan_and_sample_std():
    records = [{"selection": "random", "k": 2, "seed": s, "accuracy": a, "success_rate": float("nan")}
               for s, a in enumerate([0.2, 0.4, 0.9])]
    (row,) = summarise_sweep(records)
    assert row["accuracy_mean"] == pytest.approx(0.5)
    assert row["accuracy_std"] == pytest.approx(torch.tensor([0.2, 0.4, 0.9]).double().std().item())
    assert row["success_rate_mean"] != row["success_rate_mean"]  # NaN stays NaN


def test_selection_split_is_disjoint_paired_and_checks_its_arguments():
    x, y = images(n=6), torch.arange(6)
    (x_s, y_s), (x_e, y_e) = selection_split(x, y, n_select=2)
    assert y_s.tolist() == [0, 1] and y_e.tolist() == [2, 3, 4, 5]
    assert torch.equal(torch.cat([x_s, x_e]), x)
    with pytest.raises(ValueError, match=r"\[1, 5\]"):
        selection_split(x, y, n_select=6)  # nothing left to evaluate on
    with pytest.raises(ValueError, match="paired"):
        selection_split(x, y[:5], n_select=2)
    with pytest.raises(TypeError, match="tensors"):
        selection_split(n_select=2)


def test_e3_chooses_the_neurons_on_other_images_than_it_evaluates_on(tmp_path, monkeypatch):
    """E3's sigma (which picks top-k) sees only the selection half, every sweep only the other half."""
    import nslib.sensitivity
    from nslib.experiments import ablation as e3
    from nslib.experiments.context import Context

    seen = {"sigma": [], "sweep": []}
    real_sigma, real_sweep = nslib.sensitivity.neuron_sensitivity, ablation.ablation_sweep

    def spy_sigma(model, benign, *args, **kwargs):
        seen["sigma"].append(benign.detach().cpu().clone())
        return real_sigma(model, benign, *args, **kwargs)

    def spy_sweep(model, benign, *args, **kwargs):
        seen["sweep"].append(benign.detach().cpu().clone())
        return real_sweep(model, benign, *args, **kwargs)

    monkeypatch.setattr(nslib.sensitivity, "neuron_sensitivity", spy_sigma)
    monkeypatch.setattr(ablation, "ablation_sweep", spy_sweep)
    ctx = Context(tmp_path, n_images=8, device=torch.device("cpu"), progress=False, seeds=1)
    result = e3.run(ctx)
    x, _ = ctx.test_batch()
    (selected,), evaluated = seen["sigma"], seen["sweep"]
    assert len(evaluated) == len(e3.LAYERS) * len(e3.MODES)
    assert torch.equal(selected, x[:4].cpu()) and all(torch.equal(e, x[4:].cpu()) for e in evaluated)
    flat_sel, flat_eval = selected.flatten(1), evaluated[0].flatten(1)
    assert not (flat_sel[:, None] == flat_eval[None]).all(dim=2).any()  # no image in both parts
    rows = result.outputs["e3_ablation.csv"]
    assert {(r["selected_on"], r["evaluated_on"]) for r in rows} == {("test images 0-3", "test images 4-7")}
    assert "chosen on test images 0-3" in result.finding and "test images 4-7" in result.finding
    assert "test images 0-3" in result.outputs["e3_ablation.png"].get_suptitle()


def test_e3_verdict_and_comparison_text_on_hand_made_rows():
    from nslib.experiments.ablation import comparison_text, quarter_k, verdict

    def rows(top, random, std):
        return [{"layer": "fc1", "mode": "stabilise", "selection": s, "k": k, "accuracy_mean": a,
                 "accuracy_std": std if s == "random" else 0.0}
                for k in (32, 64) for s, a in (("top", top), ("random", random), ("bottom", 0.0))]

    assert quarter_k(rows(0.6, 0.2, 0.05), "fc1", 200) == 64
    assert verdict(rows(0.6, 0.2, 0.05), {"fc1": 64}) == "held"
    assert verdict(rows(0.25, 0.2, 0.01), {"fc1": 64}) == "held only weakly"  # 5 points > 2 std
    assert verdict(rows(0.25, 0.2, 0.05), {"fc1": 64}) == "did not hold"
    assert comparison_text(rows(0.6, 0.2, 0.05), "fc1", 64, 200) == (
        "fc1, k = 64 of 200: top-k 60.0%, random-k 20.0% ± 5.0%, bottom-k 0.0%")
    with pytest.raises(ValueError, match="selections"):
        verdict(rows(0.6, 0.2, 0.05), {"fc1": 16})


def test_public_names():
    assert set(ablation.__all__) >= {"deactivate", "stabilise", "ablation_sweep", "summarise_sweep",
                                     "selection_split"}
