"""Which column of a table is which, and what its values are: the header rules of
:func:`~ssmrec.data.readers.read_pairs` (line 1 is a header when it can be told from data), the
choice of the user, item, rating and time columns by name or position, and each column's values
parsed (ids, numbers, timestamps) with errors naming the file and line of a bad one.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ssmrec.data.interactions import DataError

# ---------------------------------------------------------------------------- column names
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


# ---------------------------------------------------------------------------- header rules
def promote_header(frame: pd.DataFrame) -> pd.DataFrame:
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


def typed_below(frame: pd.DataFrame) -> int | None:
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


def column_words(fields: list[str], ids: tuple[int, int]) -> bool:
    """Rule 2 of header detection: the user and the item field are both words that name columns."""
    if len(fields) < 2 or max(ids) >= len(fields) or min(ids) < 0:
        return False
    return all(_is_column_word(fields[k]) for k in ids)


_ID_WORD = re.compile(r"[a-z][a-z_]*?(_?id|_?ids|_key|_code)")
_COLUMN_WORDS = frozenset(USER_NAMES + ITEM_NAMES + RATING_NAMES + TIME_NAMES + USER_WORDS + ITEM_WORDS)


def _is_column_word(field: str) -> bool:
    name = _norm(field)
    return name in _COLUMN_WORDS or (len(name) > 4 and _ID_WORD.fullmatch(name) is not None)


def sniff_sep(line: str) -> str:
    for sep in ("\t", "::", ",", ";", "|"):
        if sep in line:
            return sep
    return " "


def split_fields(line: str, sep: str) -> list[str]:
    if sep == " ":
        return line.split()
    if len(sep) > 1:
        return line.split(sep)
    return next(csv.reader([line], delimiter=sep))


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9_]", "", name.split(":", 1)[0].strip().lower())


def looks_like_header(fields: list[str]) -> bool:
    if len(fields) < 2:
        return False
    names = [_norm(f) for f in fields]
    if names[0] in USER_NAMES or names[1] in ITEM_NAMES:
        return True
    if any(n in USER_NAMES for n in names) and any(n in ITEM_NAMES for n in names):
        return True  # e.g. ``item_id,user_id``
    return ":" in fields[0] and ":" in fields[1]


# ---------------------------------------------------------------------------- which column
def pick_column(frame: pd.DataFrame, given, names, taken: set, path: Path, what: str):
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


def pick_optional_column(frame, given, names, position, taken, path, positional=False):
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


# ---------------------------------------------------------------------------- values
class Where:
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


def id_values(col: pd.Series, path: Path, where: Where, what: str) -> np.ndarray:
    missing = np.flatnonzero(col.isna().to_numpy())
    if missing.size:
        raise DataError(f"{path}{where(missing[0])}: missing {what} id")
    arr = col.astype(str).str.strip().to_numpy(dtype=str)
    empty = np.flatnonzero(np.char.str_len(arr) == 0) if arr.size else []
    if len(empty):
        raise DataError(f"{path}{where(empty[0])}: empty {what} id")
    return arr


def number_values(col: pd.Series, path: Path, where: Where, what: str) -> np.ndarray:
    values = pd.to_numeric(col, errors="coerce")
    bad = np.flatnonzero(values.isna().to_numpy())
    if bad.size:
        raise DataError(f"{path}{where(bad[0])}: {str(col.iloc[bad[0]])!r} is not a number ({what})"
                        f"{where.hint(bad[0])}")
    return values.to_numpy(dtype=np.float64)


def time_values(col: pd.Series, path: Path, where: Where) -> np.ndarray:
    """Timestamps as numbers: epoch numbers as they are, ISO-8601 dates/times as epoch seconds."""
    values = pd.to_numeric(col, errors="coerce")
    if values.notna().all():
        return values.to_numpy(dtype=np.float64)
    parsed = parse_times(col, path, where)
    return parsed


def parse_times(col: pd.Series, path: Path | str = "", where: Where | None = None) -> np.ndarray:
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


def as_integer_ids(col: pd.Series, arr: np.ndarray, path: Path, where: Where, what: str) -> np.ndarray:
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
