"""A sweep's members: which settings may differ between them, read from flags or files, checked
against the base settings before any work. Shared by :mod:`ssmrec.sweeps.sweep` (training)
and :mod:`ssmrec.sweeps.tuning` (grids of trials)."""

from __future__ import annotations

from typing import Any

from ssmrec.errors import ConfigError
from ssmrec.train.config import MODEL_SETTINGS, TrainConfig, loss_settings
from ssmrec.train.config_io import parse_text

# (no torch here: the command line lists and checks these before it loads anything heavy)
DIFFERING = ("seed", "reg", "tau", "layers", "margin", "neg_weight")
"""Settings members may differ in: they leave the batch stream and the shared work alone."""
SWEEPABLE = (*DIFFERING, "a0", "a1")
"""Settings a member may set: those of :data:`DIFFERING`, and SVD++'s exponents ``a0`` / ``a1``,
which members share (one propagation matrix), so they must agree across the members."""


def model_key(name: str) -> str:
    """``LightGCN`` / ``svd++`` / ``mf`` -> ``lightgcn`` / ``svdpp`` / ``mf``."""
    return name.lower().replace("+", "p").replace("-", "")


def parse_member(text: str) -> dict[str, Any]:
    """``"reg=1e-4,tau=0.2"`` -> ``{"reg": 1e-4, "tau": 0.2}`` (values typed as the settings)."""
    types = {name: str(f.type) for name, f in TrainConfig.__dataclass_fields__.items()}
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = part.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not key:
            raise ConfigError(f"--member {text!r}: expected NAME=VALUE[,NAME=VALUE...], got {part!r}")
        out[key] = parse_text(types.get(key, "str"), value.strip())
    return out


def check_member_setting(name: str, where: str) -> None:
    """Refuse a setting (``name``, ``-`` or ``_``) that a member cannot set: no torch, so the
    command line refuses it before it loads anything. Names that are no setting are left to the
    caller (a loss's own parameter, or an unknown setting that :meth:`TrainConfig.replace` names)."""
    name = name.replace("-", "_")
    if name in TrainConfig.field_names() and name not in SWEEPABLE:
        raise ConfigError(
            f"{where}: {name} cannot differ between members: they share one batch stream "
            f"(batch order and negatives), one model family, loss and optimizer, and one "
            f"evaluation schedule. Set it in the base settings or run another sweep; members "
            f"may differ in {', '.join(DIFFERING)}")


def grid_texts(specs: list[str]) -> dict[str, list[str]]:
    """``["reg=1e-6,1e-5", "layers=1,2"]`` -> ``{"reg": ["1e-6", "1e-5"], "layers": ["1", "2"]}``,
    refusing malformed specs and settings a tuning grid cannot vary (no torch: the command line
    checks ``--grid`` with it before it loads anything). Names that are no setting are left to
    the caller (a loss's own parameters)."""
    grid: dict[str, list[str]] = {}
    for spec in specs:
        name, eq, values = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not eq or not values.strip() or not name:
            raise ConfigError(f"--grid {spec!r}: expected NAME=V1,V2,...")
        if name in SWEEPABLE and name not in DIFFERING:
            raise ConfigError(f"--grid {name}: SVD++'s a0 and a1 cannot differ between the members of a sweep "
                              "(they share one propagation matrix); tune them with one study per value")
        if name in TrainConfig.field_names() and name not in DIFFERING:
            raise ConfigError(f"--grid {name}: only settings that sweep members may differ in can be tuned in one "
                              f"study ({', '.join(DIFFERING)}, or the loss's own parameters); tune others with one "
                              "study per value")
        grid[name] = [v.strip() for v in values.split(",") if v.strip()]
    return grid


def loss_parameters(loss: str) -> dict[str, Any]:
    """The parameters of a loss that take ``loss_params`` (the losses after the study, registered
    ones), with their defaults: sweep members and tuning grids may set them by name."""
    from ssmrec.losses import spec_of

    spec = spec_of(loss)
    return dict(spec.params) if spec is not None else {}


def _typed_like(default: Any, value: Any, where: str) -> Any:
    """A member's value of a loss parameter, typed as the parameter's default (text from a flag)."""
    if not isinstance(value, str) or isinstance(default, str) or default is None:
        return value
    kind = "bool" if isinstance(default, bool) else type(default).__name__
    return parse_text(kind, value) if kind in ("bool", "int", "float") else value


def member_configs(base: TrainConfig, members: list[dict[str, Any]]) -> list[TrainConfig]:
    """Each member's full configuration (``base`` with its overrides), refusing overrides that
    would change the shared batch stream or the shared computation. A member may also set one of
    its loss's own parameters by name (``tau2=0.8`` for ``bsl``), merged into ``loss_params``."""
    from ssmrec.losses import canonical, spec_of

    if not members:
        raise ConfigError("a sweep needs at least one member")
    if base.nproc != 1:
        raise ConfigError(f"nproc: a sweep trains in one process (got nproc={base.nproc})")
    if base.optimizer != "adam":  # stacked tables: their batch paths build dense gradients
        raise ConfigError(f"optimizer: a sweep trains its members with dense Adam over stacked tables; "
                          f"optimizer {base.optimizer} is for solo runs (ssmrec train, or a grid run cell by cell)")
    if base.init != "xavier":  # stacked tables are drawn as the study's solo models
        raise ConfigError(f"init: a sweep draws its members' stacked tables with Xavier, the study's; init "
                          f"{base.init} is for solo runs (ssmrec train, or a grid run cell by cell)")
    loss, model = canonical(base.loss), model_key(base.model)
    kind = getattr(spec_of(loss), "cls", None)
    if kind is not None and (hasattr(kind, "on_epoch_start") or getattr(kind, "uses_dislikes", False)):
        raise ConfigError(f"loss {loss} keeps per-user state or learns from dislikes, which sweep members cannot "
                          "share: run one cell per setting (a grid) instead")
    if base.negatives and "extra_negatives" in loss_settings(loss):
        raise ConfigError(f"negatives: a sweep of {loss} trains on in-batch candidates; per-positive sampled "
                          "negatives for it are a solo-run setting")
    own = loss_settings(loss) | MODEL_SETTINGS.get(model, set()) | {"seed", "reg"}
    known = TrainConfig.field_names()
    params = loss_parameters(loss)
    cfgs = []
    for j, over in enumerate(members):
        if not isinstance(over, dict):
            raise ConfigError(f"member {j}: expected a table of settings, got {over!r}")
        mine = {k: _typed_like(params[k], v, f"member {j}") for k, v in over.items() if k in params}
        over = {k: v for k, v in over.items() if k not in params}
        if mine:
            over["loss_params"] = {**base.loss_params, **mine}
        for key in over:
            if key == "loss_params" and mine:
                continue
            name = key.replace("-", "_")
            if name not in known:
                continue  # TrainConfig.replace names it, with suggestions
            check_member_setting(name, f"member {j}")
            if name not in own:
                raise ConfigError(f"member {j}: {name} is not used by {model} + {loss}; members of this "
                                  f"sweep may differ in {', '.join(s for s in DIFFERING if s in own)}")
        cfgs.append(base.replace(over, source=f"member {j}"))
    if model == "svdpp":
        shapes = {(c.side, c.a0, c.a1) for c in cfgs}
        if len(shapes) > 1:
            shown = ", ".join(f"a0={a0:g} a1={a1:g}" for _, a0, a1 in sorted(shapes))
            raise ConfigError(f"SVD++ members share one propagation matrix, so a0 and a1 must be equal "
                              f"across members (got {shown}); run one sweep per pair of exponents")
    return cfgs


def describe(overrides: dict[str, Any]) -> str:
    """``seed=1, reg=0.0001`` (or ``base``)."""
    shown = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in overrides.items()]
    return ", ".join(shown) or "base"


__all__ = ["DIFFERING", "SWEEPABLE", "check_member_setting", "describe", "grid_texts", "loss_parameters",
           "member_configs", "model_key", "parse_member"]
