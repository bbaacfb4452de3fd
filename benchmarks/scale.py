"""Step time against the catalogue: the same 1M interactions spread over a growing catalogue.

    python benchmarks/scale.py --sizes 50000 500000 2000000 --steps 24 --out scale.json

For each size (users = items = N) the script draws 1,000,000 distinct (user, item) pairs: users
uniform, items by a power law (the item of popularity rank r drawn with probability
proportional to ``(r + 1) ** -alpha``, alpha 1, ranks scattered over the ids), and trains MF
(dim 64, batch 2048, 1 thread) with BPR and with SSM. Per loss, one Trainer per optimizer
(``adam``, ``sparse-adam``, ``rowwise-adagrad``) steps through the same batches (one seed, one
stream), interleaved step by step and in a rotating order so that drift of the machine reaches
every optimizer alike; a step is :meth:`Trainer.step` (objective, backward, optimizer step, loss
fetched), timed after ``--warmup`` untimed steps. Drawing the batches (the sampler) is timed
apart, and each optimizer's step is split into its phases (forward + loss, backward, optimizer)
on the same batches for the record. Medians are reported, with the ratio to the smallest size.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time

import numpy as np
import torch

from ssmrec.data import Dataset, Interactions
from ssmrec.train import TrainConfig, Trainer

OPTIMIZERS = ("adam", "sparse-adam", "rowwise-adagrad")
LOSSES = ("bpr", "ssm")


def power_law_pairs(n_users: int, n_items: int, pairs: int, alpha: float = 1.0,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``pairs`` distinct (user, item) pairs: uniform users, power-law items (see the module docstring)."""
    rng = np.random.default_rng(seed)
    p = (np.arange(n_items) + 1.0) ** -alpha
    cdf = np.cumsum(p / p.sum())
    ids = rng.permutation(n_items)  # the popular items are not the first ids
    keys = np.empty(0, np.int64)
    while keys.size < pairs:
        k = int((pairs - keys.size) * 1.3) + 1000
        u = rng.integers(0, n_users, k)
        i = ids[np.minimum(np.searchsorted(cdf, rng.random(k)), n_items - 1)]
        keys = np.unique(np.concatenate([keys, u * n_items + i]))
    keys = rng.choice(keys, pairs, replace=False)
    return np.divmod(keys, n_items)


def make_dataset(n: int, pairs: int, seed: int = 0) -> Dataset:
    users, items = power_law_pairs(n, n, pairs + 2000, seed=seed)
    train = Interactions.from_pairs(users[:pairs], items[:pairs], n, n, name="train")
    test = Interactions.from_pairs(users[pairs:], items[pairs:], n, n, name="test")
    return Dataset(f"powerlaw-{n}", train, test, source="benchmarks/scale.py")


def trainer(ds: Dataset, loss: str, optimizer: str, dim: int, batch: int) -> Trainer:
    cfg = TrainConfig.from_dict({"dataset": ds.name, "model": "mf", "loss": loss, "optimizer": optimizer,
                                 "dim": dim, "batch_size": batch, "threads": 1, "device": "cpu",
                                 "progress": False, "lr": 1e-3})
    return Trainer(cfg, ds, write=False, echo=None)


def phases(t: Trainer, batches) -> dict[str, float]:
    """Median ms of the step's phases on ``batches`` (the step as Trainer.step takes it)."""
    out: dict[str, list[float]] = {"forward_ms": [], "backward_ms": [], "optimizer_ms": []}
    for b in batches:
        a = time.perf_counter()
        loss = t.objective(t.model, b)
        loss.item()
        f = time.perf_counter()
        t.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        g = time.perf_counter()
        t.optimizer.step()
        h = time.perf_counter()
        out["forward_ms"].append((f - a) * 1e3)
        out["backward_ms"].append((g - f) * 1e3)
        out["optimizer_ms"].append((h - g) * 1e3)
    return {k: statistics.median(v) for k, v in out.items()}


def measure(ds: Dataset, loss: str, optimizers, steps: int, warmup: int, dim: int, batch: int) -> list[dict]:
    trainers = {opt: trainer(ds, loss, opt, dim, batch) for opt in optimizers}
    first = next(iter(trainers.values()))
    stream, sample_ms = first.sampler.epoch(0), []
    batches = []
    for _ in range(warmup + steps + 8):  # the same batches for every optimizer (one seed, one stream)
        a = time.perf_counter()
        batches.append(next(stream))
        sample_ms.append((time.perf_counter() - a) * 1e3)
    times: dict[str, list[float]] = {opt: [] for opt in optimizers}
    order = list(optimizers)
    for k, b in enumerate(batches[:warmup + steps]):
        order = order[1:] + order[:1]  # rotate: no optimizer always runs first
        for opt in order:
            a = time.perf_counter()
            trainers[opt].step(b, 0)
            if k >= warmup:
                times[opt].append((time.perf_counter() - a) * 1e3)
    rows = []
    for opt in optimizers:
        rows.append({"n": ds.n_users, "loss": loss, "optimizer": opt, "step_ms": statistics.median(times[opt]),
                     "steps": len(times[opt]), "sample_ms": statistics.median(sample_ms),
                     **phases(trainers[opt], batches[warmup + steps:])})
    del trainers, first
    gc.collect()
    return rows


def table(rows: list[dict]) -> list[str]:
    """Markdown: median ms per step, and the ratio to the smallest catalogue."""
    sizes = sorted({r["n"] for r in rows})
    by = {(r["n"], r["loss"], r["optimizer"]): r for r in rows}
    head = "| users = items | " + " | ".join(f"MF + {loss.upper()}, {opt}" for loss in LOSSES for opt in OPTIMIZERS
                                            if (sizes[0], loss, opt) in by) + " |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for n in sizes:
        cells = []
        for loss in LOSSES:
            for opt in OPTIMIZERS:
                if (sizes[0], loss, opt) not in by:
                    continue
                r = by.get((n, loss, opt))
                if r is None:
                    cells.append("—")
                    continue
                ratio = r["step_ms"] / by[(sizes[0], loss, opt)]["step_ms"]
                cells.append(f"{r['step_ms']:,.1f}" + (f" (×{ratio:.2f})" if n != sizes[0] else ""))
        lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[50_000, 500_000, 2_000_000])
    p.add_argument("--pairs", type=int, default=1_000_000)
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--losses", nargs="+", default=list(LOSSES))
    p.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS))
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    for n in args.sizes:
        a = time.perf_counter()
        ds = make_dataset(n, args.pairs)
        print(f"{ds.name}: {ds.train.nnz:,} pairs, built in {time.perf_counter() - a:.1f} s", flush=True)
        for loss in args.losses:
            for r in measure(ds, loss, args.optimizers, args.steps, args.warmup, args.dim, args.batch):
                rows.append(r)
                print(json.dumps(r), flush=True)
        del ds
        gc.collect()
    print("\n".join(table(rows)))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
