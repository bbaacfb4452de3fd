"""Small generated datasets with learnable structure, for tests, examples and smoke runs."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from ssmrec.data.interactions import Interactions


def synthetic(
    n_users: int = 300,
    n_items: int = 200,
    *,
    dim: int = 8,
    per_user: tuple[int, int] = (5, 30),
    popularity: float = 1.0,
    seed: int = 0,
) -> Interactions:
    """Users pick items by a latent-factor affinity plus a power-law popularity bonus.

    Args:
        n_users, n_items: catalogue size (default: 300 x 200).
        dim: latent dimension of the hidden taste vectors (default: 8).
        per_user: range of interactions per user, inclusive (default: 5..30).
        popularity: strength of the log-popularity bonus (default: 1.0).
        seed: seed (default: 0).
    """
    rng = np.random.default_rng(seed)
    taste = rng.normal(size=(n_users, dim))
    traits = rng.normal(size=(n_items, dim))
    pop = popularity * np.log1p(rng.pareto(1.5, n_items))
    logits = taste @ traits.T / np.sqrt(dim) * 2.0 + pop
    hi = min(per_user[1], n_items)
    counts = rng.integers(min(per_user[0], hi), hi + 1, n_users)
    # Gumbel top-k: a sample without replacement from softmax(logits) per user
    g = logits + rng.gumbel(size=logits.shape)
    order = np.argsort(-g, axis=1)
    users = np.repeat(np.arange(n_users), counts)
    items = np.concatenate([order[u, : counts[u]] for u in range(n_users)])
    return Interactions.from_pairs(users, items, n_users, n_items, name="synthetic")


def write_lightgcn(inter: Interactions, path: str | os.PathLike, *, all_users: bool = True) -> Path:
    """Write the LightGCN text format (``user item item ...``); ``.gz`` compresses."""
    path = Path(path)
    lines = []
    for u in range(inter.n_users):
        row = inter.row(u)
        if row.size or all_users:
            lines.append(" ".join(map(str, [u, *row.tolist()])))
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path
