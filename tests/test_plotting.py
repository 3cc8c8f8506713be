"""nslib.plotting and nslib.widgets: headless figures with titles, labels and the right parts."""
import base64
from collections import OrderedDict

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import nn  # noqa: E402

from nslib import plotting  # noqa: E402
from nslib.widgets import EXPLORER_TEXT, sensitivity_explorer  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def labelled(ax) -> bool:
    titled = bool(ax.get_title() or ax.figure.get_suptitle())
    return titled and bool(ax.get_xlabel()) and bool(ax.get_ylabel())


def test_upsample_is_bilinear_to_the_image_size():
    maps = torch.arange(8.0).view(2, 2, 2)
    out = plotting.upsample(maps, (8, 6))
    assert out.shape == (2, 8, 6)
    expected = torch.nn.functional.interpolate(maps[None], size=(8, 6), mode="bilinear")[0]
    torch.testing.assert_close(out, expected)
    assert plotting.upsample(maps[None], (4, 4)).shape == (1, 2, 4, 4)
    with pytest.raises(ValueError, match="linear layer"):
        plotting.upsample(torch.zeros(2, 5), (4, 4))


def test_plot_layer_sensitivity_grouped_bars():
    results = {"standard": {"conv1": 0.5, "conv2": 0.8, "fc1": 1.2},
               "pgd_at": {"conv1": 0.1, "conv2": 0.2, "fc1": 0.3}}
    fig = plotting.plot_layer_sensitivity(results)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert labelled(ax) and "|ΔF|" in ax.get_ylabel()
    assert len(ax.patches) == 2 * 3  # models x layers
    heights = sorted(p.get_height() for p in ax.patches)
    assert heights == pytest.approx(sorted([0.5, 0.8, 1.2, 0.1, 0.2, 0.3]))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["conv1", "conv2", "fc1"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["standard", "pgd_at"]


def test_plot_layer_sensitivity_into_a_given_ax():
    fig, ax = plt.subplots()
    assert plotting.plot_layer_sensitivity({"m": {"a": 1.0}}, ax=ax) is fig


@pytest.mark.parametrize("kind", ["violin", "sorted"])
def test_plot_sensitivity_distribution_one_panel_per_layer(kind):
    g = torch.Generator().manual_seed(0)
    sens = {"standard": {"conv1": torch.rand(8, generator=g), "conv2": torch.rand(16, generator=g)},
            "robust": {"conv1": torch.rand(8, generator=g) / 4, "conv2": torch.rand(16, generator=g) / 4}}
    fig = plotting.plot_sensitivity_distribution(sens, kind=kind)
    assert len(fig.axes) == 2
    assert fig.get_suptitle()
    # the y label once, on the first panel: repeated, the long label ran into the next panel
    assert "σ" in fig.axes[0].get_ylabel() and [ax.get_ylabel() for ax in fig.axes[1:]] == [""]
    for ax, n in zip(fig.axes, (8, 16)):
        assert ax.get_xlabel() and f"{n} neurons" in ax.get_title()
        if kind == "sorted":
            assert len(ax.lines) == 2
            ys = ax.lines[0].get_ydata()
            assert len(ys) == n and np.all(np.diff(ys) <= 0)  # sorted from the largest down
    one = plotting.plot_sensitivity_distribution(sens, layers=["conv2"], kind=kind)
    assert len(one.axes) == 1


def test_log_scale_labels_plain_numbers_within_a_decade():
    fig, ax = plt.subplots()
    ax.plot([1, 2], [3.0, 7.0])
    plotting.log_scale(ax)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert ax.get_yscale() == "log" and "5" in labels and not any("10^" in l or "×" in l for l in labels), labels
    with pytest.raises(ValueError, match="'x' or 'y'"):
        plotting.log_scale(ax, "z")


def test_plot_ablation_curves_with_a_band_for_random():
    records = []
    for k in (0, 1, 2):
        records.append({"selection": "top", "k": k, "seed": None, "accuracy": 0.1 + 0.3 * k,
                        "success_rate": 0.9 - 0.3 * k, "layer": "conv3", "mode": "stabilise"})
        records.append({"selection": "bottom", "k": k, "seed": None, "accuracy": 0.1,
                        "success_rate": 0.9, "layer": "conv3", "mode": "stabilise"})
        for seed in range(3):
            records.append({"selection": "random", "k": k, "seed": seed, "accuracy": 0.1 + 0.05 * k * seed,
                            "success_rate": 0.9, "layer": "conv3", "mode": "stabilise"})
    fig = plotting.plot_ablation_curves(records)
    (ax,) = fig.axes
    assert labelled(ax) and "conv3" in ax.get_title() and "%" in ax.get_ylabel()
    assert len(ax.lines) == 3
    top = next(line for line in ax.lines if line.get_label().startswith("top"))
    np.testing.assert_allclose(top.get_ydata(), [10, 40, 70])
    assert len(ax.collections) == 1  # only random has a spread band
    assert ax.get_xscale() == "linear"  # k = 0, 1, 2: no log axis
    fig2 = plotting.plot_ablation_curves(records, metric="success_rate")
    assert "success" in fig2.axes[0].get_ylabel()
    wide = [dict(r, k=(0, 1, 64)[r["k"]]) for r in records]  # k = 0, 1, 64: log-like, a tick at every k
    ax3 = plotting.plot_ablation_curves(wide).axes[0]
    assert ax3.get_xscale() == "symlog" and list(ax3.get_xticks()) == [0, 1, 64]
    with pytest.raises(ValueError, match="metric"):
        plotting.plot_ablation_curves(records, metric="loss")



def test_plot_ablation_grid_one_panel_per_layer_and_mode():
    def summary(layer, mode):
        return [{"selection": s, "k": k, "accuracy_mean": 0.1 * k, "accuracy_std": 0.0, "layer": layer, "mode": mode}
                for s in ("top", "random", "bottom") for k in (0, 1, 2)]

    summaries = {(layer, mode): summary(layer, mode) for layer in ("conv4", "fc1")
                 for mode in ("stabilise", "deactivate")}
    fig = plotting.plot_ablation_grid(summaries, title="E3 grid")
    width, height = fig.get_size_inches()
    assert fig.get_suptitle() == "E3 grid" and width <= 9 and height <= 8  # readable at notebook width
    assert len(fig.axes) == 4 and all(labelled(ax) for ax in fig.axes)
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)  # one shared legend
    titles = [ax.get_title() for ax in fig.axes]  # rows: layers, columns: modes
    assert "Stabilise" in titles[0] and "conv4" in titles[0] and "Deactivate" in titles[1] and "fc1" in titles[3]
    with pytest.raises(ValueError, match="empty"):
        plotting.plot_ablation_grid({})


def test_plot_sns_knobs_three_panels_against_the_baseline():
    def run(name, knob, lam=0.01, k=0.1, layers="conv3+conv4+fc1", pgd=0.5):
        return {"name": name, "knob": knob, "lam": lam, "k": k, "layers": layers, "clean_acc": 0.9, "pgd40_acc": pgd}

    rows = [run("lam0", "lambda", lam=0.0, pgd=0.4), run("lam0.01", "lambda"), run("k1", "k", k=1),
            run("k20", "k", k=20), run("layers_fc1", "layers", layers="fc1")]
    fig = plotting.plot_sns_knobs(rows, rows[0], {"epochs": 10, "test_n": 500})
    assert len(fig.axes) == 3 and "epochs 10" in fig.get_suptitle()
    lam, k, layers = fig.axes
    assert "%" in lam.get_ylabel() and all(ax.get_xlabel() and ax.get_title() for ax in fig.axes)
    np.testing.assert_allclose(lam.lines[0].get_ydata(), [40, 50])       # PGD-40 accuracy in %
    assert list(k.lines[0].get_xdata()) == ["1", "10%≤10", "20"]  # the default placed at k = 10
    assert lam.lines[-1].get_ydata()[0] == pytest.approx(40)              # PGD-AT's dashed line
    assert len(layers.lines[0].get_xdata()) == 2                           # the default and the fc1 run
    assert not lam.containers and not lam.patches                          # one seed: no error bars, no band


def test_plot_sns_knobs_error_bars_over_seeds():
    def run(name, knob, lam=0.01, k=0.1, pgd=0.5, std=0.02, seeds=3):
        return {"name": name, "knob": knob, "lam": lam, "k": k, "layers": "conv3+conv4+fc1", "seeds": seeds,
                "clean_acc": 0.9, "clean_acc_std": 0.01, "pgd40_acc": pgd, "pgd40_acc_std": std}

    rows = [run("lam0", "lambda", lam=0.0, pgd=0.4, std=0.03), run("lam0.01", "lambda", std=0.05),
            run("k1", "k", k=1, seeds=1, std=0.0)]
    lam, k, _ = plotting.plot_sns_knobs(rows, rows[0], {"epochs": 10, "test_n": 500}).axes
    pgd, clean = lam.containers
    np.testing.assert_allclose(np.asarray(pgd.lines[0].get_ydata(), dtype=float), [40, 50])
    heights = [s[1][1] - s[0][1] for s in pgd.lines[2][0].get_segments()]  # +- std, in %
    np.testing.assert_allclose(heights, [6, 10])
    np.testing.assert_allclose([s[1][1] - s[0][1] for s in clean.lines[2][0].get_segments()], [2, 2])
    (band,) = lam.patches                                                    # PGD-AT's std as a band
    ys = band.get_patch_transform().transform(band.get_path().vertices)[:, 1]  # a Polygon or a Rectangle
    np.testing.assert_allclose([ys.min(), ys.max()], [37, 43])
    assert len(k.containers) == 2                                            # k1 (1 seed) beside lam0.01 (3)

def test_plot_sns_knobs_sensitivity_on_a_log_scale():
    def run(name, knob, lam=0.01, k=0.1, sens=0.2):
        return {"name": name, "knob": knob, "lam": lam, "k": k, "layers": "conv3+conv4+fc1", "clean_acc": 0.9,
                "pgd40_acc": 0.5, "mean_sensitivity": sens}

    rows = [run("lam0", "lambda", lam=0.0, sens=0.5), run("lam0.01", "lambda"), run("k1", "k", k=1, sens=0.4)]
    fig = plotting.plot_sns_knobs(rows, rows[0], {"epochs": 10, "test_n": 500}, metric="sensitivity")
    lam = fig.axes[0]
    assert lam.get_yscale() == "log" and "sensitivity" in lam.get_ylabel()
    np.testing.assert_allclose(lam.lines[0].get_ydata(), [0.5, 0.2])
    assert lam.lines[-1].get_ydata()[0] == pytest.approx(0.5)                # PGD-AT's dashed line
    assert fig.get_size_inches()[0] <= 9                                     # readable at notebook width
    with pytest.raises(ValueError, match="metric"):
        plotting.plot_sns_knobs(rows, rows[0], {}, metric="loss")


def test_plot_feature_maps_upsamples_to_the_image_size(device):
    g = torch.Generator().manual_seed(0)
    image, adversarial = (torch.rand(3, 32, 32, generator=g).to(device) for _ in range(2))
    maps, adv_maps = (torch.rand(1, 6, 8, 8, generator=g).to(device) for _ in range(2))  # as a model outputs them
    sigma = torch.linspace(0, 1, 6)
    fig = plotting.plot_feature_maps(image, adversarial, maps, adv_maps, [5, 2], sensitivity=sigma,
                                     layer_name="conv2")
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 2 * 3  # (benign, adversarial) x (input + 2 neurons)
    assert "conv2" in fig.get_suptitle()
    overlay = image_axes[1].images[-1].get_array()
    assert overlay.shape == (32, 32)  # the upsampled map has the image's size
    expected = plotting.upsample(maps[0, [5]], (32, 32))[0].cpu().numpy()
    np.testing.assert_allclose(np.asarray(overlay), expected, rtol=1e-6)
    assert "neuron 5" in image_axes[1].get_title() and "σ = 1" in image_axes[1].get_title()
    assert image_axes[0].get_ylabel() == "benign x"
    with pytest.raises(ValueError, match="linear layer"):
        plotting.plot_feature_maps(image, adversarial, torch.rand(1, 6, device=device), torch.rand(1, 6, device=device), [0])
    with pytest.raises(ValueError, match="neuron_indices"):
        plotting.plot_feature_maps(image, adversarial, maps, adv_maps, [6])


def test_plot_examples_grid_and_colours(device):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 1, 8, 8, generator=g).to(device)
    x_adv = (x + 0.1).clamp(0, 1)
    y = torch.tensor([0, 1, 2, 3, 4], device=device)
    clean, adv = torch.tensor([0, 1, 2, 3, 0], device=device), torch.tensor([1, 1, 0, 0, 0], device=device)
    fig = plotting.plot_examples(x, x_adv, y, clean, adv, class_names=list("abcde"), n=4)
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 3 * 4  # benign, adversarial, perturbation rows
    assert fig.get_suptitle()
    titles = [ax.get_title() for ax in image_axes[:8]]
    assert titles[0] == "label a\npred a" and titles[4] == "pred b"
    assert image_axes[4].title.get_color() == "tab:red" and image_axes[5].title.get_color() == "tab:green"
    fig2 = plotting.plot_examples(x, x_adv, y, clean, adv, n=10, perturbation=False)
    assert len([ax for ax in fig2.axes if ax.images]) == 2 * 5


def test_plot_accuracy_vs_eps():
    curves = {"standard": ([0, 0.1, 0.3], [0.95, 0.4, 0.01]), "pgd_at": ([0, 0.1, 0.3], [0.98, 0.96, 0.9])}
    fig = plotting.plot_accuracy_vs_eps(curves)
    (ax,) = fig.axes
    assert labelled(ax) and len(ax.lines) == 2
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [98, 96, 90])
    with pytest.raises(ValueError, match="fractions"):
        plotting.plot_accuracy_vs_eps({"m": ([0, 0.1], [95, 40])})


def test_plot_sensitivity_vs_robustness():
    points = [{"name": "standard", "sensitivity": 1.0, "robust_acc": 0.01},
              {"name": "pgd_at", "sensitivity": 0.2, "robust_acc": 0.9},
              {"name": "sns", "sensitivity": 0.15, "robust_acc": 0.91}]
    fig = plotting.plot_sensitivity_vs_robustness(points)
    (ax,) = fig.axes
    assert labelled(ax)
    assert [t.get_text() for t in ax.texts] == ["standard", "pgd_at", "sns"]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [1.0, 0.2, 0.15])
    grouped = [dict(p, group="run A" if i < 2 else "run B") for i, p in enumerate(points)]
    assert len(plotting.plot_sensitivity_vs_robustness(grouped).axes[0].lines) == 2
    with pytest.raises(ValueError, match="robust_acc"):
        plotting.plot_sensitivity_vs_robustness([{"name": "x", "sensitivity": 1.0}])


# --- widgets ----------------------------------------------------------------------------------

def tiny_cnn(device="cpu") -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict([("conv1", nn.Conv2d(1, 3, 3)), ("relu1", nn.ReLU()),
                                      ("conv2", nn.Conv2d(3, 5, 3)), ("relu2", nn.ReLU()),
                                      ("flatten", nn.Flatten()), ("fc", nn.Linear(5 * 4 * 4, 4))])).eval().to(device)


def shift_attack(eps):
    """A stand-in 'attack': adds eps to every pixel (keeps [0, 1])."""
    return lambda images, labels: (images + eps).clamp(0, 1)


def explorer_inputs(device="cpu"):
    """The model on the device, the images and labels on the CPU (as notebook 03 passes them)."""
    g = torch.Generator().manual_seed(0)
    return tiny_cnn(device), torch.rand(3, 1, 8, 8, generator=g) * 0.5, torch.tensor([0, 1, 2])


def test_explorer_static_mode_returns_a_figure(device):
    model, x, y = explorer_inputs(device)
    sigma = {"conv1": torch.tensor([0.1, 0.9, 0.3]), "conv2": torch.rand(5)}
    fig = sensitivity_explorer(model, x, y, ["conv1", "conv2"], shift_attack, [0.1, 0.2],
                               sensitivity=sigma, static=True)
    assert isinstance(fig, Figure)
    assert "conv1 neuron 1" in fig.get_suptitle()  # default: the most sensitive neuron
    assert "ε = 0.2" in fig.get_suptitle()  # default: the largest eps
    overlay = [ax for ax in fig.axes if ax.images][1].images[-1].get_array()
    assert overlay.shape == (8, 8)
    auto = sensitivity_explorer(model, x, y, ["conv2"], shift_attack, [0.1])  # no kernel in pytest
    assert isinstance(auto, Figure)
    with pytest.raises(ValueError, match="conv layers"):
        sensitivity_explorer(model, x, y, ["fc"], shift_attack, [0.1], static=True)
    with pytest.raises(ValueError, match="eps"):
        sensitivity_explorer(model, x, y, ["conv1"], shift_attack, [0.1], eps=0.5, static=True)


def test_explorer_pair_sensitivity_in_static_title(device):
    model, x, y = explorer_inputs(device)
    fig = sensitivity_explorer(model, x, y, ["conv1"], shift_attack, [0.25], index=2, neuron=0, static=True)
    with torch.no_grad():
        pair = x[2:3].to(device)
        expected = (model.conv1(pair) - model.conv1((pair + 0.25).clamp(0, 1)))[0, 0].abs().mean()
    assert f"sensitivity on this pair {expected.item():.3g}" in fig.get_suptitle()
    assert "image 2 (label 2)" in fig.get_suptitle()


def controls(box) -> dict:
    found = {}
    for child in box.children:
        if hasattr(child, "children"):
            found.update(controls(child))
        elif getattr(child, "description", ""):
            found[child.description] = child
    return found


def test_explorer_widget_mode_controls():
    ipywidgets = pytest.importorskip("ipywidgets")
    model, x, y = explorer_inputs()
    sigma = {"conv1": torch.tensor([0.1, 0.9, 0.3]), "conv2": torch.tensor([0.5, 0.1, 0.7, 0.2, 0.0])}
    box = sensitivity_explorer(model, x, y, ["conv1", "conv2"], shift_attack, [0.1, 0.2, 0.3],
                               sensitivity=sigma, static=False)
    assert isinstance(box, ipywidgets.VBox)
    bundle = box._repr_mimebundle_()  # what a saved notebook keeps: one line, no VBox(children=...) repr
    assert bundle["text/plain"] == EXPLORER_TEXT and "application/vnd.jupyter.widget-view+json" in bundle
    # where widgets cannot run (saved notebook, nbconvert HTML, the website): the first selection as a picture
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")
    assert bundle["image/png"] in bundle["text/html"] and "run this cell in Jupyter" in bundle["text/html"]
    c = controls(box)
    assert set(c) == {"image", "eps", "layer", "neuron"}
    assert (c["image"].min, c["image"].max, c["image"].value) == (0, 2, 0)
    assert [value for _, value in c["eps"].options] == [0.1, 0.2, 0.3] and c["eps"].value == 0.3
    assert list(c["layer"].options) == ["conv1", "conv2"]
    assert [value for _, value in c["neuron"].options] == [1, 2, 0]  # most sensitive first
    c["layer"].value = "conv2"
    assert [value for _, value in c["neuron"].options] == [2, 0, 3, 1, 4]
    assert c["neuron"].value == 2
    c["image"].value = 1
    c["eps"].value = 0.1
    assert not plt.get_fignums()  # every drawn figure was closed after display


def test_saved_explorer_keeps_its_picture_not_a_dead_widget_view():
    """clean_notebook drops a widget view (its state is not saved, so it would render empty) where the
    output carries a picture; nbconvert's HTML then shows the picture, never an empty view or a repr."""
    pytest.importorskip("ipywidgets")
    import nbformat
    from nbconvert import HTMLExporter

    from nslib.editions import clean_notebook

    model, x, y = explorer_inputs()
    box = sensitivity_explorer(model, x, y, ["conv2"], shift_attack, [0.1], static=False)
    bundle = box._repr_mimebundle_()
    cell = nbformat.v4.new_code_cell("sensitivity_explorer(...)", outputs=[
        nbformat.v4.new_output("display_data", data=bundle)])
    notebook = clean_notebook(nbformat.v4.new_notebook(cells=[cell]))
    data = notebook.cells[0].outputs[0]["data"]
    assert "application/vnd.jupyter.widget-view+json" not in data and "image/png" in data
    page, _ = HTMLExporter().from_notebook_node(notebook)
    assert f"data:image/png;base64,{bundle['image/png']}" in page
    assert "Explorer(" not in page and "VBox(" not in page


def test_explorer_in_a_kernel_without_ipywidgets_names_the_extra(monkeypatch):
    import builtins
    import types

    import IPython

    real_import = builtins.__import__

    def no_ipywidgets(name, *args, **kwargs):
        if name == "ipywidgets":
            raise ImportError("No module named 'ipywidgets'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ipywidgets)
    monkeypatch.setattr(IPython, "get_ipython", lambda: types.SimpleNamespace(kernel=object()))
    model, x, y = explorer_inputs()
    with pytest.raises(ImportError, match=r'pip install "nslib-course\[course\]".*static=True'):
        sensitivity_explorer(model, x, y, ["conv2"], shift_attack, [0.1])


def test_explorer_widget_mode_without_sensitivity_lists_all_neurons():
    pytest.importorskip("ipywidgets")
    model, x, y = explorer_inputs()
    box = sensitivity_explorer(model, x, y, ["conv2"], shift_attack, [0.1], static=False)
    assert [value for _, value in controls(box)["neuron"].options] == [0, 1, 2, 3, 4]
