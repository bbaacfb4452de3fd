"""The Python object a notebook user meets: fit on a DataFrame with their own column names,
recommend with original ids, similar items, factors as numpy, save / load restoring exactly,
a run directory opened as a model, and trainer.model() giving detached tensors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import ssmrec
from ssmrec.cli import main
from ssmrec.data import synthetic
from ssmrec.errors import ConfigError
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


# ---------------------------------------------------------------- issue 19, items 3 to 5


def test_short_lists_are_shorter_not_padded(fitted):
    """k beyond a user's unseen items: all of them, once each, as the CLI and the server answer."""
    n = fitted.item_ids.size
    ex = fitted._export
    unseen = n - ex.seen(ex.user_index("c7")).size
    items, scores = fitted.recommend("c7", k=n + 50)
    assert len(items) == len(scores) == unseen < n
    assert len(set(items.tolist())) == unseen and np.isfinite(scores).all()
    # a batch with a short row: per-user lists; a batch whose rows are all full stays 2-d
    many, many_scores = fitted.recommend(["c7", "c9"], k=n)
    assert [len(x) for x in many] == [unseen, n - ex.seen(ex.user_index("c9")).size]
    assert list(many[0]) == list(items) and all(np.isfinite(s).all() for s in many_scores)
    assert fitted.recommend(["c7", "c9"], k=4)[0].shape == (2, 4)
    assert len(fitted.recommend("c7", k=n, exclude_seen=False)[0]) == n


def test_column_arguments_of_fit_apply_to_files(tmp_path):
    """fit(path, user_col=...) names the columns (it used to ignore them): a header of
    unknown words over string ids is then the header, not a user 'buyer' and an item 'thing'."""
    rows = [f"c{u},p{i}" for u in range(40) for i in range(u % 25, u % 25 + 8)]
    path = tmp_path / "shop.csv"
    path.write_text("buyer,thing\n" + "\n".join(rows) + "\n")
    rec = ssmrec.Recommender(**{**SETTINGS, "model": "mf", "epochs": 1}).fit(path, user_col="buyer",
                                                                                item_col="thing")
    assert "buyer" not in set(rec.user_ids) and "thing" not in set(rec.item_ids)
    assert rec.cfg.user_col == "buyer" and rec.cfg.item_col == "thing"
    with pytest.raises(ConfigError, match=r"user_col='client' differs from Recommender\(user_col='buyer'\)"):
        ssmrec.Recommender(user_col="buyer").fit(path, user_col="client")
    with pytest.raises(ValueError, match="no user column 'client'"):  # used, not ignored: refused by the reader
        ssmrec.Recommender(**SETTINGS).fit(path, user_col="client")
    with pytest.raises(ConfigError, match="test= and valid= take frames"):
        ssmrec.Recommender(**SETTINGS).fit(path, test=pd.DataFrame({"user": ["c1"], "item": ["p1"]}))


def test_constructor_settings_apply_to_frames(frame):
    """Columns, kcore and min_rating given to the constructor are used on a frame too."""
    rare = pd.DataFrame({"customer": ["c1", "c2"], "product": ["rare", "rare2"], "stars": [1.0, 1.0]})
    data = pd.concat([frame.assign(stars=np.arange(len(frame)) % 5 + 1.0), rare])
    rec = ssmrec.Recommender(**{**SETTINGS, "model": "mf", "epochs": 1, "kcore": 2}, user_col="customer",
                             item_col="product").fit(data)
    assert "rare" not in set(rec.item_ids)  # one interaction: not in the 2-core
    rec = ssmrec.Recommender(**{**SETTINGS, "model": "mf", "epochs": 1, "min_rating": 5}).fit(
        data, user_col="customer", item_col="product", rating_col="stars")
    assert np.asarray(rec._export.seen_indices).size <= (data.stars >= 5).sum()  # trained on rows rated 5 only
    with pytest.raises(ConfigError, match="min_rating=3 needs rating_col"):
        ssmrec.Recommender(**SETTINGS).fit(data, user_col="customer", item_col="product", min_rating=3)


def _ssmrec(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The real command, in a fresh process (nothing of this one's memory)."""
    exe = Path(sys.executable).with_name("ssmrec")
    cmd = [str(exe)] if exe.exists() else [shutil.which("ssmrec") or "ssmrec"]
    env = {k: v for k, v in os.environ.items() if k != "SSMREC_DATA"}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_a_run_fitted_on_a_frame_works_with_every_run_command(frame, tmp_path):
    """fit(df, run_dir=...) carries its data: ssmrec evaluate / recommend / train --resume work
    on it, also once the run directory has moved, and fitting into it again names a command
    that works."""
    settings = {**SETTINGS, "model": "mf", "epochs": 2, "ks": [5]}
    data = frame.assign(stars=np.arange(len(frame)) % 5 + 1.0)
    cols = dict(user_col="customer", item_col="product", rating_col="stars", min_rating=2)
    run = tmp_path / "run"
    rec = ssmrec.Recommender(**settings).fit(data, run_dir=run, **cols)
    assert (run / "data" / "frame.csv.gz").is_file()
    # the data the run carries is the data it trained on: the same model as without a run directory
    plain = ssmrec.Recommender(**settings).fit(data, **cols)
    assert plain.result["test"] == rec.result["test"]
    with pytest.raises(ConfigError, match=f"continue it with `ssmrec train --resume {run}`"):
        ssmrec.Recommender(**settings).fit(data, run_dir=run, **cols)

    out = _ssmrec("evaluate", str(run), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"{rec.result['test']['recall@5']:.6f}" in out.stdout
    out = _ssmrec("recommend", str(run), "--user", "c7", "-k", "3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert [line.split()[1] for line in out.stdout.splitlines()[1:]] == list(rec.recommend("c7", k=3)[0])
    out = _ssmrec("train", "--resume", str(run), "--epochs", "3", "--no-progress", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "resuming" in out.stdout and "epoch    3" in out.stdout

    moved = tmp_path / "elsewhere" / "run"  # (in this process from here on: the data is read from disk alike)
    moved.parent.mkdir()
    shutil.move(run, moved)
    assert main(["evaluate", str(moved), "--k", "5"]) == 0


def test_a_run_fitted_on_train_and_test_frames_resumes(frame, tmp_path, capsys):
    train, test = frame.iloc[::3], frame.iloc[1::3]
    run = tmp_path / "run"
    rec = ssmrec.Recommender(**{**SETTINGS, "model": "mf", "epochs": 1, "protocol": "paper"}).fit(
        train, test=test, user_col="customer", item_col="product", run_dir=run)
    assert sorted(p.name for p in (run / "data" / "frame").iterdir()) == ["test.csv.gz", "train.csv.gz"]
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert "resuming" in capsys.readouterr().out and len(rec.history) == 1


def test_a_frame_run_that_cannot_start_leaves_nothing(frame, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match="K 500 is larger"):
        ssmrec.Recommender(**{**SETTINGS, "ks": [500]}).fit(frame, user_col="customer", item_col="product",
                                                           run_dir=run)
    assert not run.exists()
