"""Review findings on sweep / study resumption (each test pins a bug: they fail until it is fixed)."""

from __future__ import annotations

import pytest

from ssmrec.experiments import tune
from ssmrec.experiments.tune import Study
from ssmrec.train import TrainConfig

BASE = {"dataset": "tiny", "model": "mf", "loss": "bpr", "dim": 8, "lr": 0.01, "batch_size": 512, "epochs": 4,
        "patience": 0, "progress": False, "threads": 1, "checkpoint_every": 0.0}
GRID = {"reg": [1e-4, 0.3, 1.0]}


class Killed(Exception):
    """What kill -9 leaves: the process gone before a checkpoint is written."""


def test_a_prune_decided_after_the_last_checkpoint_survives_a_kill(tiny, tmp_path, monkeypatch):
    """Successive halving prunes at the rung epoch 2. A study killed after that epoch's evaluations
    (pruning decisions made, recorded by optuna as completed rungs) but before its checkpoint resumes
    the sweep from epoch 1's checkpoint; replaying epoch 2, the pruner finds the rung already completed
    and never prunes again, so the pruned trials train on and end COMPLETE, unlike the uninterrupted
    study (the claim: a resumed sweep ends as if never stopped)."""
    cfg = TrainConfig.from_dict(BASE)
    whole = Study(cfg, GRID, tmp_path / "whole", members=3, pruner="sha", min_epochs=2, dataset=tiny,
                  echo=None).run()
    assert "PRUNED" in [t["state"] for t in whole["trials"]]  # the scenario needs a prune at epoch 2

    class KilledBeforeEpoch2Checkpoint(tune.Sweep):
        def _checkpoint(self):
            if self.epoch == 2:
                raise Killed()
            super()._checkpoint()

    monkeypatch.setattr(tune, "Sweep", KilledBeforeEpoch2Checkpoint)
    with pytest.raises(Killed):
        Study(cfg, GRID, tmp_path / "cut", members=3, pruner="sha", min_epochs=2, dataset=tiny, echo=None).run()
    monkeypatch.undo()
    again = Study(cfg, GRID, tmp_path / "cut", members=3, pruner="sha", min_epochs=2, dataset=tiny, echo=None).run()

    def outcome(s):
        return {t["params"]["reg"]: (t["state"], t["epochs_run"]) for t in s["trials"]}

    assert outcome(again) == outcome(whole)
