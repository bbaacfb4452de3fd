"""Training: settings, the objective, the loop, run directories."""

from ssmrec.train.callbacks import EarlyStopping
from ssmrec.train.config import ConfigError, TrainConfig, load_toml
from ssmrec.train.objective import Objective, build_objective
from ssmrec.train.run import RunDir
from ssmrec.train.trainer import Interrupted, Trainer, TrainingError, resolve_device

__all__ = ["ConfigError", "EarlyStopping", "Interrupted", "Objective", "RunDir", "TrainConfig",
           "Trainer", "TrainingError", "build_objective", "load_toml", "resolve_device"]
