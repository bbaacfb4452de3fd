"""Median batch time (extrapolated to an epoch) and full evaluation time per model x loss.

    python benchmarks/epoch_times.py --dataset gowalla --device cpu --threads 2 --out epoch_times.json

Warm-up batches are excluded; the epoch figure is the median batch time times the number of batches.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import torch

from ssmrec.data import DataConfig, load_dataset
from ssmrec.train import TrainConfig, Trainer

CONFIGS = [
    ("mf", 0, "ssm"), ("mf", 0, "bpr"), ("svdpp", 0, "ssm"), ("svdpp", 0, "bpr"),
    ("lightgcn", 1, "ssm"), ("lightgcn", 1, "bpr"), ("lightgcn", 3, "ssm"), ("lightgcn", 3, "bpr"),
    ("lightgcn", 1, "bce"), ("lightgcn", 1, "softmax"), ("lightgcn", 1, "ccl"),
    # the losses after the study (in-batch, as SSM)
    *[(m, layers, loss) for m, layers in (("mf", 0), ("lightgcn", 1))
      for loss in ("bsl", "psl", "adaptau", "slk", "clogq")],
]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(ds, model, layers, loss, device, batches, warmup, threads):
    cfg = TrainConfig.from_dict(dict(dataset=ds.name, model=model, layers=max(layers, 1), loss=loss,
                                     device=str(device), threads=threads, progress=False, a0=1.0))
    t = Trainer(cfg, ds, write=False, echo=None)
    it = t.sampler.epoch(0)
    times = []
    for k in range(warmup + batches):
        sync(t.device)
        a = time.perf_counter()
        b = next(it).to(t.device)
        value = t.objective(t.model, b)
        t.optimizer.zero_grad(set_to_none=True)
        value.backward()
        t.optimizer.step()
        sync(t.device)
        if k >= warmup:
            times.append(time.perf_counter() - a)
    med = statistics.median(times)
    refresh_s = None
    hook = getattr(t.objective.loss, "on_epoch_start", None)
    if hook is not None:  # a stateful loss's refresh before an epoch: once to allocate, then timed
        from ssmrec.train.scorer import ModelScorer

        scorer = lambda: ModelScorer(t.model, ds.train, t.objective.loss.similarity, t.device)  # noqa: E731
        hook(1, scorer())
        epoch = max(getattr(t.objective.loss, "refresh_every", 1), getattr(t.objective.loss, "warmup", 0) + 1)
        sync(t.device)
        a = time.perf_counter()
        hook(epoch, scorer())
        sync(t.device)
        refresh_s = time.perf_counter() - a
    sync(t.device)
    a = time.perf_counter()
    t.evaluate(t.select_eval)
    sync(t.device)
    return {"model": model, "layers": layers, "loss": loss, "median_batch_s": med,
            "epoch_s": med * len(t.sampler), "batches": len(t.sampler), "eval_s": time.perf_counter() - a,
            "refresh_s": refresh_s}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="gowalla")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--only", nargs="*", default=None, help="e.g. lightgcn:1:ssm")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    warnings.filterwarnings("ignore")
    if a.threads:
        torch.set_num_threads(a.threads)
    ds = load_dataset(DataConfig(a.dataset))
    rows = []
    for model, layers, loss in CONFIGS:
        if a.only and f"{model}:{layers}:{loss}" not in a.only:
            continue
        r = measure(ds, model, layers, loss, torch.device(a.device), a.batches, a.warmup, a.threads)
        rows.append(r)
        name = f"{model}{'-' + str(layers) if model == 'lightgcn' else ''}+{loss}"
        refresh = f"  refresh {r['refresh_s']:6.2f} s" if r["refresh_s"] is not None else ""
        print(f"{name:<18} batch {r['median_batch_s'] * 1e3:8.2f} ms  epoch {r['epoch_s']:8.1f} s  "
              f"eval {r['eval_s']:6.2f} s{refresh}", flush=True)
    if a.out:
        env = {"device": a.device, "threads": torch.get_num_threads(), "torch": torch.__version__,
               "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
        with open(a.out, "w") as f:
            json.dump({"dataset": a.dataset, "env": env, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
