"""``ssmrec compare DATA``: a fair, budgeted race of losses on the user's data (:mod:`ssmrec.race`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ssmrec.cli.common import Command, add_train_options, check_train_flags, train_values
from ssmrec.errors import ConfigError
from ssmrec.race.arms import RACE_OWNS


def _add(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("compare", help="which loss for my data? race losses, each tuned on validation within a "
                                       "budget, finalists over seeds: leaderboard with intervals and tests, "
                                       "retrieval and ranking")
    p.add_argument("data", metavar="DATA", help="a registry name (ml-100k, gowalla, ...) or a file or folder, "
                                                "as for ssmrec train")
    p.add_argument("--losses", default=None, metavar="A,B,...",
                   help="the arms: bpr, ssm, ssm+logq, clogq, bsl, psl (the default), or any loss by name")
    p.add_argument("--budget", default="10m",
                   help="wall-clock time for the whole race: 90s, 10m, 2h, 1h30m (default: 10m)")
    p.add_argument("--seeds", type=int, default=3, help="finalist runs per arm (default: 3)")
    p.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                   help="replace the values every arm searches for this setting (e.g. reg=1e-5,1e-4); repeatable")
    p.add_argument("--sampled", type=int, default=100,
                   help="ranking setting 1: each user's held-out items among N sampled unseen items (default: "
                        "100; 0: off)")
    p.add_argument("--retrieved", type=int, default=200,
                   help="ranking setting 2: the top N of an ItemKNN first stage no arm trained (default: 200; "
                        "0: off)")
    p.add_argument("--tune-share", type=float, default=0.6, help="share of the budget spent tuning (default: 0.6)")
    p.add_argument("--config", default=None, help="TOML file of shared settings (dim, lr, threads ...); flags "
                                                  "override it")
    add_train_options(p)
    return p


def _check(args: argparse.Namespace) -> None:
    from ssmrec.race.arms import parse_budget

    for name, instead in RACE_OWNS.items():
        if getattr(args, name, None) is not None:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag}: a race sets it itself; use {instead}")
    if args.ks is not None and len(args.ks) != 1:
        raise ConfigError(f"--k: a race measures at one cut-off, got {len(args.ks)}")
    check_train_flags(args)
    parse_budget(args.budget)
    if args.seeds < 1:
        raise ConfigError(f"--seeds: must be at least 1, got {args.seeds}")
    if args.sampled < 0 or args.retrieved < 0:
        raise ConfigError("--sampled / --retrieved: must be 0 (off) or a number of candidates")
    if not 0 < args.tune_share < 1:
        raise ConfigError(f"--tune-share: must be between 0 and 1, got {args.tune_share}")


def _grid(specs: list[str]) -> dict[str, list]:
    grid = {}
    for spec in specs:
        name, eq, values = spec.partition("=")
        if not eq or not name.strip() or not values.strip():
            raise ConfigError(f"--grid {spec!r}: expected NAME=V1,V2,...")
        grid[name.strip().replace("-", "_")] = [_value(v.strip()) for v in values.split(",") if v.strip()]
    return grid


def _value(text: str):
    """``3`` -> 3, ``1e-4`` -> 0.0001, ``relu`` -> ``"relu"``, ``true`` -> True."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def cmd_compare(args: argparse.Namespace) -> int:
    from ssmrec.race import compare
    from ssmrec.train.config_io import load_toml

    settings = {**(load_toml(args.config) if args.config else {}), **train_values(args)}
    k = settings.pop("ks", (20,))[0]
    out = settings.pop("out", None)
    model = settings.pop("model", "mf")
    losses = [s.strip() for s in args.losses.split(",") if s.strip()] if args.losses else None
    where = Path(out) if out else Path("runs") / f"compare-{Path(args.data).stem}-{model}"
    board = compare(args.data, model=model, losses=losses, budget=args.budget, seeds=args.seeds, k=k, out=where,
                    settings=settings, grid=_grid(args.grid), sampled=args.sampled, retrieved=args.retrieved,
                    tune_share=args.tune_share, echo=lambda line: print(line, flush=True))
    print()
    print(board["advice"])
    print(f"report: {where / 'REPORT.md'} (table: {where / 'leaderboard.csv'}; re-run the same command to "
          "continue an interrupted race)")
    return 0


COMMANDS = {"compare": Command(_add, cmd_compare, _check)}
