"""Serving at scale: a 2M-item export served exactly and through HNSW, IVF and IVF-PQ.

The catalogue is **synthetic**: nobody here trains a 2M-item model in minutes, so ``make`` writes an
export (the format ``ssmrec export`` writes, read by ``ssmrec serve``) whose vectors are drawn from
a trained one. With ``--like EXPORT`` (a trained run or export folder) each side is clustered
(k-means, ``--clusters``) and every synthetic row is a source row's cluster centre plus a mix of its
own residual and a random cluster-mate's, ``c + cos(t) r_src + sin(t) r_mate`` with ``t`` uniform
in [0, pi/2]: the clusters, the spread inside them, the norms and their link to popularity
(``item_degree`` is the source item's) follow the trained model; about ``items / source items``
rows descend from each source item. A synthetic user descends from a source user in the same
way, and its seen items are one random descendant of each item its source user had seen: seen
items score high for their user, as in a trained model, so excluding them matters. Without
``--like``, a parametric mixture of Gaussians (Zipf cluster sizes, norms growing with popularity).
Either way the benchmark says synthetic.

    # 1. a trained model to draw from (MF + SSM on Gowalla, 8 epochs, ~10 min on 1 CPU thread)
    SSMREC_DATA=../shared/data ssmrec train --dataset gowalla --model mf --loss ssm --epochs 8 \\
        --threads 1 --no-progress --out runs/scale-gowalla-mf
    # 2. the 2M-item export (runs/scale-2m/export) and 2,000 fixed query users (queries.npy)
    python benchmarks/serve_scale.py make runs/scale-2m --like runs/scale-gowalla-mf --items 2000000
    # 3. each index built once and saved (build seconds, peak memory, index bytes -> builds.json);
    #    --default also saves it where `ssmrec serve runs/scale-2m --index KIND` loads it
    python benchmarks/serve_scale.py build runs/scale-2m --kind hnsw --knob m=32 --knob ef_construction=200
    # 4. recall vs exact and single-user QPS over a search knob (to choose it)
    python benchmarks/serve_scale.py sweep runs/scale-2m runs/scale-2m/indexes/hnsw-m32-ef_construction200.faiss \\
        --knob ef_search --values 32 64 128 256
    # 5. the table: timed passes interleaved over the indexes, medians of --repeats
    python benchmarks/serve_scale.py bench runs/scale-2m --index exact \\
        --index runs/scale-2m/indexes/hnsw-m32-ef_construction200.faiss:ef_search=128 ... --out FILE.json
    python benchmarks/serve_scale.py table FILE.json

Recall@20 vs exact (the target's recall): for each query user u, ``|A_u ∩ E_u| / |E_u|`` where
``E_u`` is the exact index's top 20 of the items u has not seen (faiss ``IndexFlatIP``; the same
list as ``Export.recommend``) and ``A_u`` the index's top 20, also without u's seen items; the
mean over the query users. The target: >= 0.99 at >= 10x the exact index's QPS.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

_THREADS = os.environ.get("SERVE_BENCH_THREADS", "2")
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, _THREADS)

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from ssmrec.serve.app import resolve_export  # noqa: E402
from ssmrec.serve.export import FORMAT, load_export  # noqa: E402
from ssmrec.serve.index import ItemIndex, build_index, saved_path  # noqa: E402

K = 20
BATCH = 64


def proc_status(field: str = "VmRSS") -> int:
    """A /proc/self/status memory figure in bytes (VmRSS: now; VmHWM: the peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def rss() -> int:
    gc.collect()
    return proc_status("VmRSS")


# ---------------------------------------------------------------------------------------- make
def _clusters(x: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """k-means centres and each row's cluster."""
    km = faiss.Kmeans(x.shape[1], n, niter=20, seed=seed, verbose=False)
    km.train(np.ascontiguousarray(x, dtype=np.float32))
    _, assign = km.index.search(np.ascontiguousarray(x, dtype=np.float32), 1)
    return km.centroids.astype(np.float32), assign[:, 0].astype(np.int64)


def _descend(x: np.ndarray, centres: np.ndarray, assign: np.ndarray, n: int, rng: np.random.Generator,
             block: int = 1 << 18) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows drawn from ``x``: a source row's centre + cos(t) its residual + sin(t) a random
    cluster-mate's residual (second moments of each cluster kept). Returns rows and sources."""
    resid = x - centres[assign]
    order = np.argsort(assign, kind="stable")
    sizes = np.bincount(assign, minlength=centres.shape[0])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    src = rng.integers(0, x.shape[0], n)
    out = np.empty((n, x.shape[1]), dtype=np.float32)
    for s in range(0, n, block):
        rows = src[s:s + block]
        c = assign[rows]
        mate = order[starts[c] + (rng.random(rows.size) * sizes[c]).astype(np.int64)]
        t = rng.uniform(0, np.pi / 2, rows.size).astype(np.float32)[:, None]
        out[s:s + block] = centres[c] + np.cos(t) * resid[rows] + np.sin(t) * resid[mate]
    return out, src


def make_like(src_path: Path, n_items: int, n_users: int, clusters: int, seed: int) -> dict:
    src = load_export(resolve_export(src_path), mmap=False)
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    item_c, item_a = _clusters(src.item_factors, clusters, seed)
    user_c, user_a = _clusters(src.user_factors, clusters, seed + 1)
    items, item_src = _descend(src.item_factors, item_c, item_a, n_items, rng)
    users, user_src = _descend(src.user_factors, user_c, user_a, n_users, rng)
    # seen: one random descendant of each item the source user had seen
    desc_order = np.argsort(item_src, kind="stable")
    desc_count = np.bincount(item_src, minlength=src.n_items)
    desc_start = np.concatenate([[0], np.cumsum(desc_count)[:-1]])
    counts = (src.seen_indptr[user_src + 1] - src.seen_indptr[user_src]).astype(np.int64)
    owner = np.repeat(np.arange(n_users, dtype=np.int64), counts)
    pos = np.repeat(src.seen_indptr[user_src] - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    real = src.seen_indices[np.arange(owner.size) + pos].astype(np.int64)
    has = desc_count[real] > 0
    owner, real = owner[has], real[has]
    seen = desc_order[desc_start[real] + (rng.random(real.size) * desc_count[real]).astype(np.int64)]
    order = np.lexsort((seen, owner))
    owner, seen = owner[order], seen[order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=n_users))]).astype(np.int64)
    m = src.manifest
    return {"users": users, "items": items, "seen_indptr": indptr, "seen_indices": seen.astype(np.int64),
            "item_degree": src.item_degree[item_src].astype(np.int64), "similarity": src.similarity,
            "model": m.get("model"), "loss": m.get("loss"),
            "synthetic": {"method": "descendants of a trained export's rows (cluster centre + mixed residuals)",
                          "like": str(resolve_export(src_path).resolve()), "like_dataset": m.get("dataset"),
                          "like_epoch": m.get("epoch"), "like_metrics": m.get("metrics"),
                          "like_items": src.n_items, "like_users": src.n_users, "clusters": clusters,
                          "seconds": time.perf_counter() - t}}


def make_parametric(n_items: int, n_users: int, dim: int, clusters: int, seed: int) -> dict:
    """A mixture of Gaussians: Zipf cluster sizes, unit-scale centres, item norms growing with a
    Zipf popularity; users near a cluster centre; seen items half from the user's cluster, half
    by popularity (lognormal counts, median 15)."""
    rng = np.random.default_rng(seed)
    w = 1.0 / np.arange(1, clusters + 1) ** 0.8
    w /= w.sum()
    centres = (rng.standard_normal((clusters, dim)) / math.sqrt(dim)).astype(np.float32)
    item_c = rng.choice(clusters, n_items, p=w)
    degree = np.ceil(2000.0 / (rng.permutation(n_items) + 1) ** 0.9).astype(np.int64)
    scale = (0.5 + 0.5 * np.log1p(degree) / np.log1p(degree.max())).astype(np.float32)[:, None]
    items = np.empty((n_items, dim), dtype=np.float32)
    for s in range(0, n_items, 1 << 18):
        sl = slice(s, s + (1 << 18))
        noise = rng.standard_normal((item_c[sl].size, dim)).astype(np.float32) * (0.7 / math.sqrt(dim))
        items[sl] = (centres[item_c[sl]] + noise) * scale[sl]
    user_c = rng.choice(clusters, n_users, p=w)
    users = (centres[user_c] + rng.standard_normal((n_users, dim)).astype(np.float32) * (0.7 / math.sqrt(dim)))
    counts = np.clip(rng.lognormal(math.log(15), 1.0, n_users), 1, 2000).astype(np.int64)
    owner = np.repeat(np.arange(n_users), counts)
    members = np.argsort(item_c, kind="stable")
    sizes = np.bincount(item_c, minlength=clusters)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    c = user_c[owner]
    own = members[starts[c] + (rng.random(owner.size) * np.maximum(sizes[c], 1)).astype(np.int64)]
    cdf = np.cumsum(degree / degree.sum())
    popular = np.minimum(np.searchsorted(cdf, rng.random(owner.size)), n_items - 1)
    seen = np.where(rng.random(owner.size) < 0.5, own, popular)
    keys = np.unique(owner.astype(np.int64) * n_items + seen)
    owner, seen = keys // n_items, keys % n_items
    indptr = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=n_users))]).astype(np.int64)
    return {"users": users.astype(np.float32), "items": items, "seen_indptr": indptr, "seen_indices": seen,
            "item_degree": degree, "similarity": "ip", "model": "synthetic", "loss": "none",
            "synthetic": {"method": "parametric mixture of Gaussians", "clusters": clusters}}


def cmd_make(args: argparse.Namespace) -> None:
    out = args.out
    export = out / "export"
    if (export / "manifest.json").exists() and not args.force:
        raise SystemExit(f"{export} exists (--force to replace it)")
    t = time.perf_counter()
    if args.like:
        made = make_like(args.like, args.items, args.users, args.clusters, args.seed)
    else:
        made = make_parametric(args.items, args.users, args.dim, args.clusters, args.seed)
    export.mkdir(parents=True, exist_ok=True)
    n_users, dim = made["users"].shape
    np.save(export / "user_factors.npy", np.ascontiguousarray(made["users"], dtype=np.float32))
    np.save(export / "item_factors.npy", np.ascontiguousarray(made["items"], dtype=np.float32))
    np.save(export / "user_ids.npy", np.arange(n_users, dtype=np.int64))
    np.save(export / "item_ids.npy", np.arange(args.items, dtype=np.int64))
    np.save(export / "seen_indptr.npy", made["seen_indptr"])
    np.save(export / "seen_indices.npy", made["seen_indices"])
    np.save(export / "item_degree.npy", made["item_degree"])
    settings = {"items": args.items, "users": args.users, "seed": args.seed, "clusters": args.clusters,
                "like": str(args.like) if args.like else None}
    manifest = {"format": FORMAT, "version": 1, "model": made["model"], "loss": made["loss"], "layers": None,
                "similarity": made["similarity"], "dim": int(dim), "n_users": int(n_users),
                "n_items": int(args.items), "dataset": f"synthetic-{args.items}",
                "data_fingerprint": "synthetic:" + json.dumps(settings, sort_keys=True),
                "protocol": None, "excluded": "synthetic seen items", "epoch": 0, "metrics": {}, "run_dir": None,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "synthetic": made["synthetic"], "settings": settings}
    (export / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    rng = np.random.default_rng(args.seed + 7)
    np.save(out / "queries.npy", np.sort(rng.choice(n_users, args.queries, replace=False)).astype(np.int64))
    (out / "exact_top20.npy").unlink(missing_ok=True)
    n_seen = np.diff(made["seen_indptr"])
    print(f"wrote {export}: {n_users:,} users, {args.items:,} items, dim {dim}, {made['similarity']}; seen per user "
          f"mean {n_seen.mean():.1f}, max {n_seen.max()}; item norms "
          f"{np.percentile(np.linalg.norm(made['items'][:200000], axis=1), [1, 50, 99]).round(3).tolist()} "
          f"(1/50/99%); {args.queries} query users in {out / 'queries.npy'}; {time.perf_counter() - t:.0f} s")


# ---------------------------------------------------------------------------------------- shared
def parse_knobs(pairs: list[str]) -> dict[str, int]:
    out = {}
    for pair in pairs or []:
        name, _, value = pair.partition("=")
        out[name.strip()] = int(value)
    return out


def open_export(out: Path):
    return load_export(out / "export")


def exact_truth(out: Path, ex, queries: np.ndarray, threads: int) -> np.ndarray:
    """The exact top 20 (seen items excluded) of every query user, cached in exact_top20.npy; the
    first users checked against Export.recommend."""
    path = out / "exact_top20.npy"
    if path.is_file():
        return np.load(path)
    idx = build_index(ex, "exact", threads=threads)
    top = np.concatenate([idx.recommend(queries[s:s + BATCH], K)[0] for s in range(0, queries.size, BATCH)])
    ref = ex.recommend(queries[:8], K)[0]
    agree = (ref == top[:8]).mean()
    if agree < 0.99:
        raise SystemExit(f"the exact index and Export.recommend disagree on {1 - agree:.1%} of positions")
    np.save(path, top)
    del idx
    return top


def recall_vs_exact(approx: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([np.isin(e[e >= 0], a).sum() / max((e >= 0).sum(), 1) for a, e in zip(approx, exact)]))


def all_lists(idx, queries: np.ndarray) -> np.ndarray:
    return np.concatenate([idx.recommend(queries[s:s + BATCH], K)[0] for s in range(0, queries.size, BATCH)])


# ---------------------------------------------------------------------------------------- build
def cmd_build(args: argparse.Namespace) -> None:
    ex = open_export(args.out)
    knobs = parse_knobs(args.knob)
    gc.collect()
    before = rss()
    t = time.perf_counter()
    idx = build_index(ex, args.kind, threads=args.threads, **knobs)
    build_s = time.perf_counter() - t
    after, peak = rss(), proc_status("VmHWM")
    name = "-".join([args.kind] + [f"{k}{v}" for k, v in sorted(knobs.items())])
    path = saved_path(ex, args.kind) if args.default else args.out / "indexes" / f"{name}.faiss"
    path.parent.mkdir(parents=True, exist_ok=True)
    idx.save(path)
    nbytes = idx.nbytes
    record = {"file": str(path), "kind": args.kind, "knobs": idx.knobs, "build_s": build_s, "index_bytes": nbytes,
              "rss_before": before, "rss_after": after, "peak_rss": peak, "threads": args.threads,
              "load_average": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M")}
    builds = args.out / "builds.json"
    table = json.loads(builds.read_text()) if builds.is_file() else {}
    before_ = table.get(str(path), {})
    search = ("ef_search", "nprobe", "refine")
    same = bool(before_) and ({k: v for k, v in before_.get("knobs", {}).items() if k not in search}
                              == {k: v for k, v in idx.knobs.items() if k not in search})
    record["build_s_runs"] = (before_.get("build_s_runs", [before_.get("build_s")]) if same else []) + [build_s]
    record["build_s"] = statistics.median(record["build_s_runs"])  # a rebuild of the same index: the median
    table[str(path)] = record
    builds.write_text(json.dumps(table, indent=2) + "\n")
    print(f"{args.kind} {idx.knobs}: built in {build_s:.1f} s, index {nbytes / 2**20:.0f} MiB, RSS "
          f"{before / 2**20:.0f} -> {after / 2**20:.0f} MiB (peak {peak / 2**20:.0f}); saved {path}")


# ---------------------------------------------------------------------------------------- sweep
def cmd_sweep(args: argparse.Namespace) -> None:
    faiss.omp_set_num_threads(args.threads)
    ex = open_export(args.out)
    queries = np.load(args.out / "queries.npy")
    truth = exact_truth(args.out, ex, queries, args.threads)
    idx = ItemIndex.load(args.index, ex).set_knobs(**parse_knobs(args.set))
    single = queries[:args.single]
    rows = []
    for value in args.values:
        idx.set_knobs(**{args.knob: value})
        idx.recommend(single[:5], K)
        t = time.perf_counter()
        for u in single:
            idx.recommend([u], K)
        qps = single.size / (time.perf_counter() - t)
        fallbacks = idx.exact_fallbacks
        rec = recall_vs_exact(all_lists(idx, queries), truth)
        rows.append({"knobs": dict(idx.knobs), "recall_vs_exact": rec, "single_qps": qps,
                     "fallbacks": idx.exact_fallbacks - fallbacks})
        print(f"{idx.kind} {json.dumps(idx.knobs)}: recall@20 vs exact {rec:.4f}, 1 user {qps:,.0f}/s, "
              f"exact fallbacks {idx.exact_fallbacks - fallbacks}", flush=True)
    if args.save:
        path = args.out / "sweeps.json"
        table = json.loads(path.read_text()) if path.is_file() else []
        table.append({"index": str(args.index), "load_average": os.getloadavg(), "rows": rows})
        path.write_text(json.dumps(table, indent=2) + "\n")


# ---------------------------------------------------------------------------------------- bench
class Config:
    def __init__(self, spec: str, out: Path, ex, threads: int, loaded: dict):
        self.spec = spec
        path, _, knobs = spec.partition(":")
        self.knobs = parse_knobs([k for k in knobs.split(",") if k])
        if path == "exact":
            key = "exact"
            if key not in loaded:
                before = rss()
                t = time.perf_counter()
                idx = build_index(ex, "exact", threads=threads)
                loaded[key] = (idx, {"build_s": time.perf_counter() - t, "rss_growth": rss() - before,
                                     "file": None})
        else:
            key = str(Path(path))
            if key not in loaded:
                before = rss()
                t = time.perf_counter()
                idx = ItemIndex.load(path, ex)
                builds = out / "builds.json"
                record = (json.loads(builds.read_text()) if builds.is_file() else {}).get(key, {})
                loaded[key] = (idx, {"build_s": record.get("build_s"), "peak_rss_build": record.get("peak_rss"),
                                     "load_s": time.perf_counter() - t, "rss_growth": rss() - before, "file": key})
        self.index, self.info = loaded[key]
        self.app = None

    def apply(self) -> None:
        if self.knobs:
            self.index.set_knobs(**self.knobs)

    def client(self, threads: int):
        if self.app is None:
            from fastapi.testclient import TestClient

            from ssmrec.serve.app import create_app

            self.app = TestClient(create_app(self.index.export, self.index, threads=threads))
        return self.app


def time_pass(fn, calls: list, users_per_call: int) -> float:
    t = time.perf_counter()
    for c in calls:
        fn(c)
    return users_per_call * len(calls) / (time.perf_counter() - t)


def cmd_bench(args: argparse.Namespace) -> None:
    faiss.omp_set_num_threads(args.threads)
    ex = open_export(args.out)
    queries = np.load(args.out / "queries.npy")
    t = time.perf_counter()
    truth = exact_truth(args.out, ex, queries, args.threads)
    truth_s = time.perf_counter() - t
    rss_start = rss()
    loaded: dict = {}
    configs = [Config(spec, args.out, ex, args.threads, loaded) for spec in args.index]
    ids = np.asarray(ex.user_ids)
    batches = [queries[s:s + BATCH] for s in range(0, args.batches * BATCH, BATCH)]
    results = []
    for cfg in configs:  # recall (and a warm-up)
        cfg.apply()
        before = cfg.index.exact_fallbacks
        lists = all_lists(cfg.index, queries)
        results.append({"spec": cfg.spec, "kind": cfg.index.kind, "knobs": dict(cfg.index.knobs),
                        "index_bytes": cfg.index.nbytes, **cfg.info,
                        "recall@20_vs_exact": recall_vs_exact(lists, truth),
                        "exact_fallbacks": cfg.index.exact_fallbacks - before,
                        "passes": {"single": [], "batch": [], "http_single": [], "http_batch": []}})
        print(f"{cfg.spec}: recall@20 vs exact {results[-1]['recall@20_vs_exact']:.4f}, "
              f"{results[-1]['index_bytes'] / 2**20:.0f} MiB, fallbacks {results[-1]['exact_fallbacks']}", flush=True)
        if args.http:
            client = cfg.client(args.threads)
            r = client.get("/recommend", params={"user": int(ids[queries[0]]), "k": K})
            assert r.status_code == 200 and len(r.json()["items"]) == K, r.text
            got = client.post("/recommend", json={"users": ids[batches[0]].tolist(), "k": K}).json()["results"]
            want = lists[:BATCH]
            assert all(np.array_equal(np.asarray(g["items"]), w) for g, w in zip(got, want))
    rss_loaded = rss()
    for rep in range(args.repeats):  # timed passes, interleaved over the indexes
        for cfg, res in zip(configs, results):
            cfg.apply()
            n_single = args.single_exact if cfg.index.kind == "exact" else args.single
            singles = [[int(u)] for u in queries[rep * 7 % 50:][:n_single]]
            p = res["passes"]
            idx = cfg.index
            p["single"].append(time_pass(lambda c, idx=idx: idx.recommend(c, K), singles, 1))
            p["batch"].append(time_pass(lambda c, idx=idx: idx.recommend(c, K), batches, BATCH))
            if args.http:
                client = cfg.client(args.threads)
                p["http_single"].append(time_pass(
                    lambda c, cl=client: cl.get("/recommend", params={"user": int(ids[c[0]]), "k": K}), singles, 1))
                p["http_batch"].append(time_pass(
                    lambda c, cl=client: cl.post("/recommend", json={"users": ids[c].tolist(), "k": K}),
                    batches, BATCH))
            print(f"repeat {rep + 1}: {cfg.spec}: " + ", ".join(f"{n} {v[-1]:,.0f}/s" for n, v in p.items() if v),
                  flush=True)
    for res in results:
        res["qps"] = {n: (statistics.median(v) if v else None) for n, v in res["passes"].items()}
    exact = next((r for r in results if r["kind"] == "exact"), None)
    for res in results:
        if exact:
            res["speedup"] = {n: (v / exact["qps"][n] if v and exact["qps"][n] else None)
                              for n, v in res["qps"].items()}
            res["meets_target"] = {n: bool(res["kind"] != "exact" and s and s >= 10
                                           and res["recall@20_vs_exact"] >= 0.99)
                                   for n, s in res["speedup"].items() if s}
    n_seen = np.diff(ex.seen_indptr)
    out = {"export": str(args.out / "export"), "manifest": {k: ex.manifest.get(k) for k in (
               "dataset", "model", "loss", "similarity", "n_users", "n_items", "dim", "synthetic")},
           "seen_per_user": {"mean": float(n_seen.mean()), "p99": float(np.percentile(n_seen, 99)),
                             "max": int(n_seen.max()), "queries_mean": float(n_seen[queries].mean())},
           "queries": int(queries.size), "k": K, "batch": BATCH, "threads": args.threads, "repeats": args.repeats,
           "single_users": args.single, "single_users_exact": args.single_exact, "batches": args.batches,
           "exact_truth_s": truth_s, "rss_start": rss_start, "rss_loaded": rss_loaded, "peak_rss": proc_status("VmHWM"),
           "faiss": faiss.__version__, "numpy": np.__version__, "python": platform.python_version(),
           "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d"), "load_average_end": os.getloadavg(),
           "command": " ".join(sys.argv), "indexes": results}
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.save}")
    print(markdown(out))


def markdown(res: dict) -> str:
    m = res["manifest"]
    lines = [f"{m['n_items']:,} items × dim {m['dim']} ({m['dataset']}, synthetic: {m['synthetic']['method']}), "
             f"{m['n_users']:,} users, scored by {m['similarity']}; {res['queries']:,} query users, seen items per "
             f"query user: mean {res['seen_per_user']['queries_mean']:.0f}, max of all users "
             f"{res['seen_per_user']['max']}; top-{res['k']}, {res['threads']} faiss threads, median of "
             f"{res['repeats']} interleaved passes.", "",
             "| index | knobs | build s | index MiB | Recall@20 vs exact | 1 user QPS | 64 users: users/s "
             "| HTTP 1 user QPS | HTTP 64 users: users/s | speed-up 1 user / 64 | HTTP speed-up 1 / 64 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]

    def f(v, fmt="{:,.0f}"):
        return "–" if v is None else fmt.format(v)

    for r in res["indexes"]:
        knobs = ", ".join(f"{k}={v}" for k, v in r["knobs"].items())
        q, s = r["qps"], r.get("speedup", {})
        lines.append(f"| {r['kind']} | {knobs} | {f(r.get('build_s'), '{:.0f}')} | {r['index_bytes'] / 2**20:,.0f} "
                     f"| {r['recall@20_vs_exact']:.4f} | {f(q['single'])} | {f(q['batch'])} | {f(q['http_single'])} "
                     f"| {f(q['http_batch'])} | {f(s.get('single'), '{:.1f}×')} / {f(s.get('batch'), '{:.1f}×')} "
                     f"| {f(s.get('http_single'), '{:.1f}×')} / {f(s.get('http_batch'), '{:.1f}×')} |")
    return "\n".join(lines)


def cmd_table(args: argparse.Namespace) -> None:
    print(markdown(json.loads(args.file.read_text())))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="write a synthetic export and the query users")
    m.add_argument("out", type=Path)
    m.add_argument("--like", type=Path, default=None, help="a trained run or export to draw the vectors from")
    m.add_argument("--items", type=int, default=2_000_000)
    m.add_argument("--users", type=int, default=100_000)
    m.add_argument("--dim", type=int, default=64, help="without --like")
    m.add_argument("--clusters", type=int, default=256)
    m.add_argument("--queries", type=int, default=2000)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--force", action="store_true")
    b = sub.add_parser("build", help="build one index, save it, record build time and memory")
    b.add_argument("out", type=Path)
    b.add_argument("--kind", required=True, choices=("exact", "hnsw", "ivf", "ivfpq"))
    b.add_argument("--knob", action="append", help="name=value (repeat)")
    b.add_argument("--threads", type=int, default=int(_THREADS))
    b.add_argument("--default", action="store_true", help="save where `ssmrec serve` loads it (export/index/)")
    s = sub.add_parser("sweep", help="recall vs exact and 1-user QPS over one search knob")
    s.add_argument("out", type=Path)
    s.add_argument("index", type=Path)
    s.add_argument("--knob", required=True, choices=("ef_search", "nprobe", "refine"))
    s.add_argument("--values", type=int, nargs="+", required=True)
    s.add_argument("--set", action="append", help="another search knob held fixed, name=value (repeat)")
    s.add_argument("--single", type=int, default=300)
    s.add_argument("--threads", type=int, default=int(_THREADS))
    s.add_argument("--save", action="store_true", help="append to OUT/sweeps.json")
    c = sub.add_parser("bench", help="the table: recall, QPS direct and through the app, interleaved")
    c.add_argument("out", type=Path)
    c.add_argument("--index", action="append", required=True,
                   help="'exact' or a saved index file, with search knobs after ':' (FILE:ef_search=128)")
    c.add_argument("--single", type=int, default=1000, help="single-user calls per pass")
    c.add_argument("--single-exact", type=int, default=100, help="single-user calls per pass, exact index")
    c.add_argument("--batches", type=int, default=10, help="batches of 64 users per pass")
    c.add_argument("--repeats", type=int, default=3)
    c.add_argument("--threads", type=int, default=int(_THREADS))
    c.add_argument("--no-http", dest="http", action="store_false", help="skip the passes through the app")
    c.add_argument("--save", type=Path, default=None, help="write the results here (JSON)")
    t = sub.add_parser("table", help="the markdown table of a bench results file")
    t.add_argument("file", type=Path)
    args = p.parse_args()
    {"make": cmd_make, "build": cmd_build, "sweep": cmd_sweep, "bench": cmd_bench, "table": cmd_table}[args.cmd](args)


if __name__ == "__main__":
    main()
