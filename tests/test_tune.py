"""Tuning studies: a grid run as Optuna trials inside vectorised sweeps, pruned by successive
halving, persisted in SQLite, resumed after a kill, with the coarse-then-fine temperature search."""

from __future__ import annotations

import json

import optuna
import pytest

from ssmrec.cli import main
from ssmrec.errors import ConfigError
from ssmrec.experiments.tune import Study, combinations, parse_grid
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

    from ssmrec.experiments import tune
    from ssmrec.train.signals import Interrupted

    cfg = TrainConfig.from_dict({**BASE, "epochs": 4, "checkpoint_every": 0.0})
    grid = {"reg": [1e-4, 1e-2, 1e-1]}
    whole = Study(cfg, grid, tmp_path / "whole", members=2, pruner="none", dataset=tiny, echo=None).run()

    class StoppedInEpoch2(tune.Sweep):
        def step(self, batch):
            out = super().step(batch)
            if self.epoch == 1 and batch.index == 0:
                self.stop.request(signal.SIGTERM)
            return out

    monkeypatch.setattr(tune, "Sweep", StoppedInEpoch2)
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
