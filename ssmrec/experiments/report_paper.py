"""The report's Tables 4 (training and test similarity) and 5 (SVD++'s propagation) and Figure 1
(Recall@20 by item popularity group, with the beyond-accuracy numbers), beside the paper's.

:class:`PaperSections` is mixed into :class:`~ssmrec.experiments.report.Report`: it uses the
report's ``records``, ``all_records``, ``use``, ``notes``, ``near``, ``out``, ``fig``, ``gaps``
and ``_lightgcn_runs``.
"""

from __future__ import annotations

import numpy as np

from ssmrec.experiments.records import DATASETS, FIG1_LOSSES, Record, select, stop_note
from ssmrec.experiments.report_table3 import PAPER_T4, PAPER_T5, _write_csv, likely_reason, rel


def _label(loss: str) -> str:
    return {"softmax": "SM"}.get(loss, loss.upper())



class PaperSections:
    """Tables 4 and 5 and Figure 1 (see the module docstring)."""

    # ---------------------------------------------------------------- Table 4
    def table4(self) -> list[str]:
        lines, rows_csv = [], []
        for ds in DATASETS:
            body = []
            for train_sim, tau_label in (("ip", "IP"), ("cos", "COS")):
                rs = self.use(select(self.records, dataset=ds, protocol="paper", model="lightgcn", layers=1,
                                     loss="ssm", similarity=train_sim))
                rs = [r for r in rs if r.s["seed"] == 0]
                for test_sim in ("ip", "cos"):
                    paper = PAPER_T4.get((ds, train_sim, test_sim))
                    if not rs or paper is None or test_sim not in rs[0].data.get("test_by_similarity", {}):
                        continue
                    ours = rs[0].data["test_by_similarity"][test_sim]["recall@20"]
                    body.append(f"| {tau_label}-{test_sim.upper()} | {ours:.4f}{' †' if rs[0].budget_stopped else ''} | "
                                f"{paper:.4f} | {rel(ours, paper):+.1%} | tau {rs[0].s['tau']} |")
                    rows_csv.append({"dataset": ds, "train": train_sim, "test": test_sim, "recall@20": ours,
                                     "paper": paper})
                    if abs(rel(ours, paper)) > 0.02:
                        self.gaps.append(f"Table 4, {ds}, {tau_label}-{test_sim.upper()}: {ours:.4f} vs {paper:.4f} "
                                         f"({rel(ours, paper):+.1%}). Likely reason: "
                                         + likely_reason(("t4", ds, train_sim, test_sim), rs, ours, paper, self.notes))
            if body:
                lines += [f"\n### {ds} (LightGCN + SSM, Recall@20; one trained model per training similarity, "
                          "evaluated with both test similarities)\n",
                          "| train-test | ours | paper | Δ | notes |", "|---|---|---|---|---|", *body]
        _write_csv(self.out / "table4.csv", rows_csv)
        return lines

    # ---------------------------------------------------------------- Table 5
    def table5(self) -> list[str]:
        lines, rows_csv = [], []
        for ds in DATASETS:
            body = []
            for a0, a1 in ((0.5, 0.0), (0.5, 0.5), (1.0, 0.0)):
                cells = []
                for side in ("user", "item"):
                    rs = self.use(select(self.records, dataset=ds, protocol="paper", model="svdpp", loss="ssm",
                                         side=side, a0=a0, a1=a1))
                    rs = [r for r in rs if r.s["seed"] == 0]
                    paper = PAPER_T5.get((ds, side, a0, a1))
                    shown = f"{paper:.4f}" if paper is not None else "–"
                    if rs:
                        ours = rs[0].test()
                        cells.append(f"{ours:.4f}{' †' if rs[0].budget_stopped else ''} | {shown}")
                        rows_csv.append({"dataset": ds, "side": side, "a0": a0, "a1": a1, "recall@20": ours,
                                         "paper": paper})
                        if paper is not None and abs(rel(ours, paper)) > 0.02:
                            self.gaps.append(f"Table 5, {ds}, {side} side [{a0}, {a1}]: {ours:.4f} vs {paper:.4f} "
                                             f"({rel(ours, paper):+.1%}). Likely reason: "
                                             + likely_reason(("t5", ds, side, a0, a1), rs, ours, paper, self.notes))
                    else:
                        cells.append(f"not run | {shown}")
                if any("not run" not in c for c in cells):
                    body.append(f"| [{a0}, {a1}] | {cells[0]} | {cells[1]} |")
            if body:
                absent = "" if any(k[0] == ds for k in PAPER_T5) else "; not in the paper's Table 5"
                lines += [f"\n### {ds} (SVD++ + SSM, Recall@20{absent})\n",
                          "| [a0, a1] | user side (ours) | paper | item side (ours) | paper |",
                          "|---|---|---|---|---|", *body]
        _write_csv(self.out / "table5.csv", rows_csv)
        return lines

    # ---------------------------------------------------------------- Figure 1 and beyond accuracy
    def figure1(self, dataset: str = "gowalla") -> list[str]:
        runs = self._lightgcn_runs(dataset, FIG1_LOSSES)
        if not runs:
            return []
        self.use(list(runs.values()))
        self._plot_longtail(runs, dataset)
        lines = [f"![Recall@20 by item popularity group]({self.fig.name}/figure1_{dataset}.png)\n",
                 "| loss | Recall@20 | groups 1-3 (tail) | groups 4-7 | groups 8-10 (head) | coverage@20 | "
                 "avg. popularity of recs | popularity percentile | Gini of exposure | how it stopped |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
        rows_csv = []
        for loss, r in runs.items():
            p = r.data["profile"]
            g = p["group_recall"]
            lines.append(f"| {loss.upper()} | {p['recall']:.4f} | {sum(g[:3]):.4f} | {sum(g[3:7]):.4f} | "
                         f"{sum(g[7:]):.4f} | {p['coverage']:.3f} | {p['avg_popularity']:.0f} | "
                         f"{p['avg_popularity_percentile']:.3f} | {p['gini']:.3f} | {stop_note([r])} |")
            rows_csv.append({"loss": loss, **{f"group{k + 1}": v for k, v in enumerate(g)}, "recall@20": p["recall"],
                             "coverage": p["coverage"], "avg_popularity": p["avg_popularity"], "gini": p["gini"]})
        share = runs[next(iter(runs))].data["profile"]["group_item_share"]
        lines.append("\nItems per group (share of the catalogue, group 1 = least popular): "
                     + ", ".join(f"{s:.2%}" for s in share) + ".")
        lines += self._figure1_notes(runs, dataset)
        _write_csv(self.out / f"figure1_{dataset}.csv", rows_csv)
        return lines

    def _figure1_notes(self, runs: dict[str, Record], dataset: str) -> list[str]:
        """The written notes of the bars the figure has (``figure1`` for all, ``figure1.<loss>`` for a
        loss, said only when its bar is drawn), and why a loss of the study's figure has none."""
        said = [self.notes["figure1"]] if self.notes.get("figure1") else []
        said += [self.notes[f"figure1.{loss}"] for loss in runs if self.notes.get(f"figure1.{loss}")]
        for loss in FIG1_LOSSES:
            if loss in runs:
                continue
            left = [r for r in self.all_records if r.name in self.near and r.s.get("loss") == loss
                    and r.s.get("dataset") == dataset and r.s.get("model") == "lightgcn"]
            for r in left:
                cell, differ = self.near[r.name]
                how = ", ".join(f"{k} {a} (the cell's now {b})" for k, (a, b) in differ.items())
                said.append(f"{_label(loss)} has no bar: its record `{r.name}` has the training settings of `{cell}` "
                            f"but was evaluated with {how}, so its numbers are not that cell's; the plan below counts "
                            "the cell as run.")
        return [line for text in said for line in ("", text)]

    def _plot_longtail(self, runs: dict[str, Record], dataset: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(9, 3.6))
        width = 0.8 / len(runs)
        for k, (loss, r) in enumerate(runs.items()):
            g = r.data["profile"]["group_recall"]
            ax.bar(np.arange(1, len(g) + 1) + (k - (len(runs) - 1) / 2) * width, g, width, label=loss.upper())
        ax.set_xlabel("item group (1 = least popular, 10 = most popular; equal training interactions)")
        ax.set_ylabel("Recall@20 contribution")
        ax.set_title(f"{dataset}: LightGCN, Recall@20 decomposed by popularity group (eq. 22)")
        ax.set_xticks(range(1, 11))
        ax.legend(ncol=len(runs), fontsize=8)
        fig.tight_layout()
        fig.savefig(self.fig / f"figure1_{dataset}.png", dpi=120)
        plt.close(fig)
