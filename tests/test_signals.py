"""SIGINT and SIGTERM stop a run at a safe point with a checkpoint; resuming gives exactly the
uninterrupted run, whatever the point the signal landed on (inside the optimizer step, between
batches, during evaluation, during the end-of-epoch save). The real CLI is signalled in a
subprocess, in one process and with --nproc 2 (SIGTERM to the launcher only)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ssmrec.cli import main
from ssmrec.train import Interrupted, TrainConfig, Trainer
from ssmrec.train import run as run_module

BASE = {"model": "lightgcn", "layers": 1, "loss": "ssm", "tau": 0.2, "dim": 16, "batch_size": 512,
        "epochs": 3, "progress": False, "ks": [20], "lr": 0.01, "patience": 0}


def make(tiny, path, **kw) -> Trainer:
    return Trainer(TrainConfig.from_dict({**BASE, "dataset": "tiny", **kw}), tiny, run_dir=path, echo=None)


def outcome(trainer: Trainer, path: Path) -> dict:
    best = torch.load(path / "best.pt", weights_only=False)
    return {"params": {k: v.clone() for k, v in trainer.model.state_dict().items()},
            "best": best["model"], "best_epoch": best["epoch"],
            "losses": [h["loss"] for h in trainer.history],
            "metrics": [{k: v for k, v in h.items() if "@" in k} for h in trainer.history]}


def same(a: dict, b: dict) -> None:
    assert a["losses"] == b["losses"]  # bit for bit: no batch replayed or skipped
    assert a["metrics"] == b["metrics"] and a["best_epoch"] == b["best_epoch"]
    for k in a["params"]:
        assert torch.equal(a["params"][k], b["params"][k]), k
        assert torch.equal(a["best"][k], b["best"][k]), k


@pytest.fixture(scope="module")
def whole(tiny, tmp_path_factory):
    path = tmp_path_factory.mktemp("whole") / "run"
    t = make(tiny, path)
    t.fit()
    return outcome(t, path)


def _signal_inside(monkeypatch, trainer: Trainer, where: str, nth: int, signum: int) -> None:
    """Deliver ``signum`` to this process from inside the ``nth`` call of one part of the loop."""
    calls = {"n": 0}

    def hit():
        calls["n"] += 1
        if calls["n"] == nth:
            os.kill(os.getpid(), signum)

    if where == "optimizer step":  # after the weights moved, before the batch counter did
        opt = trainer.optimizer
        original = opt.step

        def step(*a, **k):
            out = original(*a, **k)
            hit()
            return out
        monkeypatch.setattr(opt, "step", step)
    elif where == "objective":
        cls = trainer.objective.__class__
        original = cls.__call__
        monkeypatch.setattr(cls, "__call__", lambda self, *a: (hit(), original(self, *a))[1])
    elif where == "evaluation":
        original = Trainer.evaluate
        monkeypatch.setattr(Trainer, "evaluate", lambda self, ev: (hit(), original(self, ev))[1])
    elif where == "checkpoint save":
        original = run_module.RunDir.save

        def save(self, name, state):
            hit()
            return original(self, name, state)
        monkeypatch.setattr(run_module.RunDir, "save", save)


# (where, nth call): the points a signal can land on; 4 batches per epoch, 3 epochs
POINTS = [("optimizer step", n) for n in (1, 4, 6, 12)] + [("objective", n) for n in (1, 5, 11)] + [
    ("evaluation", n) for n in (1, 2, 3)] + [("checkpoint save", n) for n in (1, 2, 4)]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("where,nth", POINTS, ids=[f"{w}-{n}" for w, n in POINTS])
def test_a_signal_anywhere_then_resume_equals_the_uninterrupted_run(tiny, tmp_path, monkeypatch, whole,
                                                                    where, nth, signum):
    path = tmp_path / "run"
    t = make(tiny, path)
    _signal_inside(monkeypatch, t, where, nth, signum)
    with pytest.raises(Interrupted) as info:
        t.fit()
    monkeypatch.undo()
    assert info.value.exit_code == 128 + signum
    assert f"Resume with: ssmrec train --resume {path}" in str(info.value)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    resumed = Trainer.resume(path, echo=None, dataset=tiny)
    resumed.fit()
    same(outcome(resumed, path), whole)


def test_fit_outside_the_main_thread_still_trains(tiny, tmp_path):
    import threading

    out = {}
    th = threading.Thread(target=lambda: out.setdefault("r", make(tiny, tmp_path / "t", epochs=1).fit()))
    th.start()
    th.join()
    assert out["r"]["epochs_run"] == 1


# ---------------------------------------------------------------------- the real command line
FAST = ["--model", "lightgcn", "--dim", "16", "--batch-size", "64", "--no-progress", "--lr", "0.01",
        "--tau", "0.2", "--epochs", "4", "--patience", "0", "--threads", "1", "--seed", "3"]


def _cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "ssmrec.cli", "train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _signal_mid_run(proc: subprocess.Popen, run: Path, signum: int, wait_epochs: int = 1) -> tuple[int, str]:
    deadline = time.time() + 120
    hist = run / "history.jsonl"
    while time.time() < deadline and proc.poll() is None:
        if hist.exists() and len(hist.read_text().splitlines()) >= wait_epochs:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be signalled"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def _final(run: Path) -> tuple[dict, dict]:
    best = torch.load(run / "best.pt", weights_only=False)["model"]
    return json.loads((run / "metrics.json").read_text()), best


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_cli_signal_exits_with_a_resume_command_and_resume_is_exact(tiny_dir, tmp_path, signum):
    one, cut = tmp_path / "one", tmp_path / "cut"
    assert main(["train", "--dataset", str(tiny_dir), *FAST, "--out", str(one)]) == 0
    rc, err = _signal_mid_run(_cli("--dataset", str(tiny_dir), *FAST, "--out", str(cut)), cut, signum)
    assert rc == 128 + signum, err
    assert "Traceback" not in err
    assert f"Resume with: ssmrec train --resume {cut}" in err.strip().splitlines()[-1]
    assert main(["train", "--resume", str(cut)]) == 0
    (m1, b1), (m2, b2) = _final(one), _final(cut)
    assert m2["test"] == m1["test"] and m2["best_epoch"] == m1["best_epoch"]
    for k in b1:
        assert torch.equal(b1[k], b2[k]), k
    h1, h2 = ([json.loads(x)["loss"] for x in (d / "history.jsonl").read_text().splitlines()] for d in (one, cut))
    assert h1 == h2


def test_cli_nproc_sigterm_to_the_launcher_stops_every_worker_with_a_checkpoint(tiny_dir, tmp_path):
    args = [*FAST[:-6], "--epochs", "3", "--threads", "1", "--nproc", "2"]
    one, cut = tmp_path / "one", tmp_path / "cut"
    assert main(["train", "--dataset", str(tiny_dir), *args, "--out", str(one)]) == 0
    rc, err = _signal_mid_run(_cli("--dataset", str(tiny_dir), *args, "--out", str(cut)), cut, signal.SIGTERM)
    assert rc == 143, err
    assert "Traceback" not in err and "Resume with: ssmrec train --resume" in err
    assert main(["train", "--resume", str(cut)]) == 0
    (m1, _), (m2, _) = _final(one), _final(cut)
    assert m2["epochs_run"] == 3
    for k, v in m1["test"].items():  # two processes sum in another order: equal to float rounding
        assert m2["test"][k] == pytest.approx(v, abs=1e-6), k
