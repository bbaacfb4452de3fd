"""ssmrec as one Python object, the way users of implicit and RecBole expect: fit on a DataFrame
(or a dataset name / folder), recommend, similar items, the factors that are scored, save / load.

    import pandas as pd, ssmrec
    df = pd.read_csv("ratings.csv")                    # columns customer, product, ...
    rec = ssmrec.Recommender(model="lightgcn", loss="ssm", tau=0.12, epochs=20)
    rec.fit(df, user_col="customer", item_col="product")
    items, scores = rec.recommend("c42", k=10)         # original ids, seen items excluded
    rec.save("my-model"); rec = ssmrec.Recommender.load("my-model")

Answers come from an export (:mod:`ssmrec.train.export`): numpy arrays of the vectors exactly as
they are scored, so a loaded model answers without torch and without the data.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ssmrec.serve.export import Export, _top, load_export

API_DEFAULTS = {"protocol": "holdout", "progress": False}
"""Defaults that differ from ``ssmrec train``'s: on your own data the epoch is selected on a
validation set (``holdout``), not on test."""


class Recommender:
    """A recommender trained with any ssmrec model and loss.

    Args:
        **settings: any ``ssmrec train`` setting (``model``, ``loss``, ``tau``, ``epochs``,
            ``ratios``, ``seed``...; see :class:`ssmrec.train.TrainConfig`), checked now.
            Defaults as ``ssmrec train`` except ``protocol="holdout"`` and ``progress=False``.
    """

    def __init__(self, **settings: Any):
        from ssmrec.train.config import TrainConfig

        self.cfg = TrainConfig.from_dict({**API_DEFAULTS, **settings}, source="Recommender")
        self.result: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []
        self._export: Export | None = None

    # ------------------------------------------------------------------ training
    def fit(self, data: Any, *, test: Any = None, valid: Any = None, user_col: str = "user",
            item_col: str = "item", rating_col: str | None = None, time_col: str | None = None,
            min_rating: float | None = None, run_dir: str | Path | None = None,
            callbacks: list[Any] | None = None, verbose: bool = False) -> Recommender:
        """Train. ``data``: a DataFrame / polars frame / pyarrow Table with the named columns
        (split by the ``ratios`` setting, or used as training data when ``test`` is given), or a
        dataset as ``ssmrec train --dataset`` takes it (registry name, folder, file).
        ``run_dir``: also write a run directory there (checkpoints, history, resumable).
        ``callbacks``: see :mod:`ssmrec.train.loggers`."""
        from ssmrec.data.dataset import from_tables, load_dataset
        from ssmrec.data.readers import table_from_frame
        from ssmrec.train.trainer import Trainer

        cfg = self.cfg
        if isinstance(data, (str, Path)):
            cfg = cfg.replace({"dataset": str(data)}, source="fit")
            dataset = load_dataset(cfg.data_config(), cfg.protocol)
        else:
            cols = dict(user_col=user_col, item_col=item_col, rating_col=rating_col, time_col=time_col,
                        min_rating=min_rating)
            parts = {"all": data} if test is None else {"train": data, "test": test, "valid": valid}
            tables = {k: table_from_frame(v, name=f"{k} frame", **cols) for k, v in parts.items() if v is not None}
            cfg = cfg.replace({"dataset": "frame"}, source="fit")
            dataset = from_tables("frame", tables, cfg.data_config(), cfg.protocol)
        trainer = Trainer(cfg, dataset, run_dir=run_dir, write=run_dir is not None,
                          echo=print if verbose else None, callbacks=callbacks)
        self.result = trainer.fit()
        self.history = trainer.history
        self.cfg = cfg
        if run_dir is not None:
            self._export = load_export(Path(run_dir) / "export", mmap=False)
        else:
            from ssmrec.train.export import write_export

            with tempfile.TemporaryDirectory() as tmp:
                write_export(Path(tmp) / "export", trainer.model, dataset, cfg, epoch=trainer.stopper.best_epoch,
                             metrics=self.result["test"])
                self._export = load_export(Path(tmp) / "export", mmap=False)
        return self

    @classmethod
    def from_run(cls, run_dir: str | Path) -> Recommender:
        """The model of a finished ``ssmrec train`` run (its ``export/``, written if missing)."""
        run = Path(run_dir)
        metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else {}
        ex = None
        if (run / "export" / "manifest.json").exists():
            ex = load_export(run / "export", mmap=False)
            if ex.manifest.get("epoch") != metrics.get("best_epoch"):
                ex = None
        if ex is None:
            from ssmrec.train.export import write_export
            from ssmrec.train.restore import restore

            r = restore(run)
            write_export(run / "export", r.model, r.data, r.cfg, epoch=r.epoch, metrics=metrics.get("test"),
                         run_dir=run)
            ex = load_export(run / "export", mmap=False)
        return cls._from_export(ex, metrics)

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """A model written by :meth:`save` (or any export folder)."""
        ex = load_export(path, mmap=False)
        return cls._from_export(ex, {"test": ex.manifest.get("metrics", {})})

    @classmethod
    def _from_export(cls, ex: Export, result: dict[str, Any]) -> Recommender:
        rec = cls.__new__(cls)
        from ssmrec.train.config import TrainConfig

        rec.cfg = TrainConfig.from_dict(ex.manifest["settings"]) if ex.manifest.get("settings") else None
        rec.result, rec.history, rec._export = result, [], ex
        return rec

    def save(self, path: str | Path) -> Path:
        """Write the model as an export folder (numpy files + manifest); :meth:`load` restores
        exactly the same answers."""
        ex = self._fitted()
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"{path} exists; save to a new path")
        shutil.copytree(ex.path, path) if ex.path.exists() else self._write_arrays(path)
        return path

    def _write_arrays(self, path: Path) -> None:
        ex = self._fitted()
        path.mkdir(parents=True)
        for name in ("user_factors", "item_factors", "user_ids", "item_ids", "seen_indptr", "seen_indices",
                     "item_degree"):
            np.save(path / f"{name}.npy", np.asarray(getattr(ex, name)))
        (path / "manifest.json").write_text(json.dumps(ex.manifest, indent=2) + "\n")

    # ------------------------------------------------------------------ answers
    def _fitted(self) -> Export:
        if self._export is None:
            raise RuntimeError("this Recommender is not fitted: call fit(), from_run() or load()")
        return self._export

    @property
    def user_factors(self) -> np.ndarray:
        """The user vectors exactly as scored (LightGCN: after propagation), ``[users, dim]``."""
        return np.asarray(self._fitted().user_factors)

    @property
    def item_factors(self) -> np.ndarray:
        return np.asarray(self._fitted().item_factors)

    @property
    def user_ids(self) -> np.ndarray:
        """Original user ids, in the row order of :attr:`user_factors`."""
        return np.asarray(self._fitted().user_ids)

    @property
    def item_ids(self) -> np.ndarray:
        return np.asarray(self._fitted().item_ids)

    @property
    def similarity(self) -> str:
        """How scores are computed: ``ip`` (inner product) or ``cos``."""
        return self._fitted().similarity

    def recommend(self, users: Any, k: int = 10, *, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` items for one user id (1-d arrays) or a list of ids (2-d): original item ids
        and scores, best first; seen items (the training items) excluded unless told."""
        ex = self._fitted()
        single = np.ndim(users) == 0
        rows = [ex.user_index(u) for u in ([users] if single else list(users))]
        top, scores = ex.recommend(np.array(rows, dtype=np.int64), min(k, ex.n_items), exclude_seen=exclude_seen)
        ids = ex.item_ids[np.maximum(top, 0)]
        return (ids[0], scores[0]) if single else (ids, scores)

    def similar_items(self, items: Any, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items most similar to each given item id (itself left out), by the model's
        similarity; original ids and scores."""
        ex = self._fitted()
        single = np.ndim(items) == 0
        rows = np.array([ex.item_index(i) for i in ([items] if single else list(items))], dtype=np.int64)
        vecs = ex.vectors("item")
        scores = vecs[rows] @ vecs.T
        k = min(k, ex.n_items - 1)
        top = np.empty((rows.size, k), np.int64)
        val = np.empty((rows.size, k), np.float32)
        for r, row in enumerate(rows):
            idx, s = _top(scores[r], k + 1)
            keep = idx != row
            top[r], val[r] = idx[keep][:k], s[keep][:k]
        ids = ex.item_ids[top]
        return (ids[0], val[0]) if single else (ids, val)

    def __repr__(self) -> str:
        if self._export is None:
            return f"Recommender({self.cfg.model} + {self.cfg.loss}, not fitted)"
        m = self._export.manifest
        return (f"Recommender({m['model']} + {m['loss']}, {m['n_users']} users x {m['n_items']} items, "
                f"dim {m['dim']}, scored by {m['similarity']})")
