"""Ranking within candidate sets, beside full-catalogue retrieval.

:class:`~ssmrec.eval.evaluator.Evaluator` measures *retrieval*: every item a user has not seen is
ranked and the top K of the whole catalogue is scored. A *ranking* model instead orders a given,
short candidate set. This module measures that setting, on candidate sets built once per test
user and reused for every model compared (so every loss is re-ranked on the same candidates):

* :func:`sampled_candidates`: the user's held-out items plus ``N`` items drawn uniformly from the
  items the user never interacted with: the "sampled metrics" setting. Krichene & Rendle
  ("On Sampled Metrics for Item Recommendation", KDD 2020) show that sampled metrics can rank
  models differently from the full ones; they are reported as a ranking measure, not as an
  estimate of retrieval quality.
* :func:`retrieved_candidates`: the top ``N`` unseen items of a first stage shared by every arm
  (:mod:`ssmrec.eval.first_stage`: popularity, ItemKNN, any embeddings). Held-out items the first
  stage did not retrieve are misses: every ranking metric is then bounded by the first stage's
  recall, reported as ``retriever_recall@N``.

:class:`CandidateEvaluator` scores a model's user and item embeddings on one candidate set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ssmrec.data.interactions import Interactions
from ssmrec.eval.first_stage import FirstStage
from ssmrec.eval.metrics import metric_values
from ssmrec.eval.ranking import SeenItems, hit_matrix, normalise_for, relevant_keys, scored_reps

KINDS = ("sampled", "retrieved")


@dataclass(eq=False)
class Candidates:
    """Each test user's candidates, as CSR: row ``r`` (user ``users[r]``) holds
    ``items[indptr[r]:indptr[r + 1]]``, ``relevant`` flags the held-out ones. Memory is
    ``O(users x N)``.

    Attributes:
        name: label of the set and of its metrics' keys (``sampled100``, ``itemknn200``).
        kind: ``sampled`` or ``retrieved``.
        n: the ``N`` of the set (sampled items, or items retrieved).
        users: the test users (those with held-out items), increasing.
        n_relevant: each user's number of held-out items, retrieved or not (the denominator of
            recall and the ideal DCG's, as in full ranking).
        n_items: size of the catalogue.
        seed: the sampling seed (``sampled``; ``-1`` for ``retrieved``).
    """

    name: str
    kind: str
    n: int
    users: np.ndarray
    indptr: np.ndarray
    items: np.ndarray
    relevant: np.ndarray
    n_relevant: np.ndarray
    n_items: int
    seed: int = -1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.indptr.shape != (self.users.size + 1,) or self.items.shape != self.relevant.shape:
            raise ValueError("candidates: indptr must have len(users) + 1 entries, items and relevant one each")

    def row(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        """``(items, relevant)`` of row ``r`` (user ``users[r]``)."""
        s = slice(self.indptr[r], self.indptr[r + 1])
        return self.items[s], self.relevant[s]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def retriever_recall(self) -> np.ndarray:
        """Per user, the share of held-out items among the candidates (1 for ``sampled``)."""
        rows = np.repeat(np.arange(self.users.size), self.lengths)
        return np.bincount(rows, self.relevant, self.users.size) / self.n_relevant

    def save(self, path: str | Path) -> None:
        """Write the set (``.npz``), so that later comparisons re-rank the very same candidates."""
        np.savez_compressed(path, name=self.name, kind=self.kind, n=self.n, users=self.users,
                            indptr=self.indptr, items=self.items, relevant=self.relevant,
                            n_relevant=self.n_relevant, n_items=self.n_items, seed=self.seed)

    @classmethod
    def load(cls, path: str | Path) -> Candidates:
        with np.load(path) as z:
            return cls(str(z["name"]), str(z["kind"]), int(z["n"]), z["users"], z["indptr"], z["items"],
                       z["relevant"], z["n_relevant"], int(z["n_items"]), int(z["seed"]))


def _item_dtype(n_items: int) -> type:
    return np.int32 if n_items < 2**31 else np.int64


def _merge(parts: list[Interactions]) -> Interactions:
    out = parts[0]
    for p in parts[1:]:
        out = out.union(p)
    return out


def distinct_uniform(rng: np.random.Generator, bound: np.ndarray, need: np.ndarray) -> np.ndarray:
    """For every row ``r``, ``need[r]`` distinct integers drawn uniformly from ``[0, bound[r])``
    (``need <= bound``), concatenated row after row.

    Vectorised over rows: each round draws a ``(rows, width)`` block of independent uniform
    integers and keeps, per row, the first ``need`` distinct values in draw order, which is a
    uniform random subset; a row with too few distinct values is drawn again, whole, with twice the
    width (the retry does not bias the subset: which values are distinct is symmetric in the
    values). With ``need`` small against ``bound``, as for sampled metrics, one round suffices.
    """
    need = np.asarray(need, np.int64)
    bound = np.asarray(bound, np.int64)
    start = np.zeros(need.size + 1, np.int64)
    np.cumsum(need, out=start[1:])
    out = np.empty(start[-1], np.int64)
    todo = np.flatnonzero(need > 0)
    width = int(need.max(initial=0) * 1.25) + 8
    while todo.size:
        draws = rng.integers(0, bound[todo, None], size=(todo.size, width))
        order = np.argsort(draws, axis=1, kind="stable")
        ranked = np.take_along_axis(draws, order, 1)
        first_ranked = np.ones_like(ranked, bool)
        first_ranked[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
        first = np.empty_like(first_ranked)
        np.put_along_axis(first, order, first_ranked, 1)
        count = np.cumsum(first, 1)
        done = count[:, -1] >= need[todo]
        keep = first[done] & (count[done] <= need[todo[done], None])
        rows = todo[done]
        pos = np.repeat(start[rows], need[rows]) + _ranks_within(need[rows])
        out[pos] = draws[done][keep]
        todo, width = todo[~done], width * 2
    return out


def _ranks_within(lengths: np.ndarray) -> np.ndarray:
    """``0..len-1`` for every length, concatenated."""
    total = int(lengths.sum())
    return np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def sampled_candidates(target: Interactions, exclude: list[Interactions] | tuple[Interactions, ...] = (),
                       *, n: int = 100, seed: int = 0) -> Candidates:
    """The held-out items of every user of ``target`` plus ``n`` items drawn uniformly, without
    replacement, from the items the user has not interacted with (in ``target`` or any of
    ``exclude``: pass the training and validation sets); all of them when fewer remain.

    The same ``seed`` gives the same candidates; build the set once and reuse it for every model.
    """
    if n < 1:
        raise ValueError(f"the number of sampled candidates must be positive, got {n}")
    known = _merge([target, *exclude])
    users = target.active_users
    available = target.n_items - known.user_degree[users]
    need = np.minimum(n, available)
    picks = distinct_uniform(np.random.default_rng(seed), available, need)
    # the r-th unknown item of a user is r plus the number of its known items s_k with s_k - k <= r
    # (k: s_k's place in the user's sorted row): one search in the known pairs' keys
    adjusted = known.indices - _ranks_within(known.user_degree)
    keys = known.pair_users() * known.n_items + adjusted
    rows = np.repeat(np.arange(users.size), need)
    u = users[rows]
    sampled = picks + np.searchsorted(keys, u * known.n_items + picks, side="right") - known.indptr[u]
    held = target.user_degree[users]
    both_rows = np.concatenate([np.repeat(np.arange(users.size), held), rows])
    both_items = np.concatenate([target.indices, sampled])
    order = np.argsort(both_rows, kind="stable")  # per user: held-out items, then the sample
    indptr = np.zeros(users.size + 1, np.int64)
    np.cumsum(held + need, out=indptr[1:])
    relevant = np.concatenate([np.ones(target.nnz, bool), np.zeros(sampled.size, bool)])[order]
    return Candidates(f"sampled{n}", "sampled", n, users, indptr,
                      both_items[order].astype(_item_dtype(target.n_items)), relevant, held, target.n_items, seed)


def retrieved_candidates(target: Interactions, exclude: list[Interactions] | tuple[Interactions, ...],
                         first_stage: FirstStage, *, n: int = 200, chunk_size: int = 512) -> Candidates:
    """The top ``n`` items of ``first_stage`` for every user of ``target``, leaving out the items of
    ``exclude`` (the sets the full-ranking Evaluator excludes: training, and validation when
    testing), in the first stage's order; fewer when fewer are left. Memory: ``chunk_size x
    n_items`` scores at a time."""
    if n < 1:
        raise ValueError(f"the number of retrieved candidates must be positive, got {n}")
    if first_stage.n_items != target.n_items:
        raise ValueError(f"the first stage scores {first_stage.n_items} items, the data has {target.n_items}")
    seen = SeenItems(list(exclude)) if exclude else None
    keys = relevant_keys(target)
    users = target.active_users
    k = min(n, target.n_items)
    items, relevant, lengths = [], [], []
    buf = None
    for s in range(0, users.size, chunk_size):
        chunk = users[s:s + chunk_size]
        scores = first_stage.scores(chunk, None if buf is None else buf[:chunk.size])
        buf = scores if buf is None else buf
        tchunk = torch.from_numpy(chunk)
        if seen is not None:
            rows, cols = seen.coordinates(tchunk)
            scores[rows, cols] = float("-inf")
        top_scores, top = torch.topk(scores, k, dim=1)
        kept = top_scores > float("-inf")  # a user who has seen nearly everything gets fewer
        items.append(top[kept].numpy())
        relevant.append(hit_matrix(keys, target.n_items, tchunk, top)[kept].numpy())
        lengths.append(kept.sum(1).numpy())
    indptr = np.zeros(users.size + 1, np.int64)
    if users.size:
        np.cumsum(np.concatenate(lengths), out=indptr[1:])
    flat = np.concatenate(items) if items else np.zeros(0, np.int64)
    return Candidates(f"{first_stage.name}{n}", "retrieved", n, users, indptr,
                      flat.astype(_item_dtype(target.n_items)),
                      np.concatenate(relevant) if relevant else np.zeros(0, bool),
                      target.user_degree[users], target.n_items)


RANK_METRICS = ("ndcg", "recall", "hitrate")
"""Metrics at every cut-off K; ``mrr`` and ``auc`` are over each user's whole candidate list."""


@dataclass
class CandidateResult:
    """Per-user values of one evaluation on a candidate set, for intervals and paired tests.

    Attributes:
        users: the users evaluated (every user of the candidate set: every test user), increasing.
        values: full key (``rank-sampled100/ndcg@20``) -> values aligned with ``users``; ``auc``
            is NaN for a user without a relevant or without a non-relevant candidate.
        covered: whether each user has at least one relevant candidate (always, for ``sampled``).
    """

    users: np.ndarray
    values: dict[str, np.ndarray]
    covered: np.ndarray

    def per_user(self, key: str) -> np.ndarray:
        """The values of ``key`` (a key of :meth:`CandidateEvaluator.evaluate`), in user order."""
        return self.values[key]

    def compute(self) -> dict[str, float]:
        """Means over the users, NaNs left out (only ``auc`` has any)."""
        out = {}
        for key, v in self.values.items():
            v = v[~np.isnan(v)]
            out[key] = float(v.mean()) if v.size else float("nan")
        return out

    def intervals(self, level: float = 0.95) -> dict[str, float]:
        """Half-widths ``z * std / sqrt(n)`` of each mean's normal-approximation interval, as
        :meth:`ssmrec.eval.metrics.MetricAccumulator.intervals`."""
        from statistics import NormalDist

        z = NormalDist().inv_cdf(0.5 + level / 2)
        out = {}
        for key, v in self.values.items():
            v = v[~np.isnan(v)]
            out[key] = float(z * v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")
        return out


class CandidateEvaluator:
    """Ranking within candidates: each user's candidates are ordered by the model's scores and
    scored against the held-out items among them.

    Args:
        candidates: built once (:func:`sampled_candidates`, :func:`retrieved_candidates`) and
            shared by every model compared.
        ks: cut-offs (default: ``(20,)``).
        similarity: test-time scoring, ``"ip"`` or ``"cos"`` (default: ``"ip"``).
        chunk_size: users scored at once, taken in order of their number of candidates (so that
            padding them to one length wastes little); memory is ``chunk_size x longest list``
            scores plus the chunk's candidates' embeddings (default: 512).
        device: where scoring happens (default: cpu).

    Keys are ``rank-<set name>/<metric>``, never those of the full-ranking Evaluator:
    ``ndcg@K``, ``recall@K``, ``hitrate@K`` (the formulas of :func:`ssmrec.eval.metrics.metric_values`,
    over the user's candidates ranked by score: recall and the ideal DCG count every held-out item,
    so a held-out item not among the candidates is a miss), ``mrr`` (1 / rank of the first relevant
    candidate in the whole list, 0 if none) and ``auc`` (per user, the share of (relevant,
    non-relevant) candidate pairs ordered right, ties counting half). Retrieved sets add the first
    stage's own ``retriever_recall@N`` (share of held-out items among the candidates) and
    ``retriever_hitrate@N`` (share of users with any).

    Every test user counts in every mean but ``auc``'s: a user whose held-out items the first stage
    all missed scores 0 (the pipeline shows them nothing relevant), which keeps the means of a
    retrieved set comparable with full ranking and bounded by the first stage; divide by
    ``retriever_hitrate@N`` for the mean over users with a relevant candidate. Their ``auc`` is
    undefined (NaN in :meth:`CandidateResult.per_user`) and left out of its mean.

    Ties: a relevant candidate scored equal to a non-relevant one ranks after it (for ``auc``, a
    tie counts half), so a model that scores every candidate alike gets no hits, not all of them.
    """

    def __init__(self, candidates: Candidates, *, ks: tuple[int, ...] = (20,), similarity: str = "ip",
                 chunk_size: int = 512, device: torch.device | str = "cpu"):
        if not ks or min(ks) < 1:
            raise ValueError(f"cut-offs must be positive integers, got {ks}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        normalise_for(similarity, torch.zeros(1, 1))  # refuses an unknown similarity now
        self.candidates = candidates
        self.ks = tuple(sorted(set(int(k) for k in ks)))
        self.similarity, self.chunk_size = similarity, chunk_size
        self.device = torch.device(device)
        self.prefix = f"rank-{candidates.name}/"
        c = candidates
        rows = np.repeat(np.arange(c.users.size), c.lengths)
        order = np.lexsort((c.relevant, rows))  # per row: non-relevant candidates first (ties)
        self.items = torch.from_numpy(c.items[order].astype(np.int64)).to(self.device)
        self.relevant = torch.from_numpy(c.relevant[order]).to(self.device)
        self.indptr = torch.from_numpy(c.indptr).to(self.device)
        self.users = torch.from_numpy(c.users).to(self.device)
        self.n_relevant = torch.from_numpy(c.n_relevant).to(self.device)
        self.by_length = torch.from_numpy(np.argsort(c.lengths, kind="stable")).to(self.device)
        self.first_stage: dict[str, np.ndarray] = {}
        if c.kind == "retrieved":
            recall = c.retriever_recall()
            self.first_stage = {f"{self.prefix}retriever_recall@{c.n}": recall,
                                f"{self.prefix}retriever_hitrate@{c.n}": (recall > 0).astype(np.float64)}
        self.last: CandidateResult | None = None

    @property
    def keys(self) -> list[str]:
        """The keys :meth:`evaluate` returns."""
        at_k = [f"{self.prefix}{m}@{k}" for m in RANK_METRICS for k in self.ks]
        return [*at_k, f"{self.prefix}mrr", f"{self.prefix}auc", *self.first_stage]

    @torch.no_grad()
    def accumulate(self, user_emb: torch.Tensor, item_emb: torch.Tensor) -> CandidateResult:
        """Per-user values for every user of the candidate set."""
        n_users, max_k = self.users.numel(), max(self.ks)
        items = normalise_for(self.similarity, item_emb.to(self.device))
        user_emb = user_emb.to(self.device)
        out = {key: np.empty(n_users) for key in self.keys if key not in self.first_stage}
        for s in range(0, n_users, self.chunk_size):
            pick = self.by_length[s:s + self.chunk_size]  # rows of similar lengths: little padding
            at = pick.cpu().numpy()
            starts = self.indptr[pick]
            lengths = self.indptr[pick + 1] - starts
            width = max(int(lengths.max()), max_k)
            rows = torch.repeat_interleave(torch.arange(pick.numel(), device=self.device), lengths)
            cols = torch.arange(rows.numel(), device=self.device) - (torch.cumsum(lengths, 0) - lengths)[rows]
            flat = starts[rows] + cols
            rel = torch.zeros(pick.numel(), width, dtype=torch.bool, device=self.device)
            real = torch.zeros_like(rel)
            rel[rows, cols], real[rows, cols] = self.relevant[flat], True
            u = normalise_for(self.similarity, user_emb[self.users[pick]])
            scores = torch.full(rel.shape, float("-inf"), dtype=u.dtype, device=self.device)
            # the candidates only; F.embedding gathers rows several times faster than items[...]
            cand = torch.nn.functional.embedding(self.items[flat], items)
            scores[rows, cols] = (cand * torch.repeat_interleave(u, lengths, 0)).sum(1)
            ranked, order = torch.sort(scores, dim=1, descending=True, stable=True)
            hits = rel.gather(1, order)  # padding sorts last: -inf and after every real candidate
            n_rel = self.n_relevant[pick]
            for k in self.ks:
                values = metric_values(hits, n_rel, k)
                for m in RANK_METRICS:
                    out[f"{self.prefix}{m}@{k}"][at] = values[m].cpu().numpy()
            any_hit = hits.any(1)
            first = hits.to(torch.int8).argmax(1).to(torch.float64) + 1
            out[f"{self.prefix}mrr"][at] = torch.where(any_hit, 1.0 / first, 0.0).cpu().numpy()
            out[f"{self.prefix}auc"][at] = _auc(ranked, hits, real.gather(1, order) & ~hits).cpu().numpy()
        out.update(self.first_stage)
        covered = self.candidates.retriever_recall() > 0
        return CandidateResult(self.candidates.users, out, covered)

    @torch.no_grad()
    def evaluate(self, user_emb: torch.Tensor, item_emb: torch.Tensor) -> dict[str, float]:
        """Mean values (see the class's docstring); the per-user ones stay in :attr:`last`."""
        self.last = self.accumulate(user_emb, item_emb)
        return self.last.compute()

    @torch.no_grad()
    def evaluate_model(self, model: torch.nn.Module) -> dict[str, float]:
        """:meth:`evaluate` on ``model()``'s user and item representations, in eval mode."""
        return self.evaluate(*scored_reps(model))


def _auc(ranked: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Per row, the share of (positive, negative) pairs with the positive scored higher, ties half
    (Mann-Whitney), from the rows sorted by score with every positive after the negatives it ties
    (``ranked``: the sorted scores; ``pos``, ``neg``: flags in that order). The negatives after a
    positive are those it beats; each tie group adds half its positives x negatives. NaN for a
    row without positives or without negatives."""
    n_neg = neg.sum(1, keepdim=True)
    wins = ((n_neg - torch.cumsum(neg, 1)) * pos).sum(1).to(torch.float64)
    new = torch.ones_like(pos)
    new[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    group = torch.cumsum(new, 1) - 1  # tie group of each position
    per_group = torch.zeros(2, *pos.shape, dtype=torch.float64, device=pos.device)
    per_group[0].scatter_add_(1, group, pos.to(torch.float64))
    per_group[1].scatter_add_(1, group, neg.to(torch.float64))
    ties = (per_group[0] * per_group[1]).sum(1)
    pairs = pos.sum(1).to(torch.float64) * n_neg.squeeze(1).to(torch.float64)
    return torch.where(pairs > 0, (wins + 0.5 * ties) / pairs.clamp(min=1), torch.nan)
