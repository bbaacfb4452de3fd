"""Kept for compatibility: sweeps moved to :mod:`ssmrec.sweeps` (``ssmrec.sweeps.Sweep``). This
module keeps the name the README documented before, ``ssmrec.experiments.sweep.Sweep``."""

from ssmrec.sweeps.sweep import Sweep

__all__ = ["Sweep"]
