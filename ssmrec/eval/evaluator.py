"""Full-ranking evaluation of a model against held-out interactions."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ssmrec.data.interactions import Interactions
from ssmrec.eval.metrics import METRICS, MetricAccumulator
from ssmrec.eval.ranking import SeenItems, hit_matrix, iter_topk, relevant_keys, scored_reps


class Evaluator:
    """All-ranking evaluation: every item a user has not been trained on is ranked.

    Args:
        target: held-out interactions (validation or test); users without any are skipped.
        exclude: interaction sets whose items are removed from each user's ranking (the
            training set; plus the validation set when testing) (default: none).
        ks: cut-offs (default: ``(20,)``).
        metrics: names from :data:`~ssmrec.eval.metrics.METRICS` (default: all).
        similarity: test-time scoring, ``"ip"`` or ``"cos"``, independent of training
            (default: ``"ip"``).
        chunk_size: users scored at once; memory is ``chunk_size x n_items`` floats
            (default: 2048).
        device: where scoring happens (default: cpu).
        progress: show a progress bar over the user chunks (default: False).
        dislikes: held-out explicit negatives; adds ``dislike@K``, the share of a user's held-out
            dislikes ranked in their top K (lower is better), averaged over the evaluated users
            who have any (default: none).
        sample: evaluate a fixed, seeded sample of this many users with held-out items instead
            of all of them (0 or at least their number: all; default: 0). The same users every
            evaluation, so epochs compare; :meth:`MetricAccumulator.intervals` gives the
            uncertainty the sample adds.
        seed: seed of the sample (default: 0).
    """

    def __init__(
        self,
        target: Interactions,
        exclude: list[Interactions] | tuple[Interactions, ...] = (),
        *,
        ks: tuple[int, ...] = (20,),
        metrics: tuple[str, ...] = METRICS,
        similarity: str = "ip",
        chunk_size: int = 2048,
        device: torch.device | str = "cpu",
        progress: bool = False,
        dislikes: Interactions | None = None,
        sample: int = 0,
        seed: int = 0,
    ):
        self.target = target
        self.exclude = list(exclude)
        self.ks, self.metrics = tuple(ks), tuple(metrics)
        self.similarity = similarity
        self.chunk_size = chunk_size
        self.device = torch.device(device)
        self.seen = SeenItems(self.exclude, self.device) if self.exclude else None
        self.keys = relevant_keys(target, self.device)
        self.users = torch.from_numpy(sample_users(target.active_users, sample, seed)).to(self.device)
        self.sampled = self.users.numel() < target.active_users.size
        self.n_relevant = torch.from_numpy(target.user_degree).to(self.device)
        self.last: MetricAccumulator | None = None
        self.progress = progress
        self.dislikes = dislikes if dislikes is not None and dislikes.nnz else None
        if self.dislikes is not None:
            self.dislike_keys = relevant_keys(self.dislikes, self.device)
            self.n_disliked = torch.from_numpy(self.dislikes.user_degree).to(self.device)

    def accumulate(
        self, user_reps: torch.Tensor, item_reps: torch.Tensor, users: torch.Tensor | None = None
    ) -> MetricAccumulator:
        """Per-user metrics for ``users`` (default: every user with held-out items)."""
        acc = MetricAccumulator(self.target.n_users, self.ks, self.metrics, dislikes=self.dislikes is not None)
        users = self.users if users is None else users.to(self.device)
        user_reps, item_reps = user_reps.to(self.device), item_reps.to(self.device)
        chunks = iter_topk(user_reps, item_reps, users, acc.max_k, seen=self.seen,
                           similarity=self.similarity, chunk_size=self.chunk_size)
        with tqdm(total=users.numel(), unit="user", desc="ranking", disable=not self.progress, leave=False) as bar:
            for chunk, top, _ in chunks:
                hits = hit_matrix(self.keys, self.target.n_items, chunk, top)
                acc.update(chunk, hits, self.n_relevant[chunk])
                if self.dislikes is not None:
                    acc.update_dislikes(chunk, hit_matrix(self.dislike_keys, self.target.n_items, chunk, top),
                                        self.n_disliked[chunk])
                bar.update(chunk.numel())
        return acc

    @torch.no_grad()
    def evaluate(
        self, user_reps: torch.Tensor, item_reps: torch.Tensor, *, users: torch.Tensor | None = None,
        combine: Callable[[MetricAccumulator], MetricAccumulator] | None = None,
    ) -> dict[str, float]:
        """Mean metrics. ``users`` and ``combine`` split the work: each worker of a distributed
        run scores its part of :attr:`users` and ``combine`` merges the workers' accumulators
        (see :meth:`ssmrec.train.distributed.DistContext.combine`)."""
        acc = self.accumulate(user_reps, item_reps, users)
        self.last = combine(acc) if combine is not None else acc
        return self.last.compute()

    def intervals(self, level: float = 0.95) -> dict[str, float]:
        """Half-widths of the confidence intervals of the last evaluation's means (see
        :meth:`MetricAccumulator.intervals`)."""
        if self.last is None:
            raise RuntimeError("evaluate first")
        return self.last.intervals(level)

    @torch.no_grad()
    def evaluate_model(self, model: torch.nn.Module, **kwargs) -> dict[str, float]:
        return self.evaluate(*scored_reps(model), **kwargs)


def sample_users(users: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` of ``users`` drawn without replacement by a seeded generator, in increasing order
    (all of them when ``n`` is 0 or at least their number)."""
    if n < 0:
        raise ValueError(f"a user sample must be a positive number of users (0: all), got {n}")
    if not n or n >= users.size:
        return users
    pick = np.random.default_rng(seed).choice(users.size, size=n, replace=False)
    return np.sort(users[pick])
