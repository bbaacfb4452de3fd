"""``ssmrec train``, ``evaluate``, ``recommend``, ``export`` and ``datasets``: one run, from its
data to its answers."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ssmrec.cli.common import (
    Command,
    add_train_options,
    check_device_flag,
    check_output_file,
    check_run_dir,
    check_train_flags,
    train_values,
)
from ssmrec.errors import DataError
from ssmrec.train.config import ConfigError, TrainConfig, check_device
from ssmrec.train.config_io import load_toml


def _add_datasets(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("datasets", help="list the registered datasets, where they are, their statistics")
    p.add_argument("--data-dir", default=None, help="folder searched first")
    p.add_argument("--stats", action=argparse.BooleanOptionalAction, default=True,
                   help="load the datasets found and show their statistics (default: on)")
    return p


def _add_train(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train a model (settings from flags and/or a TOML file)")
    p.add_argument("--config", default=None, help="TOML file of settings; flags override it")
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue an interrupted run from its last checkpoint")
    add_train_options(p)
    return p


def _check_train(args: argparse.Namespace) -> None:
    check_train_flags(args)
    if args.resume:
        check_run_dir(args.resume)


def cmd_train(args: argparse.Namespace) -> int:
    from ssmrec.train import distributed
    from ssmrec.train.run import RunDir, check_new_run_dir

    flags = train_values(args)
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


def _add_evaluate(sub) -> argparse.ArgumentParser:
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
    return p


def _check_run(args: argparse.Namespace) -> None:
    """``evaluate``, ``recommend``, ``export``: the run named, the device, the chunk size."""
    check_run_dir(args.run_dir)
    check_device_flag(args)
    if args.command in ("recommend", "evaluate") and args.chunk is not None and args.chunk < 1:
        raise ConfigError(f"--chunk must be positive, got {args.chunk}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    # nonsense is refused before the run is loaded (and torch imported), and anything scored or written
    if args.ks is not None and any(k < 1 for k in args.ks):
        raise ConfigError(f"--k: cut-offs must be positive, got {' '.join(map(str, args.ks))}")
    if args.chunk is not None and args.chunk < 1:
        raise ConfigError(f"--chunk must be positive, got {args.chunk}")
    check_device(args.device, "--device")
    if args.json_out:
        check_output_file(args.json_out, "--json")
    from ssmrec.eval.evaluator import Evaluator
    from ssmrec.train.restore import restore

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
    chosen = ", test-selected" if cfg.protocol == "paper" else ", selected on validation"
    print(f"{args.run_dir} (epoch {r.epoch}{chosen}, {args.split}, similarity {ev.similarity}, "
          f"{int(ev.users.numel())} users)")
    for key, value in metrics.items():
        print(f"  {key:<14} {value:.6f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(metrics, indent=2) + "\n")
    return 0


def _add_recommend(sub) -> argparse.ArgumentParser:
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
    return p


OUTPUT_SUFFIXES = (".tsv", ".csv", ".txt", ".parquet")


def cmd_recommend(args: argparse.Namespace) -> int:
    import numpy as np  # here: `ssmrec --help` and refusals stay fast

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
    import numpy as np  # here: `ssmrec --help` and refusals stay fast

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
    import numpy as np  # here: `ssmrec --help` and refusals stay fast
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


def _add_export(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="write a run's scored vectors, ids and seen items (numpy + Parquet) "
                                      "for serving")
    p.add_argument("run_dir")
    p.add_argument("--out", default=None, help="export folder (default: RUN_DIR/export)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which weights")
    p.add_argument("--device", default="auto")
    return p


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


COMMANDS = {
    "datasets": Command(_add_datasets, cmd_datasets),
    "train": Command(_add_train, cmd_train, _check_train),
    "evaluate": Command(_add_evaluate, cmd_evaluate, _check_run),
    "recommend": Command(_add_recommend, cmd_recommend, _check_run),
    "export": Command(_add_export, cmd_export, _check_run),
}
