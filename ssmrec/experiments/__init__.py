"""Experiments: TOML grids -> resumable runs -> small result records -> tables and figures.

Names are imported on first use (PEP 562), so that the command line can read the light parts
(which settings sweep members may differ in) without loading torch.
"""

from __future__ import annotations

from ssmrec._lazy import lazy_exports

_WHERE = {"Cell": "grid", "Grid": "grid", "Search": "grid", "load_grid": "grid",
          "Runner": "runner", "selection_score": "runner"}
__all__ = sorted(_WHERE)

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
