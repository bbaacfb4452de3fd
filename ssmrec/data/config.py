"""How to obtain and split a dataset: settings only (no I/O, nothing heavy to import)."""

from __future__ import annotations

from dataclasses import dataclass

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
        user_col, item_col, rating_col, time_col: column names (or 0-based positions) of a
            delimited or Parquet file (default: detected from the header: ``user_id``,
            ``item``, ``rating``, ``timestamp``...; see the README).
        time_cutoff: split a single file at this moment instead of per user: interactions after
            it are held out (ISO-8601 date/time or epoch seconds, in the time column's units)
            (default: per-user splits).
        positive_min, negative_max: explicit feedback: of a single rated file, the rows rated at
            least ``positive_min`` are the positives (trained on and evaluated as usual), those
            rated at most ``negative_max`` the dislikes (split like the positives: training
            dislikes feed losses that use them, such as ``ntr``; held-out ones give the
            ``dislike@K`` metric); rows in between are dropped (default: off, every row is a
            positive).
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
    user_col: str | None = None
    item_col: str | None = None
    rating_col: str | None = None
    time_col: str | None = None
    time_cutoff: str | None = None
    positive_min: float | None = None
    negative_max: float | None = None

    @property
    def explicit_feedback(self) -> bool:
        """Positives and dislikes are read from ratings (``positive_min`` / ``negative_max``)."""
        return self.positive_min is not None or self.negative_max is not None
