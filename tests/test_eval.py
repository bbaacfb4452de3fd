"""Metrics against a value worked out by hand and a naive per-user numpy loop; chunking invariance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ssmrec.data import Interactions, ratio_split, synthetic
from ssmrec.eval import Evaluator, MetricAccumulator, metric_values


def test_metric_values_hand_example():
    # relevant {A, B}; ranking A, X, B, Y  (hits 1, 0, 1, 0)
    hits = torch.tensor([[True, False, True, False]])
    v = metric_values(hits, torch.tensor([2]), 3)
    assert v["recall"].item() == pytest.approx(1.0)
    assert v["precision"].item() == pytest.approx(2 / 3)
    # DCG = 1/log2(2) + 1/log2(4) = 1.5 ; ideal over min(2, 3) = 2 positions: 1 + 1/log2(3) = 1.630930
    assert v["ndcg"].item() == pytest.approx(1.5 / 1.630930, abs=1e-6)
    assert v["hitrate"].item() == 1.0 and v["mrr"].item() == 1.0
    # at k = 1 with 2 relevant: recall 1/2, ndcg 1 (ideal DCG over min(2,1) = 1 position)
    v1 = metric_values(hits, torch.tensor([2]), 1)
    assert v1["recall"].item() == 0.5 and v1["ndcg"].item() == 1.0
    # a miss at rank 1, first hit at rank 2 -> MRR 1/2
    v2 = metric_values(torch.tensor([[False, True, False]]), torch.tensor([5]), 3)
    assert v2["mrr"].item() == 0.5 and v2["recall"].item() == pytest.approx(0.2)
    assert v2["ndcg"].item() == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3) + 0.5))
    none = metric_values(torch.tensor([[False, False]]), torch.tensor([1]), 2)
    assert none["mrr"].item() == 0.0 and none["ndcg"].item() == 0.0


def naive_metrics(U, I, train_sets, test, ks, similarity):
    """Per-user loop with numpy argsort: the reference."""
    if similarity == "cos":
        U = U / np.linalg.norm(U, axis=1, keepdims=True)
        I = I / np.linalg.norm(I, axis=1, keepdims=True)
    out = {f"{m}@{k}": [] for m in ("recall", "ndcg", "precision", "hitrate", "mrr") for k in ks}
    for u in range(test.n_users):
        rel = set(test.row(u).tolist())
        if not rel:
            continue
        s = U[u] @ I.T
        for t in train_sets:
            s[t.row(u)] = -np.inf
        ranked = np.argsort(-s, kind="stable")
        for k in ks:
            top = ranked[:k]
            h = np.array([i in rel for i in top], dtype=float)
            dcg = sum(h[r] / math.log2(r + 2) for r in range(len(top)))
            idcg = sum(1 / math.log2(r + 2) for r in range(min(len(rel), k)))
            first = next((r for r in range(len(top)) if h[r]), None)
            out[f"recall@{k}"].append(h.sum() / len(rel))
            out[f"precision@{k}"].append(h.sum() / k)
            out[f"ndcg@{k}"].append(dcg / idcg)
            out[f"hitrate@{k}"].append(float(h.sum() > 0))
            out[f"mrr@{k}"].append(0.0 if first is None else 1 / (first + 1))
    return {key: float(np.mean(v)) for key, v in out.items()}


@pytest.fixture(scope="module")
def split():
    inter = synthetic(120, 80, seed=3)
    return ratio_split(inter, (0.6, 0.15, 0.25), seed=1)


@pytest.mark.parametrize("similarity", ["ip", "cos"])
def test_evaluator_matches_naive_loop(split, similarity):
    train, valid, test = split
    rng = np.random.default_rng(0)
    U, I = rng.normal(size=(train.n_users, 8)), rng.normal(size=(train.n_items, 8))
    ks = (1, 5, 20)
    ev = Evaluator(test, [train, valid], ks=ks, similarity=similarity, chunk_size=17)
    got = ev.evaluate(torch.from_numpy(U), torch.from_numpy(I))
    want = naive_metrics(U, I, [train, valid], test, ks, similarity)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key


def test_results_identical_at_any_chunk_size(split):
    train, valid, test = split
    g = torch.Generator().manual_seed(0)
    U, I = torch.randn(train.n_users, 16, generator=g), torch.randn(train.n_items, 16, generator=g)
    results = [Evaluator(test, [train], ks=(10, 20), chunk_size=c).evaluate(U, I) for c in (1, 7, 64, 10_000)]
    for r in results[1:]:
        assert r == results[0]


def test_training_items_are_never_recommended(split):
    train, valid, test = split
    U = torch.zeros(train.n_users, 2)
    U[:, 0] = 1.0
    I = torch.zeros(train.n_items, 2)
    I[:, 0] = torch.arange(train.n_items, dtype=torch.float32)  # every user prefers high item ids
    ev = Evaluator(test, [train], ks=(train.n_items,))
    from ssmrec.eval.ranking import iter_topk

    for chunk, top, scores in iter_topk(U, I, ev.users, 30, seen=ev.seen):
        for r, u in enumerate(chunk.tolist()):
            finite = top[r][torch.isfinite(scores[r])].numpy()
            assert not set(finite) & set(train.row(u).tolist())


def test_users_without_heldout_items_are_skipped():
    train = Interactions.from_pairs(np.array([0, 1, 2]), np.array([0, 1, 2]), 3, 4)
    test = Interactions.from_pairs(np.array([0, 0]), np.array([1, 3]), 3, 4)
    ev = Evaluator(test, [train], ks=(2,))
    U = torch.tensor([[1.0], [1.0], [1.0]])
    I = torch.tensor([[0.0], [3.0], [1.0], [2.0]])  # user 0 ranks 1, 3, 2 (0 is seen)
    r = ev.evaluate(U, I)
    assert ev.last.seen.tolist() == [True, False, False]
    assert r["recall@2"] == 1.0 and r["precision@2"] == 1.0


def test_accumulator_merge_equals_whole(split):
    train, _, test = split
    g = torch.Generator().manual_seed(1)
    U, I = torch.randn(train.n_users, 8, generator=g), torch.randn(train.n_items, 8, generator=g)
    ev = Evaluator(test, [train], ks=(5,))
    whole = ev.accumulate(U, I)
    users = ev.users
    a = ev.accumulate(U, I, users[::2])
    b = ev.accumulate(U, I, users[1::2])
    assert a.merge_(b).compute() == whole.compute()
    assert np.array_equal(whole.per_user("recall@5"), a.per_user("recall@5"))


def test_accumulator_rejects_bad_settings():
    with pytest.raises(ValueError, match="unknown metric"):
        MetricAccumulator(3, (20,), ("auc",))
    with pytest.raises(ValueError, match="cut-offs"):
        MetricAccumulator(3, (0,))
