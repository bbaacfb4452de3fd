"""What the command families share: every training setting as a flag (:data:`OPTIONS`), the
parser class (no abbreviations, "did you mean"), a command's parts (:class:`Command`), and the
checks made before torch is imported (:func:`check_settings`; the files and folders named)."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ssmrec.data.config import PROTOCOLS
from ssmrec.train.config import (
    INITS,
    LOSS_SETTINGS,
    MODEL_SETTINGS,
    OPTIMIZERS,
    SAMPLERS,
    ConfigError,
    TrainConfig,
    check_device,
)
from ssmrec.train.config_io import coerce, parse_text

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
    "init": ("model", "initialisation of the ID tables: xavier (the study's; its scale shrinks as 1/sqrt(rows)) or "
                      "normal (N(0, init-std^2), the same at any catalogue size)"),
    "init_std": ("model", "standard deviation of --init normal"),
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
    "eval_users": ("evaluation", "select the epoch on a fixed, seeded sample of this many users (0 = all), "
                                 "the metric's 95%% interval printed beside it; for large data"),
    "test_users": ("evaluation", "evaluate the final test on a seeded sample of this many users (0 = all)"),
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


def add_train_options(p: argparse.ArgumentParser) -> None:
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


@dataclass(frozen=True)
class Command:
    """One subcommand: ``add`` puts its parser on the subparsers, ``check`` refuses what can be
    refused before any heavy import (None: nothing to check), ``run`` does it and returns the
    exit code."""

    add: Callable[[Any], argparse.ArgumentParser]
    run: Callable[[argparse.Namespace], int]
    check: Callable[[argparse.Namespace], None] | None = None


def train_values(args: argparse.Namespace) -> dict:
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
_NON_NEGATIVE = ("patience", "layers", "extra_negatives", "threads", "kcore", "eval_users", "test_users")


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
    if "optimizer" in v and v["optimizer"] not in OPTIMIZERS:
        bad("optimizer", f"must be one of {', '.join(OPTIMIZERS)}, got {v['optimizer']!r}")
    if "init" in v and v["init"] not in INITS:
        bad("init", f"must be one of {', '.join(INITS)}, got {v['init']!r}")
    if v.get("sync_every", 0) < 0:
        bad("sync_every", f"must be >= 1 step, or 0 for auto (1 on CPU, 50 on CUDA), got {v['sync_every']}")
    for name in ("tau", "lr", "init_std"):
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


def check_train_flags(args: argparse.Namespace) -> None:
    """``train``, ``sweep``, ``tune``: the settings file named, and the settings given as flags."""
    if args.config:
        check_file(args.config, "--config")
    check_settings(train_values(args), config=args.config)


def check_device_flag(args: argparse.Namespace) -> None:
    """A ``--device`` given to a command that is not a training one (those check it as a setting)."""
    if getattr(args, "device", None) is not None:
        check_device(args.device, "--device")


def check_file(path: str, flag: str) -> None:
    """An input file that exists (a settings file, a record)."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{flag} {p}: is a folder, not a file")
    if not p.is_file():
        raise ConfigError(f"{flag} {p}: no such file")


def check_run_dir(path: str, what: str = "a run directory", marker: str = "config.json") -> None:
    """A folder that holds a run (``config.json``) or a sweep (``sweep.json``): refused before
    anything is loaded, with the message the loaders give."""
    p = Path(path)
    if not (p / marker).is_file():
        raise ConfigError(f"{p}: not {what} (no {marker})")


def check_output_file(path: str, flag: str) -> None:
    """Refuse, before any work, an output file that cannot be written where it is asked for."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{flag}: {p} is a folder, not a file")
    if not p.parent.is_dir():
        raise ConfigError(f"{flag}: cannot write {p}: no folder {p.parent}")
