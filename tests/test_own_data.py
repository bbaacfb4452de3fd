"""Your own data without friction: named columns, ISO-8601 times, a summary of every filter,
k-core with a temporal split, a global time cut-off, the paper protocol's validation share said."""

from __future__ import annotations

import numpy as np
import pytest

from ssmrec.cli import main
from ssmrec.data import DataConfig, load_dataset


@pytest.fixture
def shop(tmp_path):
    """customer,product,stars,when: 60 customers x 40 products, ISO dates, ratings 1-5."""
    rng = np.random.default_rng(0)
    rows = ["customer,product,stars,when"]
    for c in range(60):
        for p in rng.choice(40, size=12, replace=False):
            day = rng.integers(1, 28)
            month = rng.integers(1, 13)
            rows.append(f"c{c},p{p},{rng.integers(1, 6)},2021-{month:02d}-{day:02d}T10:00:00Z")
    f = tmp_path / "shop.csv"
    f.write_text("\n".join(rows) + "\n")
    return f


def test_named_columns_and_iso_dates(shop, caplog):
    cfg = DataConfig(str(shop), user_col="customer", item_col="product", rating_col="stars", time_col="when",
                     temporal=True, min_rating=3)
    with caplog.at_level("INFO", logger="ssmrec.data"):
        ds = load_dataset(cfg, "holdout")
    assert ds.n_users == 60 and ds.valid is not None
    assert "min_rating 3: 720 -> " in caplog.text and " users, " in caplog.text


def test_kcore_with_temporal_split_keeps_times_aligned(shop, caplog):
    cfg = DataConfig(str(shop), user_col="customer", item_col="product", rating_col="stars", time_col="when",
                     temporal=True, kcore=5, ratios=(0.8, 0.0, 0.2))
    with caplog.at_level("INFO", logger="ssmrec.data"):
        ds = load_dataset(cfg)
    assert "5-core: 720 -> " in caplog.text
    assert ds.train.item_degree.min() >= 1 and ds.test.nnz > 0


def test_global_time_cutoff(shop, caplog):
    cfg = DataConfig(str(shop), user_col="customer", item_col="product", time_col="when", rating_col="stars",
                     time_cutoff="2021-11-01")
    with caplog.at_level("INFO", logger="ssmrec.data"):
        ds = load_dataset(cfg)
    assert "time_cutoff 2021-11-01:" in caplog.text
    assert 0 < ds.test.nnz < ds.train.nnz
    with pytest.raises(Exception, match="leaves no interaction after it"):
        load_dataset(DataConfig(str(shop), user_col="customer", item_col="product", time_col="when",
                                rating_col="stars", time_cutoff="2030-01-01"))


def test_cli_columns_and_the_paper_validation_share_is_said(shop, tmp_path, capsys, caplog):
    caplog.set_level("INFO", logger="ssmrec.data")
    assert main(["train", "--dataset", str(shop), "--user-col", "customer", "--item-col", "product",
                 "--rating-col", "stars", "--time-col", "when", "--model", "mf", "--dim", "8", "--epochs", "1",
                 "--no-progress", "--min-rating", "2", "--out", str(tmp_path / "r")]) == 0
    said = caplog.text  # (the command line prints these on stderr; pytest captures the log records)
    assert "min_rating 2: 720 -> " in said
    assert "validation share 0.1 of ratios" in said and "added to train" in said
    assert main(["train", "--dataset", str(shop), "--user-col", "buyer", "--model", "mf", "--epochs", "1",
                 "--no-progress", "--out", str(tmp_path / "r2")]) == 2
    assert "no user column 'buyer'" in capsys.readouterr().err
