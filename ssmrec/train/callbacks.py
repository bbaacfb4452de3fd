"""Early stopping on a chosen metric."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class EarlyStopping:
    """Stop after ``patience`` evaluations without improving ``metric`` (higher is better).

    ``patience = 0`` never stops. State round-trips through :meth:`state_dict`.
    """

    metric: str = "recall@20"
    patience: int = 10
    best: float = -math.inf
    best_epoch: int = -1
    bad_evals: int = 0

    def step(self, epoch: int, metrics: dict[str, float]) -> bool:
        """Record an evaluation; returns True when it is the best so far."""
        value = metrics[self.metric]
        if value > self.best:
            self.best, self.best_epoch, self.bad_evals = value, epoch, 0
            return True
        self.bad_evals += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_evals >= self.patience

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)
