"""``ssmrec experiment --sweep``: a grid's cells that differ in reg / tau / layers train as one
sweep, and each gets the record its solo run would have."""

from __future__ import annotations

import json

import pytest

from ssmrec.experiments import Runner, load_grid
from ssmrec.experiments.grid_sweeps import sweep_groups

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
[[cell]]
reg = [1e-4, 1e-2, 1e-1]
{more}
"""


def grid_file(tmp_path, tiny_dir, more=""):
    p = tmp_path / "g.toml"
    p.write_text(GRID.format(data=tiny_dir, more=more))
    return p


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
    from ssmrec.experiments import sweep as sweep_module
    from ssmrec.train.signals import Interrupted

    path = grid_file(tmp_path, tiny_dir)
    real_step = sweep_module.Sweep.step

    def step_then_stop(self, batch):
        out = real_step(self, batch)
        if self.epoch == 1 and batch.index == 0:
            self.stop.request(15)
        return out

    monkeypatch.setattr(sweep_module.Sweep, "step", step_then_stop)
    runner = Runner(tmp_path / "rec", tmp_path / "runs", echo=lambda s: None, claims=False)
    with pytest.raises(Interrupted):
        runner.run_grid(path, sweep=True)
    monkeypatch.undo()
    lines = []
    Runner(tmp_path / "rec", tmp_path / "runs", echo=lines.append, claims=False).run_grid(path, sweep=True)
    assert any("resuming the sweep" in line for line in lines)
    assert len(list((tmp_path / "rec" / "g").glob("*.json"))) == 3


def test_a_loss_that_cannot_be_swept_runs_cell_by_cell(tmp_path, tiny_dir):
    path = tmp_path / "a.toml"
    path.write_text(GRID.format(data=tiny_dir, more="").replace('loss = "bpr"', 'loss = "adaptau"')
                    .replace("reg = [1e-4, 1e-2, 1e-1]", "reg = [1e-4, 1e-2]"))
    lines = []
    Runner(tmp_path / "rec", tmp_path / "runs", echo=lines.append, claims=False).run_grid(path, sweep=True)
    assert any("cannot share a sweep" in line for line in lines)
    assert len(list((tmp_path / "rec" / "g").glob("*.json"))) == 2


def test_a_temperature_search_sweeps_its_coarse_then_its_fine_values(tmp_path, tiny_dir):
    path = tmp_path / "s.toml"
    path.write_text(GRID.format(data=tiny_dir, more="").replace('loss = "bpr"', 'loss = "ssm"')
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
