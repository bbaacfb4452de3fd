"""Render the reproduction report from recorded results only: tables like the study's, figures.

``ssmrec report`` reads every record under ``results/records`` (one JSON per finished run), picks
the runs that fill each cell of the study's tables by their settings, and writes
``results/REPORT.md``, CSV tables and PNG figures. Nothing is trained or evaluated here.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ssmrec.errors import ConfigError
from ssmrec.experiments.lightgcn_tables import layers_section, order_verdict, table2_section  # noqa: F401
from ssmrec.experiments.records import (  # noqa: F401  (re-exported: the report's public names)
    BUDGET_STOPS,
    DATASETS,
    FIG1_LOSSES,
    STUDY_L2,
    TUNED,
    CellRecords,
    Record,
    _score,
    authoritative,
    budget_text,
    default_similarity,
    fmt_cell,
    load_records,
    search_trace,
    searched,
    select,
    stop_note,
)
from ssmrec.experiments.report_claims import ClaimSections, run_name  # noqa: F401  (run_name re-exported)
from ssmrec.experiments.report_paper import PaperSections
from ssmrec.experiments.report_table3 import (  # noqa: F401  (re-exported: the study's numbers)
    PAPER_T3,
    PAPER_T4,
    PAPER_T5,
    T3_MODELS,
    Table3Sections,
    _write_csv,
    likely_reason,
    rel,
)
from ssmrec.experiments.stats import (
    summary,
)
from ssmrec.experiments.summary import grid_tables, render_grids
from ssmrec.train.config_io import read_toml


# ----------------------------------------------------------------------------- the report
class Report(Table3Sections, PaperSections, ClaimSections):
    def __init__(self, records_dir: str | Path, out_dir: str | Path, notes: dict[str, str] | None = None,
                 grids_dir: str | Path | None = None):
        self.records_dir = Path(records_dir)
        self.grids_dir = Path(grids_dir) if grids_dir is not None else None
        # every record read (the index lists them all); the sections read one record per cell id,
        # the first by records.rank (the longest run, then a converged one, then the newer): a record
        # of the same cell in another grid's folder is superseded by it everywhere
        self.all_records = load_records(records_dir)
        self.records, self.superseded = authoritative(self.all_records)
        self.out = Path(out_dir)
        self.fig = self.out / "figures"
        self.notes = notes or {}
        self.gaps: list[str] = []
        self.used: dict[str, tuple[Record, list[str]]] = {}  # record name -> (record, sections showing it)
        self.section = "a section"  # the section being rendered: what use() notes
        self.others: list[Record] = []
        self.traces: list[str] = []
        self.near: dict[str, tuple[str, dict]] = {}  # record name -> (grid cell, settings it differs in)

    def study_records(self) -> list[Record]:
        """The records of the study's grids (every ``experiments/*.toml`` but the leaderboard's and
        NTR's), found by cell hash: a leaderboard cell with other settings (another temperature,
        logQ, sampled negatives) must not fill a cell of the study's tables. Without the grid files,
        every record."""
        if self.grids_dir is None:
            return self.records
        grids = [p for p in sorted(self.grids_dir.glob("*.toml")) if p.stem not in ("leaderboard", "ntr")]
        if not grids:
            return self.records
        from ssmrec.experiments.grid import load_grid

        finder = CellRecords(self.records)
        keep: set[int] = set()
        for path in grids:
            try:
                cells = load_grid(path).cells
            except Exception:  # a grid this code cannot read (a newer one) takes nothing away
                continue
            for cell in cells:
                found, differ = finder.find(cell.key, cell.digest, near=True)
                if differ:  # its training settings, another evaluation setting: not this cell's numbers
                    self.near.update({r.name: (f"{path.stem}/{cell.id}", differ) for r in found})
                else:
                    keep |= {id(r) for r in found}
        return [r for r in self.records if id(r) in keep]

    def plan(self) -> list[str]:
        """What is left to run in every grid of ``grids_dir``, priced from all the records."""
        if self.grids_dir is None:
            return []
        from ssmrec.experiments.plan import plan_grid, plan_lines

        plans, unread = [], []
        for path in sorted(self.grids_dir.glob("*.toml")):
            try:  # all the records: a superseded one still times an epoch on its machine
                plans.append(plan_grid(path, self.all_records))
            except ConfigError as e:  # a grid this code cannot read (a newer one): said, not counted
                unread.append(f"- `{path.name}` is not counted: {e}")
        return plan_lines(plans) + (["", *unread] if unread else [])

    def use(self, rs: list[Record]) -> list[Record]:
        """Note that the section being rendered (:attr:`section`) shows these records."""
        for r in rs:
            where = self.used.setdefault(r.name, (r, []))[1]
            if self.section not in where:
                where.append(self.section)
        return rs

    # ---------------------------------------------------------------- selections shared by sections
    def _t3_arms(self, dataset: str, want: dict[str, Any]) -> dict[str, list[Record]]:
        """Table 3's BPR and SSM records for one model row (each loss with its own training similarity)."""
        return {loss: select(self.records, dataset=dataset, protocol="paper", loss=loss,
                             **default_similarity(loss), **want) for loss in ("bpr", "ssm")}

    def _lightgcn_runs(self, dataset: str, losses: tuple[str, ...]) -> dict[str, Record]:
        """Seed 0 of 1-layer LightGCN under the paper protocol, one record per loss that has one."""
        runs = {}
        for loss in losses:
            rs = [r for r in select(self.records, dataset=dataset, protocol="paper", model="lightgcn", layers=1,
                                    loss=loss, **default_similarity(loss)) if r.s["seed"] == 0]
            if rs:
                runs[loss] = rs[0]
        return runs

    def _evaluated_otherwise(self) -> dict[tuple[str, str], str]:
        """(dataset, loss) of 1-layer LightGCN runs recorded only under another evaluation setting
        than their grid cell's now (see :meth:`study_records`), with the record's name."""
        return {(r.s.get("dataset"), r.s.get("loss")): r.name for r in self.all_records
                if r.name in self.near and r.s.get("model") == "lightgcn" and r.s.get("layers") == 1}

    def table2(self) -> list[str]:
        return table2_section(self.records, self.use, elsewhere=self._evaluated_otherwise())

    def layers(self) -> list[str]:
        return layers_section(self.records, self.use)

    def corrections(self, board: list[Record]) -> list[str]:
        """Corrections of what a commit message said about a run, checked against its record:
        ``correction.<dataset>.<model>.<loss>.<setting>`` notes; the value shown is the record's."""
        from ssmrec.experiments.leaderboard import LABELS, _show, arms, model_label

        found = arms(board)
        out = []
        for key, text in sorted(self.notes.items()):
            parts = key.split(".")
            if parts[0] != "correction" or len(parts) != 5:
                continue
            _, ds, model, loss, setting = parts
            arm = found.get((ds, model, loss))
            if arm is None:
                continue
            r = arm.chosen[0]
            value = r.s.get(setting, (r.s.get("loss_params") or {}).get(setting))
            out.append(f"- Correction: {ds}, {model_label(model)} + {LABELS.get(loss, loss)} ran with {setting} "
                       f"**{_show(value)}** (its record, `{r.name}`); {text}")
        return ["", "Corrections of what a commit message said about a run, against its record:", "", *out] if out else []

    # ---------------------------------------------------------------- holdout vs paper protocol
    def holdout(self) -> list[str]:
        lines = []
        for loss in ("ssm", "bpr"):
            sim = default_similarity(loss)
            h = self.use(select(self.records, dataset="gowalla", protocol="holdout", model="lightgcn", layers=1,
                                loss=loss, **sim))
            p = select(self.records, dataset="gowalla", protocol="paper", model="lightgcn", layers=1, loss=loss, **sim)
            if not h:
                continue
            hr = h[0]
            pv = f"{summary([r.test() for r in p])['mean']:.4f}" if p else "not run"
            lines.append(f"| LightGCN + {loss.upper()} | {hr.m['valid']['recall@20']:.4f} | {hr.test():.4f}"
                         f"{' †' if hr.budget_stopped else ''} | {pv} | {stop_note([hr])} |")
        if lines:
            lines = ["| run | Recall@20 validation (selects the epoch) | Recall@20 test (once) | paper protocol "
                     "(test-selected) | how it stopped |", "|---|---|---|---|---|", *lines]
        return lines

    # ---------------------------------------------------------------- findings
    def findings(self) -> list[str]:
        """One line per question the study answers, computed from the records."""
        out = []
        for ds in DATASETS:
            verdicts = []
            for label, want in T3_MODELS.items():
                arm = self._t3_arms(ds, want)
                if arm["bpr"] and arm["ssm"]:
                    verdicts.append(f"{label}: " + self._verdict(ds, want["model"], arm["bpr"], arm["ssm"]))
            if verdicts:
                out.append(f"- **SSM vs BPR on {ds}** (Recall@20): " + "; ".join(verdicts) + ".")
        runs = {loss: r.data["profile"] for loss, r in self._lightgcn_runs("gowalla", FIG1_LOSSES).items()}
        if "ssm" in runs and len(runs) > 1:
            tail = {k: sum(p["group_recall"][:5]) / max(p["recall"], 1e-12) for k, p in runs.items()}
            ranked = ", ".join(f"{k.upper()} {v:.0%}" for k, v in sorted(tail.items(), key=lambda kv: -kv[1]))
            out.append(f"- **Long tail (Gowalla, LightGCN)**: share of Recall@20 earned on the 5 least popular item "
                       f"groups — {ranked}; coverage@20 of SSM {runs['ssm']['coverage']:.2f} vs "
                       + ", ".join(f"{k.upper()} {p['coverage']:.2f}" for k, p in runs.items() if k != "ssm") + ".")
        claims = self._claim_runs("gowalla")
        if claims:
            bound = min(r.data["claims"]["dcg_bound"]["share_users_bound_holds"] for r in claims)
            out.append(f"- **DCG bound**: holds for {bound:.0%} of the sampled users in every analysed run "
                       f"({len(claims)} runs).")
            by_model: dict[str, dict[str, dict]] = {}
            for r in claims:
                by_model.setdefault(r.s["model"], {}).setdefault(r.s["loss"], r.data["claims"]["popularity_bias"])
            pop = [f"{m}: " + ", ".join(f"{loss.upper()} {pb['recfreq_vs_logpop']['slope']:.5f} "
                                        f"(Spearman {pb['recfreq_vs_logpop']['spearman']:.2f})"
                                        for loss, pb in sorted(arms.items(), key=lambda kv: kv[0] != "ssm"))
                   for m, arms in sorted(by_model.items()) if len(arms) > 1]
            if pop:
                out.append("- **Popularity bias**: slope of an item's share of top-20 lists on its log popularity — "
                           + "; ".join(pop) + " (smaller = less drawn to popular items).")
            hn = [r.data["claims"]["hard_negatives"] for r in claims if r.s["loss"] == "ssm"]
            if hn:
                hard = [h["share_of_gradient_from_hardest_10pct"] for h in hn]
                err = max(h["max_abs_error"] for h in hn)
                out.append(f"- **Hard negatives**: in trained SSM models the hardest 10% of in-batch negatives carry "
                           f"{min(hard):.0%}–{max(hard):.0%} of the gradient on the user; the per-negative weights "
                           f"differ from sqrt(1 - c²)·exp(c/τ) by at most {err:.1e}.")
            mag = {}
            for r in claims:
                mag.setdefault(run_name(r), []).append(
                    r.data["claims"]["magnitude"]["item"]["loglog"]["slope"])
            if len(mag) > 1:
                out.append("- **Magnitude**: log-log slope of item norm on item degree — "
                           + ", ".join(f"{k} {np.mean(v):.3f}" for k, v in sorted(mag.items())) + ".")
        runs = self._convergence_runs("gowalla")
        if runs:
            out.append(f"- **Convergence (Gowalla, LightGCN)**: {self._catch_up(runs)}")
        return out

    # ---------------------------------------------------------------- searches
    def searches(self) -> list[str]:
        lines = []
        for p in sorted(self.records_dir.glob("*/search-*.json")):
            d = json.loads(p.read_text())
            scores = ", ".join(f"{k}: {v:.4f}" for k, v in d["scores"].items())
            lines.append(f"- `{p.parent.name}/{p.stem[len('search-'):]}`: {d['param']} = **{d['best']}** selected on "
                         f"{d['selected_on']} {d['metric']} ({scores})")
        return lines

    # ---------------------------------------------------------------- index
    def index(self) -> list[str]:
        """Every record read, one row each (two grids' records of one cell both), with where the
        report shows it, or which record supersedes it."""
        lines = ["| record | seed | epochs | stop | budget given | train s | machine | commit | finished | shown in |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(self.all_records, key=lambda r: r.name):
            env = r.data.get("env", {})
            rel_path = r.path.relative_to(self.out) if r.path.is_relative_to(self.out) else r.path
            if r.name in self.superseded:
                shown = (f"superseded by `{self.superseded[r.name].name}` (the same cell; every section shows "
                         "that record)")
            elif r.name in self.used:
                shown = ", ".join(self.used[r.name][1])
            elif r.name in self.near:
                shown = f"none (evaluated otherwise than `{self.near[r.name][0]}`)"
            else:
                shown = "none (of no table's cell)"
            lines.append(f"| [{r.name}]({rel_path}) | {r.s.get('seed')} | {r.m['epochs_run']} | {r.m['stop_reason']} | "
                         f"{budget_text(r)} | {float(r.m.get('train_seconds') or 0):.0f} | {r.machine} | "
                         f"{str(env.get('commit'))[:12]} | {r.data.get('finished_at', '')} | {shown} |")
        return lines

    # ---------------------------------------------------------------- assemble
    def render(self) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        self.fig.mkdir(exist_ok=True)
        from ssmrec.experiments.leaderboard import (
            grid_records,
            headlines,
            leaderboard_section,
            ntr_section,
            write_which_loss,
        )

        grids = self.grids_dir or Path("experiments-not-given")
        board = grid_records(self.records, grids / "leaderboard.toml", "leaderboard")
        ntr = grid_records(self.records, grids / "ntr.toml", "ntr")
        write_which_loss(board, self.out)
        read = len(self.all_records)
        left = self.plan()
        self.records = self.study_records()
        sections = {}
        for name, make in (("Table 3", self.table3), ("Table 2", self.table2), ("Table 4", self.table4),
                           ("Table 5", self.table5), ("layers", self.layers), ("Figure 1", self.figure1),
                           ("holdout", self.holdout), ("convergence", self.convergence),
                           ("the four claims", self.claims), ("In short", self.findings)):
            self.section = name
            sections[name] = make()
        t3, t2, t4, t5, lay = (sections[k] for k in ("Table 3", "Table 2", "Table 4", "Table 5", "layers"))
        f1, ho, cv, cl = (sections[k] for k in ("Figure 1", "holdout", "convergence", "the four claims"))
        found = sections["In short"] + headlines(board, ntr)
        for name, rs in (("leaderboard and WHICH_LOSS", board), ("NTR", ntr), ("other grids", self.others)):
            self.section = name
            self.use(rs)
        from ssmrec.experiments.budget import cost_lines, plot_curves

        # the cells of the study's tables (a search's other values and the other pages' records aside)
        aside = {"Table 3 (L2 search)", "leaderboard and WHICH_LOSS", "NTR", "other grids"}
        used = [r for r, where in self.used.values() if set(where) - aside]
        budget = cost_lines(used, self.records)
        budget_fig = plot_curves(used, self.fig / "budget_stopped.png")
        md = [
            "# Reproducing *On the Effectiveness of Sampled Softmax Loss for Item Recommendation*",
            "",
            f"Generated by `ssmrec report` on {time.strftime('%Y-%m-%d %H:%M')} from {read} run "
            f"records in `{self.records_dir}/` ({len(self.records)} of the study's grids for its tables) (nothing is re-run to make this page). Every number links to its "
            f"record in the index at the end (settings, seed, epochs, budget, time, machine, commit), which lists all "
            f"{read} records and where each is shown"
            + (f" ({len(self.superseded)} superseded by a longer run of the same cell in another grid's folder)"
               if self.superseded else "") + ".",
            "",
            "## In short",
            "",
            *(found or ["No findings yet."]),
            "",
            "Conventions: `paper` protocol = LightGCN's train/test files, best epoch chosen on the test set as the "
            "study's code does (test-selected, optimistic). † = stopped by its budget (time or epochs), not by "
            "early stopping; *how it stopped* gives the epochs run and the best epoch, and the time budget where "
            "the record says it (records made before they carried their budget do not: *budget given* in the "
            "index). Δ = relative difference from the paper. Means ± standard deviation over seeds where several "
            "ran.",
            "",
            "## Table 3: BPR vs SSM on MF, SVD++ and LightGCN (Recall@20 / NDCG@20)",
            *t3,
            "",
            "RI = relative improvement of SSM over BPR on the same model (ours, with a 95% paired-bootstrap "
            "interval over the test users of the two seed-0 runs, then the paper's); the p-value compares SSM with BPR (paired t-test over seeds when both ran several, else a Wilcoxon signed-rank test "
            "over the per-user Recall@20 of the two seed-0 runs).",
            "",
            *(["Settings searched (Recall@20 of each value tried; the table shows the selected one):", "",
               *self.traces, ""] if self.traces else []),
            "## LightGCN layers, searched per loss (Recall@20; † = stopped by its budget)",
            *(lay or ["Not run yet: `experiments/layers.toml` (a GPU job for BPR)."]),
            "",
            "## Table 2: LightGCN (1 layer) with each loss",
            *(t2 or ["No run yet."]),
            "",
            "## Table 4: training vs test similarity",
            *(t4 or ["No run yet."]),
            "",
            "## Table 5: SVD++ message passing, user side vs item side",
            *(t5 or ["No run yet."]),
            "",
            "## Figure 1: long-tail analysis and beyond-accuracy metrics (Gowalla, LightGCN)",
            *(f1 or ["No run yet."]),
            "",
            "## Protocol: test-selected vs validation-selected (Gowalla)",
            *(ho or ["No run yet."]),
            "",
            "## Convergence: SSM vs BPR",
            *(cv or ["Needs both the SSM and the BPR run."]),
            "",
            "## The four claims, measured (Gowalla)",
            *cl,
            "",
            "## Temperature searches (coarse grid, then steps of 0.02 around the best)",
            "",
            *(self.searches() or ["None recorded yet: `experiments/tau-search.toml` runs the study's search for LightGCN + SSM "
                                   "on Gowalla under the holdout protocol (about nine runs); the tables above use the "
                                   "temperatures of the authors' code (0.12 Gowalla, 0.14 Yelp2018)."]),
            "",
            "## Beyond the study: the losses that came after it",
            "",
            "`experiments/leaderboard.toml`: each loss tuned on its own hyper-parameter, mean ± std over seeds, beside "
            "the published numbers on the same splits (run with their authors' settings, shown beside them: not "
            "like-for-like); `WHICH_LOSS.md` turns the same records into advice "
            "(accuracy, long tail, coverage, cost, sensitivity).",
            *(leaderboard_section(board) or ["", "No leaderboard run recorded yet."]),
            *self.corrections(board),
            "",
            "## Negative feedback: SSM vs SSM + NTR (MovieLens-100K, ratings >= 4 positive, <= 2 disliked)",
            "",
            *(ntr_section(ntr) or ["No run recorded yet: `ssmrec experiment experiments/ntr.toml`."]),
            "",
            "## Where we differ from the paper by more than 2%",
            "",
            *([f"- {g}" for g in self.gaps] or ["Nowhere."]),
            "",
            "## Cells stopped by their budget (time or epochs): how far they got, what finishing costs",
            "",
            *(budget or ["None: every cell in the tables above stopped on its early-stopping criterion."]),
            *(["", "Their curves: ![budget-stopped runs](figures/budget_stopped.png). `ssmrec experiment GRID "
               "--extend` continues them (resuming their run where it is on the machine)."] if budget_fig else []),
            "",
            "## What is left to run, and what it would cost",
            "",
            "Every grid of `experiments/`, cell by cell against the records: converged (stopped by its early-stopping "
            "criterion), stopped by a budget, or not run. Epochs to go and seconds per epoch are medians of our own "
            "records of the same dataset, model and loss (`ssmrec.experiments.plan`); a run with nothing to estimate "
            "from is counted in the last column, not priced.",
            "",
            *(left or ["No grid files given."]),
            "",
            "## Run index",
            "",
            *self.index(),
            "",
            *(["# Other grids", "", *grid_tables(self.others)] if self.others else []),
        ]
        path = self.out / "REPORT.md"
        path.write_text("\n".join(md))
        return path


def load_notes(path: str | Path) -> dict[str, str]:
    p = Path(path)
    if not p.exists():
        return {}
    return {k: str(v) for k, v in read_toml(p).get("notes", {}).items()}


STUDY_DATASETS = DATASETS

def render(records_dir: str | Path = "results/records", out_dir: str | Path = "results",
           notes: str | Path = "results/notes.toml", grids_dir: str | Path = "experiments") -> Path:
    """The study's report when the records hold runs on its datasets (other grids follow it);
    otherwise a report of the grids that are there."""
    report = Report(records_dir, out_dir, load_notes(notes), grids_dir=grids_dir)
    study = [r for r in report.records if r.data["settings"].get("dataset") in STUDY_DATASETS]
    report.others = [r for r in report.records if r not in study]
    if not study:
        return render_grids(report.records, Path(records_dir), Path(out_dir))
    return report.render()
