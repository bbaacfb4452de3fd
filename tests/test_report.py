"""The report is rendered from records alone and puts each number in its cell."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ssmrec.experiments.report import Report, likely_reason, load_notes, select
from ssmrec.experiments.stats import paired_over_seeds, paired_over_users, summary


def record(tmp, exp, cell, *, recall, ndcg=None, stop="early_stopped", epochs=10, best=8, users=50, **settings):
    s = {"dataset": "gowalla", "protocol": "paper", "model": "lightgcn", "layers": 1, "loss": "ssm",
         "similarity": "cos", "seed": 0, "tau": 0.12, **settings}
    history = [{"epoch": e, "loss": 1.0, "train_seconds": 1.0, "elapsed_seconds": 2.0 * e,
                "recall@20": recall * min(e, best) / best} for e in range(1, epochs + 1)]
    data = {
        "cell": cell, "settings": s, "history": history, "env": {"cpu": "test cpu", "threads": 1, "commit": "abc"},
        "metrics": {"protocol": s["protocol"], "metric": "recall@20", "best_epoch": best, "epochs_run": epochs,
                    "stop_reason": stop, "train_seconds": 10.0, "seconds_per_epoch": 1.0,
                    "test": {"recall@20": recall, "ndcg@20": ndcg or recall * 0.8},
                    "valid": {"recall@20": recall + 0.01} if s["protocol"] == "holdout" else None},
        "test_by_similarity": {"ip": {"recall@20": recall}, "cos": {"recall@20": recall / 2}},
        "profile": {"recall": recall, "group_recall": [recall / 10] * 10, "group_item_share": [0.1] * 10,
                    "coverage": 0.5, "avg_popularity": 100.0, "avg_popularity_percentile": 0.9, "gini": 0.8},
        "finished_at": "2026-01-01T00:00:00",
    }
    d = tmp / "records" / exp
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{cell}.json").write_text(json.dumps(data))
    rng = np.random.default_rng(len(cell))
    np.savez(d / f"{cell}.per_user.npz", users=np.arange(users), **{"recall@20": rng.random(users) * recall * 2})
    return data


def test_table3_cells_ri_and_gaps(tmp_path):
    for seed, r in enumerate([0.1860, 0.1870, 0.1880]):
        record(tmp_path, "table3", f"ssm-s{seed}", recall=r, seed=seed)
    record(tmp_path, "table3", "bpr-s0", recall=0.1500, loss="bpr", similarity="ip", stop="time_budget",
           epochs=20, best=20)
    record(tmp_path, "table3", "mf-ssm", recall=0.1231, model="mf", layers=None)
    (tmp_path / "notes.toml").write_text('[notes]\n"gowalla.lightgcn.bpr" = "BPR needs about 500 epochs"\n')
    rep = Report(tmp_path / "records", tmp_path / "out", load_notes(tmp_path / "notes.toml"))
    text = rep.render().read_text()
    # SSM: mean of three seeds, paper 0.1869 -> +0.1%
    assert "| LightGCN (1 layer) | SSM | 0.1870 ± 0.0010 | 0.1869 | +0.1% |" in text
    # BPR: budget-stopped, marked, and listed as a gap with the written note and the budget reason
    assert "| LightGCN (1 layer) | BPR | 0.1500 † | 0.1824 | -17.8% |" in text
    gap = next(line for line in text.splitlines() if line.startswith("- Table 3, gowalla, LightGCN (1 layer) + BPR"))
    assert "BPR needs about 500 epochs" in gap and "still improving" in gap
    # MF + SSM matches the paper: no gap line
    assert "| MF | SSM | 0.1231 | 0.1231 | +0.0% |" in text and "gowalla, MF + SSM" not in text
    # RI row with a per-user Wilcoxon test (one BPR seed)
    ri = next(line for line in text.splitlines() if "RI (SSM vs BPR)" in line)
    assert "+24.7%" in ri and "Wilcoxon" in ri
    assert (tmp_path / "out" / "table3.csv").exists()
    # every used record is in the index with its machine and commit
    assert "[table3/bpr-s0](" in text and "test cpu" in text
    # the summary compares the arms the way the paper's table does, and flags the budget stop
    short = next(line for line in text.splitlines() if line.startswith("- **SSM vs BPR on gowalla**"))
    assert "LightGCN (1 layer): SSM > BPR by +24.7% [" in short and "(significant at 0.05)" in short
    assert ("BPR budget-stopped while still improving, BPR's L2 not searched, SSM's L2 not searched: provisional; "
            "as in the paper (+2.5%)") in short


def test_the_verdict_is_final_only_for_converged_arms_over_the_whole_l2_grid(tmp_path):
    for k, reg in enumerate((1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)):
        record(tmp_path, "t3", f"bpr-{k}", recall=0.15 - abs(k - 3) * 0.01, loss="bpr", model="mf", layers=None,
               similarity="ip", reg=reg)
        record(tmp_path, "t3", f"ssm-{k}", recall=0.12 - abs(k - 1) * 0.01, model="mf", layers=None, reg=reg)
    text = Report(tmp_path / "records", tmp_path / "out").render().read_text()
    short = next(line for line in text.splitlines() if line.startswith("- **SSM vs BPR on gowalla**"))
    assert ("MF: SSM < BPR by -20.0%" in short and "BPR's L2 searched 6 of 6 values, SSM's L2 searched 6 of 6 "
            "values: final; as in the paper (-21.0%)") in short
    # one BPR value left out: the verdict is provisional again
    (tmp_path / "records" / "t3" / "bpr-0.json").unlink()
    text = Report(tmp_path / "records", tmp_path / "out").render().read_text()
    assert "BPR's L2 searched 5 of 6 values, SSM's L2 searched 6 of 6 values: provisional" in text


def test_figure1_holdout_convergence(tmp_path):
    for loss in ("bce", "bpr", "softmax", "ccl", "ssm"):
        sim = {"similarity": "ip" if loss in ("bpr", "bce") else "cos"} if loss != "ccl" else {}
        rec = record(tmp_path, "figure1", f"f-{loss}", recall=0.1, loss=loss, **sim)
        if loss == "ccl":  # CCL records carry no similarity (cosine is built in)
            rec["settings"].pop("similarity")
            (tmp_path / "records" / "figure1" / "f-ccl.json").write_text(json.dumps(rec))
    record(tmp_path, "holdout", "h-ssm", recall=0.17, protocol="holdout")
    text = Report(tmp_path / "records", tmp_path / "out").render().read_text()
    # once in Figure 1, once in Table 2
    assert text.count("| BCE | 0.1000 |") == 2 and "| CCL | 0.1000 |" in text
    # equal group recalls: every loss earns half its Recall@20 on the 5 least popular groups
    tail = next(line for line in text.splitlines() if line.startswith("- **Long tail"))
    assert "SSM 50%" in tail and "CCL 50%" in tail and "coverage@20 of SSM 0.50" in tail
    assert (tmp_path / "out" / "figures" / "figure1_gowalla.png").stat().st_size > 1000
    assert (tmp_path / "out" / "figures" / "convergence_gowalla.png").exists()
    assert "SSM reaches BPR's best (0.1000, epoch 8, 16 s) at epoch 8 (16 s)." in text
    assert "| LightGCN + SSM | 0.1800 | 0.1700 | 0.1000 |" in text


def test_select_prefers_longer_runs_and_matches_floats(tmp_path):
    record(tmp_path, "a", "x", recall=0.1, epochs=5, model="svdpp", side="user", a0=1.0, a1=0.0)
    record(tmp_path, "b", "y", recall=0.2, epochs=9, model="svdpp", side="user", a0=1.0, a1=0.0)
    rep = Report(tmp_path / "records", tmp_path / "out")
    got = select(rep.records, model="svdpp", a0=1, a1=0.0)
    assert len(got) == 1 and got[0].test() == 0.2


def test_stats():
    s = summary([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["std"] == 1.0
    assert s["ci95"][0] == pytest.approx(2 - 4.302653 / np.sqrt(3), abs=1e-5)
    assert paired_over_seeds({0: 1.0}, {0: 2.0}) is None
    assert paired_over_seeds({0: 1.0, 1: 2.0, 2: 3.0}, {0: 1.5, 1: 2.4, 2: 3.6})["p"] < 0.05
    rng = np.random.default_rng(0)
    a = rng.random(200)
    assert paired_over_users(a + 0.1, a)["p"] < 1e-6


def test_search_records_are_listed(tmp_path):
    record(tmp_path, "t", "x", recall=0.1)
    (tmp_path / "records" / "t" / "search-x.json").write_text(json.dumps(
        {"param": "tau", "scores": {"0.1": 0.17, "0.12": 0.18}, "best": 0.12, "metric": "recall@20",
         "selected_on": "validation"}))
    text = Report(tmp_path / "records", tmp_path / "out").render().read_text()
    assert "tau = **0.12** selected on validation recall@20 (0.1: 0.1700, 0.12: 0.1800)" in text


def fake_claims(recfreq_slope, hard_share=0.6):
    line = {"slope": recfreq_slope, "intercept": 0.0, "pearson": 0.5, "spearman": 0.5}
    curve = {"x": [0.0, 1.0, 2.0], "y": [0.1, 0.2, 0.3]}
    return {
        "popularity_bias": {"score_vs_logpop": line, "recfreq_vs_logpop": line, "recfreq_curve": curve},
        "hard_negatives": {"tau": 0.12, "negatives": 10, "max_abs_error": 2e-16, "curve": curve,
                           "theory_curve": curve, "share_of_gradient_from_hardest_10pct": hard_share,
                           "cosine_quantiles": [0.0, 0.1, 0.2, 0.3]},
        "dcg_bound": {"users": 5, "share_users_bound_holds": 1.0, "share_positives_bound_holds": 1.0,
                      "mean_neg_log_dcg": 0.4, "mean_full_softmax_loss": 8.0, "correlation": 0.2,
                      "sample": {"neg_log_dcg": [0.1, 0.2], "loss": [5.0, 6.0]}},
        "magnitude": {"item": {"loglog": line, "curve": curve, "mean_norm": 1.0},
                      "user": {"loglog": line, "curve": curve, "mean_norm": 1.0}},
    }


def test_claims_section_and_summary(tmp_path):
    for loss, slope in (("ssm", 0.002), ("bpr", 0.009)):
        rec = record(tmp_path, "table3", f"c-{loss}", recall=0.1, loss=loss,
                     similarity="cos" if loss == "ssm" else "ip")
        rec["claims"] = fake_claims(slope)
        (tmp_path / "records" / "table3" / f"c-{loss}.json").write_text(json.dumps(rec))
    text = Report(tmp_path / "records", tmp_path / "out").render().read_text()
    pop = next(line for line in text.splitlines() if line.startswith("- **Popularity bias**"))
    assert "lightgcn: SSM 0.00200 (Spearman 0.50), BPR 0.00900 (Spearman 0.50)" in pop
    hard = next(line for line in text.splitlines() if line.startswith("- **Hard negatives**"))
    assert "60%–60%" in hard and "2.0e-16" in hard  # SSM runs only; the error is the recorded one
    assert "| LightGCN-1 + BPR | 0.0090 (0.50) | 0.00900 (0.50) |" in text
    assert (tmp_path / "out" / "figures" / "claims_gowalla.png").exists()


def test_likely_reason_takes_the_most_specific_note():
    notes = {"t5.yelp2018": "general", "t5.yelp2018.user.0.5.0.5": "specific"}
    assert likely_reason(("t5", "yelp2018", "user", 0.5, 0.5), [], 0.1, 0.2, notes).startswith("specific")
    assert likely_reason(("t5", "yelp2018", "item", 1.0, 0.0), [], 0.1, 0.2, notes).startswith("general")
    assert "hyper-parameters not re-tuned" in likely_reason(("t5", "gowalla"), [], 0.1, 0.2, notes)


def test_likely_reason_says_how_far_the_l2_search_got():
    assert "L2 not searched" in likely_reason(("gowalla",), [], 0.1, 0.2, {}, l2_tried=1)
    assert "partial (2 of the study's 6" in likely_reason(("gowalla",), [], 0.1, 0.2, {}, l2_tried=2)
    assert "not an untuned L2" in likely_reason(("gowalla",), [], 0.1, 0.2, {}, l2_tried=6)
    # an untuned L2 does not explain a cell above the paper
    assert "L2" not in likely_reason(("gowalla",), [], 0.3, 0.2, {}, l2_tried=1)


def test_report_on_a_users_own_grid_says_what_it_read(tiny_dir, tmp_path, capsys):
    from ssmrec.cli import main

    grid = tmp_path / "g.toml"
    grid.write_text(f'name = "mine"\n[base]\ndataset = "{tiny_dir}"\nmodel = "mf"\ndim = 8\nepochs = 1\n'
                    'progress = false\n[[cell]]\nloss = ["ssm", "bpr"]\n')
    recs, out = tmp_path / "recs", tmp_path / "out"
    assert main(["experiment", str(grid), "--records", str(recs), "--runs", str(tmp_path / "runs")]) == 0
    capsys.readouterr()
    assert main(["report", "--records", str(recs), "--out", str(out)]) == 0
    assert f"read 2 records from {recs} (1 grids: mine)" in capsys.readouterr().out
    md = (out / "REPORT.md").read_text()
    assert f"`{recs}/`" in md and "## mine (2 cells)" in md and "Table 3" not in md
    assert md.count("| tiny-mf-") == 2
    assert main(["report", "--records", str(tmp_path / "none"), "--out", str(out)]) == 2


def test_budget_stopped_cells_say_how_far_they_got_and_what_finishing_costs(tmp_path):
    from ssmrec.experiments.budget import cost_lines, plot_curves, trend
    from ssmrec.experiments.records import Record

    def rec(cell, loss, stop, epochs, best, values, model="mf", per=10.0):
        hist = [{"epoch": 5 * (k + 1), "recall@20": v} for k, v in enumerate(values)]
        return Record(tmp_path / f"{cell}.json", {
            "cell": cell, "settings": {"loss": loss, "dataset": "gowalla", "model": model, "patience": 4,
                                       "eval_every": 5},
            "metrics": {"metric": "recall@20", "stop_reason": stop, "epochs_run": epochs, "best_epoch": best,
                        "test": {"recall@20": max(values)}, "seconds_per_epoch": per},
            "history": hist, "env": {"cpu": "cpu", "threads": 1}})

    cut = rec("gowalla-mf-bpr-s0-aaaa0001", "bpr", "time_budget", 20, 20, [0.10, 0.11, 0.12, 0.13])
    done = [rec(f"gowalla-mf-bpr-s{k}-aaaa000{k + 2}", "bpr", "early_stopped", e, e - 20, [0.1, 0.2])
            for k, e in enumerate((100, 120, 140))]
    assert trend(cut) == pytest.approx((0.13 - 0.10) / 15 * 10)
    lines = cost_lines([cut, *done], [cut, *done])
    assert len(lines) == 3  # header, rule, the one budget-stopped cell
    # median of the converged runs 120 epochs -> 100 more, at 10 s an epoch: 0.3 h
    assert ("| gowalla-mf-bpr-s0-aaaa0001 | 20 (20) | 0.1300 | +0.0200 (still rising) | 10.0 (cpu (1 thr)) | "
            "~100 more epochs (converged runs, same model: median 120 epochs over 3; patience window 20), "
            "~0.3 h at its s / epoch |") in lines[2]
    lonely = rec("gowalla-mf-ssm-s0-aaaa0009", "ssm", "time_budget", 10, 10, [0.1, 0.12])
    assert "no converged run of this loss" in cost_lines([lonely], [lonely])[2]
    assert cost_lines(done, done) == []
    assert plot_curves([cut], tmp_path / "c.png").exists()


def test_table2_order_verdict():
    from ssmrec.experiments.report import order_verdict

    text = order_verdict({"bce": 0.10, "bpr": 0.12, "softmax": 0.15, "ccl": 0.152, "ssm": 0.14}, budget=False)
    assert text == ("Against the paper's order BCE < BPR < SM ~ CCL < SSM: kept BCE < BPR, BPR < SM, BPR < CCL, "
                    "SM ~ CCL (within 5%); broken SM < SSM, CCL < SSM.")
    partial = order_verdict({"bpr": 0.12, "ssm": 0.14}, budget=True)
    assert "Not enough losses" in partial
    some = order_verdict({"bce": 0.1, "bpr": 0.12}, budget=True)
    assert "Not recorded yet: SM, CCL, SSM." in some and "stopped by their budget" in some


def test_layer_search_section(tmp_path):
    for layers, recall in ((1, 0.15), (2, 0.17), (3, 0.16)):
        record(tmp_path, "layers", f"l{layers}", recall=recall, layers=layers)
    text = Report(tmp_path / "records", tmp_path / "out").render().read_text()
    assert "| SSM | 0.1500 | **0.1700** | 0.1600 | — | 2 |" in text


def test_relative_improvement_interval_by_paired_bootstrap():
    from ssmrec.experiments.stats import relative_improvement_interval

    rng = np.random.default_rng(0)
    b = rng.random(4000)
    a = b * 1.2  # exactly +20% for every user: every resample gives +20%
    lo, hi = relative_improvement_interval(a, b, resamples=200)
    assert lo == pytest.approx(0.2) and hi == pytest.approx(0.2)
    noisy = b * 1.1 + rng.normal(0, 0.05, b.size)
    lo, hi = relative_improvement_interval(noisy, b, resamples=500)
    assert lo < noisy.mean() / b.mean() - 1 < hi and hi - lo < 0.05
    with pytest.raises(ValueError, match="same users"):
        relative_improvement_interval(a[:10], b)


def test_the_study_tables_read_only_the_study_grids_records(tmp_path):
    from ssmrec.experiments.grid import load_grid

    grids = tmp_path / "experiments"
    grids.mkdir()
    (grids / "t3.toml").write_text('name = "table3"\n[base]\ndataset = "gowalla"\nmodel = "mf"\nloss = "ssm"\n'
                                   'tau = 0.12\nprotocol = "paper"\n')
    cell = load_grid(grids / "t3.toml").cells[0]
    record(tmp_path, "table3", cell.id, recall=0.12, model="mf")
    # a leaderboard cell with another temperature and a longer run: not the study's Table 3 cell
    record(tmp_path, "leaderboard", "gowalla-mf-ssm-s0-ffffffff", recall=0.09, model="mf", tau=0.2, epochs=50)
    text = Report(tmp_path / "records", tmp_path / "out", grids_dir=grids).render().read_text()
    assert "| MF | SSM | 0.1200 |" in text and "| MF | SSM | 0.0900 |" not in text
    assert "from 2 run records" in text and "(1 of the study's grids for its tables)" in text
    # what is left: the one cell of the grid converged
    assert "| table3 | 1 | 1 | 0 | 0 | 0 | 0.0 | 0.0 | 0 / 0 |" in text and "In all 0 runs are left" in text


def test_the_tuning_trace_says_where_each_value_stopped_and_an_own_learning_rate_is_said(tmp_path):
    record(tmp_path, "t3", "bpr-a", recall=0.14, loss="bpr", model="mf", layers=None, similarity="ip", reg=1e-4,
           stop="time_budget", epochs=20, best=20)
    record(tmp_path, "t3", "bpr-b", recall=0.15, loss="bpr", model="mf", layers=None, similarity="ip", reg=1e-3,
           epochs=30, best=25)
    record(tmp_path, "t3", "ssm", recall=0.12, model="mf", layers=None, lr=1e-4)
    text = Report(tmp_path / "records", tmp_path / "out").render().read_text()
    assert ("- gowalla, MF + BPR: reg 0.0001: 0.1400† (time budget @20 (best 20)), 0.001: 0.1500 (early stop @30 "
            "(best 25), selected) (test-selected)") in text
    assert "| MF | SSM | 0.1200 |" in text
    assert "early stop @10 (best 8); own learning rate 0.0001 (the study's: 0.001) |" in text
