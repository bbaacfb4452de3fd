"""The losses after the study, wired in: every one trains from the command line and the API,
stateful ones resume exactly, explicit feedback (positives and dislikes) from a rated file, the
dislike@K metric, and the leaderboard pages rendered from records."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ssmrec.cli import main
from ssmrec.data import DataConfig, load_dataset
from ssmrec.data.sampling import PairSampler
from ssmrec.errors import ConfigError, DataError
from ssmrec.eval.evaluator import Evaluator
from ssmrec.losses import BEYOND, build_loss, canonical, kind_of
from ssmrec.train import Interrupted, TrainConfig, Trainer

BASE = {"model": "mf", "dim": 16, "batch_size": 256, "epochs": 3, "progress": False, "ks": [10, 20],
        "lr": 0.01, "tau": 0.2}


def params(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


# ----------------------------------------------------------------------------- registry
def test_every_new_loss_is_built_in_with_its_parameters():
    assert set(BEYOND) == {"bsl", "psl", "adaptau", "slk", "clogq", "ntr"}
    for alias, name in [("adap-tau", "adaptau"), ("SL@K", "slk"), ("corrected-logq", "clogq")]:
        assert canonical(alias) == name
    for name in BEYOND:
        assert kind_of(name) == "in_batch"
    assert build_loss("bsl", tau=0.3, params={"tau2": 0.5}).tau2 == 0.5
    assert build_loss("psl", params={"activation": "atan"}).activation == "atan"
    with pytest.raises(ConfigError, match="loss_params loss 'bsl' has no parameter beta"):
        TrainConfig(loss="bsl", loss_params={"beta": 1.0})


@pytest.mark.parametrize("loss,extra", [
    ("bsl", {"loss_params": {"tau2": 0.8}}),
    ("psl", {"loss_params": {"activation": "relu"}, "tau": 0.05}),
    ("adaptau", {"loss_params": {"beta": 1.0, "warmup": 1}}),
    # tau_w 3: at the authors' 1.0 the weight's own gradient (it lowers the positive's score to shrink
    # its weight) stalls MF on this small data at this learning rate (recall@20 0.09 after 10 epochs)
    ("slk", {"loss_params": {"refresh_every": 1, "n_samples": 50, "k": 10, "tau_w": 3.0}, "tau": 0.1}),
    ("clogq", {"mask_duplicates": True}),
    ("ssm", {"extra_negatives": 32, "negative_beta": 0.5, "logq": True}),
])
def test_each_new_loss_trains_and_learns(tiny, loss, extra):
    cfg = TrainConfig.from_dict({**BASE, "dataset": "tiny", "loss": loss, "epochs": 10, **extra})
    r = Trainer(cfg, tiny, write=False, echo=None).fit()
    # random ranking of 200 items gives recall@20 ~ 0.1; every loss learns the synthetic structure
    assert r["test"]["recall@20"] > 0.15, (loss, r["test"])


@pytest.mark.parametrize("loss,extra", [
    ("adaptau", {"loss_params": {"beta": 1.0, "warmup": 1}}),
    ("slk", {"loss_params": {"refresh_every": 1, "n_samples": 50, "k": 10}}),
])
@pytest.mark.parametrize("cut,where", [(2, (2, 1)), (1, (2, 0))], ids=["inside-epoch-3", "before-its-first-batch"])
def test_stateful_losses_resume_exactly_from_a_mid_epoch_checkpoint(tiny, tmp_path, monkeypatch, loss, extra, cut,
                                                                     where):
    def make(name, **kw):
        cfg = TrainConfig.from_dict({**BASE, "dataset": "tiny", "loss": loss, **extra, **kw})
        return Trainer(cfg, tiny, run_dir=tmp_path / name, echo=None)

    whole = make("whole")
    whole.fit()
    t = make("cut")
    calls = {"n": 0}
    original = t.objective.__class__.__call__
    per_epoch = len(t.sampler)

    def flaky(self, model, batch):
        calls["n"] += 1
        # epoch 3 after its refresh: at its second batch, or at its first (nothing stepped yet)
        if calls["n"] == 2 * per_epoch + cut:
            raise KeyboardInterrupt
        return original(self, model, batch)

    monkeypatch.setattr(t.objective.__class__, "__call__", flaky)
    with pytest.raises(Interrupted):
        t.fit()
    monkeypatch.undo()
    resumed = Trainer.resume(tmp_path / "cut", echo=None, dataset=tiny)
    assert (resumed.epoch, resumed.batch) == where
    resumed.fit()
    for k, v in params(whole).items():
        assert torch.equal(v, params(resumed)[k]), k
    for k, v in whole.objective.loss.state_dict().items():
        assert torch.equal(v, resumed.objective.loss.state_dict()[k]), k
    assert [h["loss"] for h in whole.history] == pytest.approx([h["loss"] for h in resumed.history], abs=0)


# ----------------------------------------------------------------------------- explicit feedback
def test_positives_and_dislikes_are_read_and_split_alike(rated_file):
    ds = load_dataset(DataConfig(dataset=str(rated_file), positive_min=4, negative_max=2, ratios=(0.8, 0.0, 0.2)))
    ratings = {}
    for line in rated_file.read_text().splitlines()[1:]:
        u, i, r, _ = line.split("\t")
        ratings[(int(u), int(i))] = int(r)
    for role, part in [("train", ds.train), ("test", ds.test)]:
        users, items = part.pairs()
        got = {ratings[(int(part.raw_users(np.array([u]))[0]), int(part.raw_items(np.array([i]))[0]))]
               for u, i in zip(users, items)}
        assert got <= {4, 5}, role
        d = ds.dislikes[role]
        users, items = d.pairs()
        got = {ratings[(int(d.raw_users(np.array([u]))[0]), int(d.raw_items(np.array([i]))[0]))]
               for u, i in zip(users, items)}
        assert got <= {1, 2}, role
    n_pos = ds.train.nnz + ds.test.nnz
    n_dis = ds.dislikes["train"].nnz + ds.dislikes["test"].nnz
    assert ds.test.nnz / n_pos == pytest.approx(0.2, abs=0.05)
    assert ds.dislikes["test"].nnz / n_dis == pytest.approx(0.2, abs=0.05)
    assert set(ds.describe()) >= {"train_dislikes", "test_dislikes"}


@pytest.mark.parametrize("settings,message", [
    ({"positive_min": 4}, "negative_max must be given too"),
    ({"negative_max": 2}, "positive_min must be given too"),
    ({"positive_min": 3, "negative_max": 3}, "negative_max must be below positive_min"),
    ({"positive_min": 4, "negative_max": 2, "min_rating": 4}, "min_rating cannot be combined"),
])
def test_explicit_feedback_settings_are_checked(settings, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(dataset="x.tsv", **settings)


def test_explicit_feedback_needs_ratings(tmp_path):
    p = tmp_path / "pairs.tsv"
    p.write_text("user\titem\n" + "\n".join(f"{u}\t{i}" for u in range(5) for i in range(4)) + "\n")
    with pytest.raises(DataError, match=r"pairs.tsv: positive_min / negative_max given but the data has no rating"):
        load_dataset(DataConfig(dataset=str(p), positive_min=4, negative_max=2))


def test_ntr_needs_dislikes(tiny):
    with pytest.raises(ConfigError, match="loss ntr learns from explicit negatives.*--positive-min"):
        Trainer(TrainConfig.from_dict({**BASE, "dataset": "tiny", "loss": "ntr"}), tiny, write=False, echo=None)


def test_every_dislike_is_in_one_batch_per_epoch(rated_file):
    ds = load_dataset(DataConfig(dataset=str(rated_file), positive_min=4, negative_max=2))
    sampler = PairSampler(ds.train, 64, dislikes=ds.dislikes["train"], seed=3)
    for epoch in (0, 1):
        seen = []
        for batch in sampler.epoch(epoch):
            seen += list(zip(batch.dislike_users.tolist(), batch.dislike_items.tolist()))
        u, i = ds.dislikes["train"].pairs()
        assert sorted(seen) == sorted(zip(u.tolist(), i.tolist()))
    # resuming at batch 3 gives the same dislikes as the full epoch's batches 3...
    full = [b.dislike_items.tolist() for b in sampler.epoch(1)][3:]
    assert [b.dislike_items.tolist() for b in sampler.epoch(1, start=3)] == full


def test_dislike_rate_matches_a_naive_loop(rated_file):
    ds = load_dataset(DataConfig(dataset=str(rated_file), positive_min=4, negative_max=2))
    g = torch.Generator().manual_seed(0)
    u, i = torch.randn(ds.n_users, 8, generator=g), torch.randn(ds.n_items, 8, generator=g)
    known = [ds.train, ds.dislikes["train"]]
    ev = Evaluator(ds.test, known, ks=(5, 10), dislikes=ds.dislikes["test"], chunk_size=17)
    got = ev.evaluate(u, i)
    scores = (u @ i.T).numpy()
    for k in (5, 10):
        shares = []
        for user in range(ds.n_users):
            if not len(ds.test.row(user)) or not len(ds.dislikes["test"].row(user)):
                continue
            s = scores[user].copy()
            for part in known:
                s[part.row(user)] = -np.inf
            top = set(np.argsort(-s, kind="stable")[:k].tolist())
            held = set(ds.dislikes["test"].row(user).tolist())
            shares.append(len(top & held) / len(held))
        assert got[f"dislike@{k}"] == pytest.approx(np.mean(shares), abs=1e-12)


def test_ntr_pushes_training_dislikes_down_and_is_ssm_at_weight_zero(rated_file):
    def fit(loss, **params):
        cfg = TrainConfig.from_dict({**BASE, "dataset": str(rated_file), "positive_min": 4, "negative_max": 2,
                                     "loss": loss, "loss_params": params, "epochs": 8})
        t = Trainer(cfg, write=False, echo=None)
        return t, t.fit()

    ssm, r_ssm = fit("ssm")
    zero, r_zero = fit("ntr", weight=0.0)
    for k, v in params(ssm).items():  # the NTR term with weight 0 changes nothing
        assert torch.equal(v, params(zero)[k]), k
    assert r_zero["test"] == r_ssm["test"]
    ntr, _ = fit("ntr", weight=50.0)

    def dislike_margin(t):  # mean cosine of (user, training dislike) minus that of (user, training positive)
        with torch.no_grad():
            u, i = (torch.nn.functional.normalize(x, dim=-1) for x in t.model())
        du, di = t.data.dislikes["train"].pairs()
        pu, pi = t.data.train.pairs()
        return float((u[du] * i[di]).sum(-1).mean() - (u[pu] * i[pi]).sum(-1).mean())

    assert dislike_margin(ntr) < dislike_margin(ssm) - 0.05


def test_ntr_from_the_command_line(rated_file, tmp_path):
    code = main(["train", "--dataset", str(rated_file), "--positive-min", "4", "--negative-max", "2", "--model", "mf",
                 "--dim", "8", "--loss", "ntr", "--loss-param", "weight=20", "--epochs", "2", "--k", "10",
                 "--no-progress", "--out", str(tmp_path / "ntr")])
    assert code == 0
    test = json.loads((tmp_path / "ntr" / "metrics.json").read_text())["test"]
    assert {"recall@10", "dislike@10"} <= set(test)


# ----------------------------------------------------------------------------- the pages
def _record(tmp_path, experiment, cell, settings, recall, seed=0, profile=None, seconds=1.0, dislike=None):
    test = {"recall@20": recall, "ndcg@20": recall / 2}
    if dislike is not None:
        test["dislike@20"] = dislike
    data = {"version": 1, "experiment": experiment, "cell": cell,
            "settings": {"seed": seed, **settings},
            "metrics": {"protocol": "paper", "metric": "recall@20", "best_epoch": 5, "epochs_run": 10,
                        "stop_reason": "early_stopped", "test": test, "valid": None, "train_seconds": 10.0,
                        "seconds_per_epoch": seconds},
            "history": [{"epoch": 5, "recall@20": recall}], "env": {"cpu": "x", "threads": 1},
            "profile": profile or {"recall": recall, "group_recall": [recall / 10] * 10, "coverage": 0.5}}
    p = tmp_path / "records" / experiment / f"{cell}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data))


def test_leaderboard_and_which_loss_pages(tmp_path):
    from ssmrec.experiments.leaderboard import leaderboard_section, ntr_section, which_loss
    from ssmrec.experiments.records import load_records

    base = {"dataset": "gowalla", "model": "lightgcn"}
    for seed, (a, b) in enumerate([(0.18, 0.17), (0.19, 0.17), (0.20, 0.18)]):
        _record(tmp_path, "leaderboard", f"ssm-t1-s{seed}-aaaa0001", {**base, "loss": "ssm", "tau": 0.1}, a, seed)
        _record(tmp_path, "leaderboard", f"ssm-t2-s{seed}-aaaa0002", {**base, "loss": "ssm", "tau": 0.2}, b, seed)
        _record(tmp_path, "leaderboard", f"bsl-s{seed}-aaaa0003",
                {**base, "loss": "bsl", "tau": 0.1, "loss_params": {"tau2": 0.8}}, 0.192, seed, seconds=2.0)
    records = load_records(tmp_path / "records")
    lines = "\n".join(leaderboard_section(records))
    assert "| SSM | 0.1900 ± 0.0100 / 0.0950 (n=3) | 0.1869 / 0.1571 |" in lines
    assert "tau 0.1 (of 0.1, 0.2)" in lines
    assert "| BSL | 0.1920 ± 0.0000 / 0.0960 (n=3) | 0.1893 / 0.1591 |" in lines
    assert "**BSL**, Recall@20 0.1920; it reaches" in lines
    page = "\n".join(which_loss(records))
    # sensitivity of SSM: configurations' means 0.19 and 0.1733 -> (0.19 - 0.1733) / 0.19 = 8.8%
    assert "| SSM | 0.1900 | — | 50.0% | 50.0% | 1.0 (x (1 thr)) | 8.8% (2) |" in page
    assert "| BSL | 0.1920 | +1.1% |" in page
    assert "most accurate **BSL** (0.1920); within 2% of it and cheapest per epoch on the same machine: **SSM**" in page
    # a collapsed loss has a flat, "fair" list: its long-tail share is not a reason to use it
    collapsed = {"recall": 0.04, "group_recall": [0.008] * 5 + [0.0] * 5, "coverage": 0.6}
    _record(tmp_path, "leaderboard", "slk-s0-aaaa0004", {**base, "loss": "slk", "tau": 0.1}, 0.04, 0, collapsed)
    page = "\n".join(which_loss(load_records(tmp_path / "records")))
    assert "largest long-tail share among those within 10% of the most accurate: **SSM** (50.0%)" in page

    for seed in range(3):
        _record(tmp_path, "ntr", f"ml-ssm-s{seed}-bbbb0001", {"dataset": "ml.tsv", "model": "mf", "loss": "ssm"},
                0.30 + seed / 100, seed, dislike=0.10 + seed / 1000)
        _record(tmp_path, "ntr", f"ml-ntr-s{seed}-bbbb0002",
                {"dataset": "ml.tsv", "model": "mf", "loss": "ntr", "loss_params": {"weight": 20.0}},
                0.29 + seed / 100, seed, dislike=0.05 + seed / 1000)
    ntr = [r for r in load_records(tmp_path / "records") if r.data["experiment"] == "ntr"]
    text = "\n".join(ntr_section(ntr))
    assert "| mf | SSM + NTR (weight 20) | 3 | 0.3000 ± 0.0100" in text
    assert "- mf, dislike@20: SSM + NTR (weight 20) vs SSM, paired t-test over seeds over 3 seeds: p = 0" in text


def test_only_takes_a_glob(tmp_path):
    from ssmrec.experiments.runner import matches

    assert matches("gowalla-mf-bsl-s0-1234abcd", "gowalla-mf-*-s0-*")
    assert not matches("gowalla-mf-bsl-s1-1234abcd", "gowalla-mf-*-s0-*")
    assert matches("gowalla-mf-bsl-s1-1234abcd", "mf-bsl")


def test_explicit_feedback_from_a_dataframe_through_the_api(rated_file):
    import pandas as pd

    from ssmrec import Recommender

    frame = pd.read_csv(rated_file, sep="\t")
    rec = Recommender(model="mf", dim=8, loss="ntr", loss_params={"weight": 10.0}, positive_min=4, negative_max=2,
                      epochs=2, ks=[10]).fit(frame, rating_col="rating")
    assert "dislike@10" in rec.result["test"]
    ids, scores = rec.recommend([str(frame.user[0])], k=5)
    assert ids.shape == (1, 5) and np.all(np.diff(scores[0]) <= 0)


def test_known_dislikes_are_never_recommended(rated_file):
    from ssmrec.train.export import excluded

    for protocol in ("paper", "holdout"):
        ds = load_dataset(DataConfig(dataset=str(rated_file), positive_min=4, negative_max=2), protocol)
        seen = excluded(ds)
        for role in ("train", "valid"):
            if role in ds.dislikes:
                u, i = ds.dislikes[role].pairs()
                assert seen.contains(u, i).all(), (protocol, role)
        u, i = ds.dislikes["test"].pairs()
        assert not seen.contains(u, i).any()  # held-out dislikes stay rankable: dislike@K counts them


# ----------------------------------------------------------------------------- per-row sampled negatives
def test_ssm_with_per_row_negatives_matches_a_naive_loop():
    from ssmrec.losses import SampledSoftmaxLoss

    g = torch.Generator().manual_seed(0)
    u, p, n = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((4, 5), (4, 5), (4, 3, 5)))
    ids, neg_ids = torch.tensor([1, 2, 3, 4]), torch.tensor([[5, 1, 6], [2, 7, 8], [9, 9, 9], [4, 4, 0]])
    for sim in ("cos", "ip"):
        for mask in (False, True):
            got = SampledSoftmaxLoss(0.5, sim, mask_duplicates=mask)(
                u, p, item_ids=ids, row_negatives=n, row_negative_ids=neg_ids)
            total = 0.0
            for b in range(4):
                def f(x, row=u[b], cos=sim == "cos"):
                    a = row / row.norm() if cos else row
                    y = x / x.norm() if cos else x
                    return float(a @ y) / 0.5
                terms = [f(p[b])] + [f(n[b, j]) for j in range(3) if not (mask and neg_ids[b, j] == ids[b])]
                total += -(terms[0] - math.log(sum(math.exp(t) for t in terms)))
            assert float(got) == pytest.approx(total / 4, abs=1e-10), (sim, mask)
    # hand value: ip, tau 1, one row: positive score 2, negatives 0 and 1 -> -log(e^2 / (e^2 + 1 + e))
    one = SampledSoftmaxLoss(1.0, "ip")(torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]]),
                                        row_negatives=torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]))
    assert float(one) == pytest.approx(-math.log(math.e ** 2 / (math.e ** 2 + 1 + math.e)), abs=1e-6)
    u.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: SampledSoftmaxLoss(0.5)(x, p, row_negatives=n), (u,))


def test_per_row_negatives_reach_every_in_batch_loss_and_train(tiny):
    ssm, bsl = build_loss("ssm", tau=0.2), build_loss("bsl", tau=0.2, params={"tau2": 1.0})
    g = torch.Generator().manual_seed(1)
    u, p, n = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((3, 4), (3, 4), (3, 5, 4)))
    # BSL with tau2 = 1 and its positive out of the sum, SSM with it in: ssm_b = softplus(bsl_b) (each row)
    rows_ssm = torch.nn.functional.softplus(bsl.row_losses(u, p, row_negatives=n))
    assert float(rows_ssm.mean()) == pytest.approx(float(ssm(u, p, row_negatives=n)), abs=1e-10)
    for name in ("psl", "adaptau", "slk"):
        assert torch.isfinite(build_loss(name, tau=0.2)(u, p, row_negatives=n))
    for name in ("clogq", "ntr"):
        with pytest.raises(ValueError, match="per-row sampled negatives"):
            build_loss(name, tau=0.2)(u, p, row_negatives=n, logq=torch.zeros(3))
    in_batch = Trainer(TrainConfig.from_dict({**BASE, "dataset": "tiny", "loss": "ssm", "epochs": 6}), tiny,
                       write=False, echo=None).fit()
    sampled = Trainer(TrainConfig.from_dict({**BASE, "dataset": "tiny", "loss": "ssm", "epochs": 6, "negatives": 50}),
                      tiny, write=False, echo=None).fit()
    assert sampled["test"]["recall@20"] > 0.15 and sampled["test"] != in_batch["test"]


def test_per_row_negatives_settings_and_cell_ids():
    from ssmrec.experiments.grid import result_settings

    for clash, message in [({"extra_negatives": 8}, "extra_negatives"), ({"logq": True}, "logq"),
                           ({"mask_seen": True}, "mask_seen")]:
        with pytest.raises(ConfigError, match=f"negatives with loss ssm means 50 sampled negatives.*{message}"):
            TrainConfig(loss="ssm", negatives=50, **clash)
    # in-batch cells keep their ids: no negatives setting in their key, as before
    assert "negatives" not in result_settings(TrainConfig(loss="ssm"))
    assert result_settings(TrainConfig(loss="ssm", negatives=50))["negatives"] == 50
    assert result_settings(TrainConfig(loss="bpr"))["negatives"] == 1


def test_a_grids_records_are_found_by_hash_longest_run_first(tmp_path):
    from ssmrec.experiments.grid import load_grid
    from ssmrec.experiments.leaderboard import grid_records
    from ssmrec.experiments.records import load_records

    grid = tmp_path / "g.toml"
    grid.write_text('name = "lb"\n[base]\ndataset = "gowalla"\nmodel = "mf"\n[[cell]]\nloss = ["ssm", "bpr"]\n')
    ssm, bpr = load_grid(grid).cells
    _record(tmp_path, "table3", ssm.id, {"loss": "ssm"}, 0.10)  # shared from another grid
    short, long = (tmp_path / "records" / g / f"{bpr.id}.json" for g in ("table3", "l2"))
    _record(tmp_path, "table3", bpr.id, {"loss": "bpr"}, 0.11)
    _record(tmp_path, "l2", bpr.id, {"loss": "bpr"}, 0.12)
    data = json.loads(long.read_text())
    data["metrics"]["epochs_run"] = 400  # the run continued with --extend
    long.write_text(json.dumps(data))
    _record(tmp_path, "other", "gowalla-mf-ssm-s0-ffffffff", {"loss": "ssm"}, 0.5)  # not a cell of the grid
    found = grid_records(load_records(tmp_path / "records"), grid, "lb")
    assert sorted(r.test() for r in found) == [0.10, 0.12]
    assert short.exists()


def test_report_headlines_from_the_leaderboard_and_ntr(tmp_path):
    from ssmrec.experiments.leaderboard import headlines
    from ssmrec.experiments.records import load_records

    base = {"dataset": "gowalla", "model": "mf"}
    for loss, recall in (("bpr", 0.15), ("ssm", 0.12), ("clogq", 0.17)):
        _record(tmp_path, "leaderboard", f"gowalla-mf-{loss}-s0-aaaa00{len(loss)}", {**base, "loss": loss}, recall)
    for seed in range(3):
        _record(tmp_path, "ntr", f"ml-mf-ssm-s{seed}-bbbb0001", {"dataset": "ml", "model": "mf", "loss": "ssm"},
                0.1, seed, dislike=0.05 + seed / 1000)
        _record(tmp_path, "ntr", f"ml-mf-ntr-s{seed}-bbbb0002",
                {"dataset": "ml", "model": "mf", "loss": "ntr", "loss_params": {"weight": 100.0}}, 0.1, seed,
                dislike=0.04 + seed / 1000)
    rs = load_records(tmp_path / "records")
    lines = headlines([r for r in rs if r.data["experiment"] == "leaderboard"],
                      [r for r in rs if r.data["experiment"] == "ntr"])
    assert "gowalla mf: SSM + corrected logQ 0.1700, +41.7% over SSM (of 3 losses run)" in lines[0]
    assert "mf SSM + NTR (weight 100): dislike@20 0.0510 → 0.0410 (-20%, p = 0)" in lines[1]


def test_leaderboard_arms_never_mix_setups(tmp_path):
    from ssmrec.experiments.leaderboard import arms, leaderboard_section
    from ssmrec.experiments.records import load_records

    base = {"dataset": "gowalla", "model": "lightgcn", "loss": "adaptau", "extra_negatives": 0}
    _record(tmp_path, "leaderboard", "a-s0-aaaa0001", {**base, "layers": 1}, 0.18)
    _record(tmp_path, "leaderboard", "a-s0-aaaa0002", {**base, "layers": 3}, 0.19)
    _record(tmp_path, "leaderboard", "b-s0-aaaa0003", {**base, "model": "mf", "loss": "bsl", "negatives": 800}, 0.18)
    found = arms(load_records(tmp_path / "records"))
    assert set(found) == {("gowalla", "lightgcn", "adaptau"), ("gowalla", "lightgcn (3 layers)", "adaptau"),
                          ("gowalla", "mf (800 negatives per positive)", "bsl")}
    text = "\n".join(leaderboard_section(load_records(tmp_path / "records")))
    assert "| LightGCN (3 layers) | Adap-τ | 0.1900 / 0.0950 (n=1) | 0.1901 / 0.1590 |" in text
    assert "| MF (800 negatives per positive) | BSL | 0.1800 / 0.0900 (n=1) | 0.1882 / 0.1584 |" in text


def test_records_rank_as_the_trainer_does_on_explicit_feedback(rated_file, tmp_path):
    """The record's re-evaluation, its per-user values and the trainer's metrics agree: both leave
    the known dislikes out of the ranking (review finding)."""
    from ssmrec.experiments import Runner, load_grid

    grid = tmp_path / "g.toml"
    grid.write_text(f'name = "fb"\n[base]\ndataset = "{rated_file}"\npositive_min = 4\nnegative_max = 2\n'
                    'model = "mf"\ndim = 8\nbatch_size = 256\nepochs = 3\nlr = 0.01\nprogress = false\n'
                    'ks = [10, 20]\n[[cell]]\nloss = "ssm"\n')
    rec = Runner(tmp_path / "records", tmp_path / "runs", echo=lambda s: None, claims=False).run_grid(
        load_grid(grid))[0]
    test, again = rec["metrics"]["test"], rec["test_by_similarity"]["ip"]
    assert again["recall@20"] == pytest.approx(test["recall@20"], abs=1e-12)
    assert again["dislike@20"] == pytest.approx(test["dislike@20"], abs=1e-12)


def test_explicit_feedback_edge_cases(rated_file):
    import pandas as pd

    from ssmrec import Recommender

    frame = pd.read_csv(rated_file, sep="\t")
    with pytest.raises(DataError, match="pass the interactions as one frame"):
        Recommender(model="mf", positive_min=4, negative_max=2, epochs=1).fit(
            frame[:2000], test=frame[2000:], rating_col="rating")
    # the holdout carve may leave an item without training positives: its training dislikes are dropped
    ds = load_dataset(DataConfig(dataset=str(rated_file), positive_min=4, negative_max=2, ratios=(0.8, 0.0, 0.2),
                                 valid_fraction=0.5), "holdout")
    assert (ds.train.item_degree[ds.dislikes["train"].indices] > 0).all()


def test_a_run_that_collapsed_after_its_best_epoch_is_marked():
    from pathlib import Path

    from ssmrec.experiments.leaderboard import collapsed
    from ssmrec.experiments.records import Record

    def run(values):
        return Record(Path("x.json"), {"metrics": {"metric": "recall@20"},
                                       "history": [{"epoch": e + 1, "recall@20": v} for e, v in enumerate(values)]})

    assert collapsed(run([0.04, 0.03, 0.007, 0.0003]))  # SL@K at tau_w 0.5 on Gowalla MF
    assert not collapsed(run([0.10, 0.12, 0.119, 0.118]))  # an early stop on a plateau
    assert not collapsed(run([]))
