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
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ssmrec.data.interactions import DataError, Interactions

log = logging.getLogger(__name__)

USER_NAMES = ("user_id", "userid", "user", "uid", "u", "visitor_id", "customer_id")
ITEM_NAMES = ("item_id", "itemid", "item", "iid", "i", "movie_id", "movieid", "product_id", "business_id")
RATING_NAMES = ("rating", "ratings", "score", "stars", "value", "label")
TIME_NAMES = ("timestamp", "time", "ts", "date", "datetime")
# further words that name an id column (never picked as the user/item column by name, but a first
# row whose user and item fields are both such words is a header: see read_pairs)
USER_WORDS = ("users", "customer", "customers", "client", "buyer", "shopper", "member", "account", "person",
              "visitor", "viewer", "reader", "listener", "player", "subscriber", "session", "session_id")
ITEM_WORDS = ("items", "product", "products", "sku", "article", "movie", "film", "song", "track", "book",
              "business", "venue", "poi", "place", "location", "artist", "album", "video", "post", "news",
              "doc", "document", "offer", "recipe", "game", "app", "page", "url", "asin", "isbn", "restaurant",
              "hotel", "course", "job", "question")


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

    def select(self, mask: np.ndarray) -> PairTable:
        """The rows where ``mask`` is true (ratings and timestamps kept aligned)."""
        pick = lambda a: None if a is None else a[mask]  # noqa: E731
        return PairTable(self.users[mask], self.items[mask], self.source, self.integer_ids, pick(self.ratings),
                         pick(self.timestamps), self.n_users_hint)


def filter_rating(table: PairTable, min_rating: float, path: Path | str = "") -> PairTable:
    """Keep the rows rated at least ``min_rating``."""
    if table.ratings is None:
        raise DataError(f"{path or table.source}: min_rating={min_rating:g} given but the data has no rating column "
                        "(name it with --rating-col)")
    return table.select(table.ratings >= min_rating)


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
       :data:`USER_NAMES`, :data:`ITEM_NAMES`), or both hold RecBole types (``user_id:token``);
    2. its user and item fields (positions 0 and 1, or the positions given) are both column
       words: those names, the words of :data:`USER_WORDS`/:data:`ITEM_WORDS` (``customer``,
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
    detected = None
    if path.suffix == ".parquet":
        frame = _read_parquet(path)
        where = _Where(None)
    else:
        if header is None and any(isinstance(c, str) for c in (user_col, item_col, rating_col, time_col)):
            header = True  # columns named by the user: the first row names them
        ids = (user_col if isinstance(user_col, int) else 0, item_col if isinstance(item_col, int) else 1)
        frame, where, detected = _read_delimited(path, sep, header, ids)
    if frame.shape[0] == 0:
        raise DataError(f"{path}: no rows")
    if frame.shape[1] < 2:
        raise DataError(f"{path}: need at least a user and an item column, found {frame.shape[1]}")
    ucol = _pick(frame, user_col, USER_NAMES, set(), path, "user")
    icol = _pick(frame, item_col, ITEM_NAMES, {ucol}, path, "item")
    if ucol == icol:
        raise DataError(f"{path}: the user and the item column are the same column {ucol!r}")
    # a guessed header's unknown names say nothing: positions then, as without a header
    rcol = _pick_optional(frame, rating_col, RATING_NAMES, 2, {ucol, icol}, path, positional=bool(detected))
    tcol = _pick_optional(frame, time_col, TIME_NAMES, 3, {ucol, icol, rcol}, path, positional=bool(detected))
    if detected:
        _say_header(path, detected, ucol, icol, rcol, tcol)
    users = _ids(frame[ucol], path, where, "user")
    items = _ids(frame[icol], path, where, "item")
    ratings = _numeric(frame[rcol], path, where, "rating") if rcol is not None else None
    stamps = _times(frame[tcol], path, where) if tcol is not None else None
    if integer_ids:  # before any filtering, so that errors point at the right line
        users = _as_ids(frame[ucol], users, path, where, "user")
        items = _as_ids(frame[icol], items, path, where, "item")
    if min_rating is not None:
        if ratings is None:
            raise DataError(f"{path}: min_rating={min_rating} given but the file has no rating column")
        keep = ratings >= min_rating
        users, items, ratings = users[keep], items[keep], ratings[keep]
        stamps = stamps[keep] if stamps is not None else None
    return PairTable(users, items, str(path), integer_ids, ratings, stamps)


class _Where:
    """Turns a data-row index into ``", line N"`` (text files) or ``", row N"`` (Parquet).

    ``first_row_hint``: what a bad value on the first data row adds to its error (a headerless
    file whose first line may be a header that was not recognised)."""

    def __init__(self, line_numbers: np.ndarray | None, first_row_hint: str = ""):
        self.line_numbers = line_numbers
        self.first_row_hint = first_row_hint

    def __call__(self, row: int) -> str:
        if self.line_numbers is None:
            return f", row {int(row) + 1}"
        return f", line {int(self.line_numbers[row])}"

    def hint(self, row: int) -> str:
        return self.first_row_hint if int(row) == 0 else ""


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
                    ids: tuple[int, int] = (0, 1)) -> tuple[pd.DataFrame, _Where, str | None]:
    """The rows as strings, where each came from, and why the first row was taken for a header
    when that was a guess (rules 2 and 3 of :func:`read_pairs`), else None."""
    text = _open_text(path)
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    lines = _lines(text)
    # 1-based numbers of the non-blank lines (pandas skips blank and whitespace-only lines too)
    numbers = np.flatnonzero([bool(line.strip()) for line in lines]) + 1
    first = lines[numbers[0] - 1]
    sep = sep or _sniff_sep(first)
    detected = None
    guess = header is None  # rule 3 needs the rows: decided after reading
    if header is None:
        fields = _split(first, sep)
        if _looks_like_header(fields):
            header, guess = True, False
        elif _column_words(fields, ids):
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
        column = _typed_below(frame)
        if column is not None:
            detected = (f"it has words where the rows below have numbers or dates ({frame.iat[0, column]!r} "
                        f"in column {column + 1})")
            frame = _promote_header(frame)
            header = True
    hint = "" if header else _HEADER_HINT
    if header:
        numbers = numbers[1:]
    else:
        frame.columns = list(range(frame.shape[1]))
    if len(numbers) != frame.shape[0]:  # quoted fields spanning lines: row numbers instead
        return frame, _Where(None, hint), detected
    return frame, _Where(numbers, hint), detected


def _promote_header(frame: pd.DataFrame) -> pd.DataFrame:
    """The first row as column names (repeated names numbered as pandas does: ``a``, ``a.1``)."""
    names: list[str] = []
    for value in frame.iloc[0].tolist():
        name, n = str(value), 0
        while name in names:
            n += 1
            name = f"{value}.{n}"
        names.append(name)
    out = frame.iloc[1:].reset_index(drop=True)
    out.columns = names
    return out


def _parses(col: pd.Series) -> bool:
    """Whether every value is a number or an ISO-8601 date/time."""
    ok = pd.to_numeric(col, errors="coerce").notna().to_numpy()
    if ok.all():
        return True
    rest = col[~ok]
    if pd.isna(pd.to_datetime(rest.iloc[:1], errors="coerce", utc=True, format="ISO8601").iloc[0]):
        return False  # (cheap: a column of string ids stops here)
    return bool(pd.to_datetime(rest, errors="coerce", utc=True, format="ISO8601").notna().all())


def _typed_below(frame: pd.DataFrame) -> int | None:
    """Rule 3 of header detection: the first column that is a number or a date on every row
    but the first, where the first row (which holds no digit) has a word (None if none, or if
    there is no other row)."""
    if frame.shape[0] < 2:
        return None
    for j in range(frame.shape[1]):
        col = frame.iloc[:, j]
        if re.search("[A-Za-z]", str(col.iat[0])) and _parses(col.iloc[1:]):
            return j
    return None


def _column_words(fields: list[str], ids: tuple[int, int]) -> bool:
    """Rule 2 of header detection: the user and the item field are both words that name columns."""
    if len(fields) < 2 or max(ids) >= len(fields) or min(ids) < 0:
        return False
    return all(_is_column_word(fields[k]) for k in ids)


_ID_WORD = re.compile(r"[a-z][a-z_]*?(_?id|_?ids|_key|_code)")
_COLUMN_WORDS = frozenset(USER_NAMES + ITEM_NAMES + RATING_NAMES + TIME_NAMES + USER_WORDS + ITEM_WORDS)


def _is_column_word(field: str) -> bool:
    name = _norm(field)
    return name in _COLUMN_WORDS or (len(name) > 4 and _ID_WORD.fullmatch(name) is not None)


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
    where = _Where(None)
    users = _ids(frame[user_col], Path(name), where, "user")
    items = _ids(frame[item_col], Path(name), where, "item")
    ratings = _numeric(frame[rating_col], Path(name), where, "rating") if rating_col else None
    stamps = _times(frame[time_col], Path(name), where) if time_col else None
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


MAX_ID = 2**31 - 2


def _refuse_sparse_ids(tables: dict[str, PairTable]) -> None:
    """Integer ids are used as row numbers: refuse, before allocating anything, ids that would
    make tables mostly empty (an id of 2,000,000,000 among a few hundred) or overflow."""
    for what in ("user", "item"):
        arrays = [getattr(t, f"{what}s") for t in tables.values() if len(t)]
        if not arrays:
            continue
        top = max(int(a.max()) for a in arrays)
        distinct = np.unique(np.concatenate(arrays)).size
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


# ---------------------------------------------------------------------------- helpers
def _sniff_sep(line: str) -> str:
    for sep in ("\t", "::", ",", ";", "|"):
        if sep in line:
            return sep
    return " "


def _split(line: str, sep: str) -> list[str]:
    if sep == " ":
        return line.split()
    if len(sep) > 1:
        return line.split(sep)
    return next(csv.reader([line], delimiter=sep))


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9_]", "", name.split(":", 1)[0].strip().lower())


def _looks_like_header(fields: list[str]) -> bool:
    if len(fields) < 2:
        return False
    names = [_norm(f) for f in fields]
    if names[0] in USER_NAMES or names[1] in ITEM_NAMES:
        return True
    if any(n in USER_NAMES for n in names) and any(n in ITEM_NAMES for n in names):
        return True  # e.g. ``item_id,user_id``
    return ":" in fields[0] and ":" in fields[1]


def _pick(frame: pd.DataFrame, given, names, taken: set, path: Path, what: str):
    cols = list(frame.columns)
    if given is not None:
        if given in cols:
            return given
        if isinstance(given, int) and 0 <= given < len(cols):
            return cols[given]
        raise DataError(f"{path}: no {what} column {given!r}; columns are {[str(c) for c in cols]}")
    for c in cols:
        if isinstance(c, str) and _norm(c) in names and c not in taken:
            return c
    # no column named like one: the first free column of those not named like the other id
    other = ITEM_NAMES if names is USER_NAMES else USER_NAMES
    free = [c for c in cols if c not in taken and not (isinstance(c, str) and _norm(c) in other)]
    if not free:
        raise DataError(f"{path}: cannot tell which column holds the {what} ids; columns are "
                        f"{[str(c) for c in cols]}")
    return free[0]


def _pick_optional(frame, given, names, position, taken, path, positional=False):
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
    if (positional or all(isinstance(c, int) for c in cols)) and position < len(cols) \
            and cols[position] not in taken:
        col = frame[cols[position]]
        # a column that is mostly numbers (times: or ISO-8601 dates) is the rating/time column; its
        # bad values are errors
        if pd.to_numeric(col, errors="coerce").notna().mean() >= 0.5:
            return cols[position]
        if names is TIME_NAMES and pd.to_datetime(col, errors="coerce", utc=True,
                                                  format="ISO8601").notna().mean() >= 0.5:
            return cols[position]
    return None


def _ids(col: pd.Series, path: Path, where: _Where, what: str) -> np.ndarray:
    missing = np.flatnonzero(col.isna().to_numpy())
    if missing.size:
        raise DataError(f"{path}{where(missing[0])}: missing {what} id")
    arr = col.astype(str).str.strip().to_numpy(dtype=str)
    empty = np.flatnonzero(np.char.str_len(arr) == 0) if arr.size else []
    if len(empty):
        raise DataError(f"{path}{where(empty[0])}: empty {what} id")
    return arr


def _numeric(col: pd.Series, path: Path, where: _Where, what: str) -> np.ndarray:
    values = pd.to_numeric(col, errors="coerce")
    bad = np.flatnonzero(values.isna().to_numpy())
    if bad.size:
        raise DataError(f"{path}{where(bad[0])}: {str(col.iloc[bad[0]])!r} is not a number ({what})"
                        f"{where.hint(bad[0])}")
    return values.to_numpy(dtype=np.float64)


def _times(col: pd.Series, path: Path, where: _Where) -> np.ndarray:
    """Timestamps as numbers: epoch numbers as they are, ISO-8601 dates/times as epoch seconds."""
    values = pd.to_numeric(col, errors="coerce")
    if values.notna().all():
        return values.to_numpy(dtype=np.float64)
    parsed = parse_times(col, path, where)
    return parsed


def parse_times(col: pd.Series, path: Path | str = "", where: _Where | None = None) -> np.ndarray:
    """ISO-8601 dates or date-times (``2021-03-04``, ``2021-03-04T10:00:00Z``) as epoch seconds
    (UTC when no zone is given)."""
    stamps = pd.to_datetime(col, errors="coerce", utc=True, format="ISO8601")
    bad = np.flatnonzero(stamps.isna().to_numpy())
    if bad.size:
        at = where(bad[0]) if where is not None else ""
        hint = where.hint(bad[0]) if where is not None else ""
        raise DataError(f"{path}{at}: {str(col.iloc[bad[0]])!r} is neither a number nor an ISO-8601 "
                        f"date/time (timestamp){hint}")
    return (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=np.float64)


def _as_ids(col: pd.Series, arr: np.ndarray, path: Path, where: _Where, what: str) -> np.ndarray:
    values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isnan(values).any():  # maybe only surrounding spaces: try the stripped ids
        values = pd.to_numeric(pd.Series(arr), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    ok = np.isfinite(values) & (values == np.floor(values))
    bad = np.flatnonzero(~ok)
    if bad.size:
        raise DataError(f"{path}{where(bad[0])}: {str(arr[bad[0]])!r} is not an integer {what} id"
                        f"{where.hint(bad[0])}")
    neg = np.flatnonzero(values < 0)
    if neg.size:
        raise DataError(f"{path}{where(neg[0])}: negative {what} id {str(arr[neg[0]])}")
    if values.size and values.max() >= 2**53:
        raise DataError(f"{path}: {what} ids above 2**53 are not supported as integers; "
                        "read them as string ids (integer_ids=False)")
    return values.astype(np.int64)


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
