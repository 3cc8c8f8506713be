"""Shared test set-up: headless plotting, a fixed seed, and torch's thread count restored
after every test (notebook setup cells run in-process pin it to one thread)."""
import matplotlib

matplotlib.use("Agg")

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
