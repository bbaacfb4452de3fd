"""``ssmrec compare``: which loss for *my* data? A fair, budgeted race of losses.

Every arm (a loss, with the settings that make it what it is) is tuned on its own key parameters
on validation, its finalist trained over several seeds and tested once; the answer is a
leaderboard with intervals and paired tests, retrieval and ranking metrics side by side, and one
line of advice. Modules: :mod:`~ssmrec.race.arms` (arms, grids, budget text),
:mod:`~ssmrec.race.race` (the race: phases, budget, resume), :mod:`~ssmrec.race.tuning` (one arm's
tuning), :mod:`~ssmrec.race.measure` (what is measured of a finalist), :mod:`~ssmrec.race.board`
(statistics, advice, report).

It sits above the sweeps and the experiments (it tunes with :class:`~ssmrec.sweeps.tuning.Study`
and tests with :mod:`ssmrec.experiments.stats`) and below the command line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def compare(data: str, *, model: str = "mf", losses: list[str] | tuple[str, ...] | None = None,
            budget: str | float = "10m", seeds: int = 3, k: int = 20, out: str | Path | None = None,
            settings: dict[str, Any] | None = None, grid: dict[str, list[Any]] | None = None,
            sampled: int = 100, retrieved: int = 200, tune_share: float = 0.6,
            echo: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Race ``losses`` on ``data`` with ``model`` within ``budget`` and return the leaderboard.

    Args:
        data: a registry name (``ml-100k``, ``gowalla``) or a file / folder, as ``ssmrec train``.
        model: ``mf`` (default), ``lightgcn`` or ``svdpp``.
        losses: the arms (default: bpr, ssm, ssm+logq, clogq, bsl, psl); any registered loss by name.
        budget: wall-clock time for the whole race: seconds, or text such as ``10m``, ``2h``.
        seeds: finalist runs per arm (default: 3).
        k: the cut-off of every metric (default: 20).
        out: the race's folder (default: ``runs/compare-<data>-<model>``); the same call continues it.
        settings: other shared settings (``{"dim": 64, "lr": 1e-3, "threads": 2}``); the batch size
            defaults to :func:`batch_for` the training pairs.
        grid: values that replace an arm's search values for the settings named (``{"reg": [1e-5]}``).
        sampled, retrieved: candidates per user of the two ranking settings (0: off).
        tune_share: share of the budget spent tuning (default: 0.6).
        echo: where progress lines go (default: print; None: silent).

    Returns:
        The leaderboard (also in ``OUT/leaderboard.json``, with ``REPORT.md``, ``leaderboard.csv``
        and ``race.png``).
    """
    from ssmrec.data.dataset import load_dataset
    from ssmrec.race.arms import make_arms, parse_budget
    from ssmrec.race.race import Race, race_base

    seconds = parse_budget(budget)
    arms = make_arms(losses, grid)
    base = race_base(data, model=model, k=k, settings=settings)
    dataset = load_dataset(base.data_config(), base.protocol)
    if "batch_size" not in (settings or {}):
        base = base.replace({"batch_size": batch_for(dataset.train.nnz)}, source="compare")
    where = Path(out) if out is not None else Path("runs") / f"compare-{Path(str(data)).stem}-{base.model}"
    race = Race(base, arms, where, budget=seconds, seeds=seeds, sampled=sampled, retrieved=retrieved,
                tune_share=tune_share, dataset=dataset, echo=echo)
    return race.run()


def batch_for(pairs: int) -> int:
    """The race's batch size when none is given: about 1/128 of the training pairs as a power of
    two, between 256 and 2048 (the study's). A small dataset then takes over a hundred steps per
    epoch, and an in-batch loss's B x B scores stay cheap: on MovieLens-100K (70k training pairs,
    137 steps of 512 instead of 35 of 2048) an MF + SSM epoch took 0.6 s instead of 4 s here."""
    size = 256
    while size < 2048 and size * 2 <= pairs / 128:
        size *= 2
    return size


__all__ = ["batch_for", "compare"]
