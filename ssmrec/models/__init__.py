"""Recommenders: each returns final (user_reps, item_reps); none contains a loss."""

from __future__ import annotations

from ssmrec.data.interactions import Interactions
from ssmrec.models.base import Recommender
from ssmrec.models.graph import Propagation, propagation_matrix
from ssmrec.models.lightgcn import LightGCN
from ssmrec.models.mf import MF
from ssmrec.models.svdpp import SVDPP

MODELS = {"mf": MF, "svdpp": SVDPP, "lightgcn": LightGCN}


def build_model(
    name: str, train: Interactions, dim: int = 64, *, layers: int = 1, side: str = "user",
    a0: float = 0.5, a1: float = 0.0, fast: bool = True, init: str = "xavier", init_std: float = 0.01,
) -> Recommender:
    """Make a model by name (``mf``, ``svdpp``, ``lightgcn``) for a training set.

    Only the settings a model uses are passed to it (``layers`` to LightGCN; ``side``, ``a0``,
    ``a1`` to SVD++); ``init`` / ``init_std`` (how the ID tables are drawn,
    :func:`~ssmrec.models.base.init_table`) to every model. ``fast=False`` selects the plain
    computation path of graph models (same results to float tolerance, slower), kept for
    equivalence checks.
    """
    key = name.lower().replace("+", "p").replace("-", "")
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if key == "mf":
        return MF(train.n_users, train.n_items, dim, init=init, init_std=init_std)
    if key == "svdpp":
        return SVDPP(train, dim, side=side, a0=a0, a1=a1, fast=fast, init=init, init_std=init_std)
    return LightGCN(train, dim, layers=layers, fast=fast, init=init, init_std=init_std)


__all__ = ["MODELS", "MF", "SVDPP", "LightGCN", "Propagation", "Recommender", "build_model",
           "propagation_matrix"]
