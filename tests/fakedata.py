"""Small data files in torchvision's on-disk formats, written by tests (no downloads)."""
from nslib.data import write_cifar10_files as write_cifar  # noqa: F401  (the one writer, in the package)
