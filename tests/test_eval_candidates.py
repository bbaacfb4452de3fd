"""Ranking within candidate sets (``ssmrec.eval.candidates``, ``ssmrec.eval.first_stage``): the
sets against their definitions, every metric against a naive per-user loop and a hand-worked
case with ties and a miss, two cross-checks with the full-ranking Evaluator, chunking invariance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from ssmrec.data import Interactions, ratio_split, synthetic
from ssmrec.eval import Evaluator
from ssmrec.eval.candidates import (
    CandidateEvaluator,
    Candidates,
    distinct_uniform,
    retrieved_candidates,
    sampled_candidates,
)
from ssmrec.eval.first_stage import (
    DEFAULT_FIRST_STAGE,
    EmbeddingRetriever,
    ItemKNNRetriever,
    PopularityRetriever,
    build_first_stage,
)


@pytest.fixture(scope="module")
def split():
    return ratio_split(synthetic(150, 120, seed=3), (0.6, 0.15, 0.25), seed=1)


@pytest.fixture(scope="module")
def emb():
    rng = np.random.default_rng(0)
    return torch.from_numpy(rng.normal(size=(150, 8))), torch.from_numpy(rng.normal(size=(120, 8)))


def known_rows(split, u):
    return set(np.concatenate([s.row(u) for s in split]).tolist())


def naive_ranking(U, I, cands: Candidates, ks, similarity):
    """Per-user loop: sort each user's candidates by score (a relevant candidate after a non-relevant
    one it ties with), then the textbook formulas; AUC by counting pairs."""
    U, I = U.numpy(), I.numpy()
    if similarity == "cos":
        U = U / np.linalg.norm(U, axis=1, keepdims=True)
        I = I / np.linalg.norm(I, axis=1, keepdims=True)
    p = f"rank-{cands.name}/"
    out = {f"{p}{m}@{k}": [] for m in ("ndcg", "recall", "hitrate") for k in ks}
    out[f"{p}mrr"], out[f"{p}auc"] = [], []
    for r, u in enumerate(cands.users):
        items, rel = cands.row(r)
        s = I[items] @ U[u]
        order = sorted(range(len(items)), key=lambda j: (-s[j], bool(rel[j])))
        h = [bool(rel[j]) for j in order]
        n = int(cands.n_relevant[r])
        for k in ks:
            dcg = sum(1 / math.log2(j + 2) for j in range(min(k, len(h))) if h[j])
            out[f"{p}ndcg@{k}"].append(dcg / sum(1 / math.log2(j + 2) for j in range(min(n, k))))
            out[f"{p}recall@{k}"].append(sum(h[:k]) / n)
            out[f"{p}hitrate@{k}"].append(float(any(h[:k])))
        out[f"{p}mrr"].append(next((1 / (j + 1) for j in range(len(h)) if h[j]), 0.0))
        pos, neg = s[rel], s[~rel]
        wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
        out[f"{p}auc"].append(wins / (pos.size * neg.size) if pos.size and neg.size else math.nan)
    return {key: np.array(v) for key, v in out.items()}


@pytest.mark.parametrize("similarity", ["ip", "cos"])
@pytest.mark.parametrize("kind", ["sampled", "retrieved"])
def test_metrics_match_naive_loop(split, emb, similarity, kind):
    train, valid, test = split
    if kind == "sampled":
        cands = sampled_candidates(test, [train, valid], n=40, seed=2)
    else:
        cands = retrieved_candidates(test, [train, valid], ItemKNNRetriever(train, neighbours=30), n=25)
    ks = (1, 5, 20)
    ev = CandidateEvaluator(cands, ks=ks, similarity=similarity, chunk_size=17)
    got = ev.evaluate(*emb)
    want = naive_ranking(*emb, cands, ks, similarity)
    assert set(want) <= set(got)
    np.testing.assert_array_equal(ev.last.users, test.active_users)
    for key, v in want.items():
        np.testing.assert_allclose(ev.last.per_user(key), v, rtol=1e-12, atol=1e-12, err_msg=key)
        assert got[key] == pytest.approx(np.nanmean(v), abs=1e-12), key
    if kind == "retrieved":
        recall = [cands.row(r)[1].sum() / cands.n_relevant[r] for r in range(cands.users.size)]
        np.testing.assert_allclose(ev.last.per_user("rank-itemknn25/retriever_recall@25"), recall)
        assert got["rank-itemknn25/retriever_hitrate@25"] == pytest.approx(np.mean(np.array(recall) > 0))
        assert (ev.last.covered == (np.array(recall) > 0)).all()


def test_hand_example_ties_and_a_miss():
    # one user, 3 held-out items, 2 of them among the candidates 0..3 (relevant: 1 and 3);
    # scores 3, 2, 2, 1: item 1 (relevant) ties item 2 (not) and ranks after it -> hits 0, 0, 1, 1
    cands = Candidates("hand4", "retrieved", 4, np.array([0]), np.array([0, 4]), np.arange(4),
                       np.array([False, True, False, True]), np.array([3]), 4)
    ev = CandidateEvaluator(cands, ks=(2, 4))
    got = ev.evaluate(torch.ones(1, 1, dtype=torch.float64), torch.tensor([[3.0], [2.0], [2.0], [1.0]]).double())
    p = "rank-hand4/"
    assert got[f"{p}ndcg@2"] == 0 and got[f"{p}hitrate@2"] == 0 and got[f"{p}recall@2"] == 0
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)  # over min(3 held-out, 4) positions
    assert got[f"{p}ndcg@4"] == pytest.approx((1 / math.log2(4) + 1 / math.log2(5)) / ideal)
    assert got[f"{p}recall@4"] == pytest.approx(2 / 3)  # the missed held-out item counts
    assert got[f"{p}mrr"] == pytest.approx(1 / 3)
    # pairs (relevant, non-relevant): (2 vs 3) 0, (2 vs 2) 1/2, (1 vs 3) 0, (1 vs 2) 0
    assert got[f"{p}auc"] == pytest.approx(0.125)
    assert got[f"{p}retriever_recall@4"] == pytest.approx(2 / 3)


def test_equal_scores_give_no_hits_and_half_auc(split):
    train, valid, test = split
    cands = sampled_candidates(test, [train, valid], n=30, seed=0)
    ev = CandidateEvaluator(cands, ks=(5, 30))
    got = ev.evaluate(torch.ones(150, 4), torch.ones(120, 4))
    p = "rank-sampled30/"
    assert got[f"{p}ndcg@30"] == 0 and got[f"{p}hitrate@30"] == 0  # 30 non-relevant rank first
    np.testing.assert_allclose(ev.last.per_user(f"{p}mrr"), 1 / (cands.lengths - cands.n_relevant + 1))
    assert (ev.last.per_user(f"{p}auc") == 0.5).all()


def test_sampled_candidates_hold_every_held_out_item_and_no_seen_one(split):
    train, valid, test = split
    for n in (10, 100):  # 100 of 120 items: users who know more than 20 get every unknown item
        cands = sampled_candidates(test, [train, valid], n=n, seed=5)
        np.testing.assert_array_equal(cands.users, test.active_users)
        np.testing.assert_array_equal(cands.n_relevant, test.user_degree[test.active_users])
        assert cands.items.dtype == np.int32 and cands.name == f"sampled{n}"
        for r, u in enumerate(cands.users):
            items, rel = cands.row(r)
            assert sorted(items[rel].tolist()) == test.row(u).tolist()
            drawn = items[~rel].tolist()
            assert len(set(drawn)) == len(drawn) == min(n, 120 - len(known_rows(split, u)))
            assert not set(drawn) & known_rows(split, u)


def test_sampled_candidates_depend_on_the_seed_only(split):
    train, valid, test = split
    a, b = (sampled_candidates(test, [train, valid], n=20, seed=7) for _ in range(2))
    c = sampled_candidates(test, [train, valid], n=20, seed=8)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.relevant, b.relevant)
    assert a.items.shape == c.items.shape and (a.items != c.items).any()


def test_sampled_candidates_are_uniform_over_unknown_items():
    # 3000 users know items 0..9 (train) and 10 (test); 5 of the 29 others are drawn for each
    users = np.repeat(np.arange(3000), 10)
    train = Interactions.from_pairs(users, np.tile(np.arange(10), 3000), 3000, 40)
    test = Interactions.from_pairs(np.arange(3000), np.full(3000, 10), 3000, 40)
    cands = sampled_candidates(test, [train], n=5, seed=0)
    counts = np.bincount(cands.items[~cands.relevant], minlength=40)
    assert counts[:11].sum() == 0
    assert chisquare(counts[11:]).pvalue > 1e-3


def test_distinct_uniform_takes_everything_when_asked_for_everything():
    rng = np.random.default_rng(0)
    out = distinct_uniform(rng, np.array([5, 1, 7]), np.array([5, 1, 3]))
    assert sorted(out[:5].tolist()) == [0, 1, 2, 3, 4] and out[5] == 0
    assert len(set(out[6:].tolist())) == 3 and out[6:].max() < 7


def naive_similarity(train: Interactions):
    x = train.to_scipy().toarray().astype(np.float64)
    deg = x.sum(0)
    sim = (x.T @ x) / np.sqrt(np.outer(deg, deg)).clip(min=1e-300)
    np.fill_diagonal(sim, 0)
    return sim


def naive_scores(train: Interactions, sim):
    """Sum of the similarities to the user's items; items without any: by popularity, below."""
    x = train.to_scipy().toarray().astype(np.float64)
    deg = x.sum(0)
    score = x @ sim
    return np.where(score > 0, score, deg / (deg.max() + 1) - 1)


def naive_itemknn(train: Interactions, neighbours):
    sim = naive_similarity(train)
    if neighbours is not None:
        for row in sim:
            row[np.argsort(-row, kind="stable")[neighbours:]] = 0
    return naive_scores(train, sim)


@pytest.mark.parametrize("stage", ["pop", "itemknn", "itemknn-all", "emb"])
def test_retrieved_candidates_are_the_first_stage_top_n(split, emb, stage):
    train, valid, test = split
    U, I = emb
    if stage == "pop":
        fs, want = PopularityRetriever(train), np.tile(train.item_degree, (150, 1)).astype(float)
    elif stage == "emb":
        fs, want = EmbeddingRetriever(U, I, similarity="ip"), (U @ I.T).numpy()
    elif stage == "itemknn-all":
        fs, want = ItemKNNRetriever(train, neighbours=None, block=32), naive_itemknn(train, None)
    else:  # pruning has its own test (float32 near-ties may cut elsewhere than a float64 loop)
        fs = ItemKNNRetriever(train, neighbours=15, block=32)
        want = naive_scores(train, fs.similarity.toarray().astype(np.float64))
    n = 25
    cands = retrieved_candidates(test, [train, valid], fs, n=n, chunk_size=40)
    assert cands.kind == "retrieved" and cands.name == f"{fs.name}{n}"
    for r, u in enumerate(cands.users):
        items, rel = cands.row(r)
        known = train.row(u).tolist() + valid.row(u).tolist()
        assert not set(items.tolist()) & set(known)
        rest = np.delete(want[u], known)
        # the same top scores, in order (items may differ only among equal scores)
        np.testing.assert_allclose(want[u][items], np.sort(rest)[::-1][:n], rtol=1e-5)
        np.testing.assert_array_equal(rel, np.isin(items, test.row(u)))


def test_itemknn_keeps_each_items_largest_similarities(split):
    train = split[0]
    full = ItemKNNRetriever(train, neighbours=None).similarity.toarray()
    pruned = ItemKNNRetriever(train, neighbours=5, block=7).similarity.toarray()
    np.testing.assert_allclose(full, naive_similarity(train), rtol=1e-6, atol=1e-7)
    for a, b in zip(full, pruned):
        assert (b > 0).sum() == min(5, (a > 0).sum())
        kept, dropped = a[b > 0], a[(b == 0) & (a > 0)]
        np.testing.assert_array_equal(b[b > 0], kept)
        assert dropped.size == 0 or dropped.max() <= kept.min()
    assert (pruned > 0).sum() < (full > 0).sum()


@pytest.mark.parametrize("similarity", ["ip", "cos"])
def test_the_model_as_its_own_first_stage_equals_full_ranking(split, emb, similarity):
    # candidates = the model's own top N: re-ranking them by the model gives its full top K, K <= N
    train, valid, test = split
    n, ks = 30, (1, 5, 20, 30)
    cands = retrieved_candidates(test, [train, valid], EmbeddingRetriever(*emb, similarity=similarity), n=n)
    ev = CandidateEvaluator(cands, ks=ks, similarity=similarity, chunk_size=19)
    got = ev.evaluate(*emb)
    full = Evaluator(test, [train, valid], ks=ks, similarity=similarity)
    want = full.evaluate(*emb)
    for m in ("ndcg", "recall", "hitrate"):
        for k in ks:
            np.testing.assert_allclose(ev.last.per_user(f"rank-emb{n}/{m}@{k}"), full.last.per_user(f"{m}@{k}"),
                                       atol=1e-12, err_msg=f"{m}@{k}")
    assert got[f"rank-emb{n}/mrr"] == pytest.approx(want[f"mrr@{n}"], abs=1e-12)
    assert got[f"rank-emb{n}/retriever_recall@{n}"] == pytest.approx(want[f"recall@{n}"], abs=1e-12)


def test_sampling_the_whole_catalogue_equals_full_ranking(split, emb):
    # N >= every unknown item: the candidates are exactly what the Evaluator ranks
    train, valid, test = split
    cands = sampled_candidates(test, [train, valid], n=120, seed=0)
    ev = CandidateEvaluator(cands, ks=(5, 20))
    got = ev.evaluate(*emb)
    want = Evaluator(test, [train, valid], ks=(5, 20)).evaluate(*emb)
    for m in ("ndcg", "recall", "hitrate"):
        for k in (5, 20):
            assert got[f"rank-sampled120/{m}@{k}"] == pytest.approx(want[f"{m}@{k}"], abs=1e-12)


class HalfRetriever:
    """A first stage that retrieves the held-out items first for even users and last for odd ones."""

    name = "half"
    n_items = 120

    def __init__(self, test):
        self.test = test

    def scores(self, users, out=None):
        out = torch.rand(len(users), self.n_items, generator=torch.Generator().manual_seed(0))
        for r, u in enumerate(users):  # a test helper, not the code under test
            out[r, self.test.row(u)] = 2.0 if u % 2 == 0 else -1.0
        return out


def test_users_without_a_relevant_candidate_score_zero_and_have_no_auc(split, emb):
    train, valid, test = split
    cands = retrieved_candidates(test, [train, valid], HalfRetriever(test), n=10)
    ev = CandidateEvaluator(cands, ks=(5,))
    got = ev.evaluate(*emb)
    even = cands.users % 2 == 0
    np.testing.assert_array_equal(ev.last.covered, even)
    auc = ev.last.per_user("rank-half10/auc")
    assert np.isnan(auc[~even]).all() and not np.isnan(auc[even]).any()
    assert got["rank-half10/auc"] == pytest.approx(auc[even].mean())
    for key in ("rank-half10/ndcg@5", "rank-half10/recall@5", "rank-half10/mrr"):
        v = ev.last.per_user(key)
        assert (v[~even] == 0).all() and (v[even] > 0).any()
        assert got[key] == pytest.approx(v.mean())  # every test user counts
    assert got["rank-half10/retriever_hitrate@10"] == pytest.approx(even.mean())


def test_chunking_does_not_change_the_values(split, emb):
    train, valid, test = split
    for cands in (sampled_candidates(test, [train, valid], n=15, seed=1),
                  retrieved_candidates(test, [train, valid], PopularityRetriever(train), n=15)):
        runs = []
        for chunk in (1, 7, 10_000):
            ev = CandidateEvaluator(cands, ks=(3, 10), similarity="cos", chunk_size=chunk)
            ev.evaluate(*emb)
            runs.append(ev.last.values)
        for key in runs[0]:
            for other in runs[1:]:
                np.testing.assert_array_equal(runs[0][key], other[key], err_msg=key)


def test_keys_are_prefixed_apart_from_full_ranking(split, emb):
    train, valid, test = split
    cands = sampled_candidates(test, [train, valid], n=100, seed=0)
    ev = CandidateEvaluator(cands, ks=(20,))
    got = ev.evaluate(*emb)
    assert list(got) == ev.keys
    assert all(key.startswith("rank-sampled100/") for key in got)
    assert not set(got) & set(Evaluator(test, [train, valid], ks=(20,)).evaluate(*emb))
    assert set(ev.last.intervals()) == set(got)


def test_saved_candidates_load_the_same(split, emb, tmp_path):
    train, valid, test = split
    cands = sampled_candidates(test, [train, valid], n=12, seed=3)
    cands.save(tmp_path / "c.npz")
    back = Candidates.load(tmp_path / "c.npz")
    assert (back.name, back.kind, back.n, back.seed, back.n_items) == ("sampled12", "sampled", 12, 3, 120)
    for field in ("users", "indptr", "items", "relevant", "n_relevant"):
        np.testing.assert_array_equal(getattr(back, field), getattr(cands, field))
    assert CandidateEvaluator(back).evaluate(*emb) == CandidateEvaluator(cands).evaluate(*emb)


def test_bad_settings_are_refused(split):
    train, valid, test = split
    with pytest.raises(ValueError, match="positive"):
        sampled_candidates(test, [train], n=0)
    with pytest.raises(ValueError, match="positive"):
        retrieved_candidates(test, [train], PopularityRetriever(train), n=0)
    cands = sampled_candidates(test, [train], n=5)
    with pytest.raises(ValueError, match="similarity"):
        CandidateEvaluator(cands, similarity="dot")
    with pytest.raises(ValueError, match="cut-offs"):
        CandidateEvaluator(cands, ks=(0,))
    with pytest.raises(ValueError, match="neighbours"):
        ItemKNNRetriever(train, neighbours=0)
    with pytest.raises(ValueError, match="unknown first stage"):
        build_first_stage("bm25", train)


def test_the_default_first_stage_is_itemknn_by_name(split):
    train, valid, test = split
    fs = build_first_stage(DEFAULT_FIRST_STAGE, train)
    assert isinstance(fs, ItemKNNRetriever) and fs.neighbours == 200
    assert retrieved_candidates(test, [train, valid], fs, n=10).name == "itemknn10"
    assert isinstance(build_first_stage("pop", train), PopularityRetriever)
