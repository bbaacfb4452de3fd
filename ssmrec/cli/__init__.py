"""The ``ssmrec`` command line: the only package that reads ``sys.argv``.

One module per family of commands, each giving its commands' parsers, early checks and actions
(:class:`~ssmrec.cli.common.Command`): :mod:`~ssmrec.cli.run` (train, evaluate, recommend,
export, datasets), :mod:`~ssmrec.cli.study` (experiment, report, plot, rerun, analyze),
:mod:`~ssmrec.cli.sweep` (sweep, tune), :mod:`~ssmrec.cli.serve` (serve), :mod:`~ssmrec.cli.compare`
(compare); what they share in
:mod:`~ssmrec.cli.common`. Importing them loads nothing heavy: ``ssmrec --help`` and refusals
stay fast, and each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ssmrec.cli import compare, run, serve, study, sweep
from ssmrec.cli.common import Command, Parser
from ssmrec.errors import ConfigError, DataError

ORDER = ("datasets", "train", "evaluate", "recommend", "compare", "experiment", "rerun", "report", "export", "sweep",
         "tune", "serve", "plot", "analyze")
"""The commands, in the order ``ssmrec --help`` lists them."""
_FAMILIES = {**run.COMMANDS, **study.COMMANDS, **sweep.COMMANDS, **serve.COMMANDS, **compare.COMMANDS}
assert set(_FAMILIES) == set(ORDER), "a command missing from ORDER, or ORDER naming one no family has"
COMMANDS: dict[str, Command] = {name: _FAMILIES[name] for name in ORDER}


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
    for command in COMMANDS.values():
        command.add(sub)
    for p in sub.choices.values():  # -v after the command works too
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def check_args(args: argparse.Namespace) -> None:
    """What the command line can refuse before any heavy import: settings given as flags, the
    files and folders named, the commands' own numbers (each command checks again as it runs)."""
    check = COMMANDS[args.command].check
    if check is not None:
        check(args)


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
        return COMMANDS[args.command].run(args)
    except (DataError, ConfigError, TrainingError) as e:
        print(f"ssmrec {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"ssmrec {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # outside training (loading data, evaluating): nothing to save
        print(f"ssmrec {args.command}: interrupted", file=sys.stderr)
        return 130
