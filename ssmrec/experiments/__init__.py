"""Experiments, the study: TOML grids -> resumable runs -> small result records -> tables and
figures. Training K settings at once and tuning are :mod:`ssmrec.sweeps`, which this package uses.

Names are imported on first use (PEP 562), so that importing the package (or reading a grid, a
record) does not load torch.
"""

from __future__ import annotations

from ssmrec._lazy import lazy_exports

_WHERE = {"Cell": "grid", "Grid": "grid", "Search": "grid", "load_grid": "grid",
          "Runner": "runner", "selection_score": "runner"}
__all__ = sorted(_WHERE)

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
