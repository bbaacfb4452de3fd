"""ssmrec speed suite: training epoch, full-ranking evaluation and peak memory, beside a floor and peers.

    python benchmarks/bench.py --datasets gowalla yelp2018 --threads 2 --repeats 3 \
        --out benchmarks/results/bench.json [--peers /work/peers-venv/bin/python]

Every measurement runs in a fresh subprocess (so peak RSS is the workload's own):

* training: median time of ``--batches`` timed batches after ``--warmup`` warm-up batches
  (sampling, forward, loss, backward, optimizer step), extrapolated to the epoch's batch count;
* evaluation: one full-ranking pass over every test user (Recall/NDCG/... @20, training items
  masked) after a warm-up forward pass;
* peak RSS of the process (``ru_maxrss``), data loading included.

The *floor* row times the bare operations the work cannot avoid on this machine: one sparse
product of the whole normalised graph (both blocks), one dense GEMM + top-20 over all users x
items in 4,096-user chunks into a preallocated buffer, one fused Adam step over the embedding
tables. With ``--peers PYTHON`` the same workloads are run with RecBole and PyTorch Geometric
(``benchmarks/peers.py``, in that interpreter, same threads), and the table shows our ratio.
Figures are medians over ``--repeats`` runs; ratios are taken within one invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIGS = [  # (model, layers, loss)
    ("mf", 0, "ssm"), ("mf", 0, "bpr"),
    ("svdpp", 0, "ssm"), ("svdpp", 0, "bpr"),
    ("lightgcn", 1, "ssm"), ("lightgcn", 1, "bpr"),
    ("lightgcn", 3, "ssm"), ("lightgcn", 3, "bpr"),
]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_train(dataset: str, model: str, layers: int, loss: str, batches: int, warmup: int) -> dict:
    import torch

    from ssmrec.data import DataConfig, load_dataset
    from ssmrec.train import TrainConfig, Trainer

    ds = load_dataset(DataConfig(dataset))
    cfg = TrainConfig.from_dict(dict(dataset=dataset, model=model, layers=max(layers, 1), loss=loss,
                                     reg=1e-4 if loss == "bpr" else 1e-5, a0=1.0, progress=False))
    t = Trainer(cfg, ds, write=False, echo=None)
    it = t.sampler.epoch(0)
    times = []
    for k in range(warmup + batches):
        a = time.perf_counter()
        b = next(it)
        value = t.objective(t.model, b)
        t.optimizer.zero_grad(set_to_none=True)
        value.backward()
        t.optimizer.step()
        if k >= warmup:
            times.append(time.perf_counter() - a)
    with torch.no_grad():
        t.model()  # warm-up forward
    a = time.perf_counter()
    metrics = t.evaluate(t.select_eval)
    eval_s = time.perf_counter() - a
    med = statistics.median(times)
    return {"median_batch_s": med, "mean_batch_s": statistics.fmean(times), "epoch_s": med * len(t.sampler),
            "batches_per_epoch": len(t.sampler), "eval_s": eval_s, "recall@20": metrics["recall@20"],
            "peak_rss_mb": _peak_rss_mb()}


def worker_floor(dataset: str, repeats: int = 5) -> dict:
    import torch

    from ssmrec.data import DataConfig, load_dataset
    from ssmrec.models.graph import Propagation, propagation_matrix

    ds = load_dataset(DataConfig(dataset))
    m, n, d = ds.n_users, ds.n_items, 64
    to_users = Propagation(propagation_matrix(ds.train, "user", 0.5, 0.5))
    to_items = Propagation(propagation_matrix(ds.train, "item", 0.5, 0.5))
    u, i = torch.randn(m, d), torch.randn(n, d)

    def timed(fn):
        fn()
        ts = []
        for _ in range(repeats):
            a = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - a)
        return statistics.median(ts)

    prop = timed(lambda: (to_users(i), to_items(u)))
    buf = torch.empty(4096, n)

    def score_topk():
        for s in range(0, m, 4096):
            chunk = u[s : s + 4096]
            out = buf[: chunk.shape[0]]
            torch.mm(chunk, i.T, out=out)
            torch.topk(out, 20, dim=1)

    gemm = timed(score_topk)
    params = [torch.nn.Parameter(torch.randn(m, d)), torch.nn.Parameter(torch.randn(n, d))]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = torch.optim.Adam(params, lr=1e-3, fused=True)
    step = timed(opt.step)
    return {"propagation_s": prop, "score_topk_all_users_s": gemm, "adam_step_s": step,
            "graph_nnz": int(2 * ds.train.nnz), "peak_rss_mb": _peak_rss_mb()}


def run_sub(args: list[str], threads: int, python: str = sys.executable, env_extra: dict | None = None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), **(env_extra or {})}
    out = subprocess.run([python, *args], capture_output=True, text=True, env=env, timeout=3600)
    if out.returncode:
        return {"error": (out.stderr or out.stdout).strip().splitlines()[-1:] or ["failed"]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    out = {}
    for k, v in ok[0].items():
        vals = [r[k] for r in ok if isinstance(r.get(k), (int, float))]
        out[k] = statistics.median(vals) if isinstance(v, (int, float)) and vals else v
    out["runs"] = len(ok)
    return out


def machine() -> dict:
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["gowalla"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--only", nargs="*", default=None, help="configs like lightgcn:3:bpr")
    p.add_argument("--peers", default=None, help="python interpreter with recbole / torch_geometric")
    p.add_argument("--out", default=None)
    p.add_argument("--worker", nargs="*", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    warnings.filterwarnings("ignore")

    if a.worker is not None:
        import torch

        torch.set_num_threads(a.threads)
        kind, dataset, *rest = a.worker
        if kind == "floor":
            res = worker_floor(dataset)
        else:
            model, layers, loss = rest[0], int(rest[1]), rest[2]
            res = worker_train(dataset, model, layers, loss, a.batches, a.warmup)
        print(json.dumps(res))
        return

    me = [str(Path(__file__).resolve()), "--threads", str(a.threads), "--batches", str(a.batches),
          "--warmup", str(a.warmup), "--worker"]
    report = {"machine": machine(), "threads": a.threads, "repeats": a.repeats, "batches": a.batches,
              "warmup": a.warmup, "datasets": {}}
    for dataset in a.datasets:
        rows = {}
        rows["floor"] = median_of([run_sub([*me, "floor", dataset], a.threads) for _ in range(a.repeats)])
        f = rows["floor"]
        print(f"[{dataset}] floor: propagation {f.get('propagation_s', 0):.3f} s, score+top20 all users "
              f"{f.get('score_topk_all_users_s', 0):.2f} s, Adam step {f.get('adam_step_s', 0) * 1e3:.1f} ms",
              flush=True)
        for model, layers, loss in CONFIGS:
            key = f"{model}:{layers}:{loss}"
            if a.only and key not in a.only:
                continue
            runs = [run_sub([*me, "train", dataset, model, str(layers), loss], a.threads) for _ in range(a.repeats)]
            rows[key] = median_of(runs)
            print(line(dataset, key, rows[key]), flush=True)
        if a.peers and dataset == "gowalla":
            for peer in ("recbole", "pyg-csr", "pyg-edge"):
                runs = []
                for _ in range(a.repeats):
                    out = Path(f"/tmp/peer-{peer}.json")
                    res = subprocess.run([a.peers, str(HERE / "peers.py"), "--peer", peer, "--threads", str(a.threads),
                                          "--batches", str(a.batches), "--warmup", str(a.warmup), "--out", str(out)],
                                         capture_output=True, text=True, timeout=7200,
                                         env={**os.environ, "OMP_NUM_THREADS": str(a.threads)})
                    runs.append(json.loads(out.read_text()) if res.returncode == 0 and out.exists()
                                else {"error": res.stderr.strip().splitlines()[-1:]})
                rows[f"peer:{peer}"] = median_of(runs)
                print(line(dataset, peer, rows[f"peer:{peer}"]), flush=True)
        report["datasets"][dataset] = rows
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))


def line(dataset: str, name: str, r: dict) -> str:
    nan = float("nan")
    return (f"[{dataset}] {name:<16} epoch {r.get('epoch_s', nan):7.1f} s  batch "
            f"{r.get('median_batch_s', nan) * 1e3:7.1f} ms  eval {r.get('eval_s', nan):5.2f} s  "
            f"RSS {r.get('peak_rss_mb', nan):6.0f} MB")


def markdown(report: dict) -> str:
    """The tables BENCHMARKS.md shows, from a report."""
    lines = []
    for dataset, rows in report["datasets"].items():
        lines += [f"\n### {dataset} ({report['threads']} threads, median of {report['repeats']} runs)\n",
                  "| workload | training epoch | median batch | full-ranking evaluation | peak RSS |",
                  "|---|---|---|---|---|"]
        for key, r in rows.items():
            if key == "floor" or "error" in r:
                continue
            lines.append(f"| {key} | {r['epoch_s']:.1f} s | {r['median_batch_s'] * 1e3:.1f} ms | "
                         f"{r['eval_s']:.2f} s | {r['peak_rss_mb']:.0f} MB |")
        f = rows.get("floor", {})
        if "propagation_s" in f:
            lines.append(f"| floor: one full graph propagation / score + top-20 of all users / fused Adam step | "
                         f"{f['propagation_s'] * 1e3:.0f} ms | | {f['score_topk_all_users_s']:.2f} s | "
                         f"{f['peak_rss_mb']:.0f} MB |")
        peers = {k: r for k, r in rows.items() if k.startswith("peer:") and "error" not in r}
        ours = rows.get("lightgcn:3:bpr")
        if peers and ours and "error" not in ours:
            lines += ["", "| 3-layer LightGCN + BPR | epoch | ours vs it | evaluation | ours vs it | peak RSS |",
                      "|---|---|---|---|---|---|",
                      f"| ssmrec | {ours['epoch_s']:.1f} s | 1.0x | {ours['eval_s']:.2f} s | 1.0x | "
                      f"{ours['peak_rss_mb']:.0f} MB |"]
            for k, r in peers.items():
                lines.append(f"| {k[5:]} {r.get('version', '')} | {r['epoch_s']:.1f} s | "
                             f"{r['epoch_s'] / ours['epoch_s']:.1f}x faster | {r['eval_s']:.2f} s | "
                             f"{r['eval_s'] / ours['eval_s']:.1f}x faster | {r['peak_rss_mb']:.0f} MB |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
