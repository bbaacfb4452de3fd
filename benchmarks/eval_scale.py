"""Full-ranking evaluation time against the catalogue, on a sample of users.

    OMP_NUM_THREADS=1 python benchmarks/eval_scale.py --sizes 2000000 10000000 --samples 2000 10000 \\
        --out benchmarks/results/eval-scale-t1.json

For each size (users = items = N) the 1,000,000 training pairs of ``benchmarks/scale.py`` (its
generator and cache) are the excluded (seen) set, and a held-out target of ``--target-pairs``
further power-law pairs (same generator, seed 1; pairs already in training dropped) gives the
users to evaluate. The model is a random MF, user and item tables of N x 64 float32 drawn
normal(0, 0.01) (seed 0): scoring does not depend on training, only on the shapes. One thread.

``Evaluator(target, [train], ks=(20,), sample=S, seed=0)`` ranks every item for each of S sampled
users (the catalogue in blocks of 2^27 / 2048 items beyond 2^27 scores, the training items
masked). Timed apart: building the Evaluator (seen-item keys, the sample) and ``evaluate``.
Every (N, S) cell runs in a fresh process, which reports its peak RSS; ``--rounds`` repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import make_dataset, peak_rss_mb, power_law_pairs  # noqa: E402

from ssmrec.data import Interactions  # noqa: E402
from ssmrec.eval.evaluator import Evaluator  # noqa: E402


def measure_cell(n: int, sample: int, args) -> dict:
    torch.set_num_threads(1)
    ds = make_dataset(n, args.pairs, cache=Path(args.cache) if args.cache else None)
    u, i = power_law_pairs(n, n, args.target_pairs, seed=1)
    keep = ~ds.train.contains(u, i)
    target = Interactions.from_pairs(u[keep], i[keep], n, n, name="target")
    g = torch.Generator().manual_seed(0)
    users = torch.randn(n, args.dim, generator=g).mul_(0.01)
    items = torch.randn(n, args.dim, generator=g).mul_(0.01)
    a = time.perf_counter()
    ev = Evaluator(target, [ds.train], ks=(20,), sample=sample, seed=0)
    build_s = time.perf_counter() - a
    a = time.perf_counter()
    metrics = ev.evaluate(users, items)
    eval_s = time.perf_counter() - a
    evaluated = int(ev.users.numel())
    return {"n": n, "sample": sample, "evaluated_users": evaluated, "target_users": int(target.active_users.size),
            "build_s": build_s, "eval_s": eval_s, "ms_per_user": eval_s / evaluated * 1e3,
            "extrapolated_all_users_s": eval_s / evaluated * n, "recall@20": metrics.get("recall@20"),
            "peak_rss_mb": peak_rss_mb()}


def run_cell(n: int, sample: int, args) -> dict:
    cmd = [sys.executable, __file__, "--cell", f"{n},{sample}", "--pairs", str(args.pairs), "--dim", str(args.dim),
           "--target-pairs", str(args.target_pairs), "--cache", args.cache or ""]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[2_000_000, 10_000_000])
    p.add_argument("--samples", type=int, nargs="+", default=[2000, 10000])
    p.add_argument("--pairs", type=int, default=1_000_000)
    p.add_argument("--target-pairs", type=int, default=20_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--cache", default="/tmp/ssmrec-scale", help="folder for the generated pairs ('' = none)")
    p.add_argument("--cell", default=None, help=argparse.SUPPRESS)  # N,S: one cell, here
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.cell:
        n, s = map(int, args.cell.split(","))
        print(json.dumps(measure_cell(n, s, args)))
        return
    runs, loads = [], [os.getloadavg()]
    for r in range(args.rounds):
        for n in args.sizes:
            for s in args.samples:
                c = run_cell(n, s, args)
                runs.append(c)
                print(f"round {r + 1}: N {n:,}, {c['evaluated_users']:,} users: build {c['build_s']:.1f} s, "
                      f"evaluate {c['eval_s']:.1f} s ({c['ms_per_user']:.1f} ms/user; all {n:,} users "
                      f"extrapolated {c['extrapolated_all_users_s'] / 3600:.2f} h), peak RSS "
                      f"{c['peak_rss_mb']:,.0f} MB", flush=True)
        loads.append(os.getloadavg())
    rows = []
    for n in args.sizes:
        for s in args.samples:
            cs = [c for c in runs if c["n"] == n and c["sample"] == s]
            e = statistics.median(c["eval_s"] for c in cs)
            rows.append({"n": n, "sample": s, "evaluated_users": cs[0]["evaluated_users"], "eval_s": e,
                         "round_eval_s": [c["eval_s"] for c in cs], "ms_per_user": e / cs[0]["evaluated_users"] * 1e3,
                         "extrapolated_all_users_s": e / cs[0]["evaluated_users"] * n,
                         "build_s": statistics.median(c["build_s"] for c in cs),
                         "peak_rss_mb": max(c["peak_rss_mb"] for c in cs)})
    print("load averages (1, 5, 15 min) at the start and after each round:", loads)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "torch": torch.__version__, "load_averages": loads, "rows": rows,
                       "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
