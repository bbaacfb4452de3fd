"""The training loop: reproducibility, early stopping, checkpoints, resume, protocols, NaN."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ssmrec.train import Interrupted, TrainConfig, Trainer, TrainingError
from ssmrec.train.restore import restore

BASE = {"model": "lightgcn", "layers": 1, "loss": "ssm", "tau": 0.2, "dim": 16, "batch_size": 256,
        "epochs": 3, "progress": False, "ks": [10, 20], "lr": 0.01}


def make(tiny, tmp_path, name="run", **kw) -> Trainer:
    cfg = TrainConfig.from_dict({**BASE, "dataset": "tiny", **kw})
    return Trainer(cfg, tiny, run_dir=tmp_path / name, echo=None)


def params(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_run_directory_and_reproducibility(tiny, tmp_path):
    a = make(tiny, tmp_path, "a")
    ra = a.fit()
    b = make(tiny, tmp_path, "b")
    rb = b.fit()
    assert ra["test"] == rb["test"]
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    d = tmp_path / "a"
    for f in ("config.json", "history.jsonl", "metrics.json", "best.pt", "last.pt"):
        assert (d / f).is_file(), f
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["config"]["tau"] == 0.2 and cfg["data"]["train"] == tiny.train.nnz
    assert "torch" in cfg["env"]
    hist = [json.loads(line) for line in (d / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert all("recall@20" in h and h["train_seconds"] > 0 for h in hist)
    metrics = json.loads((d / "metrics.json").read_text())
    assert metrics["protocol"] == "paper" and metrics["selection"].startswith("test-selected")
    best = max(hist, key=lambda h: h["recall@20"])
    assert metrics["best_epoch"] == best["epoch"]
    assert metrics["test"]["recall@20"] == best["recall@20"]


def test_training_learns_something(tiny, tmp_path):
    t = make(tiny, tmp_path, epochs=8)
    untrained = t.evaluate(t.select_eval)["recall@20"]
    result = t.fit()
    assert result["test"]["recall@20"] > untrained + 0.05


def test_different_seeds_differ(tiny, tmp_path):
    a = make(tiny, tmp_path, "a", seed=1).fit()
    b = make(tiny, tmp_path, "b", seed=2).fit()
    assert a["test"] != b["test"]


def test_early_stopping(tiny, tmp_path):
    # an absurd learning rate with patience 1 stops long before 50 epochs
    t = make(tiny, tmp_path, epochs=50, patience=2, lr=1e-6)
    r = t.fit()
    assert r["stop_reason"] == "early_stopped" and r["epochs_run"] < 50
    assert r["epochs_run"] - r["best_epoch"] == 2


def test_eval_every_and_last_epoch(tiny, tmp_path):
    t = make(tiny, tmp_path, epochs=5, eval_every=2)
    t.fit()
    assert [h["epoch"] for h in t.history if "recall@20" in h] == [2, 4, 5]


def test_resume_after_epoch_equals_uninterrupted(tiny, tmp_path):
    whole = make(tiny, tmp_path, "whole", epochs=4)
    whole.fit()
    part = make(tiny, tmp_path, "part", epochs=2)
    part.fit()
    resumed = Trainer.resume(tmp_path / "part", echo=None, overrides={"epochs": 4}, dataset=tiny)
    assert resumed.epoch == 2
    resumed.fit()
    for k, v in params(whole).items():
        assert torch.equal(v, params(resumed)[k]), k
    assert [h["loss"] for h in whole.history] == [h["loss"] for h in resumed.history]


def test_interrupt_mid_epoch_then_resume_loses_nothing(tiny, tmp_path, monkeypatch):
    whole = make(tiny, tmp_path, "whole", epochs=2)
    whole.fit()

    t = make(tiny, tmp_path, "cut", epochs=2)
    calls = {"n": 0}
    original = t.objective.__class__.__call__
    per_epoch = len(t.sampler)

    def flaky(self, model, batch):
        calls["n"] += 1
        if calls["n"] == per_epoch + 3:  # the third batch of epoch 2
            raise KeyboardInterrupt
        return original(self, model, batch)

    monkeypatch.setattr(t.objective.__class__, "__call__", flaky)
    with pytest.raises(Interrupted, match="Resume with: ssmrec train --resume"):
        t.fit()
    monkeypatch.undo()
    assert (tmp_path / "cut" / "last.pt").is_file()
    resumed = Trainer.resume(tmp_path / "cut", echo=None, dataset=tiny)
    assert (resumed.epoch, resumed.batch) == (1, 2)
    resumed.fit()
    for k, v in params(whole).items():
        assert torch.equal(v, params(resumed)[k]), k
    assert len(resumed.history) == 2
    assert [h["loss"] for h in whole.history] == pytest.approx([h["loss"] for h in resumed.history])


def test_mid_epoch_checkpoint_resume(tiny, tmp_path, monkeypatch):
    whole = make(tiny, tmp_path, "whole", epochs=1)
    whole.fit()
    t = make(tiny, tmp_path, "cut", epochs=1, checkpoint_every=1e-9)  # checkpoint after every batch
    calls = {"n": 0}
    original = t.objective.__class__.__call__

    def flaky(self, model, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise SystemExit("killed")  # not a KeyboardInterrupt: nothing saved at this point
        return original(self, model, batch)

    monkeypatch.setattr(t.objective.__class__, "__call__", flaky)
    with pytest.raises(SystemExit):
        t.fit()
    monkeypatch.undo()
    resumed = Trainer.resume(tmp_path / "cut", echo=None, dataset=tiny)
    assert (resumed.epoch, resumed.batch) == (0, 2)
    resumed.fit()
    for k, v in params(whole).items():
        assert torch.equal(v, params(resumed)[k]), k
    assert whole.history[0]["loss"] == pytest.approx(resumed.history[0]["loss"])


def test_nan_loss_is_a_clear_error(tiny, tmp_path, monkeypatch):
    t = make(tiny, tmp_path)
    monkeypatch.setattr(t.objective.__class__, "__call__", lambda self, m, b: torch.tensor(float("nan")))
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 1, batch 0 .*tau=0.2"):
        t.fit()


def test_holdout_protocol(tiny, tmp_path):
    from ssmrec.data import Dataset, carve_validation

    train, valid = carve_validation(tiny.train, seed=0)
    ds = Dataset("tiny", train, tiny.test, valid)
    cfg = TrainConfig.from_dict({**BASE, "dataset": "tiny", "protocol": "holdout", "epochs": 2})
    t = Trainer(cfg, ds, run_dir=tmp_path / "h", echo=None)
    r = t.fit()
    assert r["valid"]["recall@20"] == max(h["recall@20"] for h in t.history)
    # test excludes train and validation items, evaluated at the best validation epoch
    from ssmrec.eval import Evaluator

    best = torch.load(tmp_path / "h" / "best.pt", weights_only=False)
    t.model.load_state_dict(best["model"])
    again = Evaluator(tiny.test, [train, valid], ks=(10, 20)).evaluate_model(t.model)
    assert again == r["test"]


def test_time_budget_stops(tiny, tmp_path):
    r = make(tiny, tmp_path, epochs=100, max_seconds=1e-9, patience=0).fit()
    assert r["stop_reason"] == "time_budget" and r["epochs_run"] == 1


def test_restore_gives_the_best_model(tiny, tmp_path):
    t = make(tiny, tmp_path, "r", epochs=2)
    r = t.fit()
    assert r["run_dir"] == str(tmp_path / "r")


@pytest.mark.parametrize("loss", ["bpr", "bce", "softmax", "ccl"])
def test_other_losses_train(tiny, tmp_path, loss):
    r = make(tiny, tmp_path, loss=loss, epochs=2, negatives=8 if loss == "ccl" else None).fit()
    assert np.isfinite(r["test"]["recall@20"])


def test_ssm_options_train(tiny, tmp_path):
    r = make(tiny, tmp_path, mask_duplicates=True, mask_seen=True, extra_negatives=32, negative_beta=0.5,
             logq=True, epochs=2).fit()
    assert r["test"]["recall@20"] > 0.05


def test_restore_requires_same_data(tiny, tmp_path, tiny_dir):
    cfg = TrainConfig.from_dict({**BASE, "dataset": str(tiny_dir), "epochs": 1})
    Trainer(cfg, run_dir=tmp_path / "run", echo=None).fit()
    r = restore(tmp_path / "run", device="cpu")
    assert r.epoch == 1
    (tiny_dir / "train.txt").write_text("0 1 2\n1 3\n")
    with pytest.raises(Exception, match="differs"):
        restore(tmp_path / "run", device="cpu")
