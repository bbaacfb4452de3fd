"""Write what a trained model needs to answer, in files any numpy program can read.

An export is a folder::

    manifest.json       format, model, loss, similarities, sizes, data fingerprint, epoch, metrics
    user_factors.npy    float32 [users, dim]: the user vectors as scored at test time
    item_factors.npy    float32 [items, dim]: the item vectors as scored (LightGCN: after
                        propagation, the mean of the layers, not the layer-0 embeddings)
    user_ids.npy        original user ids (integers or strings), row order of the factors
    item_ids.npy        original item ids
    seen_indptr.npy     CSR of each user's excluded items (train; + validation under holdout),
    seen_indices.npy    exactly what evaluation and ``ssmrec recommend`` exclude
    item_degree.npy     training interactions per item (popularity, for cold-start answers)
    *.parquet           (``parquet=True``) users / items with ids and vectors, and seen pairs

Scores are ``<u, i>`` when the manifest's ``similarity`` is ``ip`` and the cosine (both sides
L2-normalised) when it is ``cos``. Reading needs numpy only (:mod:`ssmrec.serve.export`).
A run directory holds one in ``export/``, written when training finishes, so that the run
answers from anywhere without its data or torch.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssmrec._version import __version__
from ssmrec.data.dataset import Dataset
from ssmrec.data.interactions import Interactions
from ssmrec.train.config import TrainConfig

FORMAT, VERSION = "ssmrec-export", 1


def training_similarity(cfg: TrainConfig) -> str:
    from ssmrec.losses import canonical, default_similarity

    loss = canonical(cfg.loss)
    if loss == "ccl":
        return "cos"
    return cfg.similarity or default_similarity(loss)


def excluded(data: Dataset) -> Interactions:
    """What a user's ranking leaves out: training items, and validation items when there is a
    validation set (the test-time exclusion of the ``holdout`` protocol); with explicit feedback,
    the known dislikes of those parts too (as evaluation does: :meth:`Dataset.exclusions`)."""
    parts = data.exclusions("test")
    seen = parts[0]
    for part in parts[1:]:
        seen = seen.union(part)
    return seen


@torch.no_grad()
def write_export(out: str | Path, model: torch.nn.Module, data: Dataset, cfg: TrainConfig, *,
                 epoch: int, metrics: dict[str, Any] | None = None, run_dir: str | Path | None = None,
                 parquet: bool = False) -> Path:
    """Write an export of ``model`` (its scored representations) to ``out``, atomically: the
    folder appears complete or not at all."""
    out = Path(out)
    was_training = model.training
    model.eval()
    users, items = model()
    model.train(was_training)
    users = users.detach().float().cpu().numpy()
    items = items.detach().float().cpu().numpy()
    train = data.train
    seen = excluded(data)
    manifest = {
        "format": FORMAT, "version": VERSION,
        "model": cfg.model, "loss": cfg.loss, "layers": cfg.layers if cfg.model == "lightgcn" else None,
        "training_similarity": training_similarity(cfg),
        "similarity": cfg.scoring,
        "dim": int(users.shape[1]), "n_users": int(users.shape[0]), "n_items": int(items.shape[0]),
        "dataset": data.name, "data_fingerprint": train.fingerprint(), "protocol": cfg.protocol,
        "excluded": "train + validation" if data.valid is not None else "train",
        "epoch": int(epoch), "metrics": metrics or {},
        "run_dir": str(Path(run_dir).resolve()) if run_dir else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "ssmrec": __version__,
        "settings": cfg.to_dict(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        np.save(tmp / "user_factors.npy", users)
        np.save(tmp / "item_factors.npy", items)
        np.save(tmp / "user_ids.npy", _ids(train.user_ids, train.n_users))
        np.save(tmp / "item_ids.npy", _ids(train.item_ids, train.n_items))
        np.save(tmp / "seen_indptr.npy", seen.indptr)
        np.save(tmp / "seen_indices.npy", seen.indices)
        np.save(tmp / "item_degree.npy", train.item_degree.astype(np.int64))
        if parquet:
            _write_parquet(tmp, users, items, train, seen)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.replace(old)
            tmp.replace(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.replace(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _ids(raw: np.ndarray | None, n: int) -> np.ndarray:
    if raw is None:
        return np.arange(n, dtype=np.int64)
    raw = np.asarray(raw)
    return raw.astype(str) if raw.dtype == object else raw  # no pickled object arrays


def _write_parquet(folder: Path, users: np.ndarray, items: np.ndarray, train: Interactions,
                   seen: Interactions) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def vectors(x: np.ndarray) -> pa.Array:
        return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1), pa.float32()), x.shape[1])

    uid, iid = _ids(train.user_ids, train.n_users), _ids(train.item_ids, train.n_items)
    pq.write_table(pa.table({"user": uid, "vector": vectors(users)}), folder / "users.parquet")
    pq.write_table(pa.table({"item": iid, "vector": vectors(items),
                             "degree": train.item_degree.astype(np.int64)}), folder / "items.parquet")
    rows = np.repeat(np.arange(seen.n_users), np.diff(seen.indptr))
    pq.write_table(pa.table({"user": uid[rows], "item": iid[seen.indices]}), folder / "seen.parquet")
