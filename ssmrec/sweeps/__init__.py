"""Sweeps: K settings of one model and one loss trained as one, and tuning studies over them.

The members' tables are stacked and trained by one optimizer over one batch stream; each member
equals the solo run it stands for to float rounding. Built on :mod:`ssmrec.train`; the study
(:mod:`ssmrec.experiments`) and the command line use it, and it imports nothing from them.

* :mod:`~ssmrec.sweeps.members`: which settings members may differ in, read and checked (light).
* :mod:`~ssmrec.sweeps.stacked`: K models in stacked tables, their losses computed at once.
* :mod:`~ssmrec.sweeps.sweep`: :class:`Sweep`, the loop that trains, evaluates and stops members.
* :mod:`~ssmrec.sweeps.checkpoint`: a sweep's ``last.pt``, stop and resume.
* :mod:`~ssmrec.sweeps.search`: the study's temperature search as values (light).
* :mod:`~ssmrec.sweeps.tuning`: :class:`Study`, Optuna trials trained K at a time as sweeps.

Names are imported on first use (PEP 562), so that the command line can read the light parts
without loading torch.
"""

from __future__ import annotations

from ssmrec._lazy import lazy_exports

_WHERE = {"DIFFERING": "members", "SWEEPABLE": "members", "member_configs": "members", "parse_member": "members",
          "Search": "search", "Sweep": "sweep", "Study": "tuning"}
__all__ = sorted(_WHERE)

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
