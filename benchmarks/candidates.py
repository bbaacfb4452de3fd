"""Time to build candidate sets and to evaluate one model on them, beside full ranking.

    SSMREC_DATA=/work/shared/data python benchmarks/candidates.py --dataset gowalla --threads 1

Builds ``sampled<N>`` (uniform unknown items) and ``itemknn<N>`` / ``pop<N>`` (first-stage top N),
then evaluates random embeddings (``--dim``, cosine) on each set and with the full-ranking
Evaluator. Random embeddings cost what a trained model's do; their metric values mean nothing.
Prints one JSON object: [wall, CPU] seconds per step, candidates per user, ItemKNN's similarity entries.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from ssmrec.data import DataConfig, load_dataset
from ssmrec.eval import Evaluator
from ssmrec.eval.candidates import CandidateEvaluator, retrieved_candidates, sampled_candidates
from ssmrec.eval.first_stage import ItemKNNRetriever, PopularityRetriever


def timed(fn):
    """``(result, [wall seconds, CPU seconds of this process])``: on a shared machine the CPU
    seconds say what the step costs, the wall ones what it took there."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, [round(time.perf_counter() - t, 2), round(time.process_time() - c, 2)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="gowalla")
    ap.add_argument("--sampled", type=int, default=100, help="N of the sampled set")
    ap.add_argument("--retrieved", type=int, default=200, help="N of the retrieved sets")
    ap.add_argument("--neighbours", type=int, default=200, help="ItemKNN neighbourhood")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = load_dataset(DataConfig(dataset=args.dataset, download=False))
    exclude = ds.exclusions("test")
    out = {"dataset": ds.name, "users": ds.n_users, "items": ds.n_items, "train": ds.train.nnz,
           "test_users": int(ds.test.active_users.size), "threads": args.threads, "device": args.device}
    sampled, out["build_sampled_s"] = timed(lambda: sampled_candidates(ds.test, exclude, n=args.sampled, seed=0))
    knn, out["build_itemknn_similarity_s"] = timed(lambda: ItemKNNRetriever(ds.train, neighbours=args.neighbours))
    out["itemknn_similarity_entries"] = int(knn.similarity.nnz)
    retrieved, out["build_itemknn_candidates_s"] = timed(
        lambda: retrieved_candidates(ds.test, exclude, knn, n=args.retrieved))
    popular, out["build_pop_candidates_s"] = timed(
        lambda: retrieved_candidates(ds.test, exclude, PopularityRetriever(ds.train), n=args.retrieved))
    g = torch.Generator().manual_seed(0)
    u = torch.randn(ds.n_users, args.dim, generator=g)
    i = torch.randn(ds.n_items, args.dim, generator=g)
    for cands in (sampled, retrieved, popular):
        ev = CandidateEvaluator(cands, ks=(20,), similarity="cos", device=args.device)
        values, out[f"evaluate_{cands.name}_s"] = timed(lambda ev=ev: ev.evaluate(u, i))
        out[f"{cands.name}_candidates_per_user"] = round(float(cands.lengths.mean()), 1)
        out[f"{cands.name}_mb"] = round((cands.items.nbytes + cands.relevant.nbytes) / 2**20, 1)
        if cands.kind == "retrieved":
            out[f"{cands.name}_retriever_recall"] = round(values[f"rank-{cands.name}/retriever_recall@{cands.n}"], 4)
    full = Evaluator(ds.test, exclude, ks=(20,), similarity="cos", device=args.device)
    _, out["evaluate_full_ranking_s"] = timed(lambda: full.evaluate(u, i))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
