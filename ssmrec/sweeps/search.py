"""The study's temperature search as values: a coarse grid, then a fine grid around the best.

Light (no torch): grid files read it (:mod:`ssmrec.experiments.grid`, a cell with
``search = "tau"``) and a tuning study runs it (:class:`~ssmrec.sweeps.tuning.Study`,
``tau_search=True``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Search:
    """The study's temperature search: a coarse grid, then a fine grid around the best value."""

    param: str = "tau"
    coarse: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0)
    step: float = 0.02
    span: int = 2
    seed: int = 0

    def fine(self, best: float) -> list[float]:
        vals = [round(best + k * self.step, 6) for k in range(-self.span, self.span + 1)]
        return [v for v in vals if v > 0]
