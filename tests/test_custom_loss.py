"""Bring your own loss: register a hinge loss with its own hyper-parameter and train it through
the Python API and through the command line (as a plugin module), resume included."""

from __future__ import annotations

import json
import sys

import pytest
import torch

import ssmrec
from ssmrec.cli import main
from ssmrec.losses import REGISTERED, build_loss, register_loss, unregister_loss
from ssmrec.train import TrainConfig
from ssmrec.train.config import ConfigError

PLUGIN = '''
import torch
from ssmrec.losses import register_loss


@register_loss("plughinge", kind="sampled", params={"margin": 1.0}, negatives=2)
class PlugHinge(torch.nn.Module):
    def __init__(self, margin=1.0, similarity="ip"):
        super().__init__()
        self.margin, self.similarity = margin, similarity

    def forward(self, u, pos, neg):
        s_pos = (u * pos).sum(-1, keepdim=True)
        s_neg = (u.unsqueeze(1) * neg).sum(-1)
        return (self.margin - s_pos + s_neg).clamp(min=0).mean()
'''


@pytest.fixture
def hinge():
    @register_loss("hinge", kind="sampled", params={"margin": 1.0})
    class Hinge(torch.nn.Module):
        def __init__(self, margin=1.0):
            super().__init__()
            self.margin = margin

        def forward(self, u, pos, neg):
            s_pos = (u * pos).sum(-1, keepdim=True)
            s_neg = (u.unsqueeze(1) * neg).sum(-1)
            return (self.margin - s_pos + s_neg).clamp(min=0).mean()

    yield Hinge
    unregister_loss("hinge")


def test_registered_loss_builds_with_its_parameters(hinge):
    loss = build_loss("hinge", params={"margin": 0.25})
    assert isinstance(loss, hinge) and loss.margin == 0.25
    u, p, n = torch.ones(2, 3), torch.ones(2, 3), torch.zeros(2, 1, 3)
    assert loss(u, p, n).item() == 0.0  # hand-worked: 0.25 - 3 + 0 < 0 -> 0
    with pytest.raises(ConfigError, match="has no parameter gamma"):
        TrainConfig(loss="hinge", loss_params={"gamma": 1.0})
    with pytest.raises(ConfigError, match="loss_params are for losses with their own parameters"):
        TrainConfig(loss="bpr", loss_params={"margin": 1.0})
    with pytest.raises(ValueError, match="built-in loss"):
        register_loss("bpr", kind="sampled")
    with pytest.raises(ValueError, match="kind must be one of"):
        register_loss("x", kind="pairwise")


def test_a_registered_loss_trains_through_the_api(hinge, tiny_dir):
    rec = ssmrec.Recommender(model="mf", loss="hinge", loss_params={"margin": 0.5}, dim=8, epochs=2, lr=0.01,
                             protocol="paper")
    rec.fit(str(tiny_dir))
    assert rec.result["epochs_run"] == 2 and len(rec.recommend(3, k=5)[0]) == 5


def test_a_plugin_loss_trains_and_resumes_through_the_cli(tiny_dir, tmp_path, monkeypatch, capsys):
    (tmp_path / "my_losses.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    run = tmp_path / "run"
    args = ["train", "--dataset", str(tiny_dir), "--model", "mf", "--dim", "8", "--no-progress",
            "--plugin", "my_losses", "--loss", "plughinge", "--loss-param", "margin=0.5"]
    assert main([*args, "--epochs", "1", "--out", str(run)]) == 0
    cfg = json.loads((run / "config.json").read_text())["config"]
    assert cfg["loss_params"] == {"margin": 0.5} and cfg["plugins"] == ["my_losses"]
    REGISTERED.pop("plughinge")  # as in a new process: only the run's config knows the plugin
    sys.modules.pop("my_losses")
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    assert len((run / "history.jsonl").read_text().splitlines()) == 2
    capsys.readouterr()
    assert main([*args[:-4], "--loss", "plughinge2", "--out", str(tmp_path / "r2")]) == 2
    assert "unknown loss 'plughinge2'" in capsys.readouterr().err
    assert main([*args[:-2], "--loss-param", "gamma=1", "--out", str(tmp_path / "r3")]) == 2
    assert "no parameter gamma" in capsys.readouterr().err
    REGISTERED.pop("plughinge", None)


def test_a_registered_in_batch_loss_written_to_the_earlier_extras_still_trains(tiny):
    """A plugin whose forward names the documented extras without ``user_ids`` or ``**kwargs``."""
    from ssmrec.train import Trainer

    @register_loss("strict_inbatch", kind="in_batch")
    class Strict(torch.nn.Module):
        def forward(self, u, pos, *, item_ids=None, extra_reps=None, extra_ids=None, logq=None, exclude=None,
                    target=None):
            logits = u @ pos.T
            return torch.nn.functional.cross_entropy(logits, torch.arange(len(u)))

    try:
        cfg = TrainConfig.from_dict({"dataset": "tiny", "model": "mf", "loss": "strict_inbatch", "dim": 8,
                                     "batch_size": 256, "epochs": 1, "progress": False})
        result = Trainer(cfg, tiny, write=False, echo=None).fit()
        assert result["epochs_run"] == 1
    finally:
        unregister_loss("strict_inbatch")
