"""Figures say what they show: whole epochs, the split a metric was measured on, a sweep member's
settings, and one legend entry per run that covers no data. Read from the Figure objects."""

from __future__ import annotations

import json

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ssmrec.errors import ConfigError  # noqa: E402
from ssmrec.experiments.records import Record  # noqa: E402
from ssmrec.experiments.report_claims import claim_labels, claims_figure  # noqa: E402
from ssmrec.train.plot import curves_figure, plot_run  # noqa: E402


def fake_run(path, *, epochs=2, protocol="paper", sweep=None, best=2):
    """A run directory as training leaves it: config.json, history.jsonl, metrics.json."""
    path.mkdir(parents=True)
    record = {"config": {"dataset": "tiny", "model": "mf", "loss": "ssm", "protocol": protocol},
              "data": {"name": "tiny"}}
    if sweep is not None:
        record["sweep"] = {"member": 1, "members": 2, "overrides": sweep, "stream_seed": 0}
    (path / "config.json").write_text(json.dumps(record))
    (path / "history.jsonl").write_text("".join(
        json.dumps({"epoch": e, "loss": 2.0 / e, "recall@20": 0.1 * e, "ndcg@20": 0.05 * e}) + "\n"
        for e in range(1, epochs + 1)))
    (path / "metrics.json").write_text(json.dumps({"protocol": protocol, "best_epoch": best}))
    return path


@pytest.fixture
def figures():
    made = []
    yield made
    for fig in made:
        plt.close(fig)


def suptitle(fig) -> str:
    return fig._suptitle.get_text() if fig._suptitle is not None else ""  # get_suptitle() is matplotlib >= 3.8


def visible_ticks(ax):
    lo, hi = sorted(ax.get_xlim())
    return [t for t in ax.get_xticks() if lo - 1e-9 <= t <= hi + 1e-9]


@pytest.mark.parametrize("epochs", [1, 2, 3, 7])
def test_epoch_ticks_are_whole_numbers_on_short_runs(tmp_path, figures, epochs):
    fig = curves_figure(fake_run(tmp_path / "run", epochs=epochs, best=1))
    figures.append(fig)
    for ax in fig.axes:
        ticks = visible_ticks(ax)
        assert ticks and all(float(t).is_integer() for t in ticks), (ax.get_xlabel(), ticks)


@pytest.mark.parametrize("protocol, split, other", [("paper", "test", "validation"),
                                                    ("holdout", "validation", "test")])
def test_the_metric_panel_names_the_split_it_was_measured_on(tmp_path, figures, protocol, split, other):
    fig = curves_figure(fake_run(tmp_path / "run", protocol=protocol))
    figures.append(fig)
    panel = fig.axes[1]
    said = f"{panel.get_ylabel()} | {panel.get_title()}"
    assert split in panel.get_ylabel() and split in panel.get_title(), said
    assert other not in said


def test_a_sweep_member_is_titled_by_its_settings(tmp_path, figures):
    fig = curves_figure(fake_run(tmp_path / "sweep" / "member-1", sweep={"tau": 0.1, "reg": 1e-4}))
    figures.append(fig)
    title = suptitle(fig)
    assert "member-1" in title and "tau=0.1" in title and "reg=0.0001" in title, title
    solo = curves_figure(fake_run(tmp_path / "solo-run"))
    figures.append(solo)
    assert suptitle(solo).startswith("solo-run") and "member" not in suptitle(solo)


def test_a_real_sweep_members_plot_shows_its_settings(tiny, tmp_path, figures):
    from ssmrec.sweeps.sweep import Sweep
    from ssmrec.train import TrainConfig

    cfg = TrainConfig.from_dict({"dataset": "tiny", "model": "mf", "loss": "ssm", "dim": 8, "epochs": 2,
                                 "progress": False})
    Sweep(cfg, [{"tau": 0.1}, {"tau": 0.5}], tiny, tmp_path / "sw", echo=None).fit()
    fig = curves_figure(tmp_path / "sw" / "member-1")
    figures.append(fig)
    assert "member-1: tau=0.5" in suptitle(fig)
    assert "test" in fig.axes[1].get_ylabel()  # the default protocol (paper) selects on test
    assert all(float(t).is_integer() for t in visible_ticks(fig.axes[1]))
    png = plot_run(tmp_path / "sw" / "member-1")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match="a sweep, not a run: plot one of its members"):
        plot_run(tmp_path / "sw")


def claim_record(tmp_path, cell, *, model="mf", loss="bpr", **settings):
    curve = {"x": [0.0, 1.0, 2.0], "y": [0.1, 0.2, 0.3]}
    claims = {"popularity_bias": {"recfreq_curve": curve},
              "hard_negatives": {"curve": curve, "theory_curve": curve},
              "dcg_bound": {"sample": {"neg_log_dcg": [0.1, 0.2], "loss": [5.0, 6.0]}},
              "magnitude": {"item": {"curve": curve}}}
    s = {"dataset": "gowalla", "protocol": "paper", "model": model, "loss": loss, "seed": 0,
         "similarity": "cos" if loss == "ssm" else "ip", "reg": 1e-5, **settings}
    return Record(tmp_path / "grid" / f"{cell}.json", {"cell": cell, "settings": s, "claims": claims})


def test_claim_labels_tell_runs_of_one_name_apart(tmp_path):
    rs = [claim_record(tmp_path, f"bpr-{reg}", reg=reg) for reg in (0.01, 0.001, 1e-4)]
    rs += [claim_record(tmp_path, "ssm-a", loss="ssm", logq=True), claim_record(tmp_path, "ssm-b", loss="ssm"),
           claim_record(tmp_path, "ssm-b2", loss="ssm"), claim_record(tmp_path, "lgcn", model="lightgcn", layers=1)]
    labels = claim_labels(rs)
    assert len(set(labels)) == len(labels), labels
    assert labels[:3] == ["MF + BPR (reg=0.01)", "MF + BPR (reg=0.001)", "MF + BPR (reg=0.0001)"]
    assert labels[3] == "MF + SSM (logq=True)" and labels[-1] == "LightGCN-1 + BPR"
    assert labels[4:6] == ["MF + SSM [ssm-b]", "MF + SSM [ssm-b2]"]  # alike but for logq unset: their cells


def test_the_claims_figure_has_one_legend_naming_each_run_once_off_the_data(tmp_path, figures):
    rs = [claim_record(tmp_path, f"bpr-{k}", reg=10.0 ** -k) for k in range(1, 7)]
    rs += [claim_record(tmp_path, "ssm", loss="ssm"), claim_record(tmp_path, "lgcn", model="lightgcn", layers=1)]
    fig = claims_figure(rs, "gowalla")
    figures.append(fig)
    assert all(ax.get_legend() is None for ax in fig.axes)  # no legend inside a panel
    assert len(fig.legends) == 1
    names = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(names) == len(rs) == len(set(names)), names
    assert sum("MF + BPR" in n for n in names) == 6 and "MF + BPR (reg=0.1)" in names
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    for ax in fig.axes:  # panels with their tick labels and titles
        assert not legend.overlaps(ax.get_tightbbox(renderer)), ax.get_title()


def test_budget_curves_say_which_split_and_name_each_run_once_below_the_panels(tmp_path, monkeypatch):
    from ssmrec.experiments import budget

    def rec(grid, cell, protocol):
        hist = [{"epoch": 5 * (k + 1), "recall@20": 0.1 + 0.01 * k} for k in range(4)]
        return Record(tmp_path / grid / f"{cell}.json", {
            "cell": cell, "settings": {"dataset": "gowalla", "model": "lightgcn", "loss": "bpr", "protocol": protocol},
            "metrics": {"metric": "recall@20", "stop_reason": "time_budget", "protocol": protocol}, "history": hist})

    runs = [rec("table3", "gowalla-lightgcn-L1-bpr-s0-aaaa0001", "paper"),
            rec("holdout", "gowalla-lightgcn-L1-bpr-s0-aaaa0002", "holdout"),
            rec("other", "gowalla-lightgcn-L1-bpr-s0-aaaa0003", "paper")]
    made, close = [], plt.close
    monkeypatch.setattr(plt, "close", made.append)  # keep the figure to read it
    assert budget.plot_curves(runs, tmp_path / "c.png").exists()
    (fig,) = made
    (ax,) = fig.axes
    assert "test" in ax.get_ylabel() and "validation" in ax.get_ylabel(), ax.get_ylabel()
    names = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(set(names)) == 3, names
    assert "gowalla-lightgcn-L1-bpr-s0 (validation)" in names and "gowalla-lightgcn-L1-bpr-s0 [table3]" in names
    renderer = fig.canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    assert not legend.overlaps(ax.get_window_extent(renderer))  # not over the curves
    assert not legend.overlaps(ax.xaxis.get_tightbbox(renderer))  # nor over the ticks and the x label
    close(fig)
