"""The command line, as a user runs it: train, evaluate, recommend; errors are one clear line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ssmrec.cli import main
from ssmrec.data import read_lightgcn
from ssmrec.eval.metrics import metric_values

FAST = ["--dim", "16", "--batch-size", "256", "--epochs", "2", "--no-progress", "--lr", "0.01", "--tau", "0.2"]


@pytest.fixture
def trained(tiny_dir, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--dataset", str(tiny_dir), "--model", "lightgcn", "--loss", "ssm", *FAST,
                 "--out", str(out)]) == 0
    return out


def test_train_writes_run(trained, capsys):
    m = json.loads((trained / "metrics.json").read_text())
    assert m["epochs_run"] == 2 and "recall@20" in m["test"]


def test_evaluate_agrees_with_training(trained, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert main(["evaluate", str(trained), "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    recorded = json.loads((trained / "metrics.json").read_text())["test"]
    assert got == recorded
    assert main(["evaluate", str(trained), "--k", "5", "50", "--similarity", "cos"]) == 0
    text = capsys.readouterr().out
    assert "recall@50" in text and "similarity cos" in text


def test_recommend_all_agrees_with_evaluate(trained, tiny_dir, tmp_path):
    """An independent check: metrics recomputed from the written top-K lists equal evaluate's."""
    recs = tmp_path / "recs.tsv"
    assert main(["recommend", str(trained), "--all", "--out", str(recs), "-k", "20"]) == 0
    frame = pd.read_csv(recs, sep="\t")
    assert list(frame.columns) == ["user", "rank", "item", "score"]
    train = read_lightgcn(tiny_dir / "train.txt")
    test = read_lightgcn(tiny_dir / "test.txt.gz")
    seen = set(zip(train.users.tolist(), train.items.tolist()))
    assert not any((u, i) in seen for u, i in zip(frame.user, frame.item))
    relevant: dict[int, set] = {}
    for u, i in zip(test.users.tolist(), test.items.tolist()):
        relevant.setdefault(u, set()).add(i)
    recall = []
    for u, group in frame.sort_values(["user", "rank"]).groupby("user"):
        if u not in relevant:
            continue
        assert group["score"].is_monotonic_decreasing
        hits = np.array([i in relevant[u] for i in group["item"]])
        import torch

        recall.append(metric_values(torch.tensor(hits[None]), torch.tensor([len(relevant[u])]), 20)["recall"].item())
    out = tmp_path / "m.json"
    main(["evaluate", str(trained), "--k", "20", "--json", str(out)])
    assert np.mean(recall) == pytest.approx(json.loads(out.read_text())["recall@20"], abs=1e-12)
    pq = tmp_path / "recs.parquet"
    assert main(["recommend", str(trained), "--all", "--out", str(pq), "-k", "20"]) == 0
    back = pd.read_parquet(pq)
    assert back[["user", "rank", "item"]].equals(frame[["user", "rank", "item"]])
    assert np.allclose(back.score, frame.score, atol=1e-6)


def test_recommend_one_user(trained, capsys):
    assert main(["recommend", str(trained), "--user", "7", "-k", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["rank", "item", "score"] and len(lines) == 4


def test_unknown_user_is_a_clear_error(trained, capsys):
    assert main(["recommend", str(trained), "--user", "99999"]) == 2
    assert "unknown user id '99999'" in capsys.readouterr().err


def test_string_ids_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"item-{i}") for u in range(60) for i in rng.choice(40, 8, replace=False)]
    pd.DataFrame(rows, columns=["user_id", "item_id"]).to_csv(tmp_path / "data.csv", index=False)
    out = tmp_path / "run"
    assert main(["train", "--dataset", str(tmp_path / "data.csv"), "--model", "mf", *FAST,
                 "--out", str(out)]) == 0
    recs = tmp_path / "r.tsv"
    assert main(["recommend", str(out), "--all", "--out", str(recs), "-k", "5"]) == 0
    frame = pd.read_csv(recs, sep="\t")
    assert frame.user.str.startswith("u").all() and frame.item.str.startswith("item-").all()
    assert main(["recommend", str(out), "--user", "u3", "-k", "2"]) == 0


def test_toml_config_and_flag_override(tiny_dir, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'dataset = "{tiny_dir}"\nmodel = "mf"\nloss = "bpr"\nepochs = 5\ndim = 8\nprogress = false\n')
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--epochs", "1", "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())["config"]
    assert saved["loss"] == "bpr" and saved["epochs"] == 1 and saved["dim"] == 8


def test_config_errors_name_the_setting(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('tua = 0.1\n')
    assert main(["train", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "unknown setting 'tua'" in err and "tau" in err and str(cfg) in err
    assert main(["train", "--loss", "warp"]) == 2
    assert "loss" in capsys.readouterr().err
    assert main(["train", "--tau", "abc"]) == 2
    assert "tau cannot be 'abc'" in capsys.readouterr().err


def test_resume_via_cli(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", str(tiny_dir), "--model", "mf", *FAST, "--out", str(out)]) == 0
    assert main(["train", "--resume", str(out), "--epochs", "3"]) == 0
    hist = (out / "history.jsonl").read_text().splitlines()
    assert len(hist) == 3
    assert main(["train", "--resume", str(out), "--tau", "0.5"]) == 2


def test_datasets_command(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("SSMREC_DATA", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in ("gowalla", "yelp2018", "amazon-book", "alibaba-ifashion"):
        assert name in out
    assert "missing" in out
