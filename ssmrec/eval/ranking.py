"""Chunked full ranking: score users against every item, mask seen items, keep the top K."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ssmrec.data.interactions import Interactions


class SeenItems:
    """Items to exclude from each user's ranking (the union of several interaction sets),
    held as CSR on the scoring device."""

    def __init__(self, sets: list[Interactions], device: torch.device | str = "cpu"):
        base = sets[0]
        merged = base
        for s in sets[1:]:
            merged = merged.union(s)
        self.indptr = torch.from_numpy(merged.indptr).to(device)
        self.indices = torch.from_numpy(merged.indices).to(device)

    def coordinates(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rows, cols)`` of the seen items of ``users`` (rows index into ``users``)."""
        start, end = self.indptr[users], self.indptr[users + 1]
        counts = end - start
        rows = torch.repeat_interleave(torch.arange(users.numel(), device=users.device), counts)
        offsets = torch.cumsum(counts, 0) - counts
        pos = torch.arange(int(counts.sum()), device=users.device) - offsets[rows] + start[rows]
        return rows, self.indices[pos]


def normalise_for(similarity: str, x: torch.Tensor) -> torch.Tensor:
    if similarity == "cos":
        return torch.nn.functional.normalize(x, dim=-1)
    if similarity == "ip":
        return x
    raise ValueError(f"similarity must be 'ip' or 'cos', got {similarity!r}")


MAX_SCORES = 1 << 27
"""Scores held at once by :func:`iter_topk` (512 MB of float32): a chunk of users is scored
against the catalogue in item blocks when ``users x items`` would exceed it (the study's
catalogues, 2048 users x 41k items, fit in one block)."""


@torch.no_grad()
def iter_topk(
    user_reps: torch.Tensor,
    item_reps: torch.Tensor,
    users: torch.Tensor,
    k: int,
    *,
    seen: SeenItems | None = None,
    similarity: str = "ip",
    chunk_size: int = 2048,
    max_scores: int = MAX_SCORES,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield ``(users_chunk, top_items, top_scores)`` for ``users`` in chunks.

    Memory is bounded by ``max_scores`` floats whatever the catalogue: a chunk of
    ``chunk_size`` users is scored against blocks of ``max_scores // chunk_size`` items (at least
    ``max(k, 1024)``), each block's top ``k`` merged into the running top ``k`` (10^7 items: 65k
    items a block). A catalogue that fits in one block is scored in one product. Seen items score
    ``-inf`` and so rank last; ``k`` is capped at the number of items.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    items = normalise_for(similarity, item_reps)
    n_items = items.shape[0]
    k = min(k, n_items)
    rows_at_once = min(chunk_size, max(users.numel(), 1))
    block = n_items if rows_at_once * n_items <= max_scores else max(max_scores // rows_at_once, k, 1024)
    # one score buffer for every chunk: writing into fresh memory each time costs page faults
    # that take longer than the product itself on a CPU
    buf = torch.empty(rows_at_once, min(block, n_items), dtype=items.dtype, device=items.device)
    for s in range(0, users.numel(), chunk_size):
        chunk = users[s : s + chunk_size]
        u = normalise_for(similarity, user_reps[chunk])
        rows = cols = None
        if seen is not None:
            rows, cols = seen.coordinates(chunk)
        if block >= n_items:
            scores = buf[: chunk.numel()]
            torch.mm(u, items.T, out=scores)
            if rows is not None:
                scores[rows, cols] = float("-inf")
            top_scores, top_items = torch.topk(scores, k, dim=1)
            yield chunk, top_items, top_scores
            continue
        top_scores = top_items = None
        for lo in range(0, n_items, block):
            hi = min(lo + block, n_items)
            scores = buf[: chunk.numel(), : hi - lo]
            torch.mm(u, items[lo:hi].T, out=scores)
            if rows is not None:
                inside = (cols >= lo) & (cols < hi)
                scores[rows[inside], cols[inside] - lo] = float("-inf")
            bs, bi = torch.topk(scores, min(k, hi - lo), dim=1)
            bi += lo
            if top_scores is None:
                top_scores, top_items = bs, bi
            else:  # merge: the best k of the running top k and this block's
                both_s, both_i = torch.cat([top_scores, bs], 1), torch.cat([top_items, bi], 1)
                top_scores, pick = torch.topk(both_s, k, dim=1)
                top_items = torch.gather(both_i, 1, pick)
        yield chunk, top_items, top_scores


def relevant_keys(target: Interactions, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.from_numpy(target.keys()).to(device)


def hit_matrix(
    keys: torch.Tensor, n_items: int, users: torch.Tensor, top_items: torch.Tensor
) -> torch.Tensor:
    """``hits[r, j]``: whether ``top_items[r, j]`` is a relevant item of ``users[r]``."""
    q = users.unsqueeze(1) * n_items + top_items
    pos = torch.searchsorted(keys, q).clamp(max=max(keys.numel() - 1, 0))
    return keys[pos] == q if keys.numel() else torch.zeros_like(q, dtype=torch.bool)


@torch.no_grad()
def scored_reps(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``model()``'s user and item representations computed in eval mode, the model's own mode
    restored after (what every evaluator scores)."""
    was_training = model.training
    model.eval()
    try:
        return model()
    finally:
        model.train(was_training)

