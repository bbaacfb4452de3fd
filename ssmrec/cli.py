"""The ``ssmrec`` command line: the only module that reads ``sys.argv``."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np

from ssmrec.errors import DataError
from ssmrec.train.config import ConfigError, TrainConfig, load_toml, parse_text

# setting -> (topic, help). The order here is the order of ``ssmrec train --help``.
OPTIONS: dict[str, tuple[str, str]] = {
    "dataset": ("data", "registry name (gowalla, yelp2018, amazon-book, alibaba-ifashion, ml-100k), a folder "
                        "with train.txt/test.txt[/valid.txt], or one interaction file to split"),
    "data_dir": ("data", "folder searched first for registry datasets (then $SSMREC_DATA, the cache)"),
    "ratios": ("data", "train/valid/test fractions for splitting a single file"),
    "valid_fraction": ("data", "share of each user's train items carved out as validation (holdout)"),
    "split_seed": ("data", "seed of the random splits"),
    "temporal": ("data", "split a single file by timestamp instead of at random"),
    "kcore": ("data", "k-core filter for a single file before splitting (0 = off)"),
    "min_rating": ("data", "keep interactions rated at least this"),
    "download": ("data", "download a missing registry dataset into the cache"),
    "model": ("model", "mf, svdpp or lightgcn"),
    "dim": ("model", "embedding size"),
    "layers": ("model", "LightGCN propagation layers"),
    "side": ("model", "SVD++ propagation side: user (eq. 23) or item (eq. 31)"),
    "a0": ("model", "SVD++ exponent of the receiving node's degree"),
    "a1": ("model", "SVD++ exponent of the sending node's degree"),
    "loss": ("loss", "ssm, bpr, bce, softmax, ccl, or after the study: bsl, psl, adaptau, slk, clogq, ntr"),
    "tau": ("loss", "temperature of ssm / softmax and of the losses after the study"),
    "similarity": ("loss", "training similarity cos or ip (default: cos for ssm/softmax, ip for bpr/bce)"),
    "reg": ("loss", "L2 coefficient on the batch's layer-0 embeddings"),
    "negatives": ("loss", "per-positive negatives for bpr / bce / ccl (default 1 / 4 / 800); for ssm and the "
                          "in-batch losses after the study, N sampled negatives per positive in place of the batch's "
                          "other positives (default: in-batch)"),
    "mask_duplicates": ("loss", "ssm: mask in-batch copies of the positive item"),
    "mask_seen": ("loss", "ssm: mask candidates the user interacted with in train"),
    "extra_negatives": ("loss", "ssm: shared sampled negatives appended to the in-batch ones"),
    "negative_beta": ("loss", "extra negatives drawn with probability ~ (degree+1)**beta (0 = uniform)"),
    "logq": ("loss", "ssm: logQ correction (subtract log expected candidate counts)"),
    "margin": ("loss", "ccl margin m"),
    "neg_weight": ("loss", "ccl negative weight w"),
    "lr": ("optimisation", "learning rate of the optimizer (Adam's by default)"),
    "optimizer": ("optimisation", "adam (dense, the study's), sparse-adam (lazy Adam) or rowwise-adagrad: the sparse "
                                  "ones update only the rows a batch touches, for large catalogues"),
    "batch_size": ("optimisation", "positive pairs per batch"),
    "epochs": ("optimisation", "train at most this many epochs"),
    "max_seconds": ("optimisation", "time budget in seconds, checked after each epoch (0 = none)"),
    "protocol": ("evaluation", "paper (select on test, as the study) or holdout (select on validation)"),
    "eval_every": ("evaluation", "evaluate every N epochs"),
    "metric": ("evaluation", "selection / early-stopping metric, e.g. recall@20, ndcg@20"),
    "patience": ("evaluation", "evaluations without improvement before stopping (0 = never)"),
    "ks": ("evaluation", "cut-offs K of the metrics"),
    "test_similarity": ("evaluation", "scoring at evaluation: ip or cos (default: cos for ccl, ip otherwise)"),
    "eval_chunk": ("evaluation", "users scored at once (bounds memory)"),
    "seed": ("run", "seed of initialisation, shuffling and sampling"),
    "device": ("run", "auto, cpu or cuda"),
    "threads": ("run", "torch CPU threads; 0 = auto: 1 for small data (< 200k pairs) or a busy machine, else the "
                       "free cores, at most 8 (a resumed run keeps its count)"),
    "out": ("run", "run directory (default: runs/<dataset>-<model>-<loss>-<time>)"),
    "checkpoint_every": ("run", "seconds between mid-epoch checkpoints (0 = epoch ends only)"),
    "progress": ("run", "show a progress bar per epoch"),
    "nproc": ("run", "worker processes on this machine (torch.distributed: gloo on CPU, NCCL on CUDA), "
                     "each with its part of every global batch; same result as one"),
    "user_col": ("data", "user column of a delimited/Parquet file, by name or 0-based position (default: detected)"),
    "item_col": ("data", "item column (default: detected)"),
    "rating_col": ("data", "rating column (default: detected; -1 = none)"),
    "time_col": ("data", "timestamp column: numbers, or ISO-8601 dates/times (default: detected; -1 = none)"),
    "time_cutoff": ("data", "split a single file at this moment (ISO-8601 or epoch seconds): later "
                            "interactions are held out (default: per-user splits)"),
    "positive_min": ("data", "explicit feedback: rows rated at least this are positives (with --negative-max)"),
    "negative_max": ("data", "explicit feedback: rows rated at most this are dislikes, trained on by losses that "
                             "use them (ntr) and measured by dislike@K"),
    "loss_params": ("loss", "parameters of a registered loss, NAME=VALUE ... (see `ssmrec.losses.register_loss`)"),
    "plugins": ("run", "Python module to import first (it may register losses); repeatable"),
    "sampler": ("run", "where batches and negatives are drawn: host (numpy), device (on the training device: "
                       "same distributions, another random stream) or auto: device on CUDA, host on CPU"),
    "sync_every": ("run", "steps between fetches of the loss to the host (its log, NaN check and stop-signal "
                          "check); 0 = auto: 1 on CPU, 50 on CUDA; results do not depend on it"),
}
FLAG_NAMES = {"ks": ["--k", "--ks", "-k"], "loss_params": ["--loss-param"], "plugins": ["--plugin"]}
"""Flags spelt otherwise than their setting: one spelling of the cut-off everywhere (``--k``,
with ``--ks`` and ``-k`` as aliases)."""


def _add_train_options(p: argparse.ArgumentParser) -> None:
    types = {f.name: str(f.type) for f in fields(TrainConfig)}
    defaults = {f.name: f.default for f in fields(TrainConfig)}  # no instance: validation imports torch
    missing = set(types) - set(OPTIONS)
    assert not missing, f"settings without a flag: {missing}"
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name, (topic, text) in OPTIONS.items():
        g = groups.setdefault(topic, p.add_argument_group(topic))
        flags = FLAG_NAMES.get(name, ["--" + name.replace("_", "-")])
        default = defaults[name]
        if "default" not in text and default not in (None, dataclasses.MISSING, (), ""):
            shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
            text = f"{text} (default: {shown})"
        kind = types[name]
        # flag text is parsed into the setting's type here; text that does not parse stays text,
        # for TrainConfig.replace to refuse with the setting's name (one line, exit code 2)
        parse = functools.partial(parse_text, kind)
        if kind.startswith("bool"):
            g.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif kind.startswith("dict"):
            g.add_argument(*flags, dest=name, nargs="+", action="extend", default=None, metavar="NAME=VALUE",
                           help=text)
        elif name == "plugins":
            g.add_argument(*flags, dest=name, action="append", default=None, metavar="MODULE", help=text)
        elif kind.startswith("tuple"):
            g.add_argument(*flags, dest=name, nargs="+", type=parse, default=None, metavar="V", help=text)
        else:
            g.add_argument(*flags, dest=name, type=parse, default=None, metavar=name.upper(), help=text)


def _version() -> str:
    from ssmrec import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssmrec", description="Train and evaluate recommenders with sampled softmax and its rivals.")
    parser.add_argument("--version", action="version", version=f"ssmrec {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log warnings and details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("datasets", help="list the registered datasets, where they are, their statistics")
    p.add_argument("--data-dir", default=None, help="folder searched first")
    p.add_argument("--stats", action=argparse.BooleanOptionalAction, default=True,
                   help="load the datasets found and show their statistics (default: on)")

    p = sub.add_parser("train", help="train a model (settings from flags and/or a TOML file)")
    p.add_argument("--config", default=None, help="TOML file of settings; flags override it")
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue an interrupted run from its last checkpoint")
    _add_train_options(p)

    p = sub.add_parser("evaluate", help="evaluate a trained run on its test set")
    p.add_argument("run_dir")
    p.add_argument("--similarity", choices=("ip", "cos"), default=None,
                   help="test-time similarity (default: the run's)")
    p.add_argument("--k", "--ks", "-k", dest="ks", type=int, nargs="+", default=None,
                   help="cut-offs (default: the run's)")
    p.add_argument("--split", choices=("test", "valid"), default="test")
    p.add_argument("--chunk", type=int, default=None, help="users scored at once")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", dest="json_out", default=None, help="also write the metrics to this file")

    p = sub.add_parser("recommend", help="top-K unseen items of a user, or of every user")
    p.add_argument("run_dir")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="a user id as in the data files")
    who.add_argument("--all", action="store_true", help="every user (needs --out)")
    p.add_argument("--k", "-k", dest="k", type=int, default=20, help="list length (default: 20)")
    p.add_argument("--out", default=None, help="output file: .tsv/.csv/.txt or .parquet")
    p.add_argument("--similarity", choices=("ip", "cos"), default=None)
    p.add_argument("--chunk", type=int, default=2048)
    p.add_argument("--device", default="auto")

    p = sub.add_parser("experiment", help="run a grid of runs declared in a TOML file (resumable)")
    p.add_argument("grid", nargs="+", help="grid file(s), e.g. experiments/table3.toml")
    p.add_argument("--records", default="results/records", help="where result records go")
    p.add_argument("--runs", default="runs/experiments", help="where run directories go")
    p.add_argument("--only", default=None, help="run only cells whose id contains this text, or matches this glob "
                                                   "pattern (e.g. 'gowalla-mf-*-s0-*')")
    p.add_argument("--dry-run", action="store_true", help="list what would run")
    p.add_argument("--extend", action="store_true",
                   help="continue cells whose record says their time budget stopped them (not early stopping)")
    p.add_argument("--sweep", action="store_true",
                   help="train cells that differ only in reg, tau, layers, margin or neg_weight together, as one "
                        "resumable sweep each (members equal their solo runs to float rounding)")
    p.add_argument("--device", default=None, help="override every cell's device")
    p.add_argument("--threads", type=int, default=None, help="override every cell's torch threads")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="override every cell's time budget (a run-only setting: records say how a run ended)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)

    p = sub.add_parser("rerun", help="train a recorded cell again from its record and compare the results")
    p.add_argument("record", help="a results/records/<grid>/<cell>.json")
    p.add_argument("--out", default=None, help="run directory (default: runs/rerun/<cell>)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)

    p = sub.add_parser("report", help="render results/REPORT.md, CSV tables and figures from recorded runs")
    p.add_argument("--records", default="results/records")
    p.add_argument("--out", default="results")
    p.add_argument("--notes", default="results/notes.toml", help="written notes on differences (TOML [notes])")

    p = sub.add_parser("export", help="write a run's scored vectors, ids and seen items (numpy + Parquet) "
                                      "for serving")
    p.add_argument("run_dir")
    p.add_argument("--out", default=None, help="export folder (default: RUN_DIR/export)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which weights")
    p.add_argument("--device", default="auto")

    p = sub.add_parser("sweep", help="train K settings of one model and loss at once, over one batch stream "
                                     "(members differ in seed, reg, tau, layers, margin, neg_weight, a0/a1)")
    p.add_argument("--config", default=None,
                   help="TOML file of the base settings; a [sweep] table may list members = [{seed = 0}, "
                        "{reg = 1e-4, tau = 0.2}]; flags override the base settings")
    p.add_argument("--resume", default=None, metavar="SWEEP_DIR",
                   help="continue an interrupted sweep from its last checkpoint (only --device, --threads, "
                        "--progress and --checkpoint-every may be given with it)")
    p.add_argument("--member", action="append", default=[], metavar="NAME=VALUE[,NAME=VALUE...]",
                   help="one member's settings, e.g. --member seed=1 --member reg=1e-4,tau=0.2 (repeatable; "
                        "after the file's members)")
    _add_train_options(p)

    p = sub.add_parser("tune", help="tune settings on a grid: Optuna trials trained K at a time as sweeps, "
                                    "pruned by successive halving, resumable (SQLite or any RDB URL)")
    p.add_argument("--config", default=None, help="TOML file of the base settings; flags override it")
    p.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                   help="values of one sweepable setting (seed, reg, tau, layers, margin, neg_weight, a0, a1); "
                        "repeatable: every combination is a trial")
    p.add_argument("--tau-search", action="store_true",
                   help="the study's temperature search: tau in {0.1, 0.2, 0.5, 1.0}, then steps of 0.02 around "
                        "the best")
    p.add_argument("--members", type=int, default=8, help="trials trained together in one sweep (default: 8)")
    p.add_argument("--pruner", choices=("sha", "none"), default="sha",
                   help="successive halving over epochs, or none (default: sha)")
    p.add_argument("--min-epochs", type=int, default=5, help="first rung of successive halving (default: 5)")
    p.add_argument("--storage", default=None,
                   help="Optuna storage URL (default: sqlite:///OUT/study.db; an RDB URL shares a study "
                        "between machines)")
    p.add_argument("--study", default=None, help="study name in the storage (default: the folder's name)")
    _add_train_options(p)

    p = sub.add_parser("serve", help="answer top-K requests over HTTP from an export (needs the 'serve' extra)")
    p.add_argument("export_dir", help="an export folder (ssmrec export), or a run directory with export/")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--index", choices=("exact", "hnsw", "ivf"), default="exact",
                   help="exact (brute force), hnsw or ivf (approximate; inner product on the run's similarity)")
    p.add_argument("--ef-search", type=int, default=None, help="hnsw: candidate list size when searching")
    p.add_argument("--nprobe", type=int, default=None, help="ivf: lists visited per query")
    p.add_argument("--threads", type=int, default=0, help="faiss threads (0 = its default)")

    p = sub.add_parser("plot", help="draw a run's learning curves (loss and metrics per epoch) to a PNG")
    p.add_argument("run_dir")
    p.add_argument("--out", default=None, help="image file (default: RUN_DIR/curves.png)")

    p = sub.add_parser("analyze", help="measure the study's four claims on a trained run")
    p.add_argument("run_dir")
    p.add_argument("--users", type=int, default=2000, help="users sampled for the score and DCG analyses")
    p.add_argument("--out", default=None, help="write the measurements to this JSON file")
    p.add_argument("--into", default=None, help="add them to this result record (a results/records/*.json)")
    p.add_argument("--device", default="auto")
    return parser


def _train_values(args: argparse.Namespace) -> dict:
    return {name: getattr(args, name) for name in OPTIONS if getattr(args, name, None) is not None}


def cmd_train(args: argparse.Namespace) -> int:
    from ssmrec.train import distributed
    from ssmrec.train.run import RunDir, check_new_run_dir

    flags = _train_values(args)
    if args.resume:
        allowed = {"epochs", "device", "threads", "progress", "max_seconds", "checkpoint_every", "nproc",
                   "sync_every"}
        extra = set(flags) - allowed
        if extra:
            raise ConfigError(f"--resume keeps the run's settings; only {sorted(allowed)} may change "
                              f"(got {sorted(extra)})")
        cfg = RunDir(args.resume).load_config().replace(flags, source="command line")
    else:
        base = load_toml(args.config) if args.config else {}
        cfg = TrainConfig.from_dict(base, source=args.config or "settings")
        cfg = cfg.replace(flags, source="command line")
        for line in cfg.inapplicable(set(base) | set(flags)):
            print(f"ssmrec train: warning: {line}", file=sys.stderr)
        if cfg.out:
            check_new_run_dir(cfg.out)  # before any worker starts: never overwrite a run
    hint = (f"; the run can be resumed with: ssmrec train --resume "
            f"{args.resume or cfg.out or '<its run directory>'} --nproc {cfg.nproc}")
    distributed.launch(_train, (cfg, args.resume, flags), nproc=cfg.nproc, device=cfg.device, hint=hint)
    return 0


def _train(dist, cfg: TrainConfig, resume: str | None, flags: dict) -> None:
    """One process of ``ssmrec train``: the only one, one of ``--nproc``, or one of torchrun's."""
    from ssmrec.train.trainer import Trainer

    if resume:
        trainer = Trainer.resume(resume, overrides=flags, dist=dist)
    else:
        trainer = Trainer(cfg, dist=dist)
        if dist.is_main:
            procs = f" x {dist.world} processes" if dist.enabled else ""
            print(f"{trainer.data.name}: {trainer.data.n_users} users, {trainer.data.n_items} items, "
                  f"{trainer.data.train.nnz} train pairs; {cfg.model} + {cfg.loss}; device "
                  f"{trainer.device}{procs}; run directory {trainer.run.path}", flush=True)
    trainer.fit()


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ssmrec.eval.evaluator import Evaluator
    from ssmrec.train.config import check_device
    from ssmrec.train.restore import restore

    # nonsense is refused before the run is loaded, and anything scored or written
    if args.ks is not None and any(k < 1 for k in args.ks):
        raise ConfigError(f"--k: cut-offs must be positive, got {' '.join(map(str, args.ks))}")
    if args.chunk is not None and args.chunk < 1:
        raise ConfigError(f"--chunk must be positive, got {args.chunk}")
    check_device(args.device, "--device")
    if args.json_out:
        _check_output_file(args.json_out, "--json")
    r = restore(args.run_dir, device=args.device)
    cfg = r.cfg
    if args.split == "valid":
        if r.data.valid is None:
            raise ConfigError(f"{args.run_dir}: this run ({cfg.protocol} protocol) has no validation set")
        target, exclude = r.data.valid, [r.data.train]
    else:
        target, exclude = r.data.test, r.exclude_sets()
    ks = tuple(args.ks or cfg.ks)
    if max(ks) > r.data.n_items:
        where = "--k" if args.ks else "the run's ks"
        raise ConfigError(f"{where}: K {max(ks)} is larger than the {r.data.n_items} items of the catalogue")
    ev = Evaluator(target, exclude, ks=ks,
                   similarity=args.similarity or cfg.scoring,
                   chunk_size=args.chunk or cfg.eval_chunk, device=r.model.user_emb.device,
                   progress=sys.stderr.isatty())
    metrics = ev.evaluate_model(r.model)
    print(f"{args.run_dir} (epoch {r.epoch}, {args.split}, similarity {ev.similarity}, "
          f"{int(ev.users.numel())} users)")
    for key, value in metrics.items():
        print(f"  {key:<14} {value:.6f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(metrics, indent=2) + "\n")
    return 0


OUTPUT_SUFFIXES = (".tsv", ".csv", ".txt", ".parquet")


def cmd_recommend(args: argparse.Namespace) -> int:
    if args.all and not args.out:
        raise ConfigError("--all needs --out FILE (.tsv, .csv, .txt or .parquet)")
    if args.k < 1:
        raise ConfigError(f"-k must be positive, got {args.k}")
    out = Path(args.out) if args.out else None
    if out is not None:
        if out.suffix not in OUTPUT_SUFFIXES:
            raise ConfigError(f"--out {out}: unknown format {out.suffix or '(no suffix)'!r}; use one of "
                              f"{', '.join(OUTPUT_SUFFIXES)}")
        if not out.parent.is_dir():
            raise ConfigError(f"--out {out}: folder {out.parent} does not exist")
        if out.is_dir():
            raise ConfigError(f"--out {out} is a folder; name a file")
    answer = _answer_from_export(args) or _answer_from_model(args)
    users, items, scores, k = answer
    ok = np.isfinite(scores)
    rank = np.broadcast_to(np.arange(1, k + 1), items.shape)
    rows = np.broadcast_to(users[:, None], items.shape)
    if out is None:  # one user: no pandas, so that an answer takes well under a second
        print(f"{'rank':>4}  {'item':>12}  score")
        for r, i, v in zip(rank[ok], items[ok], scores[ok]):
            print(f"{r:>4}  {str(i):>12}  {v:.6f}")
        return 0
    import pandas as pd

    frame = pd.DataFrame({"user": rows[ok], "rank": rank[ok], "item": items[ok], "score": scores[ok]})
    if out.suffix == ".parquet":
        frame.to_parquet(out, index=False)
    else:
        frame.to_csv(out, sep="," if out.suffix == ".csv" else "\t", index=False)
    print(f"wrote {len(frame)} recommendations for {frame['user'].nunique()} users to {out}")
    return 0


def _answer_from_export(args: argparse.Namespace):
    """The run's ``export/`` (written when training finished): numpy only, no data files."""
    from ssmrec.serve.export import ExportError, load_export

    run = Path(args.run_dir)
    try:
        metrics = json.loads((run / "metrics.json").read_text())
        ex = load_export(run / "export")
    except (OSError, ValueError):
        return None
    if ex.manifest.get("epoch") != metrics.get("best_epoch"):
        return None  # trained further since: the model path below reads the checkpoint
    try:
        rows = np.arange(ex.n_users) if args.all else np.array([ex.user_index(args.user)])
    except ExportError as e:
        raise DataError(str(e)) from None
    k = min(args.k, ex.n_items)
    items = np.empty((rows.size, k), np.int64)
    scores = np.empty((rows.size, k), np.float32)
    from tqdm.auto import tqdm

    bar = tqdm(total=rows.size, unit="user", desc="recommending", leave=False,
               disable=not (args.all and sys.stderr.isatty()))
    for s in range(0, rows.size, args.chunk):
        items[s:s + args.chunk], scores[s:s + args.chunk] = ex.recommend(rows[s:s + args.chunk], k,
                                                                        similarity=args.similarity)
        bar.update(min(args.chunk, rows.size - s))
    bar.close()
    raw_items = ex.item_ids[np.maximum(items, 0)]
    return ex.user_ids[rows], raw_items, scores, k


def _answer_from_model(args: argparse.Namespace):
    """Restore the model from its checkpoint and data (runs without an export)."""
    import torch

    from ssmrec.eval.ranking import SeenItems, iter_topk
    from ssmrec.train.restore import restore

    r = restore(args.run_dir, device=args.device)
    train = r.data.train
    dev = r.model.user_emb.device
    with torch.no_grad():
        u_reps, i_reps = r.model()
    users = (torch.arange(train.n_users, device=dev) if args.all
             else torch.tensor([train.user_index(args.user)], device=dev))
    seen = SeenItems(r.exclude_sets(), dev)
    sim = args.similarity or r.cfg.scoring
    k = min(args.k, train.n_items)
    parts = [(c.cpu().numpy(), t.cpu().numpy(), v.cpu().numpy())
             for c, t, v in iter_topk(u_reps, i_reps, users, k, seen=seen, similarity=sim, chunk_size=args.chunk)]
    rows = np.concatenate([p[0] for p in parts])
    items = np.concatenate([p[1] for p in parts])
    scores = np.concatenate([p[2] for p in parts])
    return train.raw_users(rows), train.raw_items(items), scores, k


def cmd_datasets(args: argparse.Namespace) -> int:
    from ssmrec.data import registry
    from ssmrec.data.dataset import DataConfig, load_dataset

    roots = registry.search_roots(args.data_dir)
    print("search order: " + ", ".join(str(r) for r in roots))
    for row in registry.status(args.data_dir):
        spec = row["spec"]
        files = row["files"]
        print(f"\n{spec.name}" + (f" (also: {', '.join(spec.aliases)})" if spec.aliases else ""))
        for f in spec.files:
            where = files[f.role]
            print(f"  {f.role:<5} {str(where) if where else 'missing':<60} {f.url}")
        if spec.paper_stats:
            u, i, n = spec.paper_stats
            print(f"  paper (Table 1): {u:,} users, {i:,} items, {n:,} interactions")
        if spec.note:
            print(f"  note: {spec.note}")
        if args.stats and all(files.values()):
            try:
                d = load_dataset(DataConfig(spec.name, data_dir=args.data_dir, download=False)).describe()
                print(f"  found: {d['users']:,} users, {d['items']:,} items, {d['interactions']:,} "
                      f"interactions (train {d['train']:,} + test {d['test']:,}), density "
                      f"{d['density']:.5f}")
            except DataError as e:
                print(f"  error: {e}")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from ssmrec.experiments import Runner, load_grid

    overrides = {k: v for k, v in (("device", args.device), ("threads", args.threads),
                                   ("progress", args.progress), ("max_seconds", args.max_seconds))
                 if v is not None}
    TrainConfig().replace(overrides, source="command line")  # refuse bad overrides before any cell runs
    grids = [load_grid(path) for path in args.grid]  # every grid is checked before the first runs
    runner = Runner(args.records, args.runs, overrides=overrides, echo=lambda m: print(m, flush=True),
                    extend=args.extend)
    for path, grid in zip(args.grid, grids):
        print(f"{grid.name}: {len(grid.cells)} cells from {path}", flush=True)
        runner.run_grid(grid, only=args.only, dry_run=args.dry_run, sweep=args.sweep)
    return 0


def _check_output_file(path: str, flag: str) -> None:
    """Refuse, before any work, an output file that cannot be written where it is asked for."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{flag}: {p} is a folder, not a file")
    if not p.parent.is_dir():
        raise ConfigError(f"{flag}: cannot write {p}: no folder {p.parent}")


def _read_record(path: str) -> dict:
    """A result record (results/records/<grid>/<cell>.json), or a ConfigError naming the file."""
    p = Path(path)
    try:
        rec = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a folder, not a result record (results/records/<grid>/<cell>.json)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot be read ({getattr(e, 'strerror', None) or e})") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p}: not a result record (invalid JSON: {e})") from None
    metrics = rec.get("metrics") if isinstance(rec, dict) else None
    need = ("stop_reason", "epochs_run", "test")
    if not (isinstance(rec, dict) and isinstance(rec.get("settings"), dict) and "cell" in rec
            and isinstance(metrics, dict) and all(k in metrics for k in need)):
        raise ConfigError(f"{p}: not a result record (it needs cell, settings and metrics with "
                          f"{', '.join(need)})")
    return rec


def cmd_rerun(args: argparse.Namespace) -> int:
    from ssmrec.train.trainer import Trainer

    rec = _read_record(args.record)
    settings = dict(rec["settings"])
    recorded = rec["metrics"]
    if recorded["stop_reason"] != "early_stopped":
        # a run stopped by a budget is repeated for the epochs it ran (seconds differ between machines)
        settings["epochs"] = recorded["epochs_run"]
    cfg = TrainConfig.from_dict(settings, source=args.record).replace(
        {"out": args.out or f"runs/rerun/{rec['cell']}", "device": args.device, "threads": args.threads,
         "progress": args.progress}, source="command line")
    result = Trainer(cfg).fit()
    print(f"{'metric':<14} {'recorded':>10} {'rerun':>10}")
    for key, value in recorded["test"].items():
        print(f"{key:<14} {value:10.4f} {result['test'][key]:10.4f}")
    env = rec.get("env", {})
    print(f"recorded on {env.get('cuda') or env.get('cpu')} with {env.get('threads')} threads, "
          f"commit {str(env.get('commit'))[:12]}; same machine, threads and commit give identical numbers, "
          "others agree within seed noise")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ssmrec.experiments.report import load_records, render

    records = load_records(args.records)
    if not Path(args.records).is_dir():
        raise ConfigError(f"--records {args.records}: no such folder (run a grid with `ssmrec experiment "
                          "GRID.toml --records DIR` first)")
    grids = sorted({r.path.parent.name for r in records})
    print(f"read {len(records)} records from {args.records} ({len(grids)} grids: {', '.join(grids)})")
    path = render(args.records, args.out, args.notes)
    print(f"wrote {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ssmrec.train.export import write_export
    from ssmrec.train.restore import restore
    from ssmrec.train.run import BEST, LAST

    r = restore(args.run_dir, device=args.device, checkpoint=BEST if args.checkpoint == "best" else LAST)
    metrics = r.run.metrics() or {}
    out = write_export(args.out or Path(args.run_dir) / "export", r.model, r.data, r.cfg, epoch=r.epoch,
                       metrics=metrics.get("test") if r.epoch == metrics.get("best_epoch") else None,
                       run_dir=args.run_dir, parquet=True)
    print(f"wrote {out}: {r.data.n_users} users and {r.data.n_items} items x {r.cfg.dim} "
          f"({r.cfg.model} + {r.cfg.loss}, epoch {r.epoch}, scored by {r.cfg.scoring})")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from ssmrec.experiments.members import member_configs, parse_member
    from ssmrec.experiments.sweep import Sweep, check_new_sweep_dir, default_sweep_dir
    from ssmrec.train.config import read_toml

    if args.resume:
        if args.config or args.member:
            raise ConfigError("--resume continues a sweep with its own settings and members: give neither "
                              "--config nor --member")
        sweep = Sweep.resume(args.resume, overrides=_train_values(args), echo=lambda line: print(line, flush=True))
        sweep.fit()
        return 0
    data = read_toml(args.config) if args.config else {}
    table = data.pop("sweep", {})
    if not isinstance(table, dict) or set(table) - {"members"}:
        raise ConfigError(f"{args.config}: [sweep] takes one key, members = [{{seed = 0}}, {{reg = 1e-4}}, ...]")
    members = list(table.get("members", [])) + [parse_member(text) for text in args.member]
    flags = _train_values(args)
    base = TrainConfig.from_dict(data.get("train", data), source=args.config or "settings")
    base = base.replace(flags, source="command line")
    member_configs(base, members)  # refused before any work
    out = Path(base.out) if base.out else default_sweep_dir(base)
    check_new_sweep_dir(out)
    sweep = Sweep(base, members, run_dir=out, echo=lambda line: print(line, flush=True))
    print(f"{sweep.data.name}: {sweep.data.n_users} users, {sweep.data.n_items} items, {sweep.data.train.nnz} "
          f"train pairs; {len(members)} members of {base.model} + {base.loss}, batches and negatives of seed "
          f"{base.seed}; device {sweep.device}; sweep directory {out}", flush=True)
    sweep.fit()
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from ssmrec.experiments.tune import Study, parse_grid

    base = TrainConfig.from_dict(load_toml(args.config) if args.config else {}, source=args.config or "settings")
    base = base.replace(_train_values(args), source="command line")
    grid = parse_grid(args.grid, loss=base.loss)
    name = Path(base.dataset).name.split(".")[0]
    out = Path(base.out) if base.out else Path("runs") / f"{name}-{base.model}-{base.loss}-tune"
    if out.exists() and not (out / "tune.json").exists() and any(out.iterdir()):
        raise ConfigError(f"out: {out} holds something other than a tuning study")
    study = Study(base.replace({"out": None}), grid, out, storage=args.storage, name=args.study,
                  members=args.members, pruner=args.pruner, min_epochs=args.min_epochs,
                  tau_search=args.tau_search, echo=lambda line: print(line, flush=True))
    study.run()
    for line in study.table():
        print(line)
    print(f"study folder: {out} (re-run the same command to continue it)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ssmrec.serve.app import create_app
        from ssmrec.serve.export import ExportError
        from ssmrec.serve.index import IndexConfigError
    except ImportError as e:
        raise ConfigError(f"serving needs the 'serve' extra ({e.name} is missing): "
                          "pip install 'ssmrec[serve]'") from None
    knobs = {name: value for name, value in (("ef_search", args.ef_search), ("nprobe", args.nprobe))
             if value is not None}
    try:
        app = create_app(args.export_dir, args.index, threads=args.threads, **knobs)
    except (ExportError, IndexConfigError) as e:
        raise ConfigError(str(e)) from None
    health = app.state.recommender.health()
    print(f"serving {health['export']} ({health['model']} + {health['loss']}, {health['n_users']} users, "
          f"{health['n_items']} items, {health['index']} index, {health['similarity']}) "
          f"on http://{args.host}:{args.port}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from ssmrec.train.plot import plot_run

    print(f"wrote {plot_run(args.run_dir, args.out)}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from ssmrec.experiments.claims import analyse
    from ssmrec.train.restore import restore

    r = restore(args.run_dir, device=args.device)
    claims = analyse(r.model, r.data, r.cfg, users=args.users, seed=r.cfg.seed, progress=sys.stderr.isatty())
    pb, hn = claims["popularity_bias"], claims["hard_negatives"]
    db, mg = claims["dcg_bound"], claims["magnitude"]
    print(f"{args.run_dir} ({r.cfg.model} + {r.cfg.loss}, epoch {r.epoch})")
    print(f"  1. popularity bias: score vs log(1+degree) slope {pb['score_vs_logpop']['slope']:.4f}, "
          f"recommendation share slope {pb['recfreq_vs_logpop']['slope']:.5f}")
    print(f"  2. hard negatives: {hn['negatives']} negatives, max deviation from eq. 14 {hn['max_abs_error']:.1e}, "
          f"hardest 10% carry {hn['share_of_gradient_from_hardest_10pct']:.1%} of the gradient")
    print(f"  3. DCG bound holds for {db['share_users_bound_holds']:.1%} of {db['users']} users "
          f"(mean -log DCG {db['mean_neg_log_dcg']:.3f} <= mean loss {db['mean_full_softmax_loss']:.3f})")
    print(f"  4. magnitude: log-log slope of item norm vs degree {mg['item']['loglog']['slope']:.3f}, "
          f"users {mg['user']['loglog']['slope']:.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps(claims, indent=2) + "\n")
    if args.into:
        rec = json.loads(Path(args.into).read_text())
        rec["claims"] = claims
        Path(args.into).write_text(json.dumps(rec, indent=2) + "\n")
    return 0


COMMANDS = {
    "datasets": cmd_datasets, "train": cmd_train, "evaluate": cmd_evaluate, "recommend": cmd_recommend,
    "experiment": cmd_experiment, "rerun": cmd_rerun, "report": cmd_report, "analyze": cmd_analyze,
    "export": cmd_export, "plot": cmd_plot, "serve": cmd_serve, "tune": cmd_tune, "sweep": cmd_sweep,
}


def main(argv: list[str] | None = None) -> int:
    from ssmrec.errors import TrainingError
    from ssmrec.train.signals import Interrupted

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("ssmrec.data").setLevel(logging.INFO)  # what each filter and split did
    try:
        return COMMANDS[args.command](args)
    except (DataError, ConfigError, TrainingError) as e:
        print(f"ssmrec {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"ssmrec {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # outside training (loading data, evaluating): nothing to save
        print(f"ssmrec {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
