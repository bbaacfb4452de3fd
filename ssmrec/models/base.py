"""What every recommender provides: ID embeddings in, final representations out, no loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssmrec.errors import ConfigError


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
        if self.sparse_grads:  # the whole-table path would give every row a (dense) gradient
            raise ConfigError(f"optimizer: {type(self).__name__}'s batch path computes every row's representation; "
                              "it cannot train with a sparse optimizer (use optimizer adam)")
        u, i = self.forward()
        return u[users], i[items]

    def ego(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer-0 (ID) embeddings of the given users and items, for L2 regularisation."""
        if self.sparse_grads:
            return self.rows(self.user_emb, users), self.rows(self.item_emb, items)
        return self.user_emb[users], self.item_emb[items]

    # ------------------------------------------------------------------ row gradients
    sparse_grads = False
    """Whether the batch paths (:meth:`batch_reps`, :meth:`ego`) give the tables row gradients
    (COO sparse tensors over the rows a batch reached) instead of dense table-sized ones, for
    the sparse optimizers of :mod:`ssmrec.train.optim`; set by :meth:`use_sparse_grads`."""

    def use_sparse_grads(self, on: bool = True) -> None:
        """Build row gradients from now on (``on``), or dense gradients again.

        A table must never receive a mix of the two (a dense gradient would make the step read
        every row), so a model whose batch path reads whole tables refuses with a
        :class:`ConfigError` naming the setting at fault."""
        if on:
            self.check_sparse_grads()
        self.sparse_grads = on

    def check_sparse_grads(self) -> None:
        """Raise a :class:`ConfigError` when this model's batch path cannot build row gradients.
        The base class's :meth:`batch_reps` computes every row's representation first, so a
        subclass that keeps it (and any other path reading whole tables) refuses here."""
        if type(self).batch_reps is Recommender.batch_reps:
            raise ConfigError(f"optimizer: {type(self).__name__} computes every row's representation at each step; "
                              "it cannot train with a sparse optimizer (use optimizer adam)")

    @staticmethod
    def rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``table[index]`` whose gradient is a COO row gradient over ``index``'s rows."""
        return F.embedding(index, table, sparse=True)

    def extra_repr(self) -> str:
        return f"users={self.n_users}, items={self.n_items}, dim={self.dim}"
