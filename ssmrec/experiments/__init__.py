"""Experiments: TOML grids -> resumable runs -> small result records -> tables and figures."""

from ssmrec.experiments.grid import Cell, Grid, Search, load_grid
from ssmrec.experiments.runner import Runner, selection_score

__all__ = ["Cell", "Grid", "Runner", "Search", "load_grid", "selection_score"]
