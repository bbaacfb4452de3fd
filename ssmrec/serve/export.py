"""Read an export folder and answer "top K for this user, without what they have seen" exactly,
with numpy alone (no torch, no training code, no data files)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "ssmrec-export"
FILES = ("user_factors", "item_factors", "user_ids", "item_ids", "seen_indptr", "seen_indices", "item_degree")


class ExportError(ValueError):
    """An export folder is missing, incomplete, of another format, or asked something it does
    not know (an unknown user id); the message names the folder or the id."""


@dataclass(eq=False)
class Export:
    """An exported model: scored user/item vectors, original ids, each user's seen items.

    ``similarity`` (from the manifest unless given) is how scores are computed: ``ip`` (inner
    product) or ``cos`` (both sides normalised). Row ``u`` of ``user_factors`` is the user whose
    original id is ``user_ids[u]``; likewise for items.
    """

    path: Path
    manifest: dict[str, Any]
    user_factors: np.ndarray
    item_factors: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    seen_indptr: np.ndarray
    seen_indices: np.ndarray
    item_degree: np.ndarray
    _lookup: dict[str, dict] = field(default_factory=dict, repr=False)
    _normalised: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def similarity(self) -> str:
        return self.manifest["similarity"]

    @property
    def n_users(self) -> int:
        return int(self.user_factors.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_factors.shape[0])

    # ------------------------------------------------------------------ ids
    def user_index(self, raw: str | int) -> int:
        """Row of an original user id (given as in the data files, or as a string)."""
        return self._index("user", self.user_ids, raw)

    def item_index(self, raw: str | int) -> int:
        return self._index("item", self.item_ids, raw)

    def _index(self, what: str, ids: np.ndarray, raw: str | int) -> int:
        if ids.dtype.kind in "iu" and ids.size and not isinstance(raw, float):
            # integer ids (sorted: encoded in order): a binary search, no table to build
            try:
                key = int(str(raw).strip())
            except ValueError:
                key = None
            if key is not None and self._sorted(what, ids):
                k = int(np.searchsorted(ids, key))
                if k < ids.size and ids[k] == key:
                    return k
                raise ExportError(f"unknown {what} id {raw!r} (not among the {ids.size} {what}s of {self.path})")
        table = self._lookup.get(what)
        if table is None:
            table = self._lookup[what] = {str(v): k for k, v in enumerate(ids.tolist())}
        k = table.get(str(raw).strip())
        if k is None:
            raise ExportError(f"unknown {what} id {raw!r} (not among the {ids.size} {what}s of {self.path})")
        return k

    def _sorted(self, what: str, ids: np.ndarray) -> bool:
        key = f"sorted-{what}"
        if key not in self._lookup:  # checked once per export
            self._lookup[key] = bool(np.all(ids[1:] > ids[:-1]))
        return self._lookup[key]

    def seen(self, user: int) -> np.ndarray:
        """Item rows the user's ranking excludes."""
        return self.seen_indices[self.seen_indptr[user]:self.seen_indptr[user + 1]]

    # ------------------------------------------------------------------ scoring
    def vectors(self, side: str, similarity: str | None = None) -> np.ndarray:
        """The user or item vectors ready for an inner product under ``similarity``."""
        sim = similarity or self.similarity
        x = self.user_factors if side == "user" else self.item_factors
        if sim == "ip":
            return x
        if sim != "cos":
            raise ExportError(f"similarity must be 'ip' or 'cos', got {sim!r}")
        key = side
        if key not in self._normalised:
            norms = np.linalg.norm(x, axis=1, keepdims=True)
            self._normalised[key] = (x / np.maximum(norms, 1e-12)).astype(np.float32)
        return self._normalised[key]

    def recommend(self, users: np.ndarray | list[int], k: int = 20, *, exclude_seen: bool = True,
                  similarity: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top ``k`` item rows and scores for user rows ``users``, best first (ties: lower
        row first). Seen items are filtered out of an over-fetched list, never scored away; a
        user who has seen nearly everything gets fewer than ``k`` (padded with -1 / -inf)."""
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        if k < 1:
            raise ExportError(f"k must be positive, got {k}")
        scores = self.vectors("user", similarity)[users] @ self.vectors("item", similarity).T
        top = np.full((users.size, k), -1, dtype=np.int64)
        val = np.full((users.size, k), -np.inf, dtype=np.float32)
        for r, u in enumerate(users):
            seen = self.seen(int(u)) if exclude_seen else np.zeros(0, np.int64)
            items, s = _top(scores[r], k + seen.size)
            if seen.size:
                keep = ~np.isin(items, seen)
                items, s = items[keep], s[keep]
            top[r, :min(k, items.size)], val[r, :min(k, items.size)] = items[:k], s[:k]
        return top, val

    def popular(self, k: int = 20) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items with the most training interactions (the cold-start answer)."""
        order = np.lexsort((np.arange(self.n_items), -self.item_degree))[:k]
        return order, self.item_degree[order].astype(np.float32)


def _top(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the ``n`` largest scores, best first, ties by lower index."""
    n = min(n, scores.size)
    if n < scores.size:
        cut = np.argpartition(-scores, n - 1)[:n]
        # the n-th largest value may be tied with items left out: take every item at that value
        edge = scores[cut].min()
        cut = np.flatnonzero(scores >= edge)
    else:
        cut = np.arange(scores.size)
    order = np.lexsort((cut, -scores[cut]))[:n]
    return cut[order], scores[cut[order]]


def load_export(path: str | Path, *, mmap: bool = True) -> Export:
    """Open an export folder (memory-mapped by default: opening is instant, pages load on use)."""
    path = Path(path)
    mf = path / "manifest.json"
    if not mf.is_file():
        raise ExportError(f"{path}: not an export (no manifest.json); write one with `ssmrec export RUN --out DIR`")
    try:
        manifest = json.loads(mf.read_text())
    except json.JSONDecodeError as e:
        raise ExportError(f"{mf}: not valid JSON ({e})") from None
    if manifest.get("format") != FORMAT:
        raise ExportError(f"{mf}: format {manifest.get('format')!r} is not {FORMAT!r}")
    arrays = {}
    for name in FILES:
        f = path / f"{name}.npy"
        if not f.is_file():
            raise ExportError(f"{path}: incomplete export, {f.name} is missing")
        arrays[name] = np.load(f, mmap_mode="r" if mmap else None, allow_pickle=False)
    ex = Export(path, manifest, **arrays)
    expected = (manifest["n_users"], manifest["dim"]), (manifest["n_items"], manifest["dim"])
    if (ex.user_factors.shape, ex.item_factors.shape) != expected:
        raise ExportError(f"{path}: factor shapes {ex.user_factors.shape} / {ex.item_factors.shape} disagree "
                          f"with the manifest ({manifest['n_users']} users, {manifest['n_items']} items)")
    return ex
