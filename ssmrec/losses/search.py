"""Each loss's key parameters and the values to search them over, as data.

A fair comparison tunes every loss on its own parameters: :data:`SEARCH_SPACES` says which those
are and over which values (a race's arms, ``ssmrec tune --grid``). Names are those a tuning grid
and a sweep member accept (:func:`ssmrec.sweeps.tuning.parse_grid` with ``loss=name``): the
settings sweep members may differ in (``tau``, ``reg``, ``margin``, ``neg_weight``) and the loss's
own parameters (``loss_params``). L2 (``reg``) is left to the consumer's shared grid except where
a loss is known to need other values. No torch here: the command line reads it before it loads
anything heavy.

Where each range comes from:

* ``ssm``, ``softmax``, ``clogq``: the temperature. The study's coarse grid is {0.1, 0.2, 0.5, 1.0}
  (``experiments/tau-search.toml``), its best values 0.12-0.14 (Gowalla, Yelp2018); the PSL authors
  find SL's best at 0.025-0.1 with 1000 uniform negatives (arXiv 2411.00163, Tables B.2-B.3).
  {0.05, 0.1, 0.2, 0.5} brackets both (1.0 never won with cosine scores). Corrected logQ
  (Khrylchenko et al., RecSys 2025) adds no parameter of its own (``weight`` is an ablation).
* ``bpr``: none but L2; its best L2 in the study's search (``experiments/l2-bpr.toml``) is 1e-3 on
  Gowalla MF, above the shared grid's usual 1e-6..1e-4, so BPR carries its own.
* ``bce``: none but L2 (its negatives per positive change the batch stream: not tunable in a sweep).
* ``ccl``: margin and negative weight around SimpleX's configuration, 0.9 and 150 (reczoo/RecZoo
  ``matching/cf/SimpleX`` README); the grid around it is ours.
* ``bsl``: ``tau`` and ``tau2``, the weight of the negative term. The BSL authors' best runs use
  ``tau2`` 0.80-1.32 (junkangwu/BSL README and ``BEST/`` logs); ``tau2 = 1`` is SL in both of our
  forms, so it is left out: the arm is BSL proper, SL is the ``ssm`` arm. ``form`` is not searched:
  the authors' and the paper's forms are two named arms (``loss_params = {form = "paper"}``), not
  one arm's choice.
* ``psl``: ``tau`` on the paper's grid {0.005, 0.025, 0.05, 0.1, 0.25} without 0.005 (never best
  in its Tables B.2-B.3) and the three surrogate activations of the paper (tanh, atan, relu).
* ``adaptau``: the starting ``tau`` and ``beta``, the scale of the per-user loss differences: the
  authors' scripts use 0.25, 0.6, 1.0 and 1.5 (junkangwu/Adap_tau README).
* ``slk``: ``tau`` (the paper sets it to SL's best; we search it), ``tau_w`` in the paper's range
  [0.5, 3.0] (IR-Benchmark ``hyper.py``: steps of 0.25; three values here) and ``refresh_every``
  {5, 20}, the paper's two values of T_beta.
* ``ntr``: ``tau`` and ``weight``, the NTR term's weight; the paper gives no value, our
  ``experiments/ntr.toml`` uses 10 and 100.
"""

from __future__ import annotations

from typing import Any

TAU = [0.05, 0.1, 0.2, 0.5]
"""The temperatures of the softmax family (see the module docstring)."""

SEARCH_SPACES: dict[str, dict[str, list[Any]]] = {
    "ssm": {"tau": TAU},
    "softmax": {"tau": TAU},
    "bpr": {"reg": [1e-5, 1e-4, 1e-3]},
    "bce": {},
    "ccl": {"margin": [0.5, 0.7, 0.9], "neg_weight": [50.0, 150.0, 300.0]},
    "bsl": {"tau": [0.05, 0.1, 0.2], "tau2": [0.8, 0.9, 1.1, 1.2, 1.3]},
    "psl": {"tau": [0.025, 0.05, 0.1, 0.25], "activation": ["tanh", "atan", "relu"]},
    "adaptau": {"tau": [0.05, 0.1, 0.2], "beta": [0.25, 0.6, 1.0, 1.5]},
    "slk": {"tau": [0.05, 0.1, 0.2], "tau_w": [0.5, 1.0, 2.0], "refresh_every": [5, 20]},
    "clogq": {"tau": TAU},
    "ntr": {"tau": [0.05, 0.1, 0.2], "weight": [1.0, 10.0, 100.0]},
}
"""Built-in loss name -> {parameter: values to search} (module docstring: where each comes from)."""

DEGENERATE: dict[str, dict[str, Any]] = {"bsl": {"tau2": 1.0}, "psl": {"activation": "exp"}}
"""Parameter values at which a loss is another loss (BSL at ``tau2 = 1`` is SL in both forms; PSL
with ``exp`` is SL at ``2 tau``): a search space that holds only these is no search of the loss."""

__all__ = ["DEGENERATE", "SEARCH_SPACES", "TAU"]
