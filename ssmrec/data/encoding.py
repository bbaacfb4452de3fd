"""Tables of raw ids into :class:`Interactions` that share one id space, and the checks on the
result: integer ids that would make mostly empty tables, duplicate rows, train/test overlap."""

from __future__ import annotations

import logging

import numpy as np

from ssmrec.data.interactions import DataError, Interactions, sorted_unique
from ssmrec.data.readers import PairTable

log = logging.getLogger(__name__)


def encode(
    tables: dict[str, PairTable], *, n_users: int | None = None, n_items: int | None = None,
) -> dict[str, Interactions]:
    """Map several tables (e.g. ``{"train": t1, "test": t2}``) into one shared id space.

    Integer-id tables keep their ids (``n = max id + 1`` over all tables unless given);
    string-id tables are mapped to contiguous indices in sorted order of the raw ids, and the
    raw ids are kept on the result (``user_ids``/``item_ids``). Coded tables (the fast read path's:
    codes into sorted vocabularies) are merged by their vocabularies, without decoding a row.
    """
    kinds = {t.integer_ids for t in tables.values()}
    if len(kinds) != 1:
        raise DataError("cannot mix files with integer ids and files with string ids: "
                        + ", ".join(t.source for t in tables.values()))
    integer = kinds.pop()
    if integer:
        _refuse_sparse_ids(tables)
        nu = max([int(t.users.max()) + 1 if len(t) else 0 for t in tables.values()]
                 + [t.n_users_hint for t in tables.values()])
        ni = max(int(t.items.max()) + 1 if len(t) else 0 for t in tables.values())
        nu, ni = max(nu, n_users or 0), max(ni, n_items or 0)
        out = {}
        for key, t in tables.items():
            inter = Interactions.from_pairs(t.users, t.items, nu, ni, name=f"{key} ({t.source})")
            _report_duplicates(t, inter)
            out[key] = inter
        return out
    if all(t.coded for t in tables.values()):
        (user_vocab, user_rows), (item_vocab, item_rows) = (
            _merge_codes([(t.user_codes, t.user_vocab) for t in tables.values()]),
            _merge_codes([(t.item_codes, t.item_vocab) for t in tables.values()]))
    else:
        user_vocab = sorted_unique(np.concatenate([t.users for t in tables.values()]))
        item_vocab = sorted_unique(np.concatenate([t.items for t in tables.values()]))
        user_rows = [np.searchsorted(user_vocab, t.users) for t in tables.values()]
        item_rows = [np.searchsorted(item_vocab, t.items) for t in tables.values()]
    out = {}
    for (key, t), u, i in zip(tables.items(), user_rows, item_rows):
        inter = Interactions.from_pairs(u, i, user_vocab.size, item_vocab.size, user_ids=user_vocab,
                                        item_ids=item_vocab, name=f"{key} ({t.source})")
        _report_duplicates(t, inter)
        out[key] = inter
    return out


def _merge_codes(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, list[np.ndarray]]:
    """One sorted vocabulary of the ids in use over tables of codes into their own sorted
    vocabularies, and each table's rows in it: the work is per distinct id, then one gather per
    row (no string is compared per row)."""
    used = [vocab[np.bincount(codes, minlength=vocab.size) > 0] for codes, vocab in parts]
    merged = sorted_unique(np.concatenate(used))
    return merged, [np.searchsorted(merged, vocab)[codes] for codes, vocab in parts]


MAX_ID = 2**31 - 2


def _refuse_sparse_ids(tables: dict[str, PairTable]) -> None:
    """Integer ids are used as row numbers: refuse, before allocating anything, ids that would
    make tables mostly empty (an id of 2,000,000,000 among a few hundred) or overflow."""
    for what in ("user", "item"):
        arrays = [getattr(t, f"{what}s") for t in tables.values() if len(t)]
        if not arrays:
            continue
        top = max(int(a.max()) for a in arrays)
        distinct = sorted_unique(np.concatenate(arrays)).size
        if top > MAX_ID or (top >= 1_000_000 and top + 1 > 100 * distinct):
            source = next(t.source for t in tables.values() if len(t) and int(getattr(t, f"{what}s").max()) == top)
            raise DataError(
                f"{source}: {what} id {top} would make {top + 1:,} {what} rows for {distinct:,} distinct ids; "
                "integer ids of this format are row numbers: renumber them 0..n-1, or use a csv/tsv file, "
                "whose ids are mapped to rows")


def check_disjoint(a: Interactions, b: Interactions) -> None:
    """Refuse pairs that appear in both (e.g. a test pair that is also a training pair)."""
    users, items = a.overlap(b)
    if users.size:
        u0, i0 = a.raw_users(users[:1])[0], a.raw_items(items[:1])[0]
        raise DataError(
            f"{users.size} pair(s) appear in both {a.name} and {b.name}, "
            f"e.g. user {u0} item {i0}; a held-out pair must not be a training pair"
        )


def _report_duplicates(t: PairTable, inter: Interactions) -> None:
    dup = len(t) - inter.nnz
    if dup:
        log.warning("%s: %d duplicate (user, item) rows counted once", t.source, dup)
