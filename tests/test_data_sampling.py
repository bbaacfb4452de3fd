"""Negative sampling and the training-pair sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssmrec.data import (
    DataError,
    Interactions,
    PairSampler,
    PopularityNegatives,
    log_expected_counts,
    sample_unseen,
    synthetic,
)


@pytest.fixture(scope="module")
def inter() -> Interactions:
    return synthetic(200, 80, per_user=(3, 40), seed=2)


def batch_keys(batches, n_items) -> np.ndarray:
    return np.concatenate([b.users.numpy() * n_items + b.items.numpy() for b in batches])


# ------------------------------------------------------------------------------------ sample_unseen
def test_sample_unseen_never_returns_a_seen_item(inter):
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(inter.n_users), 5)
    neg = sample_unseen(inter, users, 20, rng)
    assert neg.shape == (users.size, 20) and neg.dtype == np.int64
    assert neg.min() >= 0 and neg.max() < inter.n_items
    seen = inter.contains(np.repeat(users, 20), neg.ravel())
    assert not seen.any()
    # the dense users (40 of 80 items seen) are covered too
    assert inter.user_degree.max() >= 30


def test_sample_unseen_uniform_over_unseen(inter):
    u = int(np.argmax(inter.user_degree))
    unseen = np.setdiff1d(np.arange(inter.n_items), inter.row(u))
    rng = np.random.default_rng(1)
    draws = sample_unseen(inter, np.full(2000, u), 10, rng).ravel()
    counts = np.bincount(draws, minlength=inter.n_items)
    assert counts[inter.row(u)].sum() == 0
    observed = counts[unseen]
    expected = draws.size / unseen.size
    chi2 = ((observed - expected) ** 2 / expected).sum()
    df = unseen.size - 1
    assert chi2 < df + 5 * np.sqrt(2 * df)  # far beyond chance otherwise
    assert observed.min() > 0


def test_sample_unseen_only_one_unseen_item_small_catalogue():
    n_items = 6
    items = np.array([0, 1, 2, 4, 5])  # user 0 has seen all but item 3
    train = Interactions.from_pairs(np.zeros(5, np.int64), items, 2, n_items)
    neg = sample_unseen(train, np.zeros(300, np.int64), 4, np.random.default_rng(0))
    assert (neg == 3).all()


def test_sample_unseen_only_one_unseen_item_larger_catalogue():
    n_items = 50
    items = np.delete(np.arange(n_items), 17)
    train = Interactions.from_pairs(np.zeros(items.size, np.int64), items, 1, n_items)
    neg = sample_unseen(train, np.zeros(200, np.int64), 5, np.random.default_rng(0))
    assert (neg == 17).all()


def test_sample_unseen_refuses_a_user_who_saw_everything():
    train = Interactions.from_pairs(np.array([0, 0, 1]), np.array([0, 1, 0]), 2, 2)
    with pytest.raises(DataError, match="user 0 has interacted with every item"):
        sample_unseen(train, np.array([1, 0]), 3, np.random.default_rng(0))


# ------------------------------------------------------------------------------------ PairSampler
def test_epoch_covers_every_pair_once(inter):
    s = PairSampler(inter, batch_size=333, seed=3)
    batches = list(s.epoch(0))
    assert len(batches) == len(s) == -(-inter.nnz // 333)
    assert [b.index for b in batches] == list(range(len(s)))
    keys = batch_keys(batches, inter.n_items)
    assert keys.size == inter.nnz
    assert np.array_equal(np.sort(keys), inter.keys())
    assert all(b.users.dtype == torch.int64 and b.items.dtype == torch.int64 for b in batches)


def test_drop_last(inter):
    s = PairSampler(inter, batch_size=333, drop_last=True)
    batches = list(s.epoch(0))
    assert len(batches) == inter.nnz // 333 and all(b.users.numel() == 333 for b in batches)


def same_batches(a, b) -> bool:
    for x, y in zip(a, b, strict=True):
        for f in ("users", "items", "negatives", "shared"):
            tx, ty = getattr(x, f), getattr(y, f)
            if (tx is None) != (ty is None) or (tx is not None and not torch.equal(tx, ty)):
                return False
    return True


def test_epoch_reproducible_and_epochs_differ(inter):
    kw = dict(batch_size=256, n_negatives=3, n_shared=16, seed=11)
    a = list(PairSampler(inter, **kw).epoch(2))
    b = list(PairSampler(inter, **kw).epoch(2))
    c = list(PairSampler(inter, **kw).epoch(3))
    d = list(PairSampler(inter, **{**kw, "seed": 12}).epoch(2))
    assert same_batches(a, b)
    assert not torch.equal(a[0].items, c[0].items)
    assert not torch.equal(a[0].negatives, c[0].negatives)
    assert not torch.equal(a[0].items, d[0].items)
    assert a[0].negatives.shape == (256, 3) and a[0].shared.shape == (16,)


def test_negatives_exclude_seen(inter):
    s = PairSampler(inter, batch_size=500, n_negatives=8, seed=0)
    for b in s.epoch(0):
        u = np.repeat(b.users.numpy(), 8)
        assert not inter.contains(u, b.negatives.numpy().ravel()).any()


def test_resume_from_a_batch_yields_the_tail(inter):
    s = PairSampler(inter, batch_size=200, n_negatives=2, n_shared=5, seed=1)
    full = list(s.epoch(4))
    for start in (0, 1, 3, len(s) - 1):
        tail = list(s.epoch(4, start=start))
        assert [b.index for b in tail] == list(range(start, len(s)))
        assert same_batches(tail, full[start:])
    assert list(s.epoch(4, start=len(s))) == []


@pytest.mark.parametrize("world", [2, 3, 7])
def test_sharding_concatenates_to_the_global_batch(inter, world):
    s = PairSampler(inter, batch_size=250, n_negatives=2, n_shared=6, seed=5)
    full = list(s.epoch(1))
    per_rank = [list(s.epoch(1, rank=r, world=world)) for r in range(world)]
    for b, glob in enumerate(full):
        parts = [per_rank[r][b] for r in range(world)]
        sizes = [p.users.numel() for p in parts]
        assert max(sizes) - min(sizes) <= 1
        assert torch.equal(torch.cat([p.users for p in parts]), glob.users)
        assert torch.equal(torch.cat([p.items for p in parts]), glob.items)
        assert torch.equal(torch.cat([p.negatives for p in parts]), glob.negatives)
        for p in parts:
            assert torch.equal(p.shared, glob.shared) and p.index == glob.index


def test_sampler_rejects_bad_settings(inter):
    with pytest.raises(DataError, match="batch_size"):
        PairSampler(inter, batch_size=0)
    empty = Interactions.empty_like(inter, "empty")
    with pytest.raises(DataError, match="no training pairs"):
        PairSampler(empty)


# ------------------------------------------------------------------------------------ popularity
def test_popularity_negatives_beta1_follows_degree(inter):
    deg = inter.item_degree
    pop = PopularityNegatives(deg, beta=1.0, smoothing=0.0)
    assert np.allclose(pop.prob, deg / deg.sum())
    draws = pop.sample(200_000, np.random.default_rng(0))
    freq = np.bincount(draws, minlength=inter.n_items) / draws.size
    assert np.abs(freq - pop.prob).max() < 0.004
    assert (freq[deg == 0] == 0).all()
    # default smoothing: proportional to degree + 1, so every item can be drawn
    smooth = PopularityNegatives(deg, beta=1.0)
    assert np.allclose(smooth.prob, (deg + 1) / (deg + 1).sum())


def test_popularity_negatives_beta0_uniform():
    pop = PopularityNegatives(np.array([100, 0, 3, 7]), beta=0.0)
    assert np.allclose(pop.prob, 0.25)
    freq = np.bincount(pop.sample(40_000, np.random.default_rng(2)), minlength=4) / 40_000
    assert np.abs(freq - 0.25).max() < 0.01


def test_log_expected_counts(inter):
    deg = inter.item_degree.astype(np.float64)
    B = 512
    out = log_expected_counts(inter.item_degree, B)
    assert isinstance(out, torch.Tensor) and out.shape == (inter.n_items,)
    nz = deg > 0
    assert np.allclose(out.numpy()[nz], np.log(B * deg[nz] / deg.sum()))
    small = log_expected_counts(np.array([3, 0, 1]), 8).numpy()
    assert np.allclose(small[[0, 2]], np.log([6.0, 2.0])) and np.isneginf(small[1])
    extra = PopularityNegatives(inter.item_degree, beta=0.5)
    K = 64
    out = log_expected_counts(inter.item_degree, B, extra, K)
    assert np.allclose(out.numpy(), np.log(B * deg / deg.sum() + K * extra.prob))
    assert np.isfinite(out.numpy()).all()
    # the expected counts of the in-batch part add up to the batch size
    assert np.exp(log_expected_counts(inter.item_degree, B).numpy()).sum() == pytest.approx(B)


def test_log_expected_counts_matches_the_sampler(inter):
    """Empirically, an item appears in a batch deg/|D| * B times on average."""
    B = 128
    s = PairSampler(inter, batch_size=B, drop_last=True, seed=0)
    counts = np.zeros(inter.n_items)
    n_batches = 0
    for e in range(6):
        for b in s.epoch(e):
            counts += np.bincount(b.items.numpy(), minlength=inter.n_items)
            n_batches += 1
    emp = counts / n_batches
    exp = np.exp(log_expected_counts(inter.item_degree, B).numpy())
    top = np.argsort(-inter.item_degree)[:10]
    assert np.allclose(emp[top], exp[top], rtol=0.1)


def test_sample_unseen_with_no_training_pairs():
    train = Interactions.from_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), 3, 5)
    neg = sample_unseen(train, np.array([0, 2]), 4, np.random.default_rng(0))
    assert neg.shape == (2, 4) and neg.max() < 5


def test_epoch_rejects_a_rank_outside_the_world():
    from ssmrec.data import PairSampler, synthetic

    sampler = PairSampler(synthetic(20, 10, per_user=(2, 4)), 8)
    with pytest.raises(ValueError, match="rank must be in"):
        next(sampler.epoch(0, rank=2, world=2))
