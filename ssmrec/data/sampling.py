"""Training batches: shuffled positive pairs and vectorised negative sampling.

Randomness is explicit: a batch's shuffle and negatives come from generators seeded by
``(seed, epoch)`` and ``(seed, epoch, batch index)``, so an epoch is reproducible, can be resumed
at any batch, and splits across workers without changing what the global batch holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ssmrec.data.interactions import DataError, Interactions


@dataclass
class Batch:
    """One mini-batch: positive pairs ``(users[k], items[k])`` and optional negatives.

    ``negatives`` is ``(B, n_neg)`` per-positive negatives (BPR/BCE/CCL); ``shared`` is a
    ``(K,)`` set of extra negatives shared by the whole batch (sampled softmax);
    ``dislike_users`` / ``dislike_items`` this batch's share of the explicit negatives (losses
    trained on dislikes, such as ``ntr``). When the batch
    is one worker's part of a global batch, ``global_size`` is the global batch's size (the
    parts are :func:`shard_range` slices of it); 0 means the batch is the whole global batch.
    """

    users: torch.Tensor
    items: torch.Tensor
    negatives: torch.Tensor | None = None
    shared: torch.Tensor | None = None
    index: int = 0
    global_size: int = 0
    dislike_users: torch.Tensor | None = None
    dislike_items: torch.Tensor | None = None

    @property
    def total(self) -> int:
        """Positives in the global batch this batch belongs to."""
        return self.global_size or self.users.numel()

    def to(self, device: torch.device | str) -> Batch:
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch(move(self.users), move(self.items), move(self.negatives), move(self.shared),
                     self.index, self.global_size, move(self.dislike_users), move(self.dislike_items))


def sample_unseen(
    train: Interactions, users: np.ndarray, n: int, rng: np.random.Generator,
    keys: np.ndarray | None = None, rounds: int = 8,
) -> np.ndarray:
    """Draw ``n`` items per user uniformly among the items that user has not interacted with.

    Rejection sampling, vectorised: draw all, re-draw the rejected ones, repeat. After ``rounds``
    rounds the few draws still rejected (users who have seen most of the catalogue) are taken
    directly from their user's unseen items, so the result is exact and always terminates.
    Returns an ``(len(users), n)`` int64 array.
    """
    if keys is None:
        keys = train.keys()
    users = np.asarray(users, np.int64)
    full = train.indptr[users + 1] - train.indptr[users] >= train.n_items  # (not user_degree: O(users) a batch)
    if full.any():
        raise DataError(f"user {int(users[full][0])} has interacted with every item; "
                        "no negative can be sampled")
    out = rng.integers(0, train.n_items, size=(users.size, n), dtype=np.int64)
    if keys.size == 0:
        return out
    flat_users = np.repeat(users, n)
    todo = np.arange(out.size)
    for _ in range(rounds):
        q = flat_users[todo] * train.n_items + out.flat[todo]
        pos = np.minimum(np.searchsorted(keys, q), keys.size - 1)
        todo = todo[keys[pos] == q]
        if todo.size == 0:
            return out
        out.flat[todo] = rng.integers(0, train.n_items, size=todo.size, dtype=np.int64)
    q = flat_users[todo] * train.n_items + out.flat[todo]
    pos = np.minimum(np.searchsorted(keys, q), keys.size - 1)
    todo = todo[keys[pos] == q]
    for user in np.unique(flat_users[todo]):
        slots = todo[flat_users[todo] == user]
        unseen = np.setdiff1d(np.arange(train.n_items), train.row(user), assume_unique=True)
        out.flat[slots] = rng.choice(unseen, size=slots.size)
    return out


class PopularityNegatives:
    """Items drawn with probability proportional to ``(degree + smoothing) ** beta``.

    ``beta=0`` is uniform; ``beta=1, smoothing=0`` is the in-batch (empirical frequency)
    distribution; the default smoothing of 1 keeps items never seen in training drawable.
    """

    def __init__(self, item_degree: np.ndarray, beta: float = 0.0, smoothing: float = 1.0):
        w = (np.asarray(item_degree, np.float64) + smoothing) ** beta
        if not np.isfinite(w).all() or w.sum() <= 0:
            raise DataError(f"negative sampling weights (degree + {smoothing}) ** {beta} are not a distribution")
        self.prob = w / w.sum()
        self._cdf = np.cumsum(self.prob)
        self._last = int(np.flatnonzero(self.prob > 0)[-1])

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        r = rng.random(n) * self._cdf[-1]
        return np.minimum(np.searchsorted(self._cdf, r, side="right"), self._last).astype(np.int64)


def log_expected_counts(
    item_degree: np.ndarray, batch_size: int, extra: PopularityNegatives | None = None,
    n_extra: int = 0,
) -> torch.Tensor:
    """``log`` of the expected number of times each item appears among a batch's candidates.

    In-batch candidates are the batch's positives, drawn (through the shuffled pairs) with
    probability ``degree / |D|`` each; extra negatives add ``n_extra * q(item)``. Subtracting
    this from each candidate's logit (the logQ correction) makes
    ``sum_candidates exp(logit - log E[count])`` an unbiased estimate of the sum over all items.
    Items that can never be drawn get ``-inf`` (they never appear as candidates).
    """
    deg = np.asarray(item_degree, np.float64)
    expected = batch_size * deg / deg.sum()
    if extra is not None and n_extra:
        expected = expected + n_extra * extra.prob
    with np.errstate(divide="ignore"):
        return torch.from_numpy(np.log(expected))


class PairSampler:
    """Shuffled positive pairs in mini-batches, with the negatives a loss asks for.

    Args:
        train: training interactions.
        batch_size: positives per (global) batch (default: 2048).
        n_negatives: per-positive negatives, uniform over the user's unseen items; 0 for none
            (default: 0).
        n_shared: extra negatives shared by the batch (sampled softmax), 0 for none (default: 0).
        shared_sampler: distribution of the shared negatives (default: uniform).
        exclude_seen: per-positive negatives avoid the user's training items (default: True).
        seed: base seed (default: 0).
        drop_last: drop a last incomplete batch (default: False).
        dislikes: explicit negatives to spread over the batches, every one once per epoch in a
            shuffled order, an equal share per batch (default: none).
    """

    def __init__(
        self,
        train: Interactions,
        batch_size: int = 2048,
        *,
        n_negatives: int = 0,
        n_shared: int = 0,
        shared_sampler: PopularityNegatives | None = None,
        exclude_seen: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        dislikes: Interactions | None = None,
    ):
        if train.nnz == 0:
            raise DataError(f"{train.name or 'train'}: no training pairs")
        if batch_size < 1:
            raise DataError(f"batch_size must be positive, got {batch_size}")
        self.train = train
        self.batch_size = batch_size
        self.n_negatives = n_negatives
        self.n_shared = n_shared
        self.shared_sampler = shared_sampler or (PopularityNegatives(train.item_degree, 0.0)
                                                 if n_shared else None)
        self.exclude_seen = exclude_seen
        self.seed = seed
        self.drop_last = drop_last
        self._users = train.pair_users()
        self._items = train.indices
        self._keys = train.keys() if exclude_seen and n_negatives else None
        self.dislikes = dislikes if dislikes is not None and dislikes.nnz else None

    def __len__(self) -> int:
        n = self.train.nnz
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.train.nnz)

    def epoch(self, epoch: int, *, start: int = 0, rank: int = 0, world: int = 1) -> Iterator[Batch]:
        """The batches of one epoch, from batch ``start`` on.

        With ``world > 1`` each rank gets a contiguous, near-equal slice of every global batch
        (the global batch is unchanged, so negatives and shuffles match a single process).
        """
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in [0, {world}), got {rank}")
        perm = self.permutation(epoch)
        if self.dislikes is not None:
            d_perm = np.random.default_rng([self.seed, epoch, 2]).permutation(self.dislikes.nnz)
            d_users, d_items = self.dislikes.pair_users(), self.dislikes.indices
        for b in range(start, len(self)):
            sel = perm[b * self.batch_size : (b + 1) * self.batch_size]
            rng = np.random.default_rng([self.seed, epoch, b, 1])
            users, items = self._users[sel], self._items[sel]
            negatives = shared = None
            if self.n_negatives:
                if self.exclude_seen:
                    negatives = sample_unseen(self.train, users, self.n_negatives, rng, self._keys)
                else:
                    negatives = rng.integers(0, self.train.n_items, (users.size, self.n_negatives))
            if self.n_shared:
                shared = self.shared_sampler.sample(self.n_shared, rng)
            du = di = None
            if self.dislikes is not None:  # batch b's equal share of this epoch's shuffled dislikes
                n_d, n_b = self.dislikes.nnz, len(self)
                sel_d = d_perm[b * n_d // n_b : (b + 1) * n_d // n_b]
                du, di = d_users[sel_d], d_items[sel_d]
            size = users.size
            if world > 1:
                lo, hi = shard_range(size, rank, world)
                users, items = users[lo:hi], items[lo:hi]
                negatives = negatives[lo:hi] if negatives is not None else None
                if du is not None:
                    lo, hi = shard_range(du.size, rank, world)
                    du, di = du[lo:hi], di[lo:hi]
            yield Batch(
                torch.from_numpy(users), torch.from_numpy(items),
                None if negatives is None else torch.from_numpy(negatives),
                None if shared is None else torch.from_numpy(shared),
                index=b, global_size=size,
                dislike_users=None if du is None else torch.from_numpy(du),
                dislike_items=None if di is None else torch.from_numpy(di),
            )


def shard_range(n: int, rank: int, world: int) -> tuple[int, int]:
    """``[lo, hi)`` of rank ``rank``'s contiguous part of ``n`` rows split near-equally over
    ``world`` ranks (the first ``n % world`` ranks hold one row more)."""
    per, extra = divmod(n, world)
    lo = rank * per + min(rank, extra)
    return lo, lo + per + (rank < extra)
