"""Training: settings, the objective, the loop, run directories.

Names are imported on first use (PEP 562): ``ssmrec.train.config`` alone does not load torch.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "EarlyStopping": "callbacks", "ConfigError": "config", "TrainConfig": "config", "load_toml": "config",
    "Objective": "objective", "build_objective": "objective", "RunDir": "run",
    "Interrupted": "signals", "Trainer": "trainer", "TrainingError": "trainer", "resolve_device": "trainer",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
