"""L2 regularisation of the batch's layer-0 embeddings, as LightGCN applies it."""

from __future__ import annotations

import torch


def l2_regularization(*embeddings: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    r"""``1/2 sum ||E||^2 / B`` over the given layer-0 embedding rows (users, positives, negatives).

    ``B`` defaults to the number of rows of the first tensor.
    """
    b = batch_size or embeddings[0].shape[0]
    return sum(e.pow(2).sum() for e in embeddings) / (2 * b)
