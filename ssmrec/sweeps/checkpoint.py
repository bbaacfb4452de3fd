"""A sweep's checkpoint: what :class:`~ssmrec.sweeps.sweep.Sweep` writes to ``last.pt`` and
reads back to resume (see the Interruptions paragraph of :mod:`ssmrec.sweeps.sweep`).

:class:`SweepCheckpoints` is mixed into ``Sweep``: it uses the sweep's model, optimizer, members,
live list, position (``epoch``, ``batch``, ``epoch_seconds``) and folder, and its ``_drop``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from ssmrec.data.dataset import Dataset
from ssmrec.errors import ConfigError, TrainingError
from ssmrec.train.config import TrainConfig
from ssmrec.train.run import BEST, LAST, RunDir
from ssmrec.train.signals import Interrupted, signal_name

SUMMARY = "sweep.json"
LOCK = ".lock"  # held by the process training the sweep
BEST_AT_CHECKPOINT = "best.checkpointed.pt"  # a member's best.pt as of the sweep's last.pt (a hard link)


class SweepCheckpoints:
    """Checkpoint, stop and resume for :class:`~ssmrec.sweeps.sweep.Sweep`."""

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed sweep needs to continue over the same batches."""
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "live": list(self.live), "epoch": self.epoch, "batch": self.batch,
            "epoch_seconds": self.epoch_seconds,
            "train_seconds": self.train_seconds, "eval_seconds": self.eval_seconds,
            "members": [{"history": m.history, "stop_reason": m.stop_reason, "error": m.error,
                         "epochs_run": m.epochs_run, "train_seconds": m.train_seconds,
                         "eval_seconds": m.eval_seconds, "partial": dict(m.partial),
                         "stopper": m.stopper.state_dict()} for m in self.members],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["members"]) != len(self.members):
            raise TrainingError(f"{self.path}: the checkpoint holds {len(state['members'])} members, the sweep "
                                f"{len(self.members)}; cannot resume")
        self._drop([j for j in self.live if j not in state["live"]])  # as the checkpointed sweep had
        if self.live != list(state["live"]):
            raise TrainingError(f"{self.path}: the checkpoint's live members {state['live']} are out of order")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.batch, self.epoch_seconds = state["epoch"], state["batch"], state["epoch_seconds"]
        self.train_seconds, self.eval_seconds = state["train_seconds"], state["eval_seconds"]
        for m, saved in zip(self.members, state["members"]):
            m.history, m.stop_reason, m.error = list(saved["history"]), saved["stop_reason"], saved["error"]
            m.epochs_run, m.partial = saved["epochs_run"], dict(saved["partial"])
            m.train_seconds, m.eval_seconds = saved["train_seconds"], saved["eval_seconds"]
            m.stopper.load_state_dict(saved["stopper"])
            if m.run is not None:
                m.run.write_history(m.history)  # a member's history may have run ahead of the checkpoint
                self._restore_best(m)

    def _restore_best(self, m) -> None:
        """Put back the member's best weights of the checkpoint's best epoch: ``best.pt`` may hold
        a later epoch's, saved after the checkpoint by the run that was stopped."""
        want = m.stopper.best_epoch
        best = m.run.load(BEST)
        if best is None or best.get("epoch") == want:
            return
        kept = m.run.path / BEST_AT_CHECKPOINT
        if kept.exists() and m.run.load(BEST_AT_CHECKPOINT).get("epoch") == want:
            os.replace(kept, m.run.path / BEST)
        elif want > 0:
            raise TrainingError(f"{m.run.path}: best.pt holds epoch {best.get('epoch')}, the checkpoint's best "
                                f"epoch is {want}, and no copy of that epoch's weights is left; cannot resume "
                                "this member exactly")
        else:  # no evaluation before the checkpoint: the later best is not this trajectory's
            (m.run.path / BEST).unlink()

    _last_checkpoint = 0.0

    def _checkpoint_due(self) -> bool:
        return time.time() - self._last_checkpoint > self.cfg.checkpoint_every

    def _checkpoint(self) -> None:
        if self.path is None:
            return
        RunDir(self.path).save(LAST, self.state_dict())
        # each member's best weights as of this checkpoint, kept by a hard link (no copy): a later
        # best.pt is a new file (written aside, then renamed), so this one survives it
        for m in self.members:
            if m.run is not None and (m.run.path / BEST).exists():
                tmp = m.run.path / (BEST_AT_CHECKPOINT + ".tmp")
                tmp.unlink(missing_ok=True)
                try:
                    os.link(m.run.path / BEST, tmp)
                except OSError:  # a file system without hard links: a copy
                    shutil.copyfile(m.run.path / BEST, tmp)
                os.replace(tmp, m.run.path / BEST_AT_CHECKPOINT)
        self._last_checkpoint = time.time()

    def _interrupted(self, where: str) -> Interrupted:
        signum = self.stop.signum or 2
        if self.path is not None:
            self._write_summary(status="interrupted")
        hint = f"Continue with: {self.resume_hint}" if self.path is not None else "(no sweep directory to resume)"
        return Interrupted(f"{signal_name(signum)}: the sweep stopped at {where}; checkpoint written. {hint}",
                           signum)

    @classmethod
    def resume(cls, path: str | Path, dataset: Dataset | None = None, *,
               echo=print, overrides: dict[str, Any] | None = None):
        """The sweep of folder ``path``, at its last checkpoint (``overrides`` may change
        ``device``, ``threads``, ``progress``, ``checkpoint_every`` or the time budget
        ``max_seconds``; not the settings that make the batches). Its data is found where the
        sweep recorded it (as a run's, see :meth:`~ssmrec.train.run.RunDir.data_config`) and
        checked by its fingerprint."""
        path = Path(path)
        summary = path / SUMMARY
        try:
            data = json.loads(summary.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: not a sweep directory (no {SUMMARY})") from None
        base = TrainConfig.from_dict(data["base"], source=str(summary))
        if overrides:
            allowed = {"device", "threads", "progress", "checkpoint_every", "max_seconds"}
            if set(overrides) - allowed:
                raise ConfigError(f"resume: only {', '.join(sorted(allowed))} may change when a sweep resumes, "
                                  f"got {', '.join(sorted(set(overrides) - allowed))}")
            base = base.replace(overrides, source="resume")
        first = RunDir(path / "member-0")
        if first.exists():
            base = first.data_config(base)
        members = [m["overrides"] for m in data["members"]]
        if data.get("status") == "finished":
            raise ConfigError(f"{path}: this sweep has finished (see {summary}); nothing to resume")
        sweep = cls(base, members, dataset, path, echo=echo, resuming=True)
        state = RunDir(path).load(LAST, sweep.device)
        if state is None:
            sweep.echo(f"{path} has no checkpoint yet (stopped before its first one): starting from epoch 1")
        else:
            sweep.load_state_dict(state)
            sweep.echo(f"resuming {path} at epoch {sweep.epoch + 1}, batch {sweep.batch}, "
                       f"{len(sweep.live)} of {len(sweep.members)} members training")
        return sweep


__all__ = ["BEST_AT_CHECKPOINT", "LOCK", "SUMMARY", "SweepCheckpoints"]
