"""Sweeps survive interruptions: a signal stops one with a checkpoint, ``kill -9`` loses only the
steps since the last one, and a resumed sweep ends exactly where the uninterrupted one does."""

from __future__ import annotations

import json
import shutil
import signal

import pytest
import torch

from ssmrec.errors import ConfigError, TrainingError
from ssmrec.sweeps.sweep import Sweep
from ssmrec.train import TrainConfig
from ssmrec.train.signals import Interrupted

BASE = {"dataset": "tiny", "model": "lightgcn", "loss": "ssm", "dim": 8, "batch_size": 128, "lr": 0.01,
        "epochs": 4, "patience": 2, "ks": [20], "progress": False, "seed": 3, "checkpoint_every": 1e-9}
MEMBERS = [{"layers": 1}, {"layers": 2, "tau": 0.2}, {"layers": 1, "reg": 1e-3, "seed": 5}]
TIMES = ("train_seconds", "eval_seconds", "elapsed_seconds")


def prune_member_2_at_epoch_2(member, epoch, metrics) -> bool:
    """A tuner's pruner, made deterministic: the sweep then resumes with a subset of its members."""
    return member.index == 2 and epoch == 2


def make(tiny, path, **kw) -> Sweep:
    sweep = Sweep(TrainConfig.from_dict({**BASE, **kw}), MEMBERS, tiny, path, echo=None)
    sweep.on_eval = prune_member_2_at_epoch_2
    return sweep


def resume(tiny, path) -> Sweep:
    sweep = Sweep.resume(path, tiny, echo=None)
    sweep.on_eval = prune_member_2_at_epoch_2
    return sweep


def untimed(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k not in TIMES} for h in history]


def assert_same(done: Sweep, reference: Sweep) -> None:
    """Members' histories, stops, results and best weights: exactly the uninterrupted sweep's."""
    for m, r in zip(done.members, reference.members):
        assert untimed(m.history) == untimed(r.history), m.index
        assert (m.stop_reason, m.epochs_run, m.stopper.best_epoch) == (r.stop_reason, r.epochs_run,
                                                                        r.stopper.best_epoch)
        assert m.result["test"] == r.result["test"]
        mine, theirs = m.run.load("best.pt"), r.run.load("best.pt")
        for name, value in theirs["model"].items():
            assert torch.equal(mine["model"][name], value), (m.index, name)
        assert untimed(m.run.history()) == untimed(r.run.history())


@pytest.fixture(scope="module")
def reference(tiny, tmp_path_factory):
    sweep = make(tiny, tmp_path_factory.mktemp("ref") / "sweep")
    sweep.fit()
    assert [m.stop_reason for m in sweep.members][2] == "pruned"
    return sweep


def test_finished_sweep_keeps_no_checkpoint(reference):
    assert not (reference.path / "last.pt").exists()  # members keep best.pt and export/
    assert json.loads((reference.path / "sweep.json").read_text())["status"] == "finished"
    with pytest.raises(ConfigError, match="has finished"):
        Sweep.resume(reference.path, echo=None)


@pytest.mark.parametrize("at", [(0, 5), (1, 0), (2, 7), (3, 0)], ids=["mid-epoch-1", "end-of-epoch-1",
                                                                     "mid-epoch-3-pruned", "end-of-epoch-3"])
def test_kill_9_at_any_checkpoint_resumes_to_the_uninterrupted_result(tiny, tmp_path, reference, at):
    """A copy of the folder taken at a checkpoint is what ``kill -9`` leaves: resumed, it ends
    where the uninterrupted sweep did (also with a pruned member sliced out before the copy)."""
    sweep = make(tiny, tmp_path / "sweep")
    copy = tmp_path / "killed"
    save = sweep._checkpoint

    def checkpoint_and_copy():
        save()
        if (sweep.epoch, sweep.batch) == at and not copy.exists():
            shutil.copytree(sweep.path, copy)

    sweep._checkpoint = checkpoint_and_copy
    sweep.fit()
    assert copy.exists()
    again = resume(tiny, copy)
    assert (again.epoch, again.batch) == at
    again.fit()
    assert_same(again, reference)


def test_signal_stops_at_a_safe_point_and_the_sweep_resumes(tiny, tmp_path, reference):
    sweep = make(tiny, tmp_path / "sweep", checkpoint_every=0.0)  # only the signal's and epoch ends'
    step = sweep.step

    def step_then_signal(batch):
        out = step(batch)
        if sweep.epoch == 1 and batch.index == 4:
            sweep.stop.request(signal.SIGTERM)  # what the handler does when SIGTERM arrives
        return out

    sweep.step = step_then_signal
    with pytest.raises(Interrupted, match="SIGTERM: the sweep stopped at epoch 2, batch 5") as e:
        sweep.fit()
    assert e.value.exit_code == 128 + signal.SIGTERM
    assert f"ssmrec sweep --resume {sweep.path}" in str(e.value)
    assert json.loads((sweep.path / "sweep.json").read_text())["status"] == "interrupted"
    again = resume(tiny, sweep.path)
    assert (again.epoch, again.batch) == (1, 5)
    again.fit()
    assert_same(again, reference)


def test_signal_during_evaluation_stops_after_the_epoch_checkpoint(tiny, tmp_path, reference):
    sweep = make(tiny, tmp_path / "sweep", checkpoint_every=0.0)
    evaluate = sweep.select_eval.evaluate

    def evaluate_then_signal(*a, **kw):
        if sweep.epoch == 2:  # epoch 3's evaluation (self.epoch counts epochs done)
            sweep.stop.request(signal.SIGINT)
        return evaluate(*a, **kw)

    sweep.select_eval.evaluate = evaluate_then_signal
    with pytest.raises(Interrupted, match="the end of epoch 3"):
        sweep.fit()
    again = resume(tiny, sweep.path)
    assert (again.epoch, again.batch, len(again.live)) == (3, 0, 2)
    again.fit()
    assert_same(again, reference)


def test_checkpoints_are_written_every_checkpoint_every_seconds_not_every_epoch(tiny, tmp_path):
    sweep = make(tiny, tmp_path / "sweep", checkpoint_every=1e9, epochs=3)
    written = []
    save = sweep._checkpoint
    sweep._checkpoint = lambda: (written.append((sweep.epoch, sweep.batch)), save())
    sweep.fit()
    assert written == []
    every_epoch = make(tiny, tmp_path / "every", checkpoint_every=0.0, epochs=3)
    written = []
    save = every_epoch._checkpoint
    every_epoch._checkpoint = lambda: (written.append((every_epoch.epoch, every_epoch.batch)), save())
    every_epoch.fit()
    assert written == [(1, 0), (2, 0), (3, 0)]


def test_resume_refuses_what_it_cannot_continue(tiny, tmp_path):
    with pytest.raises(ConfigError, match="not a sweep directory"):
        Sweep.resume(tmp_path, tiny, echo=None)
    sweep = make(tiny, tmp_path / "sweep", epochs=1)
    sweep._fit = lambda: None  # created, never trained: no checkpoint yet
    sweep.fit()
    with pytest.raises(ConfigError, match="only checkpoint_every, device, max_seconds, progress, threads may change"):
        Sweep.resume(sweep.path, tiny, echo=None, overrides={"lr": 0.1})
    lines = []
    fresh = Sweep.resume(sweep.path, tiny, echo=lines.append)
    assert "no checkpoint yet" in lines[0] and fresh.epoch == 0
    other = tiny.__class__("tiny", tiny.test, tiny.train, source="synthetic")  # another train set
    with pytest.raises(TrainingError, match="dataset differs"):
        Sweep.resume(sweep.path, other, echo=None)


def test_cli_sweep_resume(tiny_dir, tmp_path, capsys):
    from ssmrec.cli import main

    base = tmp_path / "base.toml"
    base.write_text(f'dataset = "{tiny_dir}"\nmodel = "mf"\nloss = "bpr"\ndim = 8\nbatch_size = 256\n'
                    'epochs = 3\nprogress = false\nlr = 0.01\n\n[sweep]\nmembers = [{seed = 0}, {reg = 1e-3}]\n')
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(["sweep", "--config", str(base), "--out", str(whole)]) == 0
    capsys.readouterr()
    # a run stopped at the end of epoch 2: resumed from the command line, it ends as the whole one
    sweep = Sweep(TrainConfig.from_dict({"dataset": str(tiny_dir), "model": "mf", "loss": "bpr", "dim": 8,
                                         "batch_size": 256, "epochs": 3, "progress": False, "lr": 0.01,
                                         "out": str(cut)}),
                  [{"seed": 0}, {"reg": 1e-3}], run_dir=cut, echo=None)
    evaluate = sweep.select_eval.evaluate
    sweep.select_eval.evaluate = lambda *a: (sweep.stop.request(signal.SIGINT), evaluate(*a))[1]
    with pytest.raises(Interrupted):
        sweep.fit()
    assert main(["sweep", "--resume", str(cut), "--member", "seed=2"]) == 2
    assert "give neither --config nor --member" in capsys.readouterr().err
    assert main(["sweep", "--resume", str(cut)]) == 0
    assert f"resuming {cut} at epoch 2, batch 0" in capsys.readouterr().out
    for j in range(2):
        done = json.loads((cut / f"member-{j}" / "metrics.json").read_text())
        ref = json.loads((whole / f"member-{j}" / "metrics.json").read_text())
        assert done["test"] == ref["test"] and done["best_epoch"] == ref["best_epoch"]
    assert main(["sweep", "--resume", str(cut)]) == 2
    assert "has finished" in capsys.readouterr().err


def test_best_weights_saved_after_the_checkpoint_are_put_back_on_resume(tiny, tmp_path, reference):
    """kill -9 after an evaluation saved a member's new best.pt but before the checkpoint that
    follows: the resumed member must start from the checkpoint's best weights, not the later ones."""
    sweep = make(tiny, tmp_path / "sweep", checkpoint_every=0.0)
    save_best = sweep._save_best

    class Killed(Exception):
        pass

    def save_then_die(m, pos, epoch, metrics):
        save_best(m, pos, epoch, metrics)
        if epoch == 3:
            raise Killed()

    sweep._save_best = save_then_die
    with pytest.raises(Killed):
        sweep.fit()
    ahead = [m.index for m in sweep.members if m.run.load("best.pt")["epoch"] == 3]
    assert ahead  # some member's best.pt ran ahead of the epoch-2 checkpoint
    again = resume(tiny, sweep.path)
    for m in again.members:
        assert m.run.load("best.pt")["epoch"] == m.stopper.best_epoch <= 2
    again.fit()
    assert_same(again, reference)
    assert not list(again.path.glob("member-*/best.checkpointed.pt"))  # gone with last.pt at the end


def test_a_sweep_is_trained_by_one_process_at_a_time(tiny, tmp_path):
    import subprocess
    import sys

    sweep = make(tiny, tmp_path / "sweep", epochs=1)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (sweep.path / ".lock").write_text(str(other.pid))
        with pytest.raises(ConfigError, match=f"being trained by process {other.pid}"):
            sweep.fit()
    finally:
        other.kill()
        other.wait()
    sweep.fit()  # its pid gone: a stale lock is taken over
    assert not (sweep.path / ".lock").exists()

