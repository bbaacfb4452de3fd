"""The arms of a race: which loss each one trains, with which fixed settings, over which grid;
and the budget, read from text (``90s``, ``10m``, ``2h``, ``1h30m``).

An arm is a loss plus the settings that make it what it is: ``ssm+logq`` is the loss ``ssm``
with ``logq`` on. Each arm is tuned on its own key parameters (:data:`SEARCH_SPACES` of
:mod:`ssmrec.losses`, plus L2 where it trains on inner products), never on another arm's: the
race is fair when every arm gets its own search within the same share of the budget.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ssmrec.errors import ConfigError

DEFAULT_ARMS = ("bpr", "ssm", "ssm+logq", "clogq", "bsl", "psl")
"""The race's arms when none are named: the pairwise baseline, sampled softmax with and without
the two logQ corrections, and the two losses after the study that claim to improve on it."""

NAMED: dict[str, tuple[str, dict[str, Any], str]] = {
    "ssm+logq": ("ssm", {"logq": True},
                 "SSM with the logQ correction of Yi et al. 2019 (in-batch popularity subtracted)"),
    "clogq": ("clogq", {"mask_duplicates": True},
              "corrected logQ (Khrylchenko et al. 2025), with the in-batch copies of the positive masked, "
              "as its estimator assumes"),
    "bsl": ("bsl", {}, "BSL as the authors' code computes it: tau2 the exponent of the negatives' sum"),
    "bsl-paper": ("bsl", {"loss_params": {"form": "paper"}},
                  "BSL in the paper's two-temperature form (tau2 = tau_2 / tau_1; pooled positives)"),
}
"""Arms that are a loss with fixed settings: name -> (loss, settings, what it is)."""

RACE_OWNS = {"loss": "--losses", "protocol": "(always holdout: selection on validation, test once)",
             "metric": "--k", "max_seconds": "--budget", "dataset": "DATA", "seed": "(seeds start at 0)"}
"""Training settings a race sets itself, with what to use instead."""

REG_GRID = (1e-6, 1e-5, 1e-4)
"""The L2 values an arm trained on inner products searches beside its own parameters (the study's
grid is 1e-6..1e-1). An arm trained on cosine does not search L2: the loss cannot see a
representation's length, and Adam's per-coordinate steps make ``reg`` * w / B (about 1e-8 here)
vanish beside the loss's gradients; on MovieLens-100K MF + SSM reached the same validation
Recall@20 to four decimals at 1e-6, 1e-5 and 1e-4 for every temperature (a race of 2026-12-08),
so searching it only took two thirds of the arm's epochs."""


@dataclass(frozen=True)
class Arm:
    """One contestant of a race.

    Attributes:
        name: as the user named it (``ssm+logq``, ``bsl``).
        loss: the canonical loss it trains.
        fixed: settings every run of the arm has (``{"logq": True}``).
        grid: the values its tuning searches (``{"tau": [...], "reg": [...]}``).
        about: one line on what the arm is.
    """

    name: str
    loss: str
    fixed: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    about: str = ""


def search_space(loss: str, similarity: str | None = None) -> dict[str, list[Any]]:
    """The key parameters of ``loss`` and their values (:data:`ssmrec.losses.SEARCH_SPACES`),
    with the L2 grid :data:`REG_GRID` when it trains on inner products (``similarity``, default:
    the loss's own) and its own space does not set L2."""
    from ssmrec.losses import SEARCH_SPACES, default_similarity

    space = {k: list(v) for k, v in SEARCH_SPACES.get(loss, {}).items()}
    if (similarity or default_similarity(loss)) == "ip":
        space.setdefault("reg", list(REG_GRID))
    return space


def make_arm(name: str, grid: dict[str, list[Any]] | None = None) -> Arm:
    """The arm called ``name``: a name of :data:`NAMED` or any loss the registry knows (aliases
    too). ``grid`` replaces the values of the settings it names."""
    from ssmrec.losses import LOSSES, canonical

    key = name.strip().lower()
    if key in NAMED:
        loss, fixed, about = NAMED[key]
    else:
        try:
            loss, fixed = canonical(key), {}
        except ValueError:
            known = ", ".join(sorted({*LOSSES, *NAMED}))
            raise ConfigError(f"--losses: unknown arm {name!r}; an arm is a loss or a named arm ({known})") from None
        about, key = f"loss {loss}", loss  # an alias names the loss it stands for
    space = search_space(loss, fixed.get("similarity"))
    for k, values in (grid or {}).items():
        if k in space or k == "reg":  # L2 named by the user is searched whatever the similarity
            space[k] = list(values)
    return Arm(key, loss, dict(fixed), space, about)


def make_arms(names: list[str] | tuple[str, ...] | None = None,
              grid: dict[str, list[Any]] | None = None) -> list[Arm]:
    """The arms named (default: :data:`DEFAULT_ARMS`), each once, in the order given."""
    names = list(names or DEFAULT_ARMS)
    seen: dict[str, Arm] = {}
    for n in names:
        arm = make_arm(n, grid)
        if arm.name in seen:
            raise ConfigError(f"--losses: {n!r} is named twice")
        seen[arm.name] = arm
    if len(seen) < 2:
        raise ConfigError(f"--losses: a race needs at least two arms, got {', '.join(seen) or 'none'}")
    return list(seen.values())


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)")


def parse_budget(text: str | float | int) -> float:
    """Seconds from ``"90"``, ``"90s"``, ``"10m"``, ``"2h"``, ``"1h30m"`` (a bare number is seconds;
    ``"5m10"`` is refused: 10 of what?)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        s = str(text).strip().lower().replace(" ", "")
        parts = list(_PART.finditer(s))
        bare = [p for p in parts if not p.group(2)]
        if not s or not parts or "".join(p.group(0) for p in parts) != s or (bare and len(parts) > 1):
            raise ConfigError(f"--budget: expected a duration such as 90s, 10m, 2h or 1h30m, got {text!r}")
        seconds = sum(float(p.group(1)) * _UNITS[p.group(2) or "s"] for p in parts)
    if not seconds > 0:
        raise ConfigError(f"--budget: must be positive, got {text!r}")
    return seconds


def shown_seconds(seconds: float) -> str:
    """``4m12s``, ``1h05m``, ``38s``."""
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
