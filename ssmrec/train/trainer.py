"""The training loop: batches -> objective -> Adam; periodic evaluation, early stopping,
best and resumable checkpoints, per-epoch history."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ssmrec.data.dataset import Dataset, load_dataset
from ssmrec.data.device_sampling import DeviceSampler
from ssmrec.data.sampling import Batch
from ssmrec.errors import TrainingError  # re-exported
from ssmrec.eval.evaluator import Evaluator
from ssmrec.models import build_model
from ssmrec.train.callbacks import EarlyStopping
from ssmrec.train.config import ConfigError, TrainConfig
from ssmrec.train.distributed import SINGLE, DistContext
from ssmrec.train.export import write_export
from ssmrec.train.loggers import Callbacks
from ssmrec.train.objective import build_objective
from ssmrec.train.optim import dense_hint
from ssmrec.train.run import BEST, EXPORT, LAST, RunDir, check_new_run_dir, default_run_dir, environment
from ssmrec.train.scorer import ModelScorer
from ssmrec.train.setup import (  # noqa: F401  (re-exported: trainer's public helpers)
    SMALL_DATA,
    SYNC_EVERY_CUDA,
    auto_threads,
    data_location,
    load_loss_state,
    make_optimizer,
    resolve_device,
    sampler_kind,
)
from ssmrec.train.signals import Interrupted, StopRequest, signal_name

__all__ = ["Interrupted", "Trainer", "TrainingError", "resolve_device"]

SELECTION = {
    "paper": "test-selected: the best epoch is chosen on the test set, as the study's code does "
             "(optimistic; use protocol 'holdout' for an unbiased estimate)",
    "holdout": "validation-selected: early stopping on the validation set, test evaluated once "
               "at the best validation epoch",
}




class Trainer:
    """Train one model with one loss on one dataset, writing a run directory.

    Args:
        cfg: the run's settings.
        dataset: the data (default: loaded from ``cfg`` for ``cfg.protocol``).
        run_dir: where to write (default: ``cfg.out`` or a new folder under ``runs/``); ``None``
            and ``write=False`` keep everything in memory.
        echo: where summary lines go (default: ``print``); ``None`` for silence.
        write: write the run directory (default: True).
        dist: this process's place in a distributed run (default: one process); only rank 0
            writes files and prints (see :mod:`ssmrec.train.distributed`).
        resuming: ``run_dir`` holds this run already (used by :meth:`resume`); otherwise a
            directory that already holds a run is refused rather than overwritten
            (default: False).
        callbacks: objects called at the loop's events (:mod:`ssmrec.train.loggers`: loggers for
            CSV, TensorBoard, MLflow, or your own) (default: none).

    SIGINT and SIGTERM during :meth:`fit` stop the run at the next safe point with a checkpoint
    (see :mod:`ssmrec.train.signals`); resuming then gives exactly the uninterrupted run.

    The loss is fetched to the host every :attr:`sync_every` steps and at the end of each epoch
    (``cfg.sync_every``; every step on CPU by default, every 50 on CUDA, so that the GPU is never
    waited for in between). The NaN check, stop signals and mid-epoch checkpoints happen at
    those fetches: a signal is honoured at the next one, and a non-finite loss is reported with
    the batch it appeared at and the window of batches stepped since the previous fetch, naming
    the last checkpoint, which was written at a fetch that found every loss finite. The epoch's
    mean loss is the same sum of the same per-step values whatever ``sync_every`` is.
    """

    def __init__(self, cfg: TrainConfig, dataset: Dataset | None = None, *,
                 run_dir: str | Path | None = None, echo: Callable[[str], None] | None = print,
                 write: bool = True, dist: DistContext = SINGLE, resuming: bool = False,
                 callbacks: list[Any] | None = None, threads: int = 0):
        self.cfg, self.dist = cfg, dist
        self.callbacks = Callbacks(callbacks if dist.is_main else [])
        self.echo = echo if echo and dist.is_main else (lambda s: None)
        writes = write and dist.is_main
        path = Path(run_dir or cfg.out or default_run_dir(cfg)) if writes else None
        if path is not None and not resuming:
            check_new_run_dir(path)  # before any work: never overwrite a run
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = dist.device or resolve_device(cfg.device)
        if dataset is None:
            with dist.local_main_first():  # one download per machine
                dataset = load_dataset(cfg.data_config(), cfg.protocol)
        self.data = dataset
        if not cfg.threads and not dist.enabled and self.device.type == "cpu":
            torch.set_num_threads(threads or auto_threads(dataset.train.nnz))
        top = max(cfg.ks)
        if top > self.data.n_items:
            raise ConfigError(f"ks: K {top} is larger than the {self.data.n_items} items of "
                              f"{self.data.name}")
        torch.manual_seed(cfg.seed)
        train = self.data.train
        self.model = build_model(cfg.model, train, cfg.dim, layers=cfg.layers, side=cfg.side,
                                 a0=cfg.a0, a1=cfg.a1, init=cfg.init, init_std=cfg.init_std).to(self.device)
        dist.broadcast_parameters(self.model)
        self.objective, self.sampler = build_objective(cfg, train, dist, self.data.dislikes.get("train"))
        self.objective.to(self.device)
        self.sampler_kind = sampler_kind(cfg.sampler, self.device)
        if self.sampler_kind == "device":  # pairs, seen keys and CDF on the device once
            self.sampler = DeviceSampler.like(self.sampler, self.device)
        self.optimizer = make_optimizer(self.model, cfg.lr, self.device, cfg.optimizer)
        hint = dense_hint(cfg, train.n_users, train.n_items)
        if hint and not resuming:
            self.echo(hint)
        common = dict(ks=cfg.ks, similarity=cfg.scoring, chunk_size=cfg.eval_chunk,
                      device=self.device)
        # known dislikes are interactions too: never recommended again (so every loss is ranked alike)
        dis = self.data.dislikes
        self.test_eval = Evaluator(self.data.test, self.data.exclusions("test"), dislikes=dis.get("test"),
                                   sample=cfg.test_users, seed=cfg.seed, **common)
        if cfg.protocol == "holdout":
            self.select_eval = Evaluator(self.data.valid, self.data.exclusions("valid"), dislikes=dis.get("valid"),
                                         sample=cfg.eval_users, seed=cfg.seed, **common)
        elif cfg.eval_users == cfg.test_users:
            self.select_eval = self.test_eval
        else:  # selection on a sample of test users; test evaluated again at the best epoch
            self.select_eval = Evaluator(self.data.test, self.data.exclusions("test"), dislikes=dis.get("test"),
                                         sample=cfg.eval_users, seed=cfg.seed, **common)
        self.stopper = EarlyStopping(cfg.metric, cfg.patience)
        self.history: list[dict[str, Any]] = []
        self.epoch, self.batch = 0, 0
        self.refreshed = 0  # the last epoch (from 1) a stateful loss was refreshed for
        self.partial = {"loss": 0.0, "batches": 0, "seconds": 0.0}
        self.train_seconds = self.eval_seconds = 0.0
        self.run: RunDir | None = None
        self.stop = StopRequest(quiet=True)  # replaced by the live one during fit()
        if path is not None:
            self.run = RunDir(path)
            if not self.run.exists():
                self.run.create(cfg, {"env": environment(), "data": self._data_record()})

    # ------------------------------------------------------------------ resume
    @classmethod
    def resume(cls, run_dir: str | Path, *, echo: Callable[[str], None] | None = print,
               overrides: dict[str, Any] | None = None, dataset: Dataset | None = None,
               dist: DistContext = SINGLE, callbacks: list[Any] | None = None) -> Trainer:
        """Continue an interrupted run from its last checkpoint (``overrides`` may raise
        ``epochs``, change ``device``/``threads``/``progress``/``nproc``; ``dataset`` defaults
        to reloading the run's data). In a distributed run every process loads the checkpoint."""
        run = RunDir(run_dir)
        cfg = run.data_config(run.load_config())
        if overrides:
            cfg = cfg.replace(overrides, source="resume")
        # --threads 0 (auto) resumes on the thread count the run started with: same sums, same result
        started = int(run.record().get("env", {}).get("threads") or 0)
        trainer = cls(cfg, dataset, run_dir=run.path, echo=echo, dist=dist, resuming=True, callbacks=callbacks,
                      threads=started)
        recorded = run.record().get("data", {})
        if recorded.get("fingerprint") and recorded["fingerprint"] != trainer._data_record()["fingerprint"]:
            raise TrainingError(f"{run.path}: the dataset differs from the one this run was trained "
                                "on (train fingerprint changed); cannot resume")
        state = run.load(LAST, trainer.device)
        if state is not None:
            trainer.load_state_dict(state)
            if run.metrics() is not None and trainer.epoch >= cfg.epochs:
                trainer.echo(f"{run.path} has finished ({run.metrics()['stop_reason']}, "
                             f"{trainer.epoch} epochs); raise --epochs to train further")
            else:
                trainer.echo(f"resuming {run.path} at epoch {trainer.epoch + 1}, batch {trainer.batch}")
        else:
            trainer.echo(f"{run.path} has no checkpoint yet (stopped before its first one): "
                         "starting from epoch 1")
        return trainer

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "batch": self.batch,
            "partial": dict(self.partial),
            "history": self.history,
            "stopper": self.stopper.state_dict(),
            "train_seconds": self.train_seconds,
            "eval_seconds": self.eval_seconds,
            "loss": dict(self.objective.loss.state_dict()),  # per-user state of a stateful loss
            "refreshed": self.refreshed,  # the epoch whose refresh that state already holds
            "sampler": self._stream(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.batch = state["epoch"], state["batch"]
        self.partial = dict(state["partial"])
        self.history = list(state["history"])
        self.stopper.load_state_dict(state["stopper"])
        self.train_seconds, self.eval_seconds = state["train_seconds"], state["eval_seconds"]
        load_loss_state(self.objective.loss, state.get("loss", {}))
        # older checkpoints: a refresh happened when the epoch's first batch had run
        self.refreshed = state.get("refreshed", self.epoch + 1 if self.batch else self.epoch)
        was, now = state.get("sampler", "host"), self._stream()  # checkpoints before the setting: host
        if was != now:
            self.echo(f"warning: this run drew its batches with the {was} sampler and resumes with the {now} "
                      "sampler: the remaining batches follow the same distributions but are not the "
                      "uninterrupted run's")

    def _stream(self) -> str:
        """The random stream that makes the batches: ``host`` (numpy, the same everywhere) or
        ``device:cpu`` / ``device:cuda`` (one seed gives other numbers on a CPU and on a GPU)."""
        return "host" if self.sampler_kind == "host" else f"device:{self.device.type}"

    def _data_record(self) -> dict[str, Any]:
        d = self.data
        return {"name": d.name, "source": d.source, "location": data_location(self.cfg, d),
                "fingerprint": d.train.fingerprint(),
                "users": d.n_users, "items": d.n_items, "train": d.train.nnz, "test": d.test.nnz,
                "valid": d.valid.nnz if d.valid is not None else 0}

    def _checkpoint(self) -> None:
        if self.run is not None:
            self.run.save(LAST, self.state_dict())
            self.run.write_history(self.history)
            self.callbacks("on_checkpoint", self, self.run.path / LAST)

    # ------------------------------------------------------------------ training
    @property
    def sync_every(self) -> int:
        """Steps between loss fetches (``cfg.sync_every``, 0 resolved: 1 on CPU, 50 on CUDA).
        Always 1 with several processes: each step's all-reduce carries the global loss and the
        stop flag every rank must agree on."""
        if self.dist.enabled:
            return 1
        return self.cfg.sync_every or (SYNC_EVERY_CUDA if self.device.type == "cuda" else 1)

    def train_epoch(self, epoch: int) -> float:
        """Run the remaining batches of ``epoch``; returns the mean batch loss."""
        cfg = self.cfg
        self.model.train()
        last_ckpt = time.time()
        bar = tqdm(total=len(self.sampler), initial=self.batch, desc=f"epoch {epoch + 1}",
                   unit="batch", leave=False, disable=not (cfg.progress and self.dist.is_main),
                   dynamic_ncols=True)
        t0 = time.perf_counter()
        refresh = getattr(self.objective.loss, "on_epoch_start", None)
        if refresh is not None and self.refreshed != epoch + 1:  # once per epoch, also across a resume
            refresh(epoch + 1, ModelScorer(self.model, self.data.train,
                                           getattr(self.objective.loss, "similarity", "cos"), self.device))
            self.refreshed = epoch + 1
        every, last = self.sync_every, len(self.sampler)
        pending: list[tuple[int, torch.Tensor]] = []  # (batch index, loss on the device) since the last fetch
        try:
            for batch in self.sampler.epoch(epoch, start=self.batch, rank=self.dist.rank,
                                            world=self.dist.world):
                if every == 1:
                    value = self.step(batch, epoch)
                    self.batch = batch.index + 1
                    self.partial["loss"] += value
                    self.partial["batches"] += 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{value:.4f}", refresh=False)
                else:
                    pending.append((batch.index, self._update(self.objective(self.model, batch.to(self.device)))))
                    self.batch = batch.index + 1
                    bar.update(1)
                    if len(pending) < every and self.batch < last:
                        continue
                    self._sync(pending, epoch)
                    bar.set_postfix(loss=f"{self.partial['loss'] / self.partial['batches']:.4f}", refresh=False)
                if self._stop_agreed:  # a safe point: the step and its counters are complete
                    self._add_time(t0)
                    self._checkpoint()
                    raise self._interrupted(f"epoch {epoch + 1}, batch {self.batch}")
                if cfg.checkpoint_every and time.time() - last_ckpt > cfg.checkpoint_every:
                    self._add_time(t0)
                    t0 = time.perf_counter()
                    self._checkpoint()
                    last_ckpt = time.time()
            self._sync(pending, epoch)  # none left unless the sampler stopped short of len()
        except KeyboardInterrupt:  # no signal handler (fit() outside the main thread)
            self._sync(pending, epoch)  # a NaN among them is reported instead of saved
            self._add_time(t0)
            self._checkpoint()
            raise self._interrupted(f"epoch {epoch + 1}, batch {self.batch}") from None
        finally:
            bar.close()
        self._add_time(t0)
        return self.partial["loss"] / max(self.partial["batches"], 1)

    def step(self, batch: Batch, epoch: int) -> float:
        """One update from a batch (in a distributed run, this process's part of the global
        batch); returns the global batch's loss, fetched to the host (a NaN is refused before the
        update)."""
        loss = self.objective(self.model, batch.to(self.device))  # this process's share of the batch's loss
        value, self._stop_agreed = self.dist.loss_and_stop(loss, self.stop.requested)
        if not math.isfinite(value):
            raise self._nonfinite(value, epoch, batch.index)
        self._update(loss)
        return value

    def _update(self, loss: torch.Tensor) -> torch.Tensor:
        """Backward and the optimizer step; the loss, detached, left on the device."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.dist.reduce_gradients(self.model.parameters(), rows=getattr(self.model, "sparse_grads", False))
        self.optimizer.step()
        return loss.detach()

    def _sync(self, pending: list[tuple[int, torch.Tensor]], epoch: int) -> None:
        """Fetch the losses of the steps since the last fetch (one transfer), check them and add
        them to the epoch's sum in step order, as :meth:`step` would have one by one."""
        if not pending:
            return
        values = torch.stack([v for _, v in pending]).to(torch.float64).tolist()
        window = (pending[0][0], pending[-1][0])
        for (index, _), value in zip(pending, values):
            if not math.isfinite(value):
                raise self._nonfinite(value, epoch, index, window)
            self.partial["loss"] += value
            self.partial["batches"] += 1
        pending.clear()
        self._stop_agreed = self.stop.requested  # one process (several sync every step)

    def _nonfinite(self, value: float, epoch: int, index: int,
                   window: tuple[int, int] | None = None) -> TrainingError:
        cfg = self.cfg
        where = f"at epoch {epoch + 1}, batch {index}"
        if window is not None and window[0] != window[1]:
            where += (f" (found at the loss fetch after batches {window[0]}-{window[1]} of that epoch: the loss "
                      f"is fetched every {self.sync_every} steps, sync_every, and the model has taken those steps)")
        return TrainingError(
            f"the loss became {value} {where} "
            f"(loss={cfg.loss}, tau={cfg.tau}, lr={cfg.lr}, reg={cfg.reg}); "
            f"lower lr or raise tau. The last good checkpoint is "
            f"{self.run.path / LAST if self.run else '(not written)'}")

    _stop_agreed = False

    def _interrupted(self, where: str) -> Interrupted:
        """The exception that ends a run stopped by a signal (after its checkpoint)."""
        signum = self.stop.signum or 2
        resume = f"ssmrec train --resume {self.run.path}" if self.run else "(no run directory to resume)"
        if self.run is not None and self.cfg.nproc > 1:
            resume += f" --nproc {self.cfg.nproc}"
        return Interrupted(f"{signal_name(signum)}: stopped at {where}; checkpoint written. "
                           f"Resume with: {resume}", signum)

    def _add_time(self, t0: float) -> None:
        self.partial["seconds"] += time.perf_counter() - t0

    def evaluate(self, evaluator: Evaluator) -> dict[str, float]:
        t0 = time.perf_counter()
        metrics = evaluator.evaluate_model(self.model, users=self.dist.part(evaluator.users),
                                           combine=self.dist.combine)
        self.eval_seconds += time.perf_counter() - t0
        return metrics

    def fit(self) -> dict[str, Any]:
        """Train until ``epochs``, early stopping or the time budget; returns the final metrics."""
        with StopRequest(quiet=not self.dist.is_main) as self.stop:
            return self._fit()

    def _fit(self) -> dict[str, Any]:
        cfg = self.cfg
        wall0 = time.perf_counter()
        reason = "max_epochs"
        for epoch in range(self.epoch, cfg.epochs):
            loss = self.train_epoch(epoch)
            seconds = self.partial["seconds"]
            self.train_seconds += seconds
            record: dict[str, Any] = {"epoch": epoch + 1, "loss": loss, "train_seconds": seconds}
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                t0 = time.perf_counter()
                metrics = self.evaluate(self.select_eval)
                record.update(metrics)
                record["eval_seconds"] = time.perf_counter() - t0
                improved = self.stopper.step(epoch + 1, metrics)
                if improved:
                    self._save_best(epoch + 1, metrics)
                self.echo(self._summary(record, improved))
                self.callbacks("on_eval", self, metrics)
            record["elapsed_seconds"] = self.train_seconds + self.eval_seconds
            self.history.append(record)
            self.callbacks("on_epoch_end", self, record)
            self.epoch, self.batch = epoch + 1, 0
            self.partial = {"loss": 0.0, "batches": 0, "seconds": 0.0}
            self._checkpoint()
            if self.stopper.should_stop:
                reason = "early_stopped"
                break
            if self.dist.any(self.stop.requested):  # after evaluation and the epoch's checkpoint
                raise self._interrupted(f"the end of epoch {epoch + 1}")
            spent = self.train_seconds + self.eval_seconds
            if cfg.max_seconds and self.dist.main_decides(spent >= cfg.max_seconds):
                reason = "time_budget"
                break
        return self.finish(reason, time.perf_counter() - wall0)

    def _save_best(self, epoch: int, metrics: dict[str, float]) -> None:
        if not self.dist.is_main:  # the others get rank 0's best model in finish()
            return
        state = {"model": self.model.state_dict(), "epoch": epoch, "metrics": metrics}
        if self.run is not None:
            self.run.save(BEST, state)
        else:
            self._best = {**state, "model": {k: v.clone() for k, v in state["model"].items()}}

    def finish(self, reason: str, wall: float) -> dict[str, Any]:
        """Restore the best model, evaluate test once under holdout, write ``metrics.json``."""
        cfg = self.cfg
        best = self.run.load(BEST, self.device) if self.run else getattr(self, "_best", None)
        if best is not None:
            self.model.load_state_dict(best["model"])
        self.dist.broadcast_parameters(self.model)  # rank 0 holds the best model
        self.model.eval()  # trainer.model() now gives the scored representations, detached
        best_epoch = self.stopper.best_epoch
        best_record = next((h for h in self.history if h["epoch"] == best_epoch), {})
        keys = [k for k in best_record if "@" in k]
        if cfg.protocol == "holdout":
            valid = {k: best_record[k] for k in keys}
            test = self.evaluate(self.test_eval)
        elif self.select_eval is not self.test_eval:  # selected on a sample: test on test_users
            valid, test = None, self.evaluate(self.test_eval)
        else:
            valid, test = None, {k: best_record[k] for k in keys}
        result = {
            "protocol": cfg.protocol,
            "selection": SELECTION[cfg.protocol],
            "metric": cfg.metric,
            "best_epoch": best_epoch,
            "epochs_run": self.epoch,
            "stop_reason": reason,
            "test": test,
            "valid": valid,
            "train_seconds": self.train_seconds,
            "eval_seconds": self.eval_seconds,
            "seconds_per_epoch": self.train_seconds / max(self.epoch, 1),
            "wall_seconds": wall,
            "run_dir": str(self.run.path) if self.run else None,
            "model": cfg.model, "loss": cfg.loss, "dataset": self.data.name, "seed": cfg.seed,
        }
        if cfg.eval_users or cfg.test_users:  # how many users each number is a mean over
            result["evaluated_users"] = {"selection": int(self.select_eval.users.numel()),
                                         "test": int(self.test_eval.users.numel())}
        if self.run is not None:
            # what the run needs to answer from anywhere: scored vectors, ids, seen items
            write_export(self.run.path / EXPORT, self.model, self.data, cfg, epoch=best_epoch,
                         metrics=test, run_dir=self.run.path)
            self.run.write_metrics(result)
        self.callbacks("on_train_end", self, result)
        shown = "  ".join(f"{k} {v:.4f}" for k, v in test.items())
        # the label the README promises: a test result whose epoch was chosen on test says so
        if cfg.protocol == "paper":
            self.echo(f"best epoch {best_epoch} ({reason}); test (test-selected): {shown}")
        else:
            self.echo(f"best epoch {best_epoch} ({reason}; selected on validation); test: {shown}")
        if self.run is not None:
            self.echo(f"run directory: {self.run.path}")
        return result

    def _summary(self, record: dict[str, Any], improved: bool) -> str:
        shown = "  ".join(f"{k} {v:.4f}" for k, v in record.items() if "@" in k)
        ev = self.select_eval
        if ev.sampled and ev.last is not None:  # a sample's mean says how far it can be trusted
            half = ev.intervals().get(self.cfg.metric, float("nan"))
            shown += f"  ({self.cfg.metric} ±{half:.4f} at 95%, {ev.users.numel():,} of " \
                     f"{ev.target.active_users.size:,} users)"
        which = "valid" if self.cfg.protocol == "holdout" else "test"
        return (f"epoch {record['epoch']:>4}  loss {record['loss']:.4f}  [{which}] {shown}  "
                f"({record['train_seconds']:.1f}s + {record['eval_seconds']:.1f}s eval)"
                + ("  *" if improved else ""))
