"""SVD++ as one step of one-sided message passing (the study's eq. 23 and eq. 31)."""

from __future__ import annotations

import torch

from ssmrec.data.interactions import Interactions
from ssmrec.errors import ConfigError
from ssmrec.models.base import Recommender
from ssmrec.models.graph import Propagation, one_hop, propagation_matrix


class SVDPP(Recommender):
    """SVD++ with normalisation exponents.

    User side (eq. 23): ``p_u = p_u0 + sum_{i in P_u} q_i0 / (|P_u|^a0 |P_i|^a1)``, ``q_i = q_i0``.
    Item side (eq. 31): ``q_i = q_i0 + sum_{u in P_i} p_u0 / (|P_i|^a0 |P_u|^a1)``, ``p_u = p_u0``.

    Args:
        train: training interactions (the graph).
        dim: embedding size (default: 64).
        side: ``"user"`` (vanilla SVD++) or ``"item"`` (default: ``"user"``).
        a0: exponent of the receiving node's degree (default: 0.5).
        a1: exponent of the sending node's degree; vanilla SVD++ has 0 (default: 0.0).
        fast: compute a batch's representations from the graph rows it needs and
            back-propagate through a stored transpose (default: True); False is the plain path.
    """

    def __init__(self, train: Interactions, dim: int = 64, *, side: str = "user", a0: float = 0.5,
                 a1: float = 0.0, fast: bool = True, init: str = "xavier", init_std: float = 0.01):
        super().__init__(train.n_users, train.n_items, dim, init=init, init_std=init_std)
        self.side, self.a0, self.a1, self.fast = side, a0, a1, fast
        self.prop = Propagation(propagation_matrix(train, side, a0, a1), fast_backward=fast)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.side == "user":
            return self.user_emb + self.prop(self.item_emb), self.item_emb
        return self.user_emb, self.item_emb + self.prop(self.user_emb)

    def batch_reps(self, users: torch.Tensor, items: torch.Tensor):
        if not self.fast:
            return super().batch_reps(users, items)
        to_users, to_items = (self.prop, None) if self.side == "user" else (None, self.prop)
        return one_hop(self.user_emb, self.item_emb, users, items, to_users, to_items, sparse=self.sparse_grads)

    def check_sparse_grads(self) -> None:
        if not self.fast:
            raise ConfigError("optimizer: SVD++'s plain path (fast=False) propagates the whole graph at each step; "
                              "it cannot train with a sparse optimizer (use the fast path or optimizer adam)")

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, side={self.side}, a0={self.a0}, a1={self.a1}"
