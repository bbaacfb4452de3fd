"""Result records: one JSON per finished run of a grid (``results/records/<grid>/<cell>.json``),
read back and picked by their settings. Shared by the report, the leaderboard and benchmarks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ssmrec.experiments.grid import DEFAULT_SIMILARITY, LOSS_SETTINGS
from ssmrec.experiments.stats import summary

BUDGET_STOPS = ("time_budget", "max_epochs")
DATASETS = ("gowalla", "yelp2018", "amazon-book", "alibaba-ifashion")
"""The study's datasets, in its order."""
FIG1_LOSSES = ("bce", "bpr", "softmax", "ccl", "ssm")
"""The losses of the study's Table 2 and Figure 1."""


# ----------------------------------------------------------------------------- records
@dataclass
class Record:
    path: Path
    data: dict[str, Any]

    @property
    def s(self) -> dict[str, Any]:
        return self.data["settings"]

    @property
    def m(self) -> dict[str, Any]:
        return self.data["metrics"]

    def test(self, key: str = "recall@20") -> float:
        return float(self.m["test"][key])

    @property
    def budget_stopped(self) -> bool:
        return self.m["stop_reason"] in BUDGET_STOPS

    @property
    def still_improving(self) -> bool:
        evaluated = [h["epoch"] for h in self.data["history"] if self.m["metric"] in h]
        return bool(evaluated) and self.m["best_epoch"] >= evaluated[-1]

    @property
    def cut_short(self) -> bool:
        """Stopped by its budget while its metric was still rising."""
        return self.budget_stopped and self.still_improving

    @property
    def machine(self) -> str:
        env = self.data.get("env", {})
        return env.get("cuda") or f"{env.get('cpu', '?')} ({env.get('threads', '?')} thr)"

    @property
    def on_one_cpu_thread(self) -> bool:
        env = self.data.get("env", {})
        return not env.get("cuda") and str(env.get("threads")) == "1"

    @property
    def budget(self) -> dict[str, Any] | None:
        """The budget the run was given (``{"max_seconds": ..., "epochs": ...}``, ``max_seconds``
        None for none), as recorded since records carry it; None for an older record."""
        return self.data.get("budget")

    @property
    def name(self) -> str:
        """``<grid folder>/<cell id>``: the record's own name (two grids may hold a record of one cell)."""
        return f"{self.path.parent.name}/{self.path.stem}"

    @property
    def per_user(self) -> dict[str, np.ndarray] | None:
        p = self.path.with_suffix(".per_user.npz")
        return dict(np.load(p)) if p.exists() else None


def load_records(root: str | Path) -> list[Record]:
    out = []
    for p in sorted(Path(root).glob("*/*.json")):
        if p.name.startswith("search-"):
            continue
        data = json.loads(p.read_text())
        if "settings" in data and "metrics" in data:
            out.append(Record(p, data))
    return out


def rank(r: Record) -> tuple:
    """How records of one cell (one id, or one configuration and seed) are ranked, the first the one
    every section shows: the longest run (one continued with ``--extend``), then one stopped by its
    early-stopping criterion over one stopped by a budget, then the newer."""
    return (int(r.m.get("epochs_run") or 0), r.m.get("stop_reason") not in BUDGET_STOPS,
            str(r.data.get("finished_at") or ""), r.name)


def authoritative(records: list[Record]) -> tuple[list[Record], dict[str, Record]]:
    """One record per cell id (:func:`rank`'s first) and, for each record it stands for, the one
    that supersedes it (keyed by :attr:`Record.name`)."""
    best: dict[str, Record] = {}
    for r in records:
        cell = str(r.data.get("cell") or r.path.stem)
        if cell not in best or rank(r) > rank(best[cell]):
            best[cell] = r
    kept = {id(r) for r in best.values()}
    superseded = {r.name: best[str(r.data.get("cell") or r.path.stem)] for r in records if id(r) not in kept}
    return [r for r in records if id(r) in kept], superseded


EVALUATION_ONLY = ("test_similarity",)
"""Settings that change how a trained model is scored and selected, not how it is trained."""


def _plain(v: Any) -> Any:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in sorted(v.items())}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return str(v)


def settings_id(settings: dict[str, Any], ignore: tuple[str, ...] = ()) -> str:
    """Settings as one comparable string: numbers as numbers (150 == 150.0), sequences as lists (a
    record's JSON has lists where a cell has tuples), keys in ``ignore`` left out."""
    return json.dumps({k: _plain(v) for k, v in settings.items() if k not in ignore}, sort_keys=True)


def settings_match(have: dict[str, Any], want: dict[str, Any], ignore: tuple[str, ...] = ()) -> bool:
    """Equal settings as :func:`settings_id` compares them."""
    return settings_id(have, ignore) == settings_id(want, ignore)


class CellRecords:
    """Finds a grid cell's records among ``records``: those with its id hash, else those with its
    settings (compared as :func:`settings_id` does), else, with ``near``, those that differ from it
    only in :data:`EVALUATION_ONLY` settings (a cell whose scoring default changed after it ran)."""

    def __init__(self, records: list[Record]):
        self.by_digest: dict[str, list[Record]] = {}
        self.by_settings: dict[str, list[Record]] = {}
        self.by_training: dict[str, list[Record]] = {}
        for r in records:
            self.by_digest.setdefault(str(r.data.get("cell", "")).rsplit("-", 1)[-1], []).append(r)
            self.by_settings.setdefault(settings_id(r.s), []).append(r)
            self.by_training.setdefault(settings_id(r.s, EVALUATION_ONLY), []).append(r)

    def find(self, key: dict[str, Any], digest: str, *, near: bool = False) -> tuple[list[Record], dict[str, tuple]]:
        """The cell's records and the settings in which they differ from it (``{}`` when none):
        ``{"test_similarity": ("ip", "cos")}`` = recorded with ip, the cell's now cos."""
        found = self.by_digest.get(digest) or self.by_settings.get(settings_id(key))
        if found:
            return list(found), {}
        if not near:
            return [], {}
        found = self.by_training.get(settings_id(key, EVALUATION_ONLY))
        if not found:
            return [], {}
        have = found[0].s
        return list(found), {k: (have.get(k), key.get(k)) for k in EVALUATION_ONLY if have.get(k) != key.get(k)}


def seconds_by_machine(rs: list[Record]) -> dict[str, float]:
    """Median training seconds per epoch of runs, per machine (a GPU's seconds and a CPU thread's
    never mixed; a GPU labelled ``GPU: <name>``); one CPU thread first."""
    by: dict[str, list[float]] = {}
    cpu: set[str] = set()
    for r in rs:
        if r.m.get("seconds_per_epoch") is None:
            continue
        machine = f"GPU: {r.machine}" if r.data.get("env", {}).get("cuda") else r.machine
        by.setdefault(machine, []).append(float(r.m["seconds_per_epoch"]))
        if r.on_one_cpu_thread:
            cpu.add(machine)
    order = sorted(by, key=lambda m: (m not in cpu, m))
    return {m: float(np.median(by[m])) for m in order}


def default_similarity(loss: str) -> dict[str, str]:
    """The filter for a loss's own training similarity (CCL has none to choose)."""
    return {"similarity": DEFAULT_SIMILARITY[loss]} if "similarity" in LOSS_SETTINGS[loss] else {}


TUNED = ("reg",)
"""Settings searched per cell (the L2 grid): among records that differ only in them, a cell shows
the one selected on its selection metric (validation under holdout, test-selected under paper)."""
STUDY_L2 = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
"""The study's L2 search (PAPER.md: "coefficient searched in {1e-6 ... 1e-1}")."""


def _score(r: Record) -> float:
    part = r.m["valid"] if r.m.get("valid") else r.m["test"]
    return float(part.get(r.m["metric"], float("-inf")))


def searched(records: list[Record], chosen: Record) -> dict[tuple, Record]:
    """The values of :data:`TUNED` a cell's search tried, each with its record (of a value recorded
    twice, the first by :func:`rank`: one continued with ``--extend``); the chosen record stands for its value."""
    same = [r for r in records if all(r.s.get(k) == chosen.s.get(k) for k in chosen.s if k not in TUNED)]
    by_value: dict[tuple, Record] = {}
    for r in same:
        value = tuple(r.s.get(k) for k in TUNED)
        if value not in by_value or rank(r) > rank(by_value[value]) or r is chosen:
            by_value[value] = r
    return by_value


def search_trace(records: list[Record], chosen: Record) -> str:
    """``reg 1e-4: 0.1420† (time budget @102 (best 100)), 1e-3: 0.1491 (early stop @210 (best 160),
    selected)``: the values a cell's search tried and where each stopped; empty when it tried one."""
    by_value = searched(records, chosen)
    if len(by_value) < 2:
        return ""
    parts = []
    for value, r in sorted(by_value.items()):
        mark = "†" if r.budget_stopped else ""
        tag = ", selected" if r is chosen else ""
        parts.append(f"{'/'.join(f'{v:g}' for v in value)}: {_score(r):.4f}{mark} ({_stop(r)}{tag})")
    return f"{'/'.join(TUNED)} " + ", ".join(parts)


def select(records: list[Record], **want: Any) -> list[Record]:
    """Records whose settings equal ``want`` (floats compared with tolerance), one per seed: the
    first by :func:`rank` of a repeated cell, the selected one of a searched setting (:data:`TUNED`)."""
    out: dict[int, Record] = {}
    for r in records:
        ok = True
        for k, v in want.items():
            have = r.s.get(k)
            if isinstance(v, float) or isinstance(have, float):
                ok = have is not None and abs(float(have) - float(v)) < 1e-9
            else:
                ok = have == v
            if not ok:
                break
        if ok:
            seed = int(r.s.get("seed", 0))
            old = out.get(seed)
            if old is None:
                out[seed] = r
            elif any(r.s.get(k) != old.s.get(k) for k in TUNED):
                if _score(r) > _score(old):
                    out[seed] = r
            elif rank(r) > rank(old):
                out[seed] = r
    return [out[k] for k in sorted(out)]


def fmt_cell(rs: list[Record], key: str) -> str:
    vals = [r.test(key) for r in rs]
    s = summary(vals)
    text = f"{s['mean']:.4f}" + (f" ± {s['std']:.4f}" if s["n"] > 1 else "")
    if any(r.budget_stopped for r in rs):
        text += " †"
    return text


STUDY_LR = 1e-3
"""The study's learning rate (Adam, PAPER.md); a cell trained with another says so beside it."""


def budget_text(r: Record) -> str:
    """The budget a run was given, as its record says: ``7,200 s, 1000 epochs``; ``not recorded``
    for a record older than the budget field."""
    b = r.budget
    if b is None:
        return "not recorded"
    seconds = b.get("max_seconds")
    return f"{f'{seconds:,.0f} s' if seconds else 'no time limit'}, {b.get('epochs')} epochs"


def _stop(r: Record) -> str:
    tag = {"early_stopped": "early stop", "time_budget": "time budget", "max_epochs": "epoch budget"}.get(
        r.m["stop_reason"], r.m["stop_reason"])
    if r.m["stop_reason"] == "time_budget" and r.budget and r.budget.get("max_seconds"):
        tag += f" of {r.budget['max_seconds']:,.0f} s"  # the budget it was given, from its record
    return f"{tag} @{r.m['epochs_run']} (best {r.m['best_epoch']})"


def stop_note(rs: list[Record]) -> str:
    """How each run stopped; a learning rate or an optimizer other than the study's is said once."""
    note = "; ".join(_stop(r) for r in rs)
    rates = sorted({float(r.s["lr"]) for r in rs
                    if r.s.get("lr") is not None and abs(float(r.s["lr"]) - STUDY_LR) > 1e-12})
    if rates:
        note += f"; own learning rate {', '.join(f'{x:g}' for x in rates)} (the study's: {STUDY_LR:g})"
    optimizers = sorted({str(r.s["optimizer"]) for r in rs if r.s.get("optimizer", "adam") != "adam"})
    if optimizers:  # a sparse optimizer is another optimizer, not the study's protocol
        note += f"; optimizer {', '.join(optimizers)} (the study's: adam)"
    return note
