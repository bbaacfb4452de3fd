"""The faults an audit of results/ found (issue 23), each over a small fixture of records: every
number of the report and WHICH_LOSS.md true to its record."""

from __future__ import annotations

import json

import numpy as np

from ssmrec.experiments.grid import load_grid
from ssmrec.experiments.leaderboard import grid_records, leaderboard_section, which_loss
from ssmrec.experiments.lightgcn_tables import order_verdict
from ssmrec.experiments.plan import plan_grid, plan_lines
from ssmrec.experiments.records import load_records, select
from ssmrec.experiments.report import Report

CPU = {"cpu": "test cpu", "threads": 1, "cuda": None, "commit": "abc"}
GPU = {"cpu": "host cpu", "threads": 2, "cuda": "Test GPU", "commit": "abc"}


def write(root, exp, cell, settings, *, recall, stop="early_stopped", epochs=10, best=8, env=CPU, spe=1.0,
          finished="2026-01-01T00:00:00", **extra):
    """A record as the runner writes it: ``settings`` over a 1-layer LightGCN + SSM's, or a grid
    cell's key as it is (a complete one has ``batch_size``)."""
    s = dict(settings) if "batch_size" in settings and "ks" in settings else {
        "dataset": "gowalla", "protocol": "paper", "model": "lightgcn", "layers": 1, "loss": "ssm",
        "similarity": "cos", "seed": 0, "tau": 0.12, **settings}
    history = [{"epoch": e, "recall@20": recall * min(e, best) / best, "elapsed_seconds": 2.0 * e}
               for e in range(1, epochs + 1)]
    data = {"version": 1, "experiment": exp, "cell": cell, "settings": s, "history": history, "env": env,
            "metrics": {"protocol": s["protocol"], "metric": "recall@20", "best_epoch": best, "epochs_run": epochs,
                        "stop_reason": stop, "train_seconds": spe * epochs, "eval_seconds": 1.0,
                        "seconds_per_epoch": spe, "test": {"recall@20": recall, "ndcg@20": recall * 0.8},
                        "valid": None},
            "test_by_similarity": {"ip": {"recall@20": recall}},
            "profile": {"recall": recall, "group_recall": [recall / 10] * 10, "group_item_share": [0.1] * 10,
                        "coverage": 0.5, "avg_popularity": 100.0, "avg_popularity_percentile": 0.9, "gini": 0.8},
            "finished_at": finished, **extra}
    d = root / "records" / exp
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{cell}.json").write_text(json.dumps(data))
    np.savez(d / f"{cell}.per_user.npz", users=np.arange(20), **{"recall@20": np.full(20, recall)})
    return data


def grid(root, name, body):
    d = root / "experiments"
    d.mkdir(exist_ok=True)
    (d / f"{name}.toml").write_text(f'name = "{name}"\n' + body)
    return load_grid(d / f"{name}.toml")


def section(text, title):
    start = text.index(title)
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


# 1. seconds per epoch are labelled with the machine that produced them
def test_seconds_per_epoch_never_mix_a_gpu_with_a_cpu_thread(tmp_path):
    write(tmp_path, "leaderboard", "ssm-s0-aaaa0001", {"seed": 0}, recall=0.185, spe=50.0, env=CPU)
    for seed in (1, 2):
        write(tmp_path, "leaderboard", f"ssm-s{seed}-aaaa000{seed + 1}", {"seed": seed}, recall=0.186, spe=5.0,
              env=GPU)
    write(tmp_path, "leaderboard", "bpr-s0-aaaa0009", {"loss": "bpr", "similarity": "ip"}, recall=0.184, spe=30.0)
    page = "\n".join(which_loss(load_records(tmp_path / "records")))
    row = next(line for line in page.splitlines() if line.startswith("| SSM |"))
    # the CPU thread's 50 s and the GPU's 5 s, each with its machine (not the GPU's median under the CPU's name)
    assert "| 50.0 (test cpu (1 thr)); 5.0 (GPU: Test GPU) |" in row
    # the cheapest within 2% is judged on the machine both ran on: BPR's 30 s against SSM's 50 s on the CPU
    assert "cheapest per epoch on the same machine: **BPR**" in page


# 2. one cell, one value: the leaderboard and Table 3 show the same seeds of a configuration
def test_a_configuration_shows_one_value_in_table3_and_the_leaderboard(tmp_path):
    body = ('[base]\ndataset = "gowalla"\nprotocol = "paper"\nmodel = "lightgcn"\nlayers = 1\nloss = "ssm"\n'
            'tau = 0.12\n[[cell]]\nseed = [{}]\n')
    table3 = grid(tmp_path, "table3", body.format("0, 1, 2, 3, 4"))
    grid(tmp_path, "leaderboard", body.format("0, 1, 2"))
    for cell, recall in zip(table3.cells, (0.1850, 0.1860, 0.1870, 0.1800, 0.1810)):
        write(tmp_path, "table3", cell.id, cell.key, recall=recall)
    records = load_records(tmp_path / "records")
    board = grid_records(records, tmp_path / "experiments" / "leaderboard.toml", "leaderboard")
    assert len(board) == 5  # the leaderboard lists three seeds; the configuration has five recorded
    text = Report(tmp_path / "records", tmp_path / "out", grids_dir=tmp_path / "experiments").render().read_text()
    assert "| LightGCN (1 layer) | SSM | 0.1838 ± 0.0031 |" in text
    assert "| SSM | 0.1838 ± 0.0031 / 0.1470 (n=5) |" in section(text, "## Beyond the study")
    assert "| SSM | 0.1838 |" in (tmp_path / "out" / "WHICH_LOSS.md").read_text()


# 3. every record is in the index that links numbers to records
def test_the_index_lists_every_record_read_and_where_it_is_shown(tmp_path):
    write(tmp_path, "table3", "gowalla-lightgcn-L1-ssm-s0-aaaa0001", {}, recall=0.18)
    write(tmp_path, "table3", "gowalla-mf-bpr-s0-aaaa0002", {"model": "mf", "loss": "bpr", "similarity": "ip",
                                                             "reg": 1e-3}, recall=0.15)
    # another L2 value of the same cell: only in the search trace
    write(tmp_path, "l2", "gowalla-mf-bpr-s0-aaaa0003", {"model": "mf", "loss": "bpr", "similarity": "ip",
                                                         "reg": 1e-4}, recall=0.14)
    write(tmp_path, "leaderboard", "gowalla-mf-psl-s0-aaaa0004", {"model": "mf", "loss": "psl"}, recall=0.11)
    write(tmp_path, "other", "gowalla-svdpp-user-a0.3-0-ssm-s0-aaaa0005",  # a variant no table has
          {"model": "svdpp", "side": "user", "a0": 0.3, "a1": 0.0, "layers": None}, recall=0.1)
    text = Report(tmp_path / "records", tmp_path / "out").render().read_text()
    index = section(text, "## Run index")
    rows = [line for line in index.splitlines() if line.startswith("| [")]
    names = sorted(f"{p.parent.name}/{p.stem}" for p in (tmp_path / "records").glob("*/*.json"))
    assert len(rows) == len(names) == 5
    assert all(f"[{name}](" in index for name in names)
    assert "which lists all 5 records" in text
    row = next(line for line in rows if "aaaa0003" in line)
    assert row.endswith("| Table 3 (L2 search) |")
    assert next(line for line in rows if "aaaa0005" in line).endswith("| none (of no table's cell) |")
    assert "leaderboard and WHICH_LOSS |" in next(line for line in rows if "aaaa0004" in line)


# 4. two records of one cell id: one authoritative record, the same everywhere
def test_a_cell_recorded_in_two_grids_shows_the_same_record_everywhere(tmp_path):
    g = grid(tmp_path, "l2", '[base]\ndataset = "gowalla"\nprotocol = "paper"\nmodel = "mf"\nloss = "bpr"\n'
                             'reg = 1e-4\n')
    cell = g.cells[0]
    write(tmp_path, "table3", cell.id, cell.key, recall=0.1300, stop="time_budget", epochs=160, best=125, env=GPU)
    write(tmp_path, "l2", cell.id, cell.key, recall=0.1420, stop="early_stopped", epochs=175, best=125,
          finished="2026-02-01T00:00:00")
    from ssmrec.experiments.records import authoritative

    records = load_records(tmp_path / "records")
    kept, superseded = authoritative(records)
    assert [r.name for r in kept] == [f"l2/{cell.id}"] and superseded[f"table3/{cell.id}"].name == f"l2/{cell.id}"
    # the tables, the leaderboard's reading of a grid and the plan pick that record
    assert select(records, model="mf", loss="bpr")[0].name == f"l2/{cell.id}"
    assert grid_records(records, tmp_path / "experiments" / "l2.toml", "x")[0].name == f"l2/{cell.id}"
    p = plan_grid(tmp_path / "experiments" / "l2.toml", records)
    assert (p.converged, p.budget_stopped) == (1, 0)
    text = Report(tmp_path / "records", tmp_path / "out", grids_dir=tmp_path / "experiments").render().read_text()
    assert "| MF | BPR | 0.1420 |" in text and "0.1300" not in section(text, "## Table 3")
    index = section(text, "## Run index")
    assert f"superseded by `l2/{cell.id}`" in next(line for line in index.splitlines() if f"[table3/{cell.id}]" in line)
    # a tie in epochs: the converged record wins, whichever grid folder it is in
    write(tmp_path, "table3", cell.id, cell.key, recall=0.1300, stop="early_stopped", epochs=175, best=125)
    write(tmp_path, "l2", cell.id, cell.key, recall=0.1420, stop="time_budget", epochs=175, best=125)
    records = load_records(tmp_path / "records")
    assert authoritative(records)[0][0].name == f"table3/{cell.id}"
    assert select(records, model="mf", loss="bpr")[0].name == f"table3/{cell.id}"


# 5. the Figure 1 notes describe only the bars the figure has; 10. the plan finds a cell by its settings
def test_figure1_notes_follow_its_bars_and_a_cell_evaluated_otherwise_is_counted_as_run(tmp_path):
    g = grid(tmp_path, "figure1", '[base]\ndataset = "gowalla"\nprotocol = "paper"\nmodel = "lightgcn"\n'
                                  'layers = 1\n[[cell]]\nloss = ["ssm", "ccl"]\n')
    ssm, ccl = g.cells
    write(tmp_path, "figure1", ssm.id, ssm.key, recall=0.18)
    # CCL's record: its training settings, but scored by ip (an earlier default), so another cell id
    old = {**ccl.key, "test_similarity": "ip"}
    write(tmp_path, "figure1", "gowalla-lightgcn-L1-ccl-s0-0ld1d000", old, recall=0.01)
    (tmp_path / "notes.toml").write_text('[notes]\nfigure1 = "ALL BARS"\n"figure1.ccl" = "ABOUT CCL BARS"\n')
    from ssmrec.experiments.report import load_notes

    notes = load_notes(tmp_path / "notes.toml")
    text = Report(tmp_path / "records", tmp_path / "out", notes, grids_dir=tmp_path / "experiments").render() \
        .read_text()
    fig = section(text, "## Figure 1")
    assert "| SSM |" in fig and "| CCL |" not in fig
    assert "ALL BARS" in fig and "ABOUT CCL BARS" not in fig
    assert ("CCL has no bar: its record `figure1/gowalla-lightgcn-L1-ccl-s0-0ld1d000` has the training settings of "
            f"`figure1/{ccl.id}` but was evaluated with test_similarity ip (the cell's now cos)") in fig
    assert "CCL is recorded only under an earlier evaluation setting" in section(text, "## Table 2")
    # the plan: the CCL cell is run (by its settings), said so
    p = plan_grid(tmp_path / "experiments" / "figure1.toml", load_records(tmp_path / "records"))
    assert (p.cells, p.converged, p.not_run) == (2, 2, 0)
    assert f"`{ccl.id}` counted as run by `figure1/gowalla-lightgcn-L1-ccl-s0-0ld1d000`" in "\n".join(plan_lines([p]))
    # with a CCL bar, its note is said
    write(tmp_path, "figure1", ccl.id, ccl.key, recall=0.02)
    text = Report(tmp_path / "records", tmp_path / "out", notes, grids_dir=tmp_path / "experiments").render() \
        .read_text()
    fig = section(text, "## Figure 1")
    assert "| CCL |" in fig and "ABOUT CCL BARS" in fig and "no bar" not in fig


# 6. a verdict resting on a budget-stopped arm is no finding
def test_an_order_resting_on_a_budget_stopped_arm_is_not_stated_as_kept(tmp_path):
    recall = {"bce": 0.140, "bpr": 0.153, "softmax": 0.166, "ssm": 0.185}
    text = order_verdict(recall, budget=True, stopped={"bce", "bpr", "ssm"})
    kept = text.split("kept ")[1].split(";")[0]
    assert kept == "SM < SSM"  # SSM may only rise: the order stands; BPR may still pass SM
    assert "BCE < BPR (holds so far; BCE stopped by its budget)" in text
    assert "BPR < SM (holds so far; BPR stopped by its budget)" in text and "Not findings yet" in text
    # through the report: a budget-stopped BPR below SM is not a kept order
    for loss, r, stop in (("bpr", 0.153, "time_budget"), ("softmax", 0.166, "early_stopped"),
                          ("ssm", 0.185, "early_stopped")):
        write(tmp_path, "t2", f"gowalla-lightgcn-L1-{loss}-s0", {"loss": loss,
                                                                 "similarity": "ip" if loss == "bpr" else "cos"},
              recall=r, stop=stop, epochs=20, best=20 if stop == "time_budget" else 8)
    t2 = section(Report(tmp_path / "records", tmp_path / "out").render().read_text(), "## Table 2")
    assert "kept SM < SSM; broken none" in t2 and "BPR < SM (holds so far; BPR stopped by its budget)" in t2


# 7. the published comparators' settings beside them; nothing calls them like-for-like
def test_published_numbers_carry_their_settings_and_are_not_called_like_for_like(tmp_path):
    write(tmp_path, "leaderboard", "yelp2018-lightgcn-L1-ssm-s0-aaaa0001",
          {"dataset": "yelp2018", "tau": 0.14, "batch_size": 2048, "reg": 1e-5, "lr": 1e-3}, recall=0.0725)
    write(tmp_path, "leaderboard", "yelp2018-lightgcn-L1-bsl-s0-aaaa0002",
          {"dataset": "yelp2018", "loss": "bsl", "tau": 0.14, "batch_size": 2048, "reg": 1e-5, "lr": 1e-3,
           "loss_params": {"tau2": 1.0}}, recall=0.0720)
    write(tmp_path, "leaderboard", "yelp2018-lightgcn-L1-adaptau-s0-aaaa0003",
          {"dataset": "yelp2018", "loss": "adaptau", "tau": 0.14, "batch_size": 2048, "reg": 1e-5, "lr": 1e-3,
           "loss_params": {"beta": 1.0}}, recall=0.0710)
    text = "\n".join(leaderboard_section(load_records(tmp_path / "records")))
    bsl = next(line for line in text.splitlines() if line.startswith("| BSL |"))
    assert ("| 0.0744 / 0.0617 | 3 layers, batch 1024, lr 0.001, L2 1e-5, τ 0.15, no dropout, τ₂ 1.12; not ours: "
            "3 layers (ours 1), batch 1024 (ours 2048), τ 0.15 (ours 0.14) |") in bsl
    adap = next(line for line in text.splitlines() if line.startswith("| Adap-τ |"))
    assert ("0.0732 / 0.0610 | 3 layers, batch 2048, lr 0.001, L2 0.1, message dropout 0.1, β 1.5; not ours: 3 layers "
            "(ours 1), L2 0.1 (ours 1e-5), message dropout 0.1 (ours 0) |") in adap
    best = next(line for line in text.splitlines() if line.startswith("Best LightGCN loss"))
    assert "(0.0744, BSL)" in best and "Not like-for-like" in best and "3 layers (ours 1)" in best
    assert "the setting of our LightGCN arms" not in text and "None of the published numbers is like-for-like" in text


# 8. a commit message's mistake is corrected in the report from the record's value
def test_a_correction_shows_the_value_the_record_holds(tmp_path):
    def slk(tau_w):
        write(tmp_path, "leaderboard", "gowalla-mf-slk-s0-aaaa0001",
              {"model": "mf", "loss": "slk", "loss_params": {"tau_w": tau_w, "refresh_every": 5}}, recall=0.04)
        notes = {"correction.gowalla.mf.slk.tau_w": "two commit messages say 0.5."}
        return Report(tmp_path / "records", tmp_path / "out", notes).render().read_text()

    text = slk(1.0)
    assert ("- Correction: gowalla, MF + SL@K ran with tau_w **1** (its record, `leaderboard/gowalla-mf-slk-s0-"
            "aaaa0001`); two commit messages say 0.5.") in text
    assert "mf: τ 0.12, refresh_every 5, tau_w 1 |" in text  # the leaderboard row, from the record
    assert "ran with tau_w **2**" in slk(2.0)


# 9. the budget a run was given: in its record, and in the report where it matters
def test_a_record_holds_the_budget_it_was_given(tiny_dir, tmp_path):
    from ssmrec.experiments import Runner

    (tmp_path / "g.toml").write_text(f'name = "b"\n[base]\ndataset = "{tiny_dir}"\nmodel = "mf"\ndim = 8\n'
                                     'epochs = 2\nprogress = false\nmax_seconds = 3600\n[[cell]]\nloss = "bpr"\n')
    runner = Runner(tmp_path / "records", tmp_path / "runs", claims=False, echo=lambda *_: None)
    (rec,) = runner.run_grid(tmp_path / "g.toml")
    assert rec["budget"] == {"max_seconds": 3600.0, "epochs": 2}
    other = Runner(tmp_path / "records2", tmp_path / "runs2", overrides={"max_seconds": 0.0}, claims=False,
                   echo=lambda *_: None)
    assert other.run_grid(tmp_path / "g.toml")[0]["budget"] == {"max_seconds": None, "epochs": 2}


def test_the_report_says_a_budget_stopped_runs_budget(tmp_path):
    write(tmp_path, "table3", "gowalla-lightgcn-L1-bpr-s0-aaaa0001", {"loss": "bpr", "similarity": "ip"},
          recall=0.15, stop="time_budget", epochs=60, best=60, budget={"max_seconds": 7200.0, "epochs": 1000})
    write(tmp_path, "table3", "gowalla-lightgcn-L1-ssm-s0-aaaa0002", {}, recall=0.18, stop="time_budget",
          epochs=40, best=40)  # an older record: no budget in it
    text = Report(tmp_path / "records", tmp_path / "out").render().read_text()
    assert "| time budget of 7,200 s @60 (best 60) |" in section(text, "## Table 3")
    assert "| time budget @40 (best 40) |" in section(text, "## Table 3")
    index = section(text, "## Run index")
    assert "| time_budget | 7,200 s, 1000 epochs |" in index and "| time_budget | not recorded |" in index
