"""A bounded load test of `ssmrec serve` on loopback: QPS, latency, errors, server memory.

    python benchmarks/serve_load.py runs/serve-gowalla --index hnsw --ef-search 64 \\
        --concurrency 1 8 32 --duration 10 --out benchmarks/results/serve_load-gowalla-hnsw.json

Starts ``ssmrec serve`` (uvicorn, one process) on 127.0.0.1 at a free port, waits for /healthz,
then for each concurrency runs that many asyncio clients (one keep-alive HTTP/1.1 connection
each, on asyncio streams; httpx only checks health) for ``--duration`` seconds, each asking
``GET /recommend?user=<random known user>&k=20`` as fast as it gets answers. Counts answers,
errors (a non-200 status, an empty list or a failed request), QPS, p50/p99 latency; reads the
server's resident memory (/proc) before and after every level and the CPU seconds the server
and the client used. The server is stopped at the end whatever happens (SIGTERM, then SIGKILL).
Client and server share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np

from ssmrec.serve import load_export
from ssmrec.serve.app import resolve_export


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def wait_healthy(base: str, proc: subprocess.Popen, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode} before answering")
        try:
            r = httpx.get(f"{base}/healthz", timeout=1.0)
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"no answer from {base}/healthz within {timeout:.0f} s")


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Connection:
    """One keep-alive HTTP/1.1 connection on asyncio streams: a client light enough that the
    server, not the client, is what is measured (httpx's pool costs more CPU per request than
    the server's answer on a 2-core machine)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def get(self, target: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(f"GET {target} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()
            self.writer = None


async def level(host: str, port: int, users: np.ndarray, concurrency: int, duration: float, k: int,
                seed: int) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    rng = np.random.default_rng(seed)
    picks = iter(rng.integers(users.size, size=10_000_000).tolist())
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        conn = Connection(host, port)
        try:
            while time.perf_counter() < deadline:
                target = f"/recommend?user={quote(str(users[next(picks)]))}&k={k}"
                a = time.perf_counter()
                try:
                    status, body = await conn.get(target)
                    if status != 200 or not json.loads(body)["items"]:
                        errors[str(status)] = errors.get(str(status), 0) + 1
                        continue
                except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                    await conn.close()
                    continue
                latencies.append(time.perf_counter() - a)
        finally:
            await conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    lat = np.array(latencies) * 1e3
    return {"concurrency": concurrency, "seconds": elapsed, "answers": int(lat.size),
            "errors": sum(errors.values()), "error_kinds": errors, "qps": lat.size / elapsed,
            "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
            "p99_ms": float(np.percentile(lat, 99)) if lat.size else None}


def markdown(results: list[dict]) -> str:
    """The BENCHMARKS.md table of load-test result files."""
    lines = ["| export | index | concurrency | answers/s | p50 ms | p99 ms | errors | server CPU s "
             "| answers per server CPU s | server RSS MiB (start / warm / end) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        knobs = ", ".join(f"{k}={v}" for k, v in (res.get("knobs") or {}).items() if k != "ef_construction")
        rss_ = " / ".join(f"{res[k] / 2**20:.0f}" for k in ("server_rss_start", "server_rss_after_warmup",
                                                           "server_rss_end"))
        for row in res["levels"]:
            lines.append(f"| {res['health']['dataset']} | {res['index']}{f' ({knobs})' if knobs else ''} "
                         f"| {row['concurrency']} | {row['qps']:,.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} "
                         f"| {row['errors']} | {row['server_cpu_s']:.1f} | {row['answers_per_server_cpu_s']:,.0f} "
                         f"| {rss_} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("export", nargs="?", help="an export folder or a run directory with export/")
    p.add_argument("--index", choices=("exact", "hnsw", "ivf"), default="exact")
    p.add_argument("--ef-search", type=int, default=None)
    p.add_argument("--nprobe", type=int, default=None)
    p.add_argument("--threads", type=int, default=2, help="the server's faiss threads")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--duration", type=float, default=10.0, help="seconds per concurrency level")
    p.add_argument("-k", type=int, default=20)
    p.add_argument("--startup-timeout", type=float, default=120.0)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--table", type=Path, nargs="+", default=None,
                   help="only print the markdown table of these result files")
    args = p.parse_args()
    if args.table:
        print(markdown([json.loads(f.read_text()) for f in args.table]))
        return
    if not args.export:
        p.error("name an export folder or a run directory")

    users = np.asarray(load_export(resolve_export(args.export)).user_ids)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "ssmrec.cli", "serve", args.export, "--host", "127.0.0.1", "--port", str(port),
           "--index", args.index, "--threads", str(args.threads)]
    if args.ef_search:
        cmd += ["--ef-search", str(args.ef_search)]
    if args.nprobe:
        cmd += ["--nprobe", str(args.nprobe)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "OPENBLAS_NUM_THREADS": str(args.threads)}
    t0 = time.perf_counter()
    log = tempfile.NamedTemporaryFile("w+", prefix="ssmrec-serve-", suffix=".log")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        try:
            health = wait_healthy(base, server, args.startup_timeout)
        except SystemExit:
            log.seek(0)
            print(log.read()[-4000:], file=sys.stderr)
            raise
        startup_s = time.perf_counter() - t0
        rss_start = rss(server.pid)
        print(f"server pid {server.pid} on {base}: {health['index']} index, {health['n_users']} users, "
              f"{health['n_items']} items; up in {startup_s:.1f} s, RSS {rss_start / 2**20:.0f} MiB", flush=True)
        asyncio.run(level("127.0.0.1", port, users, 1, 1.0, args.k, seed=99))  # warm-up, not counted
        rss_warm = rss(server.pid)
        levels = []
        for i, c in enumerate(args.concurrency):
            cpu = cpu_seconds(server.pid), cpu_seconds()
            row = asyncio.run(level("127.0.0.1", port, users, c, args.duration, args.k, seed=i))
            row["server_cpu_s"] = cpu_seconds(server.pid) - cpu[0]
            row["client_cpu_s"] = cpu_seconds() - cpu[1]
            row["answers_per_server_cpu_s"] = row["answers"] / max(row["server_cpu_s"], 1e-9)
            row["server_rss_after"] = rss(server.pid)
            levels.append(row)
            print(f"concurrency {c:3d}: {row['answers']:6d} answers in {row['seconds']:.1f} s, {row['qps']:7.0f}/s, "
                  f"p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, {row['errors']} errors, "
                  f"CPU s server {row['server_cpu_s']:.1f} client {row['client_cpu_s']:.1f} "
                  f"({row['answers_per_server_cpu_s']:.0f} answers per server CPU s), "
                  f"server RSS {row['server_rss_after'] / 2**20:.0f} MiB", flush=True)
        rss_end = rss(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
    result = {"export": str(resolve_export(args.export)), "index": args.index, "knobs": health.get("knobs"),
              "threads": args.threads, "k": args.k, "duration_s": args.duration, "startup_s": startup_s,
              "server_rss_start": rss_start, "server_rss_after_warmup": rss_warm, "server_rss_end": rss_end,
              "load_average": os.getloadavg(), "levels": levels, "health": health}
    print(f"server RSS: start {rss_start / 2**20:.0f} MiB, after warm-up {rss_warm / 2**20:.0f} MiB, "
          f"end {rss_end / 2**20:.0f} MiB; server stopped (status {server.returncode})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
