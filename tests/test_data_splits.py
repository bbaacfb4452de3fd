"""Per-user ratio splits, the validation carve-out and k-core filtering."""

from __future__ import annotations

import numpy as np
import pytest

from ssmrec.data import DataError, Interactions, carve_validation, encode, kcore, ratio_split, synthetic
from ssmrec.data.readers import PairTable


@pytest.fixture(scope="module")
def big() -> Interactions:
    return synthetic(2000, 500, seed=0)


def keyset(inter: Interactions) -> set[int]:
    return set(inter.keys().tolist())


def assert_partition(whole: Interactions, *parts: Interactions) -> None:
    """The parts are pairwise disjoint and their union is ``whole``."""
    for p in parts:
        assert (p.n_users, p.n_items) == (whole.n_users, whole.n_items)
    sets = [keyset(p) for p in parts]
    assert sum(len(s) for s in sets) == whole.nnz
    assert set().union(*sets) == keyset(whole)
    for a in range(len(parts)):
        for b in range(a + 1, len(parts)):
            assert not sets[a] & sets[b]


# ------------------------------------------------------------------------------------ ratio_split
def test_ratio_split_partitions_and_fractions(big):
    tr, va, te = ratio_split(big, (0.7, 0.1, 0.2), seed=0)
    assert_partition(big, tr, va, te)
    assert tr.nnz / big.nnz == pytest.approx(0.7, abs=0.01)
    assert va.nnz / big.nnz == pytest.approx(0.1, abs=0.01)
    assert te.nnz / big.nnz == pytest.approx(0.2, abs=0.01)
    # every user with interactions keeps at least one training item
    assert (tr.user_degree[big.user_degree > 0] >= 1).all()
    # rows stay sorted and unique (the CSR invariant)
    for part in (tr, va, te):
        for u in range(0, big.n_users, 97):
            row = part.row(u)
            assert (np.diff(row) > 0).all()


def test_ratio_split_reproducible_and_seed_dependent(big):
    a = ratio_split(big, seed=5)
    b = ratio_split(big, seed=5)
    c = ratio_split(big, seed=6)
    for x, y in zip(a, b):
        assert np.array_equal(x.indptr, y.indptr) and np.array_equal(x.indices, y.indices)
    assert not np.array_equal(a[2].indices, c[2].indices)
    assert a[2].fingerprint() != c[2].fingerprint()


def test_ratio_split_per_user_counts(big):
    tr, va, te = ratio_split(big, seed=1)
    n = big.user_degree
    # stochastic rounding: each user's test count is floor or ceil of n * 0.2
    assert (te.user_degree >= np.floor(n * 0.2)).all()
    assert (te.user_degree <= np.ceil(n * 0.2)).all()


def test_ratio_split_small_users_keep_a_training_item():
    users = np.array([0, 1, 1, 2, 2, 2])
    items = np.array([0, 0, 1, 0, 1, 2])
    inter = Interactions.from_pairs(users, items, 4, 3)  # user 3 has nothing
    for seed in range(30):
        tr, va, te = ratio_split(inter, (0.2, 0.3, 0.5), seed=seed)
        assert_partition(inter, tr, va, te)
        assert tr.user_degree[0] == 1  # a single item always stays in train
        assert (tr.user_degree[:3] >= 1).all() and tr.user_degree[3] == 0


def test_ratio_split_temporal_puts_latest_in_test(big):
    rng = np.random.default_rng(0)
    stamps = rng.permutation(big.nnz).astype(float)  # distinct times, aligned with indices
    tr, va, te = ratio_split(big, seed=3, timestamps=stamps)
    assert_partition(big, tr, va, te)
    t_of = dict(zip(big.keys().tolist(), stamps.tolist()))
    def times(part, u):
        return [t_of[u * big.n_items + i] for i in part.row(u)]

    for u in range(0, big.n_users, 7):
        t_tr, t_va, t_te = times(tr, u), times(va, u), times(te, u)
        if t_te:
            assert min(t_te) > max(t_tr + t_va)
        if t_va:
            assert min(t_va) > max(t_tr)
    # the time order decides which items: another seed changes at most the rounded counts
    _, _, te2 = ratio_split(big, seed=4, timestamps=stamps)
    latest = {u: max(t_of[u * big.n_items + i] for i in big.row(u)) for u in range(big.n_users)}
    for part in (te, te2):
        for u in range(big.n_users):
            if part.row(u).size:
                assert max(t_of[u * big.n_items + i] for i in part.row(u)) == latest[u]


def test_ratio_split_rejects_bad_input(big):
    for ratios in [(0.5, 0.5, 0.5), (0.0, 0.5, 0.5), (1.2, -0.1, -0.1), (0.5, 0.5)]:
        with pytest.raises(DataError, match="split ratios"):
            ratio_split(big, ratios)
    with pytest.raises(DataError, match="timestamps"):
        ratio_split(big, timestamps=np.zeros(big.nnz - 1))


# ------------------------------------------------------------------------------------ carve_validation
def test_carve_validation_fraction_partition(big):
    tr, _, _ = ratio_split(big, (0.8, 0.0, 0.2), seed=0)
    rest, valid = carve_validation(tr, seed=0)
    assert_partition(tr, rest, valid)
    assert valid.nnz / tr.nnz == pytest.approx(1 / 8, abs=0.01)
    assert (rest.user_degree[tr.user_degree > 0] >= 1).all()
    rest2, valid2 = carve_validation(tr, seed=0)
    assert np.array_equal(valid.indices, valid2.indices)
    _, valid3 = carve_validation(tr, seed=1)
    assert not np.array_equal(valid.indices, valid3.indices)
    _, valid4 = carve_validation(tr, 0.25, seed=0)
    assert valid4.nnz / tr.nnz == pytest.approx(0.25, abs=0.01)


def test_carve_validation_single_item_users_keep_it():
    users = np.arange(50)
    items = np.arange(50) % 7
    one_each = Interactions.from_pairs(users, items, 50, 7)
    for seed in range(5):
        rest, valid = carve_validation(one_each, 0.9, seed=seed)
        assert valid.nnz == 0 and np.array_equal(rest.indices, one_each.indices)


def test_carve_validation_rejects_bad_fraction(big):
    for f in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(DataError, match="fraction"):
            carve_validation(big, f)


# ------------------------------------------------------------------------------------ kcore
def naive_kcore(pairs: set[tuple[int, int]], k: int, user_k: int) -> set[tuple[int, int]]:
    pairs = set(pairs)
    while True:
        ud: dict[int, int] = {}
        idg: dict[int, int] = {}
        for u, i in pairs:
            ud[u] = ud.get(u, 0) + 1
            idg[i] = idg.get(i, 0) + 1
        keep = {(u, i) for u, i in pairs if ud[u] >= user_k and idg[i] >= k}
        if keep == pairs:
            return pairs
        pairs = keep


def random_graph(seed: int, n_users=60, n_items=40, p=0.12) -> Interactions:
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < p
    u, i = np.nonzero(dense)
    return Interactions.from_pairs(u, i, n_users, n_items)


def raw_pairs(inter: Interactions) -> set[tuple]:
    u, i = inter.pairs()
    return set(zip(inter.raw_users(u).tolist(), inter.raw_items(i).tolist()))


@pytest.mark.parametrize("seed, k, user_k", [(0, 3, None), (1, 4, None), (2, 5, 2), (3, 2, 6)])
def test_kcore_matches_naive(seed, k, user_k):
    inter = random_graph(seed)
    out = kcore(inter, k, user_k=user_k)
    expected = naive_kcore(raw_pairs(inter), k, k if user_k is None else user_k)
    assert expected and expected != raw_pairs(inter)  # the filter did something
    assert raw_pairs(out) == expected
    assert out.user_degree.min() >= (k if user_k is None else user_k)
    assert out.item_degree.min() >= k
    # re-indexed to contiguous ids
    assert out.n_users == len({u for u, _ in expected}) and out.n_items == len({i for _, i in expected})


def test_kcore_raw_ids_map_back_for_string_ids():
    rng = np.random.default_rng(7)
    dense = rng.random((30, 20)) < 0.3
    u, i = np.nonzero(dense)
    users = np.array([f"user{x:02d}" for x in u])
    items = np.array([f"item{x:02d}" for x in i])
    inter = encode({"all": PairTable(users, items, "mem", integer_ids=False)})["all"]
    out = kcore(inter, 5)
    expected = naive_kcore(set(zip(users.tolist(), items.tolist())), 5, 5)
    assert expected and raw_pairs(out) == expected
    assert out.user_ids.dtype.kind == "U"


def test_kcore_nothing_survives():
    inter = Interactions.from_pairs(np.array([0, 1]), np.array([0, 1]), 2, 2)
    with pytest.raises(DataError, match="nothing survives"):
        kcore(inter, 2)


def test_kcore_already_a_core_is_unchanged_up_to_reindexing():
    inter = random_graph(4, p=0.5)
    once = kcore(inter, 3)
    twice = kcore(once, 3)
    assert np.array_equal(once.indptr, twice.indptr) and np.array_equal(once.indices, twice.indices)
    assert raw_pairs(twice) == {(once.user_ids[u], once.item_ids[i]) for u, i in zip(*once.pairs())}


# ------------------------------------------------------------------------------------ containers
def test_interactions_invariants_checked():
    with pytest.raises(DataError, match="indptr"):
        Interactions(np.array([0, 2, 1]), np.array([0, 1]), 2, 3)
    with pytest.raises(DataError, match="indptr"):
        Interactions(np.array([0, 1, 3]), np.array([0, 1]), 2, 3)
    with pytest.raises(DataError, match="item id outside"):
        Interactions(np.array([0, 1, 2]), np.array([0, 3]), 2, 3)
    with pytest.raises(DataError, match="user id outside"):
        Interactions.from_pairs(np.array([0, 5]), np.array([0, 1]), 3, 3)


def test_interactions_membership_union_select():
    a = Interactions.from_pairs(np.array([0, 0, 2, 2]), np.array([1, 3, 0, 1]), 3, 4)
    b = Interactions.from_pairs(np.array([0, 1]), np.array([3, 2]), 3, 4)
    assert a.contains(np.array([0, 0, 1, 2]), np.array([1, 2, 2, 0])).tolist() == [True, False, False, True]
    u, i = a.overlap(b)
    assert list(zip(u.tolist(), i.tolist())) == [(0, 3)]
    both = a.union(b)
    assert both.nnz == 5 and both.row(0).tolist() == [1, 3]
    sel = a.select(a.indices != 1)
    assert sel.row(0).tolist() == [3] and sel.row(2).tolist() == [0] and sel.nnz == 2
    assert a.item_degree.tolist() == [1, 2, 0, 1]
    with pytest.raises(DataError, match="differ in shape"):
        a.union(Interactions.from_pairs(np.array([0]), np.array([0]), 3, 5))


def test_synthetic_small_catalogue_and_determinism():
    small = synthetic(10, 3, per_user=(5, 30), seed=0)  # more wanted per user than there are items
    assert small.n_items == 3 and (small.user_degree == 3).all()
    a, b = synthetic(50, 40, seed=9), synthetic(50, 40, seed=9)
    assert a.fingerprint() == b.fingerprint() != synthetic(50, 40, seed=8).fingerprint()
    d = synthetic(100, 60, per_user=(4, 9), seed=1).user_degree
    assert d.min() >= 4 and d.max() <= 9
