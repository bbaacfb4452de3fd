"""Pairwise softmax loss (PSL): softmax loss on score gaps with a bounded surrogate activation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ssmrec.losses.bsl import drop_positive, masked_logsumexp, negatives_logsumexp
from ssmrec.losses.similarity import check_similarity
from ssmrec.losses.ssm import loss_candidates

ACTIVATIONS = ("tanh", "atan", "relu", "exp")


def log_activation(d: torch.Tensor, activation: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``log sigma(d)`` for a surrogate activation, and where ``sigma(d) = 0`` (or None if never).

    ``sigma``: ``tanh(d) + 1``, ``atan(d) + 1`` (clamped at 0), ``relu(d + 1)``, or ``exp(d)``.
    Where ``sigma`` is 0 the returned log is a placeholder 0 with no gradient: drop those terms.
    """
    if activation == "exp":
        return d, None
    if activation == "tanh":  # tanh(d) + 1 = 2 sigmoid(2d): finite and stable for every d
        return math.log(2.0) + F.logsigmoid(2 * d), None
    sigma = F.relu(d + 1) if activation == "relu" else F.relu(torch.atan(d) + 1)
    zero = sigma <= 0
    return sigma.masked_fill(zero, 1.0).log(), zero


class PairwiseSoftmaxLoss(nn.Module):
    r"""Pairwise softmax loss (PSL) over the batch's positives (plus optional shared negatives).

    For positive pair ``b`` (user ``u_b``, item ``i_b``) with negatives ``N_b`` (the other
    in-batch positives and the ``K`` shared extra negatives, minus the masked ones; not the
    positive itself)::

        loss = 1/B sum_b log sum_{j in N_b} sigma(d_bj)^(1/tau)
        d_bj = f(u_b, j) - f(u_b, i_b),   f(u, i) = cos(z_u, z_i) / 2   (similarity="cos")
                                                  = z_u . z_i / 2       (similarity="ip")
        sigma = tanh(d) + 1  |  atan(d) + 1  |  relu(d + 1)  |  exp(d)

    computed in log space as ``logsumexp(log sigma(d) / tau)``. The temperature is outside the
    activation (``sigma(d)^(1/tau)``, not ``sigma(d / tau)``), and ``f`` halves the cosine so
    that ``d`` lies in ``[-1, 1]``, where every ``sigma`` above sits between the step function
    and ``exp`` (the paper's Lemma 4.1).

    ``activation="exp"`` is the softmax loss the paper starts from (its eq. 3.1; "SL is a
    special case of PSL with sigma = exp"): ``sigma(d)^(1/tau) = exp((s_j - s_i) / (2 tau))``, so
    PSL-exp with ``tau`` equals :class:`~ssmrec.losses.bsl.BilateralSoftmaxLoss` with
    ``tau = 2 tau`` and ``tau2 = 1``. It does *not* equal
    :class:`~ssmrec.losses.ssm.SampledSoftmaxLoss` with temperature ``2 tau``, because the
    positive is not in the sum here (as in the authors' code); row by row::

        ssm_b(2 tau) = log(1 + exp(psl_exp_b(tau)))     (softplus)

    (The paper's eq. 4.1 sums over all items, the positive included with ``sigma(0) = 1``; with
    that term PSL-exp would be SSM exactly. We follow the code.)

    Paper: Weiqin Yang, Jiawei Chen, Xin Xin, Sheng Zhou, Binbin Hu, Yan Feng, Chun Chen, Can
    Wang, "PSL: Rethinking and Improving Softmax Loss from Pairwise Perspective for
    Recommendation", NeurIPS 2024, arXiv 2411.00163; code: Tiny-Snow/IR-Benchmark
    ``src/itemrec/optimizer/optim_PSL.py`` (method 1), run with its score temperature 2.0
    (``src/run_nni.py``) and ``tau_star`` = our ``tau``. The paper searches ``tau`` in
    {0.005, 0.025, 0.05, 0.1, 0.25}; its best values are 0.025-0.1, mostly 0.025 or 0.05.

    Ours, where the authors leave freedom:
        * in-batch candidates (the authors sample 1000 uniform negatives per positive);
        * ``mask_duplicates`` / ``exclude`` drop candidates from ``N_b``;
        * ``similarity="ip"`` keeps the halving; ``d`` is then unbounded: ``atan(d) + 1`` is
          clamped at 0 below ``d = -tan(1)`` (the authors' ``log(atan(d) + 1)`` would be NaN),
          and terms with ``sigma = 0`` (relu below ``d = -1``, atan clamped) drop out. The
          authors use only cosine;
        * a row whose sum is empty (everything masked) or zero (every term dropped) contributes
          0 instead of ``-inf``; the mean is over all ``B`` rows;
        * no logQ correction: the paper defines none, so ``logq`` is refused (ValueError);
        * the authors' second form (method 2, one log-mean over all pairs of the batch) is not
          provided.

    Args:
        tau: temperature ``tau`` (the authors' ``tau_star``), the exponent ``1/tau`` of
            ``sigma`` (default: 0.1).
        similarity: ``"cos"`` or ``"ip"`` (default: ``"cos"``, as the authors).
        activation: ``"tanh"``, ``"atan"``, ``"relu"`` (the paper's three), or ``"exp"`` (the
            softmax loss; for comparison) (default: ``"tanh"``).
        mask_duplicates: drop a row's accidental hits from its negatives (default: False).
    """

    score_scale = 0.5  # f = similarity / 2 (the paper's section 2; the authors' code: cos / tau, tau = 2)

    def __init__(self, tau: float = 0.1, similarity: str = "cos", activation: str = "tanh",
                 mask_duplicates: bool = False):
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be positive, got {tau}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.tau = tau
        self.similarity = check_similarity(similarity)
        self.activation = activation
        self.mask_duplicates = mask_duplicates

    def row_losses(
        self,
        user_reps: torch.Tensor,
        item_reps: torch.Tensor,
        *,
        logq: torch.Tensor | None = None,
        **batch,
    ) -> torch.Tensor:
        """The ``(B,)`` loss of each row (its mean is :meth:`forward`)."""
        if logq is not None:
            raise ValueError("PSL has no logQ correction (the paper defines none); pass logq=None")
        cand = loss_candidates(self, user_reps, item_reps, batch, tau=1.0 / self.score_scale)
        rows = torch.arange(cand.scores.shape[0], device=cand.scores.device)
        gaps = cand.scores - cand.scores[rows, cand.target].unsqueeze(1)
        log_sigma, zero = log_activation(gaps, self.activation)
        if zero is None:
            return negatives_logsumexp(log_sigma / self.tau, cand)[0]
        return masked_logsumexp(log_sigma / self.tau, drop_positive(cand) | zero)[0]

    def forward(self, user_reps: torch.Tensor, item_reps: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.row_losses(user_reps, item_reps, **kwargs).mean()
