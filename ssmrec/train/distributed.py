"""Several processes, one result: the ``torch.distributed`` plumbing of training and evaluation.

A run on ``N`` processes computes what one process computes on the same global batches:

* data: every process draws the same shuffled epoch and the same negatives and takes its own
  contiguous part of every global batch (:meth:`~ssmrec.data.PairSampler.epoch` with
  ``rank``/``world``);
* loss: each process computes its rows' share of the global batch's mean loss (its local mean
  weighted by ``local rows / global rows``); in-batch softmax all-gathers every process's
  positive-item representations, with gradients flowing back through the gather, so each row
  sees the candidates of the global batch;
* gradients: summed over the processes after each backward pass (one all-reduce of a flat
  buffer; with a sparse optimizer, an all-gather of the rows each process touched), so every
  replica takes the single-process step and the replicas stay identical;
* evaluation: each process ranks its part of the users; the per-user values are summed over the
  processes (each user is held by exactly one, zeros elsewhere), which is exact.

:class:`DistContext` is the one object the trainer and the objective see; :data:`SINGLE` (one
process) makes every operation the identity. :func:`launch` runs an entry point in this process,
in each process ``torchrun`` started, or in ``nproc`` local processes it spawns.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ssmrec.data.sampling import shard_range
from ssmrec.errors import TrainingError

TIMEOUT_ENV = "SSMREC_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 600.0
"""Seconds a collective waits for the other processes before failing (``$SSMREC_DIST_TIMEOUT``)."""


def timeout_seconds() -> float:
    return float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT)


class Traffic:
    """Bytes this process hands to collectives, by operation: a counter for measuring what a step
    exchanges (``benchmarks/dist_bytes.py``), off unless a :class:`DistContext` is given one.

    Each collective adds ``numel x element_size`` of the tensor this process contributes: a
    gather's own part, a reduction's or broadcast's whole tensor. On the wire a ring all-gather
    sends ``(world - 1)`` such parts per process and a ring all-reduce ``2 (world - 1) / world``
    times the tensor: with two processes, both exactly the counted bytes.

    Attributes:
        bytes: operation (``all_reduce``, ``all_gather``, ``broadcast``, ``reduce_scatter``) ->
            bytes contributed since the last :meth:`reset`.
        calls: operation -> number of calls since then.
    """

    def __init__(self) -> None:
        self.bytes: dict[str, int] = {}
        self.calls: dict[str, int] = {}

    def add(self, op: str, tensor: torch.Tensor) -> None:
        self.bytes[op] = self.bytes.get(op, 0) + tensor.numel() * tensor.element_size()
        self.calls[op] = self.calls.get(op, 0) + 1

    @property
    def total(self) -> int:
        """Bytes contributed to every collective since the last :meth:`reset`."""
        return sum(self.bytes.values())

    def reset(self) -> None:
        self.bytes.clear()
        self.calls.clear()


def _count(traffic: Traffic | None, op: str, tensor: torch.Tensor) -> None:
    if traffic is not None:
        traffic.add(op, tensor)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a run, and the collectives training and evaluation need.

    Args:
        rank, world: this process's index and the number of processes (default: 0, 1).
        local_rank: index on this machine, which picks the GPU (default: 0).
        device: the device this process computes on (default: None, the run's own setting).
        traffic: a :class:`Traffic` that counts the bytes each collective of this context is
            handed (default: None, nothing counted); ``dataclasses.replace(ctx, traffic=Traffic())``
            turns it on for one run.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device | None = None
    traffic: Traffic | None = field(default=None, compare=False, repr=False)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0

    # ------------------------------------------------------------------ splitting work
    def sizes(self, total: int) -> list[int]:
        """Rows of each rank's part of ``total`` rows."""
        return [hi - lo for lo, hi in (shard_range(total, r, self.world) for r in range(self.world))]

    def offset(self, total: int) -> int:
        """Index of this rank's first row among ``total`` rows."""
        return shard_range(total, self.rank, self.world)[0]

    def part(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous part of ``rows`` (all of them in one process)."""
        lo, hi = shard_range(rows.shape[0], self.rank, self.world)
        return rows[lo:hi]

    # ------------------------------------------------------------------ training step
    def gather_with_grad(self, x: torch.Tensor, total: int) -> torch.Tensor:
        """Every rank's rows of ``x`` in rank order (``total`` rows; rank ``r`` holds its
        :func:`shard_range` part), differentiable: the gradient of each rank's rows is the sum
        of what every rank's loss sends back to them."""
        if not self.enabled:
            return x
        rows = _GatherRows.apply(self._pad(x, total), self.traffic)
        return torch.cat([p[:n] for p, n in zip(rows.chunk(self.world), self.sizes(total))])

    def gather(self, x: torch.Tensor, total: int) -> torch.Tensor:
        """:meth:`gather_with_grad` without gradients (ids)."""
        if not self.enabled:
            return x
        padded = self._pad(x, total)
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        _count(self.traffic, "all_gather", padded)
        dist.all_gather(parts, padded)
        return torch.cat([p[:n] for p, n in zip(parts, self.sizes(total))])

    def _pad(self, x: torch.Tensor, total: int) -> torch.Tensor:
        # collectives need equal shapes: pad to the largest part (rank 0's)
        missing = self.sizes(total)[0] - x.shape[0]
        return torch.cat([x, x.new_zeros(missing, *x.shape[1:])]) if missing else x.contiguous()

    def loss_value(self, loss: torch.Tensor) -> float:
        """The global batch's loss from this rank's share of it (the shares sum to it)."""
        return self.loss_and_stop(loss, False)[0]

    def loss_and_stop(self, loss: torch.Tensor, stop: bool) -> tuple[float, bool]:
        """The global batch's loss, and whether any rank asks to stop after this step (a
        signal), in the one all-reduce a step already makes: every rank stops at the same step."""
        if not self.enabled:
            return loss.item(), stop
        value = torch.stack([loss.detach().to(torch.float64).reshape(()),
                             torch.tensor(float(stop), dtype=torch.float64, device=loss.device)])
        _count(self.traffic, "all_reduce", value)
        dist.all_reduce(value)
        total, stops = value.tolist()
        return total, stops > 0

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (the same answer on every rank)."""
        if not self.enabled:
            return flag
        t = torch.tensor([int(flag)], device=self.device)
        _count(self.traffic, "all_reduce", t)
        dist.all_reduce(t)
        return bool(t.item())

    def reduce_gradients(self, params: Iterable[torch.nn.Parameter], *, rows: bool = False) -> None:
        """Sum the gradients over the ranks, in one all-reduce of a flat buffer; ``rows``: the
        gradients are row gradients (a sparse optimizer's), see :meth:`reduce_row_gradients`."""
        if not self.enabled:
            return
        if rows:
            return self.reduce_row_gradients(params)
        params = [p for p in params if p.requires_grad]
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                          for p in params])
        _count(self.traffic, "all_reduce", flat)
        dist.all_reduce(flat)
        start = 0
        for p in params:
            p.grad = flat[start:start + p.numel()].view_as(p)
            start += p.numel()

    def reduce_row_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Sum row (COO sparse) gradients over the ranks, exchanging only the rows they touch.

        Each rank coalesces its gradient of a table to ``k_r`` rows; the counts are all-gathered,
        then the row indices and rows, padded to ``max_r k_r``; every rank concatenates the parts
        in rank order and coalesces them, so each gets the same sum (that of one process, to
        float rounding). Per table and step that is ``world x max_r k_r x (d + 2)`` 4-byte words
        each way, against ``rows x d`` for the dense all-reduce: it follows the batch, not the
        table. A table no rank touched keeps no gradient."""
        if not self.enabled:
            return
        from ssmrec.train.optim import touched_rows

        params = [p for p in params if p.requires_grad]
        local = []  # (rows, their gradient) of each table; none touched: empty
        for p in params:
            rows = touched_rows(p, "a process of a distributed run")
            local.append(rows if rows is not None else
                         (torch.zeros(0, dtype=torch.long, device=p.device), p.new_zeros((0, *p.shape[1:]))))
        counts = torch.tensor([len(i) for i, _ in local], dtype=torch.long, device=params[0].device)
        every = [torch.empty_like(counts) for _ in range(self.world)]
        _count(self.traffic, "all_gather", counts)
        dist.all_gather(every, counts)
        table = torch.stack(every).tolist()  # [rank][param]
        for j, (p, (index, values)) in enumerate(zip(params, local)):
            sizes = [row[j] for row in table]
            top = max(sizes)
            if not top:
                p.grad = None
                continue
            pad = top - len(index)
            index = torch.cat([index, index.new_zeros(pad)])
            values = torch.cat([values, values.new_zeros((pad, *values.shape[1:]))])
            parts_i = [torch.empty_like(index) for _ in range(self.world)]
            parts_v = [torch.empty_like(values) for _ in range(self.world)]
            _count(self.traffic, "all_gather", index)
            _count(self.traffic, "all_gather", values)
            dist.all_gather(parts_i, index)
            dist.all_gather(parts_v, values)
            index = torch.cat([t[:n] for t, n in zip(parts_i, sizes)])
            values = torch.cat([t[:n] for t, n in zip(parts_v, sizes)])
            p.grad = torch.sparse_coo_tensor(index.unsqueeze(0), values, p.shape, check_invariants=False).coalesce()

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Make every replica's parameters rank 0's."""
        if not self.enabled:
            return
        with torch.no_grad():
            for p in module.parameters():
                _count(self.traffic, "broadcast", p.data)
                dist.broadcast(p.data, src=0)

    def main_decides(self, flag: bool) -> bool:
        """Rank 0's value of ``flag`` on every rank (decisions taken from clocks)."""
        if not self.enabled:
            return flag
        t = torch.tensor([int(flag)], device=self.device)
        _count(self.traffic, "broadcast", t)
        dist.broadcast(t, src=0)
        return bool(t.item())

    @contextmanager
    def local_main_first(self) -> Iterator[None]:
        """The first process of each machine runs the block before the others (downloads)."""
        if self.enabled and self.local_rank != 0:
            dist.barrier()
        yield
        if self.enabled and self.local_rank == 0:
            dist.barrier()

    # ------------------------------------------------------------------ evaluation
    def combine(self, acc):
        """Merge the ranks' :class:`~ssmrec.eval.metrics.MetricAccumulator` (disjoint users):
        an all-reduce sum of the per-user values and of the ``seen`` mask, exact because each
        user's value is added to zeros only."""
        if not self.enabled:
            return acc
        keys = list(acc.values)
        # NaN marks a user a metric does not apply to (dislike@K without held-out dislikes): sum the
        # values as zeros and, beside them, where each value is present
        vals = [acc.values[k] for k in keys]
        present = [~np.isnan(v) for v in vals]
        flat = np.stack([np.nan_to_num(v, nan=0.0) for v in vals] + [p.astype(np.float64) for p in present]
                        + [acc.seen.astype(np.float64)])
        t = torch.from_numpy(flat).to(self.device or "cpu")
        _count(self.traffic, "all_reduce", t)
        dist.all_reduce(t)
        flat = t.cpu().numpy()
        n = len(keys)
        acc.values = {k: np.where(flat[n + j] > 0, flat[j], np.nan) for j, k in enumerate(keys)}
        acc.seen = flat[-1] > 0
        return acc


SINGLE = DistContext()
"""One process: every collective is the identity."""


class _GatherRows(torch.autograd.Function):
    """All-gather of equal-sized row blocks, concatenated in rank order. Backward: this rank's
    block of the sum over ranks of the gradients (every rank's loss reads every block).

    (``torch.distributed.nn.functional.all_gather`` does the same but is deprecated in this
    torch and warns at every call.) ``traffic``: a :class:`Traffic` counting both directions, or
    None."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, traffic: Traffic | None = None) -> torch.Tensor:
        ctx.traffic = traffic
        x = x.contiguous()
        out = x.new_empty(dist.get_world_size() * x.shape[0], *x.shape[1:])
        _count(traffic, "all_gather", x)
        dist.all_gather(list(out.chunk(dist.get_world_size())), x)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        world, rank = dist.get_world_size(), dist.get_rank()
        grad = grad.contiguous()
        if dist.get_backend() == "nccl":
            out = grad.new_empty(grad.shape[0] // world, *grad.shape[1:])
            _count(ctx.traffic, "reduce_scatter", grad)
            dist.reduce_scatter_tensor(out, grad)
            return out, None
        grad = grad.clone()  # gloo has no reduce-scatter: sum everything, keep our block
        _count(ctx.traffic, "all_reduce", grad)
        dist.all_reduce(grad)
        return grad.chunk(world)[rank].contiguous(), None


# ---------------------------------------------------------------------- process groups
def in_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` (or anything setting its variables)
    as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init(device: str = "auto", timeout: float | None = None) -> DistContext:
    """Join the process group the environment describes (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``): NCCL on ``cuda:LOCAL_RANK`` when the
    device is CUDA, gloo on the CPU; collectives fail after ``timeout`` seconds (default:
    :func:`timeout_seconds`)."""
    from ssmrec.train.setup import resolve_device

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    dev = resolve_device(device)
    if dev.type == "cuda":
        if local >= torch.cuda.device_count():
            raise TrainingError(f"process {local} of this machine needs GPU cuda:{local}, but "
                                f"{torch.cuda.device_count()} GPU(s) are visible: one process per GPU")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    _import_world_capturing_modules()
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", init_method="env://",
                            rank=rank, world_size=world,
                            timeout=timedelta(seconds=timeout or timeout_seconds()))
    return DistContext(rank, world, local, dev)


def _import_world_capturing_modules() -> None:
    """Import, before any process group exists, the torch modules that bind ``group.WORLD`` at
    import time.

    ``torch.distributed.nn.functional`` declares ten functions with the default argument
    ``group=group.WORLD``, evaluated when the module is first imported. Nothing imports it up
    front, but the first ``torch.optim`` optimizer imports ``torch._dynamo``, which imports it. If
    that happens after :func:`init`, the defaults hold ten references to the live default process
    group: ``destroy_process_group()`` then cannot free it, and its gloo threads (and, on rank 0,
    the TCPStore server thread) live on into interpreter shutdown, where the group is torn down in
    no fixed order while its peer is already gone. That is where a worker died with ``terminate
    called without an active exception`` (SIGABRT) after a finished run. Imported first, the
    defaults bind ``None`` (the default group at call time) and :func:`shutdown` joins every
    thread of the group (``tests/test_distributed.py`` checks that no c10d thread is left)."""
    import torch.distributed.nn  # noqa: F401


def shutdown() -> None:
    """Leave the process group; every thread it started is joined before this returns."""
    if dist.is_initialized():
        dist.destroy_process_group()


def free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------- launching
def launch(fn: Callable[..., Any], args: tuple = (), *, nproc: int = 1, device: str = "auto",
           timeout: float | None = None, hint: str = "") -> Any:
    """Run ``fn(ctx, *args)`` with the right :class:`DistContext`.

    * started by ``torchrun`` (several processes): join its process group, run, leave;
    * ``nproc`` 1: in this process, with :data:`SINGLE`;
    * ``nproc`` > 1: in ``nproc`` processes spawned here (ranks 0..nproc-1 on a free local
      port), waiting for all. If one fails, the others are terminated and a
      :class:`~ssmrec.errors.TrainingError` names the first worker that failed and why
      (followed by ``hint``). Returns None then (results go through files).
    """
    if in_torchrun():
        from ssmrec.train.signals import Interrupted

        ctx = init(device, timeout)
        try:
            result = fn(ctx, *args)
        except Interrupted:  # torchrun passed the signal on; every rank stopped at the same step
            dist.barrier()
            shutdown()
            raise
        dist.barrier()
        shutdown()
        return result
    if nproc <= 1:
        return fn(SINGLE, *args)
    return _spawn(fn, args, nproc, device, timeout, hint)


def _spawn(fn, args, nproc, device, timeout, hint):
    from torch.multiprocessing import start_processes
    from torch.multiprocessing.spawn import ProcessException

    from ssmrec.train.signals import SIGNALS, Interrupted, signal_name

    errors = Path(tempfile.mkdtemp(prefix="ssmrec-workers-"))
    received: list[int] = []
    previous = {}
    try:
        procs = start_processes(_worker, (fn, args, nproc, free_port(), device, timeout, str(errors)),
                                nprocs=nproc, join=False, start_method="spawn")

        def forward(signum, frame):
            # a terminal's Ctrl-C reaches the workers too; a scheduler's SIGTERM reaches only us:
            # pass it on, the workers stop together at their next safe point and rank 0 checkpoints
            received.append(signum)
            for p in procs.processes:
                if p.is_alive():
                    os.kill(p.pid, signum)

        for s in SIGNALS:
            previous[s] = signal.signal(s, forward)
        try:
            while not procs.join():
                pass
        except ProcessException as e:
            if received:
                raise Interrupted(f"{signal_name(received[0])}: the workers stopped before training "
                                  "could checkpoint" + hint, received[0]) from None
            raise TrainingError(_failure(errors, e, nproc) + hint) from None
        stopped = [json.loads(p.read_text()) for p in sorted(errors.glob("interrupted-*.json"))]
        if stopped:
            first = min(stopped, key=lambda r: r["rank"])
            raise Interrupted(first["message"], first["signum"])
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        shutil.rmtree(errors, ignore_errors=True)


def _worker(index, fn, args, nproc, port, device, timeout, errors):
    from ssmrec.train.signals import Interrupted

    os.environ.update(RANK=str(index), LOCAL_RANK=str(index), WORLD_SIZE=str(nproc),
                      LOCAL_WORLD_SIZE=str(nproc), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // nproc))  # a run's --threads overrides
    try:
        ctx = init(device, timeout)
        try:
            fn(ctx, *args)
        except Interrupted as e:  # every rank stopped at the same step; rank 0 wrote the checkpoint
            record = {"rank": index, "signum": e.signum, "message": str(e)}
            (Path(errors) / f"interrupted-{index}.json").write_text(json.dumps(record))
        dist.barrier()  # nobody tears down while a peer may still talk to it
        shutdown()
    except BaseException as e:
        # the first error in time is the cause; the others' are its echoes (a peer hung up)
        record = {"rank": index, "time": time.time(), "error": f"{type(e).__name__}: {e}"}
        (Path(errors) / f"{index}.json").write_text(json.dumps(record))
        if isinstance(e, KeyboardInterrupt):
            sys.exit(130)  # the spawn wrapper would report an interrupted worker as a success
        raise


def _failure(errors: Path, exc, nproc: int) -> str:
    records = {r["rank"]: r for r in (json.loads(p.read_text()) for p in errors.glob("[0-9]*.json"))}
    if exc.error_index not in records:  # died without a Python error (killed, out of memory)
        return f"worker {exc.error_index} of {nproc} failed: {exc}"
    first = min(records.values(), key=lambda r: r["time"])
    return f"worker {first['rank']} of {nproc} failed: {first['error']}"
