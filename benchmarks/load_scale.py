"""Loading large interaction files: wall time and peak memory of ``load_dataset``, the loader of
``ssmrec train FILE``, on synthetic files of growing size, with the code of this tree and,
optionally, with an older copy of the package (before the fast read path).

    git archive 3210baa ssmrec | tar -x -C /tmp/ssmrec-before      # the code before the change
    python benchmarks/load_scale.py --sizes 1000000 5000000 20000000 --formats csv parquet \\
        --before /tmp/ssmrec-before --before-max-rows 5000000 --out benchmarks/results/load_scale.json

Each file (``make_large.py``'s data: string ids, users = rows / 20, items = rows / 4, Zipf items,
lognormal users, ratings and timestamps; made once in ``--data-dir``) is loaded in a fresh
process, alone, with ``OMP_NUM_THREADS=1``: ``load_dataset(DataConfig(FILE))`` (the default
settings of a single file: read, encode, 70/10/20 split under the paper protocol). ``--stage read``
loads only the file and maps its ids (``read_any`` + ``encode``). The child
reports its own times (the reading, ``read_any``, apart); the parent takes the child's peak RSS
from ``os.wait4`` (that child's alone, unlike ``RUSAGE_CHILDREN``, which keeps the largest of all).
Runs of the two codes on a file must give the same train fingerprint, and the script says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from ssmrec.data import dataset
from ssmrec.data.config import DataConfig
read = dataset.read_any
spent = {}
def timed(*a, **k):
    t = time.perf_counter()
    out = read(*a, **k)
    spent["read_s"] = time.perf_counter() - t
    return out
dataset.read_any = timed
t1 = time.perf_counter()
if sys.argv[2] == "read":  # the file read and its ids mapped, nothing split
    inter = dataset.encode({"all": dataset.read_any(sys.argv[1])})["all"]
    d, fingerprint = {"users": inter.n_users, "items": inter.n_items, "interactions": inter.nnz}, inter.fingerprint()
else:
    ds = dataset.load_dataset(DataConfig(sys.argv[1]))
    d, fingerprint = ds.describe(), ds.train.fingerprint()
t2 = time.perf_counter()
import ssmrec
print(json.dumps({"package": ssmrec.__file__, "stage": sys.argv[2], "import_s": t1 - t0, "load_s": t2 - t1, **spent,
                  "users": d["users"], "items": d["items"], "interactions": d["interactions"],
                  "fingerprint": fingerprint}))
"""


def run_child(path: Path, src: Path, timeout: float, stage: str = "load") -> dict:
    """Load ``path`` with the package under ``src`` in a fresh process: its report, the wall time
    and the child's own peak RSS (``os.wait4`` reaps it, so the rusage is that child's alone)."""
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1")
    t = time.perf_counter()
    with open(os.devnull, "w") as null:
        # -P: not the working directory first on sys.path, which would shadow PYTHONPATH's package
        child = subprocess.Popen([sys.executable, "-P", "-c", CHILD, str(path), stage], env=env, stdout=subprocess.PIPE,
                                 stderr=null, text=True)
    killer = threading.Timer(timeout, child.kill)
    killer.start()
    out = child.stdout.read()  # until the child exits
    _, status, usage = os.wait4(child.pid, 0)
    killer.cancel()
    wall, rss = round(time.perf_counter() - t, 2), round(usage.ru_maxrss / 1024, 1)
    code = os.waitstatus_to_exitcode(status)
    if code:
        return {"error": f"exit {code}" + (f" (killed after {timeout:.0f} s)" if wall >= timeout else ""),
                "wall_s": wall, "peak_rss_mb": rss}
    return {**json.loads(out.strip().splitlines()[-1]), "wall_s": wall, "peak_rss_mb": rss}


def data_file(folder: Path, rows: int, fmt: str, seed: int) -> Path:
    """The benchmark's file of ``rows`` rows in ``fmt``, written once (``make_large.py``'s data)."""
    path = folder / f"large-{rows}-s{seed}.{fmt}"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_large.py"), str(path), "--rows", str(rows),
                        "--string-ids", "--seed", str(seed)], check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        print(f"wrote {path} in {time.perf_counter() - t:.1f} s", flush=True)
    return path


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000])
    p.add_argument("--formats", nargs="+", default=["csv", "parquet"], choices=["csv", "csv.gz", "tsv", "parquet"])
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/ssmrec-load-scale"))
    p.add_argument("--before", type=Path, default=None, help="a copy of the older package (its parent folder)")
    p.add_argument("--before-max-rows", type=int, default=5_000_000, help="the older code only up to this size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stage", choices=["load", "read"], default="load",
                   help="load: load_dataset, split included; read: read_any and encode only")
    p.add_argument("--code", action="append", default=[], metavar="NAME=DIR",
                   help="a further copy of the package to measure (e.g. proposed=/tmp/ssmrec-proposed)")
    p.add_argument("--timeout", type=float, default=1800.0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "load_scale.json")
    a = p.parse_args(argv)
    record = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_average_at_start": os.getloadavg(),
                          "note": "2 cores shared with a background training job and other sessions"},
              "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
              "runs": []}
    for rows in a.sizes:
        for fmt in a.formats:
            path = data_file(a.data_dir, rows, fmt, a.seed)
            codes = [("after", ROOT)] + ([("before", a.before)] if a.before and rows <= a.before_max_rows else [])
            codes += [tuple(c.split("=", 1)) for c in a.code]
            prints = {}
            for code, src in codes:
                res = run_child(path, src, a.timeout, a.stage)
                res.update(rows=rows, format=fmt, code=code, file_mb=round(path.stat().st_size / 2**20, 1),
                           load_average=os.getloadavg()[0])
                record["runs"].append(res)
                prints[code] = res.get("fingerprint")
                print(json.dumps(res), flush=True)
            for code, fingerprint in list(prints.items())[1:]:
                same = fingerprint == prints["after"]
                next(r for r in record["runs"][::-1] if r["code"] == code)["same_as_after"] = same
                print(f"{rows} {fmt}: {code} and after give {'the same' if same else 'DIFFERENT'} data", flush=True)
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(record, indent=1) + "\n")
    return record


if __name__ == "__main__":
    main()
