"""Readers for the interaction file formats recommender datasets ship in.

Every reader returns a :class:`PairTable` of raw ids; :func:`encode` turns one or more tables
(train, validation, test) into :class:`Interactions` that share one id space. Errors name the
file and, where it makes sense, the line.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ssmrec.data.interactions import DataError, Interactions

log = logging.getLogger(__name__)

USER_NAMES = ("user_id", "userid", "user", "uid", "u", "visitor_id", "customer_id")
ITEM_NAMES = ("item_id", "itemid", "item", "iid", "i", "movie_id", "movieid", "product_id", "business_id")
RATING_NAMES = ("rating", "ratings", "score", "stars", "value", "label")
TIME_NAMES = ("timestamp", "time", "ts", "date", "datetime")


@dataclass
class PairTable:
    """Raw (user, item) pairs read from one file, ids not yet mapped.

    ``users``/``items`` are int64 arrays when ``integer_ids`` is true (ids used as they are),
    otherwise arrays of strings to be mapped to contiguous indices by :func:`encode`.
    """

    users: np.ndarray
    items: np.ndarray
    source: str
    integer_ids: bool
    ratings: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    n_users_hint: int = 0  # users that appear on a line with no items (LightGCN format)

    def __len__(self) -> int:
        return int(self.users.size)


def _open_text(path: Path) -> str:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as f:
                return f.read()
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot be read ({e})") from None


# ---------------------------------------------------------------------------- LightGCN text
def read_lightgcn(path: str | os.PathLike) -> PairTable:
    """Read the LightGCN text format: ``user item item ...`` per line (``.gz`` allowed).

    A line holding a user and no items is legal (that user simply has no pairs in this file).
    Blank lines are skipped. Ids must be non-negative integers.
    """
    path = Path(path)
    text = _open_text(path)
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    users: list[np.ndarray] = []
    items: list[np.ndarray] = []
    max_user = -1
    for lineno, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            ids = np.array([int(t) for t in tokens], dtype=np.int64)
        except ValueError:
            bad = next(t for t in tokens if not _is_int(t))
            raise DataError(f"{path}, line {lineno}: {bad!r} is not an integer id") from None
        if (ids < 0).any():
            bad = int(ids[ids < 0][0])
            raise DataError(f"{path}, line {lineno}: negative id {bad}")
        max_user = max(max_user, int(ids[0]))
        if ids.size > 1:
            users.append(np.full(ids.size - 1, ids[0], dtype=np.int64))
            items.append(ids[1:])
    u = np.concatenate(users) if users else np.zeros(0, np.int64)
    i = np.concatenate(items) if items else np.zeros(0, np.int64)
    return PairTable(u, i, str(path), integer_ids=True, n_users_hint=max_user + 1)


def _is_int(token: str) -> bool:
    try:
        int(token)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------------------- delimited pairs
def read_pairs(
    path: str | os.PathLike,
    *,
    sep: str | None = None,
    header: bool | None = None,
    user_col: str | int | None = None,
    item_col: str | int | None = None,
    rating_col: str | int | None = None,
    time_col: str | int | None = None,
    integer_ids: bool = False,
    min_rating: float | None = None,
) -> PairTable:
    """Read a delimited file of one interaction per row (csv, tsv, ``.gz``; or ``.parquet``).

    Args:
        path: the file.
        sep: field separator (default: sniffed from the first line: tab, comma, ``;``, ``|``
            or whitespace).
        header: whether the first row names the columns (default: detected; a first row whose
            user and item fields are known column names such as ``user_id``/``item_id``).
        user_col, item_col: column names (with a header) or positions (default: the first
            column whose name looks like a user/item id, else positions 0 and 1).
        rating_col, time_col: optional rating / timestamp columns (default: detected by name,
            else positions 2 and 3 when present and numeric).
        integer_ids: keep integer ids as they are instead of mapping them to contiguous
            indices (default: ``False``; string ids are always mapped).
        min_rating: keep only rows with rating >= this value (default: keep all).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.suffix == ".parquet":
        frame = _read_parquet(path)
        first_data_line = None
    else:
        text = _open_text(path)
        if not text.strip():
            raise DataError(f"{path}: file is empty")
        first = text.lstrip("\n").split("\n", 1)[0]
        sep = sep or _sniff_sep(first)
        fields = _split(first, sep)
        if header is None:
            header = _looks_like_header(fields)
        try:
            frame = pd.read_csv(
                io.StringIO(text),
                sep=sep if sep != " " else r"\s+",
                header=0 if header else None,
                dtype=str,
                keep_default_na=False,
                engine="c" if sep != " " else "python",
                skip_blank_lines=True,
            )
        except pd.errors.ParserError as e:
            raise DataError(f"{path}: malformed row ({_pandas_line(e)})") from None
        except pd.errors.EmptyDataError:
            raise DataError(f"{path}: file holds a header and no rows") from None
        first_data_line = 2 if header else 1
        if not header:
            frame.columns = list(range(frame.shape[1]))
    if frame.shape[0] == 0:
        raise DataError(f"{path}: no rows")
    if frame.shape[1] < 2:
        raise DataError(f"{path}: need at least a user and an item column, found {frame.shape[1]}")
    ucol = _pick(frame, user_col, USER_NAMES, 0, path, "user")
    icol = _pick(frame, item_col, ITEM_NAMES, 1, path, "item")
    rcol = _pick_optional(frame, rating_col, RATING_NAMES, 2, {ucol, icol}, path)
    tcol = _pick_optional(frame, time_col, TIME_NAMES, 3, {ucol, icol, rcol}, path)
    users = frame[ucol].to_numpy(dtype=str)
    items = frame[icol].to_numpy(dtype=str)
    for arr, what in ((users, "user"), (items, "item")):
        empty = np.flatnonzero(np.char.str_len(arr) == 0) if arr.size else []
        if len(empty):
            raise DataError(f"{path}{_where(first_data_line, empty[0])}: empty {what} id")
    ratings = _numeric(frame[rcol], path, first_data_line, "rating") if rcol is not None else None
    stamps = _numeric(frame[tcol], path, first_data_line, "timestamp") if tcol is not None else None
    if min_rating is not None:
        if ratings is None:
            raise DataError(f"{path}: min_rating={min_rating} given but the file has no rating column")
        keep = ratings >= min_rating
        users, items, ratings = users[keep], items[keep], ratings[keep]
        stamps = stamps[keep] if stamps is not None else None
    if integer_ids:
        users = _as_ids(users, path, first_data_line, "user")
        items = _as_ids(items, path, first_data_line, "item")
    return PairTable(users, items, str(path), integer_ids, ratings, stamps)


def read_recbole(path: str | os.PathLike, *, user_field: str = "user_id", item_field: str = "item_id",
                 min_rating: float | None = None) -> PairTable:
    """Read a RecBole atomic ``.inter`` file (tab separated, header ``user_id:token ...``)."""
    path = Path(path)
    text = _open_text(path)
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    head = _split(text.split("\n", 1)[0], "\t")
    fields = {h.split(":", 1)[0]: h for h in head}
    if not all(":" in h for h in head):
        raise DataError(f"{path}, line 1: not a RecBole header (fields look like 'user_id:token')")
    for want in (user_field, item_field):
        if want not in fields:
            raise DataError(f"{path}, line 1: no '{want}' field in the header {head}")
    rating = next((fields[n] for n in ("rating", "score") if n in fields), None)
    stamp = fields.get("timestamp")
    return read_pairs(
        path, sep="\t", header=True, user_col=fields[user_field], item_col=fields[item_field],
        rating_col=rating if rating else -1, time_col=stamp if stamp else -1, min_rating=min_rating,
    )


def read_any(path: str | os.PathLike, **kwargs) -> PairTable:
    """Read a file in whichever supported format its name and first line show."""
    path = Path(path)
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    if name.endswith(".inter"):
        return read_recbole(path, **{k: v for k, v in kwargs.items() if k == "min_rating"})
    if name.endswith((".csv", ".tsv", ".parquet", ".dat")):
        return read_pairs(path, **kwargs)
    first = _open_text(path).lstrip("\n").split("\n", 1)[0]
    if "," in first or "\t" in first or ";" in first:
        return read_pairs(path, **kwargs)
    return read_lightgcn(path)


# ---------------------------------------------------------------------------- encoding
def encode(
    tables: dict[str, PairTable], *, n_users: int | None = None, n_items: int | None = None,
) -> dict[str, Interactions]:
    """Map several tables (e.g. ``{"train": t1, "test": t2}``) into one shared id space.

    Integer-id tables keep their ids (``n = max id + 1`` over all tables unless given);
    string-id tables are mapped to contiguous indices in sorted order of the raw ids, and the
    raw ids are kept on the result (``user_ids``/``item_ids``).
    """
    kinds = {t.integer_ids for t in tables.values()}
    if len(kinds) != 1:
        raise DataError("cannot mix files with integer ids and files with string ids: "
                        + ", ".join(t.source for t in tables.values()))
    integer = kinds.pop()
    if integer:
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
    user_vocab = np.unique(np.concatenate([t.users for t in tables.values()]))
    item_vocab = np.unique(np.concatenate([t.items for t in tables.values()]))
    out = {}
    for key, t in tables.items():
        inter = Interactions.from_pairs(
            np.searchsorted(user_vocab, t.users), np.searchsorted(item_vocab, t.items),
            user_vocab.size, item_vocab.size, user_ids=user_vocab, item_ids=item_vocab,
            name=f"{key} ({t.source})",
        )
        _report_duplicates(t, inter)
        out[key] = inter
    return out


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


# ---------------------------------------------------------------------------- helpers
def _sniff_sep(line: str) -> str:
    for sep in ("\t", ",", ";", "|"):
        if sep in line:
            return sep
    return " "


def _split(line: str, sep: str) -> list[str]:
    if sep == " ":
        return line.split()
    return next(csv.reader([line], delimiter=sep))


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9_]", "", name.split(":", 1)[0].strip().lower())


def _looks_like_header(fields: list[str]) -> bool:
    if len(fields) < 2:
        return False
    names = [_norm(f) for f in fields[:2]]
    if names[0] in USER_NAMES or names[1] in ITEM_NAMES:
        return True
    return ":" in fields[0] and ":" in fields[1]


def _pick(frame: pd.DataFrame, given, names, position: int, path: Path, what: str):
    cols = list(frame.columns)
    if given is not None:
        if given in cols:
            return given
        if isinstance(given, int) and 0 <= given < len(cols):
            return cols[given]
        raise DataError(f"{path}: no {what} column {given!r}; columns are {[str(c) for c in cols]}")
    for c in cols:
        if isinstance(c, str) and _norm(c) in names:
            return c
    return cols[position]


def _pick_optional(frame, given, names, position, taken, path):
    cols = list(frame.columns)
    if given == -1:
        return None
    if given is not None:
        if given in cols:
            return given
        if isinstance(given, int) and 0 <= given < len(cols):
            return cols[given]
        raise DataError(f"{path}: no column {given!r}; columns are {[str(c) for c in cols]}")
    for c in cols:
        if isinstance(c, str) and _norm(c) in names and c not in taken:
            return c
    if all(isinstance(c, int) for c in cols) and position < len(cols) and cols[position] not in taken:
        col = frame[cols[position]]
        if pd.to_numeric(col, errors="coerce").notna().all():
            return cols[position]
    return None


def _where(first_data_line: int | None, row: int) -> str:
    return "" if first_data_line is None else f", line {first_data_line + int(row)}"


def _numeric(col: pd.Series, path, first_line, what) -> np.ndarray:
    values = pd.to_numeric(col, errors="coerce")
    bad = np.flatnonzero(values.isna().to_numpy())
    if bad.size:
        raise DataError(f"{path}{_where(first_line, bad[0])}: {col.iloc[bad[0]]!r} is not a number ({what})")
    return values.to_numpy(dtype=np.float64)


def _as_ids(arr: np.ndarray, path, first_line, what) -> np.ndarray:
    values = pd.to_numeric(pd.Series(arr), errors="coerce")
    ok = values.notna().to_numpy() & (values.to_numpy() == np.floor(values.to_numpy()))
    bad = np.flatnonzero(~ok)
    if bad.size:
        raise DataError(f"{path}{_where(first_line, bad[0])}: {arr[bad[0]]!r} is not an integer {what} id")
    ids = values.to_numpy(dtype=np.int64)
    neg = np.flatnonzero(ids < 0)
    if neg.size:
        raise DataError(f"{path}{_where(first_line, neg[0])}: negative {what} id {ids[neg[0]]}")
    return ids


def _pandas_line(err: Exception) -> str:
    m = re.search(r"line (\d+)", str(err))
    return f"line {m.group(1)}: {err}" if m else str(err)


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except ImportError as e:
        raise DataError(f"{path}: reading Parquet needs pyarrow ({e})") from None
    except Exception as e:  # pyarrow raises its own error types
        raise DataError(f"{path}: not a readable Parquet file ({e})") from None
    return frame.astype(str)
