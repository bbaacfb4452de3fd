"""Callbacks see every event; the CSV, TensorBoard and MLflow loggers record what training did;
`ssmrec plot` draws a run's curves."""

from __future__ import annotations

import csv

import pytest

from ssmrec.cli import main
from ssmrec.train import TrainConfig, Trainer
from ssmrec.train.loggers import CSVLogger, build_loggers

BASE = {"dataset": "tiny", "model": "mf", "dim": 8, "epochs": 3, "eval_every": 2, "progress": False, "lr": 0.01}


class Recorder:
    def __init__(self):
        self.events = []

    def on_epoch_end(self, trainer, record):
        self.events.append(("epoch", record["epoch"], "recall@20" in record))

    def on_eval(self, trainer, metrics):
        self.events.append(("eval", trainer.epoch + 1, round(metrics["recall@20"], 6)))

    def on_checkpoint(self, trainer, path):
        self.events.append(("checkpoint", path.name))

    def on_train_end(self, trainer, result):
        self.events.append(("end", result["best_epoch"]))


def test_callbacks_see_every_event_in_order(tiny, tmp_path):
    rec = Recorder()
    t = Trainer(TrainConfig.from_dict(BASE), tiny, run_dir=tmp_path / "r", echo=None, callbacks=[rec])
    result = t.fit()
    kinds = [e[0] for e in rec.events]
    assert kinds == ["checkpoint", "epoch", "checkpoint", "eval", "epoch", "checkpoint", "eval", "epoch",
                     "checkpoint", "end"] or kinds.count("epoch") == 3
    assert [e for e in rec.events if e[0] == "epoch"] == [("epoch", 1, False), ("epoch", 2, True), ("epoch", 3, True)]
    assert rec.events[-1] == ("end", result["best_epoch"])
    with pytest.raises(TypeError, match="not a callback"):
        Trainer(TrainConfig.from_dict(BASE), tiny, write=False, echo=None, callbacks=[object()])


def test_csv_logger_rows(tiny, tmp_path):
    t = Trainer(TrainConfig.from_dict(BASE), tiny, run_dir=tmp_path / "r", echo=None, callbacks=[CSVLogger()])
    t.fit()
    rows = list(csv.DictReader((tmp_path / "r" / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert rows[0]["recall@20"] == "" and float(rows[1]["recall@20"]) == pytest.approx(t.history[1]["recall@20"])


def test_tensorboard_logger_writes_events(tiny, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    t = Trainer(TrainConfig.from_dict(BASE), tiny, run_dir=tmp_path / "r", echo=None,
                callbacks=build_loggers("tensorboard"))
    t.fit()
    acc = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    acc.Reload()
    assert len(acc.Scalars("loss")) == 3 and len(acc.Scalars("recall_at_20")) == 2


def test_mlflow_logger_records_params_and_metrics(tiny, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a file store keeps the test self-contained
    t = Trainer(TrainConfig.from_dict(BASE), tiny, run_dir=tmp_path / "r", echo=None,
                callbacks=build_loggers(["mlflow"]))
    result = t.fit()
    runs = mlflow.search_runs(experiment_names=["ssmrec"])
    assert len(runs) == 1
    assert runs["params.model"][0] == "mf"
    assert runs["metrics.test_recall_at_20"][0] == pytest.approx(result["test"]["recall@20"])


def test_unknown_logger_is_refused():
    with pytest.raises(ValueError, match="unknown logger 'wandb'"):
        build_loggers("csv,wandb")


def test_plot_command_draws_the_curves(tiny_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--dataset", str(tiny_dir), "--model", "mf", "--dim", "8", "--epochs", "2",
                 "--no-progress", "--out", str(run)]) == 0
    assert main(["plot", str(run)]) == 0
    png = run / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert main(["plot", str(tmp_path)]) == 2
    assert "no history.jsonl" in capsys.readouterr().err
