"""Kept for compatibility: tuning studies moved to :mod:`ssmrec.sweeps.tuning`
(``ssmrec.sweeps.Study``). This module keeps the name the README documented before,
``ssmrec.experiments.tune.Study``."""

from ssmrec.sweeps.tuning import Study

__all__ = ["Study"]
