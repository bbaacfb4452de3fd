"""Several processes compute what one process computes: training steps (SSM, SSM with its
options, BPR, full softmax, BSL, PSL, corrected logQ), evaluation (exactly), a run resumed from
its checkpoint, ``--nproc`` through the CLI, and a failing worker (a clear error, no hang). Two
gloo processes on the CPU, small data; each launch costs two interpreter start-ups, so the checks
share launches."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from ssmrec.cli import main
from ssmrec.eval import Evaluator
from ssmrec.train import TrainConfig, Trainer, TrainingError
from ssmrec.train.distributed import SINGLE, launch

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="needs torch.distributed with gloo")

# 607: the 4250 training pairs of `tiny` make 7 batches split 304 + 303 over two workers and a
# last batch of one pair, of which the second worker gets nothing
BASE = {"dataset": "tiny", "model": "lightgcn", "layers": 1, "dim": 16, "lr": 0.01, "tau": 0.2,
        "reg": 1e-2, "batch_size": 607, "epochs": 1, "progress": False}
SCENARIOS = {
    "ssm": {},
    "ssm-options": {"mask_duplicates": True, "mask_seen": True, "logq": True, "extra_negatives": 16,
                    "negative_beta": 0.5},
    "bpr": {"loss": "bpr"},
    "softmax": {"loss": "softmax"},
    # the in-batch losses after the study: the gathered candidates and each row's target column
    "bsl": {"loss": "bsl", "loss_params": {"tau2": 0.8}},
    "psl": {"loss": "psl"},
    "clogq": {"loss": "clogq", "mask_duplicates": True},
}


def run_steps(ctx, data, overrides):
    """An epoch step by step: the global loss and the summed gradients of each step, and the
    parameters at the end."""
    t = Trainer(TrainConfig.from_dict({**BASE, **overrides}), data, write=False, echo=None, dist=ctx)
    losses, grads = [], []
    for batch in t.sampler.epoch(0, rank=ctx.rank, world=ctx.world):
        losses.append(t.step(batch, 0))
        grads.append({n: p.grad.clone() for n, p in t.model.named_parameters()})
    return {"loss": losses, "grads": grads, "params": {k: v.clone() for k, v in t.model.state_dict().items()}}


def evaluate(ctx, data):
    from ssmrec.data import Interactions

    rng = np.random.default_rng(0)  # some users' held-out dislikes: dislike@K is NaN for the others
    users, items = rng.integers(0, data.n_users // 2, 400), rng.integers(0, data.n_items, 400)
    keep = ~data.train.contains(users, items) & ~data.test.contains(users, items)
    dislikes = Interactions.from_pairs(users[keep], items[keep], data.n_users, data.n_items)
    ev = Evaluator(data.test, [data.train], ks=(5, 20), chunk_size=37, dislikes=dislikes)
    g = torch.Generator().manual_seed(3)
    u, i = torch.randn(data.n_users, 8, generator=g), torch.randn(data.n_items, 8, generator=g)
    metrics = ev.evaluate(u, i, users=ctx.part(ev.users), combine=ctx.combine)
    return {"metrics": metrics, "values": ev.last.values, "seen": ev.last.seen}


def fit_and_resume(ctx, data, run_dir):
    """One epoch, then a resume to two (every process loads rank 0's last.pt)."""
    Trainer(TrainConfig.from_dict(BASE), data, run_dir=run_dir, echo=None, dist=ctx).fit()
    t = Trainer.resume(run_dir, echo=None, overrides={"epochs": 2}, dataset=data, dist=ctx)
    return {"result": t.fit(), "history": t.history, "params": {k: v.clone() for k, v in t.model.state_dict().items()}}


def _worker(ctx, data, out):
    result = {name: run_steps(ctx, data, kw) for name, kw in SCENARIOS.items()}
    result["eval"] = evaluate(ctx, data)
    result["resume"] = fit_and_resume(ctx, data, out / "run")
    torch.save(result, out / f"rank{ctx.rank}.pt")


def _threads_left_after_shutdown(index, port, out):
    """A worker's life as ``launch`` runs it, with an optimizer built after joining the group
    (which imports torch._dynamo); returns the names of the threads alive after shutdown."""
    import os

    from ssmrec.train import distributed

    os.environ.update(RANK=str(index), LOCAL_RANK=str(index), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    ctx = distributed.init("cpu", timeout=60)
    torch.optim.Adam([torch.nn.Parameter(torch.ones(3))], lr=1e-3)
    t = torch.ones(3)
    dist.all_reduce(t)
    dist.barrier()
    distributed.shutdown()
    names = sorted(p.read_text().strip() for p in Path("/proc/self/task").glob("*/comm"))
    (out / f"threads{ctx.rank}.json").write_text(json.dumps(names))


def _fail_on_rank_1(ctx):
    if ctx.rank == 1:
        raise ValueError("worker 1 broke")
    dist.barrier()  # without the launcher's clean-up this would wait for the process-group timeout


@pytest.fixture(scope="module")
def two_workers(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    launch(_worker, (tiny, out), nproc=2, timeout=120)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)] + [out]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_training_steps_equal_one_process(two_workers, tiny, name):
    one = run_steps(SINGLE, tiny, SCENARIOS[name])
    r0, r1 = two_workers[0][name], two_workers[1][name]
    assert len(r0["loss"]) == len(one["loss"]) == 8
    assert r0["loss"] == pytest.approx(one["loss"], abs=1e-5)
    for step, (g, g1) in enumerate(zip(r0["grads"], one["grads"])):
        for k in g1:  # the gradient, not only Adam's step: Adam would hide a wrong overall factor
            torch.testing.assert_close(g[k], g1[k], atol=1e-6, rtol=1e-4, msg=f"{k} at step {step}")
    for k, v in one["params"].items():
        torch.testing.assert_close(r0["params"][k], v, atol=1e-5, rtol=0, msg=k)
        assert torch.equal(r0["params"][k], r1["params"][k]), f"replicas differ: {k}"


def test_evaluation_equals_one_process_exactly(two_workers, tiny):
    one = evaluate(SINGLE, tiny)
    for rank in (0, 1):
        got = two_workers[rank]["eval"]
        assert got["metrics"] == one["metrics"] and 0 < got["metrics"]["dislike@20"] < 1
        assert (got["seen"] == one["seen"]).all()
        for k, v in one["values"].items():
            np.testing.assert_array_equal(got["values"][k], v, err_msg=k)  # NaN where no dislike, as one process


def test_resumed_run_equals_one_process(two_workers, tiny, tmp_path):
    whole = Trainer(TrainConfig.from_dict({**BASE, "epochs": 2}), tiny, run_dir=tmp_path / "one", echo=None)
    result = whole.fit()
    got = two_workers[0]["resume"]
    assert [h["epoch"] for h in got["history"]] == [1, 2]
    assert [h["loss"] for h in got["history"]] == pytest.approx([h["loss"] for h in whole.history], abs=1e-5)
    for k, v in whole.model.state_dict().items():  # the best (here: last) model, broadcast to all
        torch.testing.assert_close(got["params"][k], v, atol=1e-5, rtol=0, msg=k)
        assert torch.equal(two_workers[1]["resume"]["params"][k], got["params"][k]), k
    assert got["result"]["test"] == pytest.approx(result["test"], abs=1e-3)
    run = two_workers[2] / "run"
    assert len((run / "history.jsonl").read_text().splitlines()) == 2 and (run / "metrics.json").is_file()


FAST = ["--model", "lightgcn", "--dim", "16", "--batch-size", "256", "--no-progress", "--lr", "0.01",
        "--tau", "0.2", "--mask-duplicates"]


def test_cli_nproc_writes_one_run_like_one_process(tiny_dir, tmp_path, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["train", "--dataset", str(tiny_dir), *FAST, "--epochs", "2", "--out", str(one)]) == 0
    assert main(["train", "--dataset", str(tiny_dir), *FAST, "--epochs", "2", "--nproc", "2",
                 "--out", str(two)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "tiny", "two"]
    names = {"config.json", "history.jsonl", "metrics.json", "best.pt", "last.pt"}
    assert names <= {p.name for p in two.iterdir()}
    h1 = [json.loads(line) for line in (one / "history.jsonl").read_text().splitlines()]
    h2 = [json.loads(line) for line in (two / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in h2] == [1, 2]
    assert [h["loss"] for h in h2] == pytest.approx([h["loss"] for h in h1], rel=1e-4)
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert m2["epochs_run"] == 2
    for k, v in m1["test"].items():
        assert m2["test"][k] == pytest.approx(v, abs=0.01), k
    assert json.loads((two / "config.json").read_text())["config"]["nproc"] == 2


def test_a_failing_worker_fails_the_launch_promptly():
    t0 = time.perf_counter()
    with pytest.raises(TrainingError, match=r"worker 1 of 2 failed: ValueError: worker 1 broke"):
        launch(_fail_on_rank_1, nproc=2, timeout=300)
    assert time.perf_counter() - t0 < 60


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads thread names from /proc")
def test_shutdown_leaves_no_process_group_thread(tmp_path):
    """The root cause of a worker dying with SIGABRT at exit after a finished run: a process group
    kept alive past destroy_process_group (see distributed._import_world_capturing_modules), its
    gloo threads and rank 0's TCPStore thread torn down during interpreter shutdown."""
    from torch.multiprocessing import start_processes

    from ssmrec.train.distributed import free_port

    start_processes(_threads_left_after_shutdown, (free_port(), tmp_path), nprocs=2, start_method="spawn")
    for rank in (0, 1):
        names = json.loads((tmp_path / f"threads{rank}.json").read_text())
        left = [n for n in names if "gloo" in n or "tcpstore" in n]
        assert not left, f"rank {rank}: process-group threads alive after shutdown: {left}"
