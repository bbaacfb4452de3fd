"""Training batches drawn on the device: :class:`PairSampler`'s batches without a host round trip.

:class:`DeviceSampler` holds the training pairs, the sorted seen keys and the shared-negative CDF
as tensors on the training device, once; every batch (shuffle slice, per-positive negatives,
shared negatives, dislikes) is then made there by fixed-shape tensor operations, so a CUDA step
never waits for the host to sample.

Randomness is explicit, as in :mod:`ssmrec.data.sampling`: the epoch's shuffle comes from a
``torch.Generator`` on the device seeded from ``(seed, epoch)``, a batch's draws from one seeded
from ``(seed, epoch, batch index)`` (one integer derived by :class:`numpy.random.SeedSequence`),
so an epoch is reproducible and resumes at any batch with the same batches. The stream is
torch's, not numpy's: the batches follow the same distributions as :class:`PairSampler`'s but are
not the same numbers, and a CPU generator and a CUDA one give different numbers for one seed
(a run is reproducible on one kind of device, not across them).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ssmrec.data.interactions import DataError, Interactions
from ssmrec.data.sampling import Batch, PairSampler, shard_range

WIDE = 2**62
"""Integers are drawn below ``WIDE`` and reduced modulo the range: torch's 64-bit path, whose
modulo bias (``range / 2**62``) is negligible, where a range below ``2**32`` would take the
32-bit path with a bias of ``range / 2**32``."""


def _below(high: int | torch.Tensor, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    """Uniform integers in ``[0, high)`` (``high`` a number or a tensor broadcast to ``shape``)."""
    return torch.randint(0, WIDE, shape, generator=g, device=g.device) % high


def batch_seed(*entropy: int) -> int:
    """One 64-bit seed for a ``torch.Generator`` from ``entropy`` (seed, epoch, batch...), mixed by
    :class:`numpy.random.SeedSequence` so that nearby tuples give unrelated streams."""
    return int(np.random.SeedSequence(list(entropy)).generate_state(1, np.uint64)[0])


class DeviceSampler(PairSampler):
    """Shuffled positive pairs in mini-batches with their negatives, made on ``device``.

    The interface of :class:`~ssmrec.data.sampling.PairSampler` (same arguments, ``len``,
    :meth:`epoch`, :meth:`permutation`), the same batches in distribution, another random stream
    (see the module's docstring).

    Per-positive negatives are uniform over the user's unseen items: ``rounds`` rounds of
    vectorised rejection (every slot redrawn where it hit a seen item, kept otherwise), then, for
    the slots still rejected, an exact draw: a rank ``r`` uniform below the user's number of
    unseen items, mapped to the user's ``r``-th unseen item by one ``searchsorted`` (the item is
    ``r`` plus the number of seen items ``s_j`` with ``s_j - j <= r``). The fallback is computed
    for every slot and selected where needed, so shapes never depend on the data and nothing
    waits for the host; a negative is never a seen item.

    Args:
        train, batch_size, n_negatives, n_shared, shared_sampler, exclude_seen, seed, drop_last,
            dislikes: as :class:`~ssmrec.data.sampling.PairSampler`.
        device: where the tensors live and the batches are made (default: ``cpu``).
        rounds: rejection rounds before the exact fallback (default: 2). Any number gives the
            same distribution; 0 is exact too (the fallback alone).

    Raises:
        DataError: a user has interacted with every item while per-positive negatives avoiding
            seen items are asked for (checked once here, not per batch).
    """

    def __init__(self, train: Interactions, batch_size: int = 2048, *, device: torch.device | str = "cpu",
                 rounds: int = 2, **settings):
        if rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {rounds}")
        super().__init__(train, batch_size, **settings)
        self.device = torch.device(device)
        self.rounds = rounds
        put = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(self.device)  # noqa: E731
        pair_users = train.pair_users()
        self._users, self._items = put(pair_users), put(train.indices)
        self._keys = None
        if self.exclude_seen and self.n_negatives:
            full = train.user_degree >= train.n_items
            if full.any():
                raise DataError(f"user {int(np.flatnonzero(full)[0])} has interacted with every item; "
                                "no negative can be sampled")
            self._keys = put(train.keys())
            # per row, s_j - j: how many unseen items precede the row's j-th seen item (non-decreasing)
            before = train.indices - (np.arange(train.nnz) - train.indptr[pair_users])
            self._unseen_keys = put(pair_users * (train.n_items + 1) + before)
            self._indptr = put(train.indptr)
            self._n_unseen = put(train.n_items - train.user_degree)
        if self.n_shared:
            prob = self.shared_sampler.prob
            self._cdf = put(np.cumsum(prob))  # float64, as PopularityNegatives
            self._last = int(np.flatnonzero(prob > 0)[-1])
        if self.dislikes is not None:
            self._d_users, self._d_items = put(self.dislikes.pair_users()), put(self.dislikes.indices)

    @classmethod
    def like(cls, host: PairSampler, device: torch.device | str, rounds: int = 2) -> DeviceSampler:
        """The device sampler with ``host``'s settings (its batches in distribution)."""
        return cls(host.train, host.batch_size, n_negatives=host.n_negatives, n_shared=host.n_shared,
                   shared_sampler=host.shared_sampler, exclude_seen=host.exclude_seen, seed=host.seed,
                   drop_last=host.drop_last, dislikes=getattr(host, "dislikes", None), device=device,
                   rounds=rounds)

    def _generator(self, *entropy: int) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed(batch_seed(*entropy))
        return g

    def permutation(self, epoch: int) -> torch.Tensor:
        """The epoch's order of the training pairs, a tensor on the device."""
        return torch.randperm(self.train.nnz, generator=self._generator(self.seed, epoch), device=self.device)

    def epoch(self, epoch: int, *, start: int = 0, rank: int = 0, world: int = 1) -> Iterator[Batch]:
        """The batches of one epoch, from batch ``start`` on, as tensors on the device.

        With ``world > 1`` each rank gets a contiguous, near-equal slice of every global batch, as
        :meth:`PairSampler.epoch`; every rank draws the same global batch, which on CUDA assumes
        the ranks' GPUs are of one kind (one seed gives one stream there).
        """
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in [0, {world}), got {rank}")
        perm = self.permutation(epoch)
        if self.dislikes is not None:
            d_perm = torch.randperm(self.dislikes.nnz, generator=self._generator(self.seed, epoch, 2),
                                    device=self.device)
        for b in range(start, len(self)):
            sel = perm[b * self.batch_size : (b + 1) * self.batch_size]
            g = self._generator(self.seed, epoch, b, 1)
            users, items = self._users[sel], self._items[sel]
            negatives = shared = du = di = None
            if self.n_negatives:
                if self._keys is not None:
                    negatives = self.negatives(users, g)
                else:
                    negatives = _below(self.train.n_items, (users.numel(), self.n_negatives), g)
            if self.n_shared:
                r = torch.rand(self.n_shared, generator=g, dtype=torch.float64, device=self.device) * self._cdf[-1]
                shared = torch.searchsorted(self._cdf, r, right=True).clamp_(max=self._last)
            if self.dislikes is not None:  # batch b's equal share of this epoch's shuffled dislikes
                n_d, n_b = self.dislikes.nnz, len(self)
                sel_d = d_perm[b * n_d // n_b : (b + 1) * n_d // n_b]
                du, di = self._d_users[sel_d], self._d_items[sel_d]
            size = users.numel()
            if world > 1:
                lo, hi = shard_range(size, rank, world)
                users, items = users[lo:hi], items[lo:hi]
                negatives = negatives[lo:hi] if negatives is not None else None
                if du is not None:
                    lo, hi = shard_range(du.numel(), rank, world)
                    du, di = du[lo:hi], di[lo:hi]
            yield Batch(users, items, negatives, shared, index=b, global_size=size,
                        dislike_users=du, dislike_items=di)

    def negatives(self, users: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """``(len(users), n_negatives)`` items, each uniform over its user's unseen items."""
        n_items = self.train.n_items
        u = users.unsqueeze(1).expand(users.numel(), self.n_negatives)
        out = _below(n_items, u.shape, g)
        for _ in range(self.rounds):
            out = torch.where(self._seen(u, out), _below(n_items, u.shape, g), out)
        # exact fallback: the r-th unseen item of the user, r uniform below the user's unseen count
        r = _below(self._n_unseen[u], u.shape, g)
        pos = torch.searchsorted(self._unseen_keys, u * (n_items + 1) + r, right=True)
        return torch.where(self._seen(u, out), r + (pos - self._indptr[u]), out)

    def _seen(self, u: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        q = u * self.train.n_items + items
        pos = torch.searchsorted(self._keys, q).clamp_(max=self._keys.numel() - 1)
        return self._keys[pos] == q
