"""``ssmrec serve``: top-K answers over HTTP from an export (:mod:`ssmrec.serve`, the 'serve'
extra; imported only when the command runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ssmrec.cli.common import Command
from ssmrec.train.config import ConfigError

LIMIT_FLAGS = {
    "max_k": ("the largest k a request may ask for", 1000),
    "max_batch": ("the most users in one POST", 4096),
    "max_results": ("the most users x k in one POST", 100_000),
    "max_body": ("the largest POST body, in bytes", 1 << 20),
}
"""The limits per request that ``ssmrec serve`` sets (``--max-k``...): what each bounds and its
default, as :data:`ssmrec.serve.app.LIMITS` has them (a module this one must not import to build
the parser: it loads FastAPI; ``tests/test_serve.py`` holds the two together)."""
LIMIT_PREFIX = "SSMREC_SERVE_"
"""The environment variables a limit not given is read from (``SSMREC_SERVE_MAX_K``...)."""


def _add_serve(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("serve", help="answer top-K requests over HTTP from an export (needs the 'serve' extra)")
    p.add_argument("export_dir", help="an export folder (ssmrec export), or a run directory with export/")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--index", choices=("exact", "hnsw", "ivf", "ivfpq"), default="exact",
                   help="exact (brute force), hnsw, ivf or ivfpq (approximate; inner product on the run's "
                        "similarity; ivf for millions of items, see BENCHMARKS.md)")
    p.add_argument("--ef-search", type=int, default=None, help="hnsw: candidate list size when searching")
    p.add_argument("--nprobe", type=int, default=None, help="ivf, ivfpq: lists visited per query")
    p.add_argument("--refine", type=int, default=None,
                   help="ivfpq: candidates re-scored exactly, as a multiple of k")
    p.add_argument("--threads", type=int, default=0, help="faiss threads (0 = its default)")
    for name, (text, default) in LIMIT_FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), type=int, default=None, metavar="N",
                       help=f"{text} (default: ${LIMIT_PREFIX}{name.upper()}, else {default:,})")
    return p


def _check_serve(args: argparse.Namespace) -> None:
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {args.port}")
    if args.threads < 0:
        raise ConfigError(f"--threads must be >= 0, got {args.threads}")
    for flag, value in (("--ef-search", args.ef_search), ("--nprobe", args.nprobe), ("--refine", args.refine)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be positive, got {value}")
    for name in LIMIT_FLAGS:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if not Path(args.export_dir).is_dir():
        raise ConfigError(f"{args.export_dir}: no such folder (an export, or a run directory with export/)")


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ssmrec.serve.app import create_app
        from ssmrec.serve.export import ExportError
        from ssmrec.serve.index import IndexConfigError
    except ImportError as e:
        raise ConfigError(f"serving needs the 'serve' extra ({e.name} is missing): "
                          "pip install 'ssmrec[serve]'") from None
    knobs = {name: value for name, value in (("ef_search", args.ef_search), ("nprobe", args.nprobe),
                                             ("refine", args.refine)) if value is not None}
    try:
        app = create_app(args.export_dir, args.index, threads=args.threads, max_k=args.max_k,
                         max_batch=args.max_batch, max_results=args.max_results, max_body=args.max_body, **knobs)
    except (ExportError, IndexConfigError) as e:
        raise ConfigError(str(e)) from None
    health = app.state.recommender.health()
    print(f"serving {health['export']} ({health['model']} + {health['loss']}, {health['n_users']} users, "
          f"{health['n_items']} items, {health['index']} index, {health['similarity']}) "
          f"on http://{args.host}:{args.port}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


COMMANDS = {"serve": Command(_add_serve, cmd_serve, _check_serve)}
