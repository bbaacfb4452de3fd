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


# ----------------------------------------------------------------- selection on a sample of users
BASE = {"model": "mf", "loss": "ssm", "tau": 0.2, "dim": 16, "batch_size": 256, "epochs": 3,
        "progress": False, "ks": [20], "lr": 0.01, "dataset": "tiny"}


def test_selection_on_a_sample_tests_every_user_at_the_best_epoch(tiny):
    from ssmrec.train import TrainConfig, Trainer

    lines = []
    t = Trainer(TrainConfig.from_dict({**BASE, "eval_users": 40}), tiny, write=False, echo=lines.append)
    result = t.fit()
    # the epochs were scored on 40 users, and said so with the interval
    assert t.select_eval.users.numel() == 40 and t.select_eval is not t.test_eval
    assert any("±" in line and "40 of" in line for line in lines)
    # test: every user, on the best model (fit() left it loaded), not the sample's numbers
    full = Evaluator(tiny.test, tiny.exclusions("test")).evaluate_model(t.model)
    assert result["test"]["recall@20"] == pytest.approx(full["recall@20"], abs=1e-12)
    assert result["evaluated_users"] == {"selection": 40, "test": int(tiny.test.active_users.size)}
    best = next(h for h in t.history if h["epoch"] == result["best_epoch"])
    assert best["recall@20"] != result["test"]["recall@20"]


def test_a_sample_of_all_users_trains_and_selects_as_today(tiny):
    from ssmrec.train import TrainConfig, Trainer

    a = Trainer(TrainConfig.from_dict(BASE), tiny, write=False, echo=None).fit()
    b = Trainer(TrainConfig.from_dict({**BASE, "eval_users": 10**6, "test_users": 10**6}), tiny, write=False,
                echo=None).fit()
    assert a["test"] == b["test"] and a["best_epoch"] == b["best_epoch"]
    assert "evaluated_users" not in a


def test_a_sweep_selects_on_the_sample_and_tests_every_user(tiny):
    from ssmrec.sweeps import Sweep
    from ssmrec.train import TrainConfig

    base = TrainConfig.from_dict({**BASE, "eval_users": 40})
    sweep = Sweep(base, [{"tau": 0.1}, {"tau": 0.5}], tiny, echo=None)
    sweep.fit()
    assert sweep.select_eval.users.numel() == 40
    for m in sweep.members:
        hist = next(h for h in m.history if h["epoch"] == m.result["best_epoch"])
        assert m.result["test"] and m.result["test"]["recall@20"] != hist["recall@20"]
