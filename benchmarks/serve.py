"""Serving indexes on a trained export: build time, memory, QPS and latency, recall.

    SSMREC_DATA=../shared/data python benchmarks/serve.py runs/serve-gowalla runs/serve-yelp2018 \\
        --threads 2 --repeats 3 --out benchmarks/results/serve-t2.json

Per run (its ``export/``) and per index (numpy ``Export.recommend`` as ``ssmrec recommend`` answers,
faiss exact, HNSW at several efSearch, IVF at several nprobe), with top-20 and seen items excluded:

* build: seconds to build (IVF: k-means included); index bytes (serialised size) and the process's
  RSS growth while building;
* single queries: ``--single`` random test users one call each, QPS = calls / time of a pass,
  p50/p99 per call;
* batches of 256: ``--batches`` batches of random test users, QPS = users / time of a pass,
  p50/p99 per batch; each timed ``--repeats`` times, QPS of the median pass, percentiles pooled;
* recall: over every test user, Recall@20 of the lists against the test set (as ``ssmrec
  evaluate``), and the overlap of the approximate top-20 with the exact top-20 (Recall@20 vs exact).

The target: an approximate index keeping >= 99% of exact Recall@20 (test) at >= 10x the exact QPS.
The data (the run's test set) is loaded with ssmrec.data here; the serving code needs none of it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
from pathlib import Path

_THREADS = os.environ.get("SERVE_BENCH_THREADS", "2")
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, _THREADS)

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from ssmrec.serve import load_export  # noqa: E402
from ssmrec.serve.index import build_index  # noqa: E402

K = 20


def rss(pid: int | str = "self") -> int:
    """Resident memory of a process in bytes (Linux /proc)."""
    gc.collect()
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class NumpyExact:
    """The numpy path of ``ssmrec recommend`` (Export.recommend), as a baseline."""

    kind, knobs = "numpy", {}

    def __init__(self, ex):
        self.ex = ex

    def recommend(self, users, k):
        return self.ex.recommend(users, k)

    nbytes = 0


def test_sets(run: Path, ex) -> list[np.ndarray]:
    """Each export row's test items (export rows are the run's training rows)."""
    from ssmrec.data import DataConfig, load_dataset

    info = json.loads((run / "config.json").read_text())
    cfg = info["config"]
    data_dir = (info.get("data", {}).get("location") or {}).get("data_dir") or cfg.get("data_dir")
    ds = load_dataset(DataConfig(dataset=cfg["dataset"], data_dir=data_dir), cfg.get("protocol", "paper"))
    if ds.train.fingerprint() != ex.manifest["data_fingerprint"] or ds.n_users != ex.n_users:
        raise SystemExit(f"{run}: the data found is not the data the export was trained on")
    t = ds.test
    return [t.indices[t.indptr[u]:t.indptr[u + 1]] for u in range(t.n_users)]


def recall_test(items: np.ndarray, users: np.ndarray, truth: list[np.ndarray]) -> float:
    return float(np.mean([np.isin(truth[u], items[r]).sum() / truth[u].size for r, u in enumerate(users)]))


def overlap(approx: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([np.isin(a[a >= 0], e).sum() / max((e >= 0).sum(), 1) for a, e in zip(approx, exact)]))


def timed(index, groups: list[np.ndarray]) -> tuple[list[float], float]:
    lat = []
    start = time.perf_counter()
    for g in groups:
        a = time.perf_counter()
        index.recommend(g, K)
        lat.append(time.perf_counter() - a)
    return lat, time.perf_counter() - start


def repeated(index, groups: list[np.ndarray], repeats: int, size: int) -> tuple[list[float], float]:
    """Latencies pooled over ``repeats`` passes, and the median pass's users per second (a pass
    slowed by another process on the shared machine does not set the figure)."""
    lat, rates = [], []
    for _ in range(repeats):
        one, total = timed(index, groups)
        lat += one
        rates.append(size * len(groups) / total)
    return lat, float(np.median(rates))


def everyone(index, users: np.ndarray, batch: int = 1024) -> np.ndarray:
    return np.concatenate([index.recommend(users[s:s + batch], K)[0] for s in range(0, users.size, batch)])


def bench_run(run: Path, args) -> dict:
    ex = load_export(run / "export", mmap=False)
    truth = test_sets(run, ex)
    users = np.array([u for u, t in enumerate(truth) if t.size], dtype=np.int64)
    rng = np.random.default_rng(0)
    single = [np.array([u]) for u in rng.choice(users, args.single)]
    batches = [rng.choice(users, 256) for _ in range(args.batches)]
    n_seen = np.diff(ex.seen_indptr)[users]
    out = {"run": str(run), "dataset": ex.manifest["dataset"], "model": ex.manifest["model"],
           "loss": ex.manifest["loss"], "epoch": ex.manifest["epoch"], "similarity": ex.similarity,
           "n_users": ex.n_users, "n_items": ex.n_items, "dim": int(ex.item_factors.shape[1]),
           "test_users": int(users.size), "seen_per_user": {"mean": float(n_seen.mean()),
                                                           "p99": float(np.percentile(n_seen, 99)),
                                                           "max": int(n_seen.max())},
           "recorded_recall@20": ex.manifest.get("metrics", {}).get("recall@20"), "indexes": []}
    configs = [("numpy", {}), ("exact", {})]
    configs += [("hnsw", {"m": args.m, "ef_construction": args.ef_construction, "ef_search": e})
                for e in args.ef_search]
    configs += [("ivf", {"nlist": args.nlist, "nprobe": p}) for p in args.nprobe]
    exact_lists, built = None, {}
    for kind, knobs in configs:
        base = {n: v for n, v in knobs.items() if n not in ("ef_search", "nprobe")}
        key = (kind, tuple(sorted(base.items())))
        if kind == "numpy":
            index, build_s, grew = NumpyExact(ex), 0.0, 0
        elif key in built:  # same structure, another search knob: no rebuild
            index, build_s, grew = built[key]
            index.set_knobs(ef_search=knobs.get("ef_search"), nprobe=knobs.get("nprobe"))
        else:
            before = rss()
            a = time.perf_counter()
            index = build_index(ex, kind, **knobs)
            build_s = time.perf_counter() - a
            grew = rss() - before
            built[key] = (index, build_s, grew)
        index.recommend(single[0], K)  # warm
        lat1, qps1 = repeated(index, single, args.repeats, 1)
        latb, qpsb = repeated(index, batches, args.repeats, 256)
        lists = everyone(index, users)
        if kind == "exact":
            exact_lists = lists
        row = {"index": kind, "knobs": {**getattr(index, "knobs", {}), **knobs}, "build_s": build_s,
               "index_bytes": int(index.nbytes), "rss_growth_bytes": int(grew),
               "single": {"qps": qps1, "p50_ms": 1e3 * float(np.percentile(lat1, 50)),
                          "p99_ms": 1e3 * float(np.percentile(lat1, 99))},
               "batch256": {"users_per_s": qpsb,
                            "p50_ms": 1e3 * float(np.percentile(latb, 50)),
                            "p99_ms": 1e3 * float(np.percentile(latb, 99))},
               "recall@20_test": recall_test(lists, users, truth),
               "recall@20_vs_exact": overlap(lists, exact_lists) if exact_lists is not None else None}
        out["indexes"].append(row)
        print(f"{out['dataset']:9s} {kind:6s} {json.dumps(knobs):48s} build {build_s:6.2f}s "
              f"{row['index_bytes'] / 2**20:6.1f} MiB  1q {row['single']['qps']:8.0f}/s "
              f"p50 {row['single']['p50_ms']:6.2f} p99 {row['single']['p99_ms']:6.2f} ms  "
              f"256q {row['batch256']['users_per_s']:8.0f}/s p50 {row['batch256']['p50_ms']:7.1f} ms  "
              f"R@20 {row['recall@20_test']:.4f} vs exact {row['recall@20_vs_exact'] or 1:.4f}", flush=True)
    exact = next(r for r in out["indexes"] if r["index"] == "exact")
    for r in out["indexes"]:
        r["kept_recall"] = r["recall@20_test"] / exact["recall@20_test"]
        r["speedup_single"] = r["single"]["qps"] / exact["single"]["qps"]
        r["speedup_batch256"] = r["batch256"]["users_per_s"] / exact["batch256"]["users_per_s"]
        r["meets_target_single"] = (r["index"] in ("hnsw", "ivf") and r["kept_recall"] >= 0.99
                                    and r["speedup_single"] >= 10)
        r["meets_target_batch256"] = (r["index"] in ("hnsw", "ivf") and r["kept_recall"] >= 0.99
                                      and r["speedup_batch256"] >= 10)
    return out


def markdown(results: dict) -> str:
    """The BENCHMARKS.md table of a results file."""
    lines = []
    for run in results["runs"]:
        lines += [f"**{run['dataset']}** ({run['n_users']:,} users, {run['n_items']:,} items, dim {run['dim']}; "
                  f"{run['model']} + {run['loss']}, epoch {run['epoch']}, scored by {run['similarity']}; "
                  f"seen items per test user: mean {run['seen_per_user']['mean']:.0f}, "
                  f"max {run['seen_per_user']['max']})", "",
                  "| index | knobs | build s | index MiB | RSS +MiB | 1 user: QPS | p50 ms | p99 ms "
                  "| 256 users: users/s | p50 ms | p99 ms | Recall@20 (test) | kept | vs exact "
                  "| speed-up 1 user (QPS / p50) | speed-up 256 |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        exact = next(r for r in run["indexes"] if r["index"] == "exact")
        for r in run["indexes"]:
            knobs = ", ".join(f"{k}={v}" for k, v in r["knobs"].items() if k != "ef_construction")
            p50_speedup = exact["single"]["p50_ms"] / r["single"]["p50_ms"]
            name = "numpy (`ssmrec recommend`)" if r["index"] == "numpy" else r["index"]
            vs = "" if r["recall@20_vs_exact"] is None else f"{r['recall@20_vs_exact']:.3f}"
            lines.append(
                f"| {name} | {knobs} | {r['build_s']:.1f} | {r['index_bytes'] / 2**20:.1f} "
                f"| {r['rss_growth_bytes'] / 2**20:.0f} | {r['single']['qps']:,.0f} | {r['single']['p50_ms']:.2f} "
                f"| {r['single']['p99_ms']:.2f} | {r['batch256']['users_per_s']:,.0f} "
                f"| {r['batch256']['p50_ms']:.0f} | {r['batch256']['p99_ms']:.0f} | {r['recall@20_test']:.4f} "
                f"| {r['kept_recall']:.2%} | {vs or '1'} | {r['speedup_single']:.2g}× / {p50_speedup:.2g}× "
                f"| {r['speedup_batch256']:.2g}× |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", type=Path, help="run directories with export/ (trained runs)")
    p.add_argument("--threads", type=int, default=int(_THREADS))
    p.add_argument("--single", type=int, default=2000, help="single-user queries timed")
    p.add_argument("--batches", type=int, default=20, help="batches of 256 users timed")
    p.add_argument("--repeats", type=int, default=3, help="timed passes; QPS is the median pass's")
    p.add_argument("--m", type=int, default=32)
    p.add_argument("--ef-construction", type=int, default=200)
    p.add_argument("--ef-search", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--nlist", type=int, default=512)
    p.add_argument("--nprobe", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--table", type=Path, default=None, help="only print the markdown table of this results file")
    args = p.parse_args()
    if args.table:
        print(markdown(json.loads(args.table.read_text())))
        return
    faiss.omp_set_num_threads(args.threads)
    results = {"threads": args.threads, "k": K, "faiss": faiss.__version__, "numpy": np.__version__,
               "python": platform.python_version(), "cpu_count": os.cpu_count(),
               "repeats": args.repeats, "date": time.strftime("%Y-%m-%d"), "load_average_before": os.getloadavg(),
               "runs": [bench_run(r, args) for r in args.runs], "load_average_after": os.getloadavg()}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")
    print(markdown(results))


if __name__ == "__main__":
    main()
