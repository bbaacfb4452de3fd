"""What a run needs before its first step: the device, the thread count, where the data was
found, the optimizer, and a stateful loss's buffers from a checkpoint."""

from __future__ import annotations

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


def auto_threads(n_pairs: int) -> int:
    """The thread count of ``--threads 0``: one for small data or a busy machine (where torch's
    default of every core made a small run 4-50x slower than one thread), else the cores not
    already busy, at most 8."""
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    if n_pairs < SMALL_DATA:
        return 1
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return max(1, min(8, cores, round(cores - busy)))


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
