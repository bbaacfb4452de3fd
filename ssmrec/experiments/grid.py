"""Experiment grids declared in TOML: datasets x models x losses x settings x seeds.

A grid file looks like::

    name = "table3"
    [base]                     # settings of every cell (any `ssmrec train` setting)
    protocol = "paper"
    epochs = 300
    max_seconds = 5400
    [axes]                     # cartesian product applied to every cell
    dataset = ["gowalla", "yelp2018"]
    [dataset.gowalla]          # per-dataset settings (the study's per-dataset choices)
    tau = 0.12
    [[cell]]                   # one entry per variant; a list value is an axis of its own
    model = "lightgcn"
    loss = "ssm"
    seed = [0, 1, 2]
    [[cell]]
    model = "svdpp"
    side = ["user", "item"]
    loss = ["bpr", "ssm"]
    search = "tau"             # tune tau first (coarse grid, then a fine grid around the best)

Precedence (later wins): ``base`` < ``axes`` < ``dataset.<name>`` < ``cell``. Every resolved cell
is a full :class:`~ssmrec.train.config.TrainConfig`; its id is readable and ends with a hash of
the settings that affect results, so editing a setting makes a new cell instead of silently
reusing an old result.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssmrec.sweeps.search import Search
from ssmrec.train.config import LOSS_SETTINGS, MODEL_SETTINGS, ConfigError, TrainConfig, loss_settings
from ssmrec.train.config_io import read_toml

# settings that do not change what a run computes (where, how fast, how loud); the time budget is
# one of them because seconds mean different things on different machines: a record says how a
# run ended (stop_reason, epochs_run) and on what machine, and reports mark budget-stopped runs
RUN_ONLY = {"out", "progress", "threads", "device", "checkpoint_every", "data_dir", "download", "eval_chunk",
            "max_seconds", "nproc", "plugins", "sync_every"}
# cell keys that are not training settings
CELL_KEYS = {"search", "similarities", "name"}
# what a grid file may hold at its top level, and what its [search] table may hold
GRID_KEYS = {"name": str, "description": str, "base": dict, "axes": dict, "dataset": dict, "cell": list,
             "search": dict}
SEARCH_KEYS = {"param", "coarse", "step", "span", "seed"}


DEFAULT_SIMILARITY = {"ssm": "cos", "softmax": "cos", "bpr": "ip", "bce": "ip", "ccl": "cos",
                      "bsl": "cos", "psl": "cos", "adaptau": "cos", "slk": "cos", "clogq": "cos", "ntr": "cos"}


LATER_SETTINGS = {"user_col": None, "item_col": None, "rating_col": None, "time_col": None, "time_cutoff": None,
                  "loss_params": {}, "positive_min": None, "negative_max": None, "sampler": "auto",
                  "optimizer": "adam", "eval_users": 0, "test_users": 0, "init": "xavier", "init_std": 0.01}
"""Settings added after records existed, with their defaults: left out of a cell's key while at
the default, so that every earlier cell keeps its id (a new setting must be added here)."""


def result_settings(cfg: TrainConfig) -> dict[str, Any]:
    """The settings that can change a run's result, with the ones its loss and model ignore
    dropped and defaults made explicit: two cells with equal result settings are the same run."""
    from ssmrec.losses import canonical, default_negatives, default_similarity

    loss = canonical(cfg.loss)
    model = cfg.model.lower().replace("+", "p").replace("-", "")
    ignored = (set().union(*LOSS_SETTINGS.values()) - loss_settings(loss)) | (
        set().union(*MODEL_SETTINGS.values()) - MODEL_SETTINGS[model])
    values = cfg.to_dict()
    out = {k: v for k, v in sorted(values.items()) if k not in RUN_ONLY and k not in ignored
           and not (k in LATER_SETTINGS and v == LATER_SETTINGS[k])}
    out["loss"], out["model"] = loss, model
    if out.get("test_similarity") is None:
        out["test_similarity"] = cfg.scoring
    if "similarity" in out and out["similarity"] is None:
        out["similarity"] = default_similarity(loss)
    if "negatives" in out and out["negatives"] is None:
        out["negatives"] = default_negatives(loss)
    if "negatives" in out and not out["negatives"] and "extra_negatives" in loss_settings(loss):
        del out["negatives"]  # an in-batch loss without sampled negatives: as before they could have any
    return out


@dataclass
class Cell:
    """One resolved run of a grid."""

    experiment: str
    cfg: TrainConfig
    similarities: tuple[str, ...] = ("ip",)
    search: str | None = None
    tag: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> dict[str, Any]:
        return result_settings(self.cfg)

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.key, sort_keys=True, default=str).encode()).hexdigest()[:8]

    @property
    def id(self) -> str:
        c = self.cfg
        model = c.model
        if c.model == "lightgcn":
            model += f"-L{c.layers}"
        elif c.model == "svdpp":
            model += f"-{c.side}-a{c.a0:g}-{c.a1:g}"
        sim = f"-{c.similarity}" if c.similarity and c.similarity != DEFAULT_SIMILARITY.get(c.loss) else ""
        name = Path(c.dataset).name.split(".")[0]
        tag = f"-{self.tag}" if self.tag else ""
        return f"{name}-{model}-{c.loss}{sim}{tag}-s{c.seed}-{self.digest}"


@dataclass
class Grid:
    name: str
    path: Path
    cells: list[Cell]
    search: Search
    description: str = ""


def _as_list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, list) else [v]


def _product(settings: dict[str, Any]) -> list[dict[str, Any]]:
    keys = list(settings)
    out = []
    for combo in itertools.product(*(_as_list(settings[k]) for k in keys)):
        out.append(dict(zip(keys, combo)))
    return out


def load_grid(path: str | Path) -> Grid:
    """Parse and expand a grid file; every cell's settings are validated up front."""
    path = Path(path)
    raw = read_toml(path)
    _check_layout(path, raw)
    name = raw.get("name") or path.stem
    base = raw.get("base", {})
    axes = raw.get("axes", {})
    per_dataset = raw.get("dataset", {})
    cells_raw = raw.get("cell") or [{}]
    s = raw.get("search", {})
    search = _search(path, s)
    known = TrainConfig.field_names()
    cells: list[Cell] = []
    seen: set[str] = set()
    for n, spec in enumerate(cells_raw, start=1):
        where = f"{path} [[cell]] #{n}"
        unknown = set(spec) - known - CELL_KEYS
        if unknown:
            close = sorted({c for k in unknown for c in difflib.get_close_matches(k, known | CELL_KEYS, n=2)})
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"{where}: unknown setting(s) {sorted(unknown)}{hint}")
        sims = _as_list(spec.get("similarities", ["ip"]))
        if not sims or any(v not in ("ip", "cos") for v in sims):
            raise ConfigError(f"{where}: similarities must list 'ip' and/or 'cos', got {spec['similarities']!r}")
        train_part = {k: v for k, v in spec.items() if k not in CELL_KEYS}
        for point in _product({**axes, **train_part}):
            from_axes = {k: v for k, v in point.items() if k not in train_part}
            from_cell = {k: v for k, v in point.items() if k in train_part}
            ds = point.get("dataset", base.get("dataset", "gowalla"))
            settings = {**base, **from_axes, **per_dataset.get(ds, {}), **from_cell}
            cfg = TrainConfig.from_dict(settings, source=where)
            cell = Cell(name, cfg, tuple(sims),
                        spec.get("search"), spec.get("name", ""))
            if cell.search and cell.search != search.param:
                raise ConfigError(f"{where}: search = {cell.search!r} but [search] tunes {search.param!r}")
            if cell.id not in seen:
                seen.add(cell.id)
                cells.append(cell)
    return Grid(name, path, cells, search, raw.get("description", ""))


def _search(path: Path, s: dict[str, Any]) -> Search:
    """The [search] table, strictly typed like train settings (a string is not a number)."""
    def number(key, default, kind):
        v = s.get(key, default)
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (kind is float or float(v).is_integer())
        if not ok or not math.isfinite(v) or v < 0:
            raise ConfigError(f"{path} [search]: {key} must be {'a number' if kind is float else 'an integer'}"
                              f" >= 0, got {v!r}")
        return kind(v)

    param = s.get("param", "tau")
    types = {f.name: str(f.type) for f in dataclasses.fields(TrainConfig)}
    if types.get(param) != "float":
        raise ConfigError(f"{path} [search]: param must name a number setting such as tau, got {param!r}")
    coarse = s.get("coarse", list(Search.coarse))
    if not isinstance(coarse, list) or not coarse:
        raise ConfigError(f"{path} [search]: coarse must be a list of values, got {coarse!r}")
    for v in coarse:  # each value must be one the setting can take
        TrainConfig().replace({param: v}, source=f"{path} [search] coarse")
    return Search(param=param, coarse=tuple(coarse), step=number("step", Search.step, float),
                  span=number("span", Search.span, int), seed=number("seed", 0, int))


def _unknown(where: str, key: str, known) -> ConfigError:
    close = difflib.get_close_matches(key, sorted(known), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return ConfigError(f"{where}: unknown key {key!r}{hint}")


def _check_layout(path: Path, raw: dict[str, Any]) -> None:
    """Refuse, naming the key, what is not a grid: a train config, an unknown or mistyped table."""
    settings = TrainConfig.field_names()
    if "cell" not in raw and "name" not in raw and (
            "train" in raw or any(k in settings and not isinstance(v, dict) for k, v in raw.items())):
        raise ConfigError(f"{path}: looks like a train config (settings, no [[cell]] or name), not an "
                          f"experiment grid; run it with `ssmrec train --config {path}`")
    for key, value in raw.items():
        if key not in GRID_KEYS:
            raise _unknown(str(path), key, GRID_KEYS)
        kind = GRID_KEYS[key]
        if not isinstance(value, kind) or (kind is list and not all(isinstance(c, dict) for c in value)):
            shape = {str: "a string", dict: f"a table [{key}]", list: f"tables [[{key}]]"}[kind]
            raise ConfigError(f"{path}: {key} must be {shape}, got {value!r}")
    for name, table in raw.get("dataset", {}).items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: dataset.{name} must be a table [dataset.{name}] of settings, got {table!r}")
    for key in raw.get("search", {}):
        if key not in SEARCH_KEYS:
            raise _unknown(f"{path} [search]", key, SEARCH_KEYS)


def with_setting(cell: Cell, **values: Any) -> Cell:
    """A copy of a cell with some settings changed (and no search of its own)."""
    cfg = cell.cfg.replace(values, source=f"cell {cell.id}")
    return Cell(cell.experiment, cfg, cell.similarities, None, cell.tag, dict(cell.extra))
