"""Long-tail analysis (the study's Figure 1, eq. 22) and beyond-accuracy metrics of top-K lists."""

from __future__ import annotations

import numpy as np
import torch

from ssmrec.data.interactions import Interactions
from ssmrec.eval.ranking import SeenItems, hit_matrix, iter_topk, relevant_keys


def popularity_groups(item_degree: np.ndarray, n_groups: int = 10) -> np.ndarray:
    """Group id (0 = least popular) of every item, groups holding equal numbers of interactions.

    Items are sorted by training degree (ties by id) and cut where the cumulative number of
    interactions crosses multiples of ``total / n_groups``; an item belongs to the group in which
    its interactions end. The last group holds the few most popular items.
    """
    deg = np.asarray(item_degree, np.float64)
    order = np.lexsort((np.arange(deg.size), deg))
    cum = np.cumsum(deg[order])
    total = cum[-1] if cum.size else 0.0
    groups = np.empty(deg.size, np.int64)
    if total == 0:
        groups[:] = 0
        return groups
    g = np.ceil(cum / total * n_groups - 1e-9).astype(np.int64) - 1
    groups[order] = np.clip(g, 0, n_groups - 1)
    return groups


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of a non-negative vector (0 = equal exposure, -> 1 = all on one item)."""
    x = np.sort(np.asarray(counts, np.float64))
    n = x.size
    if n == 0 or x.sum() == 0:
        return 0.0
    index = np.arange(1, n + 1)
    return float(((2 * index - n - 1) * x).sum() / (n * x.sum()))


@torch.no_grad()
def topk_profile(
    user_reps: torch.Tensor,
    item_reps: torch.Tensor,
    target: Interactions,
    exclude: list[Interactions],
    train: Interactions,
    *,
    k: int = 20,
    n_groups: int = 10,
    similarity: str = "ip",
    chunk_size: int = 2048,
) -> dict:
    """Recall@k split over popularity groups, plus coverage, popularity and Gini of the top-k lists.

    Returns a dict with ``recall`` (overall), ``group_recall`` (``n_groups`` values summing to
    ``recall``: eq. 22), ``group_item_share`` (share of items per group), ``coverage`` (distinct
    recommended items / all items), ``avg_popularity`` (mean training degree of recommended
    items), ``avg_popularity_percentile`` and ``gini`` (of how often each item is recommended).
    Lists are those of the users with held-out items.
    """
    device = user_reps.device
    groups_np = popularity_groups(train.item_degree, n_groups)
    groups = torch.from_numpy(groups_np).to(device)
    keys = relevant_keys(target, device)
    users = torch.from_numpy(target.active_users).to(device)
    n_rel = torch.from_numpy(target.user_degree).to(device).to(torch.float64)
    seen = SeenItems(exclude, device) if exclude else None
    group_sum = torch.zeros(n_groups, dtype=torch.float64, device=device)
    exposure = torch.zeros(train.n_items, dtype=torch.float64, device=device)
    for chunk, top, _ in iter_topk(user_reps, item_reps, users, k, seen=seen, similarity=similarity,
                                   chunk_size=chunk_size):
        hits = hit_matrix(keys, target.n_items, chunk, top).to(torch.float64)
        weight = hits / n_rel[chunk].unsqueeze(1)
        group_sum.index_add_(0, groups[top].reshape(-1), weight.reshape(-1))
        exposure.index_add_(0, top.reshape(-1), torch.ones(top.numel(), dtype=torch.float64, device=device))
    n_users = max(users.numel(), 1)
    group_recall = (group_sum / n_users).cpu().numpy()
    counts = exposure.cpu().numpy()
    deg = train.item_degree.astype(np.float64)
    pct = np.argsort(np.argsort(deg, kind="stable"), kind="stable") / max(deg.size - 1, 1)
    recommended = counts.sum()
    return {
        "k": k,
        "recall": float(group_recall.sum()),
        "group_recall": group_recall.tolist(),
        "group_item_share": (np.bincount(groups_np, minlength=n_groups) / max(deg.size, 1)).tolist(),
        "coverage": float((counts > 0).mean()),
        "avg_popularity": float((counts * deg).sum() / max(recommended, 1)),
        "avg_popularity_percentile": float((counts * pct).sum() / max(recommended, 1)),
        "gini": gini(counts),
    }


def recall_tail_share(profile: dict) -> float | None:
    """The long-tail share of a :func:`topk_profile`: the share of its recall earned on the less
    popular half of its popularity groups (groups 0-4 of 10; group 0 is the least popular).
    None when it has no recall to share."""
    groups = profile.get("group_recall")
    if not groups or not profile.get("recall"):
        return None
    return float(sum(groups[: len(groups) // 2]) / profile["recall"])
