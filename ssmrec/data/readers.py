"""Readers for the interaction file formats recommender datasets ship in: the LightGCN text
format, delimited files (csv, tsv, ``::``...) and Parquet, RecBole ``.inter`` files, in-memory
tables; and the csv writer whose files read back row for row.

Every reader returns a :class:`PairTable` of raw ids; :func:`~ssmrec.data.encoding.encode` turns
one or more tables (train, validation, test) into :class:`Interactions` that share one id space.
Which column is which, and whether line 1 is a header, is decided by
:mod:`ssmrec.data.columns`. Errors name the file and, where it makes sense, the line.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ssmrec.data.columns import (
    ITEM_NAMES,
    RATING_NAMES,
    TIME_NAMES,
    USER_NAMES,
    Where,
    as_integer_ids,
    column_words,
    id_values,
    looks_like_header,
    number_values,
    pick_column,
    pick_optional_column,
    promote_header,
    sniff_sep,
    split_fields,
    time_values,
    typed_below,
)
from ssmrec.data.fast_read import Columns, Unsupported, read_fast
from ssmrec.data.interactions import DataError
from ssmrec.data.tables import PairTable, filter_rating  # noqa: F401  (their home before tables.py)

log = logging.getLogger(__name__)


_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


def _open_text(path: Path) -> str:
    """The whole text of a file, gunzipped when it is gzip data (by content, not only by name).

    A missing, truncated, corrupt or non-UTF-8 file gives a :class:`DataError` that names the
    file and the (1-based) line at which reading failed.
    """
    chunks: list[bytes] = []
    gz = False
    try:
        with open(path, "rb") as raw:
            gz = raw.read(2) == _GZIP_MAGIC
        if path.suffix == ".gz" and not gz:
            raise DataError(f"{path}: not a gzip file (the name ends in .gz)")
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            while chunk := f.read(_CHUNK):
                chunks.append(chunk)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a file") from None
    except (OSError, EOFError, zlib.error) as e:
        if not gz:
            raise DataError(f"{path}: cannot be read ({e})") from None
        line = _readable_lines(path) + 1
        raise DataError(f"{path}, line {line}: cannot be read, the gzip data is truncated or "
                        f"corrupt ({e})") from None
    data = b"".join(chunks)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}, line {line}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    return text[1:] if text.startswith("\ufeff") else text  # drop a byte-order mark


def _readable_lines(path: Path) -> int:
    """How many complete lines can be read from a damaged file before the damage (small reads,
    so that little of what decompresses is lost when the error comes)."""
    count = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(4096):
                count += chunk.count(b"\n")
    except (OSError, EOFError, zlib.error):
        pass
    return count


def _lines(text: str) -> list[str]:
    """Split on ``\\n``, ``\\r\\n`` or ``\\r`` only (``str.splitlines`` also splits on form feeds
    and other characters, which would shift the line numbers errors report)."""
    lines = _NEWLINE.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


_NEWLINE = re.compile(r"\r\n|\r|\n")
_DIGITS_ONLY = re.compile(r"[0-9\s]*")
_INT_TOKEN = re.compile(r"-?[0-9]+")


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
    strict = _DIGITS_ONLY.fullmatch(text) is None  # some token is not a plain non-negative int
    users: list[np.ndarray] = []
    items: list[np.ndarray] = []
    max_user = -1
    for lineno, line in enumerate(_lines(text), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if strict:
            _check_int_tokens(tokens, path, lineno)
        try:
            ids = np.array(tokens, dtype=np.int64)
        except OverflowError:
            bad = next(t for t in tokens if int(t) >= 2**63)
            raise DataError(f"{path}, line {lineno}: id {bad} is too large") from None
        max_user = max(max_user, int(ids[0]))
        if ids.size > 1:
            users.append(np.full(ids.size - 1, ids[0], dtype=np.int64))
            items.append(ids[1:])
    u = np.concatenate(users) if users else np.zeros(0, np.int64)
    i = np.concatenate(items) if items else np.zeros(0, np.int64)
    return PairTable(u, i, str(path), integer_ids=True, n_users_hint=max_user + 1)


def _check_int_tokens(tokens: list[str], path: Path, lineno: int) -> None:
    for t in tokens:
        if _INT_TOKEN.fullmatch(t) is None:
            raise DataError(f"{path}, line {lineno}: {t!r} is not an integer id")
        if int(t) < 0:
            raise DataError(f"{path}, line {lineno}: negative id {t}")


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
        sep: field separator (default: sniffed from the first line: tab, ``::``, comma, ``;``,
            ``|`` or whitespace).
        header: whether the first row names the columns (default: detected, see below; a
            column given by name implies one).
        user_col, item_col: column names (with a header) or positions (default: the first
            column whose name looks like a user/item id, else positions 0 and 1).
        rating_col, time_col: optional rating / timestamp columns (default: detected by name,
            else positions 2 and 3 when present and mostly numeric; a value there that is not a
            number is then an error). ``-1`` means none.
        integer_ids: keep integer ids as they are instead of mapping them to contiguous
            indices (default: ``False``; string ids are always mapped).
        min_rating: keep only rows with rating >= this value (default: keep all).

    **Header detection** (``header=None``). The first row is a header when it can be told
    apart from data, and only then:

    1. its user or item field is a known column name (``user_id``, ``item``, ``movie_id``...:
       ``USER_NAMES``, ``ITEM_NAMES`` of :mod:`ssmrec.data.columns`), or both hold RecBole
       types (``user_id:token``);
    2. its user and item fields (positions 0 and 1, or the positions given) are both column
       words: those names, the words of ``USER_WORDS``/``ITEM_WORDS`` (``customer``,
       ``product``, ``sku``...), or a word ending in ``id``/``_key``/``_code``
       (``customerId``, ``sku_code``); e.g. ``customer,product``;
    3. it holds no digit, and some column that is a number (or ISO-8601 date) on every
       other row is not one on row 1; e.g. ``buyer,thing,stars`` over ``c1,p1,5``, or
       ``buyer,thing`` over integer ids.

    A header found by rule 2 or 3 is said in a warning naming the columns read from it. Any
    other first row is data: string ids such as ``alice,book`` stay a row, and a first row whose
    rating or time field does not parse (``u1,i1,five``) is refused with an error naming the
    file and line 1 and ``--user-col/--item-col``, never trained on. A header that none of
    the rules can tell from string ids (``buyer,thing`` over ``alice,book``) is read as data:
    name a column (``user_col="buyer"``, ``--user-col buyer``) and the first row is the header.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if header is None and any(isinstance(c, str) for c in (user_col, item_col, rating_col, time_col)):
        header = True  # columns named by the user: the first row names them
    if FAST_READ:
        try:
            fast = read_fast(path, sep=sep, header=header, user_col=user_col, item_col=item_col,
                             rating_col=rating_col, time_col=time_col, integer_ids=integer_ids)
        except Unsupported as why:
            log.debug("%s: read by pandas (%s)", path, why)
        else:
            return _fast_table(path, fast, integer_ids, min_rating)
    detected = None
    if path.suffix == ".parquet":
        frame = _read_parquet(path)
        where = Where(None)
    else:
        ids = (user_col if isinstance(user_col, int) else 0, item_col if isinstance(item_col, int) else 1)
        frame, where, detected = _read_delimited(path, sep, header, ids)
    if frame.shape[0] == 0:
        raise DataError(f"{path}: no rows")
    if frame.shape[1] < 2:
        raise DataError(f"{path}: need at least a user and an item column, found {frame.shape[1]}")
    ucol = pick_column(frame, user_col, USER_NAMES, set(), path, "user")
    icol = pick_column(frame, item_col, ITEM_NAMES, {ucol}, path, "item")
    if ucol == icol:
        raise DataError(f"{path}: the user and the item column are the same column {ucol!r}")
    # a guessed header's unknown names say nothing: positions then, as without a header
    rcol = pick_optional_column(frame, rating_col, RATING_NAMES, 2, {ucol, icol}, path, positional=bool(detected))
    tcol = pick_optional_column(frame, time_col, TIME_NAMES, 3, {ucol, icol, rcol}, path, positional=bool(detected))
    if detected:
        _say_header(path, detected, ucol, icol, rcol, tcol)
    users = id_values(frame[ucol], path, where, "user")
    items = id_values(frame[icol], path, where, "item")
    ratings = number_values(frame[rcol], path, where, "rating") if rcol is not None else None
    stamps = time_values(frame[tcol], path, where) if tcol is not None else None
    if integer_ids:  # before any filtering, so that errors point at the right line
        users = as_integer_ids(frame[ucol], users, path, where, "user")
        items = as_integer_ids(frame[icol], items, path, where, "item")
    table = PairTable(users, items, str(path), integer_ids, ratings, stamps)
    return filter_rating(table, min_rating, path) if min_rating is not None else table


FAST_READ = True
"""Whether :func:`read_pairs` tries :mod:`ssmrec.data.fast_read` first (False: the pandas path
only, as before it existed; tests and benchmarks compare the two)."""


def _fast_table(path: Path, fast: Columns, integer_ids: bool, min_rating: float | None) -> PairTable:
    """The table of what the fast path read: the guessed-header warning, ``min_rating``."""
    if fast.detected:
        _say_header(path, fast.detected, *fast.names)
    table = PairTable(fast.users, fast.items, str(path), integer_ids, fast.ratings, fast.timestamps,
                      user_vocab=fast.user_vocab, item_vocab=fast.item_vocab)
    return filter_rating(table, min_rating, path) if min_rating is not None else table


_HEADER_HINT = ("; if line 1 is a header, name the columns with --user-col/--item-col "
                "(user_col=/item_col= in Python)")


def _field_count(line: str, sep: str) -> int:
    return len(line.split()) if sep == " " else line.count(sep) + 1


def _check_field_counts(path: Path, lines: list[str], numbers: np.ndarray, sep: str, text: str) -> None:
    expected = _field_count(lines[numbers[0] - 1], sep)
    total = len(text.split()) if sep == " " else text.count(sep) + len(numbers)
    if total == expected * len(numbers):
        return  # fast path; a row too long that another too short hides is left to pandas
    for k in numbers:
        found = _field_count(lines[k - 1], sep)
        if found != expected:
            raise DataError(f"{path}, line {k}: malformed row, expected {expected} fields "
                            f"(as on line {numbers[0]}), found {found}")


def _read_delimited(path: Path, sep: str | None, header: bool | None,
                    ids: tuple[int, int] = (0, 1)) -> tuple[pd.DataFrame, Where, str | None]:
    """The rows as strings, where each came from, and why the first row was taken for a header
    when that was a guess (rules 2 and 3 of :func:`read_pairs`), else None."""
    text = _open_text(path)
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    lines = _lines(text)
    # 1-based numbers of the non-blank lines (pandas skips blank and whitespace-only lines too)
    numbers = np.flatnonzero([bool(line.strip()) for line in lines]) + 1
    first = lines[numbers[0] - 1]
    sep = sep or sniff_sep(first)
    detected = None
    guess = header is None  # rule 3 needs the rows: decided after reading
    if header is None:
        fields = split_fields(first, sep)
        if looks_like_header(fields):
            header, guess = True, False
        elif column_words(fields, ids):
            header, guess, detected = True, False, "its user and item fields are column names"
        elif len(fields) < 2 or any(ch.isdigit() for ch in first):
            header, guess = False, False
    if '"' not in text:  # no quoting: every row must have as many fields as the first one
        _check_field_counts(path, lines, numbers, sep, text)
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=r"\s+" if sep == " " else (re.escape(sep) if len(sep) > 1 else sep),
            header=0 if header else None,
            dtype=str,
            keep_default_na=False,
            engine="python" if len(sep) > 1 else "c",
            skip_blank_lines=True,
        )
    except pd.errors.ParserError as e:
        raise DataError(f"{path}{_pandas_line(e)}: malformed row ({_first_line(e)})") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: no rows") from None
    if guess:
        column = typed_below(frame)
        if column is not None:
            detected = (f"it has words where the rows below have numbers or dates ({frame.iat[0, column]!r} "
                        f"in column {column + 1})")
            frame = promote_header(frame)
            header = True
    hint = "" if header else _HEADER_HINT
    if header:
        numbers = numbers[1:]
    else:
        frame.columns = list(range(frame.shape[1]))
    if len(numbers) != frame.shape[0]:  # quoted fields spanning lines: row numbers instead
        return frame, Where(None, hint), detected
    return frame, Where(numbers, hint), detected


def _say_header(path: Path, why: str, ucol, icol, rcol, tcol) -> None:
    """Warn that a first row was taken for a header, and which columns it gave."""
    def name(col):
        return "none" if col is None else repr(col)

    log.warning("%s: line 1 read as a header, as %s; columns used: user ids %s, item ids %s, ratings %s, "
                "timestamps %s (name them with --user-col/--item-col/--rating-col/--time-col, or user_col=... "
                "in Python, to choose others)", path, why, name(ucol), name(icol), name(rcol), name(tcol))


def table_from_frame(frame: Any, *, user_col: str = "user", item_col: str = "item",
                     rating_col: str | None = None, time_col: str | None = None, name: str = "frame",
                     min_rating: float | None = None) -> PairTable:
    """Pairs from an in-memory table with named columns: a pandas or polars DataFrame, or a
    pyarrow Table. Ids may be strings or integers (mapped to rows; original ids kept)."""
    if hasattr(frame, "to_pandas") and not isinstance(frame, pd.DataFrame):
        frame = frame.to_pandas()  # polars, pyarrow
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{name}: expected a pandas/polars DataFrame or a pyarrow Table, got {type(frame).__name__}")
    for col in (user_col, item_col, rating_col, time_col):
        if col is not None and col not in frame.columns:
            raise DataError(f"{name}: no column {col!r} (columns: {', '.join(map(str, frame.columns))})")
    if frame.shape[0] == 0:
        raise DataError(f"{name}: no rows")
    where = Where(None)
    users = id_values(frame[user_col], Path(name), where, "user")
    items = id_values(frame[item_col], Path(name), where, "item")
    ratings = number_values(frame[rating_col], Path(name), where, "rating") if rating_col else None
    stamps = time_values(frame[time_col], Path(name), where) if time_col else None
    if min_rating is not None:
        if ratings is None:
            raise DataError(f"{name}: min_rating={min_rating} needs rating_col")
        keep = ratings >= min_rating
        users, items, ratings = users[keep], items[keep], ratings[keep]
        stamps = stamps[keep] if stamps is not None else None
    return PairTable(users, items, name, False, ratings, stamps)


def write_pairs(table: PairTable, path: str | os.PathLike) -> dict[str, str | None]:
    """Write a table as a csv file (gzipped when the name ends in ``.gz``) that :func:`read_pairs`
    reads back to the same rows, in the same order: a header ``user_id,item_id[,rating]
    [,timestamp]``, ids as they are, numbers to full precision. Returns the column settings that
    read it (``user_col``... as ``DataConfig`` takes them; None for an absent column)."""
    path = Path(path)
    cols: dict[str, Any] = {"user_id": table.users, "item_id": table.items}
    if table.ratings is not None:
        cols["rating"] = table.ratings
    if table.timestamps is not None:
        cols["timestamp"] = table.timestamps
    tmp = path.with_name(path.name + ".tmp")
    compression = {"method": "gzip", "compresslevel": 6, "mtime": 0} if path.suffix == ".gz" else None
    pd.DataFrame(cols).to_csv(tmp, index=False, compression=compression, float_format=None)
    tmp.replace(path)
    return {"user_col": "user_id", "item_col": "item_id",
            "rating_col": "rating" if table.ratings is not None else None,
            "time_col": "timestamp" if table.timestamps is not None else None}


def read_recbole(path: str | os.PathLike, *, user_field: str = "user_id", item_field: str = "item_id",
                 min_rating: float | None = None) -> PairTable:
    """Read a RecBole atomic ``.inter`` file (tab separated, header ``user_id:token ...``)."""
    path = Path(path)
    text = _open_text(path)
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    lines = _lines(text)
    lineno = next(k for k, line in enumerate(lines, 1) if line.strip())
    head = lines[lineno - 1].split("\t")
    if not all(":" in h for h in head):
        raise DataError(f"{path}, line {lineno}: not a RecBole header (tab-separated fields like "
                        f"'user_id:token'), got {head}")
    fields = {h.split(":", 1)[0]: h for h in head}
    for want in (user_field, item_field):
        if want not in fields:
            raise DataError(f"{path}, line {lineno}: no '{want}' field in the header {head}; "
                            f"a RecBole .inter file needs '{user_field}:token' and '{item_field}:token'")
    rating = next((fields[n] for n in ("rating", "score") if n in fields), None)
    stamp = fields.get("timestamp")
    return read_pairs(
        path, sep="\t", header=True, user_col=fields[user_field], item_col=fields[item_field],
        rating_col=rating if rating else -1, time_col=stamp if stamp else -1, min_rating=min_rating,
    )


def read_any_format(path: str | os.PathLike) -> str:
    """``"recbole"``, ``"pairs"`` (delimited or Parquet) or ``"lightgcn"``, from the name and first line."""
    path = Path(path)
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    if name.endswith(".inter"):
        return "recbole"
    if name.endswith((".csv", ".tsv", ".parquet", ".dat")):
        return "pairs"
    first = next((line for line in _lines(_open_text(path)) if line.strip()), "")
    return "pairs" if any(sep in first for sep in ("\t", "::", ",", ";", "|")) else "lightgcn"


def read_any(path: str | os.PathLike, **kwargs) -> PairTable:
    """Read a file in whichever supported format its name and first line show. Column settings
    (``user_col``...) are refused, never ignored, for the formats that have no columns to name."""
    path = Path(path)
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    columns = [k for k in ("user_col", "item_col", "rating_col", "time_col") if kwargs.get(k) is not None]
    if name.endswith(".inter"):
        if columns:
            raise DataError(f"{path}: {', '.join(columns)} given but a RecBole .inter file names its fields "
                            "itself (user_id:token, item_id:token, rating, timestamp)")
        return read_recbole(path, **{k: v for k, v in kwargs.items() if k == "min_rating"})
    if name.endswith((".csv", ".tsv", ".parquet", ".dat")):
        return read_pairs(path, **kwargs)
    first = next((line for line in _lines(_open_text(path)) if line.strip()), "")
    if any(sep in first for sep in ("\t", "::", ",", ";", "|")):
        return read_pairs(path, **kwargs)
    if columns:
        raise DataError(f"{path}: {', '.join(columns)} given but the file is in the LightGCN format "
                        "(user item item ...), which has no columns to name")
    if kwargs.get("min_rating") is not None:
        raise DataError(f"{path}: min_rating given but the file is in the LightGCN format "
                        "(user item item ...), which has no ratings")
    return read_lightgcn(path)


def _pandas_line(err: Exception) -> str:
    m = re.search(r"line (\d+)", str(err))
    return f", line {m.group(1)}" if m else ""


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except ImportError as e:
        raise DataError(f"{path}: reading Parquet needs pyarrow ({e})") from None
    except Exception as e:  # pyarrow raises its own error types
        raise DataError(f"{path}: not a readable Parquet file ({e})") from None
    frame.columns = [str(c) for c in frame.columns]
    return frame
