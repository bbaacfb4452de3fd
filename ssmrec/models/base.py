"""What every recommender provides: ID embeddings in, final representations out, no loss."""

from __future__ import annotations

import torch
from torch import nn


class Recommender(nn.Module):
    """Base class: user/item ID embeddings (layer 0), Xavier-initialised.

    Subclasses implement :meth:`forward`, returning the final ``(user_reps, item_reps)`` of all
    users and items, and may override :meth:`batch_reps` to compute only the rows a batch needs.

    Args:
        n_users, n_items: table sizes.
        dim: embedding size (default: 64).
    """

    def __init__(self, n_users: int, n_items: int, dim: int = 64):
        super().__init__()
        self.n_users, self.n_items, self.dim = n_users, n_items, dim
        self.user_emb = nn.Parameter(torch.empty(n_users, dim))
        self.item_emb = nn.Parameter(torch.empty(n_items, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.user_emb)
        nn.init.xavier_uniform_(self.item_emb)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        """In eval mode, ``model()`` gives the representations as scored, detached (ready for
        ``.numpy()``); in train mode it builds the autograd graph as usual."""
        if self.training or args or kwargs:
            return super().__call__(*args, **kwargs)
        with torch.no_grad():
            return super().__call__()

    def batch_reps(
        self, users: torch.Tensor, items: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Final representations of the given users and items (rows may repeat)."""
        u, i = self.forward()
        return u[users], i[items]

    def ego(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer-0 (ID) embeddings of the given users and items, for L2 regularisation."""
        return self.user_emb[users], self.item_emb[items]

    def extra_repr(self) -> str:
        return f"users={self.n_users}, items={self.n_items}, dim={self.dim}"
