"""Turn a dataset name or path plus split settings into train / validation / test sets."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ssmrec.data import registry
from ssmrec.data.config import PROTOCOLS, DataConfig
from ssmrec.data.encoding import check_disjoint, encode
from ssmrec.data.interactions import DataError, Interactions
from ssmrec.data.readers import PairTable, filter_rating, read_any, read_any_format, read_lightgcn, read_pairs
from ssmrec.data.splits import carve_validation, kcore_mask, ratio_split

log = logging.getLogger(__name__)

@dataclass
class Dataset:
    """Train / validation / test interactions in one id space, plus where they came from."""

    name: str
    train: Interactions
    test: Interactions
    valid: Interactions | None = None
    source: str = ""
    dislikes: dict[str, Interactions] = field(default_factory=dict)
    """Explicit negatives by role (``train``, ``valid``, ``test``), in the same id space; empty
    unless the data was read with ``positive_min`` / ``negative_max``."""

    def exclusions(self, role: str = "test") -> list[Interactions]:
        """What a user's ranking leaves out when evaluating on ``role`` (``valid`` or ``test``): the
        known interactions, i.e. the training pairs (and, for test, the validation pairs), with the
        known dislikes of those parts. Held-out dislikes stay rankable: ``dislike@K`` counts them."""
        parts = ["train"] if role == "valid" else ["train", "valid"]
        out = []
        for part in parts:
            pos = getattr(self, part)
            if pos is not None:
                out.append(pos)
            if part in self.dislikes and self.dislikes[part].nnz:
                out.append(self.dislikes[part])
        return out

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
        for role, part in self.dislikes.items():
            out[f"{role}_dislikes"] = part.nnz
        return out


def load_dataset(cfg: DataConfig, protocol: str = "paper") -> Dataset:
    """Load and split a dataset for a protocol.

    ``paper``: train and test as given (a validation set, if any, is folded back into train);
    model selection then happens on test, as the study's code did. ``holdout``: a validation set
    is used from the data or carved out of train (``valid_fraction`` of each user's items).
    """
    if protocol not in PROTOCOLS:
        raise DataError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
    return prepare(_load_raw(cfg, protocol), cfg, protocol)


def prepare(ds: Dataset, cfg: DataConfig, protocol: str = "paper") -> Dataset:
    """Apply a protocol to loaded train / validation / test sets (see :func:`load_dataset`)."""
    if protocol not in PROTOCOLS:
        raise DataError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
    check_disjoint(ds.train, ds.test)
    if ds.valid is not None:
        check_disjoint(ds.train, ds.valid)
        check_disjoint(ds.valid, ds.test)
    if protocol == "paper" and ds.valid is not None:
        ds.train, ds.valid = ds.train.union(ds.valid, "train"), None
        if "valid" in ds.dislikes:
            valid = ds.dislikes.pop("valid")
            ds.dislikes["train"] = ds.dislikes["train"].union(valid, "train") if "train" in ds.dislikes else valid
    # ids the training data never sees (before carving: an item whose every training pair the
    # holdout carve moves to validation is the split's doing, not the data's, and stays)
    ds = restrict_to_trained(ds)
    if protocol == "holdout" and ds.valid is None:
        ds.train, ds.valid = carve_validation(ds.train, cfg.valid_fraction, seed=cfg.split_seed)
        if "train" in ds.dislikes:  # an item whose every training positive went to validation is not learned
            orphan = ds.train.item_degree[ds.dislikes["train"].indices] == 0
            if orphan.any():
                log.info("%s: %d training dislike(s) of items left with no training positive by the validation "
                         "carve are not trained on", ds.name, int(orphan.sum()))
                ds.dislikes["train"] = ds.dislikes["train"].select(~orphan)
    ds.train.name, ds.test.name = f"{ds.name} train", f"{ds.name} test"
    if ds.valid is not None:
        ds.valid.name = f"{ds.name} valid"
    return ds


def restrict_to_trained(ds: Dataset) -> Dataset:
    """The policy for ids that training never sees (README, "Ids only in held-out data").

    A held-out (validation or test) pair whose user or item has no training interaction cannot
    be learned: it is dropped from evaluation, with a warning giving the counts. Items with no
    training interaction (ids only in held-out files, or gaps in an integer id range) leave the
    catalogue, so they are neither trained nor ranked; their original ids stay attached to the
    others, so outputs still speak the ids of the files. Users keep their rows (a user with no
    training items is simply not evaluated).
    """
    train = ds.train
    item_ok, user_ok = train.item_degree > 0, train.user_degree > 0
    for role in ("valid", "test"):
        part = getattr(ds, role)
        if part is None:
            continue
        users = part.pair_users()
        bad_item, bad_user = ~item_ok[part.indices], ~user_ok[users]
        drop = bad_item | bad_user
        if drop.any():
            log.warning("%s %s: %d of %d pairs dropped from evaluation: %d item(s) and %d user(s) never seen "
                        "in training (they cannot be learned)", ds.name, role, int(drop.sum()), part.nnz,
                        np.unique(part.indices[bad_item]).size, np.unique(users[bad_user]).size)
            setattr(ds, role, part.select(~drop))
    for role, part in list(ds.dislikes.items()):
        drop = ~item_ok[part.indices]
        if drop.any():
            log.warning("%s %s dislikes: %d of %d dropped: their %d item(s) have no training positive (they are "
                        "not in the catalogue)", ds.name, role, int(drop.sum()), part.nnz,
                        np.unique(part.indices[drop]).size)
            ds.dislikes[role] = part.select(~drop)
    if item_ok.all():
        return ds
    kept = np.flatnonzero(item_ok)
    log.warning("%s: %d item id(s) with no training interaction left out of the catalogue (%d items remain)",
                ds.name, train.n_items - kept.size, kept.size)
    new_index = np.cumsum(item_ok) - 1
    raw = train.raw_items(kept)
    for role in ("train", "valid", "test"):
        part = getattr(ds, role)
        if part is None:
            continue
        setattr(ds, role, Interactions(part.indptr, new_index[part.indices], part.n_users, kept.size,
                                       part.user_ids, raw, part.name))
    for role, part in ds.dislikes.items():
        ds.dislikes[role] = Interactions(part.indptr, new_index[part.indices], part.n_users, kept.size,
                                         part.user_ids, raw, part.name)
    return ds


def _load_raw(cfg: DataConfig, protocol: str = "paper") -> Dataset:
    if is_registry_name(cfg.dataset):
        return _load_registry(cfg, protocol)
    path = Path(cfg.dataset).expanduser()
    if path.is_dir():
        return _load_folder(path, cfg)
    if path.is_file():
        return _load_single(path, cfg, protocol)
    if "/" in cfg.dataset or cfg.dataset.startswith("."):
        raise DataError(f"{cfg.dataset}: no such file or folder")
    raise DataError(f"unknown dataset {cfg.dataset!r}: not a file or folder, and not one of the "
                    f"registered datasets {', '.join(registry.REGISTRY)}")


def is_registry_name(name: str) -> bool:
    """A bare registry name (not a path like ``./gowalla``) always means the registry dataset."""
    if "/" in name or name.startswith("."):
        return False
    try:
        registry.get_spec(name)
        return True
    except DataError:
        return False


def _load_registry(cfg: DataConfig, protocol: str = "paper") -> Dataset:
    spec = registry.get_spec(cfg.dataset)
    paths = registry.locate(spec.name, cfg.data_dir, allow_download=cfg.download)
    if spec.single_file:  # one file, split as configured (like --dataset FILE)
        ds = _load_single(paths["all"], cfg, protocol)
        ds.name = spec.name
        return ds
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


def _load_folder(folder: Path, cfg: DataConfig) -> Dataset:
    files = {role: _find(folder, role) for role in ("train", "valid", "test")}
    if files["valid"] is None:
        files["valid"] = _find(folder, "validation")
    if files["train"] is None or files["test"] is None:
        raise DataError(f"{folder}: a dataset folder needs train.txt and test.txt "
                        "(.gz, .csv, .tsv, .inter or .parquet also accepted; valid.txt optional)")
    kwargs = column_kwargs(cfg)
    tables: dict[str, PairTable] = {r: read_any(p, **kwargs) for r, p in files.items() if p is not None}
    inter = encode(tables)
    return Dataset(folder.name, inter["train"], inter["test"], inter.get("valid"), source=str(folder))


def column_kwargs(cfg: DataConfig) -> dict:
    """The column settings as :func:`~ssmrec.data.readers.read_pairs` takes them (digits mean a
    0-based position, -1 no such column)."""
    out = {}
    for name in ("user_col", "item_col", "rating_col", "time_col"):
        v = getattr(cfg, name)
        if v is not None:
            out[name] = int(v) if v.lstrip("-").isdigit() else v
    return out


def _summary(what: str, before: tuple[int, int, int], after: tuple[int, int, int]) -> None:
    (r0, u0, i0), (r1, u1, i1) = before, after
    log.info("%s: %s -> %s rows, %s -> %s users, %s -> %s items", what, f"{r0:,}", f"{r1:,}", f"{u0:,}", f"{u1:,}",
             f"{i0:,}", f"{i1:,}")


def _sizes(table: PairTable) -> tuple[int, int, int]:
    return len(table), np.unique(table.users).size, np.unique(table.items).size


def _load_single(path: Path, cfg: DataConfig, protocol: str = "paper") -> Dataset:
    kwargs = column_kwargs(cfg)
    if kwargs and read_any_format(path) != "pairs":
        raise DataError(f"{path}: column settings apply to delimited or Parquet files, not to this format")
    table = read_any(path, **kwargs)
    return _single_table(path.name.split(".")[0], table, path, cfg, protocol, source=str(path))


def _single_table(name: str, table: PairTable, path: Path, cfg: DataConfig, protocol: str, source: str) -> Dataset:
    """One table of interactions (a file, or a frame given to ``Recommender.fit``) filtered and
    split by the settings: ``min_rating``, explicit feedback, ``kcore``, then the split."""
    if cfg.min_rating is not None:
        before = _sizes(table)
        table = filter_rating(table, cfg.min_rating, path)
        _summary(f"min_rating {cfg.min_rating:g}", before, _sizes(table))
    table, disliked = _explicit_feedback(table, cfg, path)
    if cfg.kcore:  # on the table, so timestamps and ratings stay aligned with their pairs
        before = _sizes(table)
        table = table.select(kcore_mask(table.users, table.items, cfg.kcore))
        if not len(table):
            raise DataError(f"{path}: nothing survives {cfg.kcore}-core filtering")
        _summary(f"{cfg.kcore}-core", before, _sizes(table))
    encoded = encode({"all": table} if disliked is None else {"all": table, "dislikes": disliked})
    return _split_dataset(name, table, disliked, encoded, path, cfg, protocol, source=source)


def _split_dataset(name: str, table: PairTable, disliked: PairTable | None, encoded: dict[str, Interactions],
                   path: Path, cfg: DataConfig, protocol: str, source: str) -> Dataset:
    """Split the positives, and the dislikes (if any) by the same rule."""
    train, valid, test = _split(table, encoded["all"], path, cfg, protocol)
    ds = Dataset(name, train, test, valid if valid.nnz else None, source=source)
    if disliked is not None:
        d_train, d_valid, d_test = _split(disliked, encoded["dislikes"], path, cfg, protocol, quiet=True)
        ds.dislikes = {"train": d_train, "test": d_test, **({"valid": d_valid} if d_valid.nnz else {})}
    return ds


def _explicit_feedback(table: PairTable, cfg: DataConfig, path: Path) -> tuple[PairTable, PairTable | None]:
    """Positives and dislikes by rating (``positive_min`` / ``negative_max``), else the table as it is."""
    if not cfg.explicit_feedback:
        return table, None
    if table.ratings is None:
        raise DataError(f"{path}: positive_min / negative_max given but the data has no rating column "
                        "(name it with --rating-col)")
    if cfg.positive_min is None or cfg.negative_max is None:
        raise DataError(f"{path}: explicit feedback needs both positive_min and negative_max "
                        f"(got positive_min={cfg.positive_min}, negative_max={cfg.negative_max})")
    if cfg.negative_max >= cfg.positive_min:
        raise DataError(f"{path}: negative_max {cfg.negative_max:g} must be below positive_min {cfg.positive_min:g}")
    before = _sizes(table)
    pos = table.select(table.ratings >= cfg.positive_min)
    neg = table.select(table.ratings <= cfg.negative_max)
    if not len(pos):
        raise DataError(f"{path}: no row is rated {cfg.positive_min:g} or more (positive_min)")
    _summary(f"positives (rating >= {cfg.positive_min:g})", before, _sizes(pos))
    log.info("dislikes (rating <= %g): %s rows; %s rows in between dropped", cfg.negative_max, f"{len(neg):,}",
             f"{len(table) - len(pos) - len(neg):,}")
    return pos, neg


def _split(table: PairTable, inter: Interactions, path: Path, cfg: DataConfig, protocol: str, *,
           quiet: bool = False) -> tuple[Interactions, Interactions, Interactions]:
    """Train / validation / test of a single file: per-user ratios (random or ``temporal``) or
    a global ``time_cutoff`` (no validation)."""
    times = None
    if cfg.temporal or cfg.time_cutoff is not None:
        if table.timestamps is None:
            raise DataError(f"{path}: {'time_cutoff' if cfg.time_cutoff else 'temporal=True'} but the file has no "
                            "timestamp column (name it with --time-col)")
        times = _aligned(table, inter, table.timestamps)
    if cfg.time_cutoff is not None:
        later = times > cutoff_seconds(cfg.time_cutoff)
        if not quiet and (not later.any() or later.all()):
            raise DataError(f"{path}: time_cutoff {cfg.time_cutoff} leaves {'no' if not later.any() else 'every'} "
                            "interaction after it; pick a moment inside the data")
        train, test = inter.select(~later), inter.select(later)
        if not quiet:
            log.info("time_cutoff %s: %s interactions before (train), %s after (held out)", cfg.time_cutoff,
                     f"{train.nnz:,}", f"{test.nnz:,}")
        return train, Interactions.empty_like(inter, "valid"), test
    train, valid, test = ratio_split(inter, tuple(cfg.ratios), seed=cfg.split_seed, timestamps=times)
    if valid.nnz and protocol == "paper" and not quiet:
        log.info("protocol paper: the validation share %g of ratios (%s pairs) is added to train; selection "
                 "is on test (use --protocol holdout to select on validation)", cfg.ratios[1], f"{valid.nnz:,}")
    return train, valid, test


def cutoff_seconds(text: str) -> float:
    """A time cut-off as epoch seconds: a number as it is, else an ISO-8601 date/time."""
    try:
        return float(text)
    except ValueError:
        pass
    import pandas as pd

    from ssmrec.data.columns import parse_times

    try:
        return float(parse_times(pd.Series([text]), "time_cutoff")[0])
    except DataError:
        raise DataError(f"time_cutoff {text!r} is neither epoch seconds nor an ISO-8601 date/time") from None


def from_tables(name: str, tables: dict[str, PairTable], cfg: DataConfig, protocol: str = "paper") -> Dataset:
    """A dataset from in-memory tables: ``{"train", "test"[, "valid"]}`` used as given (like a
    folder of files), or ``{"all"}`` filtered and split exactly as a single file is
    (``cfg.min_rating``, ``positive_min`` / ``negative_max``, ``cfg.kcore``, then ``cfg.ratios``
    or ``cfg.temporal`` / ``cfg.time_cutoff``), so that the same rows written to a file and
    loaded with :func:`load_dataset` give the same dataset."""
    if "all" not in tables:
        if cfg.explicit_feedback:
            raise DataError(f"{name}: positive_min / negative_max split one table into positives and dislikes; "
                            "pass the interactions as one frame (fit(df)) rather than train and test frames")
        inter = encode(tables)
        return prepare(Dataset(name, inter["train"], inter["test"], inter.get("valid"), source=name), cfg, protocol)
    return prepare(_single_table(name, tables["all"], Path(name), cfg, protocol, source=name), cfg, protocol)


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

