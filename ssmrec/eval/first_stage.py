"""First-stage retrievers: the shared stage that picks each user's ``N`` candidates before a model
re-ranks them (:func:`ssmrec.eval.candidates.retrieved_candidates`).

A first stage scores a chunk of users against the whole catalogue (:class:`FirstStage`); it must
not depend on the losses being compared, so that every arm is re-ranked on the same candidates.
Built in: item popularity (:class:`PopularityRetriever`), item-item co-occurrence
(:class:`ItemKNNRetriever`, cosine over the training matrix) and any user / item embeddings
(:class:`EmbeddingRetriever`, e.g. a model trained once for the purpose).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import scipy.sparse as sp
import torch

from ssmrec.data.interactions import Interactions
from ssmrec.eval.ranking import normalise_for


class FirstStage(Protocol):
    """What :func:`~ssmrec.eval.candidates.retrieved_candidates` needs of a first stage."""

    name: str
    """Short label, part of the candidate set's name and its metrics' keys (``itemknn``)."""
    n_items: int

    def scores(self, users: np.ndarray, out: torch.Tensor | None = None) -> torch.Tensor:
        """``(len(users), n_items)`` float scores on the CPU (higher: retrieved first), written into
        ``out`` when given (the first rows of a tensor an earlier call returned: reusing it spares
        the page faults of fresh memory, which cost as much as the scoring); the caller may write
        into the result."""


def _popularity_order(train: Interactions) -> torch.Tensor:
    """Training degree mapped into ``[-1, 0)``: below any positive similarity, ordered by popularity
    (the fallback of :class:`ItemKNNRetriever` for items with no co-occurrence)."""
    deg = train.item_degree.astype(np.float64)
    return torch.from_numpy((deg / (deg.max(initial=0) + 1) - 1).astype(np.float32))


class PopularityRetriever:
    """Every user gets the most popular items (training degree) they have not seen: the first stage
    that knows nothing of the user. Ties between equally popular items are left to ``torch.topk``.
    """

    name = "pop"

    def __init__(self, train: Interactions):
        self.n_items = train.n_items
        self.degree = torch.from_numpy(train.item_degree.astype(np.float32))

    def scores(self, users: np.ndarray, out: torch.Tensor | None = None) -> torch.Tensor:
        if out is None:
            return self.degree.expand(len(users), -1).clone()
        return out.copy_(self.degree.expand(len(users), -1))


class ItemKNNRetriever:
    """Item-item co-occurrence: ``score(u, i) = sum over u's training items j of cos(j, i)``, where
    ``cos(j, i) = |users of j and i| / sqrt(|users of j| |users of i|)`` over the training matrix.

    Args:
        train: the training interactions (the only data the first stage sees).
        neighbours: keep each item's ``neighbours`` most similar items (a row of the similarity
            matrix pruned to its largest entries, the usual ItemKNN neighbourhood; ties at the cut
            kept in column order); ``None`` keeps every co-occurring item (default: 200).
        block: items whose similarity rows are computed at once; memory is bounded by the
            co-occurrences of ``block`` items before pruning (default: 2048).

    Items that share no user with the user's history score below every co-occurring item, in order
    of popularity, so a user with a short history still gets ``N`` sensible candidates. The
    similarity matrix is sparse (at most ``n_items x neighbours`` entries); scoring a chunk of
    users is one sparse product and a dense ``chunk x n_items`` block.
    """

    name = "itemknn"

    def __init__(self, train: Interactions, *, neighbours: int | None = 200, block: int = 2048):
        if neighbours is not None and neighbours < 1:
            raise ValueError(f"neighbours must be positive (or None: all), got {neighbours}")
        self.n_items = train.n_items
        self.neighbours = neighbours
        x = train.to_scipy()
        deg = train.item_degree.astype(np.float32)
        inv = np.divide(1.0, np.sqrt(deg), out=np.zeros_like(deg), where=deg > 0)
        xn = (x @ sp.diags(inv.astype(np.float32))).tocsr().astype(np.float32)
        xn_cols = xn.T.tocsr()  # item x user: row slices are column blocks of xn
        parts = []
        for lo in range(0, self.n_items, block):
            s = (xn_cols[lo:lo + block] @ xn).tocsr()  # (block, n_items) cosines of items lo..
            s = _drop_diagonal(s, lo)
            parts.append(_prune_rows(s, neighbours) if neighbours is not None else s)
        self.similarity = sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, self.n_items))
        self.train = x
        self.fallback = _popularity_order(train)

    def scores(self, users: np.ndarray, out: torch.Tensor | None = None) -> torch.Tensor:
        p = (self.train[users] @ self.similarity).tocsr()
        # the popularity fallback, then the co-occurring items' sums over it
        if out is None:
            out = self.fallback.repeat(len(users), 1)
        else:
            out.copy_(self.fallback.expand(len(users), -1))
        rows = torch.from_numpy(np.repeat(np.arange(len(users)), np.diff(p.indptr)))
        out[rows, torch.from_numpy(p.indices.astype(np.int64))] = torch.from_numpy(p.data)
        return out


def _drop_diagonal(s: sp.csr_matrix, lo: int) -> sp.csr_matrix:
    """Remove ``s[r, lo + r]`` (an item's similarity to itself)."""
    rows = np.repeat(np.arange(s.shape[0]), np.diff(s.indptr))
    keep = s.indices != rows + lo
    return _csr_keep(s, rows, keep)


def _prune_rows(s: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of every row (vectorised: one stable sort of all entries).

    The sort key is the row in the high 32 bits and the value's float32 bits, inverted, in the low
    ones: non-negative float32 values order as their bit patterns do, and one int64 sort is five
    times faster than ``np.lexsort`` on (row, value)."""
    rows = np.repeat(np.arange(s.shape[0]), np.diff(s.indptr))
    bits = np.ascontiguousarray(s.data, np.float32).view(np.int32)
    key = (rows.astype(np.int64) << 32) | (np.int64(0x7FFFFFFF) - bits)
    order = np.argsort(key, kind="stable")  # by row, then value descending, then column
    rank = np.empty(rows.size, np.int64)
    rank[order] = np.arange(rows.size) - s.indptr[rows[order]]
    return _csr_keep(s, rows, rank < k)


def _csr_keep(s: sp.csr_matrix, rows: np.ndarray, keep: np.ndarray) -> sp.csr_matrix:
    indptr = np.zeros(s.shape[0] + 1, np.int64)
    np.cumsum(np.bincount(rows[keep], minlength=s.shape[0]), out=indptr[1:])
    return sp.csr_matrix((s.data[keep], s.indices[keep], indptr), shape=s.shape)


class EmbeddingRetriever:
    """Any user and item embeddings as a first stage (``ip`` or ``cos`` scores), e.g. a model trained
    once, apart from the arms compared; ``name`` labels the candidate set (default: ``emb``)."""

    def __init__(self, user_emb: torch.Tensor, item_emb: torch.Tensor, *, similarity: str = "ip",
                 name: str = "emb"):
        self.name = name
        self.users = normalise_for(similarity, user_emb.detach().cpu())
        self.items = normalise_for(similarity, item_emb.detach().cpu())
        self.n_items = self.items.shape[0]

    def scores(self, users: np.ndarray, out: torch.Tensor | None = None) -> torch.Tensor:
        u = self.users[torch.from_numpy(np.asarray(users, np.int64))]
        return torch.mm(u, self.items.T) if out is None else torch.mm(u, self.items.T, out=out)


FIRST_STAGES = {"itemknn": ItemKNNRetriever, "pop": PopularityRetriever}
"""The built-in first stages that need only the training set, by the name their sets carry."""

DEFAULT_FIRST_STAGE = "itemknn"
"""ItemKNN: it knows each user's history (popularity does not) yet no loss compared, and on Gowalla
(30k users x 41k items) its similarity and the 200 candidates of every test user take about 12 s
of one core (``benchmarks/candidates.py``), against 6 s for one full-ranking evaluation."""


def build_first_stage(name: str, train: Interactions) -> FirstStage:
    """A built-in first stage by name (:data:`FIRST_STAGES`), fitted on ``train``."""
    if name not in FIRST_STAGES:
        raise ValueError(f"unknown first stage {name!r}; choose one of {sorted(FIRST_STAGES)} "
                         "(or pass an EmbeddingRetriever)")
    return FIRST_STAGES[name](train)
