"""Matrix factorisation: a user's and an item's representation are their ID embeddings."""

from __future__ import annotations

import torch

from ssmrec.models.base import Recommender


class MF(Recommender):
    """ID-based collaborative filtering (no message passing)."""

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_emb, self.item_emb

    def batch_reps(self, users: torch.Tensor, items: torch.Tensor):
        if self.sparse_grads:
            return self.rows(self.user_emb, users), self.rows(self.item_emb, items)
        return self.user_emb[users], self.item_emb[items]
