"""nslib.hooks: layer outputs by dotted name, clones safe from in-place ops, hooks always removed."""
import pytest
import torch
from captum.attr import LayerActivation
from torch import nn

from nslib.hooks import activations, capture, get_layer, layer_names, resolve_layers, summary


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.conv(x))


class Net(nn.Module):
    """conv -> in-place ReLU (nested, so names are dotted) -> linear -> in-place ReLU -> linear.

    ``unused`` is registered but never called by ``forward``.
    """

    def __init__(self):
        super().__init__()
        self.block = Block()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(4 * 5 * 5, 6)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(6, 3)
        self.unused = nn.Linear(3, 3)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(self.flatten(self.block(x)))))


def make_model(device="cpu"):
    torch.manual_seed(0)
    return Net().eval().to(device)


def no_hooks_left(model):
    return all(not m._forward_hooks for m in model.modules())


def test_capture_by_dotted_name_returns_layer_output_shapes(device):
    model, x = make_model(device), torch.rand(2, 3, 5, 5, device=device)
    with capture(model, ["block.conv", "fc1", model.fc2]) as acts:
        model(x)
    assert list(acts) == ["block.conv", "fc1", "fc2"]  # a module is named by its dotted name
    assert acts["block.conv"].shape == (2, 4, 5, 5)
    assert acts["fc1"].shape == (2, 6)
    assert acts["fc2"].shape == (2, 3)


def test_unknown_layer_lists_the_valid_names():
    model = make_model()
    with pytest.raises(ValueError, match=r"unknown layer 'block.conv2'.*'block\.conv'"):
        with capture(model, "block.conv2"):
            pass
    with pytest.raises(ValueError, match="fc1"):
        get_layer(model, "")
    with pytest.raises(ValueError, match="not part of this model"):
        get_layer(model, nn.Linear(1, 1))
    with pytest.raises(TypeError, match="dotted name"):
        get_layer(model, 3)
    with pytest.raises(ValueError, match="no layers given"):
        resolve_layers(model, [])
    assert layer_names(model, kinds=(nn.Linear,)) == ["fc1", "fc2", "unused"]
    assert no_hooks_left(model)


def test_hooks_are_removed_after_the_block_and_on_exceptions(device):
    model, x = make_model(device), torch.rand(2, 3, 5, 5, device=device)
    with capture(model, ["block.conv", "fc1"]):
        assert model.block.conv._forward_hooks and model.fc1._forward_hooks
        model(x)
    assert no_hooks_left(model)
    with pytest.raises(RuntimeError, match="boom"):
        with capture(model, ["block.conv", "fc1"]):
            model(x)
            raise RuntimeError("boom")
    assert no_hooks_left(model)
    with pytest.raises(RuntimeError):  # an error inside the forward pass itself
        with capture(model, "fc1"):
            model(torch.rand(2, 3, 4, 4, device=device))
    assert no_hooks_left(model)


def test_captured_outputs_are_clones_unchanged_by_inplace_relu(device):
    model, x = make_model(device), torch.randn(4, 3, 5, 5).clamp(-1, 1).to(device)
    with torch.no_grad():
        expected_conv = nn.functional.conv2d(x, model.block.conv.weight, model.block.conv.bias, padding=1)
        expected_fc1 = model.fc1(model.block(x).flatten(1))
    with capture(model, ["block.conv", "fc1"]) as acts, torch.no_grad():
        model(x)
    assert (acts["block.conv"] < 0).any() and (acts["fc1"] < 0).any()  # pre-ReLU values survived
    torch.testing.assert_close(acts["block.conv"], expected_conv)
    torch.testing.assert_close(acts["fc1"], expected_fc1)


@pytest.mark.parametrize("layer", ["block.conv", "fc1"])
def test_matches_captum_layer_activation_with_inplace_relus(layer, device):
    model, x = make_model(device), torch.randn(4, 3, 5, 5).to(device)
    ours = activations(model, x, layer)[layer]
    theirs = LayerActivation(model, model.get_submodule(layer)).attribute(x)
    assert ours.shape == theirs.shape
    assert (ours < 0).any()
    torch.testing.assert_close(ours, theirs.detach(), atol=1e-6, rtol=0)


def test_detach_false_keeps_the_graph_and_detach_true_does_not(device):
    model, x = make_model(device), torch.rand(2, 3, 5, 5, device=device)
    with capture(model, "fc1") as kept:
        model(x)
    assert kept["fc1"].requires_grad is False and kept["fc1"].grad_fn is None
    with capture(model, "fc1", detach=False) as kept:
        model(x)
    assert kept["fc1"].requires_grad
    kept["fc1"].pow(2).sum().backward()
    assert model.fc1.weight.grad is not None and model.fc1.weight.grad.abs().sum() > 0
    assert model.block.conv.weight.grad.abs().sum() > 0  # the gradient flows through earlier layers


def test_activations_of_a_layer_the_forward_pass_never_uses(device):
    model = make_model(device)
    with pytest.raises(RuntimeError, match=r"\['unused'\] were never called"):
        activations(model, torch.rand(1, 3, 5, 5), ["fc1", "unused"])
    assert no_hooks_left(model)
    acts = activations(model, torch.rand(1, 3, 5, 5), ["fc2", "fc1"])  # CPU images: moved to the model
    assert list(acts) == ["fc2", "fc1"]
    assert acts["fc1"].device == model.fc1.weight.device


def test_summary_lists_layers_in_call_order(device):
    rows = summary(make_model(device), torch.rand(1, 3, 5, 5))  # CPU example: moved to the model
    assert [r["name"] for r in rows] == ["block.conv", "block.relu", "flatten", "fc1", "relu", "fc2"]
    assert rows[0]["shape"] == (4, 5, 5) and rows[0]["neurons"] == 4
    assert rows[3]["neurons"] == 6
