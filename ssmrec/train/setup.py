"""What a run needs before its first step: the device, the thread count, where the data was
found, the optimizer, and a stateful loss's buffers from a checkpoint."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import torch

from ssmrec.data.dataset import Dataset
from ssmrec.errors import ConfigError, TrainingError
from ssmrec.train.config import TrainConfig


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"device={name!r} but CUDA is not available here; use --device cpu or auto")
    return torch.device(name)


SYNC_EVERY_CUDA = 50
"""Steps between loss fetches on CUDA with ``sync_every`` 0 (auto): rare enough that the GPU runs
ahead of the host, often enough that a NaN or a signal is seen within a second or so."""


def sampler_kind(name: str, device: torch.device) -> str:
    """``host`` or ``device``: the ``sampler`` setting with ``auto`` resolved (device on CUDA)."""
    if name == "auto":
        return "device" if device.type == "cuda" else "host"
    return name


SMALL_DATA = 200_000
"""Training pairs below which one thread is fastest (threads only add synchronisation)."""
MAX_AUTO_THREADS = 8

log = logging.getLogger(__name__)


def _own_load(cores: int) -> float:
    """This process's own share of the 1-minute load average: it has been runnable for about its
    CPU time since it started (loading the data, before the thread count is chosen), and the
    kernel's average weighs the last minute (``1 - exp(-t / 60)`` of a job running for t s)."""
    try:
        stat = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(stat[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time, after boot
        wall = float(Path("/proc/uptime").read_text().split()[0]) - started
    except (OSError, ValueError, IndexError):
        return 0.0
    if wall <= 0:
        return 0.0
    times = os.times()
    busy = min(float(cores), (times.user + times.system) / wall)
    return busy * (1 - math.exp(-wall / 60))


def _load() -> tuple[float, int | None]:
    """The 1-minute load average and the number of tasks runnable right now, this one included
    (``/proc/loadavg``; None where the system does not say)."""
    try:
        fields = Path("/proc/loadavg").read_text().split()
        return float(fields[0]), int(fields[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.getloadavg()[0], None
    except (OSError, AttributeError):
        return 0.0, None


def choose_threads(n_pairs: int, *, cores: int | None = None, load: float | None = None,
                   running: int | None = None, own: float | None = None) -> tuple[int, str]:
    """The thread count of ``--threads 0`` and one line that says why.

    One thread for small data (< :data:`SMALL_DATA` pairs: more only add synchronisation; torch's
    default of every core made a small run 4-50x slower). Otherwise the cores other jobs leave
    free, at most 8: ``cores - round(others)``, at least 1, where ``others`` is the 1-minute load
    average less this process's own share of it (it was loading the data), and no more than the
    other tasks runnable right now (a job that just ended still weighs on the average for
    minutes). So an idle machine gives every core, one other busy job takes one.

    ``cores``, ``load`` (1-minute average), ``running`` (tasks runnable now, this one included)
    and ``own`` (this process's share of ``load``) are read from the system when not given.
    """
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
    if n_pairs < SMALL_DATA:
        return 1, f"threads: 1 (auto: small data, {n_pairs:,} < {SMALL_DATA:,} training pairs)"
    if load is None:
        load, now = _load()
        running = now if running is None else running
    if own is None:
        own = _own_load(cores)
    others = max(0.0, load - own)
    if running is not None:
        others = min(others, max(0, running - 1))
    threads = max(1, min(MAX_AUTO_THREADS, cores - round(others)))
    return threads, f"threads: {threads} (auto: {cores} cores, load {others:.1f} from other jobs)"


_said: list[int] = []  # the count last logged by this process


def auto_threads(n_pairs: int) -> int:
    """The thread count of ``--threads 0`` (see :func:`choose_threads`), logged once (the command
    line prints it), and again only when it changes (a study's later sweeps choose again)."""
    threads, line = choose_threads(n_pairs)
    if _said != [threads]:
        log.info(line)
        _said[:] = [threads]
    return threads


def data_location(cfg: TrainConfig, data: Dataset) -> dict[str, str]:
    """Where the data was found, as absolute paths (kept in config.json so a run travels)."""
    from ssmrec.data.dataset import is_registry_name

    if is_registry_name(cfg.dataset):
        first = Path(data.source.split(", ")[0]) if data.source else None
        return {"data_dir": str(first.resolve().parent.parent)} if first and first.exists() else {}
    path = Path(cfg.dataset).expanduser()
    return {"dataset": str(path.resolve())} if path.exists() else {}


def make_optimizer(model: torch.nn.Module, lr: float, device: torch.device,
                   optimizer: str = "adam") -> torch.optim.Optimizer:
    """The ``optimizer`` setting's optimizer over the model's tables (:mod:`ssmrec.train.optim`).

    ``adam``: Adam, the fused kernel where this torch has one for the device (several times
    faster on CPU, same update rule). ``sparse-adam`` / ``rowwise-adagrad``: the model is switched
    to row gradients first (:meth:`~ssmrec.models.base.Recommender.use_sparse_grads`, which
    refuses a model whose batch path reads whole tables)."""
    from ssmrec.train.optim import is_sparse
    from ssmrec.train.optim import make_optimizer as build

    if is_sparse(optimizer):
        if not hasattr(model, "use_sparse_grads"):
            raise ConfigError(f"optimizer: {optimizer} needs a model that builds row gradients; "
                              f"{type(model).__name__} does not (use optimizer adam)")
        model.use_sparse_grads()
    return build(model.parameters(), optimizer, lr)


def load_loss_state(loss: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Restore a loss's buffers, including those it allocates lazily (at its first refresh)."""
    for name, value in state.items():
        module, _, attr = name.rpartition(".")
        owner = loss.get_submodule(module) if module else loss
        if attr in owner._buffers:
            owner._buffers[attr] = value.to(owner._buffers[attr].device) if owner._buffers[attr] is not None \
                else value
        else:
            raise TrainingError(f"the checkpoint holds loss state {name!r} that the loss {type(loss).__name__} "
                                "does not have; was it trained with another loss?")
