"""Turn a batch into a scalar: the one place that knows which tensors each loss consumes."""

from __future__ import annotations

import torch
from torch import nn

from ssmrec.data.interactions import Interactions
from ssmrec.data.sampling import Batch, PairSampler, PopularityNegatives, log_expected_counts
from ssmrec.errors import ConfigError
from ssmrec.losses import CorrectedLogQLoss, build_loss, canonical, default_negatives, kind_of, l2_regularization
from ssmrec.models.base import Recommender
from ssmrec.train.config import loss_settings
from ssmrec.train.distributed import SINGLE, DistContext


class Objective:
    """Loss + L2 regularisation for one batch, with the sampler the loss needs.

    In a distributed run the batch is this process's part of a global batch and the result is
    its share of the global batch's loss: the shares sum to the single-process loss, and so do
    their gradients once summed over the processes. In-batch softmax gathers the positives of
    every part, so its candidates are those of the global batch.

    Args:
        loss: a loss module from :mod:`ssmrec.losses`.
        kind: ``in_batch``, ``full`` or ``sampled`` (see :data:`ssmrec.losses.KINDS`).
        reg: L2 coefficient on the batch's layer-0 embeddings (default: 0).
        seen_keys: sorted ``user * n_items + item`` keys of the training pairs, to mask a user's
            known items among the in-batch candidates (default: no masking).
        log_counts: per-item log expected candidate counts for the logQ correction
            (default: no correction).
        n_items: catalogue size (needed with ``seen_keys``).
        dist: this process's place in a distributed run (default: one process).
    """

    def __init__(self, loss: nn.Module, kind: str, *, reg: float = 0.0,
                 seen_keys: torch.Tensor | None = None, log_counts: torch.Tensor | None = None,
                 n_items: int = 0, dist: DistContext = SINGLE):
        self.loss, self.kind, self.reg = loss, kind, reg
        self.seen_keys, self.log_counts, self.n_items = seen_keys, log_counts, n_items
        self.dist = dist
        self.loss_kwargs: dict = {}  # further keywords a loss needs at every call
        # a registered loss written to the earlier extras (no ``user_ids``, no ``**kwargs``) still works
        self.takes_user_ids = accepts(loss.forward, "user_ids")

    def to(self, device: torch.device) -> Objective:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        self.seen_keys, self.log_counts = move(self.seen_keys), move(self.log_counts)
        return self

    def __call__(self, model: Recommender, batch: Batch) -> torch.Tensor:
        users, items = batch.users, batch.items
        b, total = users.numel(), batch.total
        if self.kind == "full":
            all_u, all_i = model()
            main = self.loss(all_u[users], all_i, items)
            ego = model.ego(users, items)
        elif self.kind == "in_batch" and batch.negatives is not None:
            # per-row sampled negatives in place of the batch's other positives (``negatives``)
            neg = batch.negatives
            ids = torch.cat([items, neg.reshape(-1)])
            u, c = model.batch_reps(users, ids)
            main = self.loss(u, c[:b], item_ids=items, row_negatives=c[b:].view(b, neg.shape[1], c.shape[-1]),
                             row_negative_ids=neg, **({"user_ids": users} if self.takes_user_ids else {}),
                             **self.loss_kwargs)
            eu, ec = model.ego(users, ids)
            ego = (eu, ec[:b], ec[b:])
        elif self.kind == "in_batch":
            cand = items if batch.shared is None else torch.cat([items, batch.shared])
            dislikes = getattr(self.loss, "uses_dislikes", False) and batch.dislike_users is not None
            if dislikes:  # one propagation for the batch and its dislikes
                m = batch.dislike_users.numel()
                u, c = model.batch_reps(torch.cat([users, batch.dislike_users]),
                                        torch.cat([cand, batch.dislike_items]))
                (u, neg_u), (c, neg_i) = (u[:b], u[b:]), (c[:-m] if m else c, c[c.shape[0] - m:])
            else:
                u, c = model.batch_reps(users, cand)
            # the global batch's positives: every process's part, in rank order (one process: c[:b])
            positives = self.dist.gather_with_grad(c[:b], total)
            ids = self.dist.gather(items, total)
            cand_ids = ids if batch.shared is None else torch.cat([ids, batch.shared])
            # row r's positive is column offset + r of the gathered positives (one process: r)
            target = torch.arange(b, device=u.device) + self.dist.offset(total) if self.dist.enabled else None
            extras = {}
            if dislikes:  # each dislike is scored against the same candidates (NTR)
                extras = {"neg_user_reps": neg_u, "neg_item_reps": neg_i, "neg_item_ids": batch.dislike_items,
                          "neg_logq": None if self.log_counts is None else self.log_counts[batch.dislike_items]}
            main = self.loss(
                u, positives, item_ids=ids,
                extra_reps=c[b:] if batch.shared is not None else None,
                extra_ids=batch.shared,
                logq=None if self.log_counts is None else self.log_counts[cand_ids],
                exclude=self._seen_mask(users, cand_ids),
                target=target,
                **({"user_ids": users} if self.takes_user_ids else {}),
                **extras,
                **self.loss_kwargs,
            )
            ego = model.ego(users, items)
        else:
            neg = batch.negatives
            n = neg.shape[1]
            u, c = model.batch_reps(users, torch.cat([items, neg.reshape(-1)]))
            main = self.loss(u, c[:b], c[b:].view(b, n, c.shape[-1]))
            eu, ec = model.ego(users, torch.cat([items, neg.reshape(-1)]))
            ego = (eu, ec[:b], ec[b:])
        if b != total:  # this process's share of the global batch's mean loss
            # (no rows: a mean over nothing is NaN; keep the graph, the gather's backward is collective)
            main = main * (b / total) if b else main.nan_to_num() * 0.0
        if self.reg:
            return main + self.reg * l2_regularization(*ego, batch_size=total)
        return main

    def _seen_mask(self, users: torch.Tensor, cand: torch.Tensor) -> torch.Tensor | None:
        if self.seen_keys is None:
            return None
        q = users.unsqueeze(1) * self.n_items + cand.unsqueeze(0)
        pos = torch.searchsorted(self.seen_keys, q).clamp(max=self.seen_keys.numel() - 1)
        return self.seen_keys[pos] == q


def accepts(fn, name: str) -> bool:
    """Whether a callable takes the keyword ``name`` (by name or through ``**kwargs``)."""
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in params)


def build_objective(cfg, train: Interactions, dist: DistContext = SINGLE,
                    dislikes: Interactions | None = None) -> tuple[Objective, PairSampler]:
    """The objective and the matching batch sampler for a :class:`~ssmrec.train.config.TrainConfig`
    (``dislikes``: the training dislikes, for a loss that learns from them)."""
    name = canonical(cfg.loss)
    kind = kind_of(name)
    loss = build_loss(name, tau=cfg.tau, similarity=cfg.similarity, margin=cfg.margin,
                      weight=cfg.neg_weight, mask_duplicates=cfg.mask_duplicates, params=cfg.loss_params,
                      seed=cfg.seed)
    if name in ("ntr", "adaptau") and dist.enabled:
        raise ConfigError(f"loss {name} runs in one process only (per-process dislikes / per-user statistics)")
    if getattr(loss, "uses_dislikes", False) and (dislikes is None or not dislikes.nnz):
        raise ConfigError(f"loss {name} learns from explicit negatives, and this data has none: read a rated file "
                          "with --positive-min and --negative-max (e.g. --positive-min 4 --negative-max 2)")
    if kind == "sampled":
        n_neg = cfg.negatives or default_negatives(name)
    else:  # an in-batch loss that takes per-row sampled negatives in place of the batch's (``negatives``)
        n_neg = (cfg.negatives or 0) if "negatives" in loss_settings(name) and kind == "in_batch" else 0
    shared_sampler = None
    if kind == "in_batch" and cfg.extra_negatives:
        shared_sampler = PopularityNegatives(train.item_degree, cfg.negative_beta)
    sampler = PairSampler(
        train, cfg.batch_size, n_negatives=n_neg,
        n_shared=cfg.extra_negatives if kind == "in_batch" else 0,
        shared_sampler=shared_sampler, seed=cfg.seed,
        dislikes=dislikes if getattr(loss, "uses_dislikes", False) else None,
    )
    seen = log_counts = None
    if kind == "in_batch" and cfg.mask_seen:
        seen = torch.from_numpy(train.keys())
    corrected = isinstance(loss, CorrectedLogQLoss)  # always corrects: it needs the sampling probabilities
    if kind == "in_batch" and ((cfg.logq and "logq" in loss_settings(name)) or corrected):
        log_counts = log_expected_counts(train.item_degree, cfg.batch_size, shared_sampler,
                                         cfg.extra_negatives).float()
    obj = Objective(loss, kind, reg=cfg.reg, seen_keys=seen, log_counts=log_counts,
                    n_items=train.n_items, dist=dist)
    if corrected:  # the counts refer to a full batch's draws: in-batch positives + extra negatives
        obj.loss_kwargs["n_draws"] = cfg.batch_size + cfg.extra_negatives
    return obj, sampler

