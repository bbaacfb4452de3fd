"""The device-resident step on CPU: the device sampler's negatives are exact and uniform, its
batches reproducible and resumable; fetching the loss every N steps changes nothing but when a
NaN or a signal is seen."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssmrec.data import DataError, DeviceSampler, Interactions, PairSampler, PopularityNegatives, synthetic
from ssmrec.experiments.grid import result_settings
from ssmrec.train import Interrupted, TrainConfig, Trainer, TrainingError

BASE = {"model": "lightgcn", "layers": 1, "loss": "ssm", "tau": 0.2, "dim": 16, "batch_size": 256,
        "epochs": 3, "progress": False, "ks": [10, 20], "lr": 0.01}


@pytest.fixture(scope="module")
def inter() -> Interactions:
    return synthetic(200, 80, per_user=(3, 40), seed=2)


@pytest.fixture(scope="module")
def small() -> Interactions:
    """12 items; user 0 has seen all but items 3 and 8, user 1 four items (not the last), user 2 one."""
    rows = {0: [i for i in range(12) if i not in (3, 8)], 1: [0, 5, 6, 10], 2: [7]}
    users = np.concatenate([np.full(len(v), u) for u, v in rows.items()])
    return Interactions.from_pairs(users, np.concatenate(list(rows.values())), 3, 12)


def same_batch(a, b) -> bool:
    fields = ("users", "items", "negatives", "shared", "dislike_users", "dislike_items")
    return a.index == b.index and a.global_size == b.global_size and all(
        (x is None and y is None) or torch.equal(x, y) for x, y in ((getattr(a, f), getattr(b, f)) for f in fields))


# ------------------------------------------------------------------------------------ the sampler
@pytest.mark.parametrize("rounds", [0, 2])
def test_negatives_never_hit_a_seen_item(inter, small, rounds):
    for data in (inter, small):
        s = DeviceSampler(data, 64, n_negatives=30, rounds=rounds)
        for batch in s.epoch(0):
            users = batch.users.unsqueeze(1).expand_as(batch.negatives)
            assert batch.negatives.dtype == torch.int64
            assert batch.negatives.min() >= 0 and batch.negatives.max() < data.n_items
            assert not data.contains(users.numpy().ravel(), batch.negatives.numpy().ravel()).any()
    # the user who has seen all but two items only ever gets those two
    neg = DeviceSampler(small, small.nnz, n_negatives=200, rounds=rounds).negatives(
        torch.zeros(50, dtype=torch.int64), torch.Generator().manual_seed(0))
    assert set(neg.unique().tolist()) == {3, 8}


@pytest.mark.parametrize("rounds", [0, 2])
def test_negatives_are_uniform_over_unseen_items(small, rounds):
    # E = 20,000 draws per unseen item of user 0, 2,000 of user 1; the standard deviation is about sqrt(E)
    s = DeviceSampler(small, small.nnz, n_negatives=4000, rounds=rounds)
    counts = {u: np.zeros(12, np.int64) for u in range(3)}
    for batch in s.epoch(0):  # one batch
        for u in range(3):
            counts[u] += np.bincount(batch.negatives[batch.users == u].ravel().numpy(), minlength=12)
    for u in range(3):
        seen = small.row(u)
        unseen = np.setdiff1d(np.arange(12), seen)
        assert counts[u][seen].sum() == 0
        expected = counts[u].sum() / unseen.size
        assert np.abs(counts[u][unseen] - expected).max() < 5 * np.sqrt(expected), (u, counts[u])


def test_refuses_a_user_who_saw_everything():
    full = Interactions.from_pairs(np.array([0, 0, 1]), np.array([0, 1, 0]), 2, 2)
    with pytest.raises(DataError, match="user 0 has interacted with every item"):
        DeviceSampler(full, 2, n_negatives=1)
    DeviceSampler(full, 2)  # no negatives asked for: fine


def test_same_seed_epoch_batch_same_batch(inter):
    kw = dict(n_negatives=5, n_shared=16)
    a = list(DeviceSampler(inter, 100, **kw).epoch(3))
    b = list(DeviceSampler(inter, 100, **kw).epoch(3))
    assert len(a) == len(DeviceSampler(inter, 100)) == -(-inter.nnz // 100)
    assert all(same_batch(x, y) for x, y in zip(a, b, strict=True))
    other_epoch = next(iter(DeviceSampler(inter, 100, **kw).epoch(4)))
    other_seed = next(iter(DeviceSampler(inter, 100, seed=1, **kw).epoch(3)))
    assert not torch.equal(a[0].users, other_epoch.users) and not torch.equal(a[0].negatives, other_seed.negatives)
    # every pair once per epoch
    keys = torch.cat([x.users * inter.n_items + x.items for x in a]).numpy()
    assert np.array_equal(np.sort(keys), inter.keys())


def test_start_gives_the_tail_of_the_epoch(inter):
    s = DeviceSampler(inter, 100, n_negatives=5, n_shared=8)
    whole = list(s.epoch(1))
    tail = list(s.epoch(1, start=7))
    assert [b.index for b in tail] == list(range(7, len(s)))
    assert all(same_batch(x, y) for x, y in zip(whole[7:], tail, strict=True))


def test_world_parts_make_the_global_batch(inter):
    s = DeviceSampler(inter, 101, n_negatives=3, n_shared=4)
    whole = list(s.epoch(0))
    parts = [list(s.epoch(0, rank=r, world=3)) for r in range(3)]
    for b, pieces in zip(whole, zip(*parts, strict=True), strict=True):
        assert torch.equal(torch.cat([p.users for p in pieces]), b.users)
        assert torch.equal(torch.cat([p.negatives for p in pieces]), b.negatives)
        assert all(torch.equal(p.shared, b.shared) and p.global_size == b.users.numel() for p in pieces)


def test_shared_negatives_follow_the_cdf(inter):
    # weights degree ** 1 with no smoothing: items never trained on have probability 0
    deg = inter.item_degree.copy()
    deg[:5] = 0
    pop = PopularityNegatives(deg, beta=1.0, smoothing=0.0)
    s = DeviceSampler(inter, 500, n_shared=20000, shared_sampler=pop)
    draws = torch.cat([b.shared for b in s.epoch(0)]).numpy()  # 9 batches x 20,000
    counts = np.bincount(draws, minlength=inter.n_items)
    assert counts[:5].sum() == 0 and counts[deg == 0].sum() == 0
    expected = draws.size * pop.prob
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected) + 1)


def test_dislikes_spread_like_the_host_sampler(inter):
    dislikes = synthetic(200, 80, per_user=(1, 4), seed=9)
    host = PairSampler(inter, 300, dislikes=dislikes)
    dev = DeviceSampler.like(host, "cpu")
    got = list(dev.epoch(0))
    # each batch gets the host sampler's share, every dislike once per epoch
    assert [b.dislike_users.numel() for b in got] == [b.dislike_users.numel() for b in host.epoch(0)]
    keys = torch.cat([b.dislike_users * 80 + b.dislike_items for b in got]).numpy()
    assert np.array_equal(np.sort(keys), dislikes.keys())


# ------------------------------------------------------------------------------------ the loop
def make(tiny, tmp_path, name="run", **kw) -> Trainer:
    return Trainer(TrainConfig.from_dict({**BASE, "dataset": "tiny", **kw}), tiny, run_dir=tmp_path / name, echo=None)


def outcome(t: Trainer, result: dict) -> tuple:
    return ({k: v.clone() for k, v in t.model.state_dict().items()}, [h["loss"] for h in t.history],
            [{k: v for k, v in h.items() if "@" in k} for h in t.history], result["test"])


def assert_same(a: tuple, b: tuple) -> None:
    assert a[0].keys() == b[0].keys() and all(torch.equal(a[0][k], b[0][k]) for k in a[0])
    assert a[1:] == b[1:]  # losses and metrics bit for bit


@pytest.mark.parametrize("sampler", ["host", "device"])
def test_sync_every_changes_nothing(tiny, tmp_path, sampler):
    runs = {}
    for every in (1, 7):
        t = make(tiny, tmp_path, f"{sampler}-{every}", sampler=sampler, sync_every=every)
        assert t.sync_every == every and t.sampler_kind == sampler
        runs[every] = outcome(t, t.fit())
    assert_same(runs[1], runs[7])


def test_auto_is_host_on_cpu(tiny, tmp_path):
    t = make(tiny, tmp_path)
    assert (t.sampler_kind, t.sync_every, type(t.sampler)) == ("host", 1, PairSampler)
    assert isinstance(make(tiny, tmp_path, "d", sampler="device").sampler, DeviceSampler)


@pytest.mark.parametrize("loss", ["ssm", "bpr"])
def test_device_sampler_trains(tiny, tmp_path, loss):
    t = make(tiny, tmp_path, sampler="device", sync_every=5, epochs=8, loss=loss,
             **({"extra_negatives": 32, "mask_seen": True} if loss == "ssm" else {"lr": 0.02}))
    untrained = t.evaluate(t.select_eval)["recall@20"]
    result = t.fit()
    assert result["test"]["recall@20"] > untrained + 0.05


def test_nan_is_reported_with_its_window(tiny, tmp_path, monkeypatch):
    t = make(tiny, tmp_path, sync_every=7, checkpoint_every=1e-9)  # a checkpoint at every fetch
    original = t.objective.__class__.__call__
    calls = {"n": 0}

    def poisoned(self, model, batch):
        calls["n"] += 1
        loss = original(self, model, batch)
        return loss * float("nan") if calls["n"] == 10 else loss  # batch 9, in the window 7-13

    monkeypatch.setattr(t.objective.__class__, "__call__", poisoned)
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 1, batch 9 \(found at the loss fetch "
                                            r"after batches 7-13 .*sync_every.*last good checkpoint is .*last\.pt"):
        t.fit()
    assert calls["n"] == 14  # the steps of the window were taken, none after it
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert saved["batch"] == 7 and all(torch.isfinite(v).all() for v in saved["model"].values())


def test_device_sampler_interrupt_and_resume_is_exact(tiny, tmp_path, monkeypatch):
    kw = dict(sampler="device", sync_every=3, epochs=2, loss="bpr", negatives=4)
    whole = make(tiny, tmp_path, "whole", **kw)
    expected = outcome(whole, whole.fit())

    t = make(tiny, tmp_path, "cut", **kw)
    original = t.objective.__class__.__call__
    calls, per_epoch = {"n": 0}, len(t.sampler)

    def flaky(self, model, batch):
        calls["n"] += 1
        if calls["n"] == per_epoch + 3:  # the third batch of epoch 2, between two fetches
            raise KeyboardInterrupt
        return original(self, model, batch)

    monkeypatch.setattr(t.objective.__class__, "__call__", flaky)
    with pytest.raises(Interrupted):
        t.fit()
    monkeypatch.undo()
    resumed = Trainer.resume(tmp_path / "cut", echo=None, dataset=tiny)
    assert (resumed.epoch, resumed.batch, resumed.partial["batches"]) == (1, 2, 2)
    assert_same(expected, outcome(resumed, resumed.fit()))


def test_resuming_on_another_stream_warns(tiny, tmp_path):
    make(tiny, tmp_path, epochs=1).fit()
    said = []
    Trainer.resume(tmp_path / "run", echo=said.append, overrides={"sampler": "device", "epochs": 2}, dataset=tiny)
    assert any("host sampler and resumes with the device:cpu sampler" in s for s in said)


# ------------------------------------------------------------------------------------ settings
def test_settings_are_validated():
    with pytest.raises(Exception, match="sampler must be one of auto, host, device, got 'gpu'"):
        TrainConfig(sampler="gpu")
    with pytest.raises(Exception, match="sync_every must be >= 1 step, or 0 for auto"):
        TrainConfig(sync_every=-1)


def test_cell_ids_keep_their_default_and_ignore_sync_every():
    base = result_settings(TrainConfig())
    assert "sampler" not in base and "sync_every" not in base  # earlier cells keep their ids
    assert result_settings(TrainConfig(sync_every=9)) == base
    assert result_settings(TrainConfig(sampler="device"))["sampler"] == "device"


def test_cli_flags():
    from ssmrec.cli import build_parser
    from ssmrec.cli.common import train_values

    args = build_parser().parse_args(["train", "--sampler", "device", "--sync-every", "5"])
    assert train_values(args) == {"sampler": "device", "sync_every": 5}
