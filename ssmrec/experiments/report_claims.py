"""The report's sections on the study's claims, measured on our runs: convergence (SSM vs BPR on
LightGCN, curves and where SSM catches up) and the four claims (popularity bias, hard negatives,
the DCG bound, representation magnitude), with their figures.

:class:`ClaimSections` is mixed into :class:`~ssmrec.experiments.report.Report`: it uses the
report's ``records``, ``use``, ``fig`` and ``_lightgcn_runs``.
"""

from __future__ import annotations

import numpy as np

from ssmrec.experiments.records import Record


def run_name(r: Record) -> str:
    """A short label for a run: model (side or layers) + loss (+ similarity when it is not the default)."""
    s = r.s
    model = {"mf": "MF", "svdpp": f"SVD++-{s.get('side')}", "lightgcn": f"LightGCN-{s.get('layers')}"}[s["model"]]
    sim = "" if s.get("similarity") in (None, "cos") or s["loss"] != "ssm" else f" ({s['similarity']})"
    return f"{model} + {s['loss'].upper()}{sim}"


class ClaimSections:
    """Convergence and the four claims (see the module docstring)."""

    def _convergence_runs(self, dataset: str) -> dict[str, Record]:
        runs = self._lightgcn_runs(dataset, ("ssm", "bpr"))
        return runs if len(runs) == 2 else {}

    def _catch_up(self, runs: dict[str, Record]) -> str:
        """Where SSM's curve first reaches BPR's best, in epochs and seconds."""
        bh = [x for x in runs["bpr"].data["history"] if "recall@20" in x]
        best = max(bh, key=lambda x: x["recall@20"])
        sh = [x for x in runs["ssm"].data["history"] if x.get("recall@20", -1) >= best["recall@20"]]
        told = f"BPR's best ({best['recall@20']:.4f}, epoch {best['epoch']}, {best['elapsed_seconds']:,.0f} s)"
        if not sh:
            return f"SSM never reaches {told}."
        return (f"SSM reaches {told} at epoch {sh[0]['epoch']} ({sh[0]['elapsed_seconds']:,.0f} s)"
                + ("" if runs["ssm"].machine == runs["bpr"].machine else " (different machines: compare epochs)")
                + ".")

    def convergence(self, dataset: str = "gowalla") -> list[str]:
        runs = self._convergence_runs(dataset)
        if not runs:
            return []
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        lines = ["| loss | machine | epochs | seconds / epoch (train) | Recall@20 after 1 / 5 / 10 epochs | best |",
                 "|---|---|---|---|---|---|"]
        for loss, r in runs.items():
            h = [x for x in r.data["history"] if "recall@20" in x]
            ep = [x["epoch"] for x in h]
            rec = [x["recall@20"] for x in h]
            sec = [x["elapsed_seconds"] for x in h]
            axes[0].plot(sec, rec, label=f"{loss.upper()} ({r.machine})")
            axes[1].plot(ep, rec, label=loss.upper())
            at = {x["epoch"]: x["recall@20"] for x in h}
            pick = " / ".join(f"{at[e]:.4f}" if e in at else "–" for e in (1, 5, 10))
            lines.append(f"| {loss.upper()} | {r.machine} | {r.m['epochs_run']} | {r.m['seconds_per_epoch']:.1f} | "
                         f"{pick} | {max(rec):.4f} |")
        axes[0].set_xlabel("wall-clock seconds (training + evaluation)")
        axes[1].set_xlabel("epoch")
        for ax in axes:
            ax.set_ylabel("Recall@20 (test)")
            ax.legend(fontsize=8)
        fig.suptitle(f"{dataset}: LightGCN (1 layer), SSM vs BPR")
        fig.tight_layout()
        fig.savefig(self.fig / f"convergence_{dataset}.png", dpi=120)
        plt.close(fig)
        return [f"![convergence]({self.fig.name}/convergence_{dataset}.png)\n", *lines,
                f"\n{self._catch_up(runs)} The two runs may have run on different machines (column *machine*); "
                "compare epochs, and seconds only between runs of the same machine; seconds per epoch also depend "
                "on what else the machine was running."]

    def _claim_runs(self, dataset: str) -> list[Record]:
        return [r for r in self.records if r.s.get("dataset") == dataset and r.s.get("protocol") == "paper"
                and r.data.get("claims") and r.s.get("seed", 0) == 0]

    def claims(self, dataset: str = "gowalla") -> list[str]:
        rs = self._claim_runs(dataset)
        if not rs:
            return ["No run has recorded claim measurements yet."]
        self.use(rs)

        lines = ["**1. Popularity bias (eq. 11).** Slope of the mean test-time score of an item (over 2,000 random "
                 "users) and of its share of top-20 lists, against log(1 + training degree). Smaller slopes = less "
                 "drawn to popular items.\n",
                 "| run | score vs log-popularity: slope (Spearman) | recommendation frequency vs log-popularity: slope (Spearman) |",
                 "|---|---|---|"]
        for r in sorted(rs, key=run_name):
            pb = r.data["claims"]["popularity_bias"]
            a, b = pb["score_vs_logpop"], pb["recfreq_vs_logpop"]
            lines.append(f"| {run_name(r)} | {a['slope']:.4f} ({a['spearman']:.2f}) | {b['slope']:.5f} ({b['spearman']:.2f}) |")
        lines += ["\n**2. Hard negatives (eq. 12-14).** For trained models, each in-batch negative's term of the "
                  "gradient on the user representation (the terms are checked to sum to the autograd gradient), as a "
                  "share of its row, against sqrt(1 - c²)·exp(c/τ) normalised the same way.\n",
                  "| run | τ | negatives | max abs. difference from eq. 14 | gradient share of the hardest 10% | "
                  "negatives' cosine (10/50/90/99%) |", "|---|---|---|---|---|---|"]
        for r in sorted(rs, key=run_name):
            hn = r.data["claims"]["hard_negatives"]
            if r.s["loss"] != "ssm":
                continue
            q = ", ".join(f"{v:.2f}" for v in hn["cosine_quantiles"])
            lines.append(f"| {run_name(r)} | {hn['tau']} | {hn['negatives']} | {hn['max_abs_error']:.1e} | "
                         f"{hn['share_of_gradient_from_hardest_10pct']:.1%} | {q} |")
        lines += ["\n**3. DCG bound (eq. 15-17).** Per test user: −log DCG (ranking over all items) against the "
                  "SSM loss over the full item set, averaged over the user's held-out items, with the run's training "
                  "similarity and temperature.\n",
                  "| run | users | bound holds (users) | bound holds (positives) | mean −log DCG | mean full-softmax loss | correlation |",
                  "|---|---|---|---|---|---|---|"]
        for r in sorted(rs, key=run_name):
            d = r.data["claims"]["dcg_bound"]
            lines.append(f"| {run_name(r)} | {d['users']} | {d['share_users_bound_holds']:.1%} | "
                         f"{d['share_positives_bound_holds']:.1%} | {d['mean_neg_log_dcg']:.3f} | "
                         f"{d['mean_full_softmax_loss']:.3f} | {d['correlation']:.2f} |")
        lines += ["\n**4. Magnitude (eq. 29-30).** Log-log slope of the final representation norm against node "
                  "degree (Spearman in brackets). Eq. 30 predicts a squared norm of a|P|^(1-2a0) + b|P|^(2-2a0) for "
                  "the side that aggregates its neighbours: growing with degree for a0 < 1 (LightGCN's symmetric "
                  "normalisation is a0 = 0.5), flat or falling for a0 = 1 (SVD++ user side [1, 0] averages a "
                  "user's items; its items are not propagated). MF has no such mechanism.\n",
                  "| run | items: slope (Spearman) | users: slope (Spearman) | mean item norm |", "|---|---|---|---|"]
        for r in sorted(rs, key=run_name):
            mg = r.data["claims"]["magnitude"]
            i, u = mg["item"]["loglog"], mg["user"]["loglog"]
            lines.append(f"| {run_name(r)} | {i['slope']:.3f} ({i['spearman']:.2f}) | {u['slope']:.3f} ({u['spearman']:.2f}) | "
                         f"{mg['item']['mean_norm']:.3f} |")
        self._plot_claims(rs, dataset)
        lines.append(f"\n![claims]({self.fig.name}/claims_{dataset}.png)")
        return lines

    def _plot_claims(self, rs: list[Record], dataset: str) -> None:
        fig = claims_figure(rs, dataset)
        import matplotlib.pyplot as plt

        fig.savefig(self.fig / f"claims_{dataset}.png", dpi=110)
        plt.close(fig)


def _setting(key: str, value: object) -> str:
    return f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"


def _differing(rs: list[Record]) -> list[dict[str, object]]:
    """Per run, the settings (loss parameters included) in which it differs from the other runs
    of its :func:`run_name`: empty for a run alone under its name."""
    names = [run_name(r) for r in rs]
    out: list[dict[str, object]] = [{} for _ in rs]
    for name in dict.fromkeys(names):
        same = [i for i, n in enumerate(names) if n == name]
        if len(same) < 2:
            continue
        settings = [{**{k: v for k, v in rs[i].s.items() if k != "loss_params"}, **(rs[i].s.get("loss_params") or {})}
                    for i in same]
        keys = [k for k in dict.fromkeys(k for s in settings for k in s) if len({repr(s.get(k)) for s in settings}) > 1]
        for i, s in zip(same, settings):
            out[i] = {k: s[k] for k in keys if s.get(k) is not None}  # an unset setting goes unsaid
    return out


def claim_runs_in_order(rs: list[Record]) -> list[Record]:
    """Runs by :func:`run_name`, then by the settings that tell runs of one name apart (numbers
    as numbers: reg 1e-06 before 1e-05 before 0.0001)."""
    diff = {id(r): d for r, d in zip(rs, _differing(rs))}

    def key(r: Record):
        return run_name(r), [(0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v)) for v in diff[id(r)].values()]

    return sorted(rs, key=key)


def claim_labels(rs: list[Record]) -> list[str]:
    """One legend label per run, all different: :func:`run_name`, and where several runs share
    it, the settings in which they differ (``MF + BPR (reg=0.01)``); runs alike in every
    setting are told apart by their cell."""
    labels = [f"{run_name(r)} ({', '.join(_setting(k, v) for k, v in d.items())})" if d else run_name(r)
              for r, d in zip(rs, _differing(rs))]
    twice = {label for label in labels if labels.count(label) > 1}
    return [f"{label} [{r.data.get('cell') or r.path.stem}]" if label in twice else label
            for r, label in zip(rs, labels)]


def claims_figure(rs: list[Record], dataset: str):
    """The four claims' panels (a :class:`matplotlib.figure.Figure`; the caller saves and closes
    it). Each run has one colour, line style and marker in every panel and one entry in a
    single legend below the panels, so the legend names each run once and covers no data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    rs = claim_runs_in_order(rs)
    labels = claim_labels(rs)
    widest = max(len(label) for label in labels)
    ncol = max(1, min(len(rs), int(17 / (0.055 * widest + 0.7))))  # as many columns as fit the width
    rows = -(-len(rs) // ncol)
    colours = plt.get_cmap("tab10").colors
    dashes, markers = ("-", "--", ":", "-."), ("o", "^", "s", "D")
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.9 + 0.16 * rows), layout="constrained")
    handles = []
    for k, (r, label) in enumerate(zip(rs, labels)):
        style = {"color": colours[k % 10], "linestyle": dashes[k // 10 % 4]}
        marker = markers[k // 10 % 4]
        handles.append(Line2D([], [], marker=marker, ms=4, label=label, **style))
        c = r.data["claims"]
        axes[0].plot(c["popularity_bias"]["recfreq_curve"]["x"], c["popularity_bias"]["recfreq_curve"]["y"], **style)
        if r.s["loss"] == "ssm":
            hn = c["hard_negatives"]
            axes[1].plot(hn["curve"]["x"], hn["curve"]["y"], marker, ms=3, color=style["color"])
            axes[1].plot(hn["theory_curve"]["x"], hn["theory_curve"]["y"], lw=1, **style)
        d = c["dcg_bound"]["sample"]
        axes[2].scatter(d["neg_log_dcg"], d["loss"], s=3, marker=marker, color=style["color"])
        m = c["magnitude"]["item"]["curve"]
        axes[3].plot(np.exp(m["x"]), m["y"], **style)
    axes[0].set(xlabel="log(1 + item degree)", ylabel="share of top-20 lists", yscale="log",
                title="1. recommendations vs popularity")
    axes[1].set(xlabel="cosine(user, negative)", ylabel="mean gradient share",
                title="2. gradient weight (dots) vs eq. 14 (lines), SSM", yscale="log")
    lo = min(min(r.data["claims"]["dcg_bound"]["sample"]["neg_log_dcg"] or [0]) for r in rs)
    hi = max(max(r.data["claims"]["dcg_bound"]["sample"]["loss"] or [1]) for r in rs)
    axes[2].plot([lo, hi], [lo, hi], "k--", lw=1)
    axes[2].set(xlabel="-log DCG", ylabel="full-item SSM loss", title="3. bound: points above the diagonal")
    axes[3].set(xlabel="item degree", ylabel="mean representation norm", xscale="log", yscale="log",
                title="4. magnitude vs degree")
    fig.legend(handles=handles, loc="outside lower center", fontsize=7, frameon=False, ncol=ncol)
    fig.suptitle(f"{dataset}: the four claims, measured ({len(rs)} runs)")
    return fig


__all__ = ["ClaimSections", "claim_labels", "claims_figure", "run_name"]
