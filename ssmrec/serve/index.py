"""Top-K over an export's items through a faiss index: exact (flat) or approximate (HNSW, IVF, IVF-PQ).

The metric rule: an index ranks by the inner product of the vectors the export is scored with,
:meth:`Export.vectors` under the run's test similarity: the raw vectors for ``ip``, both sides
L2-normalised for ``cos`` (so the inner product *is* the cosine). It is never an L2 index: an L2
ranking differs from both as soon as the item norms differ.

Seen items are excluded, never scored away, in one of two ways that give the same lists:

* one search per user with its seen items excluded inside faiss (``IDSelectorNot`` of an
  ``IDSelectorBatch``): ``k`` items fetched, and HNSW's candidate list stays ``ef_search`` however
  much the user has seen. HNSW always searches this way (a batch from a thread pool, faiss
  releasing the GIL); so do exact and IVF for batches under :data:`MIN_GROUP` users.
* for larger exact / IVF batches, one search per group of users: each user's list is over-fetched
  by the number of items they have seen (``k + |seen|``, at most that many fetched items can be
  seen ones) and the seen ones are dropped. Users are grouped by fetch size (rounded up to a
  power of two; groups under :data:`MIN_GROUP` users join the next size, as a flat search of
  fewer than 20 queries does not use BLAS) so that one heavy user does not make the whole batch
  fetch thousands of items.

Either way an exact index returns exactly :meth:`Export.recommend`'s list (ties aside).

An approximate index can come back short: HNSW's graph walk, or IVF's ``nprobe`` lists, may hold
fewer than ``k`` unseen items (most often for a large ``k`` or a user who has seen much). A list
is never silently short: a user who got fewer than ``min(k, items they have not seen)`` items is
searched again exactly (numpy, :meth:`Export.recommend`) and :attr:`ItemIndex.exact_fallbacks`
counts them. A list is shorter than ``k`` only when fewer items remain unseen.

Kinds and knobs (defaults in :data:`DEFAULTS`):

``exact``  ``IndexFlatIP``: brute force, the reference.
``hnsw``   ``IndexHNSWFlat`` (inner product): ``m`` links per node (32), ``ef_construction``
           (200), ``ef_search`` (the candidate list when searching; at least ``k``; default 128,
           1,024 from :data:`LARGE` = 1M items).
``ivf``    ``IndexIVFFlat`` (inner product, k-means coarse quantizer): ``nlist`` lists
           (default ``4 sqrt(items)``), ``nprobe`` lists visited per query (96).
``ivfpq``  ``IndexIVFPQ`` (inner product): the same lists holding product-quantised codes of
           ``pq`` bytes per item (``pq`` sub-vectors of ``nbits`` = 8 bits; default ``dim / 2``),
           then the ``refine`` (16) x ``k`` best candidates re-scored exactly with the export's
           own vectors (no second copy of them in the index) and the best ``k`` kept.

What the defaults keep, Recall@20 against the exact index (seen items excluded), measured on a
2M-item catalogue drawn from a trained MF + SSM export and on that 41k-item export itself:
IVF nprobe 96: 0.995 / 0.999; IVF-PQ (32 bytes, refine 16): 0.991 / 0.999; HNSW: 0.991 at
ef_search 1,024 (M = 32, efConstruction = 200; efConstruction 80 levels off at 0.966) / 0.999 at 128.

The coarse k-means of ``ivf``/``ivfpq`` is trained on at most :data:`TRAIN_POINTS_PER_LIST`
items per list (a seeded sample; faiss's own cap is 256), which keeps the build of a 2M-item
index to about a minute on two cores.

``ef_search``, ``nprobe`` and ``refine`` can be changed after building (:meth:`ItemIndex.set_knobs`).
The defaults were chosen on a 2M-item catalogue (``benchmarks/serve_scale.py``, BENCHMARKS.md
"Scale — serving").

Saved with the export: :meth:`ItemIndex.save` writes the faiss file and a ``.json`` naming the
export it was built from; :func:`open_index` loads ``<export>/index/<kind>-<similarity>.faiss``
when it is there, was built from this export and with the build knobs asked for, and builds the
index otherwise (``save=True``: and writes it there), so that serving a large catalogue does not
rebuild its graph or lists at every start.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ssmrec.serve.export import Export

KINDS = ("exact", "hnsw", "ivf", "ivfpq")
DEFAULTS: dict[str, dict[str, Any]] = {
    "exact": {},
    "hnsw": {"m": 32, "ef_construction": 200, "ef_search": None},
    "ivf": {"nlist": None, "nprobe": 96},
    "ivfpq": {"nlist": None, "pq": None, "nbits": 8, "nprobe": 96, "refine": 16},
}
LARGE = 1_000_000  # items from which HNSW searches with a longer candidate list by default
SEARCH_KNOBS = {"hnsw": ("ef_search",), "ivf": ("nprobe",), "ivfpq": ("nprobe", "refine"), "exact": ()}
MIN_GROUP = 32  # flat / IVF: fewest users searched together at one fetch size
ALIASES = {"M": "m", "efConstruction": "ef_construction", "efSearch": "ef_search"}
TRAIN_POINTS_PER_LIST = 64  # IVF k-means: items sampled per list to train on (faiss warns below 39)
INDEX_DIR = "index"  # an export's saved indexes: <export>/index/<kind>-<similarity>.faiss
SCORE_BLOCK = 1 << 25  # exact fallback: at most this many scores (128 MB) in one product


class IndexConfigError(ValueError):
    """An unknown index kind or knob, a knob value it cannot take, or a saved index that does
    not belong to the export it is loaded with."""


def set_threads(n: int | None) -> None:
    """Threads faiss searches and builds with (OpenMP; process-wide). ``None``/0: its default."""
    if n:
        faiss.omp_set_num_threads(int(n))


@dataclass(eq=False)
class ItemIndex:
    """A faiss index over an export's items, answering like :meth:`Export.recommend`."""

    export: Export
    kind: str
    similarity: str
    index: Any  # faiss.Index
    knobs: dict[str, Any] = field(default_factory=dict)
    source: str = "built"  # or "loaded <path>": where the index came from
    _executor: Any = field(default=None, repr=False)
    _executor_threads: int = field(default=0, repr=False)
    exact_fallbacks: int = field(default=0, repr=False)
    _seen_cache: Any = field(default=None, repr=False)  # users re-searched exactly: the index came back short

    @property
    def n_items(self) -> int:
        return int(self.index.ntotal)

    @property
    def _seen(self) -> tuple[np.ndarray, np.ndarray]:
        """The export's seen-item CSR as plain arrays (a memory map's slices cost microseconds
        each, which a single-user search pays several times)."""
        ex = self.export
        if self._seen_cache is None or self._seen_cache[0] is not ex.seen_indptr:
            self._seen_cache = (ex.seen_indptr, np.asarray(ex.seen_indptr), np.asarray(ex.seen_indices))
        return self._seen_cache[1], self._seen_cache[2]

    @property
    def nbytes(self) -> int:
        """Size of the index serialised (its vectors, links, lists, codes): the memory it holds.
        Counted as it is written out, never holding a second copy."""
        size = [0]

        def count(chunk: bytes) -> int:
            size[0] += len(chunk)
            return len(chunk)

        faiss.write_index(self.index, faiss.PyCallbackIOWriter(count))
        return size[0]

    @property
    def refine(self) -> int:
        """IVF-PQ: candidates re-scored exactly per item asked for (1 elsewhere)."""
        return int(self.knobs.get("refine", 1)) if self.kind == "ivfpq" else 1

    def set_knobs(self, *, ef_search: int | None = None, nprobe: int | None = None,
                  refine: int | None = None) -> ItemIndex:
        """Change the search-time knobs (no rebuild)."""
        given = {"ef_search": ef_search, "nprobe": nprobe, "refine": refine}
        for name, value in given.items():
            if value is None:
                continue
            if name not in SEARCH_KNOBS[self.kind]:
                raise IndexConfigError(f"{name} does not apply to the {self.kind} index "
                                       f"(its search knobs: {', '.join(SEARCH_KNOBS[self.kind]) or 'none'})")
            value = _positive(name, value)
            if name == "ef_search":
                self.index.hnsw.efSearch = value
            elif name == "nprobe":
                self.index.nprobe = min(value, self.index.nlist)
            self.knobs[name] = value
        return self

    def queries(self, user_rows: np.ndarray) -> np.ndarray:
        """The users' query vectors (normalised under ``cos``), float32, C-contiguous."""
        return np.ascontiguousarray(self.export.vectors("user", self.similarity)[user_rows], dtype=np.float32)

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss's raw answer: ``n`` item rows (``-1`` where it found fewer) and scores per query."""
        scores, items = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), int(n))
        return items, scores

    def recommend(self, user_rows: np.ndarray | list[int], k: int = 20, *, exclude_seen: bool = True,
                  batch_size: int = 1024, complete: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` item rows and scores for user rows, best first (ties: lower row first), seen
        items left out; padded with -1 / -inf only where fewer than ``k`` items remain unseen. Same
        shapes and meaning as :meth:`Export.recommend`. A user for whom an approximate index found
        fewer items than remain is searched again exactly (``complete=False``: the index's raw
        answer, short lists and all)."""
        top, val = self._recommend(user_rows, k, exclude_seen, batch_size)
        if complete:
            self._complete(np.atleast_1d(np.asarray(user_rows, dtype=np.int64)), top, val, exclude_seen)
        return top, val

    def _complete(self, users: np.ndarray, top: np.ndarray, val: np.ndarray, exclude_seen: bool,
                  chunk: int | None = None) -> None:
        """Replace, in place, each list shorter than what remains for its user with the exact one."""
        if users.size == 0:
            return
        ex = self.export
        indptr, _ = self._seen
        left = np.full(users.size, ex.n_items, dtype=np.int64)
        if exclude_seen:
            left -= (indptr[users + 1] - indptr[users]).astype(np.int64)
        short = np.flatnonzero((top >= 0).sum(axis=1) < np.minimum(top.shape[1], left))
        chunk = chunk or max(1, min(64, SCORE_BLOCK // max(ex.n_items, 1)))
        for rows in _chunks(short, chunk):  # a chunk scores every item: bounded memory
            top[rows], val[rows] = ex.recommend(users[rows], top.shape[1], exclude_seen=exclude_seen,
                                                similarity=self.similarity)
        self.exact_fallbacks += int(short.size)

    def _recommend(self, user_rows: np.ndarray | list[int], k: int, exclude_seen: bool,
                   batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        users = np.atleast_1d(np.asarray(user_rows, dtype=np.int64))
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise IndexConfigError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        ex = self.export
        if users.size and (users.min() < 0 or users.max() >= ex.n_users):
            raise IndexConfigError(f"user rows must lie in [0, {ex.n_users}), got {users.min()}..{users.max()}")
        top = np.full((users.size, k), -1, dtype=np.int64)
        val = np.full((users.size, k), -np.inf, dtype=np.float32)
        if users.size == 0:
            return top, val
        if self.kind == "hnsw" or users.size < MIN_GROUP:
            return self._search_each(users, k, exclude_seen)
        indptr, _ = self._seen
        n_seen = (indptr[users + 1] - indptr[users]).astype(np.int64)
        if not exclude_seen:
            n_seen[:] = 0
        want = k * self.refine  # IVF-PQ: candidates to re-score exactly
        need = np.minimum(want + n_seen, self.n_items)
        fetch = _merge_small_groups(np.minimum(2 ** np.ceil(np.log2(np.maximum(need, 1))).astype(np.int64),
                                               self.n_items), MIN_GROUP)
        queries = self.queries(users)
        for n in np.unique(fetch):
            for chunk in _chunks(np.flatnonzero(fetch == n), batch_size):
                items, scores = self.search(queries[chunk], int(n))
                items, scores = self._filter(users[chunk], items, scores, want, exclude_seen)
                if self.refine > 1:
                    items, scores = self._rerank(queries[chunk], items, k)
                top[chunk], val[chunk] = items[:, :k], scores[:, :k]
        return top, val

    def _search_each(self, users: np.ndarray, k: int, exclude_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        """One search per user, its seen items excluded inside faiss (an ``IDSelector``): ``k``
        fetched, and HNSW's candidate list stays ``ef_search`` whatever the user has seen."""
        queries = self.queries(users)
        n = min(k * self.refine, self.n_items)
        items = np.full((users.size, max(n, k)), -1, dtype=np.int64)
        scores = np.full((users.size, max(n, k)), -np.inf, dtype=np.float32)
        empty = np.zeros(0, dtype=np.int64)
        indptr, indices = self._seen

        def one(r: int) -> None:
            seen = indices[indptr[users[r]]:indptr[users[r] + 1]] if exclude_seen else empty
            params, keep = self._params(np.ascontiguousarray(seen, dtype=np.int64))
            d, i = self.index.search(queries[r:r + 1], n, params=params)
            del keep  # the selectors lived through the search
            items[r, :n], scores[r, :n] = i[0], d[0]

        if users.size > 1 and self._pool() is not None:
            list(self._pool().map(one, range(users.size)))
        else:
            for r in range(users.size):
                one(r)
        if self.refine > 1:
            return self._rerank(queries, items, k)
        if (scores[:, 1:] == scores[:, :-1]).any():  # faiss leaves equal scores in any order
            order = np.lexsort((items, -scores), axis=1)
            items, scores = np.take_along_axis(items, order, axis=1), np.take_along_axis(scores, order, axis=1)
        scores[items < 0] = -np.inf
        return items, scores

    def _params(self, seen: np.ndarray):
        """Search parameters excluding ``seen`` (and carrying this index's search knobs), and the
        objects they point to, which must outlive the search."""
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW()
            params.efSearch = self.index.hnsw.efSearch
        elif self.kind in ("ivf", "ivfpq"):
            params = faiss.SearchParametersIVF()
            params.nprobe = self.index.nprobe
        else:
            params = faiss.SearchParameters()
        if seen.size == 0:
            return params, ()
        batch = faiss.IDSelectorBatch(seen.size, faiss.swig_ptr(seen))
        params.sel = sel = faiss.IDSelectorNot(batch)
        return params, (seen, batch, sel)

    def _rerank(self, queries: np.ndarray, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Re-score candidate item rows (``-1``: none) exactly with the export's vectors and keep
        the best ``k`` of each row, ties by lower item row (the index's own scores are PQ
        approximations)."""
        vectors = self.export.vectors("item", self.similarity)
        ok = items >= 0
        rows = np.where(ok, items, 0)
        exact = np.einsum("ud,ucd->uc", queries, np.asarray(vectors[rows.ravel()]).reshape(*rows.shape, -1))
        exact = np.where(ok, exact, -np.inf).astype(np.float32)
        order = np.lexsort((np.where(ok, items, np.iinfo(np.int64).max), -exact), axis=1)[:, :k]
        top, val = np.take_along_axis(items, order, axis=1), np.take_along_axis(exact, order, axis=1)
        top[np.isneginf(val)] = -1
        if top.shape[1] < k:
            pad = k - top.shape[1]
            top = np.pad(top, ((0, 0), (0, pad)), constant_values=-1)
            val = np.pad(val, ((0, 0), (0, pad)), constant_values=-np.inf)
        return top, val

    def _pool(self):
        """Threads for per-user searches of a batch (faiss releases the GIL while searching)."""
        n = faiss.omp_get_max_threads()
        if n <= 1:
            return None
        if self._executor is None or self._executor_threads != n:
            from concurrent.futures import ThreadPoolExecutor

            # each worker searches one query at a time: no OpenMP team of its own
            self._executor = ThreadPoolExecutor(n, thread_name_prefix="faiss", initializer=faiss.omp_set_num_threads,
                                                initargs=(1,))
            self._executor_threads = n
        return self._executor

    def _filter(self, users: np.ndarray, items: np.ndarray, scores: np.ndarray, k: int,
                exclude_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        """Drop missing and seen items from fetched lists (vectorised over the batch) and keep
        the first ``k`` of each, ties ordered by lower item row."""
        order = np.lexsort((items, -scores), axis=1)  # faiss leaves equal scores in any order
        items = np.take_along_axis(items, order, axis=1)
        scores = np.take_along_axis(scores, order, axis=1)
        keep = items >= 0
        if exclude_seen:
            ex = self.export
            indptr, indices = self._seen
            starts, ends = indptr[users], indptr[users + 1]
            counts = (ends - starts).astype(np.int64)
            if counts.sum():
                pos = np.repeat(np.arange(users.size, dtype=np.int64), counts)
                seen = indices[np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)])]
                n_items = np.int64(ex.n_items)
                seen_keys = pos * n_items + seen.astype(np.int64)
                keys = np.arange(users.size, dtype=np.int64)[:, None] * n_items + items
                keep &= ~np.isin(keys, seen_keys)
        # stable: kept items first, in their ranked order
        first = np.argsort(~keep, axis=1, kind="stable")[:, :k]
        out_items = np.take_along_axis(items, first, axis=1)
        out_scores = np.take_along_axis(scores, first, axis=1).astype(np.float32)
        kept = np.take_along_axis(keep, first, axis=1)
        out_items[~kept], out_scores[~kept] = -1, -np.inf
        if out_items.shape[1] < k:  # fewer items than k in the whole index
            pad = k - out_items.shape[1]
            out_items = np.pad(out_items, ((0, 0), (0, pad)), constant_values=-1)
            out_scores = np.pad(out_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        return out_items, out_scores

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the faiss index to ``path`` and what it was built from to ``path.json``."""
        path = Path(path)
        faiss.write_index(self.index, str(path))
        meta = {"kind": self.kind, "similarity": self.similarity, "knobs": self.knobs,
                "export": _identity(self.export)}
        path.with_name(path.name + ".json").write_text(json.dumps(meta, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path, export: Export) -> ItemIndex:
        """Read an index written by :meth:`save`, checking that it was built from ``export``."""
        path = Path(path)
        meta = _meta(path)
        if meta["export"] != _identity(export):
            raise IndexConfigError(f"{path} was built from another export ({meta['export']}), "
                                   f"not {export.path} ({_identity(export)})")
        return cls(export, meta["kind"], meta["similarity"], faiss.read_index(str(path)), dict(meta["knobs"]),
                   source=f"loaded {path}")


def saved_path(export: Export, kind: str, similarity: str | None = None) -> Path:
    """Where an export keeps its saved index of ``kind``: ``<export>/index/<kind>-<similarity>.faiss``."""
    return Path(export.path) / INDEX_DIR / f"{kind}-{similarity or export.similarity}.faiss"


def open_index(export: Export, kind: str = "exact", similarity: str | None = None, *, path: str | Path | None = None,
               save: bool = False, threads: int | None = None, **knobs: Any) -> ItemIndex:
    """The saved index at ``path`` (default :func:`saved_path`) if it is there, was built from
    ``export`` under this similarity, and with every build knob given here (a knob not given
    takes the saved index's value); else a new one (:func:`build_index`), written to ``path`` when
    ``save``. Search knobs given here apply either way. A saved index of another export, or built
    otherwise, is refused when ``path`` is named, and rebuilt (never overwritten unless ``save``)
    when it is the export's own default; :attr:`ItemIndex.source` says which happened."""
    kind, sim, knobs = _check(export, kind, similarity, knobs)
    explicit = path is not None
    path = Path(path) if explicit else saved_path(export, kind, sim)
    search = {n: knobs.pop(n) for n in list(knobs) if n in SEARCH_KNOBS[kind]}
    why = None
    if path.is_file() and path.with_name(path.name + ".json").is_file():
        meta = _meta(path)
        built_with = {n: v for n, v in meta.get("knobs", {}).items() if n not in SEARCH_KNOBS[kind]}
        differ = {n: (v, built_with.get(n)) for n, v in knobs.items() if v is not None and built_with.get(n) != v}
        if meta.get("export") != _identity(export):
            why = f"{path} was built from another export"
        elif (meta.get("kind"), meta.get("similarity")) != (kind, sim):
            why = f"{path} is a {meta.get('kind')} index under {meta.get('similarity')}, not {kind} under {sim}"
        elif differ:
            why = f"{path} was built with " + ", ".join(f"{n}={b}" for n, (_, b) in differ.items())
        else:
            set_threads(threads)
            return ItemIndex.load(path, export).set_knobs(**search)
        if explicit and not save:
            raise IndexConfigError(f"{why}; not what was asked ({kind}, {sim}, "
                                   f"{', '.join(f'{n}={v}' for n, v in knobs.items()) or 'its knobs'})")
    built = build_index(export, kind, sim, threads=threads, **knobs, **search)
    if save:
        path.parent.mkdir(parents=True, exist_ok=True)
        built.save(path)
        built.source = f"built, saved to {path}"
    elif why:
        built.source = f"built ({why})"
    return built


def build_index(export: Export, kind: str = "exact", similarity: str | None = None, *,
                threads: int | None = None, **knobs: Any) -> ItemIndex:
    """Index ``export``'s items for top-K by inner product under ``similarity`` (default: the
    export's, which is the run's test similarity). Knobs: see the module docstring."""
    kind, sim, knobs = _check(export, kind, similarity, knobs)
    set_threads(threads)
    values = {**DEFAULTS[kind], **{n: v for n, v in knobs.items() if v is not None}}
    items = np.ascontiguousarray(export.vectors("item", sim), dtype=np.float32)
    n, dim = items.shape
    if kind == "exact":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        if values["ef_search"] is None:
            values["ef_search"] = default_ef_search(n)
        index = faiss.IndexHNSWFlat(dim, _positive("m", values["m"]), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = _positive("ef_construction", values["ef_construction"])
    else:
        nlist = values["nlist"] or default_nlist(n)
        values["nlist"] = nlist = min(_positive("nlist", nlist), n)
        quantizer = faiss.IndexFlatIP(dim)
        if kind == "ivf":
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            pq = values["pq"] = _positive("pq", max(1, dim // 2) if values["pq"] is None else values["pq"])
            if dim % pq:
                raise IndexConfigError(f"pq must divide the dimension {dim}, got {pq}")
            nbits = values["nbits"] = _positive("nbits", values["nbits"])
            if nbits > 16:
                raise IndexConfigError(f"nbits must be at most 16, got {nbits}")
            if n < 2 ** nbits:  # each sub-quantizer's k-means needs a training point per centroid
                raise IndexConfigError(f"ivfpq with nbits {nbits} needs at least {2 ** nbits:,} items to train its "
                                       f"codebooks; this export has {n:,} (use index exact or ivf, or lower nbits)")
            index = faiss.IndexIVFPQ(quantizer, dim, nlist, pq, nbits, faiss.METRIC_INNER_PRODUCT)
        index.cp.max_points_per_centroid = TRAIN_POINTS_PER_LIST  # faiss samples (seeded) beyond this
        index.train(items)
        index.own_fields = True
        quantizer.this.disown()  # the IVF index owns (and frees) its quantizer
    index.add(items)
    built = ItemIndex(export, kind, sim, index, {n: v for n, v in values.items() if n not in SEARCH_KNOBS[kind]})
    built.set_knobs(**{name: values[name] for name in SEARCH_KNOBS[kind]})
    return built


def default_nlist(n_items: int) -> int:
    """IVF lists for ``n_items`` items: ``4 sqrt(n)`` (5,657 at 2M items), at least 1."""
    return max(1, round(4 * math.sqrt(n_items)))


def default_ef_search(n_items: int) -> int:
    """HNSW's candidate list: 128, or 1,024 from :data:`LARGE` items (at 2M items 128 kept 0.94 of
    the exact top 20, 1,024 kept 0.991)."""
    return 1024 if n_items >= LARGE else 128


def _check(export: Export, kind: str, similarity: str | None, knobs: dict[str, Any]) -> tuple[str, str, dict]:
    """The kind, the similarity and the knobs (faiss's names mapped to ours), refused if unknown."""
    if kind not in KINDS:
        raise IndexConfigError(f"unknown index kind {kind!r}; use one of {', '.join(KINDS)}")
    sim = similarity or export.similarity
    if sim not in ("ip", "cos"):
        raise IndexConfigError(f"similarity must be 'ip' or 'cos', got {sim!r}")
    knobs = {ALIASES.get(name, name): value for name, value in knobs.items()}
    unknown = set(knobs) - set(DEFAULTS[kind])
    if unknown:
        raise IndexConfigError(f"unknown knob(s) {', '.join(sorted(unknown))} for the {kind} index "
                               f"(it takes: {', '.join(DEFAULTS[kind]) or 'none'})")
    return kind, sim, knobs


def _meta(path: Path) -> dict[str, Any]:
    meta_path = path.with_name(path.name + ".json")
    try:
        return json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise IndexConfigError(f"{meta_path}: not a saved index's description ({e})") from None


def _merge_small_groups(fetch: np.ndarray, min_group: int) -> np.ndarray:
    """Move users of a fetch size shared by fewer than ``min_group`` users up to the next size
    (fetching more is always correct)."""
    fetch = fetch.copy()
    sizes = np.unique(fetch)
    for small, larger in zip(sizes[:-1], sizes[1:]):
        group = fetch == small
        if group.sum() < min_group:
            fetch[group] = larger
    return fetch


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise IndexConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _chunks(rows: np.ndarray, size: int):
    for s in range(0, rows.size, size):
        yield rows[s:s + size]


def _identity(export: Export) -> dict[str, Any]:
    m = export.manifest
    return {"n_users": export.n_users, "n_items": export.n_items, "dim": int(export.item_factors.shape[1]),
            "data_fingerprint": m.get("data_fingerprint"), "epoch": m.get("epoch"), "created": m.get("created")}
