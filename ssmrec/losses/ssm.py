"""Sampled softmax with in-batch negatives (the study's eq. 6), and full softmax (eq. 20)."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ssmrec.losses.similarity import check_similarity, score_matrix, scores


class Candidates(NamedTuple):
    """A batch's rows scored against their candidates (see :func:`candidates`).

    ``scores``: ``(B, C + K)`` similarities divided by ``tau``; ``mask``: ``(B, C + K)`` booleans,
    True where a candidate is removed from the row (never the row's own positive), or None;
    ``target``: ``(B,)`` the column of each row's positive.
    """

    scores: torch.Tensor
    mask: torch.Tensor | None
    target: torch.Tensor


def candidates(
    user_reps: torch.Tensor,
    item_reps: torch.Tensor,
    *,
    similarity: str,
    tau: float = 1.0,
    item_ids: torch.Tensor | None = None,
    extra_reps: torch.Tensor | None = None,
    extra_ids: torch.Tensor | None = None,
    exclude: torch.Tensor | None = None,
    target: torch.Tensor | None = None,
    mask_duplicates: bool = False,
    row_negatives: torch.Tensor | None = None,
    row_negative_ids: torch.Tensor | None = None,
) -> Candidates:
    """Score ``B`` rows against the ``C`` in-batch positives and ``K`` extra negatives, and work
    out which candidates each row must ignore: the in-batch softmax family shares this.

    ``item_ids`` / ``extra_ids`` are the candidates' item ids (needed by ``mask_duplicates``);
    ``exclude`` a ``(B, C + K)`` mask of further candidates to remove per row; ``target`` the
    column of each row's positive (default: row ``b``'s positive is column ``b``).

    ``row_negatives`` ``(B, n, d)`` instead: each row's candidates are its own positive (row ``b``
    of ``item_reps``, column 0, the target) and its own ``n`` sampled negatives, not the batch's
    other positives (the setting of SimpleX and of BSL's MF); ``mask_duplicates`` then drops a
    negative that is the row's positive (needs ``item_ids`` and ``row_negative_ids``). Extra
    shared negatives, ``exclude`` and ``target`` do not apply.
    """
    if row_negatives is not None:
        return _row_candidates(user_reps, item_reps, row_negatives, similarity=similarity, tau=tau,
                               item_ids=item_ids, row_negative_ids=row_negative_ids, mask_duplicates=mask_duplicates,
                               refused={"extra_reps": extra_reps, "exclude": exclude, "target": target})
    cand = item_reps if extra_reps is None else torch.cat([item_reps, extra_reps])
    scores = score_matrix(user_reps, cand, similarity, tau)
    rows = torch.arange(scores.shape[0], device=scores.device)
    target = rows if target is None else target.to(scores.device)
    mask = None
    if mask_duplicates:
        if item_ids is None:
            raise ValueError("mask_duplicates needs item_ids")
        cand_ids = item_ids if extra_ids is None else torch.cat([item_ids, extra_ids])
        mask = cand_ids.unsqueeze(0) == item_ids[target].unsqueeze(1)
    if exclude is not None:
        mask = exclude if mask is None else mask | exclude
    if mask is not None:
        mask = mask.clone()
        mask[rows, target] = False
    return Candidates(scores, mask, target)


CANDIDATE_ARGS = ("item_ids", "extra_reps", "extra_ids", "exclude", "target", "row_negatives", "row_negative_ids")
"""The keyword arguments of an in-batch loss that say what its candidates are (see :func:`candidates`)."""


def loss_candidates(loss: nn.Module, user_reps: torch.Tensor, item_reps: torch.Tensor, batch: dict[str, Any],
                    tau: float = 1.0) -> Candidates:
    """:func:`candidates` with a loss's ``similarity`` and ``mask_duplicates``, from the keyword
    arguments its ``forward`` received (``batch``; the others are the loss's own business)."""
    return candidates(user_reps, item_reps, similarity=loss.similarity, mask_duplicates=loss.mask_duplicates, tau=tau,
                      **{name: batch.get(name) for name in CANDIDATE_ARGS})


def _row_candidates(user_reps: torch.Tensor, item_reps: torch.Tensor, row_negatives: torch.Tensor, *,
                    similarity: str, tau: float, item_ids: torch.Tensor | None,
                    row_negative_ids: torch.Tensor | None, mask_duplicates: bool,
                    refused: dict[str, torch.Tensor | None]) -> Candidates:
    """:func:`candidates` with per-row sampled negatives: ``(B, 1 + n)`` scores, positive first."""
    given = [name for name, value in refused.items() if value is not None]
    if given:
        raise ValueError(f"row_negatives replace the in-batch candidates: {', '.join(given)} cannot be used with them")
    if row_negatives.dim() != 3 or row_negatives.shape[0] != user_reps.shape[0]:
        raise ValueError(f"row_negatives must be (B, n, d) with B = {user_reps.shape[0]}, "
                         f"got {tuple(row_negatives.shape)}")
    pos = scores(user_reps, item_reps, similarity, tau).unsqueeze(1)
    neg = scores(user_reps, row_negatives, similarity, tau)
    mask = None
    if mask_duplicates:
        if item_ids is None or row_negative_ids is None:
            raise ValueError("mask_duplicates with row_negatives needs item_ids and row_negative_ids")
        hit = row_negative_ids == item_ids.unsqueeze(1)
        mask = torch.cat([torch.zeros_like(hit[:, :1]), hit], dim=1)
    target = torch.zeros(user_reps.shape[0], dtype=torch.long, device=pos.device)
    return Candidates(torch.cat([pos, neg], dim=1), mask, target)


class SampledSoftmaxLoss(nn.Module):
    r"""Sampled softmax over the batch's positives (plus optional shared negatives).

    For positive pair ``b`` with user ``u_b`` and item ``i_b``, the candidates are the batch's
    positive items ``i_1..i_B`` (the positive itself included, on the diagonal) followed by the
    ``K`` shared extra negatives::

        loss = -1/B sum_b log( exp(f(u_b, i_b)) / sum_{c in candidates} exp(f(u_b, c)) )
        f(u, i) = cos(z_u, z_i) / tau        (similarity="cos")
                = z_u . z_i / tau            (similarity="ip")

    Options:
        * ``mask_duplicates``: an off-diagonal candidate that is the same item as the row's
          positive ("accidental hit") is removed from that row's denominator.
        * ``exclude`` (argument of :meth:`forward`): a ``(B, C)`` boolean mask of further
          candidates to remove per row, e.g. items the user is known to have interacted with.
          The positive (diagonal) is never removed.
        * ``logq`` (argument of :meth:`forward`): per-candidate ``log Q`` subtracted from every
          logit, the positive's included (Yi et al. 2019, "sampling-bias-corrected"); pass the
          log of each candidate's expected count under the sampler (see
          :func:`ssmrec.data.log_expected_counts`), so that ``exp(f - log Q)`` summed over the
          candidates estimates the sum over all items without bias.
        * ``target`` (argument of :meth:`forward`): the column of each row's positive among the
          in-batch candidates, when the rows are only part of the batch (default: row ``b``'s
          positive is column ``b``). A worker of a distributed run scores its own users against
          the positives of every worker's part; its row ``b`` has its positive at column
          ``offset + b``. Masks apply to a row's own positive ``item_ids[target[b]]``.

    Args:
        tau: temperature (default: 0.1).
        similarity: ``"cos"`` or ``"ip"`` (default: ``"cos"``).
        mask_duplicates: mask accidental hits (default: False, as in the study's code).
    """

    def __init__(self, tau: float = 0.1, similarity: str = "cos", mask_duplicates: bool = False):
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be positive, got {tau}")
        self.tau = tau
        self.similarity = check_similarity(similarity)
        self.mask_duplicates = mask_duplicates

    def logits(self, user_reps: torch.Tensor, item_reps: torch.Tensor, **batch) -> torch.Tensor:
        """The ``(B, C + K)`` masked, corrected logits of ``B`` rows against ``C`` in-batch and
        ``K`` extra candidates; the target of row ``b`` is column ``target[b]`` (default ``b``).
        ``batch``: ``logq`` and the candidates' keywords, :data:`CANDIDATE_ARGS` (``item_ids``,
        ``extra_reps``, ``extra_ids``, ``exclude``, ``target``, ``row_negatives``,
        ``row_negative_ids``; see :func:`candidates`); others (``user_ids``...) are ignored."""
        return self._logits_and_target(user_reps, item_reps, **batch)[0]

    def _logits_and_target(self, user_reps: torch.Tensor, item_reps: torch.Tensor, *,
                           logq: torch.Tensor | None = None, **batch) -> tuple[torch.Tensor, torch.Tensor]:
        cand = loss_candidates(self, user_reps, item_reps, batch, tau=self.tau)
        logits = cand.scores
        if logq is not None:
            logits = logits - logq.to(logits.dtype).unsqueeze(0)
        if cand.mask is not None:
            logits = logits.masked_fill(cand.mask, float("-inf"))
        return logits, cand.target

    def forward(self, user_reps: torch.Tensor, item_reps: torch.Tensor, **kwargs) -> torch.Tensor:
        # the target column is the candidates' own (row b's positive, or column 0 with row negatives)
        return F.cross_entropy(*self._logits_and_target(user_reps, item_reps, **kwargs))


class SoftmaxLoss(nn.Module):
    r"""Full softmax over every item (eq. 20)::

        loss = -1/B sum_b log( exp(f(u_b, i_b)) / sum_{j=1..N} exp(f(u_b, j)) )

    Args:
        tau: temperature (default: 0.1; use 1.0 for a plain inner product).
        similarity: ``"cos"`` or ``"ip"`` (default: ``"cos"``).
    """

    def __init__(self, tau: float = 0.1, similarity: str = "cos"):
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be positive, got {tau}")
        self.tau = tau
        self.similarity = check_similarity(similarity)

    def forward(self, user_reps: torch.Tensor, all_item_reps: torch.Tensor,
                item_ids: torch.Tensor) -> torch.Tensor:
        logits = score_matrix(user_reps, all_item_reps, self.similarity, self.tau)
        return F.cross_entropy(logits, item_ids)
