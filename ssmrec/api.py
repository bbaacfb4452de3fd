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

from ssmrec.errors import ConfigError
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
    def fit(self, data: Any, *, test: Any = None, valid: Any = None, user_col: str | int | None = None,
            item_col: str | int | None = None, rating_col: str | int | None = None,
            time_col: str | int | None = None, min_rating: float | None = None,
            run_dir: str | Path | None = None, callbacks: list[Any] | None = None,
            verbose: bool = False) -> Recommender:
        """Train. ``data``: a DataFrame / polars frame / pyarrow Table with the named columns
        (split by the ``ratios`` setting, or used as training data when ``test`` is given), or a
        dataset as ``ssmrec train --dataset`` takes it (registry name, folder, file).

        ``user_col``, ``item_col``, ``rating_col``, ``time_col``, ``min_rating``: as the settings
        of the same names, for frames and files alike; given here or to the constructor (a value
        given in both places that differs is refused). Default: ``"user"`` / ``"item"`` columns of a
        frame, detected in a file. ``test`` / ``valid``: frames only.

        ``run_dir``: also write a run directory there (checkpoints, history, export). A run
        trained from frames carries them (``data/`` in the run directory, a csv file its
        ``config.json`` names with its fingerprint), so that ``ssmrec train --resume``,
        ``ssmrec evaluate``, ``ssmrec recommend``... work on it as on any run.
        ``callbacks``: see :mod:`ssmrec.train.loggers`."""
        from ssmrec.data.dataset import from_tables, load_dataset
        from ssmrec.data.readers import table_from_frame
        from ssmrec.train.trainer import Trainer

        cfg = self.cfg
        given = _settings_given(cfg, dict(user_col=user_col, item_col=item_col, rating_col=rating_col,
                                          time_col=time_col, min_rating=min_rating))
        carried: Path | None = None
        if isinstance(data, (str, Path)):
            if test is not None or valid is not None:
                raise ConfigError("fit: test= and valid= take frames; with a file or dataset name, pass a folder "
                                  "holding train/test (and valid) files instead")
            cfg = cfg.replace({"dataset": str(data), **given}, source="fit")
            dataset = load_dataset(cfg.data_config(), cfg.protocol)
        else:
            cols = dict(user_col=given["user_col"] or "user", item_col=given["item_col"] or "item",
                        rating_col=given["rating_col"], time_col=given["time_col"])
            parts = {"all": data} if test is None else {"train": data, "test": test, "valid": valid}
            if given["min_rating"] is not None and not cols["rating_col"]:
                raise ConfigError(f"fit: min_rating={given['min_rating']:g} needs rating_col")
            # one frame is filtered by min_rating as a file is (from the settings); frames given as
            # train and test are each filtered here, like the files of a folder
            row_filter = None if "all" in parts else given["min_rating"]
            tables = {k: table_from_frame(v, name=f"{k} frame", min_rating=row_filter, **cols)
                      for k, v in parts.items() if v is not None}
            cfg = cfg.replace({"dataset": "frame", **{k: _text(v) for k, v in cols.items()},
                               "min_rating": given["min_rating"]}, source="fit")
            if run_dir is None:
                dataset = from_tables("frame", tables, cfg.data_config(), cfg.protocol)
            else:
                existed = Path(run_dir).exists()
                carried, cfg = _carry(tables, Path(run_dir), cfg)
        try:
            if carried is not None:
                dataset = load_dataset(cfg.data_config(), cfg.protocol)  # the data as a resume loads it
            trainer = Trainer(cfg, dataset, run_dir=run_dir, write=run_dir is not None,
                              echo=print if verbose else None, callbacks=callbacks)
        except BaseException:
            if carried is not None:  # the run did not start: leave no data behind
                _uncarry(carried, Path(run_dir), existed)
            raise
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

    def recommend(self, users: Any, k: int = 10, *, exclude_seen: bool = True) -> tuple[Any, Any]:
        """Top ``k`` items for one user id (1-d arrays) or a list of ids (2-d): original item ids
        and scores, best first; seen items (the training items) excluded unless told.

        A user with fewer than ``k`` unseen items gets them all: a shorter list, as from
        ``ssmrec recommend`` and the server, never padded. Then, for a list of ids, the answer is
        a list of 1-d arrays per user (rows of different lengths), not 2-d arrays."""
        ex = self._fitted()
        single = np.ndim(users) == 0
        rows = [ex.user_index(u) for u in ([users] if single else list(users))]
        top, scores = ex.recommend(np.array(rows, dtype=np.int64), min(k, ex.n_items), exclude_seen=exclude_seen)
        found = top >= 0  # the export marks the places it has no item for with -1
        if found.all():
            ids = ex.item_ids[top]
            return (ids[0], scores[0]) if single else (ids, scores)
        ids = [ex.item_ids[t[f]] for t, f in zip(top, found)]
        vals = [s[f] for s, f in zip(scores, found)]
        return (ids[0], vals[0]) if single else (ids, vals)

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


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _settings_given(cfg: Any, given: dict[str, Any]) -> dict[str, Any]:
    """Data settings given to ``fit``, merged with the constructor's: either place, never both
    with different values (refused), never ignored."""
    out = {}
    for name, value in given.items():
        mine = getattr(cfg, name)
        if value is None:
            out[name] = mine
            continue
        if mine is not None and (float(value) != float(mine) if name == "min_rating" else str(value) != mine):
            raise ConfigError(f"fit: {name}={value!r} differs from Recommender({name}={mine!r}); give it in "
                              "one place")
        out[name] = value if name == "min_rating" else str(value)
    return out


def _carry(tables: dict[str, Any], run: Path, cfg: Any) -> tuple[Path, Any]:
    """Write the frames into the run directory (``data/frame.csv.gz``, or ``data/frame/`` with
    ``train``/``test``/``valid`` files) and point the settings at them: the run then names its
    data like any run trained from a file."""
    from ssmrec.data.readers import write_pairs
    from ssmrec.train.run import CARRIED, check_new_run_dir

    check_new_run_dir(run)  # before writing anything into it
    folder = run / CARRIED
    folder.mkdir(parents=True, exist_ok=True)
    if set(tables) == {"all"}:
        target = folder / "frame.csv.gz"
        cols = write_pairs(tables["all"], target)
    else:
        target = folder / "frame"
        target.mkdir(exist_ok=True)
        for role, table in tables.items():
            cols = write_pairs(table, target / f"{role}.csv.gz")
    return target, cfg.replace({"dataset": str(target.resolve()), **cols}, source="fit")


def _uncarry(target: Path, run: Path, existed: bool) -> None:
    """Remove the frames written for a run that did not start (no config.json), and the run
    directory if :func:`_carry` made it and nothing else is in it."""
    from ssmrec.train.run import CARRIED, CONFIG

    if (run / CONFIG).exists():
        return
    shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    for folder in (run / CARRIED, *([] if existed else [run])):
        try:
            folder.rmdir()  # only if empty
        except OSError:
            break
