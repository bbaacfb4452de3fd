"""Data that scales (issue 21, item 3): the large synthetic generator, and the fast (pyarrow) read
path against the pandas one on the same files: the same tables, the same datasets, the same
errors with file and line."""

from __future__ import annotations

import gzip
import logging

import numpy as np
import pandas as pd
import pytest

from ssmrec.data import readers
from ssmrec.data.config import DataConfig
from ssmrec.data.dataset import load_dataset
from ssmrec.data.encoding import encode
from ssmrec.data.fast_read import Unsupported, read_fast
from ssmrec.data.interactions import DataError, Interactions, sorted_unique
from ssmrec.data.synthetic import large_chunks, write_large
from ssmrec.data.tables import PairTable

pa = pytest.importorskip("pyarrow")


def _frame(**kwargs) -> pd.DataFrame:
    return pa.concat_tables(list(large_chunks(**kwargs))).to_pandas()


# ---------------------------------------------------------------------------- the generator
def test_generator_shape_skew_and_times():
    df = _frame(n_rows=40_000, n_users=2_000, n_items=5_000, seed=3, chunk_rows=7_000)
    assert len(df) == 40_000
    keys = df.user_id.to_numpy() * 5_000 + df.item_id.to_numpy()
    assert np.unique(keys).size == len(df)  # distinct pairs
    items = np.sort(np.bincount(df.item_id, minlength=5_000))[::-1]
    assert items[:50].sum() > 0.25 * len(df)  # 1% of the items: a quarter of the rows (power law)
    assert (items == 0).sum() > 250  # and a long tail never drawn
    users = np.sort(np.bincount(df.user_id, minlength=2_000))[::-1]
    assert users[:20].sum() > 0.08 * len(df)  # 1% of the users: several times their share
    assert np.median(users) < 0.6 * users.mean()  # most users are light (skewed activity)
    u = df.user_id.to_numpy()
    assert (np.diff(u) >= 0).all()  # grouped by user
    same = u[1:] == u[:-1]
    assert (np.diff(df.timestamp.to_numpy())[same] >= 0).all()  # times rise within each user
    assert df.timestamp.min() >= 1_500_000_000 and df.timestamp.max() < 1_500_000_000 + 1095 * 86400
    assert set(df.rating.unique()) <= {1, 2, 3, 4, 5}


def test_generator_is_reproducible_and_string_ids_are_distinct():
    a = _frame(n_rows=5_000, n_users=300, n_items=1_000, seed=7, string_ids=True, chunk_rows=2_000)
    b = _frame(n_rows=5_000, n_users=300, n_items=1_000, seed=7, string_ids=True, chunk_rows=2_000)
    c = _frame(n_rows=5_000, n_users=300, n_items=1_000, seed=8, string_ids=True, chunk_rows=2_000)
    pd.testing.assert_frame_equal(a.astype(str), b.astype(str))
    assert not a.astype(str).equals(c.astype(str))
    ints = _frame(n_rows=5_000, n_users=300, n_items=1_000, seed=7, chunk_rows=2_000)
    # the same rows as with integer ids, each integer id one distinct string
    for col, prefix in (("user_id", "u"), ("item_id", "i")):
        pairs = pd.DataFrame({"s": a[col].astype(str), "n": ints[col]}).drop_duplicates()
        assert pairs.s.is_unique and pairs.n.is_unique
        assert pairs.s.str.startswith(prefix).all()
    assert (a.timestamp == ints.timestamp).all()


def test_generator_refuses_impossible_sizes():
    with pytest.raises(ValueError, match="do not fit"):
        next(large_chunks(n_rows=1_000, n_users=10, n_items=20))


@pytest.mark.parametrize("name", ["big.csv", "big.tsv", "big.csv.gz", "big.parquet"])
def test_written_file_reads_back(tmp_path, name):
    path = tmp_path / name
    info = write_large(path, 3_000, 200, 800, string_ids=True, seed=2, chunk_rows=1_000)
    assert info["rows"] == 3_000
    table = readers.read_pairs(path)
    assert len(table) == 3_000 and table.coded
    assert np.unique(table.users).size == info["users"] and np.unique(table.items).size == info["items"]
    expected = _frame(n_rows=3_000, n_users=200, n_items=800, string_ids=True, seed=2, chunk_rows=1_000)
    assert (table.users == expected.user_id.astype(str).to_numpy()).all()
    assert (table.timestamps == expected.timestamp.to_numpy()).all()
    if name.endswith(".gz"):
        assert gzip.open(path, "rt").readline() == "user_id,item_id,rating,timestamp\n"


# ---------------------------------------------------------------------------- fast = pandas
def _both(monkeypatch, read):
    """What ``read()`` gives with the fast path and with the pandas path only."""
    monkeypatch.setattr(readers, "FAST_READ", True)
    fast = read()
    monkeypatch.setattr(readers, "FAST_READ", False)
    slow = read()
    monkeypatch.setattr(readers, "FAST_READ", True)
    return fast, slow


def _same_table(a: PairTable, b: PairTable):
    assert len(a) == len(b) and a.integer_ids == b.integer_ids
    for name in ("users", "items", "ratings", "timestamps"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype and np.array_equal(x, y), name


def _same_inter(a: Interactions, b: Interactions):
    assert a.fingerprint() == b.fingerprint()
    for name in ("user_ids", "item_ids"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None) and (x is None or (x.dtype == y.dtype and np.array_equal(x, y)))


def _fast_used(path, **kwargs):
    kwargs.setdefault("header", None)
    if kwargs["header"] is None and any(isinstance(kwargs.get(k), str) for k in ("user_col", "item_col")):
        kwargs["header"] = True
    return read_fast(path, sep=kwargs.get("sep"), header=kwargs["header"], user_col=kwargs.get("user_col"),
                     item_col=kwargs.get("item_col"), rating_col=kwargs.get("rating_col"),
                     time_col=kwargs.get("time_col"), integer_ids=kwargs.get("integer_ids", False))


ROWS = [("u10", "b7", "4", "1600000300"), ("u2", "b7", "5", "1600000100"), ("u10", "a1", "2", "1600000200"),
        ("u2", "a1", "3", "1600000000"), ("u3", "c9", "1", "1600000400"), ("u10", "c9", "5", "1600000500"),
        ("u3", "b7", "4", "1600000050"), ("u2", "b7", "5", "1600000600")]  # a duplicate pair at the end

CASES = {
    "header.csv": ("user_id,item_id,rating,timestamp\n", ",", ROWS, {}),
    "plain.csv": ("", ",", ROWS, {}),  # no header: positions, string ids of digits and letters
    "tabs.tsv": ("user\titem\tstars\tts\n", "\t", ROWS, {}),
    "ml.dat": ("", "::", ROWS, {}),
    "crlf.csv.gz": ("user_id,item_id,rating,timestamp\r\n", ",", ROWS, {}),
    "spaced.csv": ("user_id,item_id,rating,timestamp\n", ",", [(f" {u} ", i, r, t) for u, i, r, t in ROWS], {}),
    "dates.csv": ("user_id,item_id,rating,date\n", ",",
                  [(u, i, r, f"2021-03-{int(t) % 97 % 28 + 1:02d}T10:00:00Z") for u, i, r, t in ROWS], {}),
    "floats.csv": ("", ",", [(u, i, f"{int(r) / 2}", f"{t}.25") for u, i, r, t in ROWS], {}),
    "numbers.csv": ("", ",", [(str(k % 3 + 7), str(k % 4), "3.5", str(k)) for k in range(12)], {"integer_ids": True}),
    "words.csv": ("customer,product,stars\n", ",", [r[:3] for r in ROWS], {}),  # rule 2
    "guessed.csv": ("buyer,thing,stars\n", ",", [r[:3] for r in ROWS], {}),  # rule 3
    "named.csv": ("a,b,c,d\n", ",", ROWS, {"user_col": "b", "item_col": "a", "rating_col": "c", "time_col": -1}),
    "rated.csv": ("user_id,item_id,rating,timestamp\n", ",", ROWS, {"min_rating": 4}),
}


def _write(tmp_path, name, head, sep, rows):
    path = tmp_path / name
    newline = "\r\n" if "crlf" in name else "\n"
    text = head + "".join(sep.join(r) + newline for r in rows)
    if name.endswith(".gz"):
        with gzip.open(path, "wt", newline="") as f:
            f.write(text)
    else:
        path.write_text(text, newline="")
    return path


@pytest.mark.parametrize("name", list(CASES))
def test_fast_path_reads_what_pandas_reads(tmp_path, monkeypatch, caplog, name):
    head, sep, rows, kwargs = CASES[name]
    path = _write(tmp_path, name, head, sep, rows)
    kwargs = dict(kwargs, sep=sep if sep == "::" else None)
    _fast_used(path, **{k: v for k, v in kwargs.items() if k != "min_rating"})  # no Unsupported: it is used
    with caplog.at_level(logging.WARNING):
        fast, slow = _both(monkeypatch, lambda: readers.read_pairs(path, **kwargs))
    assert fast.coded != fast.integer_ids and not slow.coded
    _same_table(fast, slow)
    a, b = encode({"all": fast})["all"], encode({"all": slow})["all"]
    _same_inter(a, b)
    if name in ("words.csv", "guessed.csv"):  # the guessed header is said once per read, alike
        said = [r.getMessage() for r in caplog.records if "read as a header" in r.getMessage()]
        assert len(said) == 2 and said[0] == said[1]


@pytest.mark.parametrize("settings", [
    {}, {"temporal": True}, {"kcore": 2}, {"min_rating": 3}, {"time_cutoff": "1600000250"},
    {"positive_min": 4, "negative_max": 2},
])
def test_fast_path_gives_the_same_splits(tmp_path, monkeypatch, settings):
    path = tmp_path / "shop.csv"
    write_large(path, 4_000, 150, 600, string_ids=True, seed=5, chunk_rows=1_500)
    if "time_cutoff" in settings:
        stamps = readers.read_pairs(path).timestamps
        settings = {"time_cutoff": str(int(np.median(stamps)))}
    cfg = DataConfig(str(path), **settings)
    fast, slow = _both(monkeypatch, lambda: load_dataset(cfg, "holdout"))
    for role in ("train", "valid", "test"):
        _same_inter(getattr(fast, role), getattr(slow, role))
    assert fast.dislikes.keys() == slow.dislikes.keys()
    for role in fast.dislikes:
        _same_inter(fast.dislikes[role], slow.dislikes[role])


def test_fast_path_folder_of_string_files(tmp_path, monkeypatch):
    """Several coded tables share one id space (their vocabularies merged) as string tables do."""
    folder = tmp_path / "shop"
    folder.mkdir()
    _write(folder, "train.csv", "user_id,item_id\n", ",", [r[:2] for r in ROWS] + [("u9", "z0")])
    _write(folder, "test.csv", "user_id,item_id\n", ",", [("u2", "c9"), ("u3", "a1"), ("u9", "b7")])
    fast, slow = _both(monkeypatch, lambda: load_dataset(DataConfig(str(folder))))
    _same_inter(fast.train, slow.train)
    _same_inter(fast.test, slow.test)


@pytest.mark.parametrize("kind", ["strings", "integers", "categorical"])
def test_fast_path_parquet(tmp_path, monkeypatch, kind):
    users = ["u10", "u2", "u10", "u3", "u2", "u3"]
    frame = pd.DataFrame({"visitor_id": users, "sku": ["b", "a", "a", "c", "c", "c"],
                          "rating": [4.0, 5, 2, 3, 1, 1], "timestamp": np.arange(6) * 10 + 5})
    if kind == "integers":
        frame["visitor_id"] = [int(u[1:]) for u in users]
        frame["sku"] = [ord(c) for c in frame["sku"]]
    if kind == "categorical":
        frame["sku"] = frame["sku"].astype("category")
    path = tmp_path / "p.parquet"
    frame.to_parquet(path)
    for kwargs in ({"item_col": "sku"}, {"item_col": "sku", "integer_ids": kind == "integers"}):
        _fast_used(path, **kwargs)
        fast, slow = _both(monkeypatch, lambda kw=kwargs: readers.read_pairs(path, **kw))
        _same_table(fast, slow)
        _same_inter(encode({"all": fast})["all"], encode({"all": slow})["all"])


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize("bad, message", [
    ("u1,i1,five,1600000000", "line 3002: 'five' is not a number (rating)"),
    ("u1,i1,4,1600000000,extra", "line 3002: malformed row, expected 4 fields (as on line 1), found 5"),
    ("u1,,4,1600000000", "line 3002: empty item id"),
    ("u1", "line 3002: malformed row, expected 4 fields (as on line 1), found 1"),
])
def test_errors_still_name_file_and_line(tmp_path, bad, message):
    rows = [f"u{k % 97},i{k % 89},{k % 5 + 1},{1_600_000_000 + k}" for k in range(5_000)]
    rows[3_000] = bad  # line 3002 (after the header)
    path = tmp_path / "big.csv"
    path.write_text("user_id,item_id,rating,timestamp\n" + "\n".join(rows) + "\n")
    with pytest.raises(Unsupported):
        _fast_used(path)
    with pytest.raises(DataError) as e:
        readers.read_pairs(path)
    assert str(e.value).startswith(f"{path}, {message}")


def test_not_utf8_still_names_the_line(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(b"user_id,item_id\n" + b"u1,i1\n" * 10 + b"u2,caf\xe9\n")
    with pytest.raises(DataError, match=r"latin.csv, line 12: not UTF-8"):
        readers.read_pairs(path)


# ---------------------------------------------------------------------------- pieces
def test_from_pairs_and_sorted_unique_match_numpy():
    rng = np.random.default_rng(0)
    u, i = rng.integers(0, 50, 3_000), rng.integers(0, 70, 3_000)
    a = Interactions.from_pairs(u, i, 50, 70, name="x")
    keys = np.unique(u * 70 + i)  # the pairs, distinct, as numpy's own unique gives them
    assert np.array_equal(a.pair_users() * 70 + a.indices, keys) and a.name == "x"
    with pytest.raises(DataError, match="item id outside"):
        Interactions.from_pairs(u, i, 50, 60)
    for arr in (rng.integers(0, 9, 100), np.array(["b", "a", "b"]), np.zeros(0, np.int64)):
        got = sorted_unique(arr)
        assert got.dtype == np.unique(arr).dtype and np.array_equal(got, np.unique(arr))


def test_coded_table_decodes_and_selects():
    vocab = np.array(["a", "bb", "c"])
    t = PairTable(np.array([2, 0, 2]), np.array([1, 1, 0]), "mem", False, np.array([1.0, 2, 3]),
                  user_vocab=vocab, item_vocab=vocab)
    assert t.users.tolist() == ["c", "a", "c"] and t.items.tolist() == ["bb", "bb", "a"]
    s = t.select(np.array([True, False, True]))
    assert s.coded and s.users.tolist() == ["c", "c"] and s.ratings.tolist() == [1.0, 3.0]
    with pytest.raises(ValueError):
        PairTable(np.zeros(1), np.zeros(1), "mem", True, user_vocab=vocab, item_vocab=vocab)
