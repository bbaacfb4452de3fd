"""One prepared GPU window: epoch timings, then as many grid cells as fit, records packed to one archive.

    python benchmarks/gpu_campaign.py --out "$OUT" --budget 510            # on the lent GPU machine
    python benchmarks/gpu_campaign.py --smoke --out /tmp/campaign          # rehearsal on a CPU (tiny data)

The lent machine sees the repository only (not ``../shared``): copy the data into an ignored folder
of the checkout and carry it (about 10 MB)::

    mkdir -p .campaign-data && cp -r ../shared/data/gowalla ../shared/data/yelp2018 .campaign-data/
    echo /.campaign-data/ >> .git/info/exclude
    # device run: command "SSMREC_DATA=.campaign-data python3 benchmarks/gpu_campaign.py --budget 510",
    #             carry [".campaign-data"], timeout_s 560; the archive comes back under $OUT

1. Timings (issue "tune and repeat at the cost of one run"): one full training epoch of MF + SSM,
   LightGCN-1 + SSM and LightGCN-3 + BPR on Gowalla, with the host sampler fetching the loss every
   step, with the device sampler fetching it every 50 steps, and as a K = 8 sweep (seeds 0-7, one
   stream of batches); ``timings.json``.
2. Cells: ``ssmrec experiment`` processes (``--workers`` at once on the one GPU) take the queue
   below in order, each with ``--max-seconds`` set to the time left, so every cell that starts
   ends with a record (early-stopped, or marked as stopped by its budget) before the deadline.
   The LightGCN + BPR cells that earlier budgets stopped (``--extend``) start first and get the
   whole window; then cells that converge in tens of epochs. Several processes on one grid never
   run the same cell (each cell has a lock).
3. ``campaign.tar.gz`` under ``--out``: the records written in this window (into the checkout's
   ``results/records``, so recorded cells are skipped; unpack the archive's ``records/`` over it
   here), the run histories and configs (not the checkpoints: too big to bring back), the
   timings and the log of every process.

Nothing here is specific to the GPU: ``--smoke`` runs the same three steps on CPU with a tiny
synthetic dataset in about a minute (``tests`` does not run it: it is a rehearsal).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

QUEUE = [  # (grid, --only pattern, extra flags): the longest cells first (they get the whole window), then
    # the ones that converge in tens of epochs
    ("experiments/table3.toml", "gowalla-lightgcn-*-bpr-*", ["--extend"]),  # budget-stopped at 63 epochs
    ("experiments/table3.toml", "yelp2018-lightgcn-*-bpr-*", ["--extend"]),  # ... at 15
    ("experiments/leaderboard.toml", "gowalla-lightgcn-*-s0-*", []),
    ("experiments/leaderboard.toml", "yelp2018-lightgcn-*-s0-*", []),
    ("experiments/leaderboard.toml", "gowalla-mf-*-s0-*", []),
    ("experiments/table3.toml", "*-lightgcn-*-ssm-*", ["--extend"]),
    ("experiments/table4.toml", "gowalla-*", []),
    ("experiments/table2.toml", "*", []),
    ("experiments/layers.toml", "*-ssm-*", ["--sweep"]),  # layers 2-4 of a loss as one sweep
    ("experiments/layers.toml", "*-bpr-*", ["--sweep"]),
    ("experiments/leaderboard.toml", "*-lightgcn-*-s1-*", []),
    ("experiments/leaderboard.toml", "*-lightgcn-*-s2-*", []),
]
TIMED = [("mf", 1, "ssm"), ("lightgcn", 1, "ssm"), ("lightgcn", 3, "bpr")]


def timings(dataset, device: str, out: Path) -> list[dict]:
    import torch

    from ssmrec.train import TrainConfig, Trainer

    rows = []
    for model, layers, loss in TIMED:
        for sampler, sync in (("host", 1), ("device", 50)):
            cfg = TrainConfig.from_dict(dict(dataset=dataset.name, model=model, layers=layers, loss=loss,
                                             device=device, progress=False, sampler=sampler, sync_every=sync,
                                             epochs=2))
            t = Trainer(cfg, dataset, write=False, echo=None)
            seconds = []
            for epoch in range(2):  # the first epoch warms up kernels and caches
                if t.device.type == "cuda":
                    torch.cuda.synchronize()
                a = time.perf_counter()
                t.train_epoch(epoch)
                if t.device.type == "cuda":
                    torch.cuda.synchronize()
                seconds.append(time.perf_counter() - a)
                t.batch, t.partial = 0, {"loss": 0.0, "batches": 0, "seconds": 0.0}
            rows.append({"model": model, "layers": layers, "loss": loss, "sampler": sampler, "sync_every": sync,
                         "epoch_s": seconds[-1], "first_epoch_s": seconds[0], "batches": len(t.sampler),
                         "device": str(t.device)})
            print(json.dumps(rows[-1]), flush=True)
            del t
        # a K = 8 sweep (seeds 0-7) over the same batches: one epoch after a warm-up one
        from ssmrec.sweeps.sweep import Sweep

        cfg = TrainConfig.from_dict(dict(dataset=dataset.name, model=model, layers=layers, loss=loss, device=device,
                                         progress=False, epochs=2))
        sweep = Sweep(cfg, [{"seed": k} for k in range(8)], dataset, echo=None)
        seconds = []
        for epoch in range(2):
            if sweep.device.type == "cuda":
                torch.cuda.synchronize()
            seconds.append(sweep.train_epoch(epoch))
        rows.append({"model": model, "layers": layers, "loss": loss, "sweep_members": 8, "epoch_s": seconds[-1],
                     "first_epoch_s": seconds[0], "device": str(sweep.device)})
        print(json.dumps(rows[-1]), flush=True)
        del sweep
    (out / "timings.json").write_text(json.dumps(rows, indent=1))
    return rows


def campaign(queue, out: Path, records: Path, runs: Path, deadline: float, workers: int, device: str,
             env: dict) -> None:
    """Run the queue with ``workers`` processes until the deadline; ``records`` is the checkout's
    records folder, so recorded cells are skipped (and budget-stopped ones extended where asked)."""
    running: list[tuple[subprocess.Popen, str]] = []
    todo = list(queue)
    n = 0
    while todo or running:
        running = [(p, name) for p, name in running if p.poll() is None]
        left = deadline - time.time()
        if left < 45:  # the processes were told their budget; past it, stop them (they checkpoint)
            for p, _ in running:
                p.send_signal(signal.SIGTERM)
            for p, _ in running:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
            break
        while todo and len(running) < workers:
            grid, only, flags = todo.pop(0)
            n += 1
            log = out / f"worker-{n}.log"
            cmd = [sys.executable, "-m", "ssmrec.cli", "experiment", grid, "--only", only, "--device", device,
                   "--records", str(records), "--runs", str(runs),
                   "--max-seconds", str(int(left - 40)), "--no-progress", *flags]
            print(f"[campaign] {' '.join(cmd[3:])} -> {log.name}", flush=True)
            running.append((subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env),
                            only))
        time.sleep(2)


KEPT_FROM_RUNS = {"config.json", "history.jsonl", "metrics.json"}


def pack(out: Path, records: Path, runs: Path, since: float) -> Path:
    """The records written since ``since``, logs, timings, and each run's config, history and
    metrics (no checkpoints, no exports: together they would not fit what comes back)."""
    archive = out / "campaign.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for p in sorted(records.rglob("*")):
            if p.is_file() and p.stat().st_mtime >= since:
                tar.add(p, arcname=str(Path("records") / p.relative_to(records)))
        for p in sorted(runs.rglob("*")):
            if p.is_file() and p.name in KEPT_FROM_RUNS:
                tar.add(p, arcname=str(Path("runs") / p.relative_to(runs)))
        for p in sorted(out.rglob("*")):
            rel = p.relative_to(out)
            if not p.is_file() or p == archive or rel.parts[0] in ("tiny", "records", "runs"):
                continue
            tar.add(p, arcname=str(rel))
    return archive


def smoke_setup(out: Path) -> tuple[list, object]:
    """A tiny dataset and grid for a CPU rehearsal."""
    from ssmrec.data import Dataset, ratio_split, synthetic, write_lightgcn

    inter = synthetic(300, 200, seed=1)
    train, _, test = ratio_split(inter, (0.8, 0.0, 0.2), seed=0)
    folder = out / "tiny"
    folder.mkdir(parents=True, exist_ok=True)
    write_lightgcn(train, folder / "train.txt")
    write_lightgcn(test, folder / "test.txt")
    grid = out / "smoke.toml"
    grid.write_text(f'name = "smoke"\n[base]\ndataset = "{folder}"\ndim = 16\nbatch_size = 256\nepochs = 5\n'
                    'threads = 1\nprogress = false\nks = [20]\nlr = 0.01\n'
                    '[[cell]]\nmodel = "lightgcn"\nloss = ["ssm", "bsl", "bpr"]\nseed = [0, 1]\n'
                    '[[cell]]\nmodel = "lightgcn"\nloss = "bpr"\nlayers = [2, 3]\n')
    return ([(str(grid), "*-L1-*-s0-*", []), (str(grid), "*-L1-*-s1-*", ["--extend"]),
             (str(grid), "*-L[23]-*", ["--sweep"])],
            Dataset("tiny", train, test))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT", "campaign-out"))
    p.add_argument("--budget", type=float, default=510, help="seconds for the whole window (default: 510)")
    p.add_argument("--workers", type=int, default=6, help="experiment processes at once (default: 6)")
    p.add_argument("--smoke", action="store_true", help="CPU rehearsal on tiny synthetic data")
    args = p.parse_args()
    start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if args.smoke:
        queue, dataset = smoke_setup(out)
        device, workers = "cpu", 2
    else:
        from ssmrec.data import DataConfig, load_dataset

        queue, device, workers = QUEUE, "cuda", args.workers
        dataset = load_dataset(DataConfig(dataset="gowalla"))
    # the checkpoints stay outside OUT (they are not brought back); the records go to the checkout's
    records = out / "records" if args.smoke else Path("results/records")
    runs = out / "runs" if args.smoke else Path("runs/campaign")
    timings(dataset, device, out)
    campaign(queue, out, records, runs, start + args.budget, workers, device, env)
    archive = pack(out, records, runs, start)
    print(f"[campaign] {time.time() - start:.0f} s; {archive} ({archive.stat().st_size / 1e6:.1f} MB)", flush=True)


if __name__ == "__main__":
    main()
