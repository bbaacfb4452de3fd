"""What a stateful loss sees of the model between epochs (see ``on_epoch_start`` in
:mod:`ssmrec.losses`): scores of users against items, with the current parameters, no gradient."""

from __future__ import annotations

import torch

from ssmrec.data.interactions import Interactions
from ssmrec.losses.similarity import prepare


class ModelScorer:
    """Scores of the current model for a loss's refresh (per-user temperatures, quantiles...).

    The representations are computed once, on first use (one propagation for LightGCN), in
    the loss's own similarity (``cos`` or ``ip``), without temperature.

    Args:
        model: the model being trained.
        train: the training interactions (their pairs are offered as ``train_users`` /
            ``train_items``).
        similarity: ``cos`` or ``ip``.
        device: where the scores are computed.
    """

    def __init__(self, model: torch.nn.Module, train: Interactions, similarity: str, device: torch.device):
        self.model, self.similarity, self.device = model, similarity, device
        self.n_users, self.n_items = train.n_users, train.n_items
        self._train = train
        self._reps: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def train_users(self) -> torch.Tensor:
        return torch.from_numpy(self._train.pair_users()).to(self.device)

    @property
    def train_items(self) -> torch.Tensor:
        return torch.from_numpy(self._train.indices).to(self.device)

    def _representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._reps is None:
            with torch.no_grad():
                u, i = self.model.forward()
                self._reps = prepare(u.detach(), self.similarity), prepare(i.detach(), self.similarity)
        return self._reps

    def scores(self, users: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """``(len(users), len(items))`` similarities (every item when ``items`` is None)."""
        u, i = self._representations()
        users = users.to(self.device)
        cand = i if items is None else i[items.to(self.device)]
        return u[users] @ cand.T
