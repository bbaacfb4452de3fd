"""Sampled softmax on positives plus a not-to-recommend term on explicit negatives (Wang et al., RecSys 2023)."""

from __future__ import annotations

import torch
from torch import nn

from ssmrec.losses.similarity import check_similarity
from ssmrec.losses.ssm import SampledSoftmaxLoss, candidates


class NegativeFeedbackLoss(nn.Module):
    r"""Sampled softmax on the positives plus the "not-to-recommend" (NTR) term on dislikes.

    Wang, Halpern, Chang, Feng, Le, Li, Liang, Huang, Li, Beutel, Zhang, Bi, "Learning from
    Negative User Feedback and Measuring Responsiveness for Sequential Recommenders", RecSys 2023,
    arXiv:2308.12256: positive labels keep the softmax log-likelihood ``log p``, items with negative
    feedback get the log-likelihood of *not* recommending them, ``log(1 - p)``, with ``p`` the same
    (sampled) softmax probability. For the ``B`` positive pairs ``(u_b, i_b)`` and ``M`` explicit
    negatives ``(v_m, j_m)`` (a user and an item she disliked) of a batch::

        loss = 1/B sum_b -log p(i_b | u_b)  +  weight * 1/M sum_m -log(1 - p(j_m | v_m))

        p(i_b | u_b) = exp f(u_b, i_b) / sum_{c in S_b} exp f(u_b, c)          (= SampledSoftmaxLoss)
        p(j | v)     = exp f(v, j) / ( exp f(v, j) + sum_{c in S} exp f(v, c) )
        -log(1 - p(j | v)) = logsumexp_{c in {j} + S} f(v, c) - logsumexp_{c in S} f(v, c)

    ``S_b`` / ``S`` are the in-batch candidates: the ``C`` positives and ``K`` extra negatives.
    The first term is exactly :class:`SampledSoftmaxLoss` (the same object computes it); with no
    negatives (``M = 0`` or none passed) the loss is that value. Each term is averaged over its own
    examples; ``weight`` balances the two (one shared weight and the two separate means are ours).

    Ours, where the paper leaves freedom: the disliked item is scored against the *same* in-batch
    candidates as the positives plus itself, since (as the reader's note on the paper stresses)
    the ``p`` of the NTR term is the model's softmax probability, i.e. the SSM probability, and in a
    retrieval model the sampled candidates are the batch's items; the disliked item enters its own
    denominator as the positive does in SSM. Options apply as for the positives: ``logq`` corrects
    every logit (``neg_logq`` the disliked items'), ``mask_duplicates`` drops candidates that are
    the disliked item itself (needs ``neg_item_ids``), ``neg_exclude`` drops further candidates.

    Args:
        tau: temperature (default: 0.1).
        similarity: ``"cos"`` or ``"ip"`` (default: ``"cos"``).
        weight: weight of the NTR term, >= 0 (default: 1.0).
        mask_duplicates: mask accidental hits, for the positives as SSM and for the negatives
            (default: False).
    """

    uses_dislikes = True
    """The trainer feeds it each batch's share of the training dislikes (``neg_*`` arguments)."""

    def __init__(self, tau: float = 0.1, similarity: str = "cos", weight: float = 1.0,
                 mask_duplicates: bool = False):
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be positive, got {tau}")
        if weight < 0:
            raise ValueError(f"weight must be non-negative, got {weight}")
        self.tau = tau
        self.similarity = check_similarity(similarity)
        self.weight = float(weight)
        self.mask_duplicates = mask_duplicates
        self.ssm = SampledSoftmaxLoss(tau, similarity, mask_duplicates)

    def negative_terms(
        self,
        neg_user_reps: torch.Tensor,
        neg_item_reps: torch.Tensor,
        item_reps: torch.Tensor,
        *,
        item_ids: torch.Tensor | None = None,
        extra_reps: torch.Tensor | None = None,
        extra_ids: torch.Tensor | None = None,
        logq: torch.Tensor | None = None,
        neg_item_ids: torch.Tensor | None = None,
        neg_logq: torch.Tensor | None = None,
        neg_exclude: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(M,)`` the terms ``-log(1 - p(j_m | v_m))`` of the explicit negatives."""
        m = neg_user_reps.shape[0]
        cand = item_reps if extra_reps is None else torch.cat([item_reps, extra_reps])
        if logq is not None and neg_logq is None:
            raise ValueError("logq corrects every logit: pass neg_logq, the disliked items' log expected counts")
        cand_ids = None
        if self.mask_duplicates:
            if neg_item_ids is None or item_ids is None:
                raise ValueError("mask_duplicates needs item_ids and neg_item_ids")
            cand_ids = item_ids if extra_ids is None else torch.cat([item_ids, extra_ids])
        # columns: the M disliked items, then the C + K candidates; row m keeps column m (its own
        # disliked item) and the candidates, never another row's disliked item
        others = ~torch.eye(m, dtype=torch.bool, device=neg_user_reps.device)
        keep_out = torch.zeros(m, cand.shape[0], dtype=torch.bool, device=neg_user_reps.device)
        if neg_exclude is not None:
            keep_out = neg_exclude.to(neg_user_reps.device, torch.bool)
        c = candidates(neg_user_reps, neg_item_reps, extra_reps=cand, item_ids=neg_item_ids, extra_ids=cand_ids,
                       exclude=torch.cat([others, keep_out], 1), similarity=self.similarity,
                       mask_duplicates=self.mask_duplicates, tau=self.tau)
        logits = c.scores
        if logq is not None:
            logits = logits - torch.cat([neg_logq, logq]).to(logits.dtype).unsqueeze(0)
        logits = logits.masked_fill(c.mask, float("-inf"))
        # -log(1 - p) = log(sum over all) - log(sum over all but the disliked item): no 1 - p formed
        own = torch.cat([~others, torch.zeros_like(keep_out)], 1)
        return torch.logsumexp(logits, 1) - torch.logsumexp(logits.masked_fill(own, float("-inf")), 1)

    def forward(
        self,
        user_reps: torch.Tensor,
        item_reps: torch.Tensor,
        *,
        neg_user_reps: torch.Tensor | None = None,
        neg_item_reps: torch.Tensor | None = None,
        neg_item_ids: torch.Tensor | None = None,
        neg_logq: torch.Tensor | None = None,
        neg_exclude: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """SSM of ``B`` rows against the ``C`` positives and ``K`` extras, plus the NTR term.

        Args (keywords): ``item_ids``, ``extra_reps``, ``extra_ids``, ``logq``, ``exclude``,
        ``target`` as :class:`SampledSoftmaxLoss`; ``neg_user_reps`` / ``neg_item_reps`` ``(M, d)``
        the users and disliked items of the batch's explicit negatives (both or neither);
        ``neg_item_ids`` ``(M,)`` their item ids (for ``mask_duplicates``); ``neg_logq`` ``(M,)``
        their log expected counts (required with ``logq``); ``neg_exclude`` ``(M, C + K)``
        candidates to drop per negative.
        """
        if kwargs.get("row_negatives") is not None:
            raise ValueError("NTR scores dislikes against the in-batch candidates; per-row sampled negatives are "
                             "not supported")
        loss = self.ssm(user_reps, item_reps, **kwargs)
        if (neg_user_reps is None) != (neg_item_reps is None):
            raise ValueError("pass both neg_user_reps and neg_item_reps, or neither")
        if neg_user_reps is None or neg_user_reps.shape[0] == 0:
            return loss
        if neg_user_reps.shape != neg_item_reps.shape:
            raise ValueError(f"neg_user_reps {tuple(neg_user_reps.shape)} and neg_item_reps "
                             f"{tuple(neg_item_reps.shape)} must have the same shape (M, d)")
        terms = self.negative_terms(
            neg_user_reps, neg_item_reps, item_reps, item_ids=kwargs.get("item_ids"),
            extra_reps=kwargs.get("extra_reps"), extra_ids=kwargs.get("extra_ids"), logq=kwargs.get("logq"),
            neg_item_ids=neg_item_ids, neg_logq=neg_logq, neg_exclude=neg_exclude)
        return loss + self.weight * terms.mean()
