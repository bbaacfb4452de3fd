"""Per-user splits and k-core filtering, vectorised and seeded."""

from __future__ import annotations

import numpy as np

from ssmrec.data.interactions import DataError, Interactions


def _rank_within_user(inter: Interactions, key: np.ndarray) -> np.ndarray:
    """Position (0-based) of every pair within its user's row when the row is sorted by ``key``."""
    users = inter.pair_users()
    order = np.lexsort((key, users))
    rank = np.empty(inter.nnz, np.int64)
    rank[order] = np.arange(inter.nnz) - inter.indptr[users[order]]
    return rank


def _stochastic_round(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    base = np.floor(x)
    return (base + (rng.random(x.shape) < (x - base))).astype(np.int64)


def ratio_split(
    inter: Interactions,
    ratios: tuple[float, float, float] = (0.7, 0.1, 0.2),
    *,
    seed: int = 0,
    timestamps: np.ndarray | None = None,
) -> tuple[Interactions, Interactions, Interactions]:
    """Split every user's items into train / validation / test by the given ratios.

    Each user's items are shuffled (or ordered by ``timestamps``, aligned with
    ``inter.indices``, for a temporal split: the latest go to test), then the last
    ``round(n * r_test)`` go to test and the ``round(n * r_valid)`` before them to validation,
    rounding stochastically so that the fractions hold in expectation for users with few
    items. Every user keeps at least one training item.

    Args:
        inter: all interactions.
        ratios: train, validation and test fractions (default: ``(0.7, 0.1, 0.2)``).
        seed: seed of the shuffle and of the rounding (default: ``0``).
        timestamps: optional per-pair times; when given, the split is temporal.
    """
    r = np.asarray(ratios, dtype=np.float64)
    if r.shape != (3,) or (r < 0).any() or not np.isclose(r.sum(), 1.0) or r[0] <= 0:
        raise DataError(f"split ratios must be three non-negative numbers summing to 1 with a "
                        f"positive train share, got {tuple(ratios)}")
    rng = np.random.default_rng(seed)
    if timestamps is None:
        key = rng.random(inter.nnz)
    else:
        key = np.asarray(timestamps, np.float64)
        if key.shape != (inter.nnz,):
            raise DataError(f"{inter.name or 'interactions'}: {key.size} timestamps given for "
                            f"{inter.nnz} pairs; they must align with the stored pairs")
    rank = _rank_within_user(inter, key)
    n = inter.user_degree
    n_test = np.minimum(_stochastic_round(n * r[2], rng), np.maximum(n - 1, 0))
    n_valid = np.minimum(_stochastic_round(n * r[1], rng), np.maximum(n - 1 - n_test, 0))
    users = inter.pair_users()
    from_end = n[users] - 1 - rank  # 0 for the last item of the user's order
    test = from_end < n_test[users]
    valid = ~test & (from_end < (n_test + n_valid)[users])
    train = ~(test | valid)
    return inter.select(train, "train"), inter.select(valid, "valid"), inter.select(test, "test")


def carve_validation(
    train: Interactions, fraction: float = 1 / 8, *, seed: int = 0
) -> tuple[Interactions, Interactions]:
    """Move a random ``fraction`` of each user's training items into a validation set.

    The count per user is ``n * fraction`` rounded stochastically (so the fraction holds in
    expectation), at most ``n - 1``: a user with a single training item keeps it.

    Args:
        train: the training interactions.
        fraction: the share to move (default: ``1/8``, which turns an 8:2 train/test split
            into the 7:1:2 split the paper describes).
        seed: seed (default: ``0``).

    Returns:
        ``(train_rest, valid)``.
    """
    if not 0 < fraction < 1:
        raise DataError(f"validation fraction must be in (0, 1), got {fraction}")
    rest, valid, _ = ratio_split(train, (1 - fraction, fraction, 0.0), seed=seed)
    return rest, valid


def kcore_mask(users: np.ndarray, items: np.ndarray, k: int = 10, *, user_k: int | None = None) -> np.ndarray:
    """Which (user, item) rows survive the ``k``-core filter (users and items with fewer than
    ``k`` rows dropped until none remain); ids may be integers or strings."""
    user_k = k if user_k is None else user_k
    _, u = np.unique(users, return_inverse=True)
    _, i = np.unique(items, return_inverse=True)
    keep = np.ones(u.size, bool)
    while True:
        ud = np.bincount(u[keep], minlength=u.max() + 1 if u.size else 0)
        idg = np.bincount(i[keep], minlength=i.max() + 1 if i.size else 0)
        now = keep & (ud[u] >= user_k) & (idg[i] >= k)
        if (now == keep).all():
            return keep
        keep = now


def kcore(inter: Interactions, k: int = 10, *, user_k: int | None = None) -> Interactions:
    """Drop users and items with fewer than ``k`` interactions until none remain, then re-index.

    Args:
        inter: the interactions.
        k: minimum item degree (and user degree unless ``user_k`` is given) (default: ``10``).
        user_k: minimum user degree (default: ``k``).
    """
    user_k = k if user_k is None else user_k
    users, items = inter.pairs()
    while True:
        ud = np.bincount(users, minlength=inter.n_users)
        idg = np.bincount(items, minlength=inter.n_items)
        keep = (ud[users] >= user_k) & (idg[items] >= k)
        if keep.all():
            break
        users, items = users[keep], items[keep]
    if users.size == 0:
        raise DataError(f"{inter.name or 'data'}: nothing survives {k}-core filtering")
    uk, u = np.unique(users, return_inverse=True)
    ik, i = np.unique(items, return_inverse=True)
    return Interactions.from_pairs(
        u, i, uk.size, ik.size,
        user_ids=inter.raw_users(uk), item_ids=inter.raw_items(ik), name=inter.name,
    )
