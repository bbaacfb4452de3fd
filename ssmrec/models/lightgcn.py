"""LightGCN: K propagation layers on the symmetric-normalised bipartite graph, layers averaged."""

from __future__ import annotations

import torch

from ssmrec.data.interactions import Interactions
from ssmrec.errors import ConfigError
from ssmrec.models.base import Recommender
from ssmrec.models.graph import Propagation, one_hop, propagation_matrix


class LightGCN(Recommender):
    """``e^(k+1)_u = sum_i e^k_i / sqrt(|P_u||P_i|)`` (and likewise for items); final = mean of
    layers ``0..K`` (coefficient ``1/(K+1)``).

    Args:
        train: training interactions (the graph).
        dim: embedding size (default: 64).
        layers: number of propagation layers K (default: 1).
        fast: compute a batch's representations from the graph rows it needs (the last layer
            only for those rows) and back-propagate through stored transposes (default: True);
            False is the plain path (full propagation, torch's sparse autograd), for checks.
    """

    def __init__(self, train: Interactions, dim: int = 64, *, layers: int = 1, fast: bool = True,
                 init: str = "xavier", init_std: float = 0.01):
        super().__init__(train.n_users, train.n_items, dim, init=init, init_std=init_std)
        if layers < 0:
            raise ValueError(f"layers must be >= 0, got {layers}")
        self.layers, self.fast = layers, fast
        # R_norm (users x items) and its transpose are the two off-diagonal blocks of the
        # normalised (M+N) x (M+N) adjacency; one builder serves SVD++ too.
        self.to_users = Propagation(propagation_matrix(train, "user", 0.5, 0.5), fast_backward=fast)
        self.to_items = Propagation(propagation_matrix(train, "item", 0.5, 0.5), fast_backward=fast)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        u, i = self.user_emb, self.item_emb
        u_sum, i_sum = u, i
        for _ in range(self.layers):
            u, i = self.to_users(i), self.to_items(u)
            u_sum, i_sum = u_sum + u, i_sum + i
        scale = 1.0 / (self.layers + 1)
        return u_sum * scale, i_sum * scale

    def batch_reps(self, users: torch.Tensor, items: torch.Tensor):
        """Layers ``0..K-1`` in full (the last layer reads them), layer ``K`` for the batch's rows."""
        if self.sparse_grads and self.layers == 0:  # the mean of layer 0 alone: the ID embeddings
            return self.rows(self.user_emb, users), self.rows(self.item_emb, items)
        if not self.fast or self.layers == 0:
            return super().batch_reps(users, items)
        if self.layers == 1:
            u, i = one_hop(self.user_emb, self.item_emb, users, items, self.to_users, self.to_items,
                           sparse=self.sparse_grads)
            return u * 0.5, i * 0.5
        if self.sparse_grads:  # the layers below the last are whole-graph products
            self.check_sparse_grads()
        u, i = self.user_emb, self.item_emb
        u_sum, i_sum = u[users], i[items]
        for _ in range(self.layers - 1):
            u, i = self.to_users(i), self.to_items(u)
            u_sum, i_sum = u_sum + u[users], i_sum + i[items]
        u_sum = u_sum + self.to_users.gather(users, i)
        i_sum = i_sum + self.to_items.gather(items, u)
        scale = 1.0 / (self.layers + 1)
        return u_sum * scale, i_sum * scale

    def check_sparse_grads(self) -> None:
        if self.layers >= 2:
            raise ConfigError(f"optimizer: LightGCN with {self.layers} layers propagates the whole graph at each "
                              "step (a batch's last layer reads every node's previous one), so every row gets a "
                              "gradient; it cannot train with a sparse optimizer (use layers 1 or optimizer adam)")
        if not self.fast and self.layers:
            raise ConfigError("optimizer: LightGCN's plain path (fast=False) propagates the whole graph at each "
                              "step; it cannot train with a sparse optimizer (use the fast path or optimizer adam)")

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, layers={self.layers}"
