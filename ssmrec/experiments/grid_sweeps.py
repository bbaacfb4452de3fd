"""A grid's cells trained together: ``ssmrec experiment GRID --sweep``.

Cells of one grid that differ only in settings a sweep's members may differ in — ``reg``, ``tau``,
``layers``, ``margin``, ``neg_weight`` — are trained as the members of one
:class:`~ssmrec.sweeps.sweep.Sweep` (an L2 search, a temperature grid, LightGCN's layer
search). Not ``seed``: a sweep's members all see the batches of its base seed, so a seed member is
not the solo run of its cell; cells that differ in seed are separate sweeps. Every member is the
solo run of its cell to float rounding (``tests/test_sweep.py``), and each gets the record a solo
run would, built from its run directory (with the sweep named in it), so reports, ``--extend``
and ``ssmrec rerun`` treat it as any other.

A search cell's coarse values (a temperature search) are swept the same way; the runner then
finds their records and goes on with the fine values around the best.

The sweep lives in ``runs_dir/<experiment>/sweep-<first cell id>/``, resumable like every
sweep: re-running the command continues it from its checkpoint (with the command line's device,
threads and ``--max-seconds``), and its members are recorded as the cells whose settings they
have (a grid edited since keeps its sweep; cells it lacks run on their own). A grid's time
budget is per cell, so a sweep of K cells gets K times it (``--max-seconds`` on the command line
is a deadline for the whole process and stays one). A member whose loss diverged is not recorded:
its cell runs on its own, which stops with the error. A finished sweep keeps no checkpoint, so
``--extend`` of a swept cell that a budget stopped trains it again on its own. Cells already recorded or
already started on their own (a solo checkpoint) are left to the usual cell-by-cell path; a
group whose loss cannot be swept (stateful losses, per-positive negatives) runs cell by cell.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ssmrec.errors import ConfigError
from ssmrec.experiments.grid import Cell, result_settings, with_setting
from ssmrec.sweeps.members import member_configs
from ssmrec.sweeps.search import Search
from ssmrec.sweeps.sweep import SUMMARY, Sweep
from ssmrec.train.restore import restore
from ssmrec.train.run import LAST, PidLock, RunDir

SWEPT = ("reg", "tau", "layers", "margin", "neg_weight")
"""Settings in which the cells of one sweep may differ (a sweep's settings but the seed)."""


def sweep_groups(cells: list[Cell]) -> list[list[Cell]]:
    """Cells equal in everything but :data:`SWEPT`, in grid order; groups of two or more."""
    groups: dict[str, list[Cell]] = {}
    for c in cells:
        rest = {k: v for k, v in c.cfg.to_dict().items() if k not in SWEPT and k != "out"}
        key = json.dumps([c.experiment, c.tag, list(c.similarities), rest], sort_keys=True, default=str)
        groups.setdefault(key, []).append(c)
    return [g for g in groups.values() if len(g) > 1]


@dataclass
class GridContext:
    """What :func:`run_sweeps` needs from the runner of the grid
    (:class:`~ssmrec.experiments.runner.Runner` passes its own), so that this module does not
    import the runner.

    Args:
        runs_dir: where run directories go; a sweep's is ``runs_dir/<experiment>/sweep-<cell>``.
        overrides: the command line's run-only settings, applied to every sweep.
        echo: progress messages.
        find_run: a cell's run directory (its own, or an identical cell's of another grid).
        recorded: whether a cell (or an identical one) has a record.
        record: make and save the record of a finished cell from ``(cell, trained, result,
            seconds)``, ``trained`` having a trainer's ``cfg``, ``data``, ``model``, ``device``,
            ``run`` and ``history``; returns the record.
        listed: ids of the cells a dry run has listed (a swept cell is not listed again alone).
    """

    runs_dir: Path
    overrides: dict[str, Any]
    echo: Callable[[str], None]
    find_run: Callable[[Cell], Path]
    recorded: Callable[[Cell], bool]
    record: Callable[[Cell, Any, dict, float], dict]
    listed: set[str]


def sweep_dir(ctx: GridContext, group: list[Cell]) -> Path:
    return ctx.runs_dir / group[0].experiment / f"sweep-{group[0].id}"


def run_sweeps(ctx: GridContext, cells: list[Cell], search: Search | None = None, *,
               dry_run: bool = False) -> None:
    """Train the groups of ``cells`` (not yet recorded, not started on their own) as sweeps and
    record each member as its cell. A search cell stands for its coarse values at the search's
    seed (``search``: the grid's): those are swept too; its fine values wait on them."""
    expanded: dict[str, Cell] = {}
    for c in cells:
        if not c.search:
            expanded.setdefault(c.id, c)
        elif search is not None:
            for v in search.coarse:
                run = with_setting(c, **{search.param: v, "seed": search.seed})
                expanded.setdefault(run.id, run)
    todo = [c for c in expanded.values() if not ctx.recorded(c) and not (ctx.find_run(c) / LAST).exists()]
    for group in sweep_groups(todo):
        varying = [k for k in SWEPT if len({getattr(c.cfg, k) for c in group}) > 1]
        members = [{k: getattr(c.cfg, k) for k in varying} for c in group]
        base = group[0].cfg
        if base.max_seconds and "max_seconds" not in ctx.overrides:
            # the grid's budget is per cell: the sweep stands for len(group) cells (a --max-seconds
            # on the command line is a deadline for the whole process, and stays one)
            base = base.replace({"max_seconds": base.max_seconds * len(group)}, source=f"a sweep of {len(group)} cells")
        base = base.replace(ctx.overrides, source="command line")
        try:
            member_configs(base, members)
        except ConfigError as e:
            ctx.echo(f"[{group[0].experiment}] {len(group)} cells cannot share a sweep ({e}): run one by one")
            continue
        path = sweep_dir(ctx, group)
        if dry_run:
            what = {None: "would run", "finished": "would record"}.get(_status(path), "would resume")
            ctx.echo(f"[{group[0].experiment}] {what} {len(group)} cells as one sweep in {path} "
                        f"({', '.join(varying)}): {', '.join(c.id for c in group)}")
            ctx.listed.update(c.id for c in group)  # not listed again one by one
            continue
        _run_group(ctx, group, base, members, path)


def _status(path: Path) -> str | None:
    summary = path / SUMMARY
    return json.loads(summary.read_text()).get("status") if summary.exists() else None


def _key(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


def _run_group(ctx: GridContext, group: list[Cell], base, members: list[dict], path: Path) -> None:
    where = f"[{group[0].experiment}]"
    locks = [PidLock(ctx.find_run(c) / ".lock") for c in group]  # a solo runner of these cells waits
    taken = []
    try:
        for lock in locks:
            if not lock.acquire():
                ctx.echo(f"{where} a cell of the sweep in {path} is run by another process; skipped")
                return
            taken.append(lock)
        t0 = time.time()
        status = _status(path)
        if status is None:
            try:
                sweep = Sweep(base.replace({"out": None}, source="sweep"), members, run_dir=path, echo=ctx.echo)
            except ConfigError as e:  # refused by the sweep itself
                ctx.echo(f"{where} {len(group)} cells cannot share a sweep ({e}): run one by one")
                return
            ctx.echo(f"{where} {len(group)} cells as one sweep in {path}")
            sweep.fit()
        elif status != "finished":
            old = [m["overrides"] for m in json.loads((path / SUMMARY).read_text())["members"]]
            if [_key(m) for m in old] != [_key(m) for m in members]:
                ctx.echo(f"{where} the sweep in {path} was started for other cells ({old}); it resumes as it "
                            "was, its members are recorded as the cells they match, the others run on their own")
            ctx.echo(f"{where} resuming the sweep in {path}")
            keep = {k: v for k, v in ctx.overrides.items() if k in ("device", "threads", "progress", "max_seconds")}
            Sweep.resume(path, echo=ctx.echo, overrides=keep).fit()
        cells = {_key(c.key): c for c in group}
        done = sorted(path.glob("member-*"), key=lambda p: int(p.name.split("-")[1]))
        seconds = (time.time() - t0) / max(len(done), 1)
        for member in done:
            record_member(ctx, cells, member, seconds)
    finally:
        for lock in taken:
            lock.release()


def record_member(ctx: GridContext, cells: dict[str, Cell], member_dir: Path, seconds: float) -> dict | None:
    """The record of the cell (of ``cells``, keyed by their result settings) that the sweep member
    in ``member_dir`` trained, from its best weights; None, said why, where there is none to make:
    the member matches none of the cells, did not finish, or diverged (a solo run of that cell
    stops with the error instead of a record)."""
    run = RunDir(member_dir)
    result = run.metrics()
    if result is None:
        ctx.echo(f"{member_dir}: the member has not finished (no metrics.json); not recorded")
        return None
    if result.get("stop_reason") == "diverged":
        ctx.echo(f"{member_dir}: not recorded, its loss diverged ({result.get('error', 'non-finite loss')}); "
                    "its cell runs on its own, which reports the error")
        return None
    cell = cells.get(_key(result_settings(run.data_config(run.load_config()))))
    if cell is None:
        ctx.echo(f"{member_dir}: its settings are those of no cell in this run of the grid; not recorded")
        return None
    r = restore(member_dir, device=ctx.overrides.get("device", "auto"))
    trained = SimpleNamespace(cfg=r.cfg, data=r.data, model=r.model, device=next(r.model.parameters()).device,
                              run=r.run, history=r.run.history())
    return ctx.record(cell, trained, result, seconds)


__all__ = ["SWEPT", "GridContext", "record_member", "run_sweeps", "sweep_groups"]
