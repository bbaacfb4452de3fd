"""A sweep's members: which settings may differ between them, read from flags or files, checked
against the base settings before any work. Shared by :mod:`ssmrec.experiments.sweep` (training)
and :mod:`ssmrec.experiments.tune` (grids of trials)."""

from __future__ import annotations

from typing import Any

from ssmrec.errors import ConfigError
from ssmrec.losses import canonical, spec_of
from ssmrec.train.config import MODEL_SETTINGS, TrainConfig, loss_settings, parse_text

SWEEPABLE = ("seed", "reg", "tau", "layers", "margin", "neg_weight", "a0", "a1")
"""Settings members may differ in: they leave the batch stream and the shared work alone."""


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


def loss_parameters(loss: str) -> dict[str, Any]:
    """The parameters of a loss that take ``loss_params`` (the losses after the study, registered
    ones), with their defaults: sweep members and tuning grids may set them by name."""
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
    if not members:
        raise ConfigError("a sweep needs at least one member")
    if base.nproc != 1:
        raise ConfigError(f"nproc: a sweep trains in one process (got nproc={base.nproc})")
    if base.optimizer != "adam":  # stacked tables: their batch paths build dense gradients
        raise ConfigError(f"optimizer: a sweep trains its members with dense Adam over stacked tables; "
                          f"optimizer {base.optimizer} is for solo runs (ssmrec train, or a grid run cell by cell)")
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
            if name not in SWEEPABLE:
                raise ConfigError(
                    f"member {j}: {name} cannot differ between members: they share one batch stream "
                    f"(batch order and negatives), one model family, loss and optimizer, and one "
                    f"evaluation schedule. Set it in the base settings or run another sweep; members "
                    f"may set {', '.join(SWEEPABLE)}")
            if name not in own:
                raise ConfigError(f"member {j}: {name} is not used by {model} + {loss}; members of this "
                                  f"sweep may set {', '.join(s for s in SWEEPABLE if s in own)}")
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


__all__ = ["SWEEPABLE", "describe", "loss_parameters", "member_configs", "model_key", "parse_member"]
