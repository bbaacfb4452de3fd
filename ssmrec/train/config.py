"""Run settings: one flat dataclass, loadable from TOML, overridable by flags."""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import tomllib

from ssmrec.data.dataset import DataConfig


class ConfigError(ValueError):
    """A setting is unknown or has a value it cannot take; the message names it."""


@dataclass
class TrainConfig(DataConfig):
    """Everything a training run needs. Data settings are those of :class:`DataConfig`.

    Model:
        model: ``mf``, ``svdpp`` or ``lightgcn`` (default: ``lightgcn``).
        dim: embedding size (default: 64).
        layers: LightGCN propagation layers (default: 1).
        side, a0, a1: SVD++ propagation side and exponents (default: ``user``, 0.5, 0.0).
    Loss:
        loss: ``ssm``, ``bpr``, ``bce``, ``softmax``, ``ccl`` (default: ``ssm``).
        tau: temperature of ssm/softmax (default: 0.1).
        similarity: training similarity ``cos``/``ip`` (default: the loss's own: cos for
            ssm/softmax, ip for bpr/bce; ccl is always cos).
        reg: L2 coefficient on the batch's layer-0 embeddings (default: 1e-5).
        negatives: per-positive negatives for bpr/bce/ccl (default: 1 / 4 / 800).
        mask_duplicates: ssm: mask in-batch copies of the positive (default: False).
        mask_seen: ssm: mask candidates the user has interacted with in train (default: False).
        extra_negatives: ssm: shared sampled negatives added to the in-batch ones (default: 0).
        negative_beta: their distribution, ``degree ** beta`` (0 = uniform) (default: 0.0).
        logq: ssm: subtract log expected candidate counts (logQ correction) (default: False).
        margin, neg_weight: ccl's ``m`` and ``w`` (default: 0.9, 150).
    Optimisation:
        lr, batch_size, epochs: Adam learning rate, positives per batch, max epochs
            (default: 1e-3, 2048, 100).
        max_seconds: stop after the epoch in which this much training time has passed; 0 = no
            budget (default: 0).
    Evaluation and selection:
        protocol: ``paper`` (select on test, as the study's code) or ``holdout`` (select on
            validation, test once) (default: ``paper``).
        eval_every: evaluate every N epochs (default: 1).
        metric: selection metric (default: ``recall@20``).
        patience: evaluations without improvement before stopping; 0 = never stop early
            (default: 10).
        ks: cut-offs (default: 20).
        test_similarity: scoring at evaluation, ``ip`` or ``cos`` (default: ``ip``).
        eval_chunk: users scored at once; memory is eval_chunk x n_items floats (default: 2048).
    Run:
        seed, device (``auto``/``cpu``/``cuda``), threads (torch intra-op threads; 0 = torch's
        default), out (run directory; default: ``runs/<dataset>-<model>-<loss>-<time>``),
        checkpoint_every: seconds between mid-epoch checkpoints, 0 = only at epoch ends
        (default: 300), progress: show progress bars (default: True).
        nproc: worker processes on this machine, each with its part of every global batch; the
            result equals one process's (default: 1; ``torchrun`` sets it by its own flags).
    """

    model: str = "lightgcn"
    dim: int = 64
    layers: int = 1
    side: str = "user"
    a0: float = 0.5
    a1: float = 0.0
    loss: str = "ssm"
    tau: float = 0.1
    similarity: str | None = None
    reg: float = 1e-5
    negatives: int | None = None
    mask_duplicates: bool = False
    mask_seen: bool = False
    extra_negatives: int = 0
    negative_beta: float = 0.0
    logq: bool = False
    margin: float = 0.9
    neg_weight: float = 150.0
    lr: float = 1e-3
    batch_size: int = 2048
    epochs: int = 100
    max_seconds: float = 0.0
    protocol: str = "paper"
    eval_every: int = 1
    metric: str = "recall@20"
    patience: int = 10
    ks: tuple[int, ...] = (20,)
    test_similarity: str = "ip"
    eval_chunk: int = 2048
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    out: str | None = None
    checkpoint_every: float = 300.0
    progress: bool = True
    nproc: int = 1

    def data_config(self) -> DataConfig:
        return DataConfig(**{f.name: getattr(self, f.name) for f in fields(DataConfig)})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "settings") -> TrainConfig:
        cfg = cls()
        return cfg.replace(values, source=source)

    def replace(self, values: dict[str, Any], *, source: str = "settings") -> TrainConfig:
        """A copy with ``values`` applied (keys with ``-`` accepted as ``_``), type-checked."""
        known = {f.name: f for f in fields(self)}
        out = dataclasses.replace(self)
        for key, value in values.items():
            name = key.replace("-", "_")
            if name not in known:
                close = difflib.get_close_matches(name, list(known), n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise ConfigError(f"{source}: unknown setting {key!r}{hint}")
            setattr(out, name, _coerce(known[name], value, source))
        out.validate(source)
        return out

    def validate(self, source: str = "settings") -> None:
        from ssmrec.data.dataset import PROTOCOLS
        from ssmrec.eval.metrics import METRICS
        from ssmrec.losses import canonical
        from ssmrec.models import MODELS

        def bad(name, msg):
            raise ConfigError(f"{source}: {name} {msg}")

        if self.model.lower().replace("+", "p").replace("-", "") not in MODELS:
            bad("model", f"must be one of {', '.join(MODELS)}, got {self.model!r}")
        try:
            canonical(self.loss)
        except ValueError as e:
            bad("loss", str(e))
        if self.protocol not in PROTOCOLS:
            bad("protocol", f"must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.side not in ("user", "item"):
            bad("side", f"must be 'user' or 'item', got {self.side!r}")
        for name in ("similarity", "test_similarity"):
            v = getattr(self, name)
            if v is not None and v not in ("cos", "ip"):
                bad(name, f"must be 'cos' or 'ip', got {v!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            bad("device", f"must be auto, cpu or cuda, got {self.device!r}")
        for name in ("tau", "lr", "batch_size", "epochs", "eval_every", "dim", "eval_chunk", "nproc"):
            if getattr(self, name) <= 0:
                bad(name, f"must be positive, got {getattr(self, name)}")
        for name in ("reg", "patience", "layers", "extra_negatives", "max_seconds", "threads"):
            if getattr(self, name) < 0:
                bad(name, f"must be >= 0, got {getattr(self, name)}")
        if self.negatives is not None and self.negatives < 1:
            bad("negatives", f"must be >= 1, got {self.negatives}")
        m, _, k = self.metric.partition("@")
        if m not in METRICS or not k.isdigit():
            bad("metric", f"must look like 'recall@20' with one of {METRICS}, got {self.metric!r}")
        if int(k) not in self.ks:
            self.ks = tuple(sorted({*self.ks, int(k)}))


def _coerce(f: dataclasses.Field, value: Any, source: str) -> Any:
    kind = str(f.type)
    try:
        if value is None:
            if "None" in kind:
                return None
            raise TypeError("None not allowed")
        if kind.startswith("tuple"):
            items = value if isinstance(value, (list, tuple)) else [value]
            inner = float if "float" in kind else int
            return tuple(inner(v) for v in items)
        if kind.startswith("bool"):
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if kind.startswith("int"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if kind.startswith("float"):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {f.name} cannot be {value!r} (expected {kind})") from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a dict; a :class:`ConfigError` naming the file when missing or invalid."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read settings from a TOML file (top-level keys, or a ``[train]`` table)."""
    data = read_toml(path)
    return data.get("train", data)


def save_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")
    tmp.replace(path)


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")
