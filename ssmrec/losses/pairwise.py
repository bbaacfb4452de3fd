"""Losses on per-positive sampled negatives: BPR (eq. 19), BCE (eq. 18) and CCL (eq. 21)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssmrec.losses.similarity import check_similarity, scores


def _as3d(neg: torch.Tensor) -> torch.Tensor:
    return neg.unsqueeze(1) if neg.dim() == 2 else neg


class _ScoredPairs(nn.Module):
    """Shared by BPR and BCE: scores of the positives ``(B)`` and of the negatives ``(B, n)``."""

    def __init__(self, similarity: str = "ip", tau: float = 1.0):
        super().__init__()
        self.similarity, self.tau = check_similarity(similarity), tau

    def pair_scores(self, user_reps, pos_reps, neg_reps) -> tuple[torch.Tensor, torch.Tensor]:
        pos = scores(user_reps, pos_reps, self.similarity, self.tau)
        neg = scores(user_reps, _as3d(neg_reps), self.similarity, self.tau)
        return pos, neg


class BPRLoss(_ScoredPairs):
    r"""Bayesian personalised ranking::

        loss = -1/(B n) sum_b sum_j log sigmoid( f(u_b, i_b) - f(u_b, j) )

    ``neg_reps`` is ``(B, d)`` (one negative per positive, the study's setting) or ``(B, n, d)``.

    Args:
        similarity: ``"ip"`` or ``"cos"`` (default: ``"ip"``, as LightGCN).
        tau: temperature dividing the scores (default: 1.0).
    """

    def forward(self, user_reps, pos_reps, neg_reps) -> torch.Tensor:
        pos, neg = self.pair_scores(user_reps, pos_reps, neg_reps)
        return F.softplus(neg - pos.unsqueeze(1)).mean()


class BCELoss(_ScoredPairs):
    r"""Pointwise binary cross-entropy, positives labelled 1 and sampled negatives 0::

        loss = -1/(B (1+n)) [ sum_b log sigmoid(f(u_b, i_b)) + sum_b sum_j log(1 - sigmoid(f(u_b, j))) ]

    (the mean over all labelled pairs; the study samples n = 4 negatives per positive).

    Args:
        similarity: ``"ip"`` or ``"cos"`` (default: ``"ip"``).
        tau: temperature dividing the scores (default: 1.0).
    """

    def forward(self, user_reps, pos_reps, neg_reps) -> torch.Tensor:
        pos, neg = self.pair_scores(user_reps, pos_reps, neg_reps)
        total = F.softplus(-pos).sum() + F.softplus(neg).sum()
        return total / (pos.numel() + neg.numel())


class CCLLoss(nn.Module):
    r"""Cosine contrastive loss (SimpleX)::

        loss = 1/B sum_b [ (1 - cos(u_b, i_b)) + w/n sum_j max(0, cos(u_b, j) - m) ]

    Args:
        margin: ``m``, negatives scoring below it cost nothing (default: 0.9).
        weight: ``w``, weight of the negative term (default: 150).
    """

    def __init__(self, margin: float = 0.9, weight: float = 150.0):
        super().__init__()
        self.margin, self.weight = margin, weight

    def forward(self, user_reps, pos_reps, neg_reps) -> torch.Tensor:
        pos = scores(user_reps, pos_reps, "cos")
        neg = scores(user_reps, _as3d(neg_reps), "cos")
        return ((1 - pos) + self.weight * F.relu(neg - self.margin).mean(1)).mean()
