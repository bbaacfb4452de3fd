"""Vectorised sweeps: K stacked members equal their solo runs over the same batch stream."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ssmrec.data.sampling import PairSampler
from ssmrec.errors import ConfigError
from ssmrec.eval.evaluator import Evaluator
from ssmrec.losses import default_negatives, kind_of
from ssmrec.sweeps.members import member_configs, parse_member
from ssmrec.sweeps.sweep import Sweep
from ssmrec.train import TrainConfig, Trainer
from ssmrec.train.restore import restore

BASE = {"dataset": "tiny", "dim": 16, "batch_size": 128, "lr": 0.01, "epochs": 8, "patience": 0,
        "ks": [10, 20], "progress": False, "seed": 7}
ATOL = 1e-5


def base_cfg(**kw) -> TrainConfig:
    return TrainConfig.from_dict({**BASE, **kw})


def stream(cfg: TrainConfig, train) -> PairSampler:
    """The batches and negatives of ``cfg.seed`` (as ``build_objective`` makes them)."""
    n_neg = (cfg.negatives or default_negatives(cfg.loss)) if kind_of(cfg.loss) == "sampled" else 0
    return PairSampler(train, cfg.batch_size, n_negatives=n_neg, seed=cfg.seed)


class LastParams:
    """Keeps a solo run's parameters at its last epoch (fit() then restores the best ones)."""

    def on_epoch_end(self, trainer, record):
        self.params = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def solo_run(cfg: TrainConfig, tiny, stream_cfg: TrainConfig):
    last = LastParams()
    t = Trainer(cfg, tiny, write=False, echo=None, callbacks=[last])
    t.sampler = stream(stream_cfg, tiny.train)  # the sweep's stream, not the member's seed's
    result = t.fit()
    return t, result, last.params


def assert_member_matches_solo(sweep: Sweep, j: int, solo: Trainer, result: dict, last: dict | None = None):
    m = sweep.members[j]
    assert [h["epoch"] for h in m.history] == [h["epoch"] for h in solo.history]
    np.testing.assert_allclose([h["loss"] for h in m.history], [h["loss"] for h in solo.history], rtol=1e-6, atol=1e-6)
    keys = [k for k in solo.history[-1] if "@" in k]
    assert keys
    for mine, theirs in zip(m.history, solo.history):
        for k in keys:
            assert mine[k] == pytest.approx(theirs[k], abs=1e-6), (j, mine["epoch"], k)
    assert m.stopper.best_epoch == solo.stopper.best_epoch
    assert m.stop_reason == result["stop_reason"]
    assert m.result["best_epoch"] == result["best_epoch"]
    for k in keys:
        assert m.result["test"][k] == pytest.approx(result["test"][k], abs=1e-6)
    best = m.best["model"]  # in memory: the sweep writes no files here
    for name, value in solo.model.state_dict().items():  # fit() left the solo model at its best epoch
        torch.testing.assert_close(best[name], value, atol=ATOL, rtol=0)
    if last is not None:
        pos = sweep.live.index(j)
        torch.testing.assert_close(sweep.model.user_emb.detach()[:, pos], last["user_emb"], atol=ATOL, rtol=0)
        torch.testing.assert_close(sweep.model.item_emb.detach()[:, pos], last["item_emb"], atol=ATOL, rtol=0)


def check_sweep(tiny, base: TrainConfig, members: list[dict]):
    sweep = Sweep(base, members, tiny, echo=None)
    cfgs = member_configs(base, members)
    for j, cfg in enumerate(cfgs):  # initialisation: exactly a solo model's
        init = Trainer(cfg, tiny, write=False, echo=None).model
        assert torch.equal(sweep.model.user_emb.detach()[:, j], init.user_emb.detach())
        assert torch.equal(sweep.model.item_emb.detach()[:, j], init.item_emb.detach())
    sweep.fit()
    assert len(sweep.members[0].history) == base.epochs
    steps = int(sweep.optimizer.state[sweep.model.user_emb]["step"])
    assert steps == base.epochs * len(sweep.sampler)
    for j, cfg in enumerate(cfgs):
        solo, result, last = solo_run(cfg, tiny, base)
        assert_member_matches_solo(sweep, j, solo, result, last)
    return sweep


GRID = {
    ("mf", "ssm"): ({}, [{"seed": 0}, {"seed": 1, "reg": 1e-3}, {"seed": 2, "tau": 0.3}]),
    ("mf", "bpr"): ({}, [{"seed": 0}, {"seed": 1, "reg": 1e-3}, {"seed": 2, "reg": 0.0}]),
    ("svdpp", "ssm"): ({"side": "user"}, [{"seed": 0}, {"seed": 1, "reg": 1e-3}, {"seed": 2, "tau": 0.3}]),
    ("svdpp", "bpr"): ({"side": "user"}, [{"seed": 0}, {"seed": 1, "reg": 1e-3}, {"seed": 2, "reg": 0.0}]),
    ("lightgcn", "ssm"): ({"layers": 2}, [{"seed": 0}, {"seed": 1, "reg": 1e-3, "layers": 1}, {"seed": 2, "tau": 0.3}]),
    ("lightgcn", "bpr"): ({"layers": 2}, [{"seed": 0}, {"seed": 1, "reg": 1e-3}, {"seed": 2, "layers": 0}]),
}


@pytest.mark.parametrize("model,loss", list(GRID), ids=[f"{m}-{lo}" for m, lo in GRID])
def test_sweep_equals_solo_runs(tiny, model, loss):
    extra, members = GRID[model, loss]
    sweep = check_sweep(tiny, base_cfg(model=model, loss=loss, **extra), members)
    assert int(sweep.optimizer.state[sweep.model.user_emb]["step"]) >= 250  # several hundred steps


@pytest.mark.parametrize("model,loss,extra,members", [
    ("lightgcn", "bce", {"layers": 1}, [{"seed": 0}, {"seed": 1, "reg": 1e-3}]),
    ("mf", "ccl", {"negatives": 16}, [{"seed": 0}, {"seed": 1, "margin": 0.5}, {"seed": 2, "neg_weight": 20.0}]),
    ("svdpp", "softmax", {"side": "item", "epochs": 4}, [{"seed": 0}, {"seed": 1, "tau": 0.5, "reg": 1e-3}]),
    ("mf", "ssm", {"mask_duplicates": True, "mask_seen": True, "extra_negatives": 32, "logq": True, "epochs": 4},
     [{"seed": 0}, {"seed": 1, "tau": 0.3}]),
], ids=["lightgcn-bce", "mf-ccl", "svdpp-item-softmax", "mf-ssm-masks-extra-logq"])
def test_sweep_other_losses_equal_solo_runs(tiny, model, loss, extra, members):
    base = base_cfg(model=model, loss=loss, **extra)
    if base.extra_negatives:  # the stream then has shared negatives too: build_objective's sampler
        from ssmrec.train.objective import build_objective

        sweep = Sweep(base, members, tiny, echo=None)
        sweep.fit()
        for j, over in enumerate(members):
            last = LastParams()
            t = Trainer(base.replace(over), tiny, write=False, echo=None, callbacks=[last])
            t.sampler = build_objective(base, tiny.train)[1]
            result = t.fit()
            assert_member_matches_solo(sweep, j, t, result, last.params)
    else:
        check_sweep(tiny, base, members)


@pytest.mark.parametrize("loss,extra", [
    ("bsl", {"loss_params": {"tau2": 0.8}}),
    ("psl", {"loss_params": {"activation": "atan"}}),
    ("clogq", {"mask_duplicates": True}),
])
def test_sweep_of_a_loss_after_the_study_equals_solo_runs(tiny, loss, extra):
    # each member's loss module carries its own temperature
    check_sweep(tiny, base_cfg(model="mf", loss=loss, epochs=3, **extra), [{"seed": 0}, {"seed": 1, "tau": 0.3}])


def test_members_may_set_their_losss_own_parameters(tiny, tiny_dir, tmp_path, capsys):
    base = base_cfg(model="mf", loss="bsl", epochs=3, loss_params={"tau2": 1.0})
    sweep = check_sweep(tiny, base, [{"seed": 0, "tau2": 0.8}, {"seed": 1, "tau2": "1.2"}])  # text from a flag
    assert [m.cfg.loss_params for m in sweep.members] == [{"tau2": 0.8}, {"tau2": 1.2}]
    from ssmrec.cli import main
    from ssmrec.sweeps.tuning import parse_grid

    assert parse_grid(["tau2=0.8,1.2", "reg=0,1e-4"], loss="bsl") == {"tau2": [0.8, 1.2], "reg": [0.0, 1e-4]}
    assert parse_grid(["activation=tanh,relu"], loss="psl") == {"activation": ["tanh", "relu"]}
    with pytest.raises(ConfigError, match="or the parameters of loss bsl: tau2, pool_positives"):
        parse_grid(["beta=1"], loss="bsl")
    out = tmp_path / "sw"
    assert main(["sweep", "--dataset", str(tiny_dir), "--model", "mf", "--loss", "bsl", "--dim", "8", "--epochs", "1",
                 "--member", "tau2=0.8", "--member", "tau2=1.2", "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "sweep.json").read_text())
    assert [m["overrides"] for m in summary["members"]] == [{"tau2": 0.8}, {"tau2": 1.2}]


@pytest.mark.parametrize("loss", ["adaptau", "slk"])
def test_sweep_refuses_losses_with_per_user_state(tiny, loss):
    with pytest.raises(ConfigError, match=f"loss {loss} keeps per-user state"):
        Sweep(base_cfg(model="mf", loss=loss), [{"seed": 0}, {"seed": 1}], tiny, echo=None)


@pytest.mark.parametrize("kind", ["sampled", "in_batch"])
def test_registered_loss_sweep_equals_solo_runs(tiny, kind):
    """A loss added with register_loss: representations shared, the loss called per member."""
    from ssmrec.losses import register_loss, unregister_loss

    @register_loss("sweephinge", kind=kind, params={"margin": 0.5})
    class Hinge(torch.nn.Module):
        def __init__(self, margin=0.5):
            super().__init__()
            self.margin = margin

        def forward(self, u, pos, neg=None, **extras):
            if neg is None:  # in-batch: the other positives are the negatives
                scores = u @ pos.T
                return (self.margin - scores.diag().unsqueeze(1) + scores).clamp(min=0).mean()
            return (self.margin - (u * pos).sum(-1, keepdim=True) + (u.unsqueeze(1) * neg).sum(-1)).clamp(min=0).mean()

    try:
        base = base_cfg(model="lightgcn", layers=1, loss="sweephinge", epochs=3)
        check_sweep(tiny, base, [{"seed": 0}, {"seed": 1, "reg": 1e-3}])
    finally:
        unregister_loss("sweephinge")


def test_stopped_members_are_dropped_and_survivors_match(tiny):
    """patience 2: member 1 (heavy L2) stops at epoch 4, member 2 at 8, member 0 at 9; the stacked
    tables and Adam's state shrink each time and the others go on exactly as alone."""
    base = base_cfg(model="mf", loss="bpr", epochs=12, patience=2)
    members = [{"seed": 0}, {"seed": 1, "reg": 3.0}, {"seed": 2, "reg": 1e-3}]
    sweep = Sweep(base, members, tiny, echo=None)
    shapes = []
    orig = sweep._drop

    def spy(gone):
        orig(gone)
        if gone and sweep.live:
            state = sweep.optimizer.state[sweep.model.user_emb]
            shapes.append((list(sweep.live), tuple(sweep.model.user_emb.shape), tuple(state["exp_avg"].shape),
                           int(state["step"])))

    sweep._drop = spy
    sweep.fit()
    stops = {j: sweep.members[j].epochs_run for j in range(3)}
    assert stops[1] < stops[2] < stops[0] <= base.epochs  # they stopped one after another
    assert all(m.stop_reason == "early_stopped" for m in sweep.members)
    n = tiny.train.n_users
    assert shapes[0][:3] == ([0, 2], (n, 2, 16), (n, 2, 16))
    assert shapes[0][3] == stops[1] * len(sweep.sampler)
    assert shapes[1][:3] == ([0], (n, 1, 16), (n, 1, 16))
    for j, over in enumerate(members):
        solo, result, _ = solo_run(base.replace(over), tiny, base)
        assert_member_matches_solo(sweep, j, solo, result)


def test_diverged_member_is_dropped_others_go_on(tiny):
    base = base_cfg(model="mf", loss="bpr", epochs=3)
    members = [{"seed": 0}, {"seed": 1}]
    sweep = Sweep(base, members, tiny, echo=None)
    orig = sweep.step
    calls = []

    def poison(batch):
        calls.append(1)
        if len(calls) == 40:  # epoch 2: member 1's tables become NaN
            with torch.no_grad():
                sweep.model.user_emb[:, 1] = float("nan")
        return orig(batch)

    sweep.step = poison
    results = sweep.fit()
    assert sweep.members[1].stop_reason == "diverged" and "nan" in sweep.members[1].error
    assert results[1]["best_epoch"] == 1 and sweep.members[1].epochs_run == 1
    assert sweep.live == [0] and sweep.model.user_emb.shape[1] == 1
    solo, result, last = solo_run(base.replace(members[0]), tiny, base)
    assert_member_matches_solo(sweep, 0, solo, result, last)


def test_member_run_directories_read_as_runs(tiny, tiny_dir, tmp_path, capsys):
    from ssmrec.api import Recommender
    from ssmrec.cli import main

    base = base_cfg(dataset=str(tiny_dir), model="lightgcn", layers=2, loss="ssm", epochs=3)
    members = [{"seed": 0}, {"seed": 1, "layers": 1, "tau": 0.3}]
    out = tmp_path / "sweep"
    sweep = Sweep(base, members, run_dir=out, echo=None)
    results = sweep.fit()
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["status"] == "finished" and summary["stream_seed"] == 7
    assert [m["overrides"] for m in summary["members"]] == members
    for j, result in enumerate(results):
        d = out / f"member-{j}"
        for f in ("config.json", "history.jsonl", "metrics.json", "best.pt", "export/manifest.json"):
            assert (d / f).is_file(), f
        cfg = json.loads((d / "config.json").read_text())
        assert cfg["sweep"]["stream_seed"] == 7 and cfg["config"]["seed"] == members[j]["seed"]
        metrics = json.loads((d / "metrics.json").read_text())
        assert metrics["best_epoch"] == result["best_epoch"] and metrics["test"] == result["test"]
        hist = [json.loads(line) for line in (d / "history.jsonl").read_text().splitlines()]
        assert [h["epoch"] for h in hist] == [1, 2, 3]
        # the best checkpoint loads into a solo model and evaluates to the recorded metric
        r = restore(d, device="cpu")
        assert r.cfg.layers == (members[j].get("layers", 2)) and r.epoch == result["best_epoch"]
        ev = Evaluator(r.data.test, [r.data.train], ks=(10, 20))
        again = ev.evaluate_model(r.model)
        for k, v in metrics["test"].items():
            assert again[k] == pytest.approx(v, abs=1e-6)
        assert main(["evaluate", str(d)]) == 0
        assert f"{metrics['test']['recall@20']:.6f}" in capsys.readouterr().out
        rec = Recommender.from_run(d)
        assert rec.user_factors.shape == (tiny.n_users, 16)


def test_refused_overrides():
    base = base_cfg(model="mf", loss="bpr")
    for bad in ({"batch_size": 64}, {"lr": 0.1}, {"loss": "ssm"}, {"model": "lightgcn"}, {"dim": 8},
                {"negatives": 4}, {"epochs": 3}):
        with pytest.raises(ConfigError, match="cannot differ between members"):
            member_configs(base, [{"seed": 0}, bad])
    with pytest.raises(ConfigError, match="layers is not used by mf"):
        member_configs(base, [{"layers": 2}])
    with pytest.raises(ConfigError, match="tau is not used by mf \\+ bpr"):
        member_configs(base, [{"tau": 0.2}])
    with pytest.raises(ConfigError, match="unknown setting 'sed'"):
        member_configs(base, [{"sed": 1}])
    with pytest.raises(ConfigError, match="reg must be"):
        member_configs(base, [{"reg": -1.0}])
    with pytest.raises(ConfigError, match="at least one member"):
        member_configs(base, [])
    with pytest.raises(ConfigError, match="one process"):
        member_configs(base.replace({"nproc": 2}), [{}])
    svdpp = base_cfg(model="svdpp", loss="ssm")
    assert len(member_configs(svdpp, [{"a0": 1.0}, {"a0": 1.0, "tau": 0.2}])) == 2
    with pytest.raises(ConfigError, match="a0 and a1 must be equal across members"):
        member_configs(svdpp, [{"a0": 1.0}, {"a0": 0.5}])


def test_parse_member():
    assert parse_member("seed=3") == {"seed": 3}
    assert parse_member("reg=1e-4, tau=0.2") == {"reg": 1e-4, "tau": 0.2}
    assert parse_member("neg-weight=20") == {"neg_weight": 20.0}
    assert parse_member("") == {}
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        parse_member("reg")


def test_cli_sweep(tiny_dir, tmp_path, capsys):
    from ssmrec.cli import main

    base = tmp_path / "base.toml"
    base.write_text(f'dataset = "{tiny_dir}"\nmodel = "mf"\nloss = "ssm"\ndim = 8\nbatch_size = 256\n'
                    'epochs = 2\nprogress = false\nlr = 0.01\n\n'
                    '[sweep]\nmembers = [{seed = 0}, {seed = 1, reg = 1e-4}]\n')
    out = tmp_path / "sw"
    assert main(["sweep", "--config", str(base), "--member", "tau=0.2,reg=0", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.count("epoch    2  member") == 3
    assert "best epoch" in text and "tau=0.2, reg=0" in text and "seed=1, reg=0.0001" in text
    summary = json.loads((out / "sweep.json").read_text())
    assert [m["overrides"] for m in summary["members"]] == [{"seed": 0}, {"seed": 1, "reg": 1e-4},
                                                            {"tau": 0.2, "reg": 0.0}]
    assert all(m["stop_reason"] == "max_epochs" for m in summary["members"])
    # refused before any work, one line, exit code 2
    assert main(["sweep", "--config", str(base), "--member", "lr=0.1", "--out", str(tmp_path / "x")]) == 2
    assert "lr cannot differ between members" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert main(["sweep", "--config", str(base), "--out", str(out)]) == 2  # never over a run
    assert "already holds" in capsys.readouterr().err
