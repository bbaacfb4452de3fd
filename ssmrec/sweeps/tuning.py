"""Tuning studies: a grid of settings run as Optuna trials, K at a time in one vectorised sweep,
with successive-halving pruning over epochs.

The study lives in an Optuna storage (default ``sqlite:///OUT/study.db``, one per tuning folder;
any RDB URL lets several machines work on one study). Every combination of the grid is enqueued
as a trial; each round asks up to ``members`` waiting trials and trains them as the members of
one :class:`~ssmrec.sweeps.sweep.Sweep` (same batch stream: the comparison is between
settings, not sampling noise). After every evaluation each member reports its selection metric
to its trial; the pruner (``sha``: successive halving, rungs at ``min_epochs * 3^r`` epochs where
the best third of the members still training go on, decided once every member has reported the
rung's evaluation; ``none``) stops the members that fall behind, which frees their share of the
sweep's compute. Survivors run to their early stop. Selection is on validation under the
``holdout`` protocol; under ``paper`` the values are test-selected and said to be.

The study's temperature search (coarse {0.1, 0.2, 0.5, 1.0}, then steps of 0.02 around the best)
is ``tau_search=True``: a coarse round, then the fine values enqueued around the best.

A study survives ``kill -9`` and SIGTERM: finished and pruned trials stay in the storage, and
re-running the same command continues the study. Trials that were training resume with their sweep
from its last checkpoint (:meth:`Sweep.resume`: the same batches, so they end as if never
stopped); trials whose sweep had not started (no ``sweep.json``) are marked failed and enqueued
again. ``OUT/tune.json`` lists every trial (values, state, epochs,
run directory, test metrics) and the selected settings. It is written when the study starts
(before its first round), so a folder is known as a study's however early the study was stopped;
a study folder is continued only with the same settings (:func:`check_study_dir`).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ssmrec.errors import ConfigError
from ssmrec.sweeps.members import DIFFERING, grid_texts, loss_parameters
from ssmrec.sweeps.search import Search
from ssmrec.sweeps.sweep import LOCK as SWEEP_LOCK
from ssmrec.sweeps.sweep import SUMMARY as SWEEP_SUMMARY
from ssmrec.sweeps.sweep import Sweep
from ssmrec.train.config import TrainConfig
from ssmrec.train.config_io import parse_text, save_json
from ssmrec.train.run import PidLock

SUMMARY = "tune.json"
PRUNERS = ("sha", "none")
RUN_ONLY = ("device", "threads", "progress", "checkpoint_every", "max_seconds", "out", "data_dir")
"""Base settings a study may be continued with other values of: they do not change what is trained
(those a sweep may resume with, see :meth:`Sweep.resume`, and where the data is found: its
fingerprint is checked when a sweep resumes)."""


def parse_grid(specs: list[str], loss: str | None = None) -> dict[str, list[Any]]:
    """``["reg=1e-4,1e-2", "layers=1,2"]`` -> ``{"reg": [1e-4, 1e-2], "layers": [1, 2]}``; with
    ``loss``, that loss's own parameters too (``tau2=0.8,1.0`` for ``bsl``)."""
    types = {name: str(f.type) for name, f in TrainConfig.__dataclass_fields__.items()}
    grid: dict[str, list[Any]] = {}
    for name, texts in grid_texts(specs).items():
        if name in DIFFERING:
            grid[name] = [parse_text(types[name], v) for v in texts]
            continue
        params = loss_parameters(loss) if loss else {}
        if name not in params:
            extra = f", or the parameters of loss {loss}: {', '.join(params)}" if params else ""
            raise ConfigError(f"--grid {name}: only settings that sweep members may differ in can be tuned in one "
                              f"study ({', '.join(DIFFERING)}{extra}); tune others with one study per value")
        default = params[name]
        kind = ("bool" if isinstance(default, bool) else type(default).__name__) if default is not None else "str"
        kind = kind if kind in ("bool", "int", "float") else "str"
        grid[name] = [parse_text(kind, v) for v in texts]
    return grid


def _differences(was: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``lr 0.01 (the study's) vs 0.1`` for each base setting that differs, run-only ones aside."""
    return [f"{k} {was.get(k)!r} (the study's) vs {now.get(k)!r}" for k in sorted(set(was) | set(now))
            if k not in RUN_ONLY and was.get(k) != now.get(k)]


def check_study_dir(out: str | Path, base: TrainConfig) -> None:
    """Refuse, before any work, a folder that cannot hold this study: a file, a folder that holds
    something other than a tuning study, or a study of other base settings. Accepted: a new or
    empty folder, a study's folder (``tune.json``), and a study's folder stopped before it wrote
    one (an older ssmrec wrote it after the first round): only ``study.db`` and ``sweep-*``
    folders whose sweeps have this study's settings."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out: {out} is a file, not a tuning study's folder")
    if not out.is_dir():
        return
    # what the study trains on; run-only settings aside, also what its sweeps record as their base
    now = json.loads(json.dumps(base.replace({"out": None}).to_dict(), default=str))
    summary = out / SUMMARY
    if summary.exists():
        try:
            was = json.loads(summary.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"out: {summary} is not a tuning study's summary ({e}); choose another --out") from None
        if not isinstance(was, dict) or not isinstance(was.get("base"), dict) or "trials" not in was:
            raise ConfigError(f"out: {out} holds something other than a tuning study ({summary} is not one)")
        sweeps = []
    else:
        others = [p.name for p in out.iterdir() if not (
            p.name.startswith("study.db") or p.name == SUMMARY + ".tmp"
            or (p.is_dir() and p.name.startswith("sweep-")))]
        if others:
            shown = ", ".join(sorted(others)[:5]) + (", ..." if len(others) > 5 else "")
            raise ConfigError(f"out: {out} holds something other than a tuning study ({shown}); "
                              "choose another --out")
        sweeps = sorted(p / SWEEP_SUMMARY for p in out.glob("sweep-*") if (p / SWEEP_SUMMARY).is_file())
        was = None
    for where in sweeps:  # a study stopped in its first round, before it wrote tune.json
        try:
            recorded = json.loads(where.read_text())["base"]
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
            raise ConfigError(f"out: {out} holds something other than a tuning study ({where} is not a "
                              "sweep's summary)") from None
        if (diff := _differences(recorded, now)):
            raise ConfigError(f"out: {out} holds a study of other settings ({'; '.join(diff)}); continue it "
                              "with its own settings, or choose another --out")
    if was is not None and (diff := _differences(was["base"], now)):
        raise ConfigError(f"out: {out} holds a study of other settings ({'; '.join(diff)}); continue it with "
                          "its own settings, or choose another --out")


def combinations(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


class Study:
    """A tuning study over a grid of sweepable settings (see the module docstring).

    Args:
        base: the shared settings (dataset, model, loss, epochs, patience, protocol...).
        grid: values per setting; every combination is a trial.
        out: the study's folder (sweeps, ``study.db``, ``tune.json``).
        storage: an Optuna storage URL (default: ``sqlite:///OUT/study.db``).
        name: the study's name in the storage (default: the folder's name).
        members: trials trained together in one sweep (default: 8).
        pruner: ``sha`` or ``none`` (default: ``sha``).
        min_epochs: the first rung of successive halving, in epochs (default: 5).
        tau_search: run the study's coarse-then-fine temperature search (default: False).
        dataset: the loaded data (default: loaded once from ``base``).
        echo: where progress lines go (default: print).
    """

    def __init__(self, base: TrainConfig, grid: dict[str, list[Any]], out: str | Path, *,
                 storage: str | None = None, name: str | None = None, members: int = 8, pruner: str = "sha",
                 min_epochs: int = 5, tau_search: bool = False, dataset=None,
                 echo: Callable[[str], None] | None = print):
        import optuna

        if pruner not in PRUNERS:
            raise ConfigError(f"pruner must be one of {', '.join(PRUNERS)}, got {pruner!r}")
        if members < 1:
            raise ConfigError(f"members must be positive, got {members}")
        if tau_search:
            grid = {**grid, "tau": list(Search().coarse)}
        if not grid:
            raise ConfigError("nothing to tune: give --grid NAME=V1,V2,... or --tau-search")
        check_study_dir(out, base)
        self.base, self.grid, self.out = base, grid, Path(out)
        self.members, self.tau_search, self.echo = members, tau_search, echo or (lambda s: None)
        self.out.mkdir(parents=True, exist_ok=True)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        self.storage = storage or f"sqlite:///{(self.out / 'study.db').resolve()}"
        self.pruner_name, self.min_epochs = pruner, min_epochs
        pr = optuna.pruners.NopPruner()  # the rungs are decided per sweep (halve), not trial by trial
        self.study = optuna.create_study(study_name=name or self.out.name, storage=self.storage,
                                         direction="maximize", pruner=pr, load_if_exists=True)
        self.data = dataset
        self.which = "validation" if base.protocol == "holdout" else "test (test-selected: the paper protocol)"
        self.write_summary()  # from now on the folder is known as this study's, however early it stops

    # ------------------------------------------------------------------ trials
    def _key(self, params: dict[str, Any]) -> str:
        return json.dumps({k: params[k] for k in sorted(params)}, sort_keys=True)

    def _recover(self) -> list[tuple[Path, list[Any]]]:
        """Trials left running by a stopped process. Those of a sweep that finished are told its
        results; those of a sweep that can go on are returned with its folder, in member order,
        to be resumed; those of a sweep another live process is training are left to it; the
        others are failed and enqueued again."""
        from optuna.trial import TrialState

        by_sweep: dict[str, list[Any]] = {}
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            by_sweep.setdefault(t.user_attrs.get("sweep") or "", []).append(t)
        resumable = []
        for where, trials in by_sweep.items():
            trials.sort(key=lambda t: t.user_attrs.get("member", -1))
            numbers = ", ".join(str(t.number) for t in trials)
            if where and (pid := PidLock(Path(where) / SWEEP_LOCK).holder()) is not None:
                self.echo(f"trials {numbers} are being trained by process {pid} in {where}: left to it")
                continue
            summary = Path(where) / SWEEP_SUMMARY if where else None
            if summary is not None and summary.is_file():
                data = json.loads(summary.read_text())
                members = data.get("members", [])
                if len(members) == len(trials) and all(self._key(m["overrides"]) == self._key(t.params)
                                                       for m, t in zip(members, trials)):
                    if data.get("status") == "finished":  # stopped after the sweep, before telling its trials
                        self.echo(f"trials {numbers} finished in {where}: their results are read from it")
                        for t, m in zip(trials, members):
                            self._tell(self.optuna.trial.Trial(self.study, t._trial_id), m)
                    else:
                        resumable.append((Path(where), trials))
                    continue
            for t in trials:
                self.study.tell(t.number, state=TrialState.FAIL)
                self.study.enqueue_trial(t.params, skip_if_exists=False)
                self.echo(f"trial {t.number} ({t.params}) was interrupted before its sweep could be resumed: "
                          "enqueued again")
        return resumable

    def enqueue(self, combos: list[dict[str, Any]]) -> int:
        from optuna.trial import TrialState

        seen = {self._key(t.params) for t in self.study.get_trials(deepcopy=False)
                if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.WAITING, TrialState.RUNNING)}
        waiting = [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))]
        seen |= {self._key(t.system_attrs.get("fixed_params", {})) for t in waiting}
        added = 0
        for c in combos:
            if self._key(c) not in seen:
                self.study.enqueue_trial(c)
                seen.add(self._key(c))
                added += 1
        return added

    def _waiting(self) -> int:
        from optuna.trial import TrialState

        return len(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))

    def _ask(self) -> list[Any]:
        trials = []
        while len(trials) < self.members and self._waiting():
            t = self.study.ask()  # an enqueued trial: suggest returns its fixed value
            for name, values in self.grid.items():
                # numeric ranges (not categories): a later round may add values (the fine temperatures)
                if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                    t.suggest_int(name, min(values), max(values))
                elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                    t.suggest_float(name, min(values), max(values))
                else:
                    t.suggest_categorical(name, values)
            trials.append(t)
        return trials

    # ------------------------------------------------------------------ rounds
    def run(self) -> dict[str, Any]:
        """Run every waiting trial (and the fine temperature round); returns the summary."""
        if self.data is None:
            from ssmrec.data.dataset import load_dataset

            self.data = load_dataset(self.base.data_config(), self.base.protocol)
        resumable = self._recover()
        added = self.enqueue(combinations(self.grid))
        self.echo(f"study {self.study.study_name} in {self.storage}: {added} new trial(s) enqueued, "
                  f"{self._waiting()} waiting; selection on {self.which}")
        for where, trials in resumable:
            self.echo(f"resuming the sweep of trials {', '.join(str(t.number) for t in trials)} in {where}")
            live = [self.optuna.trial.Trial(self.study, t._trial_id) for t in trials]
            pruned_at = [t.user_attrs.get("pruned_at") for t in trials]
            reported = [set(t.intermediate_values) for t in trials]
            self._train(Sweep.resume(where, self.data, echo=self.echo), live, pruned_at, reported)
        self._rounds()
        if self.tau_search:
            best_tau = self.best_params().get("tau")
            if best_tau is not None:
                fine = Search().fine(best_tau)
                self.grid["tau"] = sorted({*self.grid["tau"], *fine})
                others = {k: v for k, v in self.grid.items() if k != "tau"}
                added = self.enqueue([{**c, "tau": t} for c in combinations(others) for t in fine])
                self.echo(f"fine temperature round around {best_tau}: {added} new trial(s)")
                self._rounds()
        return self.write_summary()

    def _rounds(self) -> None:
        n = 0
        while self._waiting():
            trials = self._ask()
            n += 1
            run_dir = self.out / f"sweep-{trials[0].number:04d}"
            members = [dict(t.params) for t in trials]
            self.echo(f"round {n}: trials {', '.join(str(t.number) for t in trials)} as one sweep of "
                      f"{len(trials)} members in {run_dir}")
            for j, t in enumerate(trials):  # where a stopped study finds them again
                t.set_user_attr("sweep", str(run_dir))
                t.set_user_attr("member", j)
            self._train(Sweep(self.base, members, self.data, run_dir, echo=self.echo), trials)

    def _train(self, sweep: Sweep, trials: list[Any], pruned_at: list[int | None] | None = None,
               reported: list[set[int]] | None = None) -> None:
        """Train a sweep whose member ``j`` is ``trials[j]``, reporting each evaluation to its
        trial (the pruner may stop it), then tell each trial its result. For a resumed sweep:
        ``pruned_at``, the epoch at which each trial was pruned after the sweep's last checkpoint
        (the pruner would not decide it again: its rung is done in the storage), and ``reported``,
        the epochs each trial has reported already (the replay repeats them)."""
        pruned_at = list(pruned_at or [None] * len(trials))
        reported = list(reported or [set() for _ in trials])
        values: dict[int, float] = {}  # this evaluation's values of the members still training

        def report(member, epoch: int, metrics: dict[str, float]) -> bool:
            j = member.index
            if pruned_at[j] is None or epoch < pruned_at[j]:
                if epoch not in reported[j]:
                    trials[j].report(metrics[self.base.metric], epoch)
                values[j] = metrics[self.base.metric]
            if j == sweep.live[-1]:  # every member still training has its value: the rung's decision
                for k in self.halve(epoch, sweep.cfg.eval_every, values, pruned_at):
                    pruned_at[k] = epoch
                    trials[k].set_user_attr("pruned_at", epoch)  # in the storage before the next checkpoint
                    if k != j:  # members before this one in the epoch stop with it
                        sweep.members[k].stop_reason = "pruned"
                values.clear()
            return pruned_at[j] is not None and epoch >= pruned_at[j]

        sweep.on_eval = report
        sweep.resume_hint = "run the same ssmrec tune command again (its sweep resumes from the checkpoint)"
        sweep.fit()
        for trial, member in zip(trials, sweep.summary()["members"]):
            self._tell(trial, member)
        self.write_summary()

    def halve(self, epoch: int, every: int, values: dict[int, float], pruned_at: list[int | None]) -> list[int]:
        """The members to prune at this evaluation: at the first evaluation at or after a rung
        (``min_epochs * 3^r`` epochs), all but the best third (at least one) of the members still
        training, ties kept in member order. Synchronous successive halving: the members of a
        sweep reach each rung together, so they are ranked together (Optuna's asynchronous
        pruner, asked member by member, promotes whoever reports first). A rung decided before
        (a resumed sweep replaying it) is not decided again."""
        if self.pruner_name == "none" or len(values) < 2 or epoch in pruned_at:
            return []
        rung = self.min_epochs
        while rung <= epoch - every:
            rung *= 3
        if rung > epoch:
            return []
        order = sorted(values, key=lambda k: (-values[k], k))
        return order[max(1, math.ceil(len(order) / 3)):]

    def _tell(self, trial: Any, member: dict[str, Any]) -> None:
        """Tell a trial the result of its sweep member (an entry of ``sweep.json``)."""
        from optuna.trial import TrialState

        for key in ("run_dir", "epochs_run", "best_epoch", "stop_reason", "test"):
            trial.set_user_attr(key, member.get(key))
        if member["stop_reason"] == "pruned":
            self.study.tell(trial, state=TrialState.PRUNED)
        elif member["stop_reason"] == "diverged" or member.get("best_value") is None:
            self.study.tell(trial, state=TrialState.FAIL)
        else:
            self.study.tell(trial, member["best_value"])

    # ------------------------------------------------------------------ results
    def best_params(self) -> dict[str, Any]:
        try:
            return dict(self.study.best_trial.params)
        except ValueError:  # no completed trial
            return {}

    def summary(self) -> dict[str, Any]:
        trials = []
        for t in self.study.get_trials(deepcopy=False):
            trials.append({"number": t.number, "params": t.params, "state": t.state.name, "value": t.value,
                           "epochs_run": t.user_attrs.get("epochs_run"), "best_epoch": t.user_attrs.get("best_epoch"),
                           "stop_reason": t.user_attrs.get("stop_reason"), "run_dir": t.user_attrs.get("run_dir"),
                           "test": t.user_attrs.get("test"),
                           "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())}})
        done = [t for t in trials if t["state"] == "COMPLETE"]
        best = max(done, key=lambda t: t["value"]) if done else None
        epochs = [t["epochs_run"] or 0 for t in trials if t["state"] in ("COMPLETE", "PRUNED")]
        return {"study": self.study.study_name, "storage": self.storage, "metric": self.base.metric,
                "selected_on": self.which, "pruner": self.pruner_name, "min_epochs": self.min_epochs,
                "grid": self.grid, "base": self.base.to_dict(), "trials": trials,
                "best": best, "epochs_trained": sum(epochs),
                "written": time.strftime("%Y-%m-%dT%H:%M:%S")}

    def write_summary(self) -> dict[str, Any]:
        s = self.summary()
        save_json(self.out / SUMMARY, s)
        return s

    def table(self) -> list[str]:
        s = self.summary()
        names = list(self.grid)
        which = "valid" if self.base.protocol == "holdout" else "test-selected"
        lines = [f"{'trial':>5}  " + "  ".join(f"{n:>10}" for n in names) + f"  {'state':>9}  {'epochs':>6}  "
                 f"{self.base.metric + ' (' + which + ')':>24}"]
        for t in s["trials"]:
            vals = "  ".join(f"{t['params'].get(n, '-')!s:>10}" for n in names)
            value = f"{t['value']:.4f}" if t["value"] is not None else "-"
            lines.append(f"{t['number']:>5}  {vals}  {t['state']:>9}  {t['epochs_run'] or 0:>6}  {value:>24}")
        if s["best"]:
            lines.append(f"selected: {s['best']['params']} ({self.base.metric} {s['best']['value']:.4f} on "
                         f"{self.which})")
        return lines
