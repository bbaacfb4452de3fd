"""The Python object a notebook user meets: fit on a DataFrame with their own column names,
recommend with original ids, similar items, factors as numpy, save / load restoring exactly,
a run directory opened as a model, and trainer.model() giving detached tensors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import ssmrec
from ssmrec.cli import main
from ssmrec.data import synthetic
from ssmrec.train import TrainConfig, Trainer

SETTINGS = {"model": "lightgcn", "loss": "ssm", "tau": 0.2, "dim": 8, "epochs": 2, "lr": 0.01,
            "batch_size": 512, "threads": 1}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    inter = synthetic(120, 80, seed=4)
    u, i = inter.pairs()
    return pd.DataFrame({"customer": [f"c{x}" for x in u], "product": [f"p{x}" for x in i],
                         "stars": np.ones(u.size)})


@pytest.fixture(scope="module")
def fitted(frame):
    return ssmrec.Recommender(**SETTINGS).fit(frame, user_col="customer", item_col="product")


def test_fit_on_a_dataframe_and_recommend_original_ids(fitted, frame):
    items, scores = fitted.recommend("c7", k=5)
    assert items.shape == (5,) and all(str(x).startswith("p") for x in items)
    assert np.all(np.diff(scores) <= 0)
    seen = set(frame.loc[frame.customer == "c7", "product"])
    assert not seen & set(items)  # training items excluded (the validation/test part may appear)
    many, many_scores = fitted.recommend(["c7", "c9"], k=3)
    assert many.shape == (2, 3) and list(many[0]) == list(items[:3])
    assert fitted.result["protocol"] == "holdout" and fitted.result["valid"]
    with pytest.raises(ValueError, match="unknown user id 'nobody'"):
        fitted.recommend("nobody")


def test_factors_are_the_scored_vectors(fitted):
    u, i = fitted.user_factors, fitted.item_factors
    assert u.shape[1] == i.shape[1] == 8 and u.dtype == np.float32
    row = list(fitted.user_ids).index("c7")
    items, scores = fitted.recommend("c7", k=3)
    cols = [list(fitted.item_ids).index(x) for x in items]
    np.testing.assert_allclose(scores, u[row] @ i[cols].T, rtol=1e-5)  # similarity: ip (the default)


def test_similar_items(fitted):
    items, scores = fitted.similar_items("p3", k=4)
    assert "p3" not in set(items) and len(items) == 4 and np.all(np.diff(scores) <= 0)


def test_save_and_load_restore_exactly(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    back = ssmrec.Recommender.load(tmp_path / "m")
    a, sa = fitted.recommend(["c1", "c2", "c3"], k=10)
    b, sb = back.recommend(["c1", "c2", "c3"], k=10)
    assert (a == b).all() and (sa == sb).all()
    assert np.array_equal(back.item_factors, fitted.item_factors)
    assert back.cfg.model == "lightgcn" and "lightgcn + ssm" in repr(back)
    with pytest.raises(FileExistsError):
        fitted.save(tmp_path / "m")


def test_other_table_types_and_a_given_test_set(frame):
    table = pa.Table.from_pandas(frame)
    rec = ssmrec.Recommender(**{**SETTINGS, "epochs": 1}).fit(table, user_col="customer", item_col="product")
    assert rec.recommend("c1", k=2)[0].shape == (2,)
    train, test = frame.iloc[::2], frame.iloc[1::2]
    rec = ssmrec.Recommender(**{**SETTINGS, "epochs": 1, "protocol": "paper"}).fit(
        train, test=test, user_col="customer", item_col="product")
    assert rec.result["protocol"] == "paper"
    with pytest.raises(ValueError, match="no column 'user'"):
        ssmrec.Recommender(**SETTINGS).fit(frame)


def test_a_run_directory_as_a_model_answers_like_the_cli(tiny_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--dataset", str(tiny_dir), "--model", "mf", "--dim", "8", "--epochs", "2",
                 "--no-progress", "--out", str(run)]) == 0
    rec = ssmrec.Recommender.from_run(run)
    capsys.readouterr()
    assert main(["recommend", str(run), "--user", "4", "-k", "5"]) == 0
    cli_items = [int(line.split()[1]) for line in capsys.readouterr().out.splitlines()[1:]]
    assert list(rec.recommend(4, k=5)[0]) == cli_items


def test_trainer_model_gives_detached_tensors_after_fit(tiny, tmp_path):
    t = Trainer(TrainConfig.from_dict({**SETTINGS, "dataset": "tiny", "epochs": 1}), tiny, write=False, echo=None)
    t.fit()
    u, i = t.model()
    assert not u.requires_grad and u.numpy().shape == (tiny.n_users, 8)
