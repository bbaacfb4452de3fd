"""Training: settings, the objective, the loop, run directories.

Names are imported on first use (PEP 562): ``ssmrec.train.config`` alone does not load torch.
"""

from __future__ import annotations

from ssmrec._lazy import lazy_exports

_WHERE = {
    "EarlyStopping": "callbacks", "ConfigError": "config", "TrainConfig": "config", "load_toml": "config_io",
    "Objective": "objective", "build_objective": "objective", "RunDir": "run",
    "Interrupted": "signals", "Trainer": "trainer", "TrainingError": "trainer", "resolve_device": "trainer",
}
__all__ = sorted(_WHERE)


__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
