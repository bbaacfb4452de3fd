"""The ``optimizer`` setting: dense Adam (the study's), or optimizers that update only the rows a
step touched, for catalogues where a step's cost must follow the batch, not the tables.

``adam``
    ``torch.optim.Adam`` over whole tables (fused where torch has it). Every step reads and
    writes every row of both tables and of Adam's two moments, whatever the batch touched: the
    study's protocol, and the default.
``sparse-adam``
    Lazy Adam (:class:`SparseAdam`, ``torch.optim.SparseAdam``'s rule): the model builds row
    gradients (COO sparse tensors naming the rows a batch reached), and only those rows' moments
    and weights move.
``rowwise-adagrad``
    Row-wise Adagrad (:class:`RowWiseAdagrad`, as fbgemm's and TorchRec's ``EXACT_ROWWISE_ADAGRAD``
    for very large tables): one accumulator per row, so its state is ``rows`` numbers, not
    ``2 x rows x dim``.

The two sparse optimizers need every path from a batch to the tables to produce row gradients
(:meth:`ssmrec.models.base.Recommender.use_sparse_grads`); :func:`sparse_refusal` names the
settings where that cannot hold (a loss that scores every item, LightGCN with several layers).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from ssmrec.errors import ConfigError, TrainingError
from ssmrec.train.config import OPTIMIZERS, SPARSE, is_sparse, sparse_refusal  # noqa: F401 (re-exported)

LARGE_CATALOGUE = 500_000
"""Users + items from which a run with dense Adam is told about the sparse optimizers."""


def dense_hint(cfg, n_users: int, n_items: int) -> str | None:
    """A one-line hint for a large catalogue trained with dense Adam where a sparse optimizer would
    work (None otherwise).

    Args:
        cfg: the run's :class:`~ssmrec.train.config.TrainConfig`.
        n_users, n_items: the catalogue."""
    from ssmrec.losses import canonical, kind_of

    if is_sparse(cfg.optimizer) or n_users + n_items < LARGE_CATALOGUE:
        return None
    model = cfg.model.lower().replace("+", "p").replace("-", "")
    if sparse_refusal(SPARSE[0], kind_of(canonical(cfg.loss)), model, cfg.layers):
        return None
    return (f"hint: {n_users:,} users + {n_items:,} items: dense Adam updates every row of both tables at every "
            "step; --optimizer sparse-adam or rowwise-adagrad update only the rows a batch touches")


def make_optimizer(params: Iterable[torch.nn.Parameter], name: str, lr: float) -> torch.optim.Optimizer:
    """The optimizer called ``name`` (see the module docstring) over ``params``."""
    if name == "adam":
        params = list(params)
        try:  # the fused kernel where this torch has one for the device (same update rule)
            return torch.optim.Adam(params, lr=lr, fused=True)
        except (RuntimeError, TypeError, ValueError):
            return torch.optim.Adam(params, lr=lr)
    if name == "sparse-adam":
        return SparseAdam(params, lr=lr)
    if name == "rowwise-adagrad":
        return RowWiseAdagrad(params, lr=lr)
    raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


def touched_rows(p: torch.Tensor, who: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The rows of ``p.grad`` (a COO row gradient) as ``(index, values)``: distinct row indices in
    ascending order and their summed gradient rows; None when ``p`` has no gradient.

    A dense gradient is refused: it means some path from the batch to ``p`` was not sparse, and
    a sparse optimizer would otherwise have to read every row to find the touched ones."""
    g = p.grad
    if g is None:
        return None
    if g.layout != torch.sparse_coo:
        raise TrainingError(f"{who} received a dense gradient for a table of {p.shape[0]:,} rows: some path from "
                            "the batch to this table does not build row gradients (a model or loss that reads "
                            "whole tables); use optimizer adam for it")
    g = g.coalesce()
    return g.indices()[0], g.values().reshape(-1, *p.shape[1:])


class RowOptimizer(torch.optim.Optimizer):
    """An optimizer that updates only the rows a step touched: :meth:`step` hands each table's
    distinct touched rows and their summed gradient rows to :meth:`update_rows`."""

    name = "row optimizer"

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                rows = touched_rows(p, f"optimizer {self.name}")
                if rows is not None:
                    self.update_rows(p, *rows, self.state[p], group)
        return loss

    def update_rows(self, p: torch.Tensor, index: torch.Tensor, g: torch.Tensor, state: dict, group: dict) -> None:
        raise NotImplementedError


class SparseAdam(RowOptimizer):
    r"""Lazy Adam: the rule of ``torch.optim.SparseAdam``, on the rows a step touched only.

    For each touched row ``r`` with gradient row ``g_r`` at the parameter's step ``t`` (steps
    counted per table, as torch does)::

        m_r <- beta1 m_r + (1 - beta1) g_r
        v_r <- beta2 v_r + (1 - beta2) g_r^2
        w_r <- w_r - lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m_r / (sqrt(v_r) + eps)

    Untouched rows keep their weights and moments (their moments do not decay): the lazy
    approximation of Adam that makes a step's cost follow the batch. Row gradients of duplicate
    rows are summed first (``coalesce``).

    Args:
        params: the tables (their gradients must be COO row gradients).
        lr: learning rate (default: 1e-3).
        betas: ``(beta1, beta2)`` (default: (0.9, 0.999)).
        eps: added to the denominator (default: 1e-8).
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        if not (lr > 0 and 0 <= betas[0] < 1 and 0 <= betas[1] < 1 and eps >= 0):
            raise ValueError(f"invalid SparseAdam settings lr={lr}, betas={betas}, eps={eps}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps})

    name = "sparse-adam"

    def update_rows(self, p, index, g, state, group) -> None:
        lr, (b1, b2), eps = group["lr"], group["betas"], group["eps"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
        state["step"] += 1
        t = state["step"]
        m = state["exp_avg"].index_select(0, index).mul_(b1).add_(g, alpha=1 - b1)
        v = state["exp_avg_sq"].index_select(0, index).mul_(b2).addcmul_(g, g, value=1 - b2)
        state["exp_avg"].index_copy_(0, index, m)
        state["exp_avg_sq"].index_copy_(0, index, v)
        step_size = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        p.index_add_(0, index, m.div_(v.sqrt_().add_(eps)), alpha=-step_size)


class RowWiseAdagrad(RowOptimizer):
    r"""Row-wise Adagrad (fbgemm / TorchRec ``EXACT_ROWWISE_ADAGRAD``): one accumulator per row.

    For each touched row ``r`` with gradient row ``g_r`` of ``d`` columns::

        G_r <- G_r + (1/d) sum_j g_rj^2
        w_r <- w_r - lr * g_r / (sqrt(G_r) + eps)

    The state is ``G``, one number per row (``rows`` floats against Adam's ``2 x rows x d``);
    untouched rows keep theirs. Row gradients of duplicate rows are summed first.

    Args:
        params: the tables (their gradients must be COO row gradients).
        lr: learning rate (default: 1e-2; Adagrad's steps shrink as ``G`` grows, so it usually
            wants a larger rate than Adam).
        eps: added to the denominator (default: 1e-8, fbgemm's).
    """

    def __init__(self, params, lr: float = 1e-2, eps: float = 1e-8):
        if not (lr > 0 and eps >= 0):
            raise ValueError(f"invalid RowWiseAdagrad settings lr={lr}, eps={eps}")
        super().__init__(params, {"lr": lr, "eps": eps})

    name = "rowwise-adagrad"

    def update_rows(self, p, index, g, state, group) -> None:
        lr, eps = group["lr"], group["eps"]
        if not state:
            state["step"] = 0
            state["sum"] = p.new_zeros(p.shape[0])
        state["step"] += 1
        flat = g.reshape(g.shape[0], -1)
        acc = state["sum"].index_select(0, index).add_(flat.pow(2).mean(1))
        state["sum"].index_copy_(0, index, acc)
        denom = acc.sqrt_().add_(eps).view(-1, *([1] * (g.dim() - 1)))
        p.index_add_(0, index, g / denom, alpha=-lr)
