"""Step time against the catalogue: the same 1M interactions spread over a growing catalogue.

    python benchmarks/scale.py --sizes 50000 500000 2000000 --steps 24 --rounds 3 --out scale.json

For each size (users = items = N) the script draws 1,000,000 distinct (user, item) pairs: users
uniform, items by a power law (the item of popularity rank r drawn with probability
proportional to ``(r + 1) ** -alpha``, alpha 1, ranks scattered over the ids), and trains MF
(or ``--model``: SVD++, 1-layer LightGCN) (dim 64, batch 2048, lr 1e-3, 1 thread) with BPR and
with SSM, with each optimizer (``adam``, ``sparse-adam``, ``rowwise-adagrad``). A step is
:meth:`Trainer.step` (objective, backward, optimizer step, loss fetched), timed after
``--warmup`` untimed steps, on the batches of seed 0 (the same for every optimizer). Drawing a
batch (the sampler) is timed apart, and the step is split into its phases (forward + loss,
backward, optimizer) on further batches, for the record.
``--epoch`` times one whole training epoch per cell instead (:meth:`Trainer.train_epoch`: every
batch drawn and stepped).

Every cell (size x loss x optimizer) runs in a fresh process, alone: a dense-Adam trainer of a
2M catalogue frees and maps gigabytes per step, which would slow whatever shares its process
(measured: the SSM step of a sparse optimizer beside it, x1.8). The cells are interleaved in
rounds (every cell once per round, in order), so that drift of the machine reaches all alike;
a cell's figure is the median of its steps over all rounds (dense Adam: ``--dense-rounds``,
its ratios are large enough to need no more). Ratios are to the smallest catalogue.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

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


def make_dataset(n: int, pairs: int, seed: int = 0, cache: Path | None = None) -> Dataset:
    """The pairs of size ``n`` (2,000 more held out as a token test set), cached in ``cache``."""
    path = cache / f"powerlaw-{n}-{pairs}-{seed}.npz" if cache else None
    if path is not None and path.exists():
        z = np.load(path)
        users, items = z["users"], z["items"]
    else:
        users, items = power_law_pairs(n, n, pairs + 2000, seed=seed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, users=users, items=items)
    train = Interactions.from_pairs(users[:pairs], items[:pairs], n, n, name="train")
    test = Interactions.from_pairs(users[pairs:], items[pairs:], n, n, name="test")
    return Dataset(f"powerlaw-{n}", train, test, source="benchmarks/scale.py")


def trainer(ds: Dataset, loss: str, optimizer: str, dim: int, batch: int, model: str = "mf") -> Trainer:
    """A Trainer of ``model`` (LightGCN: 1 layer) on ``ds``, one thread, writing nothing."""
    cfg = TrainConfig.from_dict({"dataset": ds.name, "model": model, "layers": 1, "loss": loss, "optimizer": optimizer,
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


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_cell(n: int, loss: str, optimizer: str, args) -> dict:
    """One cell in this process: the step's median and its steps, the sampler, the phases."""
    torch.set_num_threads(1)
    ds = make_dataset(n, args.pairs, cache=Path(args.cache) if args.cache else None)
    a = time.perf_counter()
    t = trainer(ds, loss, optimizer, args.dim, args.batch, args.model)
    build_s = time.perf_counter() - a  # the Trainer: model tables drawn, sampler, optimizer
    if args.epoch:  # one whole epoch instead: sampling and every step, as a run trains it
        a = time.perf_counter()
        t.train_epoch(0)
        return {"n": n, "loss": loss, "optimizer": optimizer, "epoch_s": time.perf_counter() - a,
                "batches": len(t.sampler), "build_s": build_s, "peak_rss_mb": peak_rss_mb()}
    stream, sample_ms, batches = t.sampler.epoch(0), [], []
    for _ in range(args.warmup + args.steps + 8):
        a = time.perf_counter()
        batches.append(next(stream))
        sample_ms.append((time.perf_counter() - a) * 1e3)
    times = []
    for k, b in enumerate(batches[:args.warmup + args.steps]):
        a = time.perf_counter()
        t.step(b, 0)
        if k >= args.warmup:
            times.append((time.perf_counter() - a) * 1e3)
    return {"n": n, "loss": loss, "optimizer": optimizer, "step_ms": statistics.median(times), "times_ms": times,
            "sample_ms": statistics.median(sample_ms), **phases(t, batches[args.warmup + args.steps:]),
            "peak_rss_mb": peak_rss_mb()}


def run_cell(n: int, loss: str, optimizer: str, args) -> dict:
    """:func:`measure_cell` in a fresh process."""
    cmd = [sys.executable, __file__, "--cell", f"{n},{loss},{optimizer}", "--pairs", str(args.pairs),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--dim", str(args.dim),
           "--batch", str(args.batch), "--model", args.model, "--cache", args.cache or ""]
    cmd += ["--epoch"] if args.epoch else []
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def combine(runs: list[dict]) -> dict:
    """A cell's rounds: the median of all its steps, and of its phases' medians."""
    times = [x for r in runs for x in r["times_ms"]]
    out = {k: runs[0][k] for k in ("n", "loss", "optimizer")}
    out.update(step_ms=statistics.median(times), steps=len(times), rounds=len(runs),
               round_medians_ms=[r["step_ms"] for r in runs], peak_rss_mb=max(r["peak_rss_mb"] for r in runs))
    for k in ("sample_ms", "forward_ms", "backward_ms", "optimizer_ms"):
        out[k] = statistics.median(r[k] for r in runs)
    return out


def table(rows: list[dict]) -> list[str]:
    """Markdown: median ms per step, and the ratio to the smallest catalogue."""
    sizes = sorted({r["n"] for r in rows})
    by = {(r["n"], r["loss"], r["optimizer"]): r for r in rows}
    head = "| users = items | " + " | ".join(f"{loss.upper()}, {opt}" for loss in LOSSES for opt in OPTIMIZERS
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
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dense-rounds", type=int, default=1)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--model", default="mf", help="mf, svdpp or lightgcn (1 layer) (default: mf)")
    p.add_argument("--losses", nargs="+", default=list(LOSSES))
    p.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS))
    p.add_argument("--cache", default="/tmp/ssmrec-scale", help="folder for the generated pairs ('' = none)")
    p.add_argument("--epoch", action="store_true", help="time one training epoch per cell instead of steps")
    p.add_argument("--cell", default=None, help=argparse.SUPPRESS)  # N,loss,optimizer: one cell, here
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.cell:
        n, loss, opt = args.cell.split(",")
        print(json.dumps(measure_cell(int(n), loss, opt, args)))
        return
    for n in args.sizes:  # the data once, before any timing
        make_dataset(n, args.pairs, cache=Path(args.cache) if args.cache else None)
    if args.epoch:
        rows = [run_cell(n, loss, opt, args) for n in args.sizes for loss in args.losses for opt in args.optimizers]
        for r in rows:
            print(f"{r['n']:,} {r['loss']} {r['optimizer']}: epoch of {r['batches']} batches {r['epoch_s']:.1f} s")
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"args": vars(args), "torch": torch.__version__, "rows": rows}, f, indent=1)
        return
    runs: dict[tuple, list[dict]] = {}
    for r in range(max(args.rounds, args.dense_rounds)):
        for n in args.sizes:
            for loss in args.losses:
                for opt in args.optimizers:
                    if r >= (args.dense_rounds if opt == "adam" else args.rounds):
                        continue
                    cell = run_cell(n, loss, opt, args)
                    runs.setdefault((n, loss, opt), []).append(cell)
                    print(f"round {r + 1}: {n:,} {loss} {opt}: {cell['step_ms']:.1f} ms", flush=True)
    rows = [combine(v) for v in runs.values()]
    print("\n".join(table(rows)))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
