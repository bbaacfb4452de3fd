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


# ---------------------------------------------------------------------------- large files
LARGE_COLUMNS = ("user_id", "item_id", "rating", "timestamp")
_RATING_P = np.array([0.05, 0.10, 0.20, 0.35, 0.30])  # stars 1..5, skewed high as in public data
_DIGITS = np.frombuffer(b"0123456789abcdefghijklmnopqrstuvwxyz", np.uint8)


def large_chunks(
    n_rows: int,
    n_users: int,
    n_items: int,
    *,
    item_alpha: float = 1.0,
    user_sigma: float = 1.5,
    ratings: bool = True,
    timestamps: bool = True,
    string_ids: bool = False,
    start: int = 1_500_000_000,
    span_days: float = 1095.0,
    seed: int = 0,
    chunk_rows: int = 1_000_000,
):
    """Realistic interactions for benchmarks, as pyarrow tables of about ``chunk_rows`` rows.

    Exactly ``n_rows`` distinct (user, item) rows: each user's number of rows is drawn from a
    multinomial over lognormal activity weights (``user_sigma``: a few heavy users, a long tail
    of light ones; at most half the catalogue per user), each row's item by a Zipf law over
    popularity ranks (rank ``r`` with probability proportional to ``(r + 1) ** -item_alpha``,
    ranks scattered over the ids by a random permutation), drawn again where a user would get
    the same item twice. Rows come grouped by user, users in id order; a user's timestamps
    (integer epoch seconds) rise row after row over an active period of exponential length
    (mean 90 days) that starts anywhere in ``[start, start + span_days)``. Ratings are 1..5
    stars. With ``string_ids``, ids are distinct strings (``u`` / ``i`` and base-36 digits, in
    an order unrelated to the row order), each naming one integer id of the same rows drawn
    without them; otherwise integers ``0..n-1``.

    Memory is bounded by a chunk plus ``O(n_users + n_items)``; the same arguments (seed and
    ``chunk_rows`` included) give the same rows.
    """
    import pyarrow as pa

    if n_users < 1 or n_items < 2 or n_rows < 1:
        raise ValueError("need n_rows >= 1, n_users >= 1 and n_items >= 2")
    if n_rows > n_users * (n_items // 2):
        raise ValueError(f"{n_rows:,} distinct rows do not fit {n_users:,} users with at most "
                         f"{n_items // 2:,} items each; add users or items")
    rng = np.random.default_rng(seed)
    counts = _user_counts(rng, n_rows, n_users, n_items // 2, user_sigma)
    item_of_rank = rng.permutation(n_items).astype(np.int64)
    cdf = np.cumsum((np.arange(n_items) + 1.0) ** -item_alpha)
    cdf /= cdf[-1]
    user_start = start + rng.random(n_users) * span_days * 86400.0
    user_span = np.minimum(rng.exponential(90 * 86400.0, n_users), start + span_days * 86400.0 - user_start)
    names = np.random.default_rng([seed, 1])  # apart: the rows are the same with string ids or without
    user_vocab = _base36_ids("u", names.permutation(n_users)) if string_ids else None
    item_vocab = _base36_ids("i", names.permutation(n_items)) if string_ids else None
    ends = np.cumsum(counts)
    bounds = np.unique(np.r_[0, np.searchsorted(ends, np.arange(chunk_rows, n_rows, chunk_rows)), n_users])
    for a, b in zip(bounds[:-1], bounds[1:]):
        users, items = _distinct_rows(rng, a, counts[a:b], n_items, cdf, item_of_rank)
        cols = {}
        if string_ids:
            cols["user_id"] = pa.DictionaryArray.from_arrays(pa.array(users.astype(np.int32)), user_vocab)
            cols["item_id"] = pa.DictionaryArray.from_arrays(pa.array(items.astype(np.int32)), item_vocab)
        else:
            cols["user_id"], cols["item_id"] = pa.array(users), pa.array(items)
        if ratings:
            cols["rating"] = pa.array((rng.choice(5, users.size, p=_RATING_P) + 1).astype(np.int8))
        if timestamps:
            t = user_start[users] + rng.random(users.size) * user_span[users]
            t = np.floor(t).astype(np.int64)
            order = np.lexsort((t, users))  # users are already grouped: this sorts times within each
            cols["timestamp"] = pa.array(t[order])
        yield pa.table(cols)


def _user_counts(rng: np.random.Generator, n_rows: int, n_users: int, cap: int, sigma: float) -> np.ndarray:
    """Rows per user: multinomial over lognormal weights, none above ``cap`` (the excess drawn again
    over the users below it)."""
    weights = rng.lognormal(0.0, sigma, n_users)
    counts = rng.multinomial(n_rows, weights / weights.sum())
    while (over := counts > cap).any():
        excess = int((counts[over] - cap).sum())
        counts[over] = cap
        room = np.where(counts < cap, weights, 0.0)
        counts += rng.multinomial(excess, room / room.sum())
    return counts


def _distinct_rows(rng, first_user, counts, n_items, cdf, item_of_rank):
    """``counts[k]`` distinct items for user ``first_user + k``, grouped by user: power-law draws,
    drawn again (more each round) for the users that drew an item twice, until each has its count;
    a user's surplus from the last round is dropped at random."""
    from ssmrec.data.interactions import sorted_unique

    keys = np.empty(0, np.int64)
    missing, factor = counts, 1.0
    while missing.any():
        want = np.ceil(missing * factor).astype(np.int64)
        users = np.repeat(np.arange(counts.size, dtype=np.int64), want)
        items = item_of_rank[np.minimum(np.searchsorted(cdf, rng.random(users.size)), n_items - 1)]
        keys = sorted_unique(np.r_[keys, users * n_items + items])
        have = np.bincount(keys // n_items, minlength=counts.size)
        missing, factor = np.maximum(counts - have, 0), factor * 2
    users = keys // n_items
    if users.size > counts.sum():  # keep a random ``counts[u]`` of each user's distinct draws
        order = np.lexsort((rng.random(users.size), users))
        rank = np.arange(users.size) - np.repeat(np.cumsum(have) - have, have)
        keys = np.sort(keys[order[rank < counts[users[order]]]])
    users, items = np.divmod(keys, n_items)
    # within a user the rows are in item-id order, which the permutation makes unrelated to popularity
    return users + first_user, items


def _base36_ids(prefix: str, values: np.ndarray):
    """Distinct string ids ``prefix`` + fixed-width base-36 digits of ``values``, as a pyarrow array
    (built with numpy, no Python loop per id)."""
    import pyarrow as pa

    width = max(1, int(np.ceil(np.log(max(int(values.max()) + 1, 2)) / np.log(36))))
    digits = np.empty((values.size, width + len(prefix)), np.uint8)
    digits[:, : len(prefix)] = np.frombuffer(prefix.encode(), np.uint8)
    v = values.astype(np.int64).copy()
    for k in range(width - 1, -1, -1):
        digits[:, len(prefix) + k] = _DIGITS[v % 36]
        v //= 36
    return pa.array(digits.view(f"S{digits.shape[1]}").ravel()).cast(pa.string())


def write_large(path: str | os.PathLike, n_rows: int, n_users: int, n_items: int, *, header: bool = True,
                sep: str = ",", **kwargs) -> dict:
    """Write :func:`large_chunks` to ``path`` chunk by chunk: Parquet (one row group per chunk) when
    the name ends in ``.parquet``, else delimited text (``sep``; gzipped when it ends in ``.gz``),
    with a ``user_id,item_id,rating,timestamp`` header unless ``header`` is false, never quoted.
    Returns what was written: rows, distinct users and items, the columns."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    seen_users, seen_items = np.zeros(n_users, bool), np.zeros(n_items, bool)
    rows, writer, sink, columns = 0, None, None, []
    try:
        for table in large_chunks(n_rows, n_users, n_items, **kwargs):
            for col, seen in (("user_id", seen_users), ("item_id", seen_items)):
                arr = table.column(col)
                codes = [c.indices if pa.types.is_dictionary(c.type) else c for c in arr.chunks]
                seen[np.concatenate([c.to_numpy() for c in codes])] = True
            rows += table.num_rows
            columns = table.column_names
            table = pa.table({n: c.cast(pa.string()) if pa.types.is_dictionary(c.type) else c
                              for n, c in zip(table.column_names, table.columns)})  # plain strings, as pandas writes
            if path.suffix == ".parquet":
                writer = writer or pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                continue
            if writer is None:
                sink = pa.CompressedOutputStream(tmp, "gzip") if path.suffix == ".gz" else pa.OSFile(str(tmp), "wb")
                if header:
                    sink.write((sep.join(table.column_names) + "\n").encode())
                options = pacsv.WriteOptions(include_header=False, delimiter=sep, quoting_style="none")
                writer = pacsv.CSVWriter(sink, table.schema, write_options=options)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
        if sink is not None:
            sink.close()
    tmp.replace(path)
    return {"path": str(path), "rows": rows, "users": int(seen_users.sum()), "items": int(seen_items.sum()),
            "columns": columns}
