"""The fast read path of :func:`~ssmrec.data.readers.read_pairs`: delimited text and Parquet
through pyarrow, in bounded memory and without a Python loop per row.

pyarrow parses only the columns in use, in C; the id and rating columns come as dictionary
arrays (an int32 code per row and the distinct strings once), so tens of millions of string ids
are never Python or pandas strings. The checks and conversions of :mod:`ssmrec.data.columns`
(ids stripped and refused when empty, numbers, ISO-8601 times, integer ids) then run once per
*distinct* value, on a pandas series of the same dtype the pandas path would have built, and
the rows take their results by code: elementwise functions applied to the distinct values and
gathered give what they give applied to the rows. String ids come back as codes into a sorted
vocabulary (a coded :class:`~ssmrec.data.tables.PairTable`).

The result is the pandas path's, or nothing: whatever this path is not sure to read the same way
(a quote anywhere in the file, a whitespace or multi-character separator other than ``::``,
blank lines before a header, a NUL byte, duplicate or empty header names, nulls in Parquet) and
every bad value (a row with too many or too few fields, an empty id, a rating that is not a
number...) raise :class:`Unsupported`, and ``read_pairs`` reads the file again the pandas way,
which gives the same table or the error that names the file and line.
"""

from __future__ import annotations

import codecs
import gzip
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ssmrec.data.columns import (
    ITEM_NAMES,
    RATING_NAMES,
    TIME_NAMES,
    USER_NAMES,
    Where,
    _norm,
    as_integer_ids,
    column_words,
    id_values,
    looks_like_header,
    number_values,
    pick_column,
    promote_header,
    sniff_sep,
    split_fields,
    time_values,
    typed_below,
)
from ssmrec.data.interactions import DataError

_SCAN_CHUNK = 1 << 22
_NOWHERE = Where(None)


class Unsupported(Exception):
    """This file (or a value in it) is left to the pandas path; the message says why."""


@dataclass
class Columns:
    """What :func:`read_fast` read: per-row ids (int codes into ``*_vocab`` for string ids, else the
    integer ids), ratings and timestamps as float64, and the guessed-header note for the warning."""

    users: np.ndarray
    items: np.ndarray
    user_vocab: np.ndarray | None
    item_vocab: np.ndarray | None
    ratings: np.ndarray | None
    timestamps: np.ndarray | None
    detected: str | None
    names: tuple  # the chosen (user, item, rating, time) column labels


def read_fast(path: Path, *, sep: str | None, header: bool | None, user_col, item_col, rating_col, time_col,
              integer_ids: bool) -> Columns:
    """Read a delimited or Parquet file as :func:`~ssmrec.data.readers.read_pairs` does (same
    arguments; ``header`` already True when a column is named), or raise :class:`Unsupported`."""
    try:
        import pyarrow
    except ImportError:
        raise Unsupported("pyarrow is not installed") from None
    try:
        if path.suffix == ".parquet":
            return _read_parquet(path, user_col, item_col, rating_col, time_col, integer_ids)
        return _read_text(path, sep, header, user_col, item_col, rating_col, time_col, integer_ids)
    except DataError as e:  # a bad value: the pandas path says where
        raise Unsupported(str(e)) from None
    except (OSError, ValueError, TypeError, KeyError, IndexError, NotImplementedError, zlib.error,
            EOFError) as e:
        # pyarrow's errors (ArrowInvalid is a ValueError, ArrowIOError an OSError) and odd input
        raise Unsupported(f"{type(e).__name__}: {e}") from None
    finally:  # pyarrow's allocator keeps what the parsed columns held (measured: 245 MB at 5M rows)
        pyarrow.default_memory_pool().release_unused()


# ---------------------------------------------------------------------------- delimited text
@dataclass
class _Scan:
    first: str  # the first non-blank line
    leading_blank: bool  # blank lines come before it
    gz: bool


def _scan(path: Path) -> _Scan:
    """One streaming pass over the bytes: the first non-blank line, and refusal of what the fast
    path does not read like pandas (quotes, NUL bytes) or what the pandas path refuses with an
    error of its own (not UTF-8, a ``.gz`` name on plain data, damaged gzip data)."""
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
    if path.name.endswith(".gz") and not gz:
        raise Unsupported("a .gz name on data that is not gzip")
    decoder = codecs.getincrementaldecoder("utf-8")()
    head, first = "", None
    with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
        while chunk := f.read(_SCAN_CHUNK):
            if b'"' in chunk or b"\0" in chunk:
                raise Unsupported("quotes or NUL bytes: pandas' quoting rules apply")
            text = decoder.decode(chunk)  # UnicodeDecodeError is a ValueError
            if first is None:
                head += text
                first = _first_line(head, final=False)
        decoder.decode(b"", final=True)
    if first is None:
        first = _first_line(head, final=True)
    if first is None:
        raise Unsupported("no line with data")
    return _Scan(first[0], first[1], gz)


def _first_line(text: str, final: bool) -> tuple[str, bool] | None:
    """The first non-blank line of ``text`` (a byte-order mark dropped; lines end at ``\\n``,
    ``\\r\\n`` or ``\\r``, as in the pandas path) and whether blank lines precede it; None when
    there is none yet (the last piece may be an incomplete line unless ``final``)."""
    text = text[1:] if text.startswith("\ufeff") else text
    start = blank = 0
    while (end := _EOL.search(text, start)) is not None:
        if text[start:end.start()].strip():
            return text[start:end.start()], blank > 0
        start, blank = end.end(), blank + 1
    return (text[start:], blank > 0) if final and text[start:].strip() else None


_EOL = re.compile(r"\r\n|\r|\n")


def _read_text(path, sep, header, user_col, item_col, rating_col, time_col, integer_ids) -> Columns:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    scan = _scan(path)
    first = scan.first
    sep = sep or sniff_sep(first)
    if sep == "::":
        physical = ":"
    elif len(sep) == 1 and sep not in ' "\r\n':
        physical = sep
    else:
        raise Unsupported(f"separator {sep!r}: pandas' regular-expression parser")
    ids = (user_col if isinstance(user_col, int) else 0, item_col if isinstance(item_col, int) else 1)
    fields = split_fields(first, sep)
    detected, guess = None, header is None
    if header is None:
        if looks_like_header(fields):
            header, guess = True, False
        elif column_words(fields, ids):
            header, guess, detected = True, False, "its user and item fields are column names"
        elif len(fields) < 2 or any(ch.isdigit() for ch in first):
            header, guess = False, False
    if header and scan.leading_blank:
        raise Unsupported("blank lines before the header")
    n = len(fields)
    names = [f"c{k}" for k in range(2 * n - 1 if sep == "::" else n)]
    data_cols = names[::2] if sep == "::" else names

    def read(columns: list[str], skip: int):
        """The named physical columns as strings (the odd ones of ``::`` too); large blocks, as
        the codes of fewer chunks merge faster."""
        wanted = sorted(set(columns) | (set(names[1::2]) if sep == "::" else set()), key=names.index)
        table = pacsv.read_csv(
            pa.input_stream(str(path), compression="gzip" if scan.gz else None),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=skip, block_size=1 << 26),
            parse_options=pacsv.ParseOptions(delimiter=physical, quote_char=False, double_quote=False,
                                              ignore_empty_lines=True),
            convert_options=pacsv.ConvertOptions(
                include_columns=wanted, strings_can_be_null=False, quoted_strings_can_be_null=False,
                column_types=dict.fromkeys(wanted, pa.string())),
        )
        if sep == "::":  # ':' split the fields: what lies between two of them must be empty
            for c in names[1::2]:
                if pc.max(pc.utf8_length(table.column(c))).as_py():
                    raise Unsupported("a field holds ':'")
        return table

    if guess:  # rule 3 needs every column and the first row
        table = read(data_cols, 0)
        if table.num_rows < 2:
            raise Unsupported("a possible header over fewer than two rows")
        cols_first = [table.column(c)[0].as_py() for c in data_cols]
        found = _typed_below([_distinct(table.column(c).slice(1))[1] for c in data_cols], cols_first)
        if found is None:
            header, labels = False, list(range(n))
        else:
            header = True
            labels = list(promote_header(pd.DataFrame([cols_first, cols_first], dtype=str)).columns)
            detected = (f"it has words where the rows below have numbers or dates ({cols_first[found]!r} "
                        f"in column {found + 1})")
            table = table.slice(1)
    else:
        if header:
            labels = [str(f) for f in fields]
            if len(set(labels)) != len(labels) or "" in labels:
                raise Unsupported("repeated or empty header names: pandas renames them")
        else:
            labels = list(range(n))
        table = None
    label_of = dict(zip(labels, data_cols))
    ucol = pick_column(_frame(labels), user_col, USER_NAMES, set(), path, "user")
    icol = pick_column(_frame(labels), item_col, ITEM_NAMES, {ucol}, path, "item")
    if ucol == icol:
        raise Unsupported("the same column for users and items")
    positional = bool(detected)
    wanted_r = _optional_candidates(labels, rating_col, RATING_NAMES, 2, {ucol, icol}, positional)
    if table is None:
        wanted = {ucol, icol, *wanted_r}
        # the time column's candidates depend on the rating column: read both positions at most
        wanted |= set(_optional_candidates(labels, time_col, TIME_NAMES, 3, {ucol, icol}, positional))
        table = read([label_of[c] for c in wanted], 1 if header else 0)
    if table.num_rows == 0:
        raise Unsupported("no rows")
    column = lambda label: table.column(label_of[label])  # noqa: E731
    rcol = _pick_optional(labels, rating_col, RATING_NAMES, 2, {ucol, icol}, path, positional, column)
    tcol = _pick_optional(labels, time_col, TIME_NAMES, 3, {ucol, icol, rcol}, path, positional, column)
    users, user_vocab = _ids(column(ucol), path, "user", integer_ids)
    items, item_vocab = _ids(column(icol), path, "item", integer_ids)
    ratings = _numbers(column(rcol), path) if rcol is not None else None
    stamps = _times(column(tcol), path) if tcol is not None else None
    return Columns(users, items, user_vocab, item_vocab, ratings, stamps, detected, (ucol, icol, rcol, tcol))


def _frame(labels: list) -> pd.DataFrame:
    """An empty frame with these columns: what :func:`pick_column` looks at."""
    return pd.DataFrame(columns=pd.Index(labels, dtype=object))


def _typed_below(rests: list, firsts: list) -> int | None:
    """Rule 3 (:func:`~ssmrec.data.columns.typed_below`) over columns given as their first value
    and the distinct values below it: the same answer, as its test is all-or-nothing."""
    for j, (rest, first) in enumerate(zip(rests, firsts)):
        values = rest.to_pandas()
        frame = pd.DataFrame({0: pd.concat([pd.Series([first], dtype=values.dtype), values], ignore_index=True)})
        if typed_below(frame) == 0:
            return j
    return None


def _optional_candidates(labels, given, names, position, taken, positional) -> list:
    """The columns :func:`_pick_optional` may look into (to read them first)."""
    if given == -1:
        return []
    if given is not None:
        if given in labels:
            return [given]
        return [labels[given]] if isinstance(given, int) and 0 <= given < len(labels) else []
    named = [c for c in labels if isinstance(c, str) and _norm(c) in names and c not in taken]
    if named:
        return named[:1]
    if (positional or all(isinstance(c, int) for c in labels)) and position < len(labels) \
            and labels[position] not in taken:
        return [labels[position]]
    return []


def _pick_optional(labels, given, names, position, taken, path, positional, column):
    """:func:`~ssmrec.data.columns.pick_optional_column` with its "mostly numbers" share counted
    over the distinct values, weighted by how often each occurs."""
    if given == -1:
        return None
    if given is not None:
        if given in labels:
            return given
        if isinstance(given, int) and 0 <= given < len(labels):
            return labels[given]
        raise Unsupported(f"no column {given!r}")
    for c in labels:
        if isinstance(c, str) and _norm(c) in names and c not in taken:
            return c
    if (positional or all(isinstance(c, int) for c in labels)) and position < len(labels) \
            and labels[position] not in taken:
        codes, distinct = _distinct(column(labels[position]))
        weight = np.bincount(codes, minlength=len(distinct))
        values = distinct.to_pandas()
        if weight @ pd.to_numeric(values, errors="coerce").notna().to_numpy() >= 0.5 * codes.size:
            return labels[position]
        if names is TIME_NAMES:
            ok = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601").notna().to_numpy()
            if weight @ ok >= 0.5 * codes.size:
                return labels[position]
    return None


# ---------------------------------------------------------------------------- values
def _distinct(col) -> tuple[np.ndarray, object]:
    """``(codes, distinct)``: each row's index into ``distinct``, the values in use (a pyarrow
    array), by pyarrow's hash encoding (a dictionary column's chunks unified when their
    dictionaries differ)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_dictionary(col.type):
        col = pc.dictionary_encode(col)  # one hash table over the chunks: each gets its final dictionary
    if col.num_chunks == 0:
        raise Unsupported("no rows")
    dictionary = col.chunk(0).dictionary
    if not all(ch.dictionary.equals(dictionary) for ch in col.chunks[1:]):
        col = col.unify_dictionaries()
        dictionary = col.chunk(0).dictionary
    codes = np.concatenate([ch.indices.to_numpy(zero_copy_only=False) for ch in col.chunks])
    if codes.size and codes.max() >= np.iinfo(np.int32).max:
        codes = codes.astype(np.int64)
    used = np.bincount(codes, minlength=len(dictionary)) > 0
    if not used.all():  # a chunk's entries that the rows kept no longer use (a header row, a slice)
        remap = (np.cumsum(used) - 1).astype(codes.dtype)
        codes = remap[codes]
        dictionary = dictionary.filter(pa.array(used))
    return codes, dictionary


def _ids(col, path: Path, what: str, integer_ids: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-row ids: integer ids (``integer_ids``), else codes into the sorted distinct stripped
    strings; refused (:class:`Unsupported`) where the pandas path would raise."""
    if col.null_count:
        raise Unsupported(f"missing {what} ids")
    codes, distinct = _distinct(col)
    values = distinct.to_pandas()
    stripped = id_values(values, path, _NOWHERE, what)
    if integer_ids:
        return as_integer_ids(values, stripped, path, _NOWHERE, what)[codes], None
    vocab, inverse = np.unique(stripped, return_inverse=True)  # two raw ids may strip to one
    inverse = inverse.astype(np.int32 if vocab.size < 2**31 else np.int64)
    return inverse[codes], vocab


def _numeric(col, what: str) -> np.ndarray | None:
    """A numeric column as float64 (None for text); missing or NaN values are left to the pandas
    path, which names their line."""
    import pyarrow as pa

    if col.null_count:
        raise Unsupported(f"missing {what}s")
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        out = col.to_numpy().astype(np.float64)
        if np.isnan(out).any():
            raise Unsupported(f"NaN {what}")
        return out
    return None


def _numbers(col, path: Path) -> np.ndarray:
    """Ratings as float64, as :func:`~ssmrec.data.columns.number_values` reads them."""

    if (out := _numeric(col, "rating")) is not None:
        return out
    codes, distinct = _distinct(col)
    return number_values(distinct.to_pandas(), path, _NOWHERE, "rating")[codes]


def _times(col, path: Path) -> np.ndarray:
    """Timestamps as float64, as :func:`~ssmrec.data.columns.time_values` reads them: plain
    decimal integers cast by pyarrow (the one case where its parse and pandas' agree by
    construction), anything else once per distinct value by pandas."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if (out := _numeric(col, "timestamp")) is not None:
        return out
    if pa.types.is_string(col.type) and pc.all(pc.ascii_is_decimal(col)).as_py():
        try:
            return pc.cast(col, pa.int64()).to_numpy().astype(np.float64)
        except (ValueError, OverflowError):  # beyond int64: pandas' own reading below
            pass
    codes, distinct = _distinct(col)
    return time_values(distinct.to_pandas(), path, _NOWHERE)[codes]


# ---------------------------------------------------------------------------- Parquet
def _read_parquet(path: Path, user_col, item_col, rating_col, time_col, integer_ids) -> Columns:
    """Parquet: the columns in use only; labels as ``pd.read_parquet`` gives them (pandas' index
    columns left out)."""
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    meta = schema.pandas_metadata or {}
    index_cols = {c for c in meta.get("index_columns", []) if isinstance(c, str)}
    if len(meta.get("column_indexes", [])) > 1:
        raise Unsupported("multi-level column labels")
    labels = [name for name in schema.names if name not in index_cols]
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise Unsupported("fewer than two columns, or repeated names")
    ucol = pick_column(_frame(labels), user_col, USER_NAMES, set(), path, "user")
    icol = pick_column(_frame(labels), item_col, ITEM_NAMES, {ucol}, path, "item")
    if ucol == icol:
        raise Unsupported("the same column for users and items")
    cache: dict = {}

    def column(label):
        if label not in cache:
            cache[label] = pq.read_table(path, columns=[label]).column(0)
        return cache[label]

    rcol = _pick_optional(labels, rating_col, RATING_NAMES, 2, {ucol, icol}, path, False, column)
    tcol = _pick_optional(labels, time_col, TIME_NAMES, 3, {ucol, icol, rcol}, path, False, column)
    if len(column(ucol)) == 0:
        raise Unsupported("no rows")
    for label in (rcol, tcol):
        if label is not None and _is_dictionary(column(label)):
            raise Unsupported("a categorical rating or time column")
    users, user_vocab = _ids(column(ucol), path, "user", integer_ids)
    items, item_vocab = _ids(column(icol), path, "item", integer_ids)
    ratings = _numbers(column(rcol), path) if rcol is not None else None
    stamps = _parquet_times(column(tcol), path) if tcol is not None else None
    return Columns(users, items, user_vocab, item_vocab, ratings, stamps, None, (ucol, icol, rcol, tcol))


def _is_dictionary(col) -> bool:
    import pyarrow as pa

    return pa.types.is_dictionary(col.type)


def _parquet_times(col, path: Path) -> np.ndarray:
    """A Parquet time column: numbers as they are, strings as in a text file, and any other type
    (dates, timestamps) as pandas reads that type, once per distinct value."""
    import pyarrow as pa

    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_string(col.type) \
            or pa.types.is_large_string(col.type):
        return _times(col, path)
    if col.null_count:
        raise Unsupported("missing timestamps")
    codes, distinct = _distinct(col)
    return time_values(distinct.to_pandas(), path, _NOWHERE)[codes]
