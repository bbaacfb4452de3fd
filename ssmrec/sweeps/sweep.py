"""Vectorised sweeps: K configurations of one model and one loss trained in one process, over
one batch stream.

A sweep's members differ only in settings that leave the batch stream and the shared work alone:
``seed`` (initialisation only), ``reg``, ``tau`` (ssm / softmax), ``layers`` (LightGCN),
``margin`` and ``neg_weight`` (CCL), ``a0`` and ``a1`` (SVD++; they must then be equal across
members, see below). Every member sees the batches and negatives of the base configuration's
seed — common random numbers: differences between members come from their settings, not from
sampling noise, which makes a sweep good for comparing settings; for independent repetitions,
run sweeps with different base seeds.

The members' tables are stacked (:mod:`ssmrec.sweeps.stacked`) and trained by one Adam
(fused where torch has it, as a solo run): Adam is elementwise, the objective is the sum over
members of (member loss + member reg x L2), so each member's slice follows the trajectory of its
solo run (:class:`~ssmrec.train.trainer.Trainer` with the base seed's stream) to float rounding.
The work shared: one sampled batch (negatives included), index arithmetic, one sparse product
per propagation layer for every member (over ``[N, K*d]``), batched score products. What stays
per member: the score matrices themselves (for ssm a B x B product and softmax per member), Adam
over the member's tables, and evaluation (one shared forward pass, then the solo metric code,
:meth:`Evaluator.evaluate`, on each member's representations).

Each member evaluates, early-stops and checkpoints on its own; a member that stops is sliced out
of the stacked tables and of Adam's state, so the survivors go faster. SVD++ members share one
propagation matrix, so members whose ``a0``/``a1`` differ are refused (run one sweep per pair of
exponents).

Records: ``run_dir/member-<k>/`` is a run directory like a solo run's (``config.json`` with the
member's settings plus a ``sweep`` entry naming the stream seed, ``history.jsonl``, ``best.pt``,
``metrics.json``, ``export/``), so ``ssmrec evaluate``, ``recommend``, ``plot`` and
:meth:`ssmrec.Recommender.from_run` read a member as a run. ``run_dir/sweep.json`` summarises the members.

Interruptions: a sweep with a run directory writes ``run_dir/last.pt`` (the stacked tables, Adam's
state, every member's history, stopper and counters, and the position in the batch stream) every
``checkpoint_every`` seconds, at the step or epoch end where they run out, not after every epoch
as a solo run does: K members' tables and Adam's state are K times a solo run's checkpoint, too
much to write after every short GPU epoch (``checkpoint_every = 0``: at every epoch's end).
SIGINT / SIGTERM stop it at the next step with a checkpoint; :meth:`Sweep.resume` (``ssmrec sweep --resume DIR``)
continues from there, over the same batches, so a resumed sweep ends where the uninterrupted one
would (``kill -9`` loses the steps since the last checkpoint, nothing before it). A member is
resumed with its sweep, not on its own. The checkpoint's code is
:mod:`ssmrec.sweeps.checkpoint`.

(Past 500 lines on purpose: one class, whose setup, step, evaluation, stopping and records share
the members' state — stacked tables, the optimizer, the live list; its models are in
:mod:`~ssmrec.sweeps.stacked` and its checkpoint in :mod:`~ssmrec.sweeps.checkpoint` already.)
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ssmrec.data.dataset import Dataset, load_dataset
from ssmrec.errors import ConfigError, TrainingError
from ssmrec.eval.evaluator import Evaluator
from ssmrec.losses import build_loss, canonical
from ssmrec.models import build_model
from ssmrec.sweeps.checkpoint import BEST_AT_CHECKPOINT, LOCK, SUMMARY, SweepCheckpoints
from ssmrec.sweeps.members import SWEEPABLE, describe, member_configs, model_key, parse_member
from ssmrec.sweeps.stacked import BUILT_IN, StackedLightGCN, StackedMF, StackedObjective, StackedSVDPP
from ssmrec.train.callbacks import EarlyStopping
from ssmrec.train.config import TrainConfig
from ssmrec.train.config_io import save_json
from ssmrec.train.export import write_export
from ssmrec.train.objective import build_objective
from ssmrec.train.run import BEST, EXPORT, LAST, PidLock, RunDir, check_new_run_dir, default_run_dir, environment
from ssmrec.train.setup import auto_threads, data_location, make_optimizer, resolve_device
from ssmrec.train.signals import StopRequest
from ssmrec.train.trainer import SELECTION


def keep_freed_memory() -> bool:
    """Make glibc keep and reuse large freed blocks (process-wide; a no-op elsewhere).

    A sweep's tensors are K times a solo run's: tables, gradients and propagation outputs of
    tens to hundreds of MB, above glibc's mmap threshold (at most 32 MB by default), so each
    step would map fresh pages for them, fault them in and unmap them again. Raising the mmap
    and trim thresholds serves them from the heap instead (measured on Gowalla, MF + BPR,
    K = 8: half the step time). ``SSMREC_KEEP_FREED_MEMORY=0`` in the environment turns it off.
    Returns whether the setting was applied."""
    import ctypes
    import platform

    if os.environ.get("SSMREC_KEEP_FREED_MEMORY") == "0":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
        ok = libc.mallopt(m_mmap_threshold, 1 << 30) or libc.mallopt(m_mmap_threshold, 32 << 20)
        return bool(ok and libc.mallopt(m_trim_threshold, (1 << 31) - 1))
    except (OSError, AttributeError):
        return False


def check_new_sweep_dir(path: str | Path) -> None:
    """Refuse, before any work, a folder that cannot take a new sweep (see
    :func:`~ssmrec.train.run.check_new_run_dir`; a folder holding a sweep is refused too)."""
    p = Path(path)
    check_new_run_dir(p)
    if p.is_dir() and ((p / SUMMARY).exists() or any(p.glob("member-*"))):
        raise ConfigError(f"out: {p} already holds a sweep; choose another --out")


def default_sweep_dir(cfg: TrainConfig, root: str | Path = "runs") -> Path:
    """``runs/<dataset>-<model>-<loss>-sweep-<time>`` (numbered if taken)."""
    return default_run_dir(cfg, root, kind="sweep")


@dataclass
class Member:
    """One configuration of a sweep: its settings, its stopper, its history and its records."""

    index: int
    overrides: dict[str, Any]
    cfg: TrainConfig
    stopper: EarlyStopping
    run: RunDir | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str | None = None  # None while training
    error: str | None = None
    epochs_run: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    best: dict[str, Any] | None = None  # in memory, when there is no run directory
    result: dict[str, Any] | None = None
    partial: dict[str, float] = field(default_factory=lambda: {"loss": 0.0, "l2": 0.0, "batches": 0})

    @property
    def label(self) -> str:
        return describe(self.overrides)


class Sweep(SweepCheckpoints):
    """Train K configurations of one model and one loss at once over one batch stream.

    Args:
        base_cfg: the shared settings; its ``seed`` seeds the batch stream (and the
            initialisation of members that do not set their own).
        members: one dict of overrides per member, with keys from :data:`SWEEPABLE`.
        dataset: the data (default: loaded from ``base_cfg``).
        run_dir: where to write (``member-<k>/`` run directories and ``sweep.json``); a folder
            that already holds a run is refused. Default: nothing is written, best models are
            kept in memory.
        echo: where progress lines go (default: ``print``); ``None`` for silence.

    Constructing a sweep calls :func:`keep_freed_memory` (glibc's allocator keeps large freed
    blocks for reuse: process-wide).

    Attributes:
        members: the :class:`Member` objects, in the given order.
        live: indices of the members still training, in the order of the stacked tables.
        model, objective, optimizer, sampler: the stacked model, the per-member objective, the
            one Adam and the base configuration's batch sampler.
    """

    def __init__(self, base_cfg: TrainConfig, members: list[dict[str, Any]], dataset: Dataset | None = None,
                 run_dir: str | Path | None = None, *, echo: Callable[[str], None] | None = print,
                 resuming: bool = False):
        self.cfg = cfg = base_cfg
        cfgs = member_configs(cfg, members)
        self.echo = echo or (lambda s: None)
        self.path = Path(run_dir) if run_dir is not None else None
        if self.path is not None and not resuming:
            check_new_sweep_dir(self.path)
        keep_freed_memory()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = resolve_device(cfg.device)
        self.data = dataset if dataset is not None else load_dataset(cfg.data_config(), cfg.protocol)
        if not cfg.threads and self.device.type == "cpu":  # as a solo run's --threads 0
            torch.set_num_threads(auto_threads(self.data.train.nnz))
        if max(cfg.ks) > self.data.n_items:
            raise ConfigError(f"ks: K {max(cfg.ks)} is larger than the {self.data.n_items} items of {self.data.name}")
        train = self.data.train
        seeds, key = [c.seed for c in cfgs], model_key(cfg.model)
        if key == "mf":
            model = StackedMF(train.n_users, train.n_items, cfg.dim, seeds)
        elif key == "svdpp":
            model = StackedSVDPP(train, cfg.dim, seeds, side=cfgs[0].side, a0=cfgs[0].a0, a1=cfgs[0].a1)
        else:
            model = StackedLightGCN(train, cfg.dim, seeds, [c.layers for c in cfgs])
        self.model = model.to(self.device)
        solo, self.sampler = build_objective(cfg, train)  # the stream of base_cfg.seed
        name = canonical(cfg.loss)
        member_losses = None
        if name not in BUILT_IN:  # one loss module per member (stateful losses: refused by member_configs)
            member_losses = [build_loss(name, tau=c.tau, similarity=c.similarity, margin=c.margin,
                                        weight=c.neg_weight, mask_duplicates=c.mask_duplicates,
                                        params=c.loss_params, seed=c.seed) for c in cfgs]
        self.objective = StackedObjective(solo.to(self.device), name,
                                          tau=[c.tau for c in cfgs], margin=[c.margin for c in cfgs],
                                          neg_weight=[c.neg_weight for c in cfgs], reg=[c.reg for c in cfgs],
                                          member_losses=member_losses)
        self.optimizer = make_optimizer(self.model, cfg.lr, self.device)
        common = dict(ks=cfg.ks, similarity=cfg.scoring, chunk_size=cfg.eval_chunk, device=self.device)
        # as a solo run's (Trainer): known dislikes are excluded too, and counted by dislike@K
        d, dis = self.data, self.data.dislikes
        # and as a solo run's: selection on eval_users, test on test_users (0: all users)
        self.test_eval = Evaluator(d.test, d.exclusions("test"), dislikes=dis.get("test"), sample=cfg.test_users,
                                   seed=cfg.seed, **common)
        if cfg.protocol == "holdout":
            self.select_eval = Evaluator(d.valid, d.exclusions("valid"), dislikes=dis.get("valid"),
                                         sample=cfg.eval_users, seed=cfg.seed, **common)
        elif cfg.eval_users == cfg.test_users:
            self.select_eval = self.test_eval
        else:
            self.select_eval = Evaluator(d.test, d.exclusions("test"), dislikes=dis.get("test"),
                                         sample=cfg.eval_users, seed=cfg.seed, **common)
        # a loss parameter given as text (a flag) is shown typed, as the member's config holds it
        typed = [{k: c.loss_params[k] if k in c.loss_params and k not in TrainConfig.field_names() else v
                  for k, v in over.items()} for over, c in zip(members, cfgs)]
        self.members = [Member(j, over, c, EarlyStopping(cfg.metric, cfg.patience))
                        for j, (over, c) in enumerate(zip(typed, cfgs))]
        self.live = list(range(len(self.members)))
        self.epoch = 0  # epochs done
        self.batch = 0  # batches of the current epoch done
        self.epoch_seconds = 0.0  # training seconds of the current epoch so far (across a resume)
        self.stop = StopRequest(quiet=True)  # replaced by the live one during fit()
        self.resume_hint = f"ssmrec sweep --resume {self.path}"  # what an interrupted sweep says to run
        self.train_seconds = self.eval_seconds = 0.0
        self._solo_models: dict[int, torch.nn.Module] = {}
        # called after each member's evaluation as on_eval(member, epoch, metrics); True stops it
        self.on_eval: Callable[[Member, int, dict[str, float]], bool] | None = None
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
            record = {"env": environment(), "data": _data_record(cfg, self.data)}
            for m in self.members:
                m.run = RunDir(self.path / f"member-{m.index}")
                m.cfg = m.cfg.replace({"out": str(m.run.path)}, source=f"member {m.index}")
                if resuming and m.run.exists():
                    was = m.run.record().get("data", {}).get("fingerprint")
                    if was and was != record["data"]["fingerprint"]:
                        raise TrainingError(f"{m.run.path}: the dataset differs from the one this sweep was "
                                            "trained on (train fingerprint changed); cannot resume")
                else:
                    m.run.create(m.cfg, {**record, "sweep": self._member_note(m)})
            self._write_summary(status="running")

    def _member_note(self, m: Member) -> dict[str, Any]:
        return {"dir": str(self.path.resolve()) if self.path else None, "member": m.index,
                "members": len(self.members), "overrides": m.overrides, "stream_seed": self.cfg.seed,
                "note": f"batch order and negatives are those of seed {self.cfg.seed} (shared by the "
                        f"sweep's members); seed {m.cfg.seed} initialised the model"}

    # ------------------------------------------------------------------ training
    def step(self, batch) -> tuple[list[float], list[float]]:
        """One Adam step of every live member from one batch; returns each live member's loss
        (its objective, L2 term included, as a solo run reports it) and its L2 term (reg x L2)."""
        batch = batch.to(self.device)
        main, l2 = self.objective(self.model, batch)
        reg_term = None if l2 is None else self.objective.values("reg", main) * l2
        values = main if reg_term is None else main + reg_term
        self.optimizer.zero_grad(set_to_none=True)
        values.sum().backward()  # member j's slice gets member j's gradient
        self.optimizer.step()
        losses = values.detach().tolist()
        return losses, ([0.0] * len(losses) if reg_term is None else reg_term.detach().tolist())

    def train_epoch(self, epoch: int) -> float:
        """Run the remaining batches of one epoch over the live members (from :attr:`batch`, where
        a resumed sweep left off); returns the epoch's training seconds."""
        cfg = self.cfg
        self.model.train()
        bar = tqdm(total=len(self.sampler), initial=self.batch, desc=f"epoch {epoch + 1}", unit="batch",
                   leave=False, disable=not cfg.progress, dynamic_ncols=True)
        t0 = time.perf_counter()
        try:
            for batch in self.sampler.epoch(epoch, start=self.batch):
                losses, regs = self.step(batch)
                self.batch = batch.index + 1
                diverged = []
                for j, value, reg in zip(self.live, losses, regs):
                    m = self.members[j]
                    m.partial["loss"] += value
                    m.partial["l2"] += reg
                    m.partial["batches"] += 1
                    if not math.isfinite(value):
                        m.stop_reason = "diverged"
                        m.error = (f"the loss became {value} at epoch {epoch + 1}, batch {batch.index} "
                                   f"({m.label}, loss={m.cfg.loss}, tau={m.cfg.tau}, lr={m.cfg.lr}, "
                                   f"reg={m.cfg.reg}); lower lr or raise tau")
                        m.epochs_run = epoch
                        diverged.append(j)
                        self.echo(f"member {j} [{m.label}] stops: {m.error}")
                self._drop(diverged)
                bar.update(1)
                if not self.live:
                    break
                if self.stop.requested:  # a safe point: the step and every member's counters are complete
                    self.epoch_seconds += time.perf_counter() - t0
                    self._checkpoint()
                    raise self._interrupted(f"epoch {epoch + 1}, batch {self.batch}")
                if self.path is not None and cfg.checkpoint_every and self._checkpoint_due():
                    self.epoch_seconds += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    self._checkpoint()
        finally:
            bar.close()
        self.epoch_seconds += time.perf_counter() - t0
        return self.epoch_seconds

    def fit(self) -> list[dict[str, Any]]:
        """Train until ``epochs``, each member until its early stop, or the time budget; returns
        each member's final result (what ``metrics.json`` holds), in member order."""
        lock = PidLock(self.path / LOCK) if self.path is not None else None
        if lock is not None and not lock.acquire():
            raise ConfigError(f"{self.path} is being trained by process {lock.holder()}; wait for it or stop it "
                              "(its checkpoint lets it resume)")
        try:
            with StopRequest(quiet=False) as self.stop:
                return self._fit()
        finally:
            if lock is not None:
                lock.release()

    def _fit(self) -> list[dict[str, Any]]:
        cfg = self.cfg
        wall0 = time.perf_counter()
        self._last_checkpoint = time.time()
        which = "valid" if cfg.protocol == "holdout" else "test"
        for epoch in range(self.epoch, cfg.epochs):
            if not self.live:
                break
            seconds = self.train_epoch(epoch)
            self.train_seconds += seconds
            evaluate = (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs
            reps, forward_s = None, 0.0
            if evaluate and self.live:
                t0 = time.perf_counter()
                self.model.eval()
                with torch.no_grad():
                    reps = self.model()
                forward_s = time.perf_counter() - t0
                self.eval_seconds += forward_s
            for pos, j in enumerate(self.live):
                m = self.members[j]
                record: dict[str, Any] = {"epoch": epoch + 1, "loss": m.partial["loss"] / max(m.partial["batches"], 1),
                                          "l2": m.partial["l2"] / max(m.partial["batches"], 1),
                                          "train_seconds": seconds}
                m.train_seconds += seconds
                if reps is not None:
                    t0 = time.perf_counter()
                    metrics = self.select_eval.evaluate(*self.model.member_reps(reps, pos))
                    spent = time.perf_counter() - t0
                    self.eval_seconds += spent
                    record.update(metrics)
                    record["eval_seconds"] = spent + forward_s
                    m.eval_seconds += spent + forward_s
                    improved = m.stopper.step(epoch + 1, metrics)
                    if improved:
                        self._save_best(m, pos, epoch + 1, metrics)
                    shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                    self.echo(f"epoch {epoch + 1:>4}  member {j} [{m.label}]  loss {record['loss']:.4f}  "
                              f"[{which}] {shown}" + ("  *" if improved else ""))
                    if self.on_eval is not None and self.on_eval(m, epoch + 1, metrics):
                        m.stop_reason = "pruned"  # a tuner's pruner stopped it (ssmrec.sweeps.tuning)
                record["elapsed_seconds"] = m.train_seconds + m.eval_seconds
                m.history.append(record)
                m.epochs_run = epoch + 1
                m.partial = {"loss": 0.0, "l2": 0.0, "batches": 0}
                if m.run is not None:
                    m.run.write_history(m.history)
                if m.stopper.should_stop:
                    m.stop_reason = "early_stopped"
            self.epoch = epoch + 1
            if cfg.max_seconds and self.train_seconds + self.eval_seconds >= cfg.max_seconds:
                for j in self.live:
                    self.members[j].stop_reason = self.members[j].stop_reason or "time_budget"
            stopped = [j for j in self.live if self.members[j].stop_reason]
            for j in stopped:
                m = self.members[j]
                self.echo(f"member {j} [{m.label}] stops: {m.stop_reason} at epoch {m.epochs_run} (best epoch "
                          f"{m.stopper.best_epoch}); {len(self.live) - len(stopped)} still training")
            self._drop(stopped)
            self.batch, self.epoch_seconds = 0, 0.0
            if self.live:
                if self.stop.requested or not cfg.checkpoint_every or self._checkpoint_due():
                    self._checkpoint()
                if self.stop.requested:  # after the evaluation and the epoch's checkpoint
                    raise self._interrupted(f"the end of epoch {epoch + 1}")
        for j in self.live:
            self.members[j].stop_reason = "max_epochs"
        results = self.finish(time.perf_counter() - wall0)
        if self.path is not None:  # finished: the members' best.pt and export/ are what stays
            (self.path / LAST).unlink(missing_ok=True)
            for m in self.members:
                if m.run is not None:
                    (m.run.path / BEST_AT_CHECKPOINT).unlink(missing_ok=True)
        return results

    def _drop(self, gone: list[int]) -> None:
        """Slice the members ``gone`` out of the stacked tables, the objective and Adam's state."""
        if not gone:
            return
        keep = [pos for pos, j in enumerate(self.live) if j not in gone]
        self.live = [self.live[pos] for pos in keep]
        if not self.live:
            return
        old = [(p, self.optimizer.state.get(p)) for p in self.model.parameters()]
        self.model.keep(keep)
        self.objective.keep(keep)
        self.optimizer = make_optimizer(self.model, self.cfg.lr, self.device)
        for p, (_, state) in zip(self.model.parameters(), old):
            if state:  # exp_avg, exp_avg_sq sliced like the tables; step is shared by all members
                self.optimizer.state[p] = {k: v[:, keep].contiguous() if v.dim() == p.dim() else v.clone()
                                           for k, v in state.items()}

    def _save_best(self, m: Member, pos: int, epoch: int, metrics: dict[str, float]) -> None:
        state = {"model": self.model.member_state(pos), "epoch": epoch, "metrics": metrics}
        if m.run is not None:
            m.run.save(BEST, state)
        else:
            m.best = state

    # ------------------------------------------------------------------ results
    def solo_model(self, m: Member) -> torch.nn.Module:
        """A solo model of member ``m``'s kind (weights not loaded; one per layer count)."""
        key = m.cfg.layers if model_key(self.cfg.model) == "lightgcn" else 0
        if key not in self._solo_models:
            c = m.cfg
            self._solo_models[key] = build_model(c.model, self.data.train, c.dim, layers=c.layers, side=c.side,
                                                 a0=c.a0, a1=c.a1).to(self.device)
        return self._solo_models[key]

    def best_model(self, m: Member) -> torch.nn.Module | None:
        """Member ``m``'s best model as a solo model in eval mode (None before any evaluation)."""
        best = m.run.load(BEST, self.device) if m.run is not None else m.best
        if best is None:
            return None
        model = self.solo_model(m)
        model.load_state_dict(best["model"])
        return model.eval()

    def finish(self, wall: float) -> list[dict[str, Any]]:
        """Each member's result (test once at its best epoch under holdout), its ``metrics.json``
        and ``export/``; the table of members; ``sweep.json``."""
        cfg = self.cfg
        for m in self.members:
            model = self.best_model(m)
            best_epoch = m.stopper.best_epoch
            best_record = next((h for h in m.history if h["epoch"] == best_epoch), {})
            keys = [k for k in best_record if "@" in k]
            if cfg.protocol == "holdout" or self.select_eval is not self.test_eval:
                valid = {k: best_record[k] for k in keys} if cfg.protocol == "holdout" else None
                test = {}
                if model is not None:
                    t0 = time.perf_counter()
                    test = self.test_eval.evaluate_model(model)
                    m.eval_seconds += time.perf_counter() - t0
            else:
                valid, test = None, {k: best_record[k] for k in keys}
            m.result = {
                "protocol": cfg.protocol, "selection": SELECTION[cfg.protocol], "metric": cfg.metric,
                "best_epoch": best_epoch, "epochs_run": m.epochs_run, "stop_reason": m.stop_reason,
                "test": test, "valid": valid, "train_seconds": m.train_seconds, "eval_seconds": m.eval_seconds,
                "seconds_per_epoch": m.train_seconds / max(m.epochs_run, 1), "wall_seconds": wall,
                "run_dir": str(m.run.path) if m.run else None,
                "model": cfg.model, "loss": cfg.loss, "dataset": self.data.name, "seed": m.cfg.seed,
                "sweep": self._member_note(m),
            }
            if m.error:
                m.result["error"] = m.error
            if m.run is not None:
                if model is not None:
                    write_export(m.run.path / EXPORT, model, self.data, m.cfg, epoch=best_epoch, metrics=test,
                                 run_dir=m.run.path)
                m.run.write_metrics(m.result)
        for line in self.table():
            self.echo(line)
        if self.path is not None:
            self._write_summary(status="finished", wall=wall)
            self.echo(f"sweep directory: {self.path}")
        return [m.result for m in self.members]

    def table(self) -> list[str]:
        """One line per member: settings, best epoch, test metric, epochs run, stop reason."""
        metric = self.cfg.metric
        width = max(8, *(len(m.label) for m in self.members))
        head = ("test-selected " if self.cfg.protocol == "paper" else "test ") + metric  # chosen on test?
        w = max(16, len(head))
        lines = [f"{'member':>6}  {'settings':<{width}}  {'best epoch':>10}  {head:>{w}}  "
                 f"{'epochs':>6}  stop"]
        for m in self.members:
            value = (m.result or {}).get("test", {}).get(metric)
            shown = f"{value:.4f}" if value is not None else "-"
            lines.append(f"{m.index:>6}  {m.label:<{width}}  {m.stopper.best_epoch:>10}  {shown:>{w}}  "
                         f"{m.epochs_run:>6}  {m.stop_reason or 'training'}")
        return lines

    def summary(self, status: str = "finished", wall: float | None = None) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "status": status, "dataset": self.data.name, "model": cfg.model, "loss": cfg.loss,
            "stream_seed": cfg.seed, "metric": cfg.metric, "protocol": cfg.protocol,
            "note": "members share batch order and negatives (common random numbers: those of stream_seed); "
                    "their own seed initialises their model",
            "base": cfg.to_dict(),
            "train_seconds": self.train_seconds, "eval_seconds": self.eval_seconds, "wall_seconds": wall,
            "members": [{
                "member": m.index, "overrides": m.overrides, "run_dir": str(m.run.path) if m.run else None,
                "stop_reason": m.stop_reason, "epochs_run": m.epochs_run, "best_epoch": m.stopper.best_epoch,
                "best_value": m.stopper.best if math.isfinite(m.stopper.best) else None,
                "test": (m.result or {}).get("test"), "valid": (m.result or {}).get("valid"),
                **({"error": m.error} if m.error else {}),
            } for m in self.members],
        }

    def _write_summary(self, status: str, wall: float | None = None) -> None:
        save_json(self.path / SUMMARY, self.summary(status, wall))


def _data_record(cfg: TrainConfig, d: Dataset) -> dict[str, Any]:
    """What a solo run's ``config.json`` records about its data (see ``Trainer._data_record``)."""
    return {"name": d.name, "source": d.source, "location": data_location(cfg, d),
            "fingerprint": d.train.fingerprint(), "users": d.n_users, "items": d.n_items,
            "train": d.train.nnz, "test": d.test.nnz, "valid": d.valid.nnz if d.valid is not None else 0}


__all__ = ["SWEEPABLE", "Member", "Sweep", "TrainingError", "check_new_sweep_dir", "default_sweep_dir", "describe",
           "keep_freed_memory", "member_configs", "parse_member"]
