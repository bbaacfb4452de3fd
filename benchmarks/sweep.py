"""Vectorised sweeps against solo runs: K members in one process vs K solo runs, same batches.

    SSMREC_DATA=../shared/data python benchmarks/sweep.py --dataset gowalla --threads 2 --members 8 \\
        --out benchmarks/results/sweep-gowalla-t2.json

Per workload (model x loss), the K members differ in their initialisation seed and their L2
coefficient (``seed = k``, ``reg = 1e-5 x (k + 1)``; LightGCN members all have the workload's
layers), and all train on the batches and negatives of seed 0:

* solo: each member as a solo :class:`~ssmrec.train.trainer.Trainer` whose sampler is the sweep's
  stream (as ``tests/test_sweep.py`` builds them); its batch time is the median of the timed
  batches; the K solo runs together cost the sum of their medians;
* sweep: one :class:`~ssmrec.sweeps.sweep.Sweep` over the same batches, its median batch time;
* ratio = (sum of the K solo medians) / (sweep median): the wall time of K solo runs over a fixed
  number of batches divided by one sweep's over the same batches (an epoch is 396 batches on
  Gowalla, too long to repeat K + 1 times per workload on a shared machine: the epoch figures are
  median x batches per epoch).

A batch is sampling, forward, loss, backward and the Adam step. Solo and sweep batches are
interleaved in rounds (round r: ``--per-round`` batches of each solo run, then as many of the
sweep), the first round a warm-up, so that all of them see the same load on a shared machine.
Evaluation is timed apart: one full-ranking evaluation of ``--eval-solos`` solo models (their mean
times K) against the sweep's (one forward pass shared, then K evaluations).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings

import torch

from ssmrec.data import DataConfig, load_dataset
from ssmrec.sweeps.sweep import Sweep, keep_freed_memory
from ssmrec.train import TrainConfig, Trainer

WORKLOADS = [("mf", 0, "bpr"), ("mf", 0, "ssm"), ("svdpp", 0, "bpr"), ("svdpp", 0, "ssm"),
             ("lightgcn", 3, "bpr")]


def measure(ds, model, layers, loss, k, rounds, per_round, eval_solos, device, evaluate=True):
    base = TrainConfig.from_dict(dict(dataset=ds.name, model=model, layers=max(layers, 1), loss=loss, seed=0,
                                      device=device, threads=torch.get_num_threads(), progress=False))
    members = [{"seed": j, "reg": 1e-5 * (j + 1)} for j in range(k)]
    sweep = Sweep(base, members, ds, echo=None)
    solos = []
    for over in members:
        t = Trainer(base.replace(over), ds, write=False, echo=None)
        t.sampler = sweep.sampler  # the sweep's stream (seed 0)
        solos.append(t)
    streams = [t.sampler.epoch(0) for t in solos]
    sweep_stream = sweep.sampler.epoch(0)
    solo_times: list[list[float]] = [[] for _ in solos]
    sweep_times: list[float] = []

    def timed(step, stream):
        sync(sweep.device)
        t0 = time.perf_counter()
        step(next(stream))
        sync(sweep.device)
        return time.perf_counter() - t0

    for r in range(rounds + 1):  # round 0: warm-up
        for j, t in enumerate(solos):
            for _ in range(per_round):
                x = timed(lambda b, t=t: t.step(b, 0), streams[j])
                if r:
                    solo_times[j].append(x)
        for _ in range(per_round):
            x = timed(sweep.step, sweep_stream)
            if r:
                sweep_times.append(x)
    solo_medians = [statistics.median(x) for x in solo_times]
    sweep_median = statistics.median(sweep_times)
    # evaluation: a solo model's, and the sweep's (shared forward, then K member evaluations)
    solo_eval, sweep_eval = [], None
    for t in solos[:eval_solos if evaluate else 0]:
        t0 = time.perf_counter()
        t.evaluate(t.select_eval)
        solo_eval.append(time.perf_counter() - t0)
    if evaluate:
        t0 = time.perf_counter()
        sweep.model.eval()
        with torch.no_grad():
            reps = sweep.model()
        for pos in range(len(sweep.live)):
            sweep.select_eval.evaluate(*sweep.model.member_reps(reps, pos))
        sweep_eval = time.perf_counter() - t0
    batches = len(sweep.sampler)
    name = f"{model}{'-' + str(layers) if model == 'lightgcn' else ''} + {loss}"
    row = {
        "workload": name, "model": model, "layers": layers, "loss": loss, "members": k,
        "timed_batches_per_run": rounds * per_round, "batches_per_epoch": batches,
        "solo_median_batch_s": solo_medians, "sweep_median_batch_s": sweep_median,
        "solo_total_per_batch_s": sum(solo_medians),
        "ratio": sum(solo_medians) / sweep_median,
        "solo_epoch_s_each": statistics.mean(solo_medians) * batches,
        "solo_epochs_s_all": sum(solo_medians) * batches,
        "sweep_epoch_s": sweep_median * batches,
        "solo_eval_s_each": statistics.mean(solo_eval) if solo_eval else None,
        "solo_eval_s_all": statistics.mean(solo_eval) * k if solo_eval else None,
        "sweep_eval_s": sweep_eval,
    }
    shown = (f"eval: solo {row['solo_eval_s_each']:.2f} s each, sweep {sweep_eval:.2f} s for {k}"
             if evaluate else "")
    print(f"{name:<22} solo {1e3 * statistics.mean(solo_medians):7.1f} ms/batch each, {k} x = "
          f"{1e3 * sum(solo_medians):8.1f} ms | sweep {1e3 * sweep_median:8.1f} ms | ratio {row['ratio']:.2f} {shown}",
          flush=True)
    return row


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="gowalla")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--rounds", type=int, default=6, help="timed rounds (after one warm-up round)")
    p.add_argument("--per-round", type=int, default=5, help="batches of each run per round")
    p.add_argument("--eval-solos", type=int, default=2, help="solo models whose evaluation is timed")
    p.add_argument("--eval", nargs="*", default=["mf-bpr", "lightgcn3-bpr"],
                   help="workloads whose evaluation is timed (it is not shared: minutes per workload on a busy "
                        "machine)")
    p.add_argument("--only", default=None, help="run workloads whose name contains this text")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    torch.set_num_threads(args.threads)
    allocator = keep_freed_memory()  # the sweep does it anyway: solo runs get the same allocator
    ds = load_dataset(DataConfig(args.dataset), "paper")
    load0 = os.getloadavg()
    t0 = time.time()
    rows = []
    for model, layers, loss in WORKLOADS:
        name = f"{model}{layers or ''}-{loss}"
        if args.only and args.only not in name:
            continue
        rows.append(measure(ds, model, layers, loss, args.members, args.rounds, args.per_round, args.eval_solos,
                            args.device, evaluate=name in args.eval))
    result = {
        "dataset": ds.name, "users": ds.n_users, "items": ds.n_items, "train_pairs": ds.train.nnz,
        "threads": args.threads, "members": args.members, "rounds": args.rounds, "per_round": args.per_round,
        "device": args.device, "torch": torch.__version__, "python": platform.python_version(),
        "cpu": _cpu(), "cores": os.cpu_count(), "glibc_keep_freed_memory": allocator,
        "load_average_before": load0, "load_average_after": os.getloadavg(), "wall_s": time.time() - t0,
        "note": "shared machine: other jobs ran during the measurement (see the load averages); solo and sweep "
                "batches were interleaved so that they saw the same load",
        "rows": rows,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        print(f"wrote {args.out}")


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
