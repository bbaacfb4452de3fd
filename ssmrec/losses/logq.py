"""Sampled softmax with the corrected logQ correction (Khrylchenko et al., RecSys 2025)."""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch
from torch import nn

from ssmrec.losses.similarity import check_similarity
from ssmrec.losses.ssm import loss_candidates

NO_MASK_WARNING = ("corrected logQ without mask_duplicates: its estimator conditions the sampling probabilities on "
                   "'not the positive', yet the positive's in-batch copies stay among the negatives (a biased "
                   "estimator the paper does not define); pass mask_duplicates=True (--mask-duplicates)")
"""What :class:`CorrectedLogQLoss` warns when built with ``mask_duplicates=False``."""


class CorrectedLogQParts(NamedTuple):
    """Per-row pieces of :class:`CorrectedLogQLoss` (see its docstring for the symbols).

    ``ell``: ``(B,)`` the row terms ``log Z_hat - f(u, i)`` (0 for a row without negatives);
    ``p_hat``: ``(B,)`` the estimated full-softmax probability of the positive, detached
    (1 for a row without negatives); ``has_neg``: ``(B,)`` rows with at least one negative.
    """

    ell: torch.Tensor
    p_hat: torch.Tensor
    has_neg: torch.Tensor


class CorrectedLogQLoss(nn.Module):
    r"""In-batch sampled softmax with the corrected logQ correction.

    Khrylchenko, Baikalov, Makeev, Matveev, Liamaev, "Correcting the LogQ Correction: Revisiting
    Sampled Softmax for Large-Scale Retrieval", RecSys 2025, arXiv:2507.09331. Authors' code:
    github.com/NonameUntitled/logq, ``train_in_batch_logq_new.py`` lines 89-104.

    The gradient of the full softmax loss of row ``b`` (positive ``i``, all items ``j``) is::

        -(1 - p_i) grad f(u, i) + sum_{j != i} p_j grad f(u, j)
          = (1 - p_i) grad[ log Z_{-i} - f(u, i) ],     Z_{-i} = sum_{j != i} exp f(u, j)

    The positive is always among the candidates, so it is not Monte-Carlo sampled: only
    ``Z_{-i}`` is estimated, from the row's negatives ``N_b`` (the other candidates, after
    masking), which are draws from the sampling distribution ``q`` conditioned on not being the
    positive, ``q'_b(j) = q(j) / (1 - q(i))``::

        Z_hat_b = 1/m_b sum_{c in N_b} exp( f(u_b, c) - log q'_b(c) ),    m_b = |N_b|
        ell_b   = log Z_hat_b - f(u_b, i_b)                     (= -logit p_hat_b)
        p_hat_b = exp f(u_b, i_b) / ( exp f(u_b, i_b) + Z_hat_b )
        loss    = 1/B sum_b stopgrad(1 - p_hat_b) * ell_b

    The positive's logit is not corrected and is not in the sampled sum; ``stopgrad(1 - p_hat)``
    (the estimated probability of misclassifying the row) weights each row, and the loss is the
    plain mean over the ``B`` rows (not divided by the sum of the weights), as in the authors' code.
    A row whose candidates are all masked has ``Z_hat = 0``, ``p_hat = 1`` and contributes 0.

    Sampling probabilities: ``logq`` is, as for :class:`SampledSoftmaxLoss`, the log of each
    candidate's expected count among the ``n`` draws that make the candidates (the batch's ``C``
    positives and ``K`` extra negatives: :func:`ssmrec.data.log_expected_counts` with
    ``batch_size = C`` and ``n_extra = K``). The per-draw probability is ``q(c) = exp(logq_c) / n``
    with ``n = n_draws`` (default ``C + K``, the number of candidate columns); with extra negatives
    ``q`` is the mixture of the two samplers, weighted by their numbers of draws.

    Ours, where the paper leaves freedom (or differs from the authors' code):
        * The value of ``ell`` includes the ``1/m_b`` of ``Z_hat``, so ``ell = -logit(p_hat)``;
          the authors' loss value (line 95) leaves it out, which adds ``log m_b`` per row to the
          value but nothing to the gradient (the weight is a constant).
        * The conditioning on "not the positive" assumes accidental hits are removed, as the
          authors' code does (lines 89-90): ``mask_duplicates=True`` (with ``item_ids``) is the
          paper's estimator and this class's default. With False, copies of the positive stay
          among the negatives while ``q'`` still excludes the positive, so ``Z_hat`` counts the
          positive's own term ``1 / q'`` times too often, a biased estimator the paper does not
          define: the class warns. (Built from settings, ``mask_duplicates`` is the setting shared
          with SSM, off by default: ``--loss clogq`` wants ``--mask-duplicates``.)
        * Masked candidates (``exclude``, duplicates) are dropped and ``m_b`` counts the rest, as
          the authors' ``negative_mask.sum`` (line 98).
        * The candidates: the authors' sampler de-duplicates the in-batch items and mixes them with
          uniform draws, yet corrects both kinds with the popularity probability; ours keeps every
          in-batch column and, with extra negatives, corrects with the probability of the mixture
          of the two samplers that actually drew them (the estimator itself is theirs).

    Args:
        tau: temperature (default: 0.1).
        similarity: ``"cos"`` or ``"ip"`` (default: ``"cos"``).
        mask_duplicates: drop a row's accidental hits, as the estimator assumes (default: True;
            False warns).
        weight: multiply each row by ``stopgrad(1 - p_hat)``; False keeps ``ell`` alone, for
            ablation (default: True).
    """

    def __init__(self, tau: float = 0.1, similarity: str = "cos", mask_duplicates: bool = True,
                 weight: bool = True):
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be positive, got {tau}")
        if not mask_duplicates:
            warnings.warn(NO_MASK_WARNING, UserWarning, stacklevel=2)
        self.tau = tau
        self.similarity = check_similarity(similarity)
        self.mask_duplicates = mask_duplicates
        self.weight = bool(weight)

    def parts(
        self,
        user_reps: torch.Tensor,
        item_reps: torch.Tensor,
        *,
        logq: torch.Tensor | None = None,
        n_draws: int | None = None,
        row_negatives: torch.Tensor | None = None,
        **batch,
    ) -> CorrectedLogQParts:
        """The per-row terms, probabilities and has-negative flags (arguments as :meth:`forward`)."""
        if logq is None:
            raise ValueError("the corrected logQ loss needs the sampling log-probabilities: pass logq, "
                             "the log expected count of each candidate (ssmrec.data.log_expected_counts)")
        if row_negatives is not None:
            raise ValueError("the corrected logQ loss corrects in-batch (and shared) sampling; per-row sampled "
                             "negatives are not supported")
        cand = loss_candidates(self, user_reps, item_reps, batch, tau=self.tau)
        s, tgt = cand.scores, cand.target
        rows = torch.arange(s.shape[0], device=s.device)
        n = s.shape[1] if n_draws is None else n_draws
        if n <= 0:
            raise ValueError(f"n_draws must be positive, got {n}")
        log_q = logq.to(s.device, s.dtype) - math.log(n)  # per-draw log q(c), (C + K,)
        q_pos = log_q[tgt].exp()
        # log q'_b(c) = log q(c) - log(1 - q(i_b)); clamp keeps a (mis-specified) q(i) >= 1 finite
        log_keep = torch.log1p(-q_pos.clamp(max=1.0 - torch.finfo(s.dtype).eps))
        neg = ~cand.mask if cand.mask is not None else torch.ones_like(s, dtype=torch.bool)
        neg[rows, tgt] = False
        m = neg.sum(1)
        has_neg = m > 0
        logits = s - log_q.unsqueeze(0) + log_keep.unsqueeze(1)
        # rows without negatives get a finite dummy row (their term is zeroed below, no NaN gradient)
        logits = torch.where(neg, logits, float("-inf"))
        logits = torch.where(has_neg.unsqueeze(1), logits, 0.0)
        log_z = torch.logsumexp(logits, 1) - m.clamp(min=1).to(s.dtype).log()
        ell = torch.where(has_neg, log_z - s[rows, tgt], 0.0)
        p_hat = torch.where(has_neg, torch.sigmoid(-ell), 1.0).detach()
        return CorrectedLogQParts(ell, p_hat, has_neg)

    def forward(self, user_reps: torch.Tensor, item_reps: torch.Tensor, **kwargs) -> torch.Tensor:
        """Loss of ``B`` rows against the ``C`` in-batch positives and ``K`` extra negatives.

        Args (keywords): ``item_ids``, ``extra_reps``, ``extra_ids``, ``exclude``, ``target`` as
        :class:`SampledSoftmaxLoss`; ``logq`` ``(C + K,)`` log expected candidate counts
        (required); ``n_draws`` the number of draws those counts refer to (default ``C + K``:
        right when ``logq = log_expected_counts(degree, C, sampler, K)``; pass
        ``batch_size + n_extra`` of that call otherwise, e.g. for a last, smaller batch).
        """
        parts = self.parts(user_reps, item_reps, **kwargs)
        if self.weight:
            return ((1.0 - parts.p_hat) * parts.ell).mean()
        return parts.ell.mean()
