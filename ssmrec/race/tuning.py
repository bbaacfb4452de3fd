"""Tuning one arm of a race within its seconds: its grid as one tuning study (trials trained K at a
time as a vectorised sweep, successive-halving pruning, selection on validation), or, for a loss
a sweep cannot train (one that keeps per-user state), as solo runs that split the seconds.

What it returns is what the race keeps (``race.json``): the selected parameters, their validation
value, every trial's value, and the sensitivity of the arm to each tuned parameter (the best
validation value reached at each of its values, over the other parameters' values).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from ssmrec.errors import ConfigError
from ssmrec.race.arms import Arm
from ssmrec.sweeps.tuning import Study, combinations


def tune_arm(race, arm: Arm, seconds: float) -> dict[str, Any]:
    """Tune ``arm`` of ``race`` (a :class:`~ssmrec.race.race.Race`) within about ``seconds``: its
    grid, thinned (:func:`fit_grid`) to the trials ``seconds`` can afford at the race's measured
    cost of an epoch: ``2 * min_epochs`` epochs a trial, its first successive-halving rung for
    every trial and as much again for the third that goes on to the next rungs."""
    t0 = time.monotonic()
    affordable = max(1, int(seconds / max(race.epoch_seconds(), 1e-6) / (2 * race.min_epochs)))
    grid = fit_grid(arm.grid, affordable)
    if grid != arm.grid:
        race.echo(f"    {arm.name}: {len(combinations(arm.grid))} combinations do not fit in "
                  f"{seconds:.0f} s at {race.epoch_seconds():.1f} s per epoch; searching {len(combinations(grid))}: "
                  + ", ".join(f"{k} {v}" for k, v in grid.items()))
    arm = Arm(arm.name, arm.loss, arm.fixed, grid, arm.about)
    combos = combinations(arm.grid) if arm.grid else [{}]
    folder = race.out / "tune" / arm.name
    if len(combos) == 1:
        out = {"how": "none", "params": combos[0], "value": math.nan, "trials": [], "sensitivity": {}}
    else:
        try:
            out = _study(race, arm, combos, folder, seconds)
        except ConfigError as e:
            if "sweep" not in str(e) and "member" not in str(e):
                raise
            race.echo(f"    {arm.name}: {e}; tuned by solo runs instead")
            out = _solo(race, arm, combos, folder, seconds)
    out["seconds"] = time.monotonic() - t0
    out["budget"] = seconds
    out["grid"] = grid
    return out


def fit_grid(grid: dict[str, list[Any]], trials: int) -> dict[str, list[Any]]:
    """``grid`` with at most ``trials`` combinations (at least one): while it has too many, the
    setting with the most values (the later one on ties: L2 and secondary parameters before the
    temperature, which comes first) keeps one value fewer; each keeps the central values of its
    list (the ranges are ordered, their ends the least likely)."""
    keep = {k: len(v) for k, v in grid.items()}
    while math.prod(keep.values()) > max(trials, 1) and max(keep.values(), default=1) > 1:
        name = max(reversed(list(keep)), key=lambda k: keep[k])
        keep[name] -= 1
    out = {}
    for k, v in grid.items():
        start = (len(v) - keep[k]) // 2
        out[k] = list(v[start:start + keep[k]])
    return out


def _study(race, arm: Arm, combos: list[dict[str, Any]], folder: Path, seconds: float) -> dict[str, Any]:
    members = min(len(combos), race.members)
    rounds = math.ceil(len(combos) / members)
    base = race.arm_config(arm, max_seconds=seconds / rounds, progress=False)
    study = Study(base, {k: list(v) for k, v in arm.grid.items()}, folder, members=members, pruner="sha",
                  min_epochs=race.min_epochs, dataset=race.data, echo=None)
    summary = study.run()
    trials = [{"params": t["params"], "state": t["state"], "value": _best_value(t),
               "epochs": t["epochs_run"], "stop_reason": t["stop_reason"]} for t in summary["trials"]]
    best = summary["best"]
    if best is None:
        raise ConfigError(f"arm {arm.name}: no tuning trial finished (every one diverged or was pruned); "
                          f"see {folder / 'tune.json'}")
    return {"how": f"tuning study, {members} trials per sweep, successive halving from epoch {race.min_epochs}",
            "params": dict(best["params"]), "value": float(best["value"]), "trials": trials,
            "sensitivity": sensitivity(trials, arm.grid)}


def _best_value(trial: dict[str, Any]) -> float | None:
    """A trial's best validation value: its reported one, else (pruned) its best intermediate one."""
    if trial.get("value") is not None:
        return float(trial["value"])
    inter = [v for v in (trial.get("intermediate") or {}).values() if v is not None]
    return float(max(inter)) if inter else None


def _solo(race, arm: Arm, combos: list[dict[str, Any]], folder: Path, seconds: float) -> dict[str, Any]:
    from ssmrec.train.run import LAST, RunDir
    from ssmrec.train.trainer import Trainer

    trials = []
    t0 = time.monotonic()
    for j, params in enumerate(combos):
        path = folder / f"trial-{j:03d}"
        left = seconds - (time.monotonic() - t0)
        share = max(left / (len(combos) - j), 1.0)
        finished = RunDir(path).metrics() if path.is_dir() else None
        if finished is None:
            if (path / LAST).exists():
                finished = Trainer.resume(path, echo=None).fit()
            else:
                cfg = race.arm_config(arm, params, max_seconds=share, out=str(path), progress=False)
                finished = Trainer(cfg, race.data, echo=None).fit()
        value = (finished.get("valid") or {}).get(race.base.metric)
        trials.append({"params": params, "state": "COMPLETE" if value is not None else "FAIL",
                       "value": value, "epochs": finished.get("epochs_run"),
                       "stop_reason": finished.get("stop_reason")})
    done = [t for t in trials if t["value"] is not None]
    if not done:
        raise ConfigError(f"arm {arm.name}: no tuning run finished; see {folder}")
    best = max(done, key=lambda t: t["value"])
    return {"how": "solo runs (the loss keeps per-user state, which sweep members cannot share)",
            "params": dict(best["params"]), "value": float(best["value"]), "trials": trials,
            "sensitivity": sensitivity(trials, arm.grid)}


def sensitivity(trials: list[dict[str, Any]], grid: dict[str, list[Any]]) -> dict[str, dict[str, Any]]:
    """Per tuned parameter: the best validation value reached at each of its values (over the
    other parameters), and ``spread``, how much of the best value is lost at the worst of them
    (``1 - worst / best``). A parameter with one value is left out."""
    out: dict[str, dict[str, Any]] = {}
    for name, values in grid.items():
        if len(values) < 2:
            continue
        best_at = {}
        for v in values:
            got = [t["value"] for t in trials if t["value"] is not None and t["params"].get(name) == v]
            if got:
                best_at[str(v)] = max(got)
        if len(best_at) >= 2:
            top, low = max(best_at.values()), min(best_at.values())
            out[name] = {"best_at": best_at, "spread": (1 - low / top) if top > 0 else math.nan}
    return out
