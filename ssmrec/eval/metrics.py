"""Top-K ranking metrics as per-user accumulators (update / compute / reset).

Per-user values are kept (not only running sums) so that results do not depend on how users
are chunked or sharded, and so that paired significance tests can use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

METRICS = ("recall", "ndcg", "precision", "hitrate", "mrr")


def metric_values(hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """Per-user metrics at ``k`` from a ranked hit matrix.

    Args:
        hits: ``(U, >=k)`` boolean, ``hits[u, r]`` = the item at rank ``r`` (0-based) is relevant.
        n_relevant: ``(U,)`` number of relevant (held-out) items of each user, all > 0.
        k: cut-off.

    Recall divides by all relevant items; NDCG uses binary gains with the ideal DCG over
    ``min(n_relevant, k)`` positions; MRR is ``1 / rank`` of the first hit within ``k`` (0 if none).
    """
    h = hits[:, :k].to(torch.float64)
    n = n_relevant.to(torch.float64)
    count = h.sum(1)
    discount = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64, device=h.device))
    dcg = (h * discount).sum(1)
    ideal = torch.cumsum(discount, 0)[(n.clamp(max=k) - 1).long()]
    first = torch.where(h.any(1), h.argmax(1).to(torch.float64) + 1, torch.inf)
    return {
        "recall": count / n,
        "precision": count / k,
        "ndcg": dcg / ideal,
        "hitrate": (count > 0).to(torch.float64),
        "mrr": 1.0 / first,
    }


@dataclass
class MetricAccumulator:
    """Collects per-user metric values for every ``name@k``.

    Args:
        n_users: size of the user space (values are stored at the users' positions).
        ks: cut-offs (default: ``(20,)``).
        metrics: which metrics (default: all of :data:`METRICS`).
        dislikes: also keep ``dislike@k`` (see :meth:`update_dislikes`) (default: False).
    """

    n_users: int
    ks: tuple[int, ...] = (20,)
    metrics: tuple[str, ...] = METRICS
    dislikes: bool = False
    values: dict[str, np.ndarray] = field(default_factory=dict)
    seen: np.ndarray | None = None

    def __post_init__(self) -> None:
        unknown = set(self.metrics) - set(METRICS)
        if unknown:
            raise ValueError(f"unknown metric(s) {sorted(unknown)}; choose from {METRICS}")
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"cut-offs must be positive integers, got {self.ks}")
        self.ks = tuple(sorted(set(int(k) for k in self.ks)))
        self.reset()

    @property
    def max_k(self) -> int:
        return max(self.ks)

    def reset(self) -> None:
        self.values = {f"{m}@{k}": np.zeros(self.n_users) for m in self.metrics for k in self.ks}
        if self.dislikes:  # NaN for users without held-out dislikes: they do not count in its mean
            self.values.update({f"dislike@{k}": np.full(self.n_users, np.nan) for k in self.ks})
        self.seen = np.zeros(self.n_users, bool)

    def update(self, users: torch.Tensor, hits: torch.Tensor, n_relevant: torch.Tensor) -> None:
        u = users.cpu().numpy()
        for k in self.ks:
            vals = metric_values(hits, n_relevant, k)
            for m in self.metrics:
                self.values[f"{m}@{k}"][u] = vals[m].cpu().numpy()
        self.seen[u] = True

    def update_dislikes(self, users: torch.Tensor, hits: torch.Tensor, n_disliked: torch.Tensor) -> None:
        """``dislike@k``: the share of a user's held-out dislikes ranked in their top ``k`` (lower
        is better), for the users who have any (``hits`` as in :func:`metric_values`, against the
        dislikes)."""
        has = (n_disliked > 0).cpu().numpy()
        u = users.cpu().numpy()[has]
        n = n_disliked.to(torch.float64)
        for k in self.ks:
            share = (hits[:, :k].to(torch.float64).sum(1) / n.clamp(min=1)).cpu().numpy()
            self.values[f"dislike@{k}"][u] = share[has]

    def merge_(self, other: MetricAccumulator) -> MetricAccumulator:
        """Add another accumulator's users (disjoint from ours) into this one."""
        for key, v in other.values.items():
            self.values[key] = np.where(other.seen, v, self.values[key])
        self.seen |= other.seen
        return self

    def compute(self) -> dict[str, float]:
        """Means over the evaluated users."""
        n = int(self.seen.sum())
        if n == 0:
            return {key: float("nan") for key in self.values}
        out = {}
        for key, v in self.values.items():
            v = v[self.seen]
            if key.startswith("dislike@"):  # over the users with held-out dislikes
                v = v[~np.isnan(v)]
            out[key] = float(v.mean()) if v.size else float("nan")
        return out

    def intervals(self, level: float = 0.95) -> dict[str, float]:
        """Half-widths of the normal-approximation confidence interval of each mean over the
        evaluated users: ``z * std / sqrt(n)`` (``z`` = 1.96 at 95%; sample std, ``ddof=1``); NaN
        with fewer than two users. It measures the uncertainty from which users were evaluated,
        e.g. when selection runs on a sample of them."""
        from statistics import NormalDist

        z = NormalDist().inv_cdf(0.5 + level / 2)
        out = {}
        for key, v in self.values.items():
            v = v[self.seen]
            v = v[~np.isnan(v)]
            out[key] = float(z * v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")
        return out

    def per_user(self, key: str) -> np.ndarray:
        """The values of ``key`` (e.g. ``"recall@20"``) for the evaluated users, in user order."""
        return self.values[key][self.seen]
