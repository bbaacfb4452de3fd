"""``ssmrec sweep`` and ``ssmrec tune``: K settings trained as one (:mod:`ssmrec.sweeps`), and
tuning studies over them."""

from __future__ import annotations

import argparse
from pathlib import Path

from ssmrec.cli.common import Command, add_train_options, check_run_dir, check_train_flags, train_values
from ssmrec.sweeps.members import DIFFERING, check_member_setting, grid_texts, parse_member
from ssmrec.train.config import ConfigError, TrainConfig
from ssmrec.train.config_io import load_toml


def _add_sweep(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("sweep", help="train K settings of one model and loss at once, over one batch stream "
                                     f"(members differ in {', '.join(DIFFERING)})")
    p.add_argument("--config", default=None,
                   help="TOML file of the base settings; a [sweep] table may list members = [{seed = 0}, "
                        "{reg = 1e-4, tau = 0.2}]; flags override the base settings")
    p.add_argument("--resume", default=None, metavar="SWEEP_DIR",
                   help="continue an interrupted sweep from its last checkpoint (only --device, --threads, "
                        "--progress and --checkpoint-every may be given with it)")
    p.add_argument("--member", action="append", default=[], metavar="NAME=VALUE[,NAME=VALUE...]",
                   help=f"one member's settings, e.g. --member seed=1 --member reg=1e-4,tau=0.2: "
                        f"{', '.join(DIFFERING)}, or the loss's own parameters (repeatable; after the file's "
                        "members)")
    add_train_options(p)
    return p


def _check_sweep(args: argparse.Namespace) -> None:
    check_train_flags(args)
    if args.resume:
        check_run_dir(args.resume, "a sweep directory", "sweep.json")
    for text in args.member:
        for key in parse_member(text):
            check_member_setting(key, f"--member {text}")


def cmd_sweep(args: argparse.Namespace) -> int:
    from ssmrec.sweeps.members import member_configs, parse_member
    from ssmrec.sweeps.sweep import Sweep, check_new_sweep_dir, default_sweep_dir
    from ssmrec.train.config_io import read_toml

    if args.resume:
        if args.config or args.member:
            raise ConfigError("--resume continues a sweep with its own settings and members: give neither "
                              "--config nor --member")
        sweep = Sweep.resume(args.resume, overrides=train_values(args), echo=lambda line: print(line, flush=True))
        sweep.fit()
        return 0
    data = read_toml(args.config) if args.config else {}
    table = data.pop("sweep", {})
    if not isinstance(table, dict) or set(table) - {"members"}:
        raise ConfigError(f"{args.config}: [sweep] takes one key, members = [{{seed = 0}}, {{reg = 1e-4}}, ...]")
    members = list(table.get("members", [])) + [parse_member(text) for text in args.member]
    flags = train_values(args)
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


def _add_tune(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("tune", help="tune settings on a grid: Optuna trials trained K at a time as sweeps, "
                                    "pruned by successive halving, resumable (SQLite or any RDB URL)")
    p.add_argument("--config", default=None, help="TOML file of the base settings; flags override it")
    p.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                   help=f"values of one setting sweep members may differ in ({', '.join(DIFFERING)}, or the "
                        "loss's own parameters); repeatable: every combination is a trial")
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
    add_train_options(p)
    return p


def _check_tune(args: argparse.Namespace) -> None:
    check_train_flags(args)
    if args.members < 1:
        raise ConfigError(f"--members must be positive, got {args.members}")
    if args.min_epochs < 1:
        raise ConfigError(f"--min-epochs must be positive, got {args.min_epochs}")
    grid_texts(args.grid)


def cmd_tune(args: argparse.Namespace) -> int:
    from ssmrec.sweeps.tuning import Study, parse_grid

    base = TrainConfig.from_dict(load_toml(args.config) if args.config else {}, source=args.config or "settings")
    base = base.replace(train_values(args), source="command line")
    grid = parse_grid(args.grid, loss=base.loss)
    name = Path(base.dataset).name.split(".")[0]
    out = Path(base.out) if base.out else Path("runs") / f"{name}-{base.model}-{base.loss}-tune"
    study = Study(base.replace({"out": None}), grid, out, storage=args.storage, name=args.study,
                  members=args.members, pruner=args.pruner, min_epochs=args.min_epochs,
                  tau_search=args.tau_search, echo=lambda line: print(line, flush=True))
    study.run()
    for line in study.table():
        print(line)
    print(f"study folder: {out} (re-run the same command to continue it)")
    return 0


COMMANDS = {
    "sweep": Command(_add_sweep, cmd_sweep, _check_sweep),
    "tune": Command(_add_tune, cmd_tune, _check_tune),
}
