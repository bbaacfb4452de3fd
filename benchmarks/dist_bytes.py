"""Bytes per step of data-parallel training against the catalogue: dense Adam against the sparse optimizers.

    python benchmarks/dist_bytes.py --sizes 50000 500000 2000000 --steps 4 --out dist_bytes.json

For each catalogue size (users = items = N, the 1,000,000 power-law pairs of ``benchmarks/scale.py``)
MF (dim 64, global batch 2048, lr 1e-3) trains with BPR and with SSM (in-batch), with each optimizer,
on ``--nproc`` processes (gloo, one thread each, as ``ssmrec train --nproc 2`` starts them). Every
cell runs in a fresh group of processes. Each process counts, per step (:meth:`Trainer.step`: the
objective with its all-gathers, backward, the gradient exchange, the optimizer), the bytes it hands
to collectives, two ways:

* ``traffic``: :class:`ssmrec.train.distributed.Traffic`, the counter of the
  :class:`~ssmrec.train.distributed.DistContext` the trainer uses, by operation;
* ``wiretap``: ``torch.distributed.all_gather`` / ``all_reduce`` / ``broadcast`` /
  ``reduce_scatter_tensor`` wrapped for the run, summing ``numel x element_size`` of the tensor each
  call is handed (a gather's own part, a reduction's whole tensor): an independent check that the
  counter misses no collective.

With 2 processes that is also what a ring algorithm sends per process (an all-gather sends the
other process its part; an all-reduce sends ``2 (world - 1) / world = 1`` times the tensor).
``table_bytes`` is ``(users + items) x dim x 4``, what dense Adam all-reduces. Byte counts do not
depend on the machine's load; the step times recorded beside them do.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import make_dataset  # noqa: E402  (the catalogue of benchmarks/scale.py)

from ssmrec.train import TrainConfig, Trainer  # noqa: E402
from ssmrec.train.distributed import Traffic, launch  # noqa: E402

OPTIMIZERS = ("adam", "sparse-adam", "rowwise-adagrad")
LOSSES = ("bpr", "ssm")
WRAPPED = ("all_gather", "all_reduce", "broadcast", "reduce_scatter_tensor")


class Wiretap:
    """``torch.distributed``'s collectives wrapped to sum the bytes each call is handed."""

    def __init__(self) -> None:
        self.bytes = 0
        self._saved: dict[str, object] = {}

    def __enter__(self) -> Wiretap:
        for name in WRAPPED:
            original = getattr(dist, name)
            self._saved[name] = original

            def wrapped(*args, _original=original, _name=name, **kwargs):
                # all_gather(list, tensor), reduce_scatter_tensor(out, tensor): the second; else the first
                t = args[1] if _name in ("all_gather", "reduce_scatter_tensor") else args[0]
                self.bytes += t.numel() * t.element_size()
                return _original(*args, **kwargs)

            setattr(dist, name, wrapped)
        return self

    def __exit__(self, *exc) -> None:
        for name, fn in self._saved.items():
            setattr(dist, name, fn)


def measure(ctx, n: int, loss: str, optimizer: str, opts: dict, out: str) -> None:
    """One cell in this process of the group: ``opts['steps']`` steps after one warm-up step."""
    torch.set_num_threads(1)
    ds = make_dataset(n, opts["pairs"], cache=Path(opts["cache"]) if opts["cache"] else None)
    cfg = TrainConfig.from_dict({"dataset": ds.name, "model": "mf", "loss": loss, "optimizer": optimizer,
                                 "dim": opts["dim"], "batch_size": opts["batch"], "threads": 1, "device": "cpu",
                                 "progress": False, "lr": 1e-3})
    traffic = Traffic()
    t = Trainer(cfg, ds, write=False, echo=None, dist=dataclasses.replace(ctx, traffic=traffic))
    stream = t.sampler.epoch(0, rank=ctx.rank, world=ctx.world)
    steps = []
    with Wiretap() as tap:
        for k in range(opts["steps"] + 1):
            batch = next(stream)
            traffic.reset()
            tap.bytes = 0
            dist.barrier()
            a = time.perf_counter()
            t.step(batch, 0)
            seconds = time.perf_counter() - a
            if k:  # the first step warms up (allocations, the optimizer's state)
                steps.append({"bytes": dict(traffic.bytes), "calls": dict(traffic.calls), "total": traffic.total,
                              "wiretap": tap.bytes, "step_s": seconds})
    rows = ds.train.n_users + ds.train.n_items
    record = {"n": n, "loss": loss, "optimizer": optimizer, "rank": ctx.rank, "world": ctx.world,
              "users": ds.train.n_users, "items": ds.train.n_items, "dim": cfg.dim, "batch": cfg.batch_size,
              "table_bytes": rows * cfg.dim * 4, "steps": steps}
    Path(out, f"rank{ctx.rank}.json").write_text(json.dumps(record))


def run_cell(n: int, loss: str, optimizer: str, args) -> dict:
    """:func:`measure` on ``args.nproc`` fresh processes; the ranks' records combined."""
    opts = {"pairs": args.pairs, "cache": args.cache, "dim": args.dim, "batch": args.batch, "steps": args.steps}
    with tempfile.TemporaryDirectory(prefix="dist-bytes-") as out:
        launch(measure, (n, loss, optimizer, opts, out), nproc=args.nproc, timeout=1800)
        ranks = [json.loads(p.read_text()) for p in sorted(Path(out).glob("rank*.json"))]
    r0 = ranks[0]
    totals = [s["total"] for r in ranks for s in r["steps"]]
    taps = [s["wiretap"] for r in ranks for s in r["steps"]]
    return {**{k: r0[k] for k in ("n", "loss", "optimizer", "world", "users", "items", "dim", "batch", "table_bytes")},
            "bytes_per_step_mean": statistics.mean(totals), "bytes_per_step_max": max(totals),
            "bytes_per_step_min": min(totals), "counter_equals_wiretap": totals == taps,
            "by_operation_rank0": [s["bytes"] for s in r0["steps"]],
            "calls_rank0": r0["steps"][0]["calls"],
            "step_s_median": statistics.median(s["step_s"] for r in ranks for s in r["steps"]),
            "ranks": ranks}


def table(rows: list[dict]) -> list[str]:
    """Markdown: MB each process sends per step (mean over steps), and as a share of the tables."""
    sizes = sorted({r["n"] for r in rows})
    by = {(r["n"], r["loss"], r["optimizer"]): r for r in rows}
    cols = [(loss, opt) for loss in LOSSES for opt in OPTIMIZERS if any((n, loss, opt) in by for n in sizes)]
    head = "| users = items | tables (MB) | " + " | ".join(f"{loss.upper()}, {opt}" for loss, opt in cols) + " |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for n in sizes:
        table_mb = next(r["table_bytes"] for r in rows if r["n"] == n) / 1e6
        cells = []
        for key in cols:
            r = by.get((n, *key))
            cells.append("—" if r is None else f"{r['bytes_per_step_mean'] / 1e6:,.3f}")
        lines.append(f"| {n:,} | {table_mb:,.1f} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[50_000, 500_000, 2_000_000])
    p.add_argument("--pairs", type=int, default=1_000_000)
    p.add_argument("--steps", type=int, default=4, help="measured steps per cell, after one warm-up step")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=2048, help="global batch (positives), split over the processes")
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--losses", nargs="+", default=list(LOSSES))
    p.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS))
    p.add_argument("--cache", default="/tmp/ssmrec-scale", help="folder for the generated pairs ('' = none)")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    for n in args.sizes:  # the data once, before any process group
        make_dataset(n, args.pairs, cache=Path(args.cache) if args.cache else None)
    rows = []
    for n in args.sizes:
        for loss in args.losses:
            for opt in args.optimizers:
                r = run_cell(n, loss, opt, args)
                rows.append(r)
                print(f"{n:,} {loss} {opt}: {r['bytes_per_step_mean'] / 1e6:,.3f} MB per step per process "
                      f"(tables {r['table_bytes'] / 1e6:,.1f} MB; counter = wiretap: {r['counter_equals_wiretap']}; "
                      f"step {r['step_s_median']:.2f} s)", flush=True)
                if args.out:  # after every cell: a long run keeps what it measured
                    Path(args.out).write_text(json.dumps({"args": vars(args), "torch": torch.__version__,
                                                          "rows": rows}, indent=1))
    print("\n".join(table(rows)))


if __name__ == "__main__":
    main()
