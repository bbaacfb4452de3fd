"""Learning curves of a run: training loss and every evaluated metric per epoch, from its
``history.jsonl`` (``ssmrec plot RUN``)."""

from __future__ import annotations

from pathlib import Path

from ssmrec.errors import ConfigError


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw ``RUN_DIR/curves.png`` (or ``out``): loss on the left, metrics on the right, the
    selected (best) epoch marked. Returns the image path."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(run_dir)
    hist_file = run / "history.jsonl"
    if not hist_file.is_file():
        raise ConfigError(f"{run}: no history.jsonl (not a run directory, or no epoch finished yet)")
    history = [json.loads(line) for line in hist_file.read_text().splitlines() if line.strip()]
    if not history:
        raise ConfigError(f"{hist_file}: empty (no epoch finished yet)")
    metrics_file = run / "metrics.json"
    best = json.loads(metrics_file.read_text()).get("best_epoch") if metrics_file.exists() else None
    keys = sorted({k for h in history for k in h if "@" in k})
    fig, (ax_loss, ax_m) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot([h["epoch"] for h in history], [h["loss"] for h in history], color="tab:gray")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title=run.name)
    for k in keys:
        pts = [(h["epoch"], h[k]) for h in history if k in h]
        ax_m.plot(*zip(*pts), marker="." if len(pts) < 60 else None, label=k)
    if best is not None and best > 0:
        ax_m.axvline(best, color="black", linestyle=":", linewidth=1, label=f"selected (epoch {best})")
    ax_m.set(xlabel="epoch", ylabel="metric", title="evaluation")
    if keys:
        ax_m.legend(fontsize=7)
    fig.tight_layout()
    path = Path(out) if out else run / "curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
