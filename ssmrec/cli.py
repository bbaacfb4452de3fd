"""The ``ssmrec`` command line: the only module that reads ``sys.argv``."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import json
import logging
import math
import re
import sys
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ssmrec.data.config import PROTOCOLS
from ssmrec.errors import DataError
from ssmrec.sweeps.members import DIFFERING, check_member_setting, grid_texts, parse_member
from ssmrec.train.config import LOSS_SETTINGS, MODEL_SETTINGS, SAMPLERS, ConfigError, TrainConfig, check_device
from ssmrec.train.config_io import coerce, load_toml, parse_text

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
    "lr": ("optimisation", "Adam learning rate"),
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
    "threads": ("run", "torch CPU threads; 0 = auto: 1 for small data (< 200k pairs), else the cores other jobs "
                       "leave free (load average less this run's own share), at most 8; the choice is printed "
                       "(a resumed run keeps its count)"),
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


class Parser(argparse.ArgumentParser):
    """argparse without abbreviations (``--epoch`` is refused, never taken for ``--epochs``), whose
    errors come from the command they are about, with its usage, and suggest the flag or the
    choice meant (exit code 2)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:  # refused by the (sub)command that was given them, which knows what was meant
            self.error(self._unrecognized(extras))
        return namespace, extras

    def _unrecognized(self, extras: list[str]) -> str:
        flags = [o for o in self._option_string_actions if o.startswith("--")]
        hints = []
        for arg in extras:
            if arg.startswith("--"):
                name = arg.split("=", 1)[0]
                hints += [(name, c) for c in difflib.get_close_matches(name, flags, n=1, cutoff=0.6)]
        msg = f"unrecognized argument{'s' if len(extras) > 1 else ''}: {' '.join(extras)}"
        if len(hints) == 1:
            msg += f"; did you mean {hints[0][1]}?"
        elif hints:
            msg += "; did you mean " + ", ".join(f"{c} (for {n})" for n, c in hints) + "?"
        return msg

    def error(self, message: str):
        found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if found:
            close = difflib.get_close_matches(found.group(1), re.findall(r"'([^']*)'", found.group(2)), n=1)
            if close:
                message += f"; did you mean {close[0]!r}?"
        usage = self.format_usage()
        if usage.count("\n") > 4:  # a command with many options: a short usage, not a screenful of them
            fmt = self._get_formatter()
            positionals = [fmt._format_args(a, a.dest) for a in self._actions if not a.option_strings]
            usage = f"usage: {' '.join([self.prog, '[options]', *positionals])}  (all options: {self.prog} --help)\n"
        self.exit(2, f"{usage}{self.prog}: error: {message}\n")


def _version() -> str:
    from ssmrec._version import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="ssmrec", description="Train and evaluate recommenders with sampled softmax and its rivals.")
    parser.add_argument("--version", action="version", version=f"ssmrec {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also log details (INFO lines of every module); warnings and results print without it")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

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
    _add_train_options(p)

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
    for p in sub.choices.values():  # -v after the command works too
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def _train_values(args: argparse.Namespace) -> dict:
    return {name: getattr(args, name) for name in OPTIONS if getattr(args, name, None) is not None}


# --------------------------------------------------------------------------- checks before torch
# Importing torch takes seconds: what can be refused without it is refused first, each setting
# with the message TrainConfig.validate gives it (tests/test_cli_edges.py holds the two together).
METRIC_NAMES = ("recall", "ndcg", "precision", "hitrate", "mrr")
"""``ssmrec.eval.metrics.METRICS`` (a module that imports torch)."""
LOSS_NAMES = (*LOSS_SETTINGS, "sm", "sampled_softmax", "infonce", "adap-tau", "adap_tau", "sl@k", "slatk",
              "corrected-logq", "corrected_logq")
"""The built-in losses and their aliases (``ssmrec.losses.LOSSES`` and ``ALIASES``, which import torch)."""
_POSITIVE = ("batch_size", "epochs", "eval_every", "dim", "eval_chunk", "nproc")
_NON_NEGATIVE = ("patience", "layers", "extra_negatives", "threads", "kcore")


def _losses_may_be_registered(values: dict[str, Any], config: str | None) -> bool:
    """A loss name unknown here may still be one a plugin or an installed package registers."""
    if values.get("plugins") or config:
        return True
    from importlib.metadata import entry_points

    return bool(entry_points(group="ssmrec.losses"))


def check_settings(values: dict[str, Any], source: str = "command line", *, config: str | None = None) -> None:
    """Refuse, without importing torch, the settings in ``values`` that :meth:`TrainConfig.validate`
    would refuse on their own (types, ranges, choices), with its message. Combinations of settings
    and the losses' own parameters are left to it."""
    fields_ = {f.name: f for f in fields(TrainConfig)}

    def bad(name, msg):
        raise ConfigError(f"{source}: {name} {msg}")

    v = {name: coerce(fields_[name], value, source) for name, value in values.items() if name in fields_}
    if v.get("dataset") == "":
        bad("dataset", "must name a dataset, a folder or a file, got ''")
    if "model" in v and v["model"].lower().replace("+", "p").replace("-", "") not in MODEL_SETTINGS:
        bad("model", f"must be one of {', '.join(MODEL_SETTINGS)}, got {v['model']!r}")
    if "loss" in v and v["loss"].lower() not in LOSS_NAMES and not _losses_may_be_registered(v, config):
        bad("loss", f"unknown loss {v['loss']!r}; choose one of {', '.join(LOSS_SETTINGS)} "
                    "(or register one: ssmrec.losses.register_loss)")
    if "protocol" in v and v["protocol"] not in PROTOCOLS:
        bad("protocol", f"must be one of {PROTOCOLS}, got {v['protocol']!r}")
    if "side" in v and v["side"] not in ("user", "item"):
        bad("side", f"must be 'user' or 'item', got {v['side']!r}")
    for name in ("similarity", "test_similarity"):
        if v.get(name) is not None and v[name] not in ("cos", "ip"):
            bad(name, f"must be 'cos' or 'ip', got {v[name]!r}")
    if "device" in v:
        check_device(v["device"], f"{source}: device")
    if "sampler" in v and v["sampler"] not in SAMPLERS:
        bad("sampler", f"must be one of {', '.join(SAMPLERS)}, got {v['sampler']!r}")
    if v.get("sync_every", 0) < 0:
        bad("sync_every", f"must be >= 1 step, or 0 for auto (1 on CPU, 50 on CUDA), got {v['sync_every']}")
    for name in ("tau", "lr"):
        if name in v and not (math.isfinite(v[name]) and v[name] > 0):
            bad(name, f"must be a finite number > 0, got {v[name]}")
    for name in ("reg", "neg_weight", "max_seconds", "checkpoint_every"):
        if name in v and not (math.isfinite(v[name]) and v[name] >= 0):
            bad(name, f"must be a finite number >= 0, got {v[name]}")
    for name in ("a0", "a1", "negative_beta", "min_rating", "positive_min", "negative_max"):
        if v.get(name) is not None and not math.isfinite(v[name]):
            bad(name, f"must be a finite number, got {v[name]}")
    if "margin" in v and not -1 <= v["margin"] < 1:
        bad("margin", f"must be in [-1, 1) (it is compared with a cosine), got {v['margin']}")
    if "valid_fraction" in v and not 0 <= v["valid_fraction"] < 1:
        bad("valid_fraction", f"must be in [0, 1), got {v['valid_fraction']}")
    for name in _POSITIVE:
        if name in v and v[name] < 1:
            bad(name, f"must be positive, got {v[name]}")
    for name in _NON_NEGATIVE:
        if name in v and v[name] < 0:
            bad(name, f"must be >= 0, got {v[name]}")
    for name in ("seed", "split_seed"):
        if name in v and not 0 <= v[name] < 2**63:
            bad(name, f"must be between 0 and 2**63 - 1, got {v[name]}")
    if v.get("negatives") is not None and v["negatives"] < 1:
        bad("negatives", f"must be >= 1, got {v['negatives']}")
    if "ratios" in v:
        TrainConfig._check_ratios(SimpleNamespace(ratios=v["ratios"]), bad)
    if "ks" in v and not v["ks"]:
        bad("ks", "must list at least one cut-off K")
    if "ks" in v and any(k < 1 for k in v["ks"]):
        bad("ks", f"must all be positive, got {' '.join(map(str, v['ks']))}")
    if "metric" in v:
        m, _, k = v["metric"].partition("@")
        if m not in METRIC_NAMES or not k.isdigit() or int(k) < 1:
            bad("metric", f"must look like 'recall@20' with one of {METRIC_NAMES} and K >= 1, got {v['metric']!r}")


def _check_file(path: str, flag: str) -> None:
    """An input file that exists (a settings file, a record)."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{flag} {p}: is a folder, not a file")
    if not p.is_file():
        raise ConfigError(f"{flag} {p}: no such file")


def _check_run_dir(path: str, what: str = "a run directory", marker: str = "config.json") -> None:
    """A folder that holds a run (``config.json``) or a sweep (``sweep.json``): refused before
    anything is loaded, with the message the loaders give."""
    p = Path(path)
    if not (p / marker).is_file():
        raise ConfigError(f"{p}: not {what} (no {marker})")


def check_args(args: argparse.Namespace) -> None:
    """What the command line can refuse before any heavy import: settings given as flags, the
    files and folders named, the commands' own numbers (each command checks again as it runs)."""
    cmd = args.command
    if cmd in ("train", "sweep", "tune"):
        if args.config:
            _check_file(args.config, "--config")
        check_settings(_train_values(args), config=args.config)
    if cmd == "train" and args.resume:
        _check_run_dir(args.resume)
    if cmd == "sweep":
        if args.resume:
            _check_run_dir(args.resume, "a sweep directory", "sweep.json")
        for text in args.member:
            for key in parse_member(text):
                check_member_setting(key, f"--member {text}")
    if cmd == "tune":
        if args.members < 1:
            raise ConfigError(f"--members must be positive, got {args.members}")
        if args.min_epochs < 1:
            raise ConfigError(f"--min-epochs must be positive, got {args.min_epochs}")
        grid_texts(args.grid)
    if cmd in ("evaluate", "recommend", "export", "analyze"):
        _check_run_dir(args.run_dir)
    if getattr(args, "device", None) is not None and cmd not in ("train", "sweep", "tune"):
        check_device(args.device, "--device")
    if cmd in ("experiment", "rerun") and args.threads is not None and args.threads < 0:
        raise ConfigError(f"--threads must be >= 0, got {args.threads}")
    if cmd == "experiment" and args.max_seconds is not None and not (math.isfinite(args.max_seconds)
                                                                    and args.max_seconds >= 0):
        raise ConfigError(f"--max-seconds must be a finite number >= 0, got {args.max_seconds}")
    if cmd == "experiment":
        for path in args.grid:
            _check_file(path, "grid")
    if cmd == "rerun":
        _check_file(args.record, "record")
    if cmd in ("recommend", "evaluate") and args.chunk is not None and args.chunk < 1:
        raise ConfigError(f"--chunk must be positive, got {args.chunk}")
    if cmd == "analyze":
        if args.users < 1:
            raise ConfigError(f"--users must be positive, got {args.users}")
        if args.out:
            _check_output_file(args.out, "--out")
        if args.into:
            _check_file(args.into, "--into")
    if cmd == "serve":
        if not 0 <= args.port <= 65535:
            raise ConfigError(f"--port must be between 0 and 65535, got {args.port}")
        if args.threads < 0:
            raise ConfigError(f"--threads must be >= 0, got {args.threads}")
        for flag, value in (("--ef-search", args.ef_search), ("--nprobe", args.nprobe)):
            if value is not None and value < 1:
                raise ConfigError(f"{flag} must be positive, got {value}")
        if not Path(args.export_dir).is_dir():
            raise ConfigError(f"{args.export_dir}: no such folder (an export, or a run directory with export/)")


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
    # nonsense is refused before the run is loaded (and torch imported), and anything scored or written
    if args.ks is not None and any(k < 1 for k in args.ks):
        raise ConfigError(f"--k: cut-offs must be positive, got {' '.join(map(str, args.ks))}")
    if args.chunk is not None and args.chunk < 1:
        raise ConfigError(f"--chunk must be positive, got {args.chunk}")
    check_device(args.device, "--device")
    if args.json_out:
        _check_output_file(args.json_out, "--json")
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
    from ssmrec.sweeps.members import member_configs, parse_member
    from ssmrec.sweeps.sweep import Sweep, check_new_sweep_dir, default_sweep_dir
    from ssmrec.train.config_io import read_toml

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
    from ssmrec.sweeps.tuning import Study, parse_grid

    base = TrainConfig.from_dict(load_toml(args.config) if args.config else {}, source=args.config or "settings")
    base = base.replace(_train_values(args), source="command line")
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


NOTICES = ("ssmrec.data", "ssmrec.train.setup")
"""Loggers whose INFO lines say what was done and print without ``-v``: each data filter and split
(rows, users and items before and after), the thread count ``--threads 0`` chose."""


class _ConsoleFormatter(logging.Formatter):
    """``-v``: every line as ``LEVEL logger: message``. Without: warnings as ``warning: message``,
    the notices of :data:`NOTICES` as plain lines, no INFO lines."""

    def __init__(self, verbose: bool):
        super().__init__("%(levelname)s %(name)s: %(message)s")
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        if self.verbose:
            return super().format(record)
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return f"{record.levelname.lower()}: {text}" if record.levelno >= logging.WARNING else text


def _configure_logging(verbose: bool) -> None:
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h.formatter, _ConsoleFormatter)]:
        root.removeHandler(old)  # main() called again in one process
    if not root.handlers:  # as logging.basicConfig: a program that set logging up keeps its own
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_ConsoleFormatter(verbose))
        root.addHandler(handler)
        root.setLevel(logging.INFO if verbose else logging.WARNING)
    for name in NOTICES:
        logging.getLogger(name).setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    from ssmrec.errors import TrainingError
    from ssmrec.train.signals import Interrupted

    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        check_args(args)
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
