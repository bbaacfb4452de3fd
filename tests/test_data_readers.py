"""Readers of interaction files, id encoding and the train/test overlap check."""

from __future__ import annotations

import gzip
import logging

import numpy as np
import pandas as pd
import pytest

from ssmrec.data import (
    DataConfig,
    DataError,
    Interactions,
    check_disjoint,
    encode,
    load_dataset,
    read_any,
    read_lightgcn,
    read_pairs,
    read_recbole,
    synthetic,
    write_lightgcn,
)


def write(path, text: str):
    """Write ``text`` to ``path``, gzipped when the name ends in ``.gz``."""
    if str(path).endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def pair_set(inter: Interactions) -> set[tuple]:
    u, i = inter.pairs()
    return set(zip(inter.raw_users(u).tolist(), inter.raw_items(i).tolist()))


def table_pairs(t) -> list[tuple]:
    return list(zip(t.users.tolist(), t.items.tolist()))


# ------------------------------------------------------------------------------------ LightGCN
LIGHTGCN_TEXT = "0 3 1\n1 2\n\n2\n3 0 1 2 4\n"
LIGHTGCN_PAIRS = [(0, 3), (0, 1), (1, 2), (3, 0), (3, 1), (3, 2), (3, 4)]


@pytest.mark.parametrize("name", ["train.txt", "train.txt.gz"])
def test_lightgcn_plain_and_gz(tmp_path, name):
    t = read_lightgcn(write(tmp_path / name, LIGHTGCN_TEXT))
    assert t.integer_ids
    assert t.users.dtype == np.int64 and t.items.dtype == np.int64
    assert table_pairs(t) == LIGHTGCN_PAIRS  # file order kept, blank line skipped
    assert t.source == str(tmp_path / name)


def test_lightgcn_user_without_items_exists(tmp_path):
    # user 2 has a line with no items; user 5 only appears on the last line, with no items
    t = read_lightgcn(write(tmp_path / "t.txt", LIGHTGCN_TEXT + "5\n"))
    assert t.n_users_hint == 6
    inter = encode({"train": t})["train"]
    assert inter.n_users == 6 and inter.n_items == 5
    assert inter.user_degree.tolist() == [2, 1, 0, 4, 0, 0]
    assert inter.row(3).tolist() == [0, 1, 2, 4]  # rows are sorted


def test_lightgcn_roundtrip_with_write_lightgcn(tmp_path):
    inter = synthetic(40, 30, per_user=(0, 6), seed=3)
    assert (inter.user_degree == 0).any()  # some users have no items
    for name in ("x.txt", "x.txt.gz"):
        out = encode({"x": read_lightgcn(write_lightgcn(inter, tmp_path / name))})["x"]
        assert out.n_users == inter.n_users
        assert np.array_equal(out.indptr, inter.indptr)
        assert np.array_equal(out.indices, inter.indices)


def test_lightgcn_tolerates_crlf_and_extra_spaces(tmp_path):
    t = read_lightgcn(write(tmp_path / "t.txt", "0  3 1 \r\n\r\n  1\t2\r\n"))
    assert table_pairs(t) == [(0, 3), (0, 1), (1, 2)]


@pytest.mark.parametrize("name", ["t.txt", "t.txt.gz"])
@pytest.mark.parametrize(
    "text, line, words",
    [
        ("0 1 2\n\n3 4 x\n", 3, ["'x'", "not an integer"]),
        ("0 1 2\n1 2.5\n", 2, ["'2.5'", "not an integer"]),
        ("0 1\n1 2 -7\n", 2, ["negative", "-7"]),
        ("0 1\n-1 2\n", 2, ["negative", "-1"]),
        ("0 1\n\n\n\n1 2 3a\n", 5, ["'3a'"]),
        ("0 1\n1 99999999999999999999999\n", 2, ["too large"]),
    ],
)
def test_lightgcn_bad_ids_name_file_and_line(tmp_path, name, text, line, words):
    path = write(tmp_path / name, text)
    with pytest.raises(DataError) as e:
        read_lightgcn(path)
    msg = str(e.value)
    assert str(path) in msg
    assert f"line {line}:" in msg
    for w in words:
        assert w in msg


@pytest.mark.parametrize("text", ["", "\n\n", "   \n\t\n"])
@pytest.mark.parametrize("name", ["e.txt", "e.txt.gz"])
def test_lightgcn_empty_file(tmp_path, name, text):
    path = write(tmp_path / name, text)
    with pytest.raises(DataError, match="empty") as e:
        read_lightgcn(path)
    assert str(path) in str(e.value)


def _big_lightgcn_gz(tmp_path) -> tuple:
    text = "".join(f"{u} {u % 97} {(u * 7) % 89} {(u * 13) % 83}\n" for u in range(20000))
    data = gzip.compress(text.encode(), compresslevel=9)
    return text, data


def test_lightgcn_truncated_gz(tmp_path):
    text, data = _big_lightgcn_gz(tmp_path)
    path = tmp_path / "train.txt.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as e:
        read_lightgcn(path)
    msg = str(e.value)
    assert str(path) in msg and "truncated" in msg
    line = int(msg.split(", line ")[1].split(":")[0])
    # the line reported is where reading stopped: past the start, before the end
    assert 1 < line <= text.count("\n")


def test_lightgcn_corrupt_gz(tmp_path):
    text, data = _big_lightgcn_gz(tmp_path)
    for k, pos in enumerate([len(data) // 3, len(data) // 2, 2 * len(data) // 3, len(data) - 5]):
        bad = bytearray(data)
        bad[pos] ^= 0x55
        path = tmp_path / f"c{k}.txt.gz"
        path.write_bytes(bytes(bad))
        with pytest.raises(DataError) as e:  # never a bare zlib.error / BadGzipFile
            read_lightgcn(path)
        assert str(path) in str(e.value) and ", line " in str(e.value)


def test_gz_name_without_gzip_content(tmp_path):
    path = tmp_path / "t.txt.gz"
    path.write_text("0 1 2\n")
    with pytest.raises(DataError, match="not a gzip file") as e:
        read_lightgcn(path)
    assert str(path) in str(e.value)


def test_gzip_content_without_gz_name_is_read(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(gzip.compress(b"0 1 2\n1 0\n"))
    assert table_pairs(read_lightgcn(path)) == [(0, 1), (0, 2), (1, 0)]


def test_not_utf8_names_line(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"0 1\n1 2\n2 \xff\xfe\n")
    with pytest.raises(DataError, match="line 3") as e:
        read_lightgcn(path)
    assert str(path) in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_lightgcn(tmp_path / "nope.txt")
    with pytest.raises(DataError, match="no such file"):
        read_pairs(tmp_path / "nope.csv")


# ------------------------------------------------------------------------------------ delimited
@pytest.mark.parametrize("name, sep", [("p.csv", ","), ("p.tsv", "\t"), ("p.csv.gz", ","), ("p.txt", ";")])
@pytest.mark.parametrize("header", [True, False])
def test_pairs_with_and_without_header(tmp_path, name, sep, header):
    rows = [("alice", "book", "4", "100"), ("bob", "pen", "2", "50"), ("alice", "pen", "5", "70")]
    text = "".join(sep.join(r) + "\n" for r in rows)
    if header:
        text = sep.join(["user_id", "item_id", "rating", "timestamp"]) + "\n" + text
    t = read_pairs(write(tmp_path / name, text))
    assert not t.integer_ids
    assert table_pairs(t) == [(u, i) for u, i, _, _ in rows]
    assert t.ratings.tolist() == [4.0, 2.0, 5.0]
    assert t.timestamps.tolist() == [100.0, 50.0, 70.0]


def test_pairs_header_in_any_column_order(tmp_path):
    t = read_pairs(write(tmp_path / "p.csv", "ts,item_id,user_id,stars\n1,i1,u1,3\n2,i2,u2,4\n"))
    assert table_pairs(t) == [("u1", "i1"), ("u2", "i2")]
    assert t.ratings.tolist() == [3.0, 4.0]
    assert t.timestamps.tolist() == [1.0, 2.0]


def test_pairs_optional_columns_absent(tmp_path):
    t = read_pairs(write(tmp_path / "p.csv", "u1,i1\nu2,i2\n"))
    assert t.ratings is None and t.timestamps is None
    t = read_pairs(write(tmp_path / "q.csv", "u1,i1,3\nu2,i2,4\n"))
    assert t.ratings.tolist() == [3.0, 4.0] and t.timestamps is None


def test_pairs_explicit_columns(tmp_path):
    path = write(tmp_path / "p.csv", "a,b,c\nx,1,10\ny,2,20\n")
    t = read_pairs(path, header=True, user_col="c", item_col="a", rating_col="b")
    assert table_pairs(t) == [("10", "x"), ("20", "y")]
    assert t.ratings.tolist() == [1.0, 2.0]
    with pytest.raises(DataError, match="no user column 'zz'"):
        read_pairs(path, header=True, user_col="zz")


def test_string_ids_remapped_with_raw_ids_kept(tmp_path):
    t = read_pairs(write(tmp_path / "p.csv", "user,item\nzed,b\namy,a\nzed,c\nbo,a\n"))
    inter = encode({"all": t})["all"]
    assert inter.n_users == 3 and inter.n_items == 3
    assert inter.user_ids.tolist() == ["amy", "bo", "zed"]
    assert inter.item_ids.tolist() == ["a", "b", "c"]
    assert pair_set(inter) == {("zed", "b"), ("amy", "a"), ("zed", "c"), ("bo", "a")}
    assert inter.user_index("zed") == 2 and inter.item_index("c") == 2
    with pytest.raises(DataError, match="unknown user id 'nobody'"):
        inter.user_index("nobody")


def test_integer_ids_kept(tmp_path):
    t = read_pairs(write(tmp_path / "p.csv", "10,3\n2,7\n"), integer_ids=True)
    assert t.integer_ids and t.users.dtype == np.int64
    assert table_pairs(t) == [(10, 3), (2, 7)]
    inter = encode({"x": t})["x"]
    assert inter.n_users == 11 and inter.n_items == 8 and inter.user_ids is None


def test_min_rating_filters(tmp_path):
    text = "user_id,item_id,rating,timestamp\nu1,a,5,1\nu1,b,2,2\nu2,a,3.5,3\nu2,c,4,4\n"
    t = read_pairs(write(tmp_path / "p.csv", text), min_rating=3.5)
    assert table_pairs(t) == [("u1", "a"), ("u2", "a"), ("u2", "c")]
    assert t.ratings.tolist() == [5.0, 3.5, 4.0]
    assert t.timestamps.tolist() == [1.0, 3.0, 4.0]
    with pytest.raises(DataError, match="no rating column"):
        read_pairs(write(tmp_path / "q.csv", "u1,a\nu2,b\n"), min_rating=3)


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("u1,i1\nu2,i2,x\nu3,i3\n", 2, ["expected 2 fields", "found 3"]),
        ("u1,i1\nu2,i2\nu3\n", 3, ["expected 2 fields", "found 1"]),
        ("user_id,item_id\n\nu1,i1\n\nu2,i2,7,8\n", 5, ["found 4"]),
        ("u1,i1,4\n\nu2,i2,five\n", 3, ["'five'", "rating"]),
        ("\n\nuser_id,item_id,rating\nu1,i1,4\n\nu2,i2,x\n", 6, ["'x'", "rating"]),
        ("user_id,item_id,rating\nu1,i1,4\nu2,i2,\n", 3, ["''", "not a number"]),
        ("user_id,item_id\nu1,i1\n,i2\n", 3, ["empty user id"]),
        ('u1,i1\n"u2",i2,3\n', 2, ["malformed"]),
    ],
)
def test_pairs_malformed_rows_name_file_and_line(tmp_path, text, line, words):
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(DataError) as e:
        read_pairs(path)
    msg = str(e.value)
    assert str(path) in msg and f"line {line}:" in msg
    for w in words:
        assert w in msg


def test_pairs_bad_integer_ids_after_filtering_name_right_line(tmp_path):
    # the bad id is on line 4; the row before it is filtered out by min_rating
    path = write(tmp_path / "p.csv", "1,2,5\n2,3,1\n3,4,5\n4,x,5\n")
    with pytest.raises(DataError) as e:
        read_pairs(path, integer_ids=True, min_rating=3)
    assert f"{path}, line 4:" in str(e.value) and "'x'" in str(e.value)
    with pytest.raises(DataError, match="line 2: negative user id -2"):
        read_pairs(write(tmp_path / "n.csv", "1,2\n-2,3\n"), integer_ids=True)
    with pytest.raises(DataError, match="line 1: '1.5' is not an integer item id"):
        read_pairs(write(tmp_path / "f.csv", "1,1.5\n"), integer_ids=True)


@pytest.mark.parametrize("text, why", [
    ("customer,product\n1,2\n3,4\n", "column names"),  # issue 19: trained a user 'customer'
    ("customer,product,stars\n1,2,3\n3,4,5\n", "column names"),  # issue 19: 'stars' is not a number
    ("CustomerID;sku_code\n1;2\n3;4\n", "column names"),
    ("buyer,thing\n1,2\n3,4\n", "'buyer' in column 1"),  # words over integer ids
    ("buyer,thing,stars\nc1,p1,5\nc2,p2,4\n", "'stars' in column 3"),  # words over ratings
    ("buyer,thing,stars,when\nc1,p1,5,2021-01-02\nc2,p2,4,2021-03-04T10:00:00Z\n", "'stars' in column 3"),
])
def test_unknown_header_is_detected_and_said(tmp_path, caplog, text, why):
    path = write(tmp_path / "p.csv", text)
    with caplog.at_level(logging.WARNING, logger="ssmrec.data"):
        t = read_pairs(path)
    header = text.splitlines()[0].replace(";", ",").split(",")
    assert not set(header) & (set(t.users.tolist()) | set(t.items.tolist()))  # never a user or item
    assert len(t) == len(text.splitlines()) - 1
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 1 and "line 1 read as a header" in said[0] and why in said[0], said
    assert f"user ids {header[0]!r}, item ids {header[1]!r}" in said[0] and "--user-col" in said[0]
    if "stars" in header:
        assert t.ratings.tolist()[-1] in (4.0, 5.0) and "ratings 'stars'" in said[0]
    if "when" in header:  # the time column of a guessed header is found by position, dates or numbers
        assert t.timestamps is not None and "timestamps 'when'" in said[0]


@pytest.mark.parametrize("text, pairs", [
    ("alice,book\nbob,pen\n", [("alice", "book"), ("bob", "pen")]),  # string ids: row 1 is data
    ("buyer,thing\nalice,book\n", [("buyer", "thing"), ("alice", "book")]),  # indistinguishable: data
    ("alice,book,4\nbob,pen,5\n", [("alice", "book"), ("bob", "pen")]),
    ("user,book\nbob,pen\n", [("bob", "pen")]),  # a known user column name: header (rule 1, said nowhere)
    ("customer,pen\nbob,book\n", [("customer", "pen"), ("bob", "book")]),  # one column word is not enough
    ("abc,5\n1,2\n", [("abc", "5"), ("1", "2")]),  # a digit on row 1: data
])
def test_first_row_of_data_stays_data(tmp_path, caplog, text, pairs):
    with caplog.at_level(logging.WARNING, logger="ssmrec.data"):
        t = read_pairs(write(tmp_path / "p.csv", text))
    assert table_pairs(t) == pairs
    assert "read as a header" not in caplog.text


def test_unparsable_first_row_is_refused_naming_line_and_flags(tmp_path):
    path = write(tmp_path / "p.csv", "u1,i1,five\nu2,i2,4\n")  # a digit on row 1: not a header of names
    with pytest.raises(DataError) as e:
        read_pairs(path)
    msg = str(e.value)
    assert f"{path}, line 1: 'five' is not a number (rating)" in msg and "--user-col/--item-col" in msg
    with pytest.raises(DataError) as e:  # the hint is for line 1 only
        read_pairs(write(tmp_path / "q.csv", "u1,i1,4\nu2,i2,five\n"))
    assert "line 2:" in str(e.value) and "--user-col" not in str(e.value)
    # a named column makes line 1 the header, whatever it holds
    t = read_pairs(write(tmp_path / "r.csv", "buyer,thing\nalice,book\n"), user_col="buyer")
    assert table_pairs(t) == [("alice", "book")]


def test_guessed_header_reaches_training_data(tmp_path):
    """Through load_dataset (what the CLI, the API and grids read with): no header row trained."""
    rows = [f"{u},{i},{1 + (u + i) % 5}" for u in range(20) for i in range(u % 7, u % 7 + 6)]
    path = write(tmp_path / "shop.csv", "customer,product,stars\n" + "\n".join(rows) + "\n")
    ds = load_dataset(DataConfig(str(path), ratios=(0.8, 0.0, 0.2)))
    assert "customer" not in ds.train.user_ids.tolist() and "product" not in ds.train.item_ids.tolist()
    assert ds.train.nnz + ds.test.nnz == len(rows)


def test_column_settings_are_refused_where_there_are_no_columns(tmp_path):
    """Never ignored: a LightGCN or RecBole file in a folder dataset has no columns to name."""
    lightgcn = write(tmp_path / "train.txt", "0 1 2\n1 2\n")
    with pytest.raises(DataError, match="user_col given but the file is in the LightGCN format"):
        read_any(lightgcn, user_col="customer")
    inter = write(tmp_path / "a.inter", "user_id:token\titem_id:token\nu1\ti1\n")
    with pytest.raises(DataError, match="item_col given but a RecBole .inter file names its fields"):
        read_any(inter, item_col=1)
    assert len(read_any(lightgcn)) == 3 and len(read_any(inter, min_rating=None)) == 1


def test_pairs_header_only_and_empty(tmp_path):
    with pytest.raises(DataError, match="no rows"):
        read_pairs(write(tmp_path / "h.csv", "user_id,item_id\n"))
    with pytest.raises(DataError, match="empty"):
        read_pairs(write(tmp_path / "e.csv", "\n"))


def test_pairs_single_column(tmp_path):
    with pytest.raises(DataError, match="at least a user and an item column"):
        read_pairs(write(tmp_path / "one.csv", "a\nb\n"))


def test_pairs_whitespace_and_double_colon(tmp_path):
    t = read_pairs(write(tmp_path / "p.txt", "a b 3\nc  d 4\n"))
    assert table_pairs(t) == [("a", "b"), ("c", "d")] and t.ratings.tolist() == [3.0, 4.0]
    t = read_any(write(tmp_path / "ratings.dat", "1::10::5::978300760\n2::20::3::978302109\n"),
                 integer_ids=True)
    assert table_pairs(t) == [(1, 10), (2, 20)]
    assert t.ratings.tolist() == [5.0, 3.0] and t.timestamps.tolist() == [978300760.0, 978302109.0]


def test_parquet_roundtrip(tmp_path):
    frame = pd.DataFrame({
        "user_id": ["u2", "u1", "u2"], "item_id": ["b", "a", "a"],
        "rating": [4.0, 1.0, 5.0], "timestamp": [30, 10, 20],
    })
    path = tmp_path / "x.parquet"
    frame.to_parquet(path)
    t = read_pairs(path)
    assert table_pairs(t) == [("u2", "b"), ("u1", "a"), ("u2", "a")]
    assert t.ratings.tolist() == [4.0, 1.0, 5.0] and t.timestamps.tolist() == [30.0, 10.0, 20.0]
    t = read_any(path, min_rating=4)
    assert table_pairs(t) == [("u2", "b"), ("u2", "a")]
    # integer columns with integer_ids
    pd.DataFrame({"user": [3, 1], "item": [0, 2]}).to_parquet(tmp_path / "i.parquet")
    t = read_pairs(tmp_path / "i.parquet", integer_ids=True)
    assert table_pairs(t) == [(3, 0), (1, 2)]


def test_parquet_missing_id_and_bad_file(tmp_path):
    pd.DataFrame({"user_id": ["u1", None], "item_id": ["a", "b"]}).to_parquet(tmp_path / "m.parquet")
    with pytest.raises(DataError, match="row 2: missing user id"):
        read_pairs(tmp_path / "m.parquet")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="not a readable Parquet file") as e:
        read_pairs(tmp_path / "bad.parquet")
    assert str(tmp_path / "bad.parquet") in str(e.value)


# ------------------------------------------------------------------------------------ RecBole
RECBOLE = ("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
           "u1\ti9\t4\t881250949\nu2\ti8\t2\t891717742\nu1\ti8\t5\t878887116\n")


@pytest.mark.parametrize("name", ["ml.inter", "ml.inter.gz"])
def test_recbole_inter(tmp_path, name):
    path = write(tmp_path / name, RECBOLE)
    for t in (read_recbole(path), read_any(path)):
        assert table_pairs(t) == [("u1", "i9"), ("u2", "i8"), ("u1", "i8")]
        assert t.ratings.tolist() == [4.0, 2.0, 5.0]
        assert t.timestamps.tolist() == [881250949.0, 891717742.0, 878887116.0]
    assert table_pairs(read_recbole(path, min_rating=4)) == [("u1", "i9"), ("u1", "i8")]


def test_recbole_without_rating_and_crlf(tmp_path):
    path = write(tmp_path / "a.inter", "user_id:token\titem_id:token\r\nu1\ti1\r\nu2\ti2\r\n")
    t = read_recbole(path)
    assert table_pairs(t) == [("u1", "i1"), ("u2", "i2")] and t.ratings is None


def test_recbole_header_without_item_id(tmp_path):
    path = write(tmp_path / "a.inter", "user_id:token\tproduct:token\trating:float\nu1\tp1\t3\n")
    with pytest.raises(DataError) as e:
        read_recbole(path)
    msg = str(e.value)
    assert str(path) in msg and "line 1" in msg and "'item_id'" in msg


def test_recbole_not_a_recbole_header(tmp_path):
    path = write(tmp_path / "a.inter", "user\titem\nu1\ti1\n")
    with pytest.raises(DataError, match="not a RecBole header"):
        read_recbole(path)


# ------------------------------------------------------------------------------------ read_any
def test_read_any_dispatch(tmp_path):
    assert read_any(write(tmp_path / "a.txt", "0 1 2\n")).integer_ids
    t = read_any(write(tmp_path / "b.txt", "a,x\nb,y\n"))
    assert not t.integer_ids and table_pairs(t) == [("a", "x"), ("b", "y")]
    with pytest.raises(DataError, match="LightGCN format"):
        read_any(write(tmp_path / "c.txt", "0 1 2\n"), min_rating=3)


# ------------------------------------------------------------------------------------ encoding
def test_encode_shared_string_id_space(tmp_path):
    train = read_pairs(write(tmp_path / "train.csv", "user,item\nann,x\nbob,y\n"))
    test = read_pairs(write(tmp_path / "test.csv", "user,item\ncat,x\nann,z\n"))
    out = encode({"train": train, "test": test})
    tr, te = out["train"], out["test"]
    assert (tr.n_users, tr.n_items) == (te.n_users, te.n_items) == (3, 3)
    assert tr.user_ids.tolist() == te.user_ids.tolist() == ["ann", "bob", "cat"]
    assert tr.item_ids.tolist() == te.item_ids.tolist() == ["x", "y", "z"]
    assert pair_set(tr) == {("ann", "x"), ("bob", "y")}
    assert pair_set(te) == {("cat", "x"), ("ann", "z")}
    # the same raw id maps to the same index in both
    assert tr.user_index("ann") == te.user_index("ann") == 0


def test_encode_integer_tables_take_the_largest_ids(tmp_path):
    a = read_lightgcn(write(tmp_path / "a.txt", "0 1\n1 5\n"))
    b = read_lightgcn(write(tmp_path / "b.txt", "4 2\n"))
    out = encode({"train": a, "test": b})
    assert out["train"].n_users == out["test"].n_users == 5
    assert out["train"].n_items == out["test"].n_items == 6
    out = encode({"train": a, "test": b}, n_users=10, n_items=20)
    assert (out["test"].n_users, out["test"].n_items) == (10, 20)


def test_encode_refuses_mixed_id_kinds(tmp_path):
    a = read_lightgcn(write(tmp_path / "a.txt", "0 1\n"))
    b = read_pairs(write(tmp_path / "b.csv", "a,x\n"))
    with pytest.raises(DataError, match="cannot mix"):
        encode({"train": a, "test": b})


def test_duplicates_counted_once(tmp_path, caplog):
    t = read_lightgcn(write(tmp_path / "d.txt", "0 1 1 2\n1 3\n0 2\n"))
    assert len(t) == 5
    with caplog.at_level(logging.WARNING, logger="ssmrec.data.encoding"):
        inter = encode({"x": t})["x"]
    assert inter.nnz == 3 and inter.row(0).tolist() == [1, 2]
    assert "2 duplicate" in caplog.text
    t = read_pairs(write(tmp_path / "d.csv", "a,x\nb,y\na,x\na,x\n"))
    assert encode({"x": t})["x"].nnz == 2


def test_check_disjoint_names_both_sets_and_an_example(tmp_path):
    train = read_pairs(write(tmp_path / "train.csv", "user,item\nann,x\nbob,y\n"))
    test = read_pairs(write(tmp_path / "test.csv", "user,item\nbob,y\nann,z\n"))
    out = encode({"train": train, "test": test})
    with pytest.raises(DataError) as e:
        check_disjoint(out["train"], out["test"])
    msg = str(e.value)
    assert str(tmp_path / "train.csv") in msg and str(tmp_path / "test.csv") in msg
    assert "1 pair(s)" in msg and "user bob item y" in msg
    ok = encode({"train": train, "test": read_pairs(write(tmp_path / "t2.csv", "user,item\nann,y\n"))})
    check_disjoint(ok["train"], ok["test"])  # no overlap: no error


# ------------------------------------------------------------------------------------ folders
def _folder(tmp_path, train: str, test: str, valid: str | None = None, gz: bool = False):
    d = tmp_path / "ds"
    d.mkdir()
    ext = ".txt.gz" if gz else ".txt"
    write(d / f"train{ext}", train)
    write(d / f"test{ext}", test)
    if valid is not None:
        write(d / f"valid{ext}", valid)
    return d


@pytest.mark.parametrize("gz", [False, True])
def test_load_dataset_folder(tmp_path, gz):
    d = _folder(tmp_path, "0 1 2\n1 0\n2 3\n", "0 3\n1 2\n2\n", gz=gz)
    ds = load_dataset(DataConfig(str(d)))
    assert ds.name == "ds" and ds.n_users == 3 and ds.n_items == 4
    assert ds.train.nnz == 4 and ds.test.nnz == 2 and ds.valid is None
    assert ds.train.n_items == ds.test.n_items


def test_load_dataset_folder_with_valid(tmp_path):
    d = _folder(tmp_path, "0 1 2\n1 0 3 4\n", "0 3\n1 2\n", valid="0 4\n1 1\n")
    paper = load_dataset(DataConfig(str(d)), "paper")
    assert paper.valid is None and paper.train.nnz == 7  # validation folded into train
    holdout = load_dataset(DataConfig(str(d)), "holdout")
    assert holdout.valid.nnz == 2 and holdout.train.nnz == 5
    assert pair_set(holdout.valid) == {(0, 4), (1, 1)}


@pytest.mark.parametrize("which", ["test", "valid"])
def test_load_dataset_folder_refuses_overlap(tmp_path, which):
    train, test, valid = "0 1 2\n1 0\n", "0 3\n1 2\n", "0 4\n"
    if which == "test":
        test = "0 3 2\n1 2\n"  # (0, 2) is also a training pair
    else:
        valid = "1 0\n"  # (1, 0) is also a training pair
    d = _folder(tmp_path, train, test, valid=valid)
    with pytest.raises(DataError, match="appear in both") as e:
        load_dataset(DataConfig(str(d)))
    assert which in str(e.value) and "train" in str(e.value)


def test_load_dataset_folder_missing_test(tmp_path):
    d = tmp_path / "ds"
    d.mkdir()
    write(d / "train.txt", "0 1\n")
    with pytest.raises(DataError, match="needs train.txt and test.txt"):
        load_dataset(DataConfig(str(d)))


def test_load_dataset_unknown_protocol_and_path(tmp_path):
    with pytest.raises(DataError, match="unknown protocol"):
        load_dataset(DataConfig(str(tmp_path)), "nope")
    with pytest.raises(DataError, match="no such file or folder"):
        load_dataset(DataConfig(str(tmp_path / "missing" / "x.csv")))


def test_load_single_file_split(tmp_path):
    inter = synthetic(120, 60, seed=2)
    path = write_lightgcn(inter, tmp_path / "all.txt")
    ds = load_dataset(DataConfig(str(path), ratios=(0.6, 0.2, 0.2), split_seed=4), "holdout")
    parts = [ds.train, ds.valid, ds.test]
    assert sum(p.nnz for p in parts) == inter.nnz
    assert set().union(*(pair_set(p) for p in parts)) == pair_set(inter)
    assert ds.valid.nnz / inter.nnz == pytest.approx(0.2, abs=0.03)


def test_load_single_file_temporal(tmp_path):
    rows = ["user_id,item_id,timestamp"]
    for u in range(6):
        for k in range(5):
            rows.append(f"u{u},i{(u + 3 * k) % 11},{100 * u + (7 * k) % 5}")
    path = write(tmp_path / "log.csv", "\n".join(rows) + "\n")
    ds = load_dataset(DataConfig(str(path), ratios=(0.6, 0.0, 0.4), temporal=True), "paper")
    t = read_pairs(path)
    stamp = {(u, i): s for u, i, s in zip(t.users, t.items, t.timestamps)}
    for u in range(6):
        ru = ds.train.user_ids[u]
        train_t = [stamp[(ru, ds.train.item_ids[i])] for i in ds.train.row(u)]
        test_t = [stamp[(ru, ds.test.item_ids[i])] for i in ds.test.row(u)]
        assert len(test_t) == 2 and min(test_t) > max(train_t)


def test_ids_only_in_held_out_data_are_dropped_with_a_warning(tmp_path, caplog):
    """LightGCN format, 4 trained items, a test item id 500: it is not a catalogue of 501 items
    (497 of them untrained and ranked) but a dropped test pair; a test-only user likewise."""
    d = _folder(tmp_path, "0 0 1\n1 2 3\n", "0 2 500\n1 0\n5 1\n")
    with caplog.at_level("WARNING"):
        ds = load_dataset(DataConfig(str(d)))
    assert ds.n_items == 4 and ds.test.n_items == 4
    assert pair_set(ds.test) == {(0, 2), (1, 0)}
    assert "test: 2 of 4 pairs dropped from evaluation: 1 item(s) and 1 user(s) never seen" in caplog.text


def test_items_without_training_leave_the_catalogue_keeping_their_ids(tmp_path, caplog):
    d = _folder(tmp_path, "0 0 4\n1 4 6\n", "0 6\n1 0\n1 5\n")
    with caplog.at_level("WARNING"):
        ds = load_dataset(DataConfig(str(d)))
    assert ds.n_items == 3 and list(ds.train.raw_items(np.arange(3))) == [0, 4, 6]
    assert ds.train.item_index(6) == 2
    assert pair_set(ds.test) == {(0, 6), (1, 0)}
    assert "4 item id(s) with no training interaction left out of the catalogue (3 items remain)" in caplog.text


def test_absurd_integer_ids_are_refused_before_allocating(tmp_path):
    d = _folder(tmp_path, "0 0 1\n1 2 2000000000\n", "0 2\n")
    with pytest.raises(DataError, match=r"item id 2000000000 would make 2,000,000,001 item rows for 4 distinct"):
        load_dataset(DataConfig(str(d)))
