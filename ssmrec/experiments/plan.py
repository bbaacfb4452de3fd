"""What is left to run: each grid's cells, how many converged, how many a budget stopped, how many
never ran, and what finishing them would cost on a CPU thread and on a GPU.

Estimates come from our own records only, never from guesses: the epochs a cell needs are the
median epochs run by the converged (early-stopped) records of the same dataset, model and loss
(else the same dataset and loss, any model); the cost of an epoch (training plus evaluation) is
the median over the records of the same dataset, model and loss on one CPU thread, and on a GPU.
A cell with nothing to estimate from is counted apart, never priced at zero. A search cell
(``search = "tau"``) counts as the runs the runner makes of it: its coarse values and the
``2 * span`` fine ones at the search seed (once for all the cell's seeds), then one run per other
seed at the selected value.

A cell's records are found by its id hash, else by its settings; a record of the cell's training
settings made under an earlier evaluation setting (figure1's CCL, recorded before CCL was scored by
cosine) counts the cell as run, and the plan names it with the difference.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ssmrec.experiments.grid import Cell, load_grid, with_setting
from ssmrec.experiments.records import BUDGET_STOPS, CellRecords, Record, _score, rank


def _kind(r: Record | Cell) -> tuple[str, str, str]:
    s = r.cfg.to_dict() if isinstance(r, Cell) else r.s
    return Path(str(s.get("dataset"))).name.split(".")[0], str(s.get("model")), str(s.get("loss"))


def _seconds_per_epoch(r: Record) -> float | None:
    """Training plus evaluation seconds per epoch; None when the record lacks them (never 0)."""
    ran = r.m.get("epochs_run") or 0
    spent = float(r.m.get("train_seconds") or 0.0) + float(r.m.get("eval_seconds") or 0.0)
    return spent / ran if ran and spent > 0 else None


def _on_gpu(r: Record) -> bool:
    return bool(r.data.get("env", {}).get("cuda"))


def _one_cpu_thread(r: Record) -> bool:
    env = r.data.get("env", {})
    return not env.get("cuda") and int(env.get("threads") or 0) == 1


@dataclass
class Estimator:
    """Epochs to converge and seconds per epoch, from the records."""

    records: list[Record]

    def epochs(self, cell: Cell) -> tuple[int | None, bool]:
        """Median epochs of the converged runs like ``cell``, and whether they were of its own
        model (else of the same loss on another model: a weaker estimate)."""
        ds, model, loss = _kind(cell)
        done = [r for r in self.records if r.m.get("stop_reason") == "early_stopped"]
        own = [r.m["epochs_run"] for r in done if _kind(r) == (ds, model, loss)]
        near = [r.m["epochs_run"] for r in done if _kind(r)[0] == ds and _kind(r)[2] == loss]
        pick = own or near
        return (int(statistics.median(pick)) if pick else None), bool(own)

    def seconds(self, cell: Cell, where: str) -> float | None:
        test = _on_gpu if where == "gpu" else _one_cpu_thread
        values = [v for r in self.records if _kind(r) == _kind(cell) and test(r)
                  and (v := _seconds_per_epoch(r)) is not None]
        return statistics.median(values) if values else None


@dataclass
class GridPlan:
    name: str
    cells: int = 0
    converged: int = 0
    budget_stopped: int = 0
    not_run: int = 0
    epochs_left: int = 0
    epochs_borrowed: int = 0  # of epochs_left: estimated from another model's converged runs
    # per run left, in grid order: (count, CPU seconds or None, GPU seconds or None); the totals of
    # several grids count a run that two grids share once, as the runner runs it once
    costs: dict[str, tuple[int, float | None, float | None]] = field(default_factory=dict)
    # cells counted by a record of their training settings made under other evaluation settings
    matched: list[str] = field(default_factory=list)

    @property
    def to_go(self) -> int:
        return self.budget_stopped + self.not_run

    @property
    def left(self) -> list[str]:
        return list(self.costs)

    @property
    def cpu_seconds(self) -> float:
        return sum(c for _, c, _ in self.costs.values() if c is not None)

    @property
    def gpu_seconds(self) -> float:
        return sum(g for _, _, g in self.costs.values() if g is not None)

    @property
    def unpriced_cpu(self) -> int:
        """Runs left with no estimate of their epochs or CPU cost."""
        return sum(n for n, c, _ in self.costs.values() if c is None)

    @property
    def unpriced_gpu(self) -> int:
        return sum(n for n, _, g in self.costs.values() if g is None)


def _runs_of(cell: Cell, search, by_cell: CellRecords, seen: set[str]) -> list[tuple[Cell, int, bool]]:
    """The runs a cell stands for, with how many of each (those already counted for another cell
    of the grid, in ``seen``, left out). A search cell (the runner's ``tune``) is: its coarse
    values at the search seed, the ``2 * span`` fine values around the best (those not recorded
    yet counted as one entry of that many), then the cell itself at the best value (the search
    seed's is one of the search's own runs). Each run is ``(cell, count, known)``: a run not
    ``known`` is one whose value waits on the search (never recorded yet)."""
    if not cell.search:
        key = f"{cell.id}x1True"
        if key in seen:
            return []
        seen.add(key)
        return [(cell, 1, True)]
    at = search.seed
    coarse = [with_setting(cell, **{search.param: v, "seed": at}) for v in search.coarse]
    scores = {}
    for c in coarse:
        recs = by_cell.find(c.key, c.digest)[0]
        if recs:
            scores[getattr(c.cfg, search.param)] = max(_score(r) for r in recs)
    runs = [(c, 1, True) for c in coarse]
    if len(scores) == len(coarse):  # the fine values are known
        fine = [v for v in search.fine(max(scores, key=scores.get)) if v not in scores]
        runs += [(with_setting(cell, **{search.param: v, "seed": at}), 1, True) for v in fine]
        for c, _, _ in runs[len(coarse):]:
            if recs := by_cell.find(c.key, c.digest)[0]:
                scores[getattr(c.cfg, search.param)] = max(_score(r) for r in recs)
        if cell.cfg.seed != at:
            runs.append((with_setting(cell, **{search.param: max(scores, key=scores.get)}), 1, True))
    else:
        runs.append((coarse[0], 2 * search.span, False))  # the fine values, once for all seeds
        if cell.cfg.seed != at:
            runs.append((with_setting(cell, **{search.param: search.coarse[0]}), 1, False))
    out = []
    for c, n, known in runs:
        key = f"{c.id}x{n}{known}"
        if key not in seen:
            seen.add(key)
            out.append((c, n, known))
    return out


def plan_grid(path: str | Path, records: list[Record]) -> GridPlan:
    grid = load_grid(path)
    by_cell = CellRecords(records)
    est = Estimator(records)
    out = GridPlan(grid.name)
    seen: set[str] = set()
    for cell in grid.cells:
        for run, count, known in _runs_of(cell, grid.search, by_cell, seen):
            out.cells += count
            mine, differ = by_cell.find(run.key, run.digest, near=True) if known else ([], {})
            longest = max(mine, key=rank, default=None)  # the record every section shows
            if longest is not None and differ:
                out.matched.append(
                    f"`{run.id}` counted as run by `{longest.name}`, of its training settings but recorded with "
                    + ", ".join(f"{k} {a} (the cell's now {b})" for k, (a, b) in differ.items()))
            if longest is not None and longest.m.get("stop_reason") not in BUDGET_STOPS:
                out.converged += count
                continue
            need, own = est.epochs(run)
            window = run.cfg.patience * run.cfg.eval_every
            if longest is None:
                out.not_run += count
                more = need
            else:
                out.budget_stopped += count
                ran, best = longest.m["epochs_run"], longest.m["best_epoch"]
                more = None if need is None else max(need - ran, best + window - ran, 1)
            name = run.id if known else f"{count} run(s) of {cell.id}'s {grid.search.param} search"
            priced = {"cpu": None, "gpu": None}
            if more is not None:
                out.epochs_left += more * count
                if not own:
                    out.epochs_borrowed += more * count
                for where in priced:
                    per = est.seconds(run, where)
                    priced[where] = None if per is None else more * per * count
            out.costs[name] = (count, priced["cpu"], priced["gpu"])
    return out


def plan(grid_paths: Iterable[str | Path], records: list[Record]) -> list[GridPlan]:
    return [plan_grid(p, records) for p in grid_paths]


def plan_lines(plans: list[GridPlan], cores: int = 2) -> list[str]:
    """Markdown: one row per grid, then the totals in words."""
    if not plans:
        return []
    lines = ["| grid | cells | converged | budget-stopped | not run | epochs to go (est.) | CPU hours, 1 thread "
             "(est.) | GPU hours (est.) | without an estimate (CPU / GPU) |", "|---|---|---|---|---|---|---|---|---|"]
    for p in plans:
        borrowed = f" ({p.epochs_borrowed} from another model's runs)" if p.epochs_borrowed else ""
        lines.append(f"| {p.name} | {p.cells} | {p.converged} | {p.budget_stopped} | {p.not_run} | "
                     f"{p.epochs_left}{borrowed} | {p.cpu_seconds / 3600:.1f} | {p.gpu_seconds / 3600:.1f} | "
                     f"{p.unpriced_cpu} / {p.unpriced_gpu} |")
    runs: dict[str, tuple[int, float | None, float | None]] = {}
    for p in plans:
        for name, cost in p.costs.items():
            runs.setdefault(name, cost)  # a run two grids share: once
    cpu = sum(c for _, c, _ in runs.values() if c is not None) / 3600
    gpu = sum(g for _, _, g in runs.values() if g is not None) / 3600
    left = sum(n for n, _, _ in runs.values())
    unpriced = sum(n for n, c, _ in runs.values() if c is None)
    shared = sum(p.to_go for p in plans) - left
    matched = list(dict.fromkeys(m for p in plans for m in p.matched))  # a cell two grids share: once
    if matched:
        lines += ["", "Cells found by their settings, not their id (their record predates a change of evaluation "
                      "default, which changed the id):", "", *[f"- {m}." for m in matched]]
    lines += ["", f"In all {left} runs are left{f' ({shared} shared by two grids, counted once)' if shared else ''}, "
              f"{unpriced} of them with no record to estimate their CPU cost from. "
              f"The priced ones need ~{cpu:.0f} CPU-thread hours (~{cpu / cores / 24:.1f} days on this "
              f"{cores}-core machine running {cores} cells at once) or ~{gpu:.1f} GPU hours one cell at a time on "
              "the GPUs our records came from (several cells share one GPU: less). Epochs estimated from another "
              "model's runs are likely too few where that model converges faster (BPR on MF converges in ~200 "
              "epochs; LightGCN's reference BPR runs train for ~1000)."]
    return lines


__all__ = ["Estimator", "GridPlan", "plan", "plan_grid", "plan_lines"]
