"""nslib.data: the embedded set, its hash check, the torchvision path (on files we write)."""
import hashlib
import shutil
from pathlib import Path
import urllib.error

import pytest
import torch

from fakedata import write_cifar, write_mnist_like
from nslib import data


def test_mnist5k_split_sizes_balance_and_range():
    train, test = data.load("mnist5k", "train"), data.load("mnist5k", "test")
    assert (len(train), len(test)) == (4000, 1000)
    assert torch.bincount(train.labels).tolist() == [400] * 10
    assert torch.bincount(test.labels).tolist() == [100] * 10
    x, y = test.tensors(20)
    assert x.shape == (20, 1, 28, 28) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() == 1.0
    assert y.tolist() == list(range(10)) * 2  # interleaved: the first n are balanced


def test_mnist5k_train_and_test_are_disjoint():
    train = data.load("mnist5k", "train").images.flatten(1).numpy()
    test = data.load("mnist5k", "test").images.flatten(1).numpy()
    train_rows = {row.tobytes() for row in train}
    assert not any(row.tobytes() in train_rows for row in test)


def test_mnist5k_hash_is_checked(tmp_path, monkeypatch):
    bad = tmp_path / "mnist5k.npz"
    shutil.copy(data.EMBEDDED_DIR / "mnist5k.npz", bad)
    with open(bad, "r+b") as fh:
        fh.seek(-10, 2)
        fh.write(b"corrupted!")
    monkeypatch.setattr(data, "EMBEDDED_DIR", tmp_path)  # an installed package: no checkout around it
    sha = data.EMBEDDED_FILES["mnist5k"][1]
    with pytest.raises(ValueError, match=rf"{bad}.*corrupt or was changed.*expected {sha}.*"
                                         r"pip install --force-reinstall --no-deps nslib-course"):
        data.load("mnist5k", "test")
    with pytest.raises(ValueError, match="corrupt or was changed"):
        data.check_shipped()


def test_mnist5k_missing_file_says_how_to_restore(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "EMBEDDED_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'mnist5k.npz'}.*reinstall the course's package"):
        data.load("mnist5k", "train")
    with pytest.raises(FileNotFoundError, match="reinstall the course's package"):
        data.check_shipped()


def test_shipped_files_are_found_through_the_package_and_checked():
    """The shipped files sit inside the package (importlib.resources), not beside the source checkout."""
    from importlib import resources

    assert data.EMBEDDED_DIR == Path(resources.files("nslib") / "_shipped")
    assert [p.name for p in data.check_shipped()] == ["mnist5k.npz"]
    if data.EMBEDDED_DIR.is_symlink():  # a checkout: the package links to the repository's data/
        assert data.EMBEDDED_DIR.resolve() == (Path(__file__).resolve().parents[1] / "data")
        assert "git checkout -- data/" in data.reinstall_hint()


def test_downloads_default_to_a_cache_folder_never_the_package(monkeypatch, tmp_path):
    monkeypatch.delenv("NSLIB_DATA_ROOT", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert data.download_root() == tmp_path / "nslib" / "datasets"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data.download_root() == Path.home() / ".cache" / "nslib" / "datasets"
    assert not data.download_root().is_relative_to(data.EMBEDDED_DIR.parent)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="cifar10"):
        data.load("imagenet", "train")
    with pytest.raises(ValueError, match="'train', 'test'"):
        data.load("mnist5k", "validation")


def test_limit_and_repr():
    ds = data.load("mnist5k", "test", limit=50)
    assert len(ds) == 50 and "n=50" in repr(ds) and "0x" not in repr(ds)
    with pytest.raises(ValueError, match="limit"):
        data.load("mnist5k", "test", limit=0)


def _batches(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_is_seeded(workers):
    ds = data.load("mnist5k", "train", limit=300)
    a = _batches(data.make_loader(ds, 64, shuffle=True, seed=3, num_workers=workers))
    b = _batches(data.make_loader(ds, 64, shuffle=True, seed=3, num_workers=workers))
    c = _batches(data.make_loader(ds, 64, shuffle=True, seed=4, num_workers=workers))
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    assert not all(torch.equal(y1, y2) for (_, y1), (_, y2) in zip(a, c))
    assert sum(len(y) for _, y in a) == 300


def test_workers_give_the_same_batches_as_the_main_process():
    ds = data.load("mnist5k", "train", limit=200, augment=False)
    main = _batches(data.make_loader(ds, 50, shuffle=True, seed=1, num_workers=0))
    workers = _batches(data.make_loader(ds, 50, shuffle=True, seed=1, num_workers=2))
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(main, workers))


def test_augmentation_keeps_shape_and_range():
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    ds = data.ImageDataset(images, torch.arange(4), "cifar10", "train", augment=True)
    torch.manual_seed(0)
    out = torch.stack([ds[i][0] for i in range(4)])
    assert out.shape == (4, 3, 32, 32) and 0 <= out.min() and out.max() <= 1
    assert not torch.equal(out, images.float() / 255)  # something was cropped or flipped


# --- the torchvision path, on small files written in the real on-disk formats --------------

@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_torchvision_mnist_family_reads_idx_files(tmp_path, name, folder):
    expected = write_mnist_like(tmp_path, folder)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        ds = data.load(name, split, root=tmp_path)
        x, y = ds.tensors()
        images, labels = expected[prefix]
        assert x.shape == (12, 1, 28, 28)
        assert torch.equal((x * 255).round().to(torch.uint8)[:, 0], torch.from_numpy(images))
        assert y.tolist() == labels.tolist()


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST"), ("cifar10", None)])
def test_the_held_out_file_is_one_torchvision_reads(tmp_path, monkeypatch, name, folder):
    """reproduce records this file as its steps' input: it must be the data set's test images."""
    monkeypatch.setenv("NSLIB_DATA_ROOT", str(tmp_path))
    assert not data.held_out_file(name).exists()
    if folder:
        write_mnist_like(tmp_path, folder)
    else:
        write_cifar(tmp_path)
    path = data.held_out_file(name)
    assert path.is_file() and tmp_path in path.parents and ("t10k-images" in path.name or path.name == "test_batch")
    assert data.held_out_file("mnist5k") == data.EMBEDDED_DIR / "mnist5k.npz"
    with pytest.raises(ValueError, match="unknown data set"):
        data.held_out_file("cifar100")


def test_data_root_from_environment(tmp_path, monkeypatch):
    write_mnist_like(tmp_path, "MNIST")
    monkeypatch.setenv("NSLIB_DATA_ROOT", str(tmp_path))
    assert data.download_root() == tmp_path
    assert len(data.load("mnist", "test")) == 12


def test_torchvision_cifar10_reads_pickled_batches(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as cifar

    batches = write_cifar(tmp_path)
    # our files are not the real ones, so only torchvision's md5 comparison is bypassed
    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: __import__("os").path.isfile(path))
    train = data.load("cifar10", "train", root=tmp_path)
    test = data.load("cifar10", "test", root=tmp_path)
    assert len(train) == 30 and len(test) == 6
    x, y = test.tensors()
    pixels, labels = batches["test_batch"]
    assert x.shape == (6, 3, 32, 32)
    assert torch.equal((x * 255).round().to(torch.uint8).flatten(1), torch.from_numpy(pixels))
    assert y.tolist() == labels


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_missing_torchvision_set_offline_says_how_to_get_it(tmp_path, name):
    with pytest.raises(FileNotFoundError, match=r"download=True.*python -m nslib download"):
        data.load(name, "train", root=tmp_path)


def test_download_goes_through_torchvision(tmp_path, monkeypatch):
    """download=True calls torchvision's own download (simulated here: it writes the files)."""
    import torchvision.datasets.mnist as mnist

    calls = []

    def fake_download(self):
        calls.append(self.root)
        if not self._check_exists():
            write_mnist_like(tmp_path, "MNIST", n=5)

    monkeypatch.setattr(mnist.MNIST, "download", fake_download)
    ds = data.load("mnist", "test", root=tmp_path, download=True)
    assert calls == [str(tmp_path)] and len(ds) == 5


def test_download_failure_offline_is_explained(tmp_path, monkeypatch):
    import torchvision.datasets.mnist as mnist

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(mnist, "download_and_extract_archive", no_network)
    with pytest.raises(ConnectionError, match="(?s)could not download .mnist.*Without internet"):
        data.load("mnist", "train", root=tmp_path, download=True)


def test_sha256sum_matches_hashlib(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"abc" * 1000)
    assert data.sha256sum(f) == hashlib.sha256(b"abc" * 1000).hexdigest()
