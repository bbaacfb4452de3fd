"""``ssmrec experiment``, ``report``, ``plot``, ``rerun`` and ``analyze``: the study, from grids
to records to the report, and the curves and claims of one run."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ssmrec.cli.common import Command, check_device_flag, check_file, check_output_file, check_run_dir
from ssmrec.train.config import ConfigError, TrainConfig


def _add_experiment(sub) -> argparse.ArgumentParser:
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
    return p


def _check_runs(args: argparse.Namespace) -> None:
    """``experiment``, ``rerun``: the device and the thread count asked for the runs."""
    check_device_flag(args)
    if args.threads is not None and args.threads < 0:
        raise ConfigError(f"--threads must be >= 0, got {args.threads}")


def _check_experiment(args: argparse.Namespace) -> None:
    _check_runs(args)
    if args.max_seconds is not None and not (math.isfinite(args.max_seconds) and args.max_seconds >= 0):
        raise ConfigError(f"--max-seconds must be a finite number >= 0, got {args.max_seconds}")
    for path in args.grid:
        check_file(path, "grid")


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


def _add_rerun(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("rerun", help="train a recorded cell again from its record and compare the results")
    p.add_argument("record", help="a results/records/<grid>/<cell>.json")
    p.add_argument("--out", default=None, help="run directory (default: runs/rerun/<cell>)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    return p


def _check_rerun(args: argparse.Namespace) -> None:
    _check_runs(args)
    check_file(args.record, "record")


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


def _add_report(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("report", help="render results/REPORT.md, CSV tables and figures from recorded runs")
    p.add_argument("--records", default="results/records")
    p.add_argument("--out", default="results")
    p.add_argument("--notes", default="results/notes.toml", help="written notes on differences (TOML [notes])")
    return p


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


def _add_plot(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("plot", help="draw a run's learning curves (loss and metrics per epoch) to a PNG")
    p.add_argument("run_dir")
    p.add_argument("--out", default=None, help="image file (default: RUN_DIR/curves.png)")
    return p


def cmd_plot(args: argparse.Namespace) -> int:
    from ssmrec.train.plot import plot_run

    print(f"wrote {plot_run(args.run_dir, args.out)}")
    return 0


def _add_analyze(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("analyze", help="measure the study's four claims on a trained run")
    p.add_argument("run_dir")
    p.add_argument("--users", type=int, default=2000, help="users sampled for the score and DCG analyses")
    p.add_argument("--out", default=None, help="write the measurements to this JSON file")
    p.add_argument("--into", default=None, help="add them to this result record (a results/records/*.json)")
    p.add_argument("--device", default="auto")
    return p


def _check_analyze(args: argparse.Namespace) -> None:
    check_run_dir(args.run_dir)
    check_device_flag(args)
    if args.users < 1:
        raise ConfigError(f"--users must be positive, got {args.users}")
    if args.out:
        check_output_file(args.out, "--out")
    if args.into:
        check_file(args.into, "--into")


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
    "experiment": Command(_add_experiment, cmd_experiment, _check_experiment),
    "rerun": Command(_add_rerun, cmd_rerun, _check_rerun),
    "report": Command(_add_report, cmd_report),
    "plot": Command(_add_plot, cmd_plot),
    "analyze": Command(_add_analyze, cmd_analyze, _check_analyze),
}
