"""The race: every arm tuned on validation within its share of the budget, its finalist trained
over several seeds and tested once, measured for retrieval and for ranking, then the leaderboard.

A race lives in one folder::

    OUT/race.json                  settings, budget spent, each arm's tuning result and finals
    OUT/tune/<arm>/                the arm's tuning study (:class:`~ssmrec.sweeps.tuning.Study`)
    OUT/final/<arm>-s<seed>/       a finalist's run (checkpoints, metrics, export)
    OUT/final/<arm>-s<seed>/race.per_user.npz   its per-user test values
    OUT/per_user/<arm>-s<seed>.npz  the same, copied beside the report (the record to keep)
    OUT/REPORT.md, leaderboard.csv, leaderboard.json, race.png   the answer (:mod:`ssmrec.race.board`)

The budget is wall-clock seconds for the whole race. A share (``tune_share``, default 60%) goes
to tuning, split over the arms; the rest to the finals, split over arms x seeds; a small reserve
to measuring and writing. Each job gets the unspent part of its phase divided by the jobs left, so
an arm that stops early leaves its time to the next. A job enforces its share itself (the
trainer's ``max_seconds``: it stops after the epoch that crosses it), so a race can overrun by
about one epoch per job.

Running the same command again continues the race: finished jobs are read from their folders,
an interrupted tuning study or final run resumes from its last checkpoint (kill -9 included), and
the time already spent is counted against the budget (which may be raised to go on). A folder
holding a race of other settings (arms, grids, seeds, data, model, shared settings) is refused.

Selection and test never use the same data: the race trains under the ``holdout`` protocol
(tuning and early stopping on a validation split carved from training), and looks at test only
once per finalist, after its training ended.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ssmrec.errors import ConfigError
from ssmrec.race.arms import Arm, shown_seconds
from ssmrec.train.config import TrainConfig
from ssmrec.train.config_io import save_json

STATE = "race.json"
VERSION = 1
RESERVE = 0.05
"""Share of the budget kept for measuring the finalists and writing the report."""
RUN_ONLY = ("device", "threads", "progress", "checkpoint_every", "max_seconds", "out", "data_dir")
"""Base settings a race may be continued with other values of (they do not change what is trained)."""


def race_base(data: str, *, model: str = "mf", k: int = 20, settings: dict[str, Any] | None = None) -> TrainConfig:
    """The settings every run of a race shares: the holdout protocol, selection on Recall@``k``,
    enough epochs for the budget to decide (early stopping on validation ends most runs)."""
    from ssmrec.race.arms import RACE_OWNS

    for name in set(settings or {}) & set(RACE_OWNS):
        raise ConfigError(f"{name}: a race sets it itself; use {RACE_OWNS[name]}")
    values = {"epochs": 300, "patience": 10, "eval_every": 1, **(settings or {}),
              "dataset": data, "model": model, "protocol": "holdout", "metric": f"recall@{k}", "ks": (k,)}
    return TrainConfig().replace(values, source="compare")


class Race:
    """A budgeted race of losses on one dataset and model (see the module docstring).

    Args:
        base: the shared settings (:func:`race_base`); its loss is set per arm.
        arms: the contestants (:func:`~ssmrec.race.arms.make_arms`).
        out: the race's folder.
        budget: wall-clock seconds for the whole race.
        seeds: finalist runs per arm (default: 3).
        tune_share: share of the budget spent tuning (default: 0.6).
        members: tuning trials trained together in one sweep (default: 16).
        min_epochs: the first rung of the tuning's successive halving (default: 3).
        sampled: candidates per user of the sampled ranking setting (default: 100).
        retrieved: candidates per user of the retrieved ranking setting (default: 200).
        dataset: the loaded data (default: loaded from ``base``).
        echo: where progress lines go (default: print).
    """

    def __init__(self, base: TrainConfig, arms: list[Arm], out: str | Path, *, budget: float, seeds: int = 3,
                 tune_share: float = 0.6, members: int = 16, min_epochs: int = 3, sampled: int = 100,
                 retrieved: int = 200, dataset=None, echo: Callable[[str], None] | None = print):
        if base.protocol != "holdout":
            raise ConfigError("protocol: a race selects on validation and tests once (holdout); got "
                              f"{base.protocol!r}")
        if seeds < 1:
            raise ConfigError(f"--seeds: must be at least 1, got {seeds}")
        if not 0 < tune_share < 1:
            raise ConfigError(f"tune_share: must be in (0, 1), got {tune_share}")
        if budget <= 0:
            raise ConfigError(f"--budget: must be positive, got {budget}")
        self.base, self.arms, self.out = base, arms, Path(out)
        self.budget, self.seeds, self.tune_share = float(budget), int(seeds), float(tune_share)
        self.members, self.min_epochs = members, min_epochs
        self.sampled, self.retrieved = sampled, retrieved
        self.data = dataset
        self.echo = echo or (lambda s: None)
        self.state = self._load_state()
        self._t0 = time.monotonic()
        self._spent0 = float(self.state.get("spent", 0.0))

    # ------------------------------------------------------------------ state
    def settings(self) -> dict[str, Any]:
        """What makes this race this race (compared when a folder is continued)."""
        base = {k: v for k, v in self.base.to_dict().items() if k not in RUN_ONLY}
        return json.loads(json.dumps({
            "base": base, "arms": [{"name": a.name, "loss": a.loss, "fixed": a.fixed, "grid": a.grid}
                                   for a in self.arms],
            "seeds": self.seeds, "sampled": self.sampled, "retrieved": self.retrieved}, default=str))

    def _load_state(self) -> dict[str, Any]:
        path = self.out / STATE
        now = self.settings()
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"--out: {self.out} is a file, not a race's folder")
        if not path.exists():
            if self.out.is_dir() and any(self.out.iterdir()):
                raise ConfigError(f"--out: {self.out} holds something other than a race (no {STATE}); "
                                  "choose another --out")
            return {"version": VERSION, "settings": now, "budget": self.budget, "spent": 0.0, "arms": {},
                    "status": "new"}
        try:
            state = json.loads(path.read_text())
            was = state["settings"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"--out: {path} is not a race's state ({e}); choose another --out") from None
        if was != now:
            diff = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
            raise ConfigError(f"--out: {self.out} holds a race of other settings (they differ in "
                              f"{', '.join(diff)}); continue it with its own command, or choose another --out")
        state["budget"] = self.budget  # a race may be continued with more (or less) time
        return state

    def spent(self) -> float:
        """Seconds this race has used, earlier invocations included."""
        return self._spent0 + time.monotonic() - self._t0

    def save(self) -> None:
        self.state["spent"] = self.spent()
        self.out.mkdir(parents=True, exist_ok=True)
        save_json(self.out / STATE, self.state)

    def arm_state(self, arm: Arm) -> dict[str, Any]:
        return self.state["arms"].setdefault(arm.name, {"loss": arm.loss, "fixed": arm.fixed, "finals": {}})

    # ------------------------------------------------------------------ budget
    def _share(self, phase: str, jobs_left: int) -> float:
        """Seconds for the next job of ``phase``: the phase's unspent seconds over its jobs left."""
        usable = self.budget * (1 - RESERVE)
        tune_end = usable * self.tune_share
        if phase == "tune":
            left = tune_end - self.spent()
        else:  # the finals get what tuning left unspent too
            left = usable - self.spent()
        return max(left / max(jobs_left, 1), 1.0)

    def _progress(self, what: str) -> None:
        left = self.budget - self.spent()
        self.echo(f"[compare] {what} ({shown_seconds(self.spent())} of {shown_seconds(self.budget)} used, "
                  f"{shown_seconds(max(left, 0))} left)")

    # ------------------------------------------------------------------ phases
    def run(self) -> dict[str, Any]:
        """Tune every arm, train the finalists, measure them; returns the leaderboard."""
        from ssmrec.race.board import write_board

        if self.data is None:
            from ssmrec.data.dataset import load_dataset

            self.data = load_dataset(self.base.data_config(), self.base.protocol)
        self.state["status"] = "running"
        self.save()
        todo = [a for a in self.arms if "tuned" not in self.arm_state(a)]
        for n, arm in enumerate(todo):
            self._tune(arm, self._share("tune", len(todo) - n))
        finals = [(a, s) for a in self.arms for s in self.seed_list()
                  if str(s) not in self.arm_state(a)["finals"]]
        measure = None
        for n, (arm, seed) in enumerate(finals):
            if measure is None:
                measure = self._measurer()
            self._final(arm, seed, self._share("final", len(finals) - n), measure)
        self.state["status"] = "finished"
        self.save()
        board = write_board(self.out, self.state, self.arms, k=self._k(),
                            described=self.state.get("ranking_settings"))
        self.state["spent"] = self.spent()
        save_json(self.out / STATE, self.state)
        return board

    def epoch_seconds(self) -> float:
        """Seconds of one training epoch of the first arm at its defaults, measured once per race
        (a one-epoch run in ``OUT/probe``; kept in the state). Tuning sizes its grids by it."""
        if "epoch_seconds" not in self.state:
            from ssmrec.train.trainer import Trainer

            arm = self.arms[0]
            path = self.out / "probe"
            if path.exists():
                import shutil

                shutil.rmtree(path)  # a probe killed before it finished: measure again
            cfg = self.arm_config(arm, epochs=1, out=str(path), progress=False)
            result = Trainer(cfg, self.data, echo=None).fit()
            self.state["epoch_seconds"] = float(result["train_seconds"])
            self.save()
            self._progress(f"one epoch of {arm.name} takes {result['train_seconds']:.1f} s here")
        return float(self.state["epoch_seconds"])

    def seed_list(self) -> list[int]:
        return [self.base.seed + j for j in range(self.seeds)]

    def _k(self) -> int:
        return int(self.base.metric.split("@")[1])

    def arm_config(self, arm: Arm, params: dict[str, Any] | None = None, **settings: Any) -> TrainConfig:
        """The full settings of a run of ``arm`` with tuned ``params``."""
        from ssmrec.sweeps.members import member_configs

        cfg = self.base.replace({"loss": arm.loss, **arm.fixed, **settings}, source=f"arm {arm.name}")
        if not params:
            return cfg
        try:  # a loss's own parameters go into loss_params, as a sweep member's do
            return member_configs(cfg, [params])[0]
        except ConfigError:  # a loss a sweep cannot train (per-user state): set directly
            known = TrainConfig.field_names()
            over = {k: v for k, v in params.items() if k in known}
            own = {k: v for k, v in params.items() if k not in known}
            if own:
                over["loss_params"] = {**cfg.loss_params, **own}
            return cfg.replace(over, source=f"arm {arm.name}")

    def _tune(self, arm: Arm, seconds: float) -> None:
        from ssmrec.race.tuning import tune_arm

        st = self.arm_state(arm)
        self._progress(f"tuning {arm.name}: {_grid_text(arm.grid)} within {shown_seconds(seconds)}")
        st["tuned"] = tune_arm(self, arm, seconds)
        best = st["tuned"]["params"]
        self.save()
        self._progress(f"tuned {arm.name}: {_params_text(best)} (validation "
                       f"{self.base.metric} {st['tuned']['value']:.4f})")

    def _final(self, arm: Arm, seed: int, seconds: float, measure) -> None:
        from ssmrec.train.run import LAST, RunDir
        from ssmrec.train.trainer import Trainer

        st = self.arm_state(arm)
        path = self.out / "final" / f"{arm.name}-s{seed}"
        run = RunDir(path)
        finished = run.metrics() if path.is_dir() else None
        self._progress(f"final {arm.name} seed {seed}: "
                       + ("measuring" if finished else f"training within {shown_seconds(seconds)}"))
        if finished is not None:
            trainer = Trainer.resume(path, echo=None)
            result = trainer.finish(finished["stop_reason"], finished.get("wall_seconds", 0.0))
        elif (path / LAST).exists():
            trainer = Trainer.resume(path, echo=self._quiet)
            result = trainer.fit()
        else:
            cfg = self.arm_config(arm, st["tuned"]["params"], seed=seed, max_seconds=seconds, out=str(path),
                                  progress=False)
            trainer = Trainer(cfg, self.data, echo=self._quiet)
            result = trainer.fit()
        st["finals"][str(seed)] = {"run_dir": str(path), **measure(trainer, result, path)}
        self.save()

    def _quiet(self, line: str) -> None:
        """A run's own lines: only its final one and refusals reach the race's output."""
        if line.startswith(("best epoch", "warning", "ssmrec")):
            self.echo("    " + line)

    def _measurer(self):
        from ssmrec.race.measure import Measurer

        m = Measurer(self.data, k=self._k(), sampled=self.sampled, retrieved=self.retrieved, seed=self.base.seed)
        self.state["ranking_settings"] = m.described
        return m


def _grid_text(grid: dict[str, list[Any]]) -> str:
    return ", ".join(f"{k} {{{', '.join(f'{v:g}' if isinstance(v, float) else str(v) for v in vs)}}}"
                     for k, vs in grid.items()) or "nothing to tune"


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()) or "defaults"
