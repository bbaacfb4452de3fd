"""The cells a time budget stopped: how far each got, its curve, and what finishing would cost.

For every record the report uses whose run ended on its budget (time or epochs): the epochs
run and the best epoch, the selection metric at the last evaluations (still rising or flat), the
training seconds per epoch on its machine, and an estimate of what running it to its early stop
would take. The estimate comes from our own records only: the epochs that the early-stopped runs
of the same loss on the same dataset needed (their median), at the cell's own seconds per epoch;
where no run of that loss converged, the report says so instead of guessing.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from ssmrec.experiments.records import BUDGET_STOPS, Record


def curve(r: Record) -> tuple[list[int], list[float]]:
    """``(epochs, metric)`` of a run's evaluations."""
    metric = r.m["metric"]
    points = [(h["epoch"], h[metric]) for h in r.data.get("history", []) if metric in h]
    return [e for e, _ in points], [v for _, v in points]


def trend(r: Record, last: int = 4) -> float | None:
    """Gain of the selection metric per 10 epochs over the last ``last`` evaluations."""
    epochs, values = curve(r)
    if len(epochs) < 2:
        return None
    e, v = epochs[-last:], values[-last:]
    return (v[-1] - v[0]) / max(e[-1] - e[0], 1) * 10


def converged_epochs(records: list[Record], like: Record) -> tuple[list[int], str]:
    """Epochs that the early-stopped runs of ``like``'s loss on its dataset ran: those of its own
    model if any, else of any model (and which of the two it is)."""
    runs = [r for r in records if r.s.get("loss") == like.s.get("loss") and r.s.get("dataset") == like.s.get("dataset")
            and r.m.get("stop_reason") == "early_stopped"]
    own = [r for r in runs if r.s.get("model") == like.s.get("model")]
    return ([r.m["epochs_run"] for r in own], "same model") if own else ([r.m["epochs_run"] for r in runs], "any model")


def cost_lines(used: list[Record], every: list[Record]) -> list[str]:
    """Markdown table of the budget-stopped records among ``used``; ``every`` is where the
    converged runs that set the estimate are looked for."""
    stopped = sorted({id(r): r for r in used if r.m.get("stop_reason") in BUDGET_STOPS}.values(),
                     key=lambda r: r.data["cell"])
    if not stopped:
        return []
    lines = ["| cell | epochs run (best) | best Recall@20 | last evaluations: gain / 10 epochs | s / epoch "
             "(machine) | to its early stop (estimate from our converged runs of that loss) |",
             "|---|---|---|---|---|---|"]
    for r in stopped:
        slope = trend(r)
        ran, best = r.m["epochs_run"], r.m["best_epoch"]
        need, which = converged_epochs(every, r)
        per = r.m.get("seconds_per_epoch") or 0.0
        # at least a patience window after the best epoch, else as long as converged runs took
        window = int(r.s.get("patience", 10)) * int(r.s.get("eval_every", 1))
        if need:
            median = int(statistics.median(need))
            more = max(median - ran, best + window - ran, 1)
            estimate = (f"~{more} more epochs (converged runs, {which}: median {median} epochs over {len(need)}; "
                        f"patience window {window}), ~{more * per / 3600:.1f} h at its s / epoch")
        else:
            estimate = "no converged run of this loss on this dataset yet to estimate from"
        state = "still rising" if slope is not None and slope > 0 else "flat or falling"
        shown = f"{slope:+.4f} ({state})" if slope is not None else "—"
        lines.append(f"| {r.data['cell']} | {ran} ({r.m['best_epoch']}) | {r.test(r.m['metric']):.4f} | {shown} | "
                     f"{per:.1f} ({r.machine}) | {estimate} |")
    return lines


def _curve_labels(runs: list[Record]) -> list[str]:
    """The runs' legend entries: each cell without its hash, the split its curve was measured
    on where that is validation (holdout), and its grid where two entries would read alike."""
    labels = []
    for r in runs:
        label, protocol = r.data["cell"].rsplit("-", 1)[0], r.s.get("protocol", r.m.get("protocol"))
        if protocol != "paper":
            label += " (validation)" if protocol == "holdout" else f" ({protocol or 'protocol unknown'})"
        labels.append(label)
    twice = {label for label in labels if labels.count(label) > 1}
    return [f"{label} [{r.path.parent.name}]" if label in twice else label for r, label in zip(runs, labels)]


def plot_curves(used: list[Record], path: Path) -> Path | None:
    """The budget-stopped runs' selection-metric curves, one panel per dataset, one legend entry
    per run below the panels (none over the curves). A curve is the metric the run selected its
    epoch on: test under the paper protocol, validation under holdout (said in its entry)."""
    stopped = {id(r): r for r in used if r.m.get("stop_reason") in BUDGET_STOPS}
    if not stopped:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted(stopped.values(), key=lambda r: r.data["cell"])
    labels = dict(zip(map(id, runs), _curve_labels(runs)))
    datasets = sorted({r.s.get("dataset") for r in runs})
    metric = "/".join(sorted({r.m["metric"] for r in runs})).replace("recall@", "Recall@")
    splits = {r.s.get("protocol", r.m.get("protocol")) for r in runs}
    split = {frozenset({"paper"}): "test (test-selected)",
             frozenset({"holdout"}): "validation"}.get(frozenset(splits), "test, or validation where marked")
    rows = max(sum(r.s.get("dataset") == ds for r in runs) for ds in datasets)
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 3.8 + 0.16 * -(-rows // 2)),
                             squeeze=False, layout="constrained")
    for ax, ds in zip(axes[0], datasets):
        for r in runs:
            if r.s.get("dataset") != ds:
                continue
            epochs, values = curve(r)
            ax.plot(epochs, values, label=labels[id(r)], lw=1.2,
                    ls="--" if r.s.get("protocol", r.m.get("protocol")) == "holdout" else "-")
        ax.set_title(f"{ds}: runs stopped by their budget")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{metric} on {split}")
        ax.legend(fontsize=6, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
