"""Epoch time with 1 vs several worker processes, and what the collectives cost per step.

    SSMREC_DATA=/work/shared/data python benchmarks/distributed.py --dataset gowalla --nproc 1 2 \
        --batches 30 --out distributed.json

Each configuration trains LightGCN (1 layer) + SSM with ``--threads`` torch threads per process
(default 1) on the CPU (``--device cuda`` for GPUs: one per process). Per configuration:

* ``median_step_s``: median time of a whole optimisation step after ``--warmup`` steps (every
  process holds its part of the 2048-pair global batch; the step includes the collectives), and
  ``epoch_s``: that times the batches of an epoch (the same number for any process count);
* ``collectives``: each collective of a step timed alone on tensors of the step's sizes (median
  of ``--repeats``, after a barrier), with the bytes each process sends: the all-gather of the
  positives' representations (forward) and of their ids, its backward (reduce-scatter on NCCL,
  all-reduce on gloo), the all-reduce of the loss, and the all-reduce of the flat gradients
  (every parameter: the embedding tables are dense gradients under LightGCN). ``bytes`` is the
  size of the tensor each process contributes (a gather's part; a reduction's whole tensor).

The numbers measure this machine under its current load: run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

from ssmrec.train import TrainConfig, Trainer
from ssmrec.train.distributed import _GatherRows, launch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        dist.barrier()
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def collectives(t: Trainer, repeats: int) -> dict[str, dict[str, float]]:
    """The collectives of one step, alone, at the step's sizes (ms, bytes sent per process)."""
    ctx, dev = t.dist, t.device
    world, d = ctx.world, t.cfg.dim
    m = ctx.sizes(t.cfg.batch_size)[0]  # rows per process (padded)
    reps = torch.randn(m, d, device=dev, requires_grad=True)
    ids = torch.zeros(m, dtype=torch.int64, device=dev)
    loss = torch.zeros((), device=dev)
    grads = sum(p.numel() for p in t.model.parameters())
    flat = torch.zeros(grads, device=dev)
    gathered = world * m * d

    def backward():
        out = _GatherRows.apply(reps)
        out.backward(torch.ones_like(out))

    forward_ms = timed(lambda: _GatherRows.apply(reps.detach()), dev, repeats) * 1e3
    rows = {
        "gather_reps": (forward_ms, m * d * 4),
        "gather_ids": (timed(lambda: ctx.gather(ids, world * m), dev, repeats) * 1e3, m * 8),
        "gather_backward": (timed(backward, dev, repeats) * 1e3 - forward_ms, gathered * 4),
        "loss_all_reduce": (timed(lambda: ctx.loss_value(loss), dev, repeats) * 1e3, 8),
        "gradient_all_reduce": (timed(lambda: dist.all_reduce(flat), dev, repeats) * 1e3, grads * 4),
    }
    return {k: {"ms": ms, "bytes": b} for k, (ms, b) in rows.items()}


def measure(ctx, cfg: TrainConfig, batches: int, warmup: int, repeats: int, out: str) -> None:
    t = Trainer(cfg, write=False, echo=None, dist=ctx)
    it = t.sampler.epoch(0, rank=ctx.rank, world=ctx.world)
    times = []
    for k in range(warmup + batches):
        batch = next(it)
        sync(t.device)
        t0 = time.perf_counter()
        t.step(batch, 0)
        sync(t.device)
        if k >= warmup:
            times.append(time.perf_counter() - t0)
    if ctx.enabled:  # the slowest process sets the pace
        local = torch.tensor(times, dtype=torch.float64, device=t.device)
        dist.all_reduce(local, op=dist.ReduceOp.MAX)
        times = local.tolist()
    step = statistics.median(times)
    row = {"nproc": ctx.world, "threads": torch.get_num_threads(), "device": str(t.device),
           "batches_timed": batches, "median_step_s": step, "epoch_s": step * len(t.sampler),
           "batches_per_epoch": len(t.sampler), "users": t.data.n_users, "items": t.data.n_items,
           "collectives": collectives(t, repeats) if ctx.enabled else {}}
    if ctx.is_main:
        Path(out).write_text(json.dumps(row))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="gowalla")
    p.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--batches", type=int, default=30, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=20, help="repetitions of each collective")
    p.add_argument("--out", default=None, help="also write the rows to this JSON file")
    a = p.parse_args()
    cfg = TrainConfig.from_dict(dict(dataset=a.dataset, model="lightgcn", layers=1, loss="ssm", tau=0.12,
                                     batch_size=a.batch_size, device=a.device, threads=a.threads,
                                     progress=False))
    rows = []
    for n in a.nproc:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "row.json"
            launch(measure, (cfg, a.batches, a.warmup, a.repeats, str(out)), nproc=n, device=a.device)
            rows.append(json.loads(out.read_text()))
        r = rows[-1]
        print(f"{n} process(es) x {r['threads']} thread(s) on {r['device']}: median step "
              f"{r['median_step_s'] * 1e3:.1f} ms, epoch ~{r['epoch_s']:.1f} s ({r['batches_per_epoch']} steps)",
              flush=True)
        for name, c in r["collectives"].items():
            print(f"    {name:<20} {c['ms']:8.3f} ms  {c['bytes'] / 1e6:9.3f} MB per process")
    if len(rows) > 1:
        base = rows[0]["epoch_s"]
        print("speed-up vs first: " + ", ".join(f"{r['nproc']}: {base / r['epoch_s']:.2f}x" for r in rows))
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
