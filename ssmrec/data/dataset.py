"""Turn a dataset name or path plus split settings into train / validation / test sets."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssmrec.data import registry
from ssmrec.data.interactions import DataError, Interactions
from ssmrec.data.readers import PairTable, check_disjoint, encode, read_any, read_lightgcn, read_pairs
from ssmrec.data.splits import carve_validation, kcore, ratio_split

log = logging.getLogger(__name__)

PROTOCOLS = ("paper", "holdout")


@dataclass
class DataConfig:
    """How to obtain and split a dataset.

    Args:
        dataset: a registry name (``gowalla``, ``yelp2018``, ``amazon-book``,
            ``alibaba-ifashion``), a folder holding ``train.txt``/``test.txt`` (optionally
            ``valid.txt``; ``.gz`` allowed), or a single interaction file (LightGCN text,
            csv/tsv/parquet pairs or a RecBole ``.inter``) that is split as configured.
        data_dir: where to look for registry datasets first (default: ``$SSMREC_DATA``, then
            the user cache).
        ratios: train/valid/test fractions for splitting a single file (default: 0.7/0.1/0.2).
        valid_fraction: share of each user's training items carved into validation under the
            ``holdout`` protocol when the data has no validation set (default: 1/8).
        split_seed: seed of every random split (default: ``0``).
        temporal: split a single file by timestamp instead of at random (default: ``False``).
        kcore: k-core filter applied to a single file before splitting; 0 = off (default: 0).
        min_rating: keep only interactions rated at least this (default: keep all).
        download: fetch a missing registry dataset into the cache (default: ``True``).
    """

    dataset: str = "gowalla"
    data_dir: str | None = None
    ratios: tuple[float, float, float] = (0.7, 0.1, 0.2)
    valid_fraction: float = 0.125
    split_seed: int = 0
    temporal: bool = False
    kcore: int = 0
    min_rating: float | None = None
    download: bool = True


@dataclass
class Dataset:
    """Train / validation / test interactions in one id space, plus where they came from."""

    name: str
    train: Interactions
    test: Interactions
    valid: Interactions | None = None
    source: str = ""

    @property
    def n_users(self) -> int:
        return self.train.n_users

    @property
    def n_items(self) -> int:
        return self.train.n_items

    def describe(self) -> dict:
        out = {"name": self.name, "source": self.source, **self.train.describe()}
        out["interactions"] = self.train.nnz + self.test.nnz + (self.valid.nnz if self.valid else 0)
        out["train"], out["test"] = self.train.nnz, self.test.nnz
        out["valid"] = self.valid.nnz if self.valid is not None else 0
        out["test_users"] = int((self.test.user_degree > 0).sum())
        return out


def load_dataset(cfg: DataConfig, protocol: str = "paper") -> Dataset:
    """Load and split a dataset for a protocol.

    ``paper``: train and test as given (a validation set, if any, is folded back into train);
    model selection then happens on test, as the study's code did. ``holdout``: a validation set
    is used from the data or carved out of train (``valid_fraction`` of each user's items).
    """
    if protocol not in PROTOCOLS:
        raise DataError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
    ds = _load_raw(cfg)
    check_disjoint(ds.train, ds.test)
    if ds.valid is not None:
        check_disjoint(ds.train, ds.valid)
        check_disjoint(ds.valid, ds.test)
    if protocol == "paper" and ds.valid is not None:
        ds.train, ds.valid = ds.train.union(ds.valid, "train"), None
    elif protocol == "holdout" and ds.valid is None:
        ds.train, ds.valid = carve_validation(ds.train, cfg.valid_fraction, seed=cfg.split_seed)
    ds.train.name, ds.test.name = f"{ds.name} train", f"{ds.name} test"
    if ds.valid is not None:
        ds.valid.name = f"{ds.name} valid"
    return ds


def _load_raw(cfg: DataConfig) -> Dataset:
    if _is_registry_name(cfg.dataset):
        return _load_registry(cfg)
    path = Path(cfg.dataset).expanduser()
    if path.is_dir():
        return _load_folder(path)
    if path.is_file():
        return _load_single(path, cfg)
    if "/" in cfg.dataset or cfg.dataset.startswith("."):
        raise DataError(f"{cfg.dataset}: no such file or folder")
    raise DataError(f"unknown dataset {cfg.dataset!r}: not a file or folder, and not one of the "
                    f"registered datasets {', '.join(registry.REGISTRY)}")


def _is_registry_name(name: str) -> bool:
    """A bare registry name (not a path like ``./gowalla``) always means the registry dataset."""
    if "/" in name or name.startswith("."):
        return False
    try:
        registry.get_spec(name)
        return True
    except DataError:
        return False


def _load_registry(cfg: DataConfig) -> Dataset:
    spec = registry.get_spec(cfg.dataset)
    paths = registry.locate(spec.name, cfg.data_dir, allow_download=cfg.download)
    remotes = {f.role: f for f in spec.files}
    tables = {}
    for role, p in paths.items():
        if remotes[role].fmt == "lightgcn":
            tables[role] = read_lightgcn(p)
        else:
            tables[role] = read_pairs(p, sep=",", header=False, integer_ids=True)
    inter = encode(tables, n_users=spec.n_users, n_items=spec.n_items)
    return Dataset(spec.name, inter["train"], inter["test"], inter.get("valid"),
                   source=", ".join(str(p) for p in paths.values()))


def _find(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.txt", f"{stem}.txt.gz", f"{stem}.csv", f"{stem}.csv.gz", f"{stem}.tsv",
                 f"{stem}.tsv.gz", f"{stem}.inter", f"{stem}.parquet", stem, f"{stem}.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _load_folder(folder: Path) -> Dataset:
    files = {role: _find(folder, role) for role in ("train", "valid", "test")}
    if files["valid"] is None:
        files["valid"] = _find(folder, "validation")
    if files["train"] is None or files["test"] is None:
        raise DataError(f"{folder}: a dataset folder needs train.txt and test.txt "
                        "(.gz, .csv, .tsv, .inter or .parquet also accepted; valid.txt optional)")
    tables: dict[str, PairTable] = {r: read_any(p) for r, p in files.items() if p is not None}
    inter = encode(tables)
    return Dataset(folder.name, inter["train"], inter["test"], inter.get("valid"), source=str(folder))


def _load_single(path: Path, cfg: DataConfig) -> Dataset:
    kwargs = {"min_rating": cfg.min_rating} if cfg.min_rating is not None else {}
    table = read_any(path, **kwargs)
    inter = encode({"all": table})["all"]
    times = None
    if cfg.temporal:
        if table.timestamps is None:
            raise DataError(f"{path}: temporal=True but the file has no timestamp column")
        times = _aligned(table, inter, table.timestamps)
    if cfg.kcore:
        if times is not None:
            raise DataError("kcore together with temporal splitting is not supported")
        inter = kcore(inter, cfg.kcore)
    train, valid, test = ratio_split(inter, tuple(cfg.ratios), seed=cfg.split_seed, timestamps=times)
    name = path.name.split(".")[0]
    return Dataset(name, train, test, valid if valid.nnz else None, source=str(path))


def _aligned(table: PairTable, inter: Interactions, values: np.ndarray) -> np.ndarray:
    """Per-pair values of a table re-ordered to match ``inter``'s CSR order (last one wins)."""
    if inter.user_ids is not None:
        u = np.searchsorted(inter.user_ids, table.users)
        i = np.searchsorted(inter.item_ids, table.items)
    else:
        u, i = table.users, table.items
    keys = u * inter.n_items + i
    order = np.argsort(keys, kind="stable")
    k_sorted, v_sorted = keys[order], values[order]
    last = np.r_[k_sorted[1:] != k_sorted[:-1], True]
    return v_sorted[last]

