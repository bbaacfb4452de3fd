"""What Xavier's catalogue-dependent scale does to learning, against a normal draw whose scale does not.

    python benchmarks/init_scale.py --sizes 50000 1000000 --epochs 4 --inits xavier normal normal:0.01 \
        --out init_scale.json

``init xavier`` draws a table uniform on ``+-sqrt(6 / (rows + dim))``: its rows shrink as the
catalogue grows (standard deviation 0.0063 at 50k items x dim 64, 0.0014 at 1M); ``init normal``
draws ``N(0, std^2)`` at any size (``--inits normal:STD``; ``normal`` alone: std 0.1,
LightGCN-PyTorch's). For each catalogue size the script generates one data set with
learnable structure that scales to millions of items (``topic_pairs``: 10,000 users, each with a
favourite topic among 50; ~80% of a user's interactions fall in it, the rest anywhere; within a topic
and overall, items are drawn by a power law of their popularity rank, alpha 1), splits each user's
items 80/20, and trains MF (dim 64, batch 2048, lr 1e-3, one thread) with ``--optimizer`` (default
``sparse-adam``, the optimizer for large catalogues) and each loss of ``--losses`` under each init,
from the same seed. After every epoch (and before the first) it records Recall@20 and NDCG@20 on a
fixed, seeded sample of ``--eval-users`` test users ranked against the whole catalogue (the study's
inner-product scoring, seen items masked), and at the end the norms of the item rows that training
reached and of those it never touched (a sparse optimizer leaves those at their initial draw, and
under the inner product an untouched row's score is its random draw's).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ssmrec.data import Dataset, Interactions, ratio_split
from ssmrec.train import TrainConfig, Trainer

INITS = ("xavier", "normal")


def parse_init(spec: str) -> tuple[str, float]:
    """``xavier``, ``normal`` (std 0.1, LightGCN-PyTorch's) or ``normal:STD`` -> (init, init_std)."""
    name, _, std = spec.partition(":")
    return name, float(std) if std else 0.1


def topic_pairs(n_users: int, n_items: int, per_user: tuple[int, int] = (10, 30), topics: int = 50,
                in_topic: float = 0.8, alpha: float = 1.0, seed: int = 0) -> Interactions:
    """Distinct (user, item) pairs with topic structure (see the module docstring), in O(pairs)."""
    rng = np.random.default_rng(seed)
    weight = (rng.permutation(n_items) + 1.0) ** -alpha  # popularity by a random rank
    topic = rng.integers(0, topics, n_items)
    members = [np.flatnonzero(topic == k) for k in range(topics)]
    cdfs = [np.cumsum(weight[m]) / weight[m].sum() for m in members]
    overall = np.cumsum(weight) / weight.sum()
    favourite = rng.integers(0, topics, n_users)
    counts = rng.integers(per_user[0], per_user[1] + 1, n_users)
    draws = (counts * 1.5).astype(int) + 5  # more than needed: duplicates are dropped below
    users = np.repeat(np.arange(n_users), draws)
    inside = rng.random(users.size) < in_topic
    items = np.minimum(np.searchsorted(overall, rng.random(users.size)), n_items - 1)
    for k in range(topics):
        sel = inside & (favourite[users] == k)
        pick = np.minimum(np.searchsorted(cdfs[k], rng.random(int(sel.sum()))), len(members[k]) - 1)
        items[sel] = members[k][pick]
    keys = users.astype(np.int64) * n_items + items
    _, first = np.unique(keys, return_index=True)
    first.sort()  # the first draws of each user, in draw order
    users, items = users[first], items[first]
    rank = np.arange(users.size) - np.searchsorted(users, users)  # position among the user's distinct items
    keep = rank < counts[users]
    return Interactions.from_pairs(users[keep], items[keep], n_users, n_items, name="topics")


def run(ds: Dataset, loss: str, spec: str, args) -> dict:
    """One training run: metrics before training and after each epoch, row norms at the end."""
    init, std = parse_init(spec)
    cfg = TrainConfig.from_dict({"dataset": ds.name, "model": "mf", "loss": loss, "optimizer": args.optimizer,
                                 "init": init, "init_std": std, "dim": args.dim, "batch_size": args.batch,
                                 "lr": args.lr, "threads": 1, "device": "cpu", "progress": False,
                                 "eval_users": args.eval_users, "ks": (20,), "seed": args.seed})
    t = Trainer(cfg, ds, write=False, echo=None)
    start = t.model.item_emb.detach().clone()

    def evaluate(epoch: int, loss_value: float | None, seconds: float) -> dict:
        a = time.perf_counter()
        m = t.evaluate(t.select_eval)
        return {"epoch": epoch, "loss": loss_value, "train_s": seconds, "eval_s": time.perf_counter() - a,
                "recall@20": m["recall@20"], "ndcg@20": m["ndcg@20"]}

    history = [evaluate(0, None, 0.0)]
    for epoch in range(args.epochs):
        a = time.perf_counter()
        value = t.train_epoch(epoch)
        t.epoch, t.batch = epoch + 1, 0  # as Trainer.fit between epochs
        t.partial = {"loss": 0.0, "batches": 0, "seconds": 0.0}
        history.append(evaluate(epoch + 1, value, time.perf_counter() - a))
        h = history[-1]
        print(f"  {ds.train.n_items:,} {loss} {spec} epoch {epoch + 1}: recall@20 {h['recall@20']:.4f} "
              f"ndcg@20 {h['ndcg@20']:.4f} (train {h['train_s']:.0f} s, eval {h['eval_s']:.0f} s)", flush=True)
    item = t.model.item_emb.detach()
    moved = (item != start).any(1)
    norms = item.norm(dim=1)
    return {"n_items": ds.train.n_items, "loss": loss, "init": init, "init_std": std if init == "normal" else None,
            "init_item_std": float(start.std()), "history": history,
            "items_trained": int(moved.sum()), "items_untouched": int((~moved).sum()),
            "norm_trained_median": float(norms[moved].median()) if moved.any() else None,
            "norm_untouched_median": float(norms[~moved].median()) if (~moved).any() else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[50_000, 1_000_000])
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--losses", nargs="+", default=["ssm", "bpr"])
    p.add_argument("--inits", nargs="+", default=list(INITS),
                   help="xavier, normal (std 0.1, not the setting's default) or normal:STD")
    p.add_argument("--optimizer", default="sparse-adam")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--eval-users", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    for n in args.sizes:
        inter = topic_pairs(args.users, n, seed=args.seed)
        train, _, test = ratio_split(inter, (0.8, 0.0, 0.2), seed=0)
        ds = Dataset(f"topics-{n}", train, test, source="benchmarks/init_scale.py")
        print(f"{n:,} items: {train.nnz:,} train pairs, {int((train.item_degree > 0).sum()):,} items with one",
              flush=True)
        for loss in args.losses:
            for spec in args.inits:
                rows.append(run(ds, loss, spec, args))
                if args.out:
                    Path(args.out).write_text(json.dumps({"args": vars(args), "torch": torch.__version__,
                                                          "rows": rows}, indent=1))
    for r in rows:
        curve = " ".join(f"{h['recall@20']:.4f}" for h in r["history"])
        init = r["init"] + (f" {r['init_std']:g}" if r.get("init_std") else "")
        print(f"{r['n_items']:>9,} {r['loss']:>4} {init:>11}: recall@20 by epoch {curve}")


if __name__ == "__main__":
    main()
