"""What the race measures of a finalist, once, on test: retrieval (every item ranked, the top K
kept) and ranking (each user's held-out items re-ranked within a candidate set shared by every
arm: N sampled items, and the top N of a first-stage retriever that no arm trained), plus its
long-tail share, catalogue coverage and cost. Per-user values are kept for the leaderboard's
intervals and paired tests (``race.per_user.npz`` in the run's folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

PER_USER = "race.per_user.npz"


class Measurer:
    """Measures finalists of one race against the same test users and candidate sets.

    Args:
        data: the race's dataset (holdout protocol: train, validation, test).
        k: the cut-off of every metric.
        sampled: candidates per user of the sampled setting (0: off).
        retrieved: candidates per user of the retrieved setting (0: off).
        seed: seed of the sampled candidates.
    """

    def __init__(self, data, *, k: int, sampled: int = 100, retrieved: int = 200, seed: int = 0):
        from ssmrec.eval.candidates import CandidateEvaluator, retrieved_candidates, sampled_candidates
        from ssmrec.eval.first_stage import ItemKNNRetriever

        self.data, self.k = data, k
        exclude = data.exclusions("test")
        self.settings: dict[str, CandidateEvaluator] = {}
        self.described: dict[str, str] = {}
        if sampled:
            c = sampled_candidates(data.test, exclude, n=sampled, seed=seed)
            self.settings[c.name] = CandidateEvaluator(c, ks=(k,))
            self.described[c.name] = (f"each test user's held-out items among {sampled} items sampled uniformly "
                                      f"from the items the user never interacted with (seed {seed})")
        if retrieved:
            c = retrieved_candidates(data.test, exclude, ItemKNNRetriever(data.train), n=retrieved)
            self.settings[c.name] = CandidateEvaluator(c, ks=(k,))
            recall = float(c.retriever_recall().mean()) if c.users.size else float("nan")
            self.described[c.name] = (f"the top {retrieved} items of an ItemKNN first stage (item-item cosine over "
                                      f"the training matrix; trained by no arm) re-ranked; held-out items it "
                                      f"missed count as misses (its recall@{retrieved}: {recall:.3f}, the ceiling "
                                      "of every arm's recall here)")

    def __call__(self, trainer, result: dict[str, Any], path: Path) -> dict[str, Any]:
        from ssmrec.eval.evaluator import Evaluator
        from ssmrec.eval.popularity import recall_tail_share, topk_profile

        cfg, data, k = trainer.cfg, self.data, self.k
        model = trainer.model
        model.eval()
        with torch.no_grad():
            u, i = model()
        u, i = u.detach().cpu(), i.detach().cpu()
        exclude = data.exclusions("test")
        ev = Evaluator(data.test, exclude, ks=(k,), similarity=cfg.scoring, chunk_size=cfg.eval_chunk)
        test = ev.evaluate(u, i)
        per_user = {"users": np.flatnonzero(ev.last.seen).astype(np.int32)}
        for key in (f"recall@{k}", f"ndcg@{k}"):
            per_user[key] = ev.last.per_user(key).astype(np.float32)
        ranking: dict[str, dict[str, float]] = {}
        for name, cev in self.settings.items():
            cev.similarity = cfg.scoring
            got = cev.evaluate(u, i)
            ranking[name] = {key.split("/", 1)[1]: value for key, value in got.items()}
            per_user[f"{name}.users"] = cev.last.users.astype(np.int32)
            for key in (f"ndcg@{k}", "auc"):
                per_user[f"{name}/{key}"] = cev.last.per_user(f"{cev.prefix}{key}").astype(np.float32)
        profile = topk_profile(u, i, data.test, exclude, data.train, k=k, similarity=cfg.scoring,
                               chunk_size=cfg.eval_chunk)
        np.savez_compressed(path / PER_USER, **per_user)
        return {
            "params": {"tau": cfg.tau, "reg": cfg.reg, **cfg.loss_params},
            "test": test, "ranking": ranking,
            "tail_share": recall_tail_share(profile), "coverage": profile["coverage"],
            "avg_popularity_percentile": profile["avg_popularity_percentile"],
            "valid": result.get("valid"), "best_epoch": result["best_epoch"], "epochs_run": result["epochs_run"],
            "stop_reason": result["stop_reason"], "train_seconds": result["train_seconds"],
            "seconds_per_epoch": result["seconds_per_epoch"],
        }
