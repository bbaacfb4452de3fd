"""The errors ssmrec raises for bad input and failed runs (imports nothing heavy, so that the
command line can catch them without loading torch)."""

from __future__ import annotations


class DataError(ValueError):
    """Bad input data: the message names the file, line or setting at fault."""


class ConfigError(ValueError):
    """A setting is unknown or has a value it cannot take; the message names it."""


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became NaN); the message says where and why."""
