"""nslib.sensitivity: the formula on a hand-computed case, streaming, modes, top-k choice."""
import weakref
from collections import OrderedDict

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nslib.models import build
from nslib.sensitivity import (layer_sensitivity, neuron_distance, neuron_sensitivity, rank_neurons,
                               sensitive_neurons)


# --- a model whose activations can be written down ------------------------------------

def hand_model():
    """1x1 conv (2 channels: x and 0.5 - 2x) -> in-place ReLU -> flatten -> linear (2 units).

    ``fc`` unit 0 sums the 4 positions of ReLU channel 0, unit 1 those of ReLU channel 1.
    """
    model = nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(1, 2, 1)), ("relu", nn.ReLU(inplace=True)),
        ("flatten", nn.Flatten()), ("fc", nn.Linear(8, 2)),
    ]))
    with torch.no_grad():
        model.conv.weight.copy_(torch.tensor([1.0, -2.0]).view(2, 1, 1, 1))
        model.conv.bias.copy_(torch.tensor([0.0, 0.5]))
        model.fc.weight.copy_(torch.tensor([[1.0] * 4 + [0.0] * 4, [0.0] * 4 + [1.0] * 4]))
        model.fc.bias.zero_()
    return model


# Two pairs of 2x2 images, written row-major.
PIXELS = [[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.5, 0.5]], [[0.2, 0.2, 0.1, 0.4], [0.6, 0.4, 0.5, 0.9]]
BENIGN, ADVERSARIAL = (torch.tensor(p).view(2, 1, 2, 2) for p in PIXELS)
# By hand. x - x' = [-.1, 0, .2, 0] and [-.1, .1, 0, -.4]; mean |.| = .075 and .15.
# conv channel 0 (x):       pair distances .075, .15            -> sigma .1125
# conv channel 1 (.5 - 2x): pair distances .15,  .30            -> sigma .225
#   (measured before the in-place ReLU; after it, the value would be .0625)
# fc unit 0 = sum of channel 0: 1.0 vs 0.9, 2.0 vs 2.4          -> (.1 + .4) / 2 = .25
# fc unit 1 = sum of ReLU(channel 1): ReLU(.3, .1, -.1, -.3) = .4 vs ReLU(.1, .1, .3, -.3) = .5;
#   pair 2: all of .5 - 2x' are negative, so 0 vs 0            -> (.1 + 0) / 2 = .05
EXPECTED = {"conv": [0.1125, 0.225], "fc": [0.25, 0.05]}


def assert_close(actual, expected, atol=1e-6):
    """Compared on the CPU: ``actual`` may live on the test device, ``expected`` be a literal."""
    actual = torch.as_tensor(actual, dtype=torch.float64).cpu()
    expected = torch.as_tensor(expected, dtype=torch.float64).cpu()
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


def test_hand_computed_case_conv_and_linear(device):
    sens = neuron_sensitivity(hand_model().to(device), BENIGN.to(device), ADVERSARIAL.to(device), ["conv", "fc"])
    assert list(sens) == ["conv", "fc"]
    for name, expected in EXPECTED.items():
        assert_close(sens[name], expected)
        assert sens[name].dtype == torch.float32 and sens[name].device.type == "cpu"
    assert layer_sensitivity(sens) == pytest.approx({"conv": 0.16875, "fc": 0.15}, abs=1e-6)


def test_hand_computed_case_per_sample_distances(device):
    model, benign, adversarial = hand_model().to(device), BENIGN.to(device), ADVERSARIAL.to(device)
    conv_clean = model.conv(benign)
    conv_adv = model.conv(adversarial)
    assert_close(neuron_distance(conv_clean, conv_adv).detach(), [[0.075, 0.15], [0.15, 0.3]])
    assert_close(neuron_distance(model(benign), model(adversarial)).detach(), [[0.1, 0.1], [0.4, 0.0]])


def test_float64_model_gives_float64(device):
    benign, adversarial = (torch.tensor(p, dtype=torch.float64, device=device).view(2, 1, 2, 2) for p in PIXELS)
    sens = neuron_sensitivity(hand_model().double().to(device), benign, adversarial, "fc")
    assert sens["fc"].dtype == torch.float64
    assert_close(sens["fc"], EXPECTED["fc"], atol=1e-12)


# --- batching and streaming -------------------------------------------------------------

def noise_attack(x, y):
    """A deterministic stand-in for an attack: a label-dependent shift, clipped to [0, 1]."""
    return (x + 0.05 * (y.view(-1, 1, 1, 1).to(x.dtype) - 4.5) * torch.cos(40 * x)).clamp(0, 1)


@pytest.fixture(scope="module")
def cnn(device):
    torch.manual_seed(1)
    return build("smallcnn").eval().to(device)


@pytest.fixture(scope="module")
def data(device):
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(7, 1, 28, 28, generator=gen).to(device)
    y = torch.randint(0, 10, (7,), generator=gen).to(device)
    return x, y, noise_attack(x, y)


LAYERS = ["conv1", "conv4", "fc1", "fc3"]


def test_batching_and_streaming_match_one_big_batch(cnn, data):
    x, y, x_adv = data
    reference = neuron_sensitivity(cnn, x, x_adv, LAYERS, batch_size=len(x))
    results = [neuron_sensitivity(cnn, x, x_adv, LAYERS, batch_size=b) for b in (1, 3)]
    results.append(neuron_sensitivity(cnn, x, layers=LAYERS, attack=noise_attack, labels=y, batch_size=2))
    loader = DataLoader(TensorDataset(x, y), batch_size=3)
    results.append(neuron_sensitivity(cnn, loader, layers=LAYERS, attack=noise_attack, progress=True))
    assert reference["conv1"].shape == (32,) and reference["fc1"].shape == (200,)
    assert reference["fc3"].shape == (10,) and (reference["conv1"] > 0).all()
    for result in results:
        assert list(result) == LAYERS
        for name in LAYERS:
            assert_close(result[name], reference[name])


def test_identical_inputs_give_exactly_zero(cnn, data):
    x = data[0]
    sens = neuron_sensitivity(cnn, x, x.clone(), batch_size=3)
    assert list(sens) == ["conv1", "conv2", "conv3", "conv4", "fc1", "fc2", "fc3"]  # default layers
    assert all(torch.count_nonzero(s) == 0 for s in sens.values())


def test_streams_one_batch_at_a_time_for_n_much_larger_than_batch(device):
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 5)).to(device)
    x = torch.rand(2000, 1, 6, 6)
    y = torch.randint(0, 10, (2000,))
    live, most = [0], [0]

    def release():
        live[0] -= 1

    def counted_batches(batch_size=50):
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size].clone()
            live[0] += 1
            most[0] = max(most[0], live[0])
            weakref.finalize(batch, release)
            yield batch, y[start:start + batch_size]
            del batch

    streamed = neuron_sensitivity(model, counted_batches(), layers=["0", "3"], attack=noise_attack)
    assert most[0] <= 2  # never more than the current batch (and the one being made) alive
    reference = neuron_sensitivity(model, x, noise_attack(x, y), ["0", "3"], batch_size=len(x))
    for name in ("0", "3"):
        assert_close(streamed[name], reference[name])


# --- modes and gradients ----------------------------------------------------------------

def bn_dropout_model():
    torch.manual_seed(4)
    return nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(1, 4, 3)), ("bn", nn.BatchNorm2d(4)), ("relu", nn.ReLU()),
        ("drop", nn.Dropout(0.5)), ("flatten", nn.Flatten()), ("fc", nn.Linear(4 * 6 * 6, 3)),
    ]))


def test_eval_mode_during_measurement_and_caller_modes_restored(device):
    model = bn_dropout_model()
    with torch.no_grad():  # give BatchNorm non-trivial running statistics
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.5, 2)
    model.to(device).train()
    model.conv.eval()  # a caller's mixed setting must survive
    stats = model.bn.running_mean.clone()
    x = torch.rand(6, 1, 8, 8).to(device)
    y = torch.randint(0, 3, (6,)).to(device)
    modes_seen = []

    def attack(images, labels):
        modes_seen.append(model.training or any(m.training for m in model.modules()))
        return noise_attack(images, labels)

    sens = neuron_sensitivity(model, x, layers=["bn", "fc"], attack=attack, labels=y, batch_size=4)
    assert modes_seen == [False, False]  # the attack, too, sees the model in eval mode
    assert model.training and model.bn.training and model.drop.training and not model.conv.training
    assert torch.equal(model.bn.running_mean, stats)  # eval mode: running statistics untouched
    x_adv = noise_attack(x, y)
    model.eval()
    with torch.no_grad():
        bn_clean, bn_adv = model[:2](x), model[:2](x_adv)
        fc_clean, fc_adv = model(x), model(x_adv)
    assert_close(sens["bn"], neuron_distance(bn_clean, bn_adv).mean(0))
    assert_close(sens["fc"], neuron_distance(fc_clean, fc_adv).mean(0))


def test_a_gradient_attack_runs_and_model_gradients_stay_untouched(cnn, data):
    x, y, _ = data

    def fgsm(images, labels):
        images = images.clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(cnn(images), labels)
        grad, = torch.autograd.grad(loss, images)
        return (images + 0.1 * grad.sign()).clamp(0, 1).detach()

    sens = neuron_sensitivity(cnn, x, layers="fc3", attack=fgsm, labels=y, batch_size=4)
    assert (sens["fc3"] > 0).all()
    assert all(p.grad is None for p in cnn.parameters())
    assert not x.requires_grad


def test_neuron_distance_is_differentiable():
    gen = torch.Generator().manual_seed(5)
    a = torch.randn(3, 2, 4, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(3, 2, 4, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(neuron_distance, (a, b))
    u = torch.randn(3, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    v = torch.randn(3, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(neuron_distance, (u, v))
    assert_close(neuron_distance(u, v).detach(), (u - v).abs().detach())


def test_neuron_distance_shape_errors():
    with pytest.raises(ValueError, match="same shape"):
        neuron_distance(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 5))
    with pytest.raises(ValueError, match="neurons along dim 1"):
        neuron_distance(torch.zeros(3), torch.zeros(3))
    with pytest.raises(TypeError, match="torch.Tensor"):
        neuron_distance([1.0], torch.zeros(1, 1))


# --- input errors -----------------------------------------------------------------------

def test_bad_inputs_give_clear_errors(cnn, data):
    x, y, x_adv = data
    with pytest.raises(ValueError, match="unknown layer 'conv9'.*'conv1'"):
        neuron_sensitivity(cnn, x, x_adv, "conv9")
    with pytest.raises(ValueError, match="same shape|shape of benign"):
        neuron_sensitivity(cnn, x, x_adv[:3], "conv1")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        neuron_sensitivity(cnn, x * 2, x_adv, "conv1")
    with pytest.raises(ValueError, match="labels=y"):
        neuron_sensitivity(cnn, x, layers="conv1", attack=noise_attack)
    with pytest.raises(ValueError, match="not both"):
        neuron_sensitivity(cnn, x, x_adv, "conv1", attack=noise_attack, labels=y)
    with pytest.raises(ValueError, match="attack="):
        neuron_sensitivity(cnn, DataLoader(TensorDataset(x, y), batch_size=3), layers="conv1")
    with pytest.raises(ValueError, match="adversarial examples"):
        neuron_sensitivity(cnn, x, layers="conv1")
    with pytest.raises(ValueError, match="batch_size"):
        neuron_sensitivity(cnn, x, x_adv, "conv1", batch_size=0)
    with pytest.raises(ValueError, match="not an \\(images, labels\\) pair"):
        neuron_sensitivity(cnn, DataLoader(x, batch_size=3), layers="conv1", attack=noise_attack)
    with pytest.raises(ValueError, match="no batches"):
        neuron_sensitivity(cnn, [], layers="conv1", attack=noise_attack)
    with pytest.raises(TypeError, match="as_tensor"):
        neuron_sensitivity(cnn, x.cpu().numpy(), x_adv, "conv1")
    with pytest.raises(ValueError, match="keep the shape"):
        neuron_sensitivity(cnn, x, layers="conv1", attack=lambda a, b: a[:, :, :5], labels=y)


def test_layer_sensitivity_from_a_model_or_a_dict(cnn, data):
    x, _, x_adv = data
    sens = neuron_sensitivity(cnn, x, x_adv, ["conv2", "fc2"])
    direct = layer_sensitivity(cnn, x, x_adv, ["conv2", "fc2"], batch_size=5)
    assert direct == pytest.approx(layer_sensitivity(sens), abs=1e-6)
    assert direct["conv2"] == pytest.approx(sens["conv2"].double().mean().item(), abs=1e-6)
    with pytest.raises(TypeError, match="only used with a model"):
        layer_sensitivity(sens, x)


# --- choosing the sensitive neurons -----------------------------------------------------

def test_fraction_count_and_cap():
    gen = torch.Generator().manual_seed(6)
    sigma30, sigma200 = torch.rand(30, generator=gen), torch.rand(200, generator=gen)
    top30 = torch.argsort(sigma30, descending=True)
    assert torch.equal(sensitive_neurons({"a": sigma30})["a"], top30[:3])  # 10 % of 30
    # 7 % of 100 is 7, not 8 (0.07 * 100 is 7.000000000000001 in floating point)
    assert len(sensitive_neurons({"b": sigma200[:100]}, k=0.07)["b"]) == 7
    assert torch.equal(sensitive_neurons({"a": sigma30}, k=3)["a"], top30[:3])
    assert len(sensitive_neurons({"a": sigma30}, k=0.01)["a"]) == 1  # rounded up, at least 1
    assert len(sensitive_neurons({"a": sigma30}, k=0.15)["a"]) == 5  # 4.5 rounded up
    chosen = sensitive_neurons({"a": sigma30, "b": sigma200})
    assert len(chosen["a"]) == 3 and len(chosen["b"]) == 10  # 20 capped at max_k = 10
    assert len(sensitive_neurons({"b": sigma200}, max_k=None)["b"]) == 20
    assert len(sensitive_neurons({"b": sigma200}, k=1.0, max_k=None)["b"]) == 200
    assert len(sensitive_neurons({"b": sigma200}, k=25)["b"]) == 25  # a count is not capped
    assert len(sensitive_neurons({"a": sigma30}, k=100)["a"]) == 30  # nor more than the layer
    assert len(sensitive_neurons({"a": sigma30}, k=0)["a"]) == 0
    assert chosen["b"].dtype == torch.long
    assert sigma200[chosen["b"]].tolist() == sorted(sigma200.tolist(), reverse=True)[:10]


def test_ties_are_broken_by_lower_index_and_bottom_k():
    sigma = torch.tensor([0.5, 0.9, 0.1, 0.9, 0.1, 0.9, 0.5])
    assert sensitive_neurons({"l": sigma}, k=2)["l"].tolist() == [1, 3]
    assert sensitive_neurons({"l": sigma}, k=4)["l"].tolist() == [1, 3, 5, 0]
    assert sensitive_neurons({"l": sigma}, k=3, largest=False)["l"].tolist() == [2, 4, 0]
    flat = torch.zeros(1000)
    assert sensitive_neurons({"l": flat}, k=5)["l"].tolist() == [0, 1, 2, 3, 4]
    assert sensitive_neurons({"l": flat}, k=5, largest=False)["l"].tolist() == [0, 1, 2, 3, 4]


def test_the_choice_on_the_device_is_the_cpus(device):
    """SNS picks its top-k on the training device (``on_device``, no wait for a GPU): the same
    indices as the CPU rule, ties and all (a stable sort on either device), left on the device."""
    torch.manual_seed(0)
    tied = torch.tensor([0.5, 0.9, 0.1, 0.9, 0.1, 0.9, 0.5])
    coarse = torch.randint(0, 4, (300,)).float()   # many ties
    for sigma in (tied, coarse, torch.rand(1000), torch.zeros(64)):
        for largest in (True, False):
            want = sensitive_neurons({"l": sigma}, k=0.1, max_k=None, largest=largest)["l"]
            got = sensitive_neurons({"l": sigma.to(device)}, k=0.1, max_k=None, largest=largest, on_device=True)["l"]
            assert got.device.type == device.type and torch.equal(got.cpu(), want)
    assert torch.equal(rank_neurons(coarse.to(device), on_device=True).cpu(), rank_neurons(coarse))
    # on the device the NaN check is left out (reading its answer would wait for a GPU)
    assert sensitive_neurons({"l": torch.tensor([0.1, float("nan")])}, k=1, on_device=True)["l"].numel() == 1


@pytest.mark.parametrize("k, error", [(1.5, ValueError), (0.0, ValueError), (-1, ValueError),
                                      (True, TypeError), ("10%", TypeError)])
def test_bad_k(k, error):
    with pytest.raises(error, match="k must|fractional k"):
        sensitive_neurons({"l": torch.rand(5)}, k=k)


def test_bad_max_k_and_bad_sensitivity():
    with pytest.raises(ValueError, match="max_k"):
        sensitive_neurons({"l": torch.rand(5)}, max_k=0)
    with pytest.raises(ValueError, match="1-D"):
        sensitive_neurons({"l": torch.rand(5, 2)})
    with pytest.raises(ValueError, match="NaN"):
        sensitive_neurons({"l": torch.tensor([0.1, float("nan")])})
    with pytest.raises(TypeError, match="non-empty dict"):
        sensitive_neurons({})


def test_relative_sensitivity_is_unchanged_when_a_layer_is_scaled(device):
    """Raw sigma grows 10x when a layer's output is scaled 10x; sigma / mean |F_l(x)| does not.
    The activation scale is checked against the layer output computed by hand."""
    from torch import nn

    from nslib.sensitivity import activation_scale, layer_sensitivity, relative_sensitivity

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 4)).to(device).eval()
    x = torch.rand(10, 1, 8, 8, device=device)
    x_adv = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    with torch.no_grad():
        assert activation_scale(model, x, ["3"], batch_size=3)["3"] == pytest.approx(model(x).abs().mean().item(), rel=1e-5)
    raw = layer_sensitivity(model, x, x_adv, ["0", "3"])
    rel = relative_sensitivity(raw, activation_scale(model, x, ["0", "3"]))
    with torch.no_grad():
        model[3].weight.mul_(10), model[3].bias.mul_(10)
    raw10 = layer_sensitivity(model, x, x_adv, ["0", "3"])
    rel10 = relative_sensitivity(raw10, activation_scale(model, x, ["0", "3"]))
    assert raw10["3"] == pytest.approx(10 * raw["3"], rel=1e-4) and raw10["0"] == pytest.approx(raw["0"])
    assert rel10 == pytest.approx(rel, rel=1e-4)
    with pytest.raises(KeyError, match="activation_scale"):
        relative_sensitivity(raw, {"0": 1.0})
