"""A run directory: resolved config, per-epoch history, checkpoints, final metrics."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

from ssmrec.train.config import ConfigError, TrainConfig
from ssmrec.train.config_io import save_json

CONFIG, HISTORY, METRICS, BEST, LAST = "config.json", "history.jsonl", "metrics.json", "best.pt", "last.pt"
EXPORT = "export"
CARRIED = "data"  # the data a run carries (Recommender.fit on frames); config.json's dataset names it
RUN_FILES = (CONFIG, HISTORY, METRICS, BEST, LAST, EXPORT)


def check_new_run_dir(path: str | Path) -> None:
    """Refuse, before any work, a path that cannot take a new run: a file, a directory that
    already holds a run (resume it instead), or a place where no directory can be made."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"out: {p} is a file, not a run directory")
    if p.is_dir():
        found = [f for f in RUN_FILES if (p / f).exists()]
        if found:
            raise ConfigError(f"out: {p} already holds a run ({', '.join(found)}); continue it with "
                              f"`ssmrec train --resume {p}`, or choose another --out")
        return
    parent = p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"out: cannot create {p}: {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"out: cannot create {p}: {parent} is not writable")
    # what only trying reveals (a read-only or virtual filesystem such as /proc) is refused when
    # the directory is made, after the data loaded and before anything is written


def default_run_dir(cfg: TrainConfig, root: str | Path = "runs", kind: str = "") -> Path:
    """``runs/<dataset>-<model>-<loss>[-<kind>]-<time>``, numbered if taken."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = Path(cfg.dataset).name.split(".")[0]
    base = Path(root) / f"{name}-{cfg.model}-{cfg.loss}{'-' + kind if kind else ''}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def environment() -> dict[str, Any]:
    """Where a run happened: enough to trace a number back to a machine and a commit."""
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "commit": _git_commit(),
        "host": platform.node(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


class RunDir:
    """Files of one run. Writes are atomic (temporary file + rename)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def create(self, cfg: TrainConfig, extra: dict[str, Any]) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"out: cannot create {self.path} ({e.strerror or e})") from None
        save_json(self.path / CONFIG, {"config": cfg.to_dict(), **extra})

    def exists(self) -> bool:
        return (self.path / CONFIG).is_file()

    def load_config(self) -> TrainConfig:
        try:
            data = json.loads((self.path / CONFIG).read_text())
        except FileNotFoundError:
            raise ConfigError(f"{self.path}: not a run directory (no {CONFIG})") from None
        return TrainConfig.from_dict(data["config"], source=str(self.path / CONFIG))

    def record(self) -> dict[str, Any]:
        return json.loads((self.path / CONFIG).read_text())

    def data_config(self, cfg: TrainConfig) -> TrainConfig:
        """``cfg`` with its data found where it was at training time, so that a run directory
        works from any working directory and without ``$SSMREC_DATA`` (the data's fingerprint
        is checked by whoever loads it)."""
        where = self.record().get("data", {}).get("location") or {}
        if where.get("dataset") and not Path(cfg.dataset).expanduser().exists() and Path(where["dataset"]).exists():
            return dataclasses.replace(cfg, dataset=where["dataset"])
        carried = self.path / CARRIED / Path(cfg.dataset).name  # data carried in a run moved since
        if Path(cfg.dataset).parent.name == CARRIED and not Path(cfg.dataset).exists() and carried.exists():
            return dataclasses.replace(cfg, dataset=str(carried))
        if where.get("data_dir") and cfg.data_dir is None and Path(where["data_dir"]).is_dir():
            return dataclasses.replace(cfg, data_dir=where["data_dir"])
        return cfg

    def write_history(self, history: list[dict]) -> None:
        tmp = self.path / (HISTORY + ".tmp")
        tmp.write_text("".join(json.dumps(h) + "\n" for h in history))
        tmp.replace(self.path / HISTORY)

    def history(self) -> list[dict]:
        p = self.path / HISTORY
        return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []

    def save(self, name: str, state: dict[str, Any]) -> None:
        tmp = self.path / (name + ".tmp")
        torch.save(state, tmp)
        tmp.replace(self.path / name)

    def load(self, name: str, device: torch.device | str = "cpu") -> dict[str, Any] | None:
        p = self.path / name
        if not p.exists():
            return None
        return torch.load(p, map_location=device, weights_only=False)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        save_json(self.path / METRICS, metrics)

    def metrics(self) -> dict[str, Any] | None:
        p = self.path / METRICS
        return json.loads(p.read_text()) if p.exists() else None


class PidLock:
    """A lock file holding the owner's pid: one process trains a folder at a time. A stale lock
    (its pid gone) is taken over; the owner may take it again."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def holder(self) -> int | None:
        """The pid of another live process holding the lock, else None."""
        try:
            pid = int(self.path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return None
        if not pid or pid == os.getpid():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:  # alive, another user's
            return pid
        return pid

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.holder() is not None:
            return False
        self.path.write_text(str(os.getpid()))
        return True

    def release(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

