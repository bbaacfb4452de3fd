"""What is left to run: cells against records, priced from the records alone."""

from __future__ import annotations

import json

import pytest

from ssmrec.experiments.grid import load_grid, with_setting
from ssmrec.experiments.plan import plan_grid, plan_lines
from ssmrec.experiments.records import load_records

GRID = """name = "g"
[base]
dataset = "gowalla"
protocol = "paper"
model = "mf"
loss = "bpr"
epochs = 500
eval_every = 5
patience = 2
[[cell]]
reg = [1e-4, 1e-3, 1e-2]
"""


def write(root, cell, *, epochs, best, stop, seconds, gpu=False, recall=0.1, **settings):
    s = {"dataset": "gowalla", "model": "mf", "loss": "bpr", "seed": 0, **settings}
    data = {"cell": cell, "settings": s,
            "env": {"cuda": "a GPU" if gpu else None, "cpu": "cpu", "threads": 1},
            "metrics": {"metric": "recall@20", "epochs_run": epochs, "best_epoch": best, "stop_reason": stop,
                        "train_seconds": seconds * 0.9, "eval_seconds": seconds * 0.1, "test": {"recall@20": recall},
                        "valid": None}}
    d = root / "records" / "g"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{cell}.json").write_text(json.dumps(data))


def test_cells_are_counted_and_priced_from_the_records(tmp_path):
    (tmp_path / "g.toml").write_text(GRID)
    a, b, _ = [c.id for c in load_grid(tmp_path / "g.toml").cells]
    write(tmp_path, a, epochs=50, best=40, stop="early_stopped", seconds=100.0)  # 2 s / epoch
    write(tmp_path, b, epochs=20, best=20, stop="time_budget", seconds=60.0)  # 3 s / epoch
    write(tmp_path, "other-cell", epochs=10, best=10, stop="early_stopped", seconds=10.0, dataset="yelp2018",
          gpu=True)  # another dataset: neither its epochs nor its GPU time count
    p = plan_grid(tmp_path / "g.toml", load_records(tmp_path / "records"))
    assert (p.cells, p.converged, p.budget_stopped, p.not_run) == (3, 1, 1, 1)
    # b: median 50 epochs, already 20 -> 30 more (its patience window, 2 x 5 after best 20, is less);
    # the third: 50; at the median 2.5 s / epoch on one CPU thread
    assert p.epochs_left == 80 and p.epochs_borrowed == 0
    assert p.cpu_seconds == pytest.approx(80 * 2.5)
    assert p.gpu_seconds == 0 and p.unpriced_gpu == 2 and p.unpriced_cpu == 0
    assert p.left == [b, load_grid(tmp_path / "g.toml").cells[2].id]
    text = "\n".join(plan_lines([p]))
    assert "| g | 3 | 1 | 1 | 1 | 80 | 0.1 | 0.0 | 0 / 2 |" in text and "In all 2 runs are left" in text


def test_a_patience_window_and_no_estimate(tmp_path):
    (tmp_path / "g.toml").write_text(GRID.replace('model = "mf"', 'model = "lightgcn"'))
    a, b, c = [c.id for c in load_grid(tmp_path / "g.toml").cells]
    # only MF has converged: LightGCN's epochs are borrowed from it, and its best epoch sets a floor
    write(tmp_path, "mf-cell", epochs=30, best=20, stop="early_stopped", seconds=30.0)
    write(tmp_path, a, epochs=40, best=38, stop="max_epochs", seconds=400.0, model="lightgcn")
    p = plan_grid(tmp_path / "g.toml", load_records(tmp_path / "records"))
    assert p.epochs_left == 8 + 30 + 30 == p.epochs_borrowed  # a: 38 + 10 - 40; b and c: 30 each
    assert p.cpu_seconds == pytest.approx(68 * 10.0)  # LightGCN's own seconds per epoch
    empty = plan_grid(tmp_path / "g.toml", [])
    assert empty.not_run == 3 and empty.unpriced_cpu == 3 and empty.epochs_left == 0


def test_a_search_cell_counts_the_runs_the_runner_makes(tmp_path):
    (tmp_path / "s.toml").write_text(GRID.replace("[[cell]]\nreg = [1e-4, 1e-3, 1e-2]", "")
                                     .replace('loss = "bpr"', 'loss = "ssm"')
                                     + '[search]\nparam = "tau"\ncoarse = [0.1, 0.5]\nspan = 1\nstep = 0.05\n'
                                       '[[cell]]\nsearch = "tau"\nseed = [0, 1]\n')
    grid = load_grid(tmp_path / "s.toml")
    p = plan_grid(tmp_path / "s.toml", [])
    assert p.cells == p.not_run == 2 + 2 + 1  # coarse at seed 0, 2 fine, seed 1 at the best
    cell = grid.cells[0]
    for tau, recall in ((0.1, 0.2), (0.5, 0.1)):
        write(tmp_path, with_setting(cell, tau=tau, seed=0).id, epochs=10, best=8, stop="early_stopped",
              seconds=10.0, recall=recall, loss="ssm")
    p = plan_grid(tmp_path / "s.toml", load_records(tmp_path / "records"))
    assert (p.cells, p.converged, p.not_run) == (5, 2, 3)
    # the fine values are now known: around 0.1, the best coarse value
    assert with_setting(cell, tau=0.05, seed=0).id in p.left and with_setting(cell, tau=0.15, seed=0).id in p.left
    assert with_setting(grid.cells[1], tau=0.1).id in p.left


def test_a_cell_shared_by_two_grids_is_left_to_run_once_in_the_totals(tmp_path):
    """The runner runs a cell once for every grid that holds it (records and run directories are found
    across grid folders: runner.find_record / find_run), but plan_lines adds up the grids' counts and
    hours, so the report's totals count it once per grid (results/REPORT.md: 371 runs left, 345 distinct)."""
    body = ('[base]\ndataset = "gowalla"\nmodel = "mf"\nloss = "bpr"\nepochs = 10\n[[cell]]\nreg = 1e-4\n')
    (tmp_path / "a.toml").write_text('name = "a"\n' + body)
    (tmp_path / "b.toml").write_text('name = "b"\n' + body)
    plans = [plan_grid(tmp_path / "a.toml", []), plan_grid(tmp_path / "b.toml", [])]
    assert plans[0].left == plans[1].left  # one and the same cell
    assert "In all 1 runs are left" in "\n".join(plan_lines(plans))


def test_a_record_without_its_seconds_prices_nothing(tmp_path):
    (tmp_path / "g.toml").write_text(GRID)
    a = load_grid(tmp_path / "g.toml").cells[0].id
    write(tmp_path, a, epochs=50, best=40, stop="early_stopped", seconds=0.0)  # no time recorded
    p = plan_grid(tmp_path / "g.toml", load_records(tmp_path / "records"))
    assert p.not_run == 2 and p.epochs_left == 100 and p.cpu_seconds == 0 and p.unpriced_cpu == 2

