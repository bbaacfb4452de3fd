"""Bring a finished (or interrupted) run back: its settings, its data and its trained model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ssmrec.data.dataset import Dataset, load_dataset
from ssmrec.errors import TrainingError
from ssmrec.models import build_model
from ssmrec.models.base import Recommender
from ssmrec.train.config import TrainConfig
from ssmrec.train.run import BEST, LAST, RunDir
from ssmrec.train.setup import resolve_device


@dataclass
class Restored:
    cfg: TrainConfig
    data: Dataset
    model: Recommender
    epoch: int
    run: RunDir

    def exclude_sets(self):
        """What evaluation on test removed from each user's ranking."""
        return self.data.exclusions("test")


def restore(run_dir: str | Path, *, device: str = "auto", checkpoint: str = BEST) -> Restored:
    run = RunDir(run_dir)
    cfg = run.data_config(run.load_config())
    dev = resolve_device(device)
    data = load_dataset(cfg.data_config(), cfg.protocol)
    recorded = run.record().get("data", {})
    if recorded.get("fingerprint") and recorded["fingerprint"] != data.train.fingerprint():
        raise TrainingError(f"{run.path}: the dataset found now differs from the one this run was "
                            "trained on (train fingerprint changed)")
    state = run.load(checkpoint, dev) or (run.load(LAST, dev) if checkpoint == BEST else None)
    if state is None:
        raise TrainingError(f"{run.path}: no checkpoint ({checkpoint}) to load")
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, data.train, cfg.dim, layers=cfg.layers, side=cfg.side,
                        a0=cfg.a0, a1=cfg.a1, init=cfg.init, init_std=cfg.init_std).to(dev)
    model.load_state_dict(state["model"])
    model.eval()
    return Restored(cfg, data, model, int(state.get("epoch", -1)), run)
