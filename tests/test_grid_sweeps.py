"""``ssmrec experiment --sweep``: a grid's cells that differ in reg / tau / layers train as one
sweep, and each gets the record its solo run would have; and its edges: explicit feedback, a
resumed sweep's time budget, a grid edited under an interrupted sweep, losses that cannot be
swept, diverged members, budgets."""

from __future__ import annotations

import json

import pytest

from ssmrec.experiments import Runner, load_grid
from ssmrec.experiments.grid_sweeps import sweep_groups
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
{more}
"""


def write_grid(path, data, regs="[1e-4, 1e-2, 1e-1]", base="", more=""):
    path.write_text(GRID.format(data=data, regs=regs, base=base, more=more))
    return path


def grid_file(tmp_path, tiny_dir, more=""):
    return write_grid(tmp_path / "g.toml", tiny_dir, more=more)


def interrupt_in_epoch_2(monkeypatch):
    """Every sweep stops (as on SIGTERM) after the first step of its second epoch."""
    from ssmrec.sweeps import sweep as sweep_module

    real_step = sweep_module.Sweep.step

    def step_then_stop(self, batch):
        out = real_step(self, batch)
        if self.epoch == 1 and batch.index == 0:
            self.stop.request(15)
        return out

    monkeypatch.setattr(sweep_module.Sweep, "step", step_then_stop)


def test_cells_that_differ_in_sweepable_settings_are_grouped_but_not_seeds(tmp_path, tiny_dir):
    grid = load_grid(grid_file(tmp_path, tiny_dir, '[[cell]]\nreg = [1e-4, 1e-2]\nseed = 1\n'
                                                 '[[cell]]\nloss = "ssm"\ntau = [0.1, 0.2]\n[[cell]]\nloss = "bce"\n'))
    groups = [[c.id for c in g] for g in sweep_groups(grid.cells)]
    by_id = {c.id: c for c in grid.cells}
    assert [len(g) for g in groups] == [3, 2, 2]  # reg x seed 0, reg x seed 1, ssm's taus; bce alone
    for g in groups:
        assert len({by_id[i].cfg.seed for i in g}) == 1 and len({by_id[i].cfg.loss for i in g}) == 1


def test_a_swept_grid_records_what_its_solo_runs_record(tmp_path, tiny_dir, capsys):
    path = grid_file(tmp_path, tiny_dir)
    lines = []
    swept = Runner(tmp_path / "rec-sweep", tmp_path / "runs-sweep", echo=lines.append, claims=False)
    swept.run_grid(path, dry_run=True, sweep=True)
    assert len(lines) == 1 and "would run 3 cells as one sweep" in lines[0] and "(reg)" in lines[0]
    swept.run_grid(path, sweep=True)
    solo = Runner(tmp_path / "rec-solo", tmp_path / "runs-solo", echo=lambda s: None, claims=False)
    solo.run_grid(path)
    for cell in load_grid(path).cells:
        a = json.loads((tmp_path / "rec-sweep" / "g" / f"{cell.id}.json").read_text())
        b = json.loads((tmp_path / "rec-solo" / "g" / f"{cell.id}.json").read_text())
        assert a["settings"] == b["settings"] and a["sweep"]["members"] == 3 and "sweep" not in b
        assert a["metrics"]["best_epoch"] == b["metrics"]["best_epoch"]
        assert a["metrics"]["stop_reason"] == b["metrics"]["stop_reason"]
        for k, v in b["metrics"]["test"].items():
            assert a["metrics"]["test"][k] == pytest.approx(v, abs=1e-6)
        for sim, metrics in b["test_by_similarity"].items():
            for k, v in metrics.items():
                assert a["test_by_similarity"][sim][k] == pytest.approx(v, abs=1e-6)
        assert a["profile"]["coverage"] == pytest.approx(b["profile"]["coverage"], abs=1e-6)
        assert [h["epoch"] for h in a["history"]] == [h["epoch"] for h in b["history"]]
    # recorded: a second pass runs nothing
    lines.clear()
    swept.run_grid(path, sweep=True)
    assert not any("sweep" in line and "cells" in line for line in lines)


def test_a_stopped_grid_sweep_resumes(tmp_path, tiny_dir, monkeypatch):
    path = grid_file(tmp_path, tiny_dir)
    interrupt_in_epoch_2(monkeypatch)
    runner = Runner(tmp_path / "rec", tmp_path / "runs", echo=lambda s: None, claims=False)
    with pytest.raises(Interrupted):
        runner.run_grid(path, sweep=True)
    monkeypatch.undo()
    lines = []
    Runner(tmp_path / "rec", tmp_path / "runs", echo=lines.append, claims=False).run_grid(path, sweep=True)
    assert any("resuming the sweep" in line for line in lines)
    assert len(list((tmp_path / "rec" / "g").glob("*.json"))) == 3


def test_a_temperature_search_sweeps_its_coarse_then_its_fine_values(tmp_path, tiny_dir):
    path = tmp_path / "s.toml"
    path.write_text(write_grid(tmp_path / "x.toml", tiny_dir).read_text().replace('loss = "bpr"', 'loss = "ssm"')
                    .replace("[[cell]]\nreg = [1e-4, 1e-2, 1e-1]",
                             '[search]\nparam = "tau"\ncoarse = [0.1, 0.5]\nspan = 1\nstep = 0.05\n'
                             '[[cell]]\nsearch = "tau"\nseed = [0, 1]\n'))
    lines = []
    Runner(tmp_path / "rec", tmp_path / "runs", echo=lines.append, claims=False).run_grid(path, sweep=True)
    Runner(tmp_path / "solo", tmp_path / "runs-solo", echo=lambda s: None, claims=False).run_grid(path)
    assert sum("cells as one sweep" in line for line in lines) == 2  # the coarse values, then the fine ones
    swept = {p.name: json.loads(p.read_text()) for p in (tmp_path / "rec" / "g").glob("search-*.json")}
    solo = {p.name: json.loads(p.read_text()) for p in (tmp_path / "solo" / "g").glob("search-*.json")}
    assert swept.keys() == solo.keys() and len(swept) == 1
    for name, s in swept.items():
        assert s["best"] == solo[name]["best"]
        assert s["scores"] == pytest.approx(solo[name]["scores"], abs=1e-6)
    records = [json.loads(p.read_text()) for p in (tmp_path / "rec" / "g").glob("*.json")
               if not p.name.startswith("search-")]
    assert len(records) == 2 + 2 + 1 and sum("sweep" in r for r in records) == 4  # seed 1's cell: on its own


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


def test_a_loss_that_cannot_be_swept_runs_cell_by_cell_and_the_dry_run_says_so(tmp_path, tiny_dir):
    path = write_grid(tmp_path / "g.toml", tiny_dir, regs="[1e-4, 1e-2]")
    path.write_text(path.read_text().replace('loss = "bpr"', 'loss = "adaptau"'))  # per-user state
    lines = []
    runner = Runner(tmp_path / "rec", tmp_path / "runs", echo=lines.append, claims=False)
    runner.run_grid(path, dry_run=True, sweep=True)
    assert not any("as one sweep" in line for line in lines) and sum("would run" in line for line in lines) == 2
    lines.clear()
    Runner(tmp_path / "rec", tmp_path / "runs", echo=lines.append, claims=False).run_grid(path, sweep=True)
    assert any("cannot share a sweep" in line for line in lines)
    assert len(list((tmp_path / "rec" / "g").glob("*.json"))) == 2


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
    from ssmrec.sweeps import sweep as sweep_module

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

