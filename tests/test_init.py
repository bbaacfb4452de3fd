"""The ``init`` setting: Xavier (the study's, whose scale shrinks with the catalogue) or a normal
draw whose scale does not depend on it; checked where settings are read, carried from the command
line and the Python API to the model, kept by checkpoints, refused by sweeps, and left out of the
grid cells' ids at its default."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ssmrec import Recommender
from ssmrec.cli import main
from ssmrec.cli.common import check_settings
from ssmrec.data import Dataset, ratio_split, synthetic
from ssmrec.errors import ConfigError
from ssmrec.experiments.grid import result_settings
from ssmrec.models import MF, build_model
from ssmrec.models import base as model_base
from ssmrec.sweeps.members import member_configs
from ssmrec.train import TrainConfig, Trainer
from ssmrec.train import config as config_module


@pytest.fixture(scope="module")
def data() -> Dataset:
    inter = synthetic(200, 150, per_user=(3, 10), seed=5)
    train, _, test = ratio_split(inter, (0.8, 0.0, 0.2), seed=0)
    return Dataset("small", train, test, source="synthetic")


# ---------------------------------------------------------------------- the draw
@pytest.mark.parametrize("rows", [1_000, 400_000])
def test_xavier_shrinks_with_the_catalogue_and_normal_does_not(rows):
    torch.manual_seed(0)
    xavier = MF(4, rows, 64).item_emb
    normal = MF(4, rows, 64, init="normal").item_emb
    wide = MF(4, rows, 64, init="normal", init_std=0.3).item_emb
    bound = math.sqrt(6 / (rows + 64))  # uniform on [-b, b]: std b / sqrt(3)
    assert xavier.abs().max() <= bound
    assert xavier.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert normal.std().item() == pytest.approx(0.01, rel=0.02)
    assert wide.std().item() == pytest.approx(0.3, rel=0.02)


def test_the_study_s_tables_are_drawn_as_before():
    torch.manual_seed(7)
    model = MF(30, 40, 8)
    torch.manual_seed(7)
    users, items = torch.empty(30, 8), torch.empty(40, 8)
    torch.nn.init.xavier_uniform_(users)
    torch.nn.init.xavier_uniform_(items)
    assert torch.equal(model.user_emb, users) and torch.equal(model.item_emb, items)


@pytest.mark.parametrize("name", ["mf", "svdpp", "lightgcn"])
def test_every_model_takes_it_from_build_model(data, name):
    torch.manual_seed(0)
    model = build_model(name, data.train, 16, init="normal", init_std=0.25)
    table = torch.cat([model.user_emb, model.item_emb])
    assert table.std().item() == pytest.approx(0.25, rel=0.1)
    assert "init=normal(std=0.25)" in repr(model)


def test_the_two_lists_of_inits_agree():
    # the settings check them without torch; the models draw them
    assert config_module.INITS == model_base.INITS


# ---------------------------------------------------------------------- settings
@pytest.mark.parametrize("values, message", [
    ({"init": "he"}, "init must be one of xavier, normal, got 'he'"),
    ({"init": "normal", "init_std": 0.0}, "init_std must be a finite number > 0, got 0.0"),
    ({"init": "normal", "init_std": -1.0}, "init_std must be a finite number > 0"),
    ({"init": "normal", "init_std": float("nan")}, "init_std must be a finite number > 0"),
])
def test_bad_values_are_refused_with_the_setting_named(values, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(values)
    with pytest.raises(ConfigError, match=message):  # and before torch, on the command line
        check_settings(values)
    with pytest.raises(ConfigError, match="init"):
        model_base.init_table(torch.empty(3, 2), values.get("init", "normal"), values.get("init_std", 0.01))


def test_init_std_without_init_normal_is_named_as_ignored():
    cfg = TrainConfig.from_dict({"init_std": 0.2})
    assert cfg.inapplicable(["init_std"]) == ["init_std is ignored: it is the spread of init normal, "
                                              "this run's init is xavier"]
    assert not cfg.replace({"init": "normal"}).inapplicable(["init_std"])


def test_grid_cells_keep_their_ids_and_sweeps_refuse_it(data):
    xavier = TrainConfig.from_dict({"dataset": "gowalla", "model": "mf"})
    assert "init" not in result_settings(xavier) and "init_std" not in result_settings(xavier)
    assert result_settings(xavier.replace({"init": "normal"}))["init"] == "normal"
    base = TrainConfig.from_dict({"dataset": "small", "model": "mf", "init": "normal", "dim": 8})
    with pytest.raises(ConfigError, match="init: a sweep draws its members' stacked tables with Xavier"):
        member_configs(base, [{"reg": 1e-3}, {"reg": 1e-2}])


# ---------------------------------------------------------------------- to the model, and back
def test_the_command_line_and_the_python_api_reach_the_model(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    # a learning rate too small to move the tables: what the checkpoint holds is the draw
    assert main(["train", "--dataset", str(tiny_dir), "--model", "mf", "--dim", "16", "--epochs", "1",
                 "--no-progress", "--init", "normal", "--init-std", "0.3", "--lr", "1e-12", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert (config["init"], config["init_std"]) == ("normal", 0.3)
    state = torch.load(out / "best.pt", weights_only=False)["model"]
    assert torch.cat([state["user_emb"], state["item_emb"]]).std().item() == pytest.approx(0.3, rel=0.1)
    assert main(["train", "--dataset", str(tiny_dir), "--init", "glorot"]) == 2
    assert "init must be one of xavier, normal, got 'glorot'" in capsys.readouterr().err
    rec = Recommender(model="mf", init="normal", init_std=0.05, dim=8, epochs=1)
    assert (rec.cfg.init, rec.cfg.init_std) == ("normal", 0.05)


def test_a_resumed_run_is_the_uninterrupted_one(data, tmp_path, monkeypatch):
    base = {"dataset": "small", "model": "mf", "loss": "ssm", "dim": 8, "batch_size": 128, "epochs": 2,
            "progress": False, "init": "normal", "init_std": 0.2, "optimizer": "sparse-adam", "lr": 0.01}
    whole = Trainer(TrainConfig.from_dict(base), data, run_dir=tmp_path / "whole", echo=None)
    whole.fit()
    cut = Trainer(TrainConfig.from_dict({**base, "checkpoint_every": 1e-9}), data, run_dir=tmp_path / "cut",
                  echo=None)
    per_epoch, calls = len(cut.sampler), {"n": 0}
    original = cut.objective.__class__.__call__

    def killed(self, model, batch):
        calls["n"] += 1
        if calls["n"] == per_epoch + 2:  # the second batch of epoch 2
            raise SystemExit("killed")
        return original(self, model, batch)

    monkeypatch.setattr(cut.objective.__class__, "__call__", killed)
    with pytest.raises(SystemExit):
        cut.fit()
    monkeypatch.undo()
    resumed = Trainer.resume(tmp_path / "cut", echo=None, dataset=data)
    assert (resumed.model.init, resumed.model.init_std) == ("normal", 0.2)
    resumed.fit()
    for (k, v), w in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(v, w), k
