"""Small statistics helpers of nslib.utils used by the notebooks."""
import math
from pathlib import Path

import numpy as np
import pytest

from nslib.utils import average_ranks, spearman


def test_average_ranks_share_ties():
    assert average_ranks([10.0, 30.0, 20.0, 30.0]).tolist() == [1.0, 3.5, 2.0, 3.5]
    assert average_ranks([5, 5, 5]).tolist() == [2.0, 2.0, 2.0]


def test_spearman_against_a_hand_computed_case_with_ties():
    # a = [1, 2, 2, 3] -> ranks [1, 2.5, 2.5, 4]; b = [3, 1, 2, 0] -> ranks [4, 2, 3, 1]
    # centred: [-1.5, 0, 0, 1.5] and [1.5, -0.5, 0.5, -1.5]; sum of products -4.5;
    # norms sqrt(4.5) and sqrt(5): rho = -4.5 / sqrt(22.5) = -0.948683
    assert spearman([1, 2, 2, 3], [3, 1, 2, 0]) == pytest.approx(-4.5 / math.sqrt(22.5))
    assert spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)   # monotone, not linear
    assert spearman(np.array([1.0, 2, 3]), [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))                          # a constant side


def test_spearman_rejects_unequal_lengths():
    with pytest.raises(ValueError, match="same length"):
        spearman([1, 2, 3], [1, 2])


def test_runs_root_follows_nslib_runs_and_defaults_to_the_current_folder(monkeypatch, tmp_path):
    """Never inside the installed package: a notebook's runs go to runs/ in its own folder."""
    import nslib
    from nslib.utils import runs_root

    monkeypatch.setenv("NSLIB_RUNS", str(tmp_path / "mine"))
    assert runs_root() == tmp_path / "mine"
    monkeypatch.delenv("NSLIB_RUNS")
    monkeypatch.chdir(tmp_path)
    assert runs_root() == tmp_path / "runs"
    assert not runs_root().is_relative_to(Path(nslib.__file__).resolve().parent)
