"""Run a grid cell by cell, resumably, recording a small result file per finished run.

Layout: checkpoints and histories live in ``runs_dir/<experiment>/<cell id>/`` (not committed);
the record of a finished run, ``records_dir/<experiment>/<cell id>.json`` (+ ``.per_user.npz``), is
small and is what reports are built from. Re-running a grid skips cells with a record, finishes
cells whose training ended without one, and resumes interrupted cells from their last checkpoint.
"""

from __future__ import annotations

import fnmatch
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssmrec.eval.evaluator import Evaluator
from ssmrec.eval.popularity import topk_profile
from ssmrec.experiments.claims import analyse
from ssmrec.experiments.grid import Cell, Grid, load_grid, with_setting
from ssmrec.experiments.grid_sweeps import GridContext, run_sweeps
from ssmrec.train.config_io import save_json
from ssmrec.train.run import LAST, PidLock, RunDir
from ssmrec.train.trainer import Trainer

RECORD_VERSION = 1


class Runner:
    """Executes cells of a grid.

    Args:
        records_dir: where result records go (default: ``results/records``).
        runs_dir: where run directories go (default: ``runs/experiments``).
        overrides: run-only settings applied to every cell, e.g. ``{"device": "cuda"}``.
        echo: progress messages (default: ``print``).
        claims: measure the study's four claims on each finished model and keep them in its
            record (:mod:`ssmrec.experiments.claims`; about half a minute per run) (default: True).
        extend: continue the cells whose record says their time budget stopped them (not their
            early-stopping criterion), without a budget (or with ``overrides["max_seconds"]`` as
            the new total): from their run directory if it is here, else from scratch; the new
            record (in this grid's folder) says how the longer run ended (default: False: a
            record is final).
    """

    def __init__(self, records_dir: str | Path = "results/records", runs_dir: str | Path = "runs/experiments",
                 overrides: dict[str, Any] | None = None, echo: Callable[[str], None] = print,
                 claims: bool = True, extend: bool = False):
        self.records_dir, self.runs_dir = Path(records_dir), Path(runs_dir)
        self.claims, self.extend = claims, extend
        self.overrides = overrides or {}
        self.echo = echo
        self._listed: set[str] = set()
        self._sweep = False  # run_grid(sweep=True): cells that can share a sweep train as one

    # ------------------------------------------------------------------ paths
    def record_path(self, cell: Cell) -> Path:
        return self.records_dir / cell.experiment / f"{cell.id}.json"

    def run_path(self, cell: Cell) -> Path:
        return self.runs_dir / cell.experiment / cell.id

    def find_run(self, cell: Cell) -> Path:
        """This cell's run directory, or an identical cell's already started in another grid."""
        own = self.run_path(cell)
        if own.exists():
            return own
        return next(iter(sorted(self.runs_dir.glob(f"*/{cell.id}"))), own)

    def record(self, cell: Cell) -> dict[str, Any] | None:
        """The record of this cell, or of an identical cell (same result settings) of any grid."""
        p = find_record(self.records_dir, cell)
        return json.loads(p.read_text()) if p is not None else None

    # ------------------------------------------------------------------ grid
    def run_grid(self, grid: Grid | str | Path, *, only: str | None = None, dry_run: bool = False,
                 sweep: bool = False) -> list[dict]:
        """Run (or with ``dry_run`` list) the grid's cells, ``only`` those matching a pattern; with
        ``sweep``, cells that differ only in reg, tau, layers, margin or neg_weight first train
        together as one sweep each (:mod:`ssmrec.experiments.grid_sweeps`)."""
        grid = grid if isinstance(grid, Grid) else load_grid(grid)
        self._sweep = sweep
        if sweep:
            run_sweeps(self._grid_context(), [c for c in grid.cells if not only or matches(c.id, only)], grid.search,
                       dry_run=dry_run)
        done = []
        for cell in grid.cells:
            if only and not matches(cell.id, only):
                continue
            if cell.search:
                best = self.tune(grid, cell, dry_run=dry_run)
                if best is None:
                    continue
                cell = with_setting(cell, **{grid.search.param: best})
            rec = self.run_cell(cell, dry_run=dry_run)
            if rec is not None:
                done.append(rec)
        return done

    def tune(self, grid: Grid, cell: Cell, *, dry_run: bool = False) -> float | None:
        """The study's search: coarse values, then a fine grid around the best; returns the best."""
        s = grid.search
        scores: dict[float, float] = {}

        def stage(values):
            if self._sweep and not dry_run:  # the values not run yet, as one sweep
                run_sweeps(self._grid_context(), [with_setting(cell, **{s.param: v, "seed": s.seed})
                                                  for v in values if v not in scores])
            for v in values:
                if v in scores:
                    continue
                rec = self.run_cell(with_setting(cell, **{s.param: v, "seed": s.seed}), dry_run=dry_run)
                if rec is not None:
                    scores[v] = selection_score(rec)

        stage(s.coarse)
        if not scores:
            if dry_run and s.param not in self._listed:
                self._listed.add(s.param)
                self.echo(f"[{cell.experiment}] then a fine {s.param} grid (step {s.step}) around the best "
                          f"coarse value, then the cells at the selected {s.param}")
            return None
        stage(s.fine(max(scores, key=scores.get)))
        best = max(scores, key=scores.get)
        base = with_setting(cell, **{s.param: best, "seed": s.seed})
        out = self.records_dir / cell.experiment / f"search-{base.id}.json"
        save_json_mkdir(out, {
            "param": s.param, "scores": {str(k): v for k, v in sorted(scores.items())}, "best": best,
            "metric": cell.cfg.metric, "selected_on": "validation" if cell.cfg.protocol == "holdout" else "test",
            "coarse": list(s.coarse), "step": s.step,
        })
        self.echo(f"[{cell.experiment}] {s.param} search: best {best} "
                  f"({', '.join(f'{k}: {v:.4f}' for k, v in sorted(scores.items()))})")
        return best

    def _grid_context(self) -> GridContext:
        """What the grid's sweeps need from this runner (:func:`run_sweeps`)."""
        def record(cell: Cell, trained: Any, result: dict, seconds: float) -> dict[str, Any]:
            rec = self._record(cell, trained, result, seconds)
            self.save_record(cell, rec)
            return rec

        return GridContext(runs_dir=self.runs_dir, overrides=self.overrides, echo=self.echo, find_run=self.find_run,
                           recorded=lambda cell: self.record(cell) is not None, record=record, listed=self._listed)

    # ------------------------------------------------------------------ one cell
    def run_cell(self, cell: Cell, *, dry_run: bool = False) -> dict[str, Any] | None:
        rec = self.record(cell)
        extending = rec is not None and self.extend and rec["metrics"].get("stop_reason") == "time_budget"
        if rec is not None and not extending:
            return rec
        path = self.find_run(cell)
        if dry_run:
            if cell.id not in self._listed:  # a search shared by several seeds is listed once
                self._listed.add(cell.id)
                state = "resume" if (path / LAST).exists() else "new"
                if extending:
                    m = rec["metrics"]
                    rising = " while still improving" if cut_short(rec) else ""
                    state = (f"extend: stopped by its budget at epoch {m['epochs_run']} (best {m['best_epoch']})"
                             f"{rising}; " + ("resume its run" if (path / LAST).exists()
                                               else "its run is not here: from scratch"))
                self.echo(f"[{cell.experiment}] would run {cell.id} ({state})")
            return None
        lock = PidLock(path / ".lock")
        if not lock.acquire():
            self.echo(f"[{cell.experiment}] {cell.id}: another process is running it; skipped")
            return None
        try:
            return self._run(cell, path, extending=extending)
        finally:
            lock.release()

    def _run(self, cell: Cell, path: Path, *, extending: bool = False) -> dict[str, Any]:
        run = RunDir(path)
        t0 = time.time()
        finished = run.metrics()
        # an extended cell runs to its early stop: no budget, unless --max-seconds sets a new total
        overrides = {"max_seconds": 0.0, **self.overrides} if extending else self.overrides
        if finished is not None and extending and finished["stop_reason"] == "time_budget" \
                and (path / LAST).exists():
            self.echo(f"[{cell.experiment}] {cell.id}: extending (stopped by its budget at epoch "
                      f"{finished['epochs_run']})")
            trainer = Trainer.resume(path, echo=self.echo, overrides=overrides)
            result = trainer.fit()
        elif finished is not None:
            self.echo(f"[{cell.experiment}] {cell.id}: trained earlier, recording")
            trainer = Trainer.resume(path, echo=self.echo, overrides=overrides)
            result = trainer.finish(finished["stop_reason"], finished.get("wall_seconds", 0.0))
        else:
            if run.exists():  # started before (a checkpoint, or killed before its first one)
                self.echo(f"[{cell.experiment}] {cell.id}: resuming")
                trainer = Trainer.resume(path, echo=self.echo, overrides=overrides)
            else:
                self.echo(f"[{cell.experiment}] {cell.id}: starting")
                cfg = cell.cfg.replace({**overrides, "out": str(path)})
                trainer = Trainer(cfg, echo=self.echo)
            result = trainer.fit()
        rec = self._record(cell, trainer, result, time.time() - t0)
        self.save_record(cell, rec)
        return rec

    def save_record(self, cell: Cell, rec: dict[str, Any]) -> None:
        save_json_mkdir(self.record_path(cell), rec)
        self.echo(f"[{cell.experiment}] {cell.id}: recorded "
                  f"{cell.cfg.metric} {rec['metrics']['test'][cell.cfg.metric]:.4f}")

    def _record(self, cell: Cell, trainer: Trainer, result: dict, seconds: float) -> dict[str, Any]:
        """Everything a report needs about a finished run, small enough to commit. ``trainer``:
        anything with a trainer's ``cfg``, ``data``, ``model`` (its best weights), ``device``,
        ``run`` and ``history``."""
        cfg, data = trainer.cfg, trainer.data
        model = trainer.model  # the best checkpoint after finish()
        model.eval()
        with torch.no_grad():
            u, i = model()
        exclude = data.exclusions("test")
        by_similarity = {}
        per_user = {}
        for sim in dict.fromkeys((cfg.scoring, *cell.similarities)):
            ev = Evaluator(data.test, exclude, ks=cfg.ks, similarity=sim, chunk_size=cfg.eval_chunk,
                           device=trainer.device, dislikes=data.dislikes.get("test"))
            by_similarity[sim] = ev.evaluate(u, i)
            if sim == cfg.scoring:
                for key in (cfg.metric, f"ndcg@{cfg.metric.split('@')[1]}"):
                    per_user[key] = ev.last.per_user(key).astype(np.float32)
                per_user["users"] = np.flatnonzero(ev.last.seen).astype(np.int32)
        profile = topk_profile(u, i, data.test, exclude, data.train, k=int(cfg.metric.split("@")[1]),
                               similarity=cfg.scoring, chunk_size=cfg.eval_chunk)
        claims = analyse(model, data, cfg, seed=cfg.seed) if self.claims else None
        npz = self.record_path(cell).with_suffix(".per_user.npz")
        npz.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(npz, **per_user)
        info = trainer.run.record() if trainer.run else {}
        return {
            "version": RECORD_VERSION,
            "experiment": cell.experiment,
            "cell": cell.id,
            "settings": cell.key,
            "metrics": result,
            "test_by_similarity": by_similarity,
            "profile": profile,
            "claims": claims,
            "history": trainer.history,
            "env": info.get("env", {}),
            "data": info.get("data", {}),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "record_seconds": seconds,
            # the budget the run was given, as its config had it (its last one, for a run continued with
            # --extend; a sweep member's is its sweep's): seconds of training plus evaluation (None: no
            # time limit) and epochs
            "budget": {"max_seconds": float(cfg.max_seconds or 0.0) or None, "epochs": int(cfg.epochs)},
            **({"sweep": info["sweep"]} if info.get("sweep") else {}),  # trained as a member of a sweep
        }


def find_record(records_dir: str | Path, cell: Cell) -> Path | None:
    own = Path(records_dir) / cell.experiment / f"{cell.id}.json"
    if own.exists():
        return own
    return next(iter(sorted(Path(records_dir).glob(f"*/{cell.id}.json"))), None)


def cut_short(rec: dict[str, Any]) -> bool:
    """A record of a run stopped by its time budget while its selection metric was still rising
    (its best epoch is its last evaluation)."""
    m = rec["metrics"]
    if m.get("stop_reason") != "time_budget":
        return False
    evaluated = [h["epoch"] for h in rec.get("history", []) if m["metric"] in h]
    return bool(evaluated) and m["best_epoch"] >= evaluated[-1]


def selection_score(rec: dict[str, Any]) -> float:
    m = rec["metrics"]
    part = m["valid"] if m.get("valid") else m["test"]
    return float(part[m["metric"]])


def save_json_mkdir(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_json(path, obj)


def matches(cell_id: str, only: str) -> bool:
    """``--only``: a glob pattern (``gowalla-mf-*-s0-*``) when it has ``*``, ``?`` or ``[``, else a
    substring of the cell id."""
    if any(c in only for c in "*?["):
        return fnmatch.fnmatchcase(cell_id, only)
    return only in cell_id
