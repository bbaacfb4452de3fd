"""Learning curves of a run: training loss and every evaluated metric per epoch, from its
``history.jsonl`` (``ssmrec plot RUN``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ssmrec.errors import ConfigError

EVALUATED_ON = {
    "holdout": ("validation", "validation set (selects the epoch)"),
    "paper": ("test", "test set (test-selected: paper protocol)"),
}
"""Per protocol, the split the per-epoch metrics of ``history.jsonl`` were measured on: a short
name for the y-axis and a longer one for the panel's title."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _settings(overrides: dict[str, Any]) -> str:
    """``tau=0.1, reg=0.0001`` (as a sweep prints its members; not imported from
    :mod:`ssmrec.sweeps.members`, which would import torch for a picture)."""
    shown = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in overrides.items()]
    return ", ".join(shown) or "base settings"


def run_title(run: Path, record: dict[str, Any]) -> str:
    """What the figure is of: the run's folder name, a sweep member's own settings (a member's
    folder is only ``member-<k>``), then model + loss on the dataset."""
    cfg = record.get("config", {})
    title = run.name
    sweep = record.get("sweep")
    if isinstance(sweep, dict):
        title += f": {_settings(sweep.get('overrides') or {})}"
    what = " + ".join(str(cfg[k]) for k in ("model", "loss") if cfg.get(k))
    data = record.get("data", {}).get("name") or (Path(str(cfg["dataset"])).name if cfg.get("dataset") else "")
    if what or data:
        title += f"  ({what}{' on ' if what and data else ''}{data})"
    return title


def curves_figure(run_dir: str | Path):
    """The learning-curve figure of a run (a :class:`matplotlib.figure.Figure`; the caller
    saves and closes it): loss on the left, metrics on the right, epochs as integer ticks,
    the selected (best) epoch marked, and the split the metrics were measured on named."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    run = Path(run_dir)
    hist_file = run / "history.jsonl"
    if not hist_file.is_file():
        members = sorted(run.glob("member-*/history.jsonl"))
        if members:  # a sweep's (or a tuning round's) folder: its members are the runs
            raise ConfigError(f"{run}: a sweep, not a run: plot one of its members, e.g. "
                              f"ssmrec plot {members[0].parent}")
        raise ConfigError(f"{run}: no history.jsonl (not a run directory, or no epoch finished yet)")
    history = [json.loads(line) for line in hist_file.read_text().splitlines() if line.strip()]
    if not history:
        raise ConfigError(f"{hist_file}: empty (no epoch finished yet)")
    record = _read_json(run / "config.json")
    metrics = _read_json(run / "metrics.json")
    best = metrics.get("best_epoch")
    protocol = record.get("config", {}).get("protocol") or metrics.get("protocol")
    split, where = EVALUATED_ON.get(protocol, ("evaluation", "evaluation set"))
    keys = sorted({k for h in history for k in h if "@" in k})
    fig, (ax_loss, ax_m) = plt.subplots(1, 2, figsize=(11.5, 3.8), sharex=True)  # one epoch axis
    ax_loss.plot([h["epoch"] for h in history], [h["loss"] for h in history], color="tab:gray")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="training loss")
    for k in keys:
        pts = [(h["epoch"], h[k]) for h in history if k in h]
        ax_m.plot(*zip(*pts), marker="." if len(pts) < 60 else None, label=k)
    if best is not None and best > 0:
        ax_m.axvline(best, color="black", linestyle=":", linewidth=1, label=f"selected (epoch {best})")
    ax_m.set(xlabel="epoch", ylabel=f"metric on {split}", title=where)
    first, last = history[0]["epoch"], history[-1]["epoch"]
    for ax in (ax_loss, ax_m):  # epochs are whole: no 0.5 ticks on a run of two or three epochs
        if last - first < 10:
            ax.set_xticks(range(first, last + 1))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if first == last:  # one point: a window around it, not matplotlib's ±0.06
            ax.set_xlim(first - 1, last + 1)
    if keys:
        ax_m.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the curves, not on them
    fig.suptitle(run_title(run, record), fontsize=10)
    fig.tight_layout()
    return fig


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw ``RUN_DIR/curves.png`` (or ``out``): see :func:`curves_figure`. Returns the image path."""
    fig = curves_figure(run_dir)
    import matplotlib.pyplot as plt

    path = Path(out) if out else Path(run_dir) / "curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
