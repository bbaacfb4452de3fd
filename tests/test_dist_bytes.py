"""Bytes per step of data-parallel training (two processes on gloo): with a sparse optimizer each
process exchanges the rows a batch touched, so its bytes follow the batch and stay put as the
catalogue grows thirtyfold; dense Adam all-reduces the whole tables, so its bytes grow with
them. The counter (:class:`ssmrec.train.distributed.Traffic`) is off unless asked for."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ssmrec.data import Dataset, Interactions
from ssmrec.train import TrainConfig, Trainer
from ssmrec.train.distributed import SINGLE, DistContext, Traffic, launch

USERS, DIM, BATCH, STEPS = 300, 8, 256, 3
SIZES = (1_000, 30_000)  # items; the same 3,000 pairs (items drawn among the first 1,000 ids)
CELLS = [(loss, opt) for loss in ("bpr", "ssm") for opt in ("adam", "sparse-adam")]


def dataset(n_items: int) -> Dataset:
    rng = np.random.default_rng(0)
    keys = np.unique(rng.integers(0, USERS, 4000) * 1000 + rng.integers(0, 1000, 4000))[:3000]
    users, items = np.divmod(keys, 1000)
    train = Interactions.from_pairs(users[:2800], items[:2800], USERS, n_items, name="train")
    test = Interactions.from_pairs(users[2800:], items[2800:], USERS, n_items, name="test")
    return Dataset(f"items-{n_items}", train, test, source="synthetic")


def step_bytes(ctx: DistContext, data: Dataset, loss: str, optimizer: str) -> list[int]:
    """Bytes this process hands to collectives in each of the first STEPS steps."""
    cfg = TrainConfig.from_dict({"dataset": data.name, "model": "mf", "loss": loss, "optimizer": optimizer,
                                 "dim": DIM, "batch_size": BATCH, "progress": False, "lr": 1e-2})
    traffic = Traffic()
    t = Trainer(cfg, data, write=False, echo=None, dist=dataclasses.replace(ctx, traffic=traffic))
    out = []
    for _, batch in zip(range(STEPS), t.sampler.epoch(0, rank=ctx.rank, world=ctx.world)):
        traffic.reset()
        t.step(batch, 0)
        out.append(traffic.total)
    return out


def _worker(ctx, out):
    torch.set_num_threads(1)
    record = {(n, loss, opt): step_bytes(ctx, dataset(n), loss, opt) for n in SIZES for loss, opt in CELLS}
    torch.save(record, out / f"rank{ctx.rank}.pt")


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist-bytes")
    launch(_worker, (out,), nproc=2, timeout=120)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.mark.parametrize("loss", ["bpr", "ssm"])
def test_sparse_bytes_follow_the_batch_and_dense_bytes_the_catalogue(measured, loss):
    r0, r1 = measured
    small, large = SIZES
    for key in r0:  # every process hands the same sizes (collectives pad to the largest part)
        assert r0[key] == r1[key], key
    # dense Adam: one all-reduce of both whole tables (+ the loss, + SSM's gathers of the batch)
    for n in SIZES:
        table = (USERS + n) * DIM * 4
        assert all(table <= b < table + 64 * 1024 for b in r0[(n, loss, "adam")]), (n, r0[(n, loss, "adam")])
    grown = [b - a for a, b in zip(r0[(small, loss, "adam")], r0[(large, loss, "adam")])]
    assert grown == [(large - small) * DIM * 4] * STEPS  # every item row added is sent at every step
    # sparse: rows touched by a process's half batch, at most (users + items rows) x (dim + 2) words
    per_rank = BATCH // 2
    item_rows = per_rank * (2 if loss == "bpr" else 1)  # bpr: the positive and one negative per row
    bound = (per_rank + item_rows) * (DIM + 2) * 4 * 2 + 64 * 1024
    for n in SIZES:
        assert all(b < bound for b in r0[(n, loss, "sparse-adam")]), (n, r0[(n, loss, "sparse-adam")])
    sparse_small, sparse_large = np.mean(r0[(small, loss, "sparse-adam")]), np.mean(r0[(large, loss, "sparse-adam")])
    assert sparse_large < 1.25 * sparse_small  # a 30x catalogue: the same bytes, give or take the rows drawn
    assert sparse_large < np.mean(r0[(large, loss, "adam")]) / 20


def test_the_counter_is_off_unless_asked_for_and_one_process_counts_nothing():
    assert DistContext().traffic is None and SINGLE.traffic is None
    traffic = Traffic()
    ctx = dataclasses.replace(SINGLE, traffic=traffic)
    assert ctx == SINGLE  # the counter is no part of where a process stands
    ctx.reduce_gradients([torch.nn.Parameter(torch.ones(3))])
    assert traffic.total == 0 and not traffic.calls
    traffic.add("all_reduce", torch.zeros(5, 2, dtype=torch.float64))
    traffic.add("all_gather", torch.zeros(4, dtype=torch.int64))
    assert traffic.bytes == {"all_reduce": 80, "all_gather": 32} and traffic.total == 112
    traffic.reset()
    assert traffic.total == 0
