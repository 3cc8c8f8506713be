"""Small data files in torchvision's on-disk formats, written by tests (no downloads)."""
import struct
from pathlib import Path

import numpy as np

from nslib.data import write_cifar10_files as write_cifar  # noqa: F401  (the one CIFAR-10 writer, in the package)


def write_idx(path, array) -> None:
    """One IDX file (MNIST's format): a big-endian header (magic, uint8 type, dims) and the bytes."""
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with open(path, "wb") as fh:
        fh.write(header + array.tobytes())


def write_mnist_like(root, folder: str, n: int = 12, seed: int = 0) -> dict[str, tuple]:
    """``root/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` with ``n`` random 28x28
    images each, as torchvision's MNIST and FashionMNIST read them (``folder`` "MNIST" or
    "FashionMNIST"). Returns ``{"train"|"t10k": (images (n, 28, 28) uint8, labels (n,) uint8)}``."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True)
    expected = {}
    for prefix in ("train", "t10k"):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        expected[prefix] = (images, labels)
    return expected
