"""Shared test set-up: headless plotting, a fixed seed, few threads."""
import matplotlib

matplotlib.use("Agg")

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
