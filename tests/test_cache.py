"""The notebooks' disk cache: a result is reused only for the same inputs, code and libraries."""
import pytest
import torch

from nslib import cache, evaluation
from nslib.models import build

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _runs(tmp_path, monkeypatch):
    monkeypatch.setenv("NSLIB_RUNS", str(tmp_path))
    monkeypatch.delenv("NSLIB_CACHE", raising=False)


def _counting():
    calls = []

    def compute():
        calls.append(1)
        return {"value": torch.arange(3), "calls": len(calls)}
    return compute, calls


def test_a_result_is_computed_once_and_read_back(tmp_path):
    compute, calls = _counting()
    first = cache.cached("thing", {"n": 1}, compute)
    again = cache.cached("thing", {"n": 1}, compute)
    assert len(calls) == 1 and again["calls"] == 1 and torch.equal(again["value"], first["value"])
    assert [p.parent for p in tmp_path.rglob("thing-*.pt")] == [cache.cache_dir()]
    cache.cached("thing", {"n": 2}, compute)          # other inputs
    assert len(calls) == 2


def test_a_change_of_code_or_library_computes_again(monkeypatch):
    from nslib import reproduce

    compute, calls = _counting()
    cache.cached("thing", {}, compute)
    monkeypatch.setattr(reproduce, "source_hash", lambda *a: "edited")
    cache.cached("thing", {}, compute)
    monkeypatch.setattr(reproduce, "library_versions", lambda: {"torch": "9.9"})
    cache.cached("thing", {}, compute)
    assert len(calls) == 3


def test_nslib_cache_0_switches_it_off(monkeypatch):
    compute, calls = _counting()
    monkeypatch.setenv("NSLIB_CACHE", "0")
    cache.cached("thing", {}, compute)
    cache.cached("thing", {}, compute)
    assert len(calls) == 2 and not cache.cache_dir().exists()


def test_a_damaged_file_is_computed_again():
    compute, calls = _counting()
    cache.cached("thing", {}, compute)
    next(cache.cache_dir().glob("thing-*.pt")).write_bytes(b"not a pickle")
    assert cache.cached("thing", {}, compute)["calls"] == 2


def test_digests_follow_content_shape_and_dtype():
    x = torch.arange(6.0)
    assert cache.tensor_digest(x) == cache.tensor_digest(x.clone())
    assert len({cache.tensor_digest(t) for t in (x, x.view(2, 3), x.double(), x + 1, torch.tensor(1))}) == 5
    torch.manual_seed(0)
    model = build("smallcnn")
    before = cache.model_digest(model)
    assert cache.model_digest(model.eval()) != before           # the mode is part of it
    with torch.no_grad():
        next(model.parameters())[0, 0, 0, 0] += 1
    assert cache.model_digest(model) not in (before, cache.model_digest(model.train()))


def test_a_cached_table_equals_a_fresh_one_and_runs_no_attack(monkeypatch):
    torch.manual_seed(0)
    models = {"a": build("smallcnn").eval()}
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    suite = {"clean": {"attack": "clean"}, "pgd": {"attack": "pgd", "eps": 0.3, "alpha": 0.1, "steps": 2}}
    fresh = evaluation.robustness_table(models, (x, y), suite)
    first = evaluation.robustness_table(models, (x, y), suite, cache=True)
    curve = evaluation.robust_accuracy_curve(models["a"], x, y, [0.0, 0.1], steps=2)
    assert evaluation.robust_accuracy_curve(models["a"], x, y, [0.0, 0.1], steps=2, cache=True) == curve
    monkeypatch.setattr(evaluation, "_run_batches", lambda *a, **k: pytest.fail("an attack ran"))
    again = evaluation.robustness_table(models, (x, y), suite, cache=True)
    for rows in (first, again):
        assert [(r["attack"], r["accuracy"]) for r in rows] == [(r["attack"], r["accuracy"]) for r in fresh]
        assert all(torch.equal(r["robust"], f["robust"]) for r, f in zip(rows, fresh))
    assert evaluation.robust_accuracy_curve(models["a"], x, y, [0.0, 0.1], steps=2, cache=True) == curve
    with pytest.raises(ValueError, match="callable factory"):
        evaluation.robustness_table(models, (x, y), {"mine": lambda m: (lambda a, b: a)}, cache=True)
