"""nslib.models: shapes, stable layer names, normalisation inside the model."""
import pytest
import torch

from nslib.models import ARCHITECTURES, Normalize, build


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_build_outputs_logits(name, device):
    channels, h, w = ARCHITECTURES[name][1]
    model = build(name).eval().to(device)
    logits = model(torch.rand(2, channels, h, w, device=device))
    assert logits.shape == (2, 10) and logits.device == model.normalize.mean.device
    assert model.arch == name


def test_smallcnn_layer_names_and_neuron_counts():
    model = build("smallcnn")
    expected = {"conv1": 32, "conv2": 32, "conv3": 64, "conv4": 64, "fc1": 200, "fc2": 200, "fc3": 10}
    for name, width in expected.items():
        layer = model.get_submodule(name)
        assert (layer.out_channels if hasattr(layer, "out_channels") else layer.out_features) == width


def test_resnet_and_vgg_have_dotted_names():
    assert isinstance(build("resnet18").get_submodule("layer2.0.conv1"), torch.nn.Conv2d)
    assert isinstance(build("vgg16").get_submodule("conv5_3"), torch.nn.Conv2d)


def test_normalisation_is_inside_the_model():
    model = build("smallcnn", dataset="mnist5k")
    x = torch.full((1, 1, 28, 28), 0.1307)
    assert torch.allclose(model.normalize(x), torch.zeros_like(x), atol=1e-6)
    norm = Normalize((0.5, 0.25), (0.5, 0.25))
    x = torch.ones(1, 2, 1, 1)
    assert norm(x).flatten().tolist() == [1.0, 3.0]
    assert norm(x.double()).dtype == torch.float64


def test_dataset_sets_channels_and_unknown_names_are_listed():
    assert build("resnet18", dataset="cifar10").conv1.in_channels == 3
    with pytest.raises(ValueError, match="smallcnn"):
        build("alexnet")
    with pytest.raises(ValueError, match="28x28"):
        build("smallcnn", dataset="cifar10")
