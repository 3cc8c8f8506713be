"""Notebook 05 (the capstone) on its CIFAR-10 path.

nbval runs the notebook on the embedded MNIST data; this test runs every code cell of it
with ``NSLIB_DATASET=cifar10`` on small files written in CIFAR-10's on-disk format
(``cifar-10-batches-py/``, pickled batches, ``tests/fakedata.py``; torchvision's md5 check is the only thing
bypassed), so the path a student takes after ``python -m nslib download cifar10`` is
exercised without a download. The cells run in this process, in order, in one namespace,
as a fresh kernel would run them.
"""
import contextlib
import io
from pathlib import Path

import matplotlib
import nbformat
from fakedata import write_cifar

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "05_your_own_model.ipynb"


def test_capstone_runs_on_cifar10_files(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as cifar

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    write_cifar(tmp_path / "downloads", n=60)  # 300 training images, 60 test images
    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())
    monkeypatch.setenv("NSLIB_DATASET", "cifar10")
    monkeypatch.setenv("NSLIB_DATA_ROOT", str(tmp_path / "downloads"))
    monkeypatch.setenv("NSLIB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("NSLIB_QUICK", "1")
    namespace = {"__name__": "__main__"}
    out = io.StringIO()
    cells = [c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code"]
    with contextlib.redirect_stdout(out):
        for source in cells:
            exec(compile(source, str(NOTEBOOK.name), "exec"), namespace)
    plt.close("all")
    printed = out.getvalue()
    assert "data: cifar10" in printed and "eps 0.03137" in printed
    assert namespace["x_test"].shape == (60, 3, 32, 32) and namespace["N"] == 60
    assert len(namespace["train_set"]) == 300
    assert "[FAIL]" not in printed and printed.count("[PASS]") == 7
    for recipe in ("standard", "pgd_at", "sns"):   # trained into NSLIB_RUNS, nothing under the repository
        assert list((tmp_path / "runs" / "05_your_own_model").glob(f"cifar10-mine-*-quick/{recipe}/model.pt"))
    assert set(namespace["finetuned"]) == {"standard", "pgd_at", "sns"}
    assert "SNS " in printed and "PGD-AT: difference" in printed
