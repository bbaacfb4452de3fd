"""Adap-tau: sampled softmax with a per-user temperature refreshed every epoch (Chen et al., WWW 2023)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from scipy.special import lambertw
from torch import nn

from ssmrec.losses.similarity import check_similarity
from ssmrec.losses.ssm import loss_candidates

Z_MIN = -1.0 / math.e
"""Lower clip of the Lambert W argument: the branch point, where W = -1 (tau_u = tau_0 / e)."""
Z_MAX = 1000.0
"""Upper clip of the Lambert W argument (the end of the authors' look-up table): tau_u <= ~190 tau_0."""


def personalized_temperatures(user_loss: torch.Tensor, tau0: float, beta: float = 1.0,
                              center: str | float = "mean") -> torch.Tensor:
    """The Adap-tau closed form: each user's temperature from their mean loss.

    ::

        z_u   = clip((L_u - c) / beta, -1/e, 1000)      c = mean_u L_u, or its q-quantile
        tau_u = tau_0 * exp(W(z_u))                     W: principal branch of Lambert W

    i.e. ``x_u = log(tau_u / tau_0)`` solves ``x e^x = z_u``, or ``(tau_u/tau_0) log(tau_u/tau_0)
    = (L_u - c) / beta``: a user whose loss is above the centre gets a higher temperature, one
    below it a lower one, never below ``tau_0 / e``.

    Args:
        user_loss: ``(n,)`` the users' mean loss (at temperature 1) over the previous epoch.
        tau0: the global temperature.
        beta: the scale of the loss differences (the authors' ``temperature_2``); ``inf`` gives
            every user ``tau0`` (default: 1.0).
        center: ``"mean"``, or a quantile ``q`` in (0, 1) of the losses (default: ``"mean"``).
    """
    if user_loss.numel() == 0 or math.isinf(beta):
        return torch.full_like(user_loss, tau0, dtype=torch.float64)
    x = user_loss.detach().double()
    c = x.mean() if center == "mean" else torch.quantile(x, float(center))
    z = ((x - c) / beta).clamp(Z_MIN, Z_MAX)
    w = torch.from_numpy(lambertw(z.cpu().numpy(), k=0).real.copy()).to(x.device)
    w = torch.where(z <= Z_MIN, -1.0, w)  # the float -1/e lies a hair below the branch point: W is nan there
    return tau0 * torch.exp(w)


def global_temperature(gap: float, n_users: int, n_items: int, n_pairs: int) -> float | None:
    """The Adap-tau global temperature ``tau_0`` (the authors' ``1 / w_0``)::

        tau_0 = (mu+ - mu) / log(|U'| |I| / (2 |Y'|))

    with ``gap = mu+ - mu`` the mean similarity of the training pairs of the users ``U'`` minus
    the mean similarity of those users to every item, ``|Y'|`` their number of training pairs.
    Returns None where the formula has no positive value (gap <= 0, or too dense a matrix).
    """
    denom = math.log(n_users * n_items / (2.0 * n_pairs)) if min(n_users, n_items, n_pairs) > 0 else 0.0
    if not gap > 0 or not denom > 0:
        return None
    return gap / denom


def active_users(train_users: torch.Tensor, n_users: int, quantile: float = 0.2) -> torch.Tensor:
    """``(n_users,)`` bool: the users with more training pairs than the ``quantile`` of the users'
    counts (``U'``; the authors drop the 20% least active when estimating ``tau_0``)."""
    degree = torch.bincount(train_users, minlength=n_users)
    return degree > torch.quantile(degree.double(), quantile)


@torch.no_grad()
def similarity_gap(scorer, quantile: float = 0.2, chunk_elements: int = 1 << 22) -> tuple[float, int, int] | None:
    """``(mu+ - mu, |U'|, |Y'|)`` for :func:`global_temperature`, from the current model.

    ``U'``: :func:`active_users`; ``mu+``: the mean similarity of their training pairs ``Y'``;
    ``mu``: their mean similarity to every item. Scores ``U'`` against all items in chunks of
    about ``chunk_elements`` scores. None if no user is kept.
    """
    device = scorer.device
    users = scorer.train_users.to(device)
    items = scorer.train_items.to(device)
    n_items = int(scorer.n_items)
    keep = active_users(users, int(scorer.n_users), quantile)
    kept = keep.nonzero().squeeze(1)
    if kept.numel() == 0:
        return None
    pair_users, pair_items = users[keep[users]], items[keep[users]]
    order = torch.argsort(pair_users, stable=True)
    pair_users, pair_items = pair_users[order], pair_items[order]
    step = max(1, chunk_elements // max(n_items, 1))
    total_all = total_pos = 0.0
    for start in range(0, kept.numel(), step):
        chunk = kept[start:start + step]
        s = scorer.scores(chunk, None).double()
        total_all += s.sum().item()
        lo = int(torch.searchsorted(pair_users, chunk[:1]))
        hi = int(torch.searchsorted(pair_users, chunk[-1:], right=True))
        rows = torch.searchsorted(chunk, pair_users[lo:hi])
        total_pos += s[rows, pair_items[lo:hi]].sum().item()
    gap = total_pos / pair_users.numel() - total_all / (kept.numel() * n_items)
    return gap, kept.numel(), pair_users.numel()


class AdaptiveTemperatureLoss(nn.Module):
    r"""Adap-tau: in-batch sampled softmax whose temperature is set per user, in closed form,
    from that user's loss over the previous epoch.

    Chen, Wu, Wu, Cao, Zhou, He, "Adap-tau: Adaptively Modulating Embedding Magnitude for
    Recommendation", WWW 2023, arXiv:2302.04775; the rule follows the authors' code
    (github.com/junkangwu/Adap_tau: ``main.py``, ``modules/MF_tau.py``, ``utils/losses.py``).

    The loss, with the candidates of :class:`~ssmrec.losses.ssm.SampledSoftmaxLoss`::

        loss = -1/B sum_b log( exp(s(u_b, i_b) / tau_{u_b}) / sum_{c in candidates} exp(s(u_b, c) / tau_{u_b}) )
        s(u, i) = cos(z_u, z_i)   (similarity="cos")   or   z_u . z_i   (similarity="ip")

    The temperatures are buffers, refreshed by :meth:`on_epoch_start`, never trained::

        L_u   = mean over the user's rows of the previous epoch of the same loss at tau = 1
        z_u   = clip((L_u - mean_u L_u) / beta, -1/e, 1000)
        tau_u = tau_0 * exp(W(z_u))             (W: Lambert W, principal branch)

    so ``(tau_u / tau_0) log(tau_u / tau_0) = z_u``: users the model fits worse get a softer
    softmax. The global ``tau_0`` is ``tau`` during the first ``warmup`` epochs; after them (if
    ``adapt_tau0``) it is recomputed at each epoch start from the current model::

        tau_0 = (mu+ - mu) / log(|U'| |I| / (2 |Y'|))

    ``mu+``: mean similarity of the training pairs of the users ``U'`` above the 20% quantile of
    activity; ``mu``: mean similarity of those users to all items; ``|Y'|``: their pairs.

    Authors' choices kept: the statistic is the per-user mean of the per-row loss at tau = 1 over
    the rows seen in the previous epoch (accumulated in :meth:`forward`, training mode only); the
    clip to ``[-1/e, 1000]``; ``tau_u`` recomputed from ``tau_0`` every epoch, not compounded;
    the first epoch at ``tau_0`` for everyone; 100 warm-up epochs at a fixed ``tau_0``.

    Our choices, where the authors' code differs or is silent:
        * Lambert W is evaluated exactly (scipy), not from a table on a 1e-4 grid.
        * The default loss keeps the positive in the denominator at ``tau_u`` (softmax with a
          per-row temperature; equal to SSM when every ``tau_u`` is ``tau``). The authors'
          ``Adap_tau_Loss`` puts the positive at ``tau_0`` in the numerator only and the
          denominator sums the negatives at ``tau_u``; ``authors_loss=True`` gives that form
          (and the statistic then also leaves the positive out of the denominator).
        * Users with no row in the previous epoch get ``tau_0`` (the authors' scatter-mean gives
          them a loss of 0); the centre is the mean over the users that had rows.
        * ``logq`` (if passed) corrects the training logits but not the statistic, which uses the
          raw similarities as the authors' code does (it has no correction).
        * Before the first :meth:`on_epoch_start`, or without ``user_ids``, every row uses
          ``tau_0`` and nothing is accumulated.
        * Distributed: :meth:`on_epoch_start` sums the statistics over the processes (it must be
          called on every rank).

    Args:
        tau: ``tau_0`` until the first adaptive refresh, and the temperature of users with no
            statistic (default: 0.1; the authors' warm-up value was 0.104-0.116 on their data).
        similarity: ``"cos"`` or ``"ip"`` (default: ``"cos"``; the method is built for cosine).
        beta: scale of the loss differences, the authors' ``temperature_2`` (their scripts:
            1.0, 1.5, 0.6, 0.25); ``float("inf")`` turns the personalisation off (their
            "Adap-tau_0") (default: 1.0).
        center: ``"mean"`` (their ``weight_mean``) or a quantile ``q`` in (0, 1) of the users'
            losses (their ``weight_ratio`` with ``temperature=q``; 0.9 on Gowalla-MF)
            (default: ``"mean"``).
        warmup: epochs with a fixed ``tau_0`` before it adapts, their ``cnt_lr`` (default: 100).
            A run of at most ``warmup`` epochs never re-estimates ``tau_0`` (it stays ``tau``); the
            per-user ``tau_u`` adapt from the second epoch on whatever the warm-up.
        adapt_tau0: recompute ``tau_0`` from the model after the warm-up (default: True).
        warmup_gap: if set, the warm-up ``tau_0`` is ``warmup_gap / log(|U'| |I| / (2 |Y'|))``
            from the training pairs instead of ``tau``; the authors use 0.7 (default: None).
        mask_duplicates: mask accidental hits as SSM does (default: False).
        authors_loss: the authors' loss form (see above) (default: False).
    """

    def __init__(self, tau: float = 0.1, similarity: str = "cos", beta: float = 1.0,
                 center: str | float = "mean", warmup: int = 100, adapt_tau0: bool = True,
                 warmup_gap: float | None = None, mask_duplicates: bool = False, authors_loss: bool = False):
        super().__init__()
        if not tau > 0:
            raise ValueError(f"tau must be positive, got {tau}")
        if not beta > 0:
            raise ValueError(f"beta must be positive, got {beta}")
        if center != "mean":
            try:
                center = float(center)
            except (TypeError, ValueError):
                raise ValueError(f"center must be 'mean' or a quantile in (0, 1), got {center!r}") from None
            if not 0 < center < 1:
                raise ValueError(f"center must be 'mean' or a quantile in (0, 1), got {center!r}")
        if isinstance(warmup, bool) or int(warmup) != warmup or warmup < 0:
            raise ValueError(f"warmup must be a non-negative integer, got {warmup}")
        if warmup_gap is not None and not warmup_gap > 0:
            raise ValueError(f"warmup_gap must be positive, got {warmup_gap}")
        self.tau = tau
        self.similarity = check_similarity(similarity)
        self.beta = float(beta)
        self.center = center
        self.warmup = int(warmup)
        self.adapt_tau0 = adapt_tau0
        self.warmup_gap = warmup_gap
        self.mask_duplicates = mask_duplicates
        self.authors_loss = authors_loss
        self.register_buffer("tau0", torch.tensor(float(tau), dtype=torch.float64))
        # sized n_users by the first on_epoch_start (or by load_state_dict)
        self.register_buffer("user_tau", torch.empty(0, dtype=torch.float64))
        self.register_buffer("loss_sum", torch.empty(0, dtype=torch.float64))
        self.register_buffer("loss_count", torch.empty(0, dtype=torch.long))

    # ------------------------------------------------------------------ state
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("user_tau", "loss_sum", "loss_count"):
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.shape != self._buffers[name].shape:
                self._buffers[name] = torch.empty(saved.shape, dtype=saved.dtype, device=self._buffers[name].device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _allocate(self, n_users: int, device) -> None:
        if self.user_tau.numel() == 0:
            self.user_tau = torch.full((n_users,), float(self.tau0), dtype=torch.float64, device=device)
            self.loss_sum = torch.zeros(n_users, dtype=torch.float64, device=device)
            self.loss_count = torch.zeros(n_users, dtype=torch.long, device=device)
        elif self.user_tau.numel() != n_users:
            raise ValueError(f"the loss holds temperatures for {self.user_tau.numel()} users, "
                             f"the scorer has {n_users}")

    def _sync_statistics(self) -> None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(self.loss_sum)
            dist.all_reduce(self.loss_count)

    # ------------------------------------------------------------------ refresh
    @torch.no_grad()
    def on_epoch_start(self, epoch: int, scorer) -> None:
        """Refresh ``tau_0`` (after the warm-up) and every ``tau_u`` from the previous epoch's
        statistics, then clear them. ``epoch`` counts from 1."""
        first = self.user_tau.numel() == 0
        self._allocate(int(scorer.n_users), scorer.device)
        self._sync_statistics()
        tau0 = None
        if self.adapt_tau0 and epoch > self.warmup:
            stats = similarity_gap(scorer)
            tau0 = global_temperature(stats[0], stats[1], int(scorer.n_items), stats[2]) if stats else None
        elif first and self.warmup_gap is not None:
            users = scorer.train_users
            keep = active_users(users, int(scorer.n_users))
            tau0 = global_temperature(self.warmup_gap, int(keep.sum()), int(scorer.n_items), int(keep[users].sum()))
        if tau0 is not None:
            self.tau0.fill_(tau0)
        seen = self.loss_count > 0
        self.user_tau.fill_(float(self.tau0))
        if seen.any():
            mean_loss = self.loss_sum[seen] / self.loss_count[seen]
            self.user_tau[seen] = personalized_temperatures(mean_loss, float(self.tau0), self.beta, self.center)
        self.loss_sum.zero_()
        self.loss_count.zero_()

    # ------------------------------------------------------------------ loss
    def row_temperatures(self, user_ids: torch.Tensor | None, n: int, like: torch.Tensor) -> torch.Tensor:
        """``(n,)`` temperatures of the rows: ``tau_u`` of their users, or ``tau_0``."""
        if user_ids is None or self.user_tau.numel() == 0:
            return self.tau0.to(like.device, like.dtype).expand(n)
        return self.user_tau[user_ids.to(self.user_tau.device, torch.long)].to(like.device, like.dtype)

    def _row_losses(self, logits: torch.Tensor, positive: torch.Tensor, mask: torch.Tensor | None,
                    target: torch.Tensor) -> torch.Tensor:
        """Per-row loss; ``positive`` is the numerator's logit (used by ``authors_loss`` only)."""
        if self.authors_loss:
            drop = F.one_hot(target, logits.shape[1]).bool()
            drop = drop if mask is None else drop | mask
            return torch.logsumexp(logits.masked_fill(drop, float("-inf")), dim=1) - positive
        if mask is not None:
            logits = logits.masked_fill(mask, float("-inf"))
        return F.cross_entropy(logits, target, reduction="none")

    def forward(self, user_reps: torch.Tensor, item_reps: torch.Tensor, *, logq: torch.Tensor | None = None,
                user_ids: torch.Tensor | None = None, **batch) -> torch.Tensor:
        cand = loss_candidates(self, user_reps, item_reps, batch)
        s, mask, target = cand
        rows = torch.arange(s.shape[0], device=s.device)
        logits = s / self.row_temperatures(user_ids, s.shape[0], s).unsqueeze(1)
        positive = s[rows, target] / self.tau0.to(s.device, s.dtype)
        if logq is not None:
            logq = logq.to(s.dtype)
            logits = logits - logq.unsqueeze(0)
            positive = positive - logq[target]
        loss = self._row_losses(logits, positive, mask, target)
        if self.training and user_ids is not None and self.user_tau.numel() > 0:
            with torch.no_grad():
                raw = s.detach()
                stat = self._row_losses(raw, raw[rows, target], mask, target)
                ids = user_ids.to(self.loss_sum.device, torch.long)
                self.loss_sum.index_add_(0, ids, stat.to(self.loss_sum))
                self.loss_count.index_add_(0, ids, torch.ones_like(ids))
        return loss.mean()

