"""Callbacks: your code at the training loop's events, and loggers built on them.

A callback is any object with some of these methods (missing ones are skipped)::

    on_epoch_end(trainer, record)     # after every epoch: record = the history line
                                      #   (epoch, loss, train_seconds, metrics when evaluated)
    on_eval(trainer, metrics)         # after every evaluation (validation or test-selected)
    on_checkpoint(trainer, path)      # after a checkpoint file was written
    on_train_end(trainer, result)     # once, with the final result

Pass them as ``Trainer(..., callbacks=[...])`` or ``Recommender.fit(..., callbacks=[...])``; the
command line builds the loggers below from ``--log csv,tensorboard,mlflow``. Only rank 0 of a
distributed run calls them. TensorBoard and MLflow are optional extras
(``pip install "ssmrec[tensorboard]"``, ``"ssmrec[mlflow]"``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

EVENTS = ("on_epoch_end", "on_eval", "on_checkpoint", "on_train_end")
LOGGERS = ("csv", "tensorboard", "mlflow")


class Callbacks:
    """Calls each event on every callback that defines it."""

    def __init__(self, callbacks: list[Any] | None = None):
        self.items = list(callbacks or [])
        for cb in self.items:
            if not any(hasattr(cb, e) for e in EVENTS):
                raise TypeError(f"{cb!r} is not a callback: it has none of {', '.join(EVENTS)}")

    def __call__(self, event: str, *args: Any) -> None:
        for cb in self.items:
            fn = getattr(cb, event, None)
            if fn is not None:
                fn(*args)


class CSVLogger:
    """One row per epoch in ``metrics.csv`` of the run directory (or ``path``): epoch, loss,
    seconds and the metrics when evaluated (empty otherwise)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else None
        self._columns: list[str] | None = None

    def on_epoch_end(self, trainer, record: dict[str, Any]) -> None:
        path = self.path or (trainer.run.path / "metrics.csv" if trainer.run else None)
        if path is None:
            return
        if self._columns is None:
            metrics = [f"{m}@{k}" for m in ("recall", "ndcg", "precision", "hitrate", "mrr") for k in trainer.cfg.ks]
            self._columns = ["epoch", "loss", "train_seconds", *metrics]
            if not path.exists() or trainer.epoch <= 1:
                with path.open("w", newline="") as f:
                    csv.writer(f).writerow(self._columns)
        with path.open("a", newline="") as f:
            csv.writer(f).writerow([record.get(c, "") for c in self._columns])


class TensorBoardLogger:
    """Scalars ``loss`` and every metric per epoch, in ``RUN_DIR/tensorboard`` (or ``log_dir``):
    ``tensorboard --logdir runs``."""

    def __init__(self, log_dir: str | Path | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ImportError("the TensorBoard logger needs the tensorboard package: "
                              'pip install "ssmrec[tensorboard]"') from e
        self._make = SummaryWriter
        self.log_dir = log_dir
        self.writer = None

    def on_epoch_end(self, trainer, record: dict[str, Any]) -> None:
        if self.writer is None:
            where = self.log_dir or (trainer.run.path / "tensorboard" if trainer.run else None)
            self.writer = self._make(log_dir=str(where) if where else None)
        step = record["epoch"]
        self.writer.add_scalar("loss", record["loss"], step)
        for k, v in record.items():
            if "@" in k:
                self.writer.add_scalar(k.replace("@", "_at_"), v, step)
        self.writer.flush()

    def on_train_end(self, trainer, result: dict[str, Any]) -> None:
        if self.writer is not None:
            self.writer.close()


class MLflowLogger:
    """Parameters (every setting), per-epoch metrics and the final test metrics in an MLflow run
    (where ``$MLFLOW_TRACKING_URI`` points: a tracking server, ``sqlite:///mlflow.db``, or a
    folder with ``MLFLOW_ALLOW_FILE_STORE=true``)."""

    def __init__(self, experiment: str = "ssmrec", run_name: str | None = None):
        try:
            import mlflow
        except ImportError as e:
            raise ImportError('the MLflow logger needs mlflow: pip install "ssmrec[mlflow]"') from e
        self.mlflow, self.experiment, self.run_name = mlflow, experiment, run_name
        self.active = None

    def _start(self, trainer) -> None:
        if self.active is None:
            self.mlflow.set_experiment(self.experiment)
            name = self.run_name or (trainer.run.path.name if trainer.run else None)
            self.active = self.mlflow.start_run(run_name=name)
            self.mlflow.log_params({k: str(v) for k, v in trainer.cfg.to_dict().items()})

    def on_epoch_end(self, trainer, record: dict[str, Any]) -> None:
        self._start(trainer)
        values = {k.replace("@", "_at_"): float(v) for k, v in record.items() if "@" in k or k == "loss"}
        self.mlflow.log_metrics(values, step=record["epoch"])

    def on_train_end(self, trainer, result: dict[str, Any]) -> None:
        self._start(trainer)
        self.mlflow.log_metrics({f"test_{k.replace('@', '_at_')}": float(v) for k, v in result["test"].items()})
        self.mlflow.end_run()
        self.active = None


def build_loggers(names: str | list[str] | tuple[str, ...] | None) -> list[Any]:
    """Loggers from names (``"csv,tensorboard"`` or a list); unknown names are refused."""
    if not names:
        return []
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    out = []
    for n in names:
        n = n.strip().lower()
        if n not in LOGGERS:
            raise ValueError(f"unknown logger {n!r}; choose from {', '.join(LOGGERS)}")
        out.append({"csv": CSVLogger, "tensorboard": TensorBoardLogger, "mlflow": MLflowLogger}[n]())
    return out
