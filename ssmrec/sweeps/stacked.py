"""K members of one model family in stacked tables, and their losses computed at once.

The layer-0 tables of K members are two Parameters, stored *node-major*: ``user_emb`` is
``[U, K, d]`` and ``item_emb`` is ``[I, K, d]`` (member ``k``'s table is ``user_emb[:, k]``;
:meth:`StackedModel.member_tables` gives the ``[K, U, d]`` / ``[K, I, d]`` views). Node-major
makes ``x.view(N, K * d)`` free, so a graph model runs ONE sparse product per layer for every
member (the propagation matrices are column-independent), and a batch's rows are one gather of
``K * d``-wide rows. Representations of a batch come back member-major, ``[K, B, d]``, for
batched score products (``torch.bmm``).

Every computation follows the solo code (:mod:`ssmrec.models`, :mod:`ssmrec.losses`,
:class:`ssmrec.train.objective.Objective`) operation for operation, per member slice, so that a
member equals its solo run to float rounding; the tests in ``tests/test_sweep.py`` hold the two
side by side.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssmrec.data.interactions import Interactions
from ssmrec.data.sampling import Batch
from ssmrec.losses.similarity import prepare
from ssmrec.models.graph import Propagation, one_hop, propagation_matrix
from ssmrec.models.mf import MF
from ssmrec.train.objective import Objective

BUILT_IN = ("ssm", "softmax", "bpr", "bce", "ccl")


def _member_major(x: torch.Tensor) -> torch.Tensor:
    """``[rows, K, d]`` -> contiguous ``[K, rows, d]``: each member's rows laid out as a solo
    model's, so that reductions over ``d`` (cosine normalisation and its backward) add in the
    same order as in a solo run."""
    return x.transpose(0, 1).contiguous()


class StackedModel(nn.Module):
    """Base class: K members' layer-0 tables, each initialised exactly as a solo model with its
    seed (``torch.manual_seed(seed)``, then the tables of :class:`~ssmrec.models.base.Recommender`:
    Xavier-uniform users, then items).

    Args:
        n_users, n_items: table sizes.
        dim: embedding size.
        seeds: one initialisation seed per member.
    """

    def __init__(self, n_users: int, n_items: int, dim: int, seeds: list[int]):
        super().__init__()
        self.n_users, self.n_items, self.dim = n_users, n_items, dim
        k = len(seeds)
        users, items = torch.empty(n_users, k, dim), torch.empty(n_items, k, dim)
        for j, seed in enumerate(seeds):
            torch.manual_seed(seed)  # as Trainer.__init__ before build_model
            solo = MF(n_users, n_items, dim)  # every model's layer 0 is Recommender's init
            users[:, j], items[:, j] = solo.user_emb.detach(), solo.item_emb.detach()
        self.user_emb = nn.Parameter(users)
        self.item_emb = nn.Parameter(items)
        self._flat_key: tuple | None = None
        self._flat: tuple[torch.Tensor, torch.Tensor] | None = None

    def _apply(self, fn, *args, **kwargs):
        self._flat_key = self._flat = None  # .to(device) and the like replace the tables' storage
        return super()._apply(fn, *args, **kwargs)

    @property
    def members(self) -> int:
        return self.user_emb.shape[1]

    def flat(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The tables as ``[U, K*d]`` and ``[I, K*d]`` views (for sparse products).

        The same view objects until the tables change: every use of a table in a step (the
        batch's rows, the propagation, the L2 rows) then hangs off one node of the autograd
        graph, and the gradients of these uses add up in the order of a solo run's."""
        key = (id(self.user_emb), self.user_emb._version, id(self.item_emb), self.item_emb._version,
               torch.is_grad_enabled())
        if self._flat_key != key:
            k, d = self.members, self.dim
            self._flat = (self.user_emb.view(self.n_users, k * d), self.item_emb.view(self.n_items, k * d))
            self._flat_key = key
        return self._flat

    def member_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer-0 tables as ``[K, U, d]`` and ``[K, I, d]`` views."""
        return self.user_emb.transpose(0, 1), self.item_emb.transpose(0, 1)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final representations of every user and item, ``[U, K, d]`` and ``[I, K, d]``."""
        raise NotImplementedError  # pragma: no cover

    def batch_reps(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Final representations of the given rows, member-major: ``[K, B, d]`` and ``[K, C, d]``."""
        u, i = self.forward()
        return _member_major(u[users]), _member_major(i[items])

    def ego(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer-0 rows (for L2), member-major ``[K, B, d]`` and ``[K, C, d]`` (views)."""
        u, i = self.flat()  # the same view as the propagation's: gradients add up in a solo run's order
        k, d = self.members, self.dim
        return u[users].view(-1, k, d).transpose(0, 1), i[items].view(-1, k, d).transpose(0, 1)

    @torch.no_grad()
    def member_reps(self, reps: tuple[torch.Tensor, torch.Tensor], j: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Member ``j``'s slice of :meth:`forward`'s output, as contiguous ``[U, d]``, ``[I, d]``."""
        return reps[0][:, j].contiguous(), reps[1][:, j].contiguous()

    def member_state(self, j: int) -> dict[str, torch.Tensor]:
        """Member ``j``'s parameters as a solo model's ``state_dict``."""
        return {"user_emb": self.user_emb.detach()[:, j].clone(),
                "item_emb": self.item_emb.detach()[:, j].clone()}

    def keep(self, index: list[int]) -> None:
        """Keep only the members ``index`` (positions in the stack): new, smaller Parameters."""
        self._flat_key = self._flat = None
        self.user_emb = nn.Parameter(self.user_emb.detach()[:, index].contiguous())
        self.item_emb = nn.Parameter(self.item_emb.detach()[:, index].contiguous())


class _GatherTwice(torch.autograd.Function):
    """``table[index]`` for the two uses a solo MF step makes of the same rows (the batch's
    representations and its L2 rows). Autograd would build one dense table-sized gradient per
    use and add them (for K members, K times a solo run's memory traffic, twice); here each
    use's rows are summed per distinct index, in index order (as ``index_put_`` accumulates),
    the two sums added, and ONE dense gradient written: the same numbers as a solo run's."""

    @staticmethod
    def forward(ctx, table, index):
        ctx.save_for_backward(index)
        ctx.shape = table.shape
        rows = table[index]
        return rows, rows.clone()

    @staticmethod
    def backward(ctx, *grads):
        (index,) = ctx.saved_tensors
        uniq, inv = torch.unique(index, return_inverse=True)
        total = None
        for g in grads:
            if g is None:
                continue
            g = g.reshape(g.shape[0], -1)  # rows of K * d: index_add_'s fast row path
            part = g.new_zeros((uniq.numel(), g.shape[1])).index_add_(0, inv, g)
            total = part if total is None else total + part
        grad = total.new_zeros((ctx.shape[0], total.shape[1]))
        grad[uniq] = total
        return grad.view(ctx.shape), None


class StackedMF(StackedModel):
    """K matrix factorisations: the representations are the tables.

    :meth:`batch_reps` gathers each table's rows once for the representations and for the L2
    rows that :meth:`ego` then returns (when asked for the same index tensors), see
    :class:`_GatherTwice`."""

    def forward(self):
        return self.user_emb, self.item_emb

    def batch_reps(self, users, items):
        u, eu = _GatherTwice.apply(self.user_emb, users)
        c, ec = _GatherTwice.apply(self.item_emb, items)
        self._ego = (users, items, eu, ec)
        return _member_major(u), _member_major(c)

    def ego(self, users, items):
        stash, self._ego = getattr(self, "_ego", None), None
        if stash is not None and stash[0] is users and stash[1] is items:
            return stash[2].transpose(0, 1), stash[3].transpose(0, 1)
        eu = stash[2] if stash is not None and stash[0] is users else self.user_emb[users]
        return eu.transpose(0, 1), self.item_emb[items].transpose(0, 1)


class StackedSVDPP(StackedModel):
    """K SVD++ models sharing ONE propagation: every member has the same ``side``, ``a0`` and
    ``a1`` (the sweep refuses members whose exponents differ)."""

    def __init__(self, train: Interactions, dim: int, seeds: list[int], *, side: str = "user",
                 a0: float = 0.5, a1: float = 0.0):
        super().__init__(train.n_users, train.n_items, dim, seeds)
        self.side, self.a0, self.a1 = side, a0, a1
        self.prop = Propagation(propagation_matrix(train, side, a0, a1))
        self.prop.block = dim  # one product per member's columns (see graph.sparse_mm)

    def forward(self):
        u, i = self.flat()
        if self.side == "user":
            return (u + self.prop(i)).view_as(self.user_emb), self.item_emb
        return self.user_emb, (i + self.prop(u)).view_as(self.item_emb)

    def batch_reps(self, users, items):
        u, i = self.flat()
        to_users, to_items = (self.prop, None) if self.side == "user" else (None, self.prop)
        bu, bi = one_hop(u, i, users, items, to_users, to_items)
        k, d = self.members, self.dim
        return _member_major(bu.view(-1, k, d)), _member_major(bi.view(-1, k, d))


class StackedLightGCN(StackedModel):
    """K LightGCN models, member ``j`` with ``layers[j]`` layers: one sparse product per layer
    serves every member (over ``[N, K*d]``), member ``j`` averages the first ``layers[j] + 1``
    layer outputs of its slice."""

    def __init__(self, train: Interactions, dim: int, seeds: list[int], layers: list[int]):
        super().__init__(train.n_users, train.n_items, dim, seeds)
        if len(layers) != len(seeds) or min(layers) < 0:
            raise ValueError(f"layers must give one count >= 0 per member, got {layers}")
        self.layers = list(layers)
        self.to_users = Propagation(propagation_matrix(train, "user", 0.5, 0.5))
        self.to_items = Propagation(propagation_matrix(train, "item", 0.5, 0.5))
        self.to_users.block = self.to_items.block = dim  # one product per member's columns

    def keep(self, index):
        super().keep(index)
        self.layers = [self.layers[j] for j in index]

    def _scale(self, like: torch.Tensor) -> torch.Tensor:
        return torch.tensor([1.0 / (n + 1) for n in self.layers], dtype=like.dtype, device=like.device)

    def _select(self, cums: list[torch.Tensor], rows: int) -> torch.Tensor:
        """Member ``j`` takes ``cums[layers[j]]``'s slice ``j`` (``cums[l]``: the sum of layers
        ``0..l``, ``[rows, K*d]``), times ``1 / (layers[j] + 1)``: ``[rows, K, d]``."""
        k, d = self.members, self.dim
        if len(set(self.layers)) == 1:
            out = cums[self.layers[0]].view(rows, k, d)
        else:
            out = torch.cat([cums[n].view(rows, k, d)[:, j:j + 1] for j, n in enumerate(self.layers)], dim=1)
        return out * self._scale(out).view(1, k, 1)

    def forward(self):
        u, i = self.flat()
        cu, ci = [u], [i]
        for _ in range(max(self.layers)):
            u, i = self.to_users(i), self.to_items(u)
            cu.append(cu[-1] + u)
            ci.append(ci[-1] + i)
        return self._select(cu, self.n_users), self._select(ci, self.n_items)

    def batch_reps(self, users, items):
        """As the solo fast path: layers ``0..L-1`` in full, the last layer for the batch's rows
        (``L`` the largest member's layers); all members of one layer give a single hop."""
        top = max(self.layers)
        if top == 0:
            return super().batch_reps(users, items)
        u, i = self.flat()
        k, d = self.members, self.dim
        if top == 1 and min(self.layers) == 1:
            bu, bi = one_hop(u, i, users, items, self.to_users, self.to_items)
            return _member_major((bu * 0.5).view(-1, k, d)), _member_major((bi * 0.5).view(-1, k, d))
        cu, ci = [u[users]], [i[items]]
        for _ in range(top - 1):
            u, i = self.to_users(i), self.to_items(u)
            cu.append(cu[-1] + u[users])
            ci.append(ci[-1] + i[items])
        cu.append(cu[-1] + self.to_users.gather(users, i))
        ci.append(ci[-1] + self.to_items.gather(items, u))
        return _member_major(self._select(cu, users.numel())), _member_major(self._select(ci, items.numel()))


class StackedObjective:
    """Per-member loss and L2 term of one batch for K stacked members.

    Mirrors :class:`~ssmrec.train.objective.Objective` (whose masks, logQ counts and loss
    settings it shares: ``solo`` is the base configuration's objective) with the member-specific
    values as tensors of shape ``[K]``.

    Args:
        solo: the base run's objective (loss kind, similarity, masks, logQ).
        loss: canonical loss name.
        tau, margin, neg_weight, reg: one value per member.
    """

    def __init__(self, solo: Objective, loss: str, *, tau: list[float], margin: list[float],
                 neg_weight: list[float], reg: list[float], member_losses: list[torch.nn.Module] | None = None):
        self.solo, self.kind, self.name = solo, solo.kind, loss
        # a loss beyond the built-in five: one module per member (each with its member's settings)
        self.member_losses = list(member_losses) if member_losses is not None else [solo.loss] * len(tau)
        self.similarity = getattr(solo.loss, "similarity", "cos")
        self.mask_duplicates = getattr(solo.loss, "mask_duplicates", False)
        # bpr / bce score with tau = 1 (build_loss passes them no temperature), ccl with cosines;
        # a registered loss takes its settings from loss_params, shared by all members
        self.tau = tau if loss in ("ssm", "softmax") else [1.0] * len(tau)
        self.margin, self.neg_weight, self.reg = list(margin), list(neg_weight), list(reg)
        self._tensors: dict[str, torch.Tensor] = {}

    def keep(self, index: list[int]) -> None:
        for name in ("tau", "margin", "neg_weight", "reg", "member_losses"):
            setattr(self, name, [getattr(self, name)[j] for j in index])
        self._tensors.clear()

    def values(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """Member settings as a float tensor ``[K]`` on ``like``'s device (cached)."""
        t = self._tensors.get(name)
        if t is None or t.device != like.device or t.dtype != like.dtype:
            t = self._tensors[name] = torch.tensor(getattr(self, name), dtype=like.dtype, device=like.device)
        return t

    def __call__(self, model: StackedModel, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(losses [K], l2 [K] or None)``; member ``j``'s objective is ``losses[j] + reg[j] * l2[j]``."""
        users, items = batch.users, batch.items
        b = users.numel()
        if self.name not in BUILT_IN:
            main, ego = self._registered(model, batch)
        elif self.kind == "full":
            all_u, all_i = model()
            logits = self._score_matrix(_member_major(all_u[users]), _member_major(all_i))
            main = self._cross_entropy(logits, items)
            ego = model.ego(users, items)
        elif self.kind == "in_batch":
            cand = items if batch.shared is None else torch.cat([items, batch.shared])
            u, c = model.batch_reps(users, cand)
            logits = self._score_matrix(u, c)
            if self.solo.log_counts is not None:
                logits = logits - self.solo.log_counts[cand].to(logits.dtype).view(1, 1, -1)
            mask = None
            if self.mask_duplicates:
                mask = cand.unsqueeze(0) == items.unsqueeze(1)
            exclude = self.solo._seen_mask(users, cand)
            if exclude is not None:
                mask = exclude if mask is None else mask | exclude
            if mask is not None:
                rows = torch.arange(b, device=mask.device)
                mask = mask.clone()
                mask[rows, rows] = False
                logits = logits.masked_fill(mask.unsqueeze(0), float("-inf"))
            main = self._cross_entropy(logits, torch.arange(b, device=logits.device))
            ego = model.ego(users, items)
        else:
            neg = batch.negatives
            n = neg.shape[1]
            ids = torch.cat([items, neg.reshape(-1)])
            u, c = model.batch_reps(users, ids)
            k, d = u.shape[0], u.shape[-1]
            pos_reps, neg_reps = c.split([b, b * n], dim=1)  # split: its backward is one cat
            main = self._pair_loss(u, pos_reps, neg_reps.reshape(k, b, n, d))
            eu, ec = model.ego(users, ids)
            ego = (eu, *ec.split([b, b * n], dim=1))
        if not any(self.reg):
            return main, None
        # each member's rows contiguous, as a solo run's; one reduction per tensor for all members
        l2 = sum(e.contiguous().pow(2).sum((1, 2)) for e in ego) / (2 * batch.total)
        return main, l2

    def _registered(self, model: StackedModel, batch: Batch):
        """A registered loss (:func:`ssmrec.losses.register_loss`): the representations are
        computed once for every member, the loss module is called once per member's slice."""
        users, items, b, losses = batch.users, batch.items, batch.users.numel(), self.member_losses
        if self.kind == "full":
            all_u, all_i = model()
            main = [losses[j](all_u[users][:, j], all_i[:, j], items) for j in range(model.members)]
            return torch.stack(main), model.ego(users, items)
        if self.kind == "in_batch":
            cand = items if batch.shared is None else torch.cat([items, batch.shared])
            u, c = model.batch_reps(users, cand)
            logq = None if self.solo.log_counts is None else self.solo.log_counts[cand]
            exclude = self.solo._seen_mask(users, cand)
            main = [losses[j](u[j], c[j, :b], item_ids=items,
                              extra_reps=c[j, b:] if batch.shared is not None else None, extra_ids=batch.shared,
                              logq=logq, exclude=exclude, target=None,
                              **({"user_ids": users} if self.solo.takes_user_ids else {}), **self.solo.loss_kwargs)
                    for j in range(model.members)]
            return torch.stack(main), model.ego(users, items)
        neg = batch.negatives
        ids = torch.cat([items, neg.reshape(-1)])
        u, c = model.batch_reps(users, ids)
        main = [losses[j](u[j], c[j, :b], c[j, b:].reshape(b, neg.shape[1], -1)) for j in range(model.members)]
        eu, ec = model.ego(users, ids)
        return torch.stack(main), (eu, ec[:, :b], ec[:, b:])

    # ------------------------------------------------------------------ scores and losses
    def _score_matrix(self, u: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``[K, B, d] x [K, C, d] -> [K, B, C]``, as :func:`~ssmrec.losses.similarity.score_matrix`."""
        u = prepare(u, self.similarity) / self.values("tau", u).view(-1, 1, 1)
        c = prepare(c, self.similarity)
        if c.requires_grad:
            # bmm hands the candidates' gradient back transposed ([K, d, C] memory); a solo run's
            # mm hands it back row-major, and the normalisation's backward adds in memory order
            c.register_hook(torch.Tensor.contiguous)
        return torch.bmm(u, c.transpose(1, 2))

    @staticmethod
    def _cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # one call per member: each member's mean adds up as in its solo run (the per-row
        # softmax is the same either way; the K calls cost what one call on K x B rows costs)
        return torch.stack([F.cross_entropy(x, target) for x in logits.unbind(0)])

    def _scores(self, u: torch.Tensor, i: torch.Tensor, similarity: str, tau: torch.Tensor | None):
        """As :func:`~ssmrec.losses.similarity.scores`: ``[K, B, d]`` with ``[K, B, d]`` or
        ``[K, B, n, d]`` -> ``[K, B]`` or ``[K, B, n]``."""
        u, i = prepare(u, similarity), prepare(i, similarity)
        if tau is not None and bool((tau != 1.0).any()):  # bpr / bce: tau 1, as solo skip it
            u = u / tau.view(-1, 1, 1)
        return (u * i).sum(-1) if i.dim() == 3 else torch.einsum("kbd,kbnd->kbn", u, i)

    def _pair_loss(self, u: torch.Tensor, pos_reps: torch.Tensor, neg_reps: torch.Tensor) -> torch.Tensor:
        """Scores batched over members; the element-wise tail (softplus, relu) and the mean per
        member, on its contiguous ``[B, n]`` slice, so that vectorised kernels split it into lanes
        as in a solo run (a slice starting mid-vector would round differently)."""
        if self.name == "ccl":
            pos = self._scores(u, pos_reps, "cos", None)
            neg = self._scores(u, neg_reps, "cos", None)
            return torch.stack([((1 - p) + w * F.relu(n - m).mean(1)).mean()
                                for p, n, w, m in zip(pos.unbind(0), neg.unbind(0), self.neg_weight, self.margin)])
        tau = self.values("tau", u)
        pos = self._scores(u, pos_reps, self.similarity, tau)
        neg = self._scores(u, neg_reps, self.similarity, tau)
        if self.name == "bpr":
            return torch.stack([F.softplus(n - p.unsqueeze(1)).mean() for p, n in zip(pos.unbind(0), neg.unbind(0))])
        total = [F.softplus(-p).sum() + F.softplus(n).sum() for p, n in zip(pos.unbind(0), neg.unbind(0))]  # bce
        return torch.stack(total) / (pos[0].numel() + neg[0].numel())
