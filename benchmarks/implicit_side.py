"""One BPR epoch of implicit 0.7.3 beside one MF + BPR epoch of ssmrec, on the pairs of ``scale.py``.

    OMP_NUM_THREADS=1 python benchmarks/implicit_side.py --sizes 50000 500000 2000000 --rounds 3 \\
        --rounds-large 2 --out benchmarks/results/implicit-side-t1.json

The data are exactly those of ``benchmarks/scale.py`` (its generator and cache are imported): 1,000,000
distinct (user, item) pairs, users = items = N, uniform users and power-law items.

- implicit: ``implicit.cpu.bpr.BayesianPersonalizedRanking(factors=64, iterations=1, num_threads=1)``
  fitted on the user x item ``csr_matrix`` of the training pairs, under ``threadpool_limits(1)``.
  ``fit_s`` times ``fit`` alone (what a one-iteration fit costs: drawing the factors, then one
  pass of 1M SGD updates); ``refit_s`` times a second ``fit`` on the same model, which keeps its
  factors and so is the SGD pass alone.
- ssmrec: ``scale.py --epoch``'s cell, MF + BPR, dim 64, batch 2048, lr 1e-3, one thread, with
  ``sparse-adam`` and with ``rowwise-adagrad``: ``Trainer.train_epoch`` (489 batches drawn and
  stepped); the trainer's construction (tables drawn, sampler, optimizer) is timed apart
  (``build_s``), so that build + epoch compares with implicit's ``fit_s``.

Every cell (size x system) runs in a fresh process. Cells are interleaved in rounds (every cell
once per round, in order): ``--rounds`` for the sizes below ``--large``, ``--rounds-large`` from it.
A cell's figure is the median over its rounds; ratios are ours / implicit's ``fit_s`` (and
``refit_s``) of the same size. Each process reports its peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scale  # noqa: E402  (the pairs, the cache and the epoch cell of benchmarks/scale.py)

OURS = ("sparse-adam", "rowwise-adagrad")


def implicit_cell(n: int, args) -> dict:
    """implicit's BPR: one ``fit`` with iterations=1, then a second (the pass alone), in this process."""
    import implicit
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    from threadpoolctl import threadpool_limits

    ds = scale.make_dataset(n, args.pairs, cache=Path(args.cache) if args.cache else None)
    csr = ds.train.to_scipy()  # users x items, float32, sorted indices
    with threadpool_limits(limits=1):
        model = BayesianPersonalizedRanking(factors=args.dim, iterations=1, num_threads=1, random_state=0)
        a = time.perf_counter()
        model.fit(csr, show_progress=False)
        fit_s = time.perf_counter() - a
        a = time.perf_counter()
        model.fit(csr, show_progress=False)  # factors kept: the SGD pass alone
        refit_s = time.perf_counter() - a
    return {"n": n, "system": "implicit", "version": implicit.__version__, "fit_s": fit_s, "refit_s": refit_s,
            "nnz": int(csr.nnz), "peak_rss_mb": scale.peak_rss_mb()}


def ours_cell(n: int, optimizer: str, args) -> dict:
    """scale.py's ``--epoch`` cell (MF + BPR), in a fresh process."""
    ns = Namespace(pairs=args.pairs, steps=1, warmup=0, dim=args.dim, batch=args.batch, model="mf",
                   cache=args.cache, epoch=True)
    r = scale.run_cell(n, "bpr", optimizer, ns)
    return {"n": n, "system": optimizer, "epoch_s": r["epoch_s"], "build_s": r.get("build_s"),
            "batches": r["batches"], "peak_rss_mb": r["peak_rss_mb"]}


def run_implicit(n: int, args) -> dict:
    cmd = [sys.executable, __file__, "--cell", str(n), "--pairs", str(args.pairs), "--dim", str(args.dim),
           "--cache", args.cache or ""]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def summarise(runs: dict[tuple, list[dict]]) -> list[dict]:
    rows = []
    for n in sorted({k[0] for k in runs}):
        imp = runs[(n, "implicit")]
        fit, refit = statistics.median(r["fit_s"] for r in imp), statistics.median(r["refit_s"] for r in imp)
        rows.append({"n": n, "system": "implicit", "fit_s": fit, "refit_s": refit, "rounds": len(imp),
                     "round_fit_s": [r["fit_s"] for r in imp], "round_refit_s": [r["refit_s"] for r in imp],
                     "peak_rss_mb": max(r["peak_rss_mb"] for r in imp)})
        for opt in OURS:
            ours = runs[(n, opt)]
            e = statistics.median(r["epoch_s"] for r in ours)
            b = statistics.median(r["build_s"] for r in ours) if ours[0].get("build_s") is not None else None
            rows.append({"n": n, "system": opt, "epoch_s": e, "build_s": b, "rounds": len(ours),
                         "vs_implicit_fit_with_build": None if b is None else (b + e) / fit,
                         "round_epoch_s": [r["epoch_s"] for r in ours], "vs_implicit_fit": e / fit,
                         "vs_implicit_refit": e / refit, "peak_rss_mb": max(r["peak_rss_mb"] for r in ours)})
    return rows


def table(rows: list[dict]) -> list[str]:
    lines = ["| users = items | implicit fit (s) | implicit pass alone (s) | sparse-adam epoch (s) | "
             "rowwise-adagrad epoch (s) | peak RSS MB (implicit / sparse-adam / rowwise-adagrad) |",
             "|---|---|---|---|---|---|"]
    for n in sorted({r["n"] for r in rows}):
        by = {r["system"]: r for r in rows if r["n"] == n}
        imp = by["implicit"]
        cells = [f"{by[o]['epoch_s']:.2f} (×{by[o]['vs_implicit_fit']:.2f})" for o in OURS]
        rss = " / ".join(f"{by[s]['peak_rss_mb']:,.0f}" for s in ("implicit", *OURS))
        lines.append(f"| {n:,} | {imp['fit_s']:.2f} | {imp['refit_s']:.2f} | " + " | ".join(cells) + f" | {rss} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[50_000, 500_000, 2_000_000])
    p.add_argument("--pairs", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=3, help="rounds for sizes below --large")
    p.add_argument("--rounds-large", type=int, default=2)
    p.add_argument("--large", type=int, default=2_000_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--cache", default="/tmp/ssmrec-scale", help="folder for the generated pairs ('' = none)")
    p.add_argument("--cell", type=int, default=None, help=argparse.SUPPRESS)  # N: implicit's cell, here
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.cell is not None:
        print(json.dumps(implicit_cell(args.cell, args)))
        return
    for n in args.sizes:  # the data once, before any timing
        scale.make_dataset(n, args.pairs, cache=Path(args.cache) if args.cache else None)
    runs: dict[tuple, list[dict]] = {}
    loads = [os.getloadavg()]
    for r in range(max(args.rounds, args.rounds_large)):
        for n in args.sizes:
            if r >= (args.rounds_large if n >= args.large else args.rounds):
                continue
            for system in ("implicit", *OURS):
                cell = run_implicit(n, args) if system == "implicit" else ours_cell(n, system, args)
                runs.setdefault((n, system), []).append(cell)
                t = f"fit {cell['fit_s']:.2f} s, pass {cell['refit_s']:.2f} s" if system == "implicit" \
                    else f"epoch {cell['epoch_s']:.2f} s"
                print(f"round {r + 1}: {n:,} {system}: {t}, peak RSS {cell['peak_rss_mb']:,.0f} MB", flush=True)
        loads.append(os.getloadavg())
    rows = summarise(runs)
    print("\n".join(table(rows)))
    print("load averages (1, 5, 15 min) at the start and after each round:", loads)
    if args.out:
        import implicit
        import torch
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "torch": torch.__version__, "implicit": implicit.__version__,
                       "python": platform.python_version(), "cpu_count": os.cpu_count(), "load_averages": loads,
                       "rows": rows, "runs": [c for v in runs.values() for c in v]}, f, indent=1)


if __name__ == "__main__":
    main()
