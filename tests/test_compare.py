"""``ssmrec compare``: arms and budget text, the race's phases, resume and refusals, and its
statistics recomputed from the files it leaves."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from scipy import stats

from ssmrec.errors import ConfigError
from ssmrec.race.arms import DEFAULT_ARMS, make_arm, make_arms, parse_budget, shown_seconds
from ssmrec.race.tuning import sensitivity

TINY = {"dim": 8, "epochs": 4, "batch_size": 256, "threads": 1, "patience": 2}


# ------------------------------------------------------------------ arms and budget

@pytest.mark.parametrize("text,seconds", [("90", 90), ("90s", 90), ("10m", 600), ("2h", 7200), ("1h30m", 5400),
                                          ("1.5h", 5400), (45, 45), ("1d", 86400)])
def test_budget_text(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "10x", "-5m", "0", "5m10", "m"])
def test_bad_budget_is_refused_naming_the_flag(text):
    with pytest.raises(ConfigError, match="--budget"):
        parse_budget(text)


def test_shown_seconds():
    assert [shown_seconds(s) for s in (38, 252, 3900)] == ["38s", "4m12s", "1h05m"]


def test_default_arms_are_the_issues_six_each_with_its_own_search():
    arms = make_arms()
    assert [a.name for a in arms] == list(DEFAULT_ARMS)
    by = {a.name: a for a in arms}
    assert by["ssm+logq"].loss == "ssm" and by["ssm+logq"].fixed == {"logq": True}
    assert by["clogq"].loss == "clogq" and by["bsl"].loss == "bsl"
    assert len(by["bpr"].grid["reg"]) >= 2  # inner-product arms search their L2 ...
    assert all("reg" not in by[n].grid for n in ("ssm", "ssm+logq", "clogq", "bsl", "psl"))  # ... cosine ones not
    assert len(by["ssm"].grid.get("tau", [])) >= 2  # a temperature loss searches its temperature
    assert by["clogq"].fixed == {"mask_duplicates": True}  # what its estimator assumes
    # BSL's second temperature is searched, never left where BSL reduces to another loss
    tau2 = by["bsl"].grid.get("tau2", [])
    assert len(tau2) >= 2


def test_arms_accept_aliases_and_refuse_unknown_or_repeated_names():
    assert make_arm("InfoNCE").loss == "ssm"
    with pytest.raises(ConfigError, match="unknown arm 'softmaxx'"):
        make_arms(["ssm", "softmaxx"])
    with pytest.raises(ConfigError, match="named twice"):
        make_arms(["ssm", "infonce"])
    with pytest.raises(ConfigError, match="at least two arms"):
        make_arms(["ssm"])


def test_grid_replaces_the_values_of_the_settings_it_names_only():
    arm = make_arm("ssm", {"tau": [0.3], "reg": [1e-4], "margin": [0.5]})
    assert arm.grid == {"tau": [0.3], "reg": [1e-4]}  # L2 named by the user is searched, margin is not ssm's


def test_sensitivity_is_the_best_value_at_each_tried_value():
    trials = [{"params": {"tau": 0.1, "reg": 1e-5}, "value": 0.20},
              {"params": {"tau": 0.1, "reg": 1e-4}, "value": 0.22},
              {"params": {"tau": 0.5, "reg": 1e-5}, "value": 0.11},
              {"params": {"tau": 0.5, "reg": 1e-4}, "value": None}]
    s = sensitivity(trials, {"tau": [0.1, 0.5], "reg": [1e-5, 1e-4], "dim": [8]})
    assert s["tau"]["best_at"] == {"0.1": 0.22, "0.5": 0.11}
    assert s["tau"]["spread"] == pytest.approx(0.5)
    assert s["reg"]["best_at"] == {"1e-05": 0.20, "0.0001": 0.22}
    assert "dim" not in s


# ------------------------------------------------------------------ a whole race

@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    from ssmrec.data.synthetic import synthetic

    inter = synthetic(160, 120, per_user=(8, 20), seed=3)
    path = tmp_path_factory.mktemp("data") / "shop.csv"
    users = np.repeat(np.arange(inter.n_users), np.diff(inter.indptr))
    rows = [f"u{u},i{i}" for u, i in zip(users, inter.indices)]
    path.write_text("user_id,item_id\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def race(data_file, tmp_path_factory):
    from ssmrec.race import compare

    out = tmp_path_factory.mktemp("race") / "race"
    lines: list[str] = []
    board = compare(str(data_file), losses=["bpr", "ssm"], budget="3m", seeds=2, settings=TINY,
                    grid={"tau": [0.1, 0.5], "reg": [1e-5, 1e-3]}, sampled=30, retrieved=40, out=out,
                    echo=lines.append)
    return out, board, lines


def test_a_race_writes_its_answer(race):
    out, board, lines = race
    for name in ("REPORT.md", "leaderboard.csv", "leaderboard.json", "race.png", "race.json"):
        assert (out / name).is_file(), name
    state = json.loads((out / "race.json").read_text())
    assert state["status"] == "finished" and set(state["arms"]) == {"bpr", "ssm"}
    for arm in state["arms"].values():
        assert sorted(arm["finals"]) == ["0", "1"]
    assert len(state["arms"]["ssm"]["tuned"]["trials"]) == 4  # tau x reg
    assert len(state["arms"]["bpr"]["tuned"]["trials"]) == 2  # reg only
    assert board["leader"] in ("bpr", "ssm")
    report = (out / "REPORT.md").read_text()
    assert board["advice"] in report and "Ranking" in report and "Retrieval" in report
    assert any("tuning ssm" in line for line in lines) and any("left)" in line for line in lines)
    # test was looked at once per finalist, after training; selection was on validation
    for arm in state["arms"].values():
        for fin in arm["finals"].values():
            assert fin["valid"] is not None and "recall@20" in fin["test"]


def test_bpr_searches_no_temperature(race):
    out, _, _ = race
    state = json.loads((out / "race.json").read_text())
    assert all(set(t["params"]) == {"reg"} for t in state["arms"]["bpr"]["tuned"]["trials"])


def test_the_leaderboard_statistics_recompute_from_the_files(race):
    out, board, _ = race
    state = json.loads((out / "race.json").read_text())
    rows = {r["arm"]: r for r in board["rows"]}
    per_arm = {}
    for name, arm in state["arms"].items():
        seeds = [arm["finals"][s]["test"]["recall@20"] for s in sorted(arm["finals"])]
        mean = np.mean(seeds)
        half = stats.t.ppf(0.975, len(seeds) - 1) * np.std(seeds, ddof=1) / math.sqrt(len(seeds))
        got = rows[name]["recall@20"]
        assert got["mean"] == pytest.approx(mean) and got["ci95"][0] == pytest.approx(mean - half)
        # over users: each user's value averaged over the seeds
        runs = []
        for s in sorted(arm["finals"]):
            with np.load(out / "per_user" / f"{name}-s{s}.npz") as z:
                runs.append(dict(zip(z["users"].tolist(), z["recall@20"].tolist())))
        users = sorted(runs[0])
        pu = np.array([[r[u] for u in users] for r in runs]).mean(0)
        per_arm[name] = pu
        assert rows[name]["recall@20 over users"]["mean"] == pytest.approx(pu.mean())
        # the per-user values are those the mean was computed from
        assert np.mean([np.mean(list(r.values())) for r in runs]) == pytest.approx(mean, abs=1e-6)
    leader = board["leader"]
    other = next(a for a in per_arm if a != leader)
    test = board["tests"][other]
    if test.get("users"):
        want = stats.wilcoxon(per_arm[leader], per_arm[other], zero_method="wilcox").pvalue
        assert test["users"]["p"] == pytest.approx(want)
    assert test["relative"]["mean"] == pytest.approx(per_arm[leader].mean() / per_arm[other].mean() - 1)


def test_running_the_same_race_again_reads_it_back(race, data_file):
    from ssmrec.race import compare

    out, board, _ = race
    stamp = (out / "final" / "ssm-s0" / "metrics.json").stat().st_mtime_ns
    again = compare(str(data_file), losses=["bpr", "ssm"], budget="3m", seeds=2, settings=TINY,
                    grid={"tau": [0.1, 0.5], "reg": [1e-5, 1e-3]}, sampled=30, retrieved=40, out=out, echo=None)
    assert (out / "final" / "ssm-s0" / "metrics.json").stat().st_mtime_ns == stamp  # nothing retrained
    assert [r["arm"] for r in again["rows"]] == [r["arm"] for r in board["rows"]]
    assert again["rows"][0]["recall@20"]["mean"] == pytest.approx(board["rows"][0]["recall@20"]["mean"])


def test_a_folder_of_another_race_is_refused(race, data_file):
    from ssmrec.race import compare

    out, _, _ = race
    with pytest.raises(ConfigError, match="holds a race of other settings .*seeds"):
        compare(str(data_file), losses=["bpr", "ssm"], budget="3m", seeds=3, settings=TINY,
                grid={"tau": [0.1, 0.5], "reg": [1e-5, 1e-3]}, sampled=30, retrieved=40, out=out, echo=None)
    with pytest.raises(ConfigError, match="holds something other than a race"):
        compare(str(data_file), losses=["bpr", "ssm"], budget="3m", out=out / "final", echo=None)


# ------------------------------------------------------------------ the command line

def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "ssmrec", *args], capture_output=True, text=True, env=env, **kw)


@pytest.mark.parametrize("flags,message", [
    (["--loss", "bpr"], "--loss: a race sets it itself; use --losses"),
    (["--protocol", "paper"], "--protocol: a race sets it itself"),
    (["--budget", "soon"], "--budget: expected a duration"),
    (["--seeds", "0"], "--seeds: must be at least 1"),
    (["--k", "10", "20"], "--k: a race measures at one cut-off"),
])
def test_the_command_refuses_what_a_race_sets_itself(flags, message, data_file):
    r = _cli("compare", str(data_file), *flags)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_killed_race_resumes_with_the_same_command(data_file, tmp_path):
    out = tmp_path / "race"
    cmd = ["compare", str(data_file), "--losses", "bpr,ssm", "--budget", "3m", "--seeds", "1", "--dim", "8",
           "--epochs", "6", "--batch-size", "256", "--threads", "1", "--patience", "2", "--grid", "tau=0.1,0.5",
           "--grid", "reg=1e-5", "--sampled", "30", "--retrieved", "40", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ssmrec", *cmd], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    state = out / "race.json"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill -9 once the first arm is tuned, before the race ends
        if state.exists() and "tuned" in json.loads(state.read_text() or "{}").get("arms", {}).get("bpr", {}):
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = json.loads(state.read_text())
    assert first["status"] == "running" and first["spent"] > 0
    r = _cli(*cmd)
    assert r.returncode == 0, r.stdout + r.stderr
    done = json.loads(state.read_text())
    assert done["status"] == "finished" and set(done["arms"]) == {"bpr", "ssm"}
    assert done["arms"]["bpr"]["tuned"] == first["arms"]["bpr"]["tuned"]  # not tuned twice
    assert done["spent"] >= first["spent"]  # time already spent counts against the budget
    assert "report:" in r.stdout


def test_a_grid_is_thinned_to_the_trials_the_budget_affords_keeping_central_values():
    from ssmrec.race.tuning import fit_grid

    grid = {"tau": [0.05, 0.1, 0.2, 0.5], "tau2": [0.8, 0.9, 1.1, 1.2, 1.3], "reg": [1e-6, 1e-5, 1e-4]}
    assert fit_grid(grid, 60) == grid
    small = fit_grid(grid, 4)
    assert math.prod(len(v) for v in small.values()) <= 4
    assert small["tau2"] in ([0.9, 1.1], [1.1, 1.2], [1.1]) and 1.1 in small["tau2"]
    assert all(set(v) <= set(grid[k]) for k, v in small.items())
    assert fit_grid(grid, 1) == {"tau": [0.1], "tau2": [1.1], "reg": [1e-5]}
    assert fit_grid({"reg": [1e-5, 1e-4]}, 0) == {"reg": [1e-5]}


def test_other_models_and_a_loss_sweeps_cannot_train_race_too(data_file, tmp_path):
    """LightGCN on request; Adap-tau keeps per-user state, which sweep members cannot share, so its
    grid is tuned by solo runs."""
    from ssmrec.race import compare

    board = compare(str(data_file), model="lightgcn", losses=["ssm", "adaptau"], budget="2m", seeds=1,
                    settings={**TINY, "epochs": 2}, grid={"tau": [0.2], "beta": [0.5, 1.0]}, sampled=20,
                    retrieved=0, out=tmp_path / "race", echo=None)
    state = json.loads((tmp_path / "race" / "race.json").read_text())
    assert state["settings"]["base"]["model"] == "lightgcn"
    assert state["arms"]["adaptau"]["tuned"]["how"].startswith("solo runs")
    assert len(state["arms"]["adaptau"]["tuned"]["trials"]) == 2
    assert state["arms"]["ssm"]["tuned"]["how"] == "none"  # one value: nothing to tune
    assert {r["arm"] for r in board["rows"]} == {"ssm", "adaptau"}
    assert all(set(r["ranking"]) == {f"sampled20/{m}" for m in ("auc", "hitrate@20", "mrr", "ndcg@20",
                                                                 "recall@20")} for r in board["rows"])
