"""Evaluation that scales: item blocks under a memory bound, a seeded user sample with its interval."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssmrec.data.synthetic import synthetic
from ssmrec.eval.evaluator import Evaluator, sample_users
from ssmrec.eval.ranking import SeenItems, iter_topk


@pytest.fixture(scope="module")
def setup():
    data = synthetic(150, 2500, seed=3)
    test = synthetic(150, 2500, seed=4)
    # test items that are also train items would be excluded: keep them anyway, masking handles it
    g = torch.Generator().manual_seed(0)
    return data, test, torch.randn(150, 8, generator=g), torch.randn(2500, 8, generator=g)


def naive_topk(u: np.ndarray, i: np.ndarray, seen: list[set[int]], k: int) -> list[list[int]]:
    out = []
    for r in range(u.shape[0]):
        s = i @ u[r]
        order = [j for j in np.argsort(-s, kind="stable") if j not in seen[r]]
        out.append(order[:k])
    return out


@pytest.mark.parametrize("max_scores", [1 << 27, 40 * 1024, 1])
def test_item_blocks_rank_as_a_naive_loop(setup, max_scores):
    data, _, u, i = setup
    users = torch.arange(150)
    seen_sets = [set(data.indices[data.indptr[r]:data.indptr[r + 1]].tolist()) for r in range(150)]
    want = naive_topk(u.double().numpy(), i.double().numpy(), seen_sets, 20)
    got = []
    for _, top, scores in iter_topk(u, i, users, 20, seen=SeenItems([data]), chunk_size=40, max_scores=max_scores):
        assert torch.all(scores[:, :-1] >= scores[:, 1:])
        got += top.tolist()
    assert got == want


def test_blocks_keep_the_score_buffer_bounded(setup):
    _, _, u, i = setup
    # 40 users x 2500 items = 100k scores; the bound 40 x 1024 forces blocks of 1024 items
    chunks = list(iter_topk(u, i, torch.arange(150), 5, chunk_size=40, max_scores=40 * 1024))
    assert len(chunks) == 4 and all(t.shape[1] == 5 for _, t, _ in chunks)


def test_a_sample_of_every_user_is_todays_evaluation(setup):
    data, test, u, i = setup
    full = Evaluator(test, [data]).evaluate(u, i)
    same = Evaluator(test, [data], sample=10_000, seed=7).evaluate(u, i)
    assert full == same


def test_a_user_sample_is_seeded_fixed_and_its_metrics_are_its_users_means(setup):
    data, test, u, i = setup
    a = Evaluator(test, [data], sample=50, seed=1)
    b = Evaluator(test, [data], sample=50, seed=1)
    c = Evaluator(test, [data], sample=50, seed=2)
    assert a.sampled and torch.equal(a.users, b.users) and not torch.equal(a.users, c.users)
    assert a.users.numel() == 50 and torch.all(a.users[1:] > a.users[:-1])
    m = a.evaluate(u, i)
    full = Evaluator(test, [data])
    full.evaluate(u, i)
    picked = a.users.numpy()
    per_user = full.last.values["recall@20"][picked]
    assert m["recall@20"] == pytest.approx(per_user.mean(), abs=1e-12)
    # the 95% interval worked out by hand: 1.959964 * sample std / sqrt(n)
    half = a.intervals()["recall@20"]
    assert half == pytest.approx(1.959964 * per_user.std(ddof=1) / np.sqrt(50), rel=1e-5)


def test_sample_users_refuses_a_negative_size():
    with pytest.raises(ValueError, match="positive"):
        sample_users(np.arange(5), -1)
