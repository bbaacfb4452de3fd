"""The table of raw pairs every reader returns, before :func:`~ssmrec.data.encoding.encode` maps
its ids to rows: ids as they were read, or (from the fast read path) as int codes into a sorted
vocabulary of the distinct ids, so that tens of millions of string ids are never held as
strings."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ssmrec.data.interactions import DataError


class PairTable:
    """Raw (user, item) pairs read from one file, ids not yet mapped.

    ``users``/``items`` are int64 arrays when ``integer_ids`` is true (ids used as they are),
    otherwise arrays of strings to be mapped to contiguous indices by :func:`encode`.

    A *coded* table (``user_vocab``/``item_vocab`` given, string ids only) stores each row's id
    as an integer code into its vocabulary, an array of distinct raw ids in sorted order:
    ``users`` then decodes on each access (``user_vocab[codes]``, what a reader of strings would
    have returned), while :func:`encode` and :meth:`select` work on the codes alone.
    """

    def __init__(self, users: np.ndarray, items: np.ndarray, source: str, integer_ids: bool,
                 ratings: np.ndarray | None = None, timestamps: np.ndarray | None = None,
                 n_users_hint: int = 0, *, user_vocab: np.ndarray | None = None,
                 item_vocab: np.ndarray | None = None):
        if (user_vocab is None) != (item_vocab is None) or (integer_ids and user_vocab is not None):
            raise ValueError("a coded PairTable has string ids and both vocabularies")
        self._users, self._items = users, items
        self.source, self.integer_ids = source, integer_ids
        self.ratings, self.timestamps = ratings, timestamps
        self.n_users_hint = n_users_hint  # users that appear on a line with no items (LightGCN format)
        self.user_vocab, self.item_vocab = user_vocab, item_vocab

    @property
    def coded(self) -> bool:
        return self.user_vocab is not None

    @property
    def users(self) -> np.ndarray:
        """The raw user id of every row (decoded from the codes for a coded table)."""
        return self._users if self.user_vocab is None else self.user_vocab[self._users]

    @property
    def items(self) -> np.ndarray:
        return self._items if self.item_vocab is None else self.item_vocab[self._items]

    @property
    def user_codes(self) -> np.ndarray:
        """What is stored per row: codes into ``user_vocab`` (coded), else the raw ids."""
        return self._users

    @property
    def item_codes(self) -> np.ndarray:
        return self._items

    def __len__(self) -> int:
        return int(self._users.size)

    def __repr__(self) -> str:
        kind = "integer" if self.integer_ids else ("coded string" if self.coded else "string")
        return f"PairTable({self.source!r}, rows={len(self)}, {kind} ids)"

    def select(self, mask: np.ndarray) -> PairTable:
        """The rows where ``mask`` is true (ratings and timestamps kept aligned)."""
        pick = lambda a: None if a is None else a[mask]  # noqa: E731
        return PairTable(self._users[mask], self._items[mask], self.source, self.integer_ids, pick(self.ratings),
                         pick(self.timestamps), self.n_users_hint, user_vocab=self.user_vocab,
                         item_vocab=self.item_vocab)


def filter_rating(table: PairTable, min_rating: float, path: Path | str = "") -> PairTable:
    """Keep the rows rated at least ``min_rating``."""
    if table.ratings is None:
        raise DataError(f"{path or table.source}: min_rating={min_rating:g} given but the data has no rating column "
                        "(name it with --rating-col)")
    return table.select(table.ratings >= min_rating)
