"""Small data files in torchvision's on-disk formats, written by tests (no downloads)."""
import pickle

import numpy as np

from nslib import data


def write_cifar(root, n=6, seed=0):
    """``root/cifar-10-batches-py``: five training batches and a test batch of ``n`` random images each.

    Returns ``{batch file name: (pixels (n, 3072) uint8, labels list)}``.
    """
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        pixels = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": pixels, "labels": labels}, fh)
        batches[name] = (pixels, labels)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": list(data.DATASETS["cifar10"].classes)}, fh)
    return batches
