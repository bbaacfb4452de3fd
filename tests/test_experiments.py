"""Grids expand as declared; the runner records, skips, resumes; the search follows the study."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ssmrec.data import Interactions
from ssmrec.eval import Evaluator
from ssmrec.eval.popularity import gini, popularity_groups, topk_profile
from ssmrec.experiments import Runner, load_grid
from ssmrec.train.config import ConfigError, TrainConfig


def write(tmp_path, text, name="g.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_grid_expansion_and_precedence(tmp_path):
    p = write(tmp_path, """
name = "t"
[base]
epochs = 7
tau = 0.5
[axes]
dataset = ["a", "b"]
[dataset.b]
tau = 0.3
[[cell]]
model = "mf"
loss = ["bpr", "ssm"]
seed = [0, 1]
[[cell]]
model = "svdpp"
side = ["user", "item"]
loss = "ssm"
tau = 0.9
""")
    g = load_grid(p)
    assert len(g.cells) == 2 * 2 * 2 + 2 * 2
    taus = {(c.cfg.dataset, c.cfg.model): c.cfg.tau for c in g.cells}
    assert taus[("a", "mf")] == 0.5 and taus[("b", "mf")] == 0.3  # dataset beats base
    assert taus[("a", "svdpp")] == 0.9 and taus[("b", "svdpp")] == 0.9  # cell beats dataset
    assert all(c.cfg.epochs == 7 for c in g.cells)
    assert len({c.id for c in g.cells}) == len(g.cells)


def test_grid_ids_change_with_settings_not_with_run_options(tmp_path):
    a = load_grid(write(tmp_path, '[[cell]]\nmodel = "mf"\ntau = 0.2\nthreads = 1\n')).cells[0]
    b = load_grid(write(tmp_path, '[[cell]]\nmodel = "mf"\ntau = 0.2\nthreads = 2\n', "b.toml")).cells[0]
    c = load_grid(write(tmp_path, '[[cell]]\nmodel = "mf"\ntau = 0.3\n', "c.toml")).cells[0]
    assert a.digest == b.digest and a.digest != c.digest


def test_grid_errors_name_the_cell(tmp_path):
    with pytest.raises(ConfigError, match=r"\[\[cell\]\] #2: unknown setting\(s\) \['tua'\]"):
        load_grid(write(tmp_path, '[[cell]]\nmodel = "mf"\n[[cell]]\ntua = 1\n'))
    with pytest.raises(ConfigError, match="loss"):
        load_grid(write(tmp_path, '[[cell]]\nloss = "warp"\n'))


GRID = """
name = "mini"
[base]
dataset = "{data}"
model = "mf"
dim = 8
batch_size = 256
epochs = 2
lr = 0.01
progress = false
ks = [10, 20]
[[cell]]
loss = ["bpr", "ssm"]
similarities = ["ip", "cos"]
"""


def test_runner_records_and_skips(tmp_path, tiny_dir):
    grid = write(tmp_path, GRID.format(data=tiny_dir))
    runner = Runner(tmp_path / "records", tmp_path / "runs", echo=lambda s: None)
    recs = runner.run_grid(grid)
    assert len(recs) == 2
    for rec in recs:
        path = tmp_path / "records" / "mini" / f"{rec['cell']}.json"
        on_disk = json.loads(path.read_text())
        assert on_disk["metrics"]["test"]["recall@20"] == rec["metrics"]["test"]["recall@20"]
        # the best model re-evaluated gives the recorded test metrics
        assert rec["test_by_similarity"]["ip"]["recall@20"] == pytest.approx(rec["metrics"]["test"]["recall@20"])
        assert set(rec["test_by_similarity"]) == {"ip", "cos"}
        assert sum(rec["profile"]["group_recall"]) == pytest.approx(rec["metrics"]["test"]["recall@20"])
        assert rec["env"]["torch"] and rec["data"]["fingerprint"]
        per_user = np.load(path.with_suffix(".per_user.npz"))
        assert per_user["recall@20"].mean() == pytest.approx(rec["metrics"]["test"]["recall@20"], abs=1e-6)
    # a second pass trains nothing
    msgs = []
    again = Runner(tmp_path / "records", tmp_path / "runs", echo=msgs.append).run_grid(grid)
    assert [r["cell"] for r in again] == [r["cell"] for r in recs] and msgs == []


def test_extend_continues_cells_stopped_by_their_budget(tmp_path, tiny_dir):
    grid = load_grid(write(tmp_path, GRID.format(data=tiny_dir)))
    cell = grid.cells[0]
    whole = Runner(tmp_path / "r1", tmp_path / "runs1", echo=lambda s: None, claims=False).run_cell(cell)
    # the same cell stopped by a budget after its first epoch
    short = Runner(tmp_path / "r2", tmp_path / "runs2", echo=lambda s: None, claims=False,
                   overrides={"max_seconds": 1e-9}).run_cell(cell)
    assert short["metrics"]["stop_reason"] == "time_budget" and short["metrics"]["epochs_run"] == 1
    said = []
    plain = Runner(tmp_path / "r2", tmp_path / "runs2", echo=said.append, claims=False)
    assert plain.run_cell(cell)["metrics"]["epochs_run"] == 1 and said == []  # a record is final...
    extend = Runner(tmp_path / "r2", tmp_path / "runs2", echo=said.append, claims=False, extend=True)
    extend.run_cell(cell, dry_run=True)
    assert "extend: stopped by its budget at epoch 1 (best 1) while still improving; resume its run" in said[-1]
    longer = extend.run_cell(cell)  # ...unless asked: it resumes its run and goes on to its own end
    assert longer["metrics"]["stop_reason"] == whole["metrics"]["stop_reason"] != "time_budget"
    assert longer["metrics"]["epochs_run"] == whole["metrics"]["epochs_run"]
    assert longer["metrics"]["test"] == whole["metrics"]["test"]
    assert [h["loss"] for h in longer["history"]] == [h["loss"] for h in whole["history"]]
    assert json.loads((tmp_path / "r2" / "mini" / f"{cell.id}.json").read_text())["metrics"]["epochs_run"] > 1


def test_runner_resumes_an_interrupted_cell(tmp_path, tiny_dir, monkeypatch):
    grid = write(tmp_path, GRID.format(data=tiny_dir).replace('["bpr", "ssm"]', '"ssm"'))
    whole = Runner(tmp_path / "r1", tmp_path / "runs1", echo=lambda s: None).run_grid(grid)[0]

    from ssmrec.train.objective import Objective

    calls = {"n": 0}
    original = Objective.__call__

    def flaky(self, model, batch):
        calls["n"] += 1
        if calls["n"] == 20:
            raise KeyboardInterrupt
        return original(self, model, batch)

    monkeypatch.setattr(Objective, "__call__", flaky)
    runner = Runner(tmp_path / "r2", tmp_path / "runs2", echo=lambda s: None)
    from ssmrec.train import Interrupted

    with pytest.raises(Interrupted):
        runner.run_grid(grid)
    monkeypatch.undo()
    resumed = runner.run_grid(grid)[0]
    assert resumed["metrics"]["test"] == whole["metrics"]["test"]
    assert [h["loss"] for h in resumed["history"]] == pytest.approx([h["loss"] for h in whole["history"]])
    assert len(resumed["history"]) == 2


def test_search_coarse_then_fine(tmp_path, tiny_dir):
    grid = write(tmp_path, GRID.format(data=tiny_dir).replace(
        '[[cell]]\nloss = ["bpr", "ssm"]', '[search]\ncoarse = [0.1, 0.5]\nstep = 0.05\nspan = 1\n'
        '[[cell]]\nloss = "ssm"\nseed = [0, 1]\nsearch = "tau"'))
    said = []
    Runner(tmp_path / "records", tmp_path / "runs", echo=said.append).run_grid(grid, dry_run=True)
    assert len(said) == 3 and "then a fine tau grid" in said[-1]  # the shared coarse stage is listed once
    runner = Runner(tmp_path / "records", tmp_path / "runs", echo=lambda s: None)
    recs = runner.run_grid(grid)
    searches = list((tmp_path / "records" / "mini").glob("search-*.json"))
    assert searches
    s = json.loads(searches[0].read_text())
    coarse_best = max([0.1, 0.5], key=lambda v: s["scores"][str(v)])
    expected = {0.1, 0.5, round(coarse_best - 0.05, 6), coarse_best, round(coarse_best + 0.05, 6)}
    assert {float(k) for k in s["scores"]} == expected
    assert str(s["best"]) == max(s["scores"], key=lambda k: s["scores"][k])
    assert {r["settings"]["tau"] for r in recs} == {s["best"]}
    assert sorted(r["settings"]["seed"] for r in recs) == [0, 1]


# ----------------------------------------------------------------------------- popularity analyses
def test_popularity_groups_hold_equal_interactions():
    rng = np.random.default_rng(0)
    deg = np.floor(rng.pareto(1.1, 5000) * 3).astype(int) + 1
    g = popularity_groups(deg, 10)
    per_group = np.bincount(g, weights=deg, minlength=10)
    assert (np.abs(per_group - deg.sum() / 10) <= deg.max()).all()
    # groups are ordered by popularity
    assert all(deg[g == a].max() <= deg[g == a + 1].min() for a in range(9) if (g == a).any() and (g == a + 1).any())
    assert (g == 9).mean() < 0.05  # the head is a small share of the items


def test_gini():
    assert gini(np.array([5, 5, 5, 5])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 10])) == pytest.approx(0.75)


def test_group_recall_sums_to_recall(tiny):
    g = torch.Generator().manual_seed(0)
    u, i = torch.randn(tiny.n_users, 8, generator=g), torch.randn(tiny.n_items, 8, generator=g)
    prof = topk_profile(u, i, tiny.test, [tiny.train], tiny.train, k=20)
    recall = Evaluator(tiny.test, [tiny.train], ks=(20,)).evaluate(u, i)["recall@20"]
    assert sum(prof["group_recall"]) == pytest.approx(recall, abs=1e-12)
    assert prof["recall"] == pytest.approx(recall, abs=1e-12)
    assert 0 < prof["coverage"] <= 1 and 0 <= prof["gini"] < 1


def test_profile_by_hand():
    # 1 user, items 0..3 with train degrees 1,1,1,3 (user 1 holds the training pairs)
    train = Interactions.from_pairs(np.array([1, 1, 1, 1, 2, 3]), np.array([0, 1, 2, 3, 3, 3]), 4, 4)
    test = Interactions.from_pairs(np.array([0, 0]), np.array([1, 3]), 4, 4)
    u = torch.tensor([[1.0], [0.0], [0.0], [0.0]])
    i = torch.tensor([[4.0], [3.0], [2.0], [1.0]])  # user 0 ranks items 0, 1, 2, 3
    p = topk_profile(u, i, test, [train], train, k=2, n_groups=2)
    # top-2 = items 0, 1; hit item 1 of 2 relevant -> recall 0.5
    # groups (6 interactions, 3 each): items 0,1,2 -> group 0, item 3 -> group 1
    assert p["group_recall"] == [0.5, 0.0]
    assert p["coverage"] == 0.5 and p["avg_popularity"] == 1.0


# ----------------------------------------------------------------------------- the four claims
def test_claims_on_a_small_model(tiny):
    from ssmrec.experiments.claims import dcg_bound, hard_negatives, magnitude, popularity_bias
    from ssmrec.models import build_model

    torch.manual_seed(0)
    model = build_model("lightgcn", tiny.train, 16, layers=1)
    with torch.no_grad():
        u, i = model()
    pb = popularity_bias(u, i, tiny.train, tiny.test, [tiny.train], n_users=100)
    assert set(pb) >= {"score_vs_logpop", "recfreq_vs_logpop", "score_curve"}
    hn = hard_negatives(model.batch_reps, tiny.train, tau=0.2, batch_size=64, batches=1)
    # the measured per-negative shares follow sqrt(1 - c^2) exp(c / tau) exactly (eq. 14)
    assert hn["max_abs_error"] < 1e-9 and hn["weight_vs_theory"]["pearson"] > 0.999
    assert hn["share_of_gradient_from_hardest_10pct"] > 0.1
    db = dcg_bound(u, i, tiny.test, similarity="cos", tau=0.2, n_users=200)
    assert db["share_users_bound_holds"] == 1.0 and db["share_positives_bound_holds"] == 1.0
    # message passing ties norm to degree, an ID embedding does not (eq. 29): with zero-mean
    # initial embeddings E||q_i||^2 = a |P_i|^(1 - 2 a0), so item-side SVD++ with a0 = 0 has a
    # log-log slope of about 1/2 and MF about 0
    svd = build_model("svdpp", tiny.train, 16, side="item", a0=0.0, a1=0.0)
    mf = build_model("mf", tiny.train, 16)
    with torch.no_grad():
        slope_svd = magnitude(*svd(), tiny.train)["item"]["loglog"]["slope"]
        slope_mf = magnitude(*mf(), tiny.train)["item"]["loglog"]["slope"]
    assert 0.3 < slope_svd < 0.7 and abs(slope_mf) < 0.1


def test_dcg_bound_detects_a_violation():
    """The check is not vacuous: with the loss of a worse-ranked item it would fail."""
    from ssmrec.experiments.claims import dcg_bound

    test = Interactions.from_pairs(np.array([0]), np.array([2]), 1, 3)
    u = torch.tensor([[1.0, 0.0]])
    i = torch.tensor([[3.0, 0.0], [2.0, 0.0], [1.0, 0.0]])  # the relevant item 2 ranks third
    db = dcg_bound(u, i, test, similarity="ip", tau=1.0)
    # rank 3: -log DCG = log log2(4) = 0.693; loss = log(e^3 + e^2 + e^1) - 1 = 2.408
    assert db["mean_neg_log_dcg"] == pytest.approx(math.log(2.0), abs=1e-6)
    expected = math.log(math.exp(3) + math.exp(2) + math.exp(1)) - 1
    assert db["mean_full_softmax_loss"] == pytest.approx(expected, abs=1e-6)


def test_rerun_a_recorded_cell_reproduces_it(tmp_path, tiny_dir, capsys):
    from ssmrec.cli import main

    grid = write(tmp_path, GRID.format(data=tiny_dir).replace('["bpr", "ssm"]', '"ssm"'))
    rec = Runner(tmp_path / "records", tmp_path / "runs", echo=lambda s: None, claims=False).run_grid(grid)[0]
    path = tmp_path / "records" / "mini" / f"{rec['cell']}.json"
    assert main(["rerun", str(path), "--out", str(tmp_path / "again"), "--no-progress"]) == 0
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["test"] == rec["metrics"]["test"]
    assert "recorded" in capsys.readouterr().out


def test_ccl_is_scored_as_it_was_trained_and_other_cells_keep_their_ids():
    from ssmrec.experiments.grid import result_settings

    assert TrainConfig(loss="ccl").scoring == "cos" and TrainConfig(loss="ssm").scoring == "ip"
    assert TrainConfig(loss="ccl", test_similarity="ip").scoring == "ip"
    for loss in ("ssm", "bpr", "bce", "softmax"):  # the default means ip: the same cell as an explicit ip
        assert result_settings(TrainConfig(loss=loss)) == result_settings(TrainConfig(loss=loss, test_similarity="ip"))
    assert result_settings(TrainConfig(loss="ccl"))["test_similarity"] == "cos"
