"""``ssmrec experiment --sweep`` at its edges: explicit feedback, a resumed sweep's time budget, a
grid edited under an interrupted sweep, losses that cannot be swept, diverged members, budgets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ssmrec.experiments import Runner, load_grid
from ssmrec.train.signals import Interrupted

GRID = """name = "g"
[base]
dataset = "{data}"
model = "mf"
loss = "bpr"
dim = 8
batch_size = 256
lr = 0.01
epochs = 4
patience = 2
progress = false
threads = 1
ks = [20]
{base}
[[cell]]
reg = {regs}
"""


def write_grid(path, data, regs="[1e-4, 1e-2, 1e-1]", base=""):
    path.write_text(GRID.format(data=data, regs=regs, base=base))
    return path


def interrupt_in_epoch_2(monkeypatch):
    from ssmrec.experiments import sweep as sweep_module

    real_step = sweep_module.Sweep.step

    def step_then_stop(self, batch):
        out = real_step(self, batch)
        if self.epoch == 1 and batch.index == 0:
            self.stop.request(15)
        return out

    monkeypatch.setattr(sweep_module.Sweep, "step", step_then_stop)


def test_a_resumed_grid_sweep_takes_the_command_lines_time_budget(tmp_path, tiny_dir, monkeypatch):
    # a solo cell resumes with the runner's overrides (--max-seconds as its new total); the sweep
    # resumed by the grid runner keeps only device/threads/progress: the budget is dropped silently
    path = write_grid(tmp_path / "g.toml", tiny_dir)
    interrupt_in_epoch_2(monkeypatch)
    with pytest.raises(Interrupted):
        Runner(tmp_path / "rec", tmp_path / "runs", echo=lambda s: None, claims=False).run_grid(path, sweep=True)
    monkeypatch.undo()
    Runner(tmp_path / "rec", tmp_path / "runs", echo=lambda s: None, claims=False,
           overrides={"max_seconds": 1e-6}).run_grid(path, sweep=True)
    for cell in load_grid(path).cells:
        m = json.loads((tmp_path / "rec" / "g" / f"{cell.id}.json").read_text())["metrics"]
        assert (m["stop_reason"], m["epochs_run"]) == ("time_budget", 2), cell.id  # as its solo resume


def test_a_cell_added_to_an_interrupted_sweeps_group_does_not_break_the_grid(tmp_path, tiny_dir, monkeypatch):
    # members are matched to cells by position: the old sweep (2 members) is resumed and trained to
    # the end, then recording member-1 under the new group's cell 1 raises; the grid stops there
    path = write_grid(tmp_path / "g.toml", tiny_dir, regs="[1e-4, 1e-1]")
    interrupt_in_epoch_2(monkeypatch)
    with pytest.raises(Interrupted):
        Runner(tmp_path / "rec", tmp_path / "runs", echo=lambda s: None, claims=False).run_grid(path, sweep=True)
    monkeypatch.undo()
    write_grid(path, tiny_dir, regs="[1e-4, 1e-2, 1e-1]")
    Runner(tmp_path / "rec", tmp_path / "runs", echo=lambda s: None, claims=False).run_grid(path, sweep=True)
    for cell in load_grid(path).cells:
        rec = json.loads((tmp_path / "rec" / "g" / f"{cell.id}.json").read_text())
        assert rec["settings"] == json.loads(json.dumps(cell.key, default=str))


@pytest.fixture
def rated_file(tmp_path):
    """120 users rate 60 items 1-5 (as tests/test_beyond.py): ratings >= 4 positives, <= 2 dislikes."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(120):
        for i in rng.choice(60, size=25, replace=False):
            liked = (i % 2) == (u % 2)
            rating = rng.integers(4, 6) if liked else rng.integers(1, 3)
            if rng.random() < 0.15:
                rating = 3
            rows.append(f"{u}\t{i}\t{rating}\t{1000 + len(rows)}")
    p = tmp_path / "rated.tsv"
    p.write_text("user\titem\trating\ttimestamp\n" + "\n".join(rows) + "\n")
    return p


def test_swept_cells_of_explicit_feedback_data_record_what_their_solo_runs_do(tmp_path, rated_file):
    # Sweep's evaluators exclude only the training positives (not the known dislikes, as the solo
    # Trainer does) and measure no dislike@K: another best epoch, other test metrics
    path = write_grid(tmp_path / "g.toml", rated_file, regs="[1e-4, 1e-2]",
                      base="positive_min = 4\nnegative_max = 2")
    Runner(tmp_path / "rec-sweep", tmp_path / "runs-sweep", echo=lambda s: None, claims=False).run_grid(
        path, sweep=True)
    Runner(tmp_path / "rec-solo", tmp_path / "runs-solo", echo=lambda s: None, claims=False).run_grid(path)
    for cell in load_grid(path).cells:
        a = json.loads((tmp_path / "rec-sweep" / "g" / f"{cell.id}.json").read_text())["metrics"]
        b = json.loads((tmp_path / "rec-solo" / "g" / f"{cell.id}.json").read_text())["metrics"]
        assert a["best_epoch"] == b["best_epoch"], cell.id
        assert a["test"].keys() == b["test"].keys(), cell.id  # dislike@K
        for k, v in b["test"].items():
            assert a["test"][k] == pytest.approx(v, abs=1e-6), (cell.id, k)


def test_dry_run_does_not_promise_a_sweep_for_a_loss_that_cannot_be_swept(tmp_path, tiny_dir):
    # adaptau passes member_configs, so --dry-run --sweep lists one sweep (and hides the cells),
    # while the real run's Sweep() refuses the loss and runs the cells one by one
    path = write_grid(tmp_path / "g.toml", tiny_dir, regs="[1e-4, 1e-2]")
    path.write_text(path.read_text().replace('loss = "bpr"', 'loss = "adaptau"'))
    lines = []
    Runner(tmp_path / "rec", tmp_path / "runs", echo=lines.append, claims=False).run_grid(path, dry_run=True,
                                                                                        sweep=True)
    assert not any("as one sweep" in line for line in lines), lines
    assert sum("would run" in line for line in lines) == 2


def test_a_grids_per_cell_budget_is_multiplied_by_its_sweeps_cells(tmp_path, tiny_dir):
    path = write_grid(tmp_path / "g.toml", tiny_dir, regs="[1e-4, 1e-2, 1e-1]", base="max_seconds = 100")
    Runner(tmp_path / "rec", tmp_path / "runs", echo=lambda s: None, claims=False).run_grid(path, sweep=True)
    (sweep,) = (tmp_path / "runs" / "g").glob("sweep-*")
    assert json.loads((sweep / "sweep.json").read_text())["base"]["max_seconds"] == 300
    # a deadline given on the command line stays one
    Runner(tmp_path / "rec2", tmp_path / "runs2", overrides={"max_seconds": 50.0}, echo=lambda s: None,
           claims=False).run_grid(path, sweep=True)
    (sweep,) = (tmp_path / "runs2" / "g").glob("sweep-*")
    assert json.loads((sweep / "sweep.json").read_text())["base"]["max_seconds"] == 50


def test_a_diverged_member_is_not_recorded_and_its_cell_runs_on_its_own(tmp_path, tiny_dir, monkeypatch):
    from ssmrec.experiments import sweep as sweep_module

    path = write_grid(tmp_path / "g.toml", tiny_dir, regs="[1e-4, 1e-2, 1e-1]")
    real = sweep_module.Sweep.step

    def nan_for_member_1(self, batch):
        losses, regs = real(self, batch)
        if self.epoch == 1:
            losses = [float("nan") if j == 1 else v for j, v in zip(self.live, losses)]
        return losses, regs

    monkeypatch.setattr(sweep_module.Sweep, "step", nan_for_member_1)
    lines = []
    Runner(tmp_path / "rec", tmp_path / "runs", echo=lines.append, claims=False).run_grid(path, sweep=True)
    assert any("not recorded, its loss diverged" in line for line in lines)
    records = {c.id: json.loads((tmp_path / "rec" / "g" / f"{c.id}.json").read_text())
               for c in load_grid(path).cells}
    assert ["sweep" in r for r in records.values()] == [True, False, True]  # the middle one: solo

