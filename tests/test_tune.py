"""Tuning studies: a grid run as Optuna trials inside vectorised sweeps, pruned by successive
halving, persisted in SQLite, resumed after a kill, with the coarse-then-fine temperature search."""

from __future__ import annotations

import json

import optuna
import pytest

from ssmrec.cli import main
from ssmrec.errors import ConfigError
from ssmrec.sweeps import tuning
from ssmrec.sweeps.tuning import Study, combinations, parse_grid
from ssmrec.train import TrainConfig

BASE = {"dataset": "tiny", "model": "mf", "loss": "bpr", "dim": 8, "lr": 0.01, "batch_size": 512, "epochs": 6,
        "patience": 0, "progress": False, "threads": 1}


def test_grid_parsing_and_refusals():
    assert parse_grid(["reg=1e-4,1e-2", "seed=0,1"]) == {"reg": [1e-4, 1e-2], "seed": [0, 1]}
    assert len(combinations({"reg": [1, 2], "seed": [0, 1, 2]})) == 6
    with pytest.raises(ConfigError, match="only settings that sweep members may differ in"):
        parse_grid(["lr=0.1,0.01"])
    with pytest.raises(ConfigError, match="NAME=V1,V2"):
        parse_grid(["reg"])


def test_a_study_runs_its_grid_as_sweeps_and_selects_on_validation(tiny_dir, tmp_path):
    cfg = TrainConfig.from_dict({**BASE, "dataset": str(tiny_dir), "protocol": "holdout"})
    study = Study(cfg, {"reg": [1e-5, 1e-3, 1e-1]}, tmp_path / "study", members=2, pruner="none", echo=None)
    s = study.run()
    assert [t["state"] for t in s["trials"]] == ["COMPLETE"] * 3
    assert s["selected_on"] == "validation"
    best = max(s["trials"], key=lambda t: t["value"])
    assert s["best"]["number"] == best["number"]
    assert all(t["run_dir"] and t["epochs_run"] == 6 for t in s["trials"])
    assert json.loads((tmp_path / "study" / "tune.json").read_text())["best"]["params"] == best["params"]
    # two sweeps: trials 0-1 together, then trial 2
    assert sorted(p.name for p in (tmp_path / "study").glob("sweep-*")) == ["sweep-0000", "sweep-0002"]


def test_successive_halving_prunes_and_saves_epochs(tiny, tmp_path):
    cfg = TrainConfig.from_dict(BASE)
    grid = {"reg": [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]}
    s = Study(cfg, grid, tmp_path / "sha", members=6, pruner="sha", min_epochs=1, dataset=tiny, echo=None).run()
    states = [t["state"] for t in s["trials"]]
    assert "PRUNED" in states and "COMPLETE" in states
    full = Study(cfg, grid, tmp_path / "none", members=6, pruner="none", dataset=tiny, echo=None).run()
    assert s["epochs_trained"] < full["epochs_trained"] == 6 * 6


def test_a_killed_study_resumes(tiny, tmp_path):
    cfg = TrainConfig.from_dict({**BASE, "epochs": 2})
    out = tmp_path / "study"
    first = Study(cfg, {"reg": [1e-4, 1e-2]}, out, members=1, pruner="none", dataset=tiny, echo=None)
    first.enqueue(combinations(first.grid))
    t = first.study.ask()  # a trial left RUNNING, as by kill -9 in the middle of its sweep
    t.suggest_float("reg", 1e-4, 1e-2)
    again = Study(cfg, {"reg": [1e-4, 1e-2]}, out, members=1, pruner="none", dataset=tiny, echo=None)
    s = again.run()
    states = sorted(t["state"] for t in s["trials"])
    assert states.count("COMPLETE") == 2 and states.count("FAIL") == 1
    assert sorted(t["params"]["reg"] for t in s["trials"] if t["state"] == "COMPLETE") == [1e-4, 1e-2]
    storage = optuna.storages.RDBStorage(f"sqlite:///{(out / 'study.db').resolve()}")
    assert len(optuna.load_study(study_name="study", storage=storage).trials) == 3


def test_a_stopped_study_resumes_its_sweep_where_it_stopped(tiny, tmp_path, monkeypatch):
    """SIGTERM in the middle of a round: re-running the study resumes that sweep from its
    checkpoint (no trial failed or trained twice), and the values equal an uninterrupted study's."""
    import signal

    from ssmrec.train.signals import Interrupted

    cfg = TrainConfig.from_dict({**BASE, "epochs": 4, "checkpoint_every": 0.0})
    grid = {"reg": [1e-4, 1e-2, 1e-1]}
    whole = Study(cfg, grid, tmp_path / "whole", members=2, pruner="none", dataset=tiny, echo=None).run()

    class StoppedInEpoch2(tuning.Sweep):
        def step(self, batch):
            out = super().step(batch)
            if self.epoch == 1 and batch.index == 0:
                self.stop.request(signal.SIGTERM)
            return out

    monkeypatch.setattr(tuning, "Sweep", StoppedInEpoch2)
    with pytest.raises(Interrupted, match="run the same ssmrec tune command again"):
        Study(cfg, grid, tmp_path / "cut", members=2, pruner="none", dataset=tiny, echo=None).run()
    monkeypatch.undo()
    lines = []
    s = Study(cfg, grid, tmp_path / "cut", members=2, pruner="none", dataset=tiny, echo=lines.append).run()
    assert any(line.startswith("resuming the sweep of trials 0, 1 in") for line in lines)
    assert [t["state"] for t in s["trials"]] == ["COMPLETE"] * 3  # none failed, none enqueued twice
    assert {t["params"]["reg"]: t["value"] for t in s["trials"]} == \
        {t["params"]["reg"]: t["value"] for t in whole["trials"]}
    assert s["epochs_trained"] == whole["epochs_trained"] == 3 * 4


def test_coarse_then_fine_temperature_search(tiny, tmp_path):
    cfg = TrainConfig.from_dict({**BASE, "loss": "ssm", "epochs": 2})
    s = Study(cfg, {}, tmp_path / "tau", members=4, pruner="none", tau_search=True, dataset=tiny, echo=None).run()
    taus = sorted(t["params"]["tau"] for t in s["trials"])
    coarse = [0.1, 0.2, 0.5, 1.0]
    assert set(coarse) <= set(taus) and len(taus) > 4
    best_coarse = max((t for t in s["trials"] if t["params"]["tau"] in coarse), key=lambda t: t["value"])
    fine = [x for x in taus if x not in coarse]
    assert all(abs(x - best_coarse["params"]["tau"]) <= 0.04 + 1e-9 for x in fine)


def test_tune_command(tiny_dir, tmp_path, capsys):
    base = tmp_path / "base.toml"
    base.write_text(f'dataset = "{tiny_dir}"\nmodel = "mf"\nloss = "bpr"\ndim = 8\nepochs = 2\nlr = 0.01\n'
                    "progress = false\n")
    out = tmp_path / "t"
    assert main(["tune", "--config", str(base), "--grid", "reg=1e-4,1e-2", "--members", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "selected: {'reg':" in printed and (out / "tune.json").is_file()


class Killed(Exception):
    """What kill -9 leaves: the process gone before a checkpoint is written."""


def test_a_prune_decided_after_the_last_checkpoint_survives_a_kill(tiny, tmp_path, monkeypatch):
    """Successive halving prunes at the rung epoch 2. A study killed after that epoch's evaluations
    (pruning decisions made, recorded by optuna as completed rungs) but before its checkpoint resumes
    the sweep from epoch 1's checkpoint; replaying epoch 2, the pruner finds the rung already completed
    and never prunes again, so the pruned trials train on and end COMPLETE, unlike the uninterrupted
    study (the claim: a resumed sweep ends as if never stopped)."""
    cfg = TrainConfig.from_dict({**BASE, "epochs": 4, "checkpoint_every": 0.0})
    grid, sha = {"reg": [1e-4, 0.3, 1.0]}, {"members": 3, "pruner": "sha", "min_epochs": 2, "dataset": tiny}
    whole = Study(cfg, grid, tmp_path / "whole", echo=None, **sha).run()
    assert "PRUNED" in [t["state"] for t in whole["trials"]]  # the scenario needs a prune at epoch 2

    class KilledBeforeEpoch2Checkpoint(tuning.Sweep):
        def _checkpoint(self):
            if self.epoch == 2:
                raise Killed()
            super()._checkpoint()

    monkeypatch.setattr(tuning, "Sweep", KilledBeforeEpoch2Checkpoint)
    with pytest.raises(Killed):
        Study(cfg, grid, tmp_path / "cut", echo=None, **sha).run()
    monkeypatch.undo()
    again = Study(cfg, grid, tmp_path / "cut", echo=None, **sha).run()

    def outcome(s):
        return {t["params"]["reg"]: (t["state"], t["epochs_run"]) for t in s["trials"]}

    assert outcome(again) == outcome(whole)


def test_a_study_stopped_after_a_sweep_finished_reads_its_results_instead_of_training_again(tiny, tmp_path,
                                                                                          monkeypatch):
    cfg = TrainConfig.from_dict({**BASE, "epochs": 3})
    grid = {"reg": [1e-4, 1e-2]}
    whole = Study(cfg, grid, tmp_path / "whole", members=2, pruner="none", dataset=tiny, echo=None).run()
    monkeypatch.setattr(Study, "_tell", lambda self, trial, member: (_ for _ in ()).throw(Killed()))
    with pytest.raises(Killed):  # the sweep finished; the process died before telling its trials
        Study(cfg, grid, tmp_path / "cut", members=2, pruner="none", dataset=tiny, echo=None).run()
    monkeypatch.undo()
    trained = []
    monkeypatch.setattr(tuning.Sweep, "fit", lambda self: trained.append(self) or [])
    lines = []
    s = Study(cfg, grid, tmp_path / "cut", members=2, pruner="none", dataset=tiny, echo=lines.append).run()
    assert trained == [] and any("their results are read from it" in line for line in lines)
    assert [t["state"] for t in s["trials"]] == ["COMPLETE"] * 2
    assert {t["params"]["reg"]: t["value"] for t in s["trials"]} == \
        {t["params"]["reg"]: t["value"] for t in whole["trials"]}


def test_a_sweep_another_live_process_trains_is_left_to_it(tiny, tmp_path):
    import subprocess
    import sys

    from optuna.trial import TrialState

    cfg = TrainConfig.from_dict({**BASE, "epochs": 2})
    out = tmp_path / "study"
    first = Study(cfg, {"reg": [1e-4]}, out, members=1, pruner="none", dataset=tiny, echo=None)
    first.enqueue(combinations(first.grid))
    t = first._ask()[0]  # a trial RUNNING in its sweep folder, as another process leaves it while training
    t.set_user_attr("sweep", str(out / "sweep-0000"))
    t.set_user_attr("member", 0)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / "sweep-0000").mkdir()
        (out / "sweep-0000" / ".lock").write_text(str(other.pid))
        lines = []
        s = Study(cfg, {"reg": [1e-4]}, out, members=1, pruner="none", dataset=tiny, echo=lines.append).run()
        assert any(f"being trained by process {other.pid}" in line for line in lines)
        assert [t["state"] for t in s["trials"]] == [TrialState.RUNNING.name]  # not failed, not trained twice
    finally:
        other.kill()
        other.wait()



def _tune_command(tiny_dir, out, *extra: str) -> list[str]:
    return ["tune", "--dataset", str(tiny_dir), "--model", "mf", "--loss", "bpr", "--dim", "8", "--lr", "0.01",
            "--batch-size", "512", "--epochs", "20", "--patience", "0", "--no-progress", "--threads", "1",
            "--grid", "reg=1e-4,1e-2,1e-1", "--members", "2", "--pruner", "none", "--out", str(out), *extra]


@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_a_study_stopped_in_its_first_round_resumes_with_the_same_command(tiny_dir, tmp_path, how, capsys):
    """Ctrl-C or kill -9 before round 1 ends, then the same command, as the message and the README
    say: the study goes on (it was refused as 'something other than a tuning study')."""
    import signal
    import subprocess
    import sys

    out = tmp_path / "study"
    command = _tune_command(tiny_dir, out)
    proc = subprocess.Popen([sys.executable, "-m", "ssmrec", *command], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        for line in proc.stdout:
            if line.startswith("epoch    1  member"):  # round 1 is training
                proc.send_signal(getattr(signal, how))
                break
        rest = proc.stdout.read()
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
    assert code == (130 if how == "SIGINT" else -signal.SIGKILL), rest
    assert "round 2" not in rest  # stopped in round 1
    if how == "SIGINT":
        assert "run the same ssmrec tune command again" in rest
    assert main(command) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "resuming the sweep of trials 0, 1 in" in printed
    s = json.loads((out / "tune.json").read_text())
    assert [t["state"] for t in s["trials"]] == ["COMPLETE"] * 3  # none failed, none trained twice
    assert s["epochs_trained"] == 3 * 20


def test_a_folder_holding_something_else_or_another_study_is_refused(tiny_dir, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(_tune_command(tiny_dir, other)) == 2
    assert "holds something other than a tuning study (notes.txt)" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "mine" and sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    done = tmp_path / "done"
    assert main(_tune_command(tiny_dir, done, "--epochs", "2")) == 0
    capsys.readouterr()
    assert main(_tune_command(tiny_dir, done, "--epochs", "2", "--lr", "0.1")) == 2  # another study's folder
    assert "holds a study of other settings (lr 0.01 (the study's) vs 0.1)" in capsys.readouterr().err
    assert main(_tune_command(tiny_dir, done, "--epochs", "2", "--threads", "2")) == 0  # run-only: same study


def test_a_study_folder_an_older_version_left_in_round_1_is_accepted(tiny_dir, tmp_path):
    """An older ssmrec wrote tune.json after round 1: a folder holding only study.db and round 1's
    sweep of this study's settings is a study's; one of other settings, or with other files, is not."""
    cfg = TrainConfig.from_dict({**BASE, "dataset": str(tiny_dir)})
    out = tmp_path / "old"
    (out / "sweep-0000").mkdir(parents=True)
    (out / "study.db").write_bytes(b"")
    (out / "sweep-0000" / "sweep.json").write_text(json.dumps({"status": "running", "base": cfg.to_dict()}))
    tuning.check_study_dir(out, cfg)
    tuning.check_study_dir(out, cfg.replace({"threads": 2, "device": "cpu"}))
    with pytest.raises(ConfigError, match=r"holds a study of other settings \(epochs 6 \(the study's\) vs 7\)"):
        tuning.check_study_dir(out, cfg.replace({"epochs": 7}))
    (out / "runs.csv").write_text("")
    with pytest.raises(ConfigError, match=r"holds something other than a tuning study \(runs.csv\)"):
        tuning.check_study_dir(out, cfg)


def test_successive_halving_ranks_a_sweeps_members_together_whatever_their_order():
    """Members reach a rung together and are ranked together: the best third goes on, even when the
    members report in increasing order of quality (Optuna's asynchronous pruner, asked member by
    member, promoted every one of them: each was the best so far)."""
    from types import SimpleNamespace

    study = SimpleNamespace(pruner_name="sha", min_epochs=3)
    rising = {j: 0.01 * (j + 1) for j in range(12)}  # member 11 is the best
    assert Study.halve(study, 3, 1, rising, [None] * 12) == list(range(8))[::-1]  # keeps 11, 10, 9, 8
    assert Study.halve(study, 2, 1, rising, [None] * 12) == []  # not a rung
    assert Study.halve(study, 9, 1, {8: 0.3, 9: 0.2, 10: 0.5}, [None] * 12) == [8, 9]
    assert Study.halve(study, 10, 5, {0: 0.1, 1: 0.2}, [None] * 2) == [0]  # first evaluation past rung 9
    assert Study.halve(study, 3, 1, rising, [None] * 11 + [3]) == []  # decided before: not again
    assert Study.halve(SimpleNamespace(pruner_name="none", min_epochs=3), 3, 1, rising, [None] * 12) == []
