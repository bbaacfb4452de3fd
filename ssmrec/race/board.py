"""The race's answer, from its state and its finalists' per-user values: a leaderboard with 95%
intervals over seeds and over users, paired tests of the leader against each other arm, ranking
metrics beside retrieval ones, long tail, coverage, cost and sensitivity; one line of advice that
says when the data cannot separate the leaders; a figure, a markdown report and a table.

Statistics (recomputable from the files the race leaves):

* over seeds: mean and 95% t-interval of the arm's test Recall@K over its finalist seeds;
* over users: each test user's value averaged over the seeds, then the mean and its 95%
  t-interval over users (the seeds share the test users);
* leader vs arm: paired t-test over the seeds both ran (two or more), Wilcoxon signed-rank over
  the users' seed-averaged values, and a paired bootstrap 95% interval of the relative difference
  ``mean(leader) / mean(arm) - 1`` over users. The data *separates* the two when the Wilcoxon
  p-value is below 0.05 and the bootstrap interval excludes 0.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ssmrec.experiments.stats import paired_over_seeds, paired_over_users, relative_improvement_interval, summary
from ssmrec.race.arms import Arm
from ssmrec.race.measure import PER_USER

ALPHA = 0.05


PER_USER_DIR = "per_user"
"""``OUT/per_user/<arm>-s<seed>.npz``: every finalist's per-user test values, beside the report (small
enough to keep with it; the run folders under ``final/`` are not)."""


def gather_per_user(out: Path, state: dict[str, Any]) -> None:
    """Copy each finalist's per-user values from its run folder to ``OUT/per_user`` (once)."""
    import shutil

    for arm, st in state["arms"].items():
        for seed, fin in st.get("finals", {}).items():
            dest = out / PER_USER_DIR / f"{arm}-s{seed}.npz"
            src = Path(fin["run_dir"]) / PER_USER
            if not dest.exists() and src.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)


def per_user(out: Path, state: dict[str, Any], arm: str, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(users, values)``: the arm's per-user ``key`` averaged over its finalist seeds (the users
    every seed measured; read from ``OUT/per_user``), or None when no finalist kept it."""
    runs = []
    for seed in state["arms"].get(arm, {}).get("finals", {}):
        path = out / PER_USER_DIR / f"{arm}-s{seed}.npz"
        if not path.exists():
            continue
        with np.load(path) as z:
            if key not in z:
                continue
            users_key = f"{key.split('/')[0]}.users" if "/" in key else "users"
            users = z[users_key] if users_key in z else z["users"]
            runs.append(dict(zip(users.tolist(), z[key].tolist())))
    if not runs:
        return None
    common = sorted(set.intersection(*(set(r) for r in runs)))
    values = np.array([[r[u] for u in common] for r in runs], np.float64).mean(0)
    return np.asarray(common, np.int64), values


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def leaderboard(out: Path, state: dict[str, Any], arms: list[Arm], k: int) -> dict[str, Any]:
    """Everything the report shows, as data (``leaderboard.json``)."""
    metric, ndcg = f"recall@{k}", f"ndcg@{k}"
    rows = []
    for arm in arms:
        st = state["arms"].get(arm.name, {})
        finals = st.get("finals", {})
        by_seed = {int(s): f["test"][metric] for s, f in finals.items()}
        users = per_user(out, state, arm.name, metric)
        ranking_keys = sorted({f"{name}/{key}" for f in finals.values() for name, got in f["ranking"].items()
                               for key in got})
        rows.append({
            "arm": arm.name, "loss": arm.loss, "fixed": arm.fixed, "about": arm.about,
            "params": (st.get("tuned") or {}).get("params", {}),
            "valid": (st.get("tuned") or {}).get("value"),
            "seeds": sorted(by_seed), metric: summary(list(by_seed.values())),
            f"{metric} over users": summary(list(users[1])) if users is not None else summary([]),
            ndcg: summary([f["test"][ndcg] for f in finals.values()]),
            "ranking": {key: _mean([f["ranking"][key.split("/")[0]][key.split("/")[1]] for f in finals.values()
                                    if key.split("/")[0] in f["ranking"]]) for key in ranking_keys},
            "tail_share": _mean([f["tail_share"] for f in finals.values() if f.get("tail_share") is not None]),
            "coverage": _mean([f["coverage"] for f in finals.values()]),
            "seconds_per_epoch": _mean([f["seconds_per_epoch"] for f in finals.values()]),
            "epochs": _mean([f["epochs_run"] for f in finals.values()]),
            "stop_reasons": sorted({f["stop_reason"] for f in finals.values()}),
            "sensitivity": (st.get("tuned") or {}).get("sensitivity", {}),
            "tuning": {key: (st.get("tuned") or {}).get(key) for key in ("how", "seconds", "budget")},
        })
    ran = [r for r in rows if r["seeds"]]
    ran.sort(key=lambda r: -r[metric]["mean"])
    board = {"k": k, "metric": metric, "rows": ran + [r for r in rows if not r["seeds"]], "tests": {},
             "leader": ran[0]["arm"] if ran else None}
    if not ran:
        return board
    lead = ran[0]
    lead_users = per_user(out, state, lead["arm"], metric)
    lead_seeds = {int(s): f["test"][metric] for s, f in state["arms"][lead["arm"]]["finals"].items()}
    for r in ran[1:]:
        other = per_user(out, state, r["arm"], metric)
        seeds = {int(s): f["test"][metric] for s, f in state["arms"][r["arm"]]["finals"].items()}
        test: dict[str, Any] = {"seeds": paired_over_seeds(lead_seeds, seeds)}
        if lead_users is not None and other is not None:
            common, ia, ib = np.intersect1d(lead_users[0], other[0], return_indices=True)
            a, b = lead_users[1][ia], other[1][ib]
            test["users"] = paired_over_users(a, b)
            if b.mean() > 0:  # the leader over the arm (the advice), and the arm against the leader (the table)
                lo, hi = relative_improvement_interval(a, b, resamples=1000)
                test["relative"] = {"mean": float(a.mean() / b.mean() - 1), "ci95": [lo, hi]}
            if a.mean() > 0:
                lo, hi = relative_improvement_interval(b, a, resamples=1000)
                test["vs_leader"] = {"mean": float(b.mean() / a.mean() - 1), "ci95": [lo, hi]}
        test["separated"] = bool(test.get("users") and test["users"]["p"] < ALPHA and test.get("relative")
                                 and test["relative"]["ci95"][0] > 0)
        board["tests"][r["arm"]] = test
    for name in {key.split("/")[0] for r in ran for key in r["ranking"]}:
        key = f"{name}/{ndcg}"
        scored = [r for r in ran if not math.isnan(r["ranking"].get(key, math.nan))]
        if scored:
            board.setdefault("ranking_leaders", {})[name] = max(scored, key=lambda r: r["ranking"][key])["arm"]
    board["advice"] = advice(board)
    return board


def advice(board: dict[str, Any]) -> str:
    """One line: the leader and by how much, or which arms the data cannot tell apart from it;
    with a warning when finalists were stopped by their share of the budget, not by early stopping."""
    text = _leader_line(board)
    cut = [r["arm"] for r in board["rows"] if "time_budget" in r["stop_reasons"]]
    if cut:
        text += (f" Caution: the finalists of {', '.join(cut)} were stopped by their share of the budget before "
                 "early stopping, so this ranks how fast the arms learn as much as where they end: raise --budget.")
    return text


def _leader_line(board: dict[str, Any]) -> str:
    rows = [r for r in board["rows"] if r["seeds"]]
    if not rows:
        return "No arm finished: nothing to advise (raise --budget)."
    lead, metric = rows[0], board["metric"]
    if len(rows) == 1:
        return f"Only {lead['arm']} finished; the others need more budget."
    tied = [r["arm"] for r in rows[1:] if not board["tests"][r["arm"]]["separated"]]
    first = f"{lead['arm']} has the best {metric} ({lead[metric]['mean']:.4f})"
    if tied:
        cheap = min((r for r in rows if r["arm"] in (lead["arm"], *tied)),
                    key=lambda r: (r["seconds_per_epoch"] if not math.isnan(r["seconds_per_epoch"]) else math.inf))
        return (f"{first}, but this data cannot separate it from {', '.join(tied)} (Wilcoxon over users p ≥ "
                f"{ALPHA} or an interval of the difference that includes 0): choose among them by long tail or "
                f"cost (the cheapest per epoch: {cheap['arm']}).")
    second = rows[1]
    rel = board["tests"][second["arm"]]["relative"]
    return (f"{first}: {rel['mean']:+.1%} over the runner-up {second['arm']} (95% interval "
            f"[{rel['ci95'][0]:+.1%}, {rel['ci95'][1]:+.1%}] over users), separated from every other arm.")


def _ci(s: dict[str, Any]) -> str:
    if not s["n"]:
        return "—"
    if s["n"] == 1 or any(math.isnan(x) for x in s["ci95"]):
        return f"{s['mean']:.4f}"
    return f"{s['mean']:.4f} [{s['ci95'][0]:.4f}, {s['ci95'][1]:.4f}]"


def _p(test: dict[str, Any] | None) -> str:
    return "—" if not test else (f"{test['p']:.2g}" if test["p"] >= 1e-4 else "<1e-4")


def _params(p: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.items()) or "defaults"


def markdown(board: dict[str, Any], state: dict[str, Any], described: dict[str, str] | None = None) -> list[str]:
    k, metric = board["k"], board["metric"]
    s = state["settings"]
    base = s["base"]
    rows = board["rows"]
    ranking_names = sorted({key.split("/")[0] for r in rows for key in r["ranking"]})
    lines = [f"# Which loss for {base['dataset']}? ({base['model']}, K = {k})", "",
             f"**Advice.** {board['advice']}", "",
             f"`ssmrec compare` on `{base['dataset']}` with model `{base['model']}`: {len(s['arms'])} arms, each "
             f"tuned on validation (holdout protocol: selection and test never share data), its finalist trained "
             f"over {s['seeds']} seed(s) and tested once. Budget {state.get('spent', 0):.0f} s used of "
             f"{state['budget']:.0f} s.", "",
             "## Retrieval (every item ranked; the top K kept)", "",
             f"| arm | {metric} over seeds [95%] | over users [95%] | NDCG@{k} | vs leader (users) | p seeds | "
             "p users | long-tail share | coverage | s / epoch | epochs (stop) | tuned |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = board["tests"].get(r["arm"], {})
        rel = t.get("vs_leader")
        vs = "leader" if r["arm"] == board["leader"] else (
            f"{rel['mean']:+.1%} [{rel['ci95'][0]:+.1%}, {rel['ci95'][1]:+.1%}]" if rel else "—")
        lines.append(
            f"| {r['arm']} | {_ci(r[metric])} | {_ci(r[f'{metric} over users'])} | {_ci(r[f'ndcg@{k}'])} | {vs} | "
            f"{_p(t.get('seeds'))} | {_p(t.get('users'))} | {r['tail_share']:.1%} | {r['coverage']:.1%} | "
            f"{r['seconds_per_epoch']:.2f} | {r['epochs']:.0f} ({', '.join(r['stop_reasons']) or '—'}) | "
            f"{_params(r['params'])} |")
    if ranking_names:
        lines += ["", "## Ranking (each user's held-out items re-ranked within a candidate set)", ""]
        for name in ranking_names:
            about = (described or {}).get(name, name)
            lines.append(f"- **{name}**: {about}.")
        head = " | ".join(f"{name} NDCG@{k} | {name} AUC" for name in ranking_names)
        lines += ["", f"| arm | {head} |", "|---|" + "---|" * (2 * len(ranking_names))]
        for r in rows:
            cells = " | ".join(f"{r['ranking'].get(f'{n}/ndcg@{k}', math.nan):.4f} | "
                               f"{r['ranking'].get(f'{n}/auc', math.nan):.4f}" for n in ranking_names)
            lines.append(f"| {r['arm']} | {cells} |")
        leaders = board.get("ranking_leaders", {})
        lines += ["", "Ranking leaders (NDCG@K): " + "; ".join(f"{n}: **{a}**" for n, a in sorted(leaders.items()))
                  + f"; retrieval leader: **{board['leader']}**."]
    lines += ["", "## Sensitivity (best validation value at each tried value)", ""]
    for r in rows:
        parts = [f"{name}: " + ", ".join(f"{v}→{x:.4f}" for v, x in d["best_at"].items())
                 + f" (spread {d['spread']:.1%}{_edge(d)})" for name, d in r["sensitivity"].items()]
        lines.append(f"- **{r['arm']}** ({r['tuning'].get('how') or 'not tuned'}): " + ("; ".join(parts) or "—"))
    lines += ["", "Files: `leaderboard.csv` and `leaderboard.json` (these numbers), `race.json` (every trial and "
              "finalist), `per_user/<arm>-s<seed>.npz` (each finalist's per-user test values), `race.png`."]
    return lines


def _edge(d: dict[str, Any]) -> str:
    """``; best at the edge of the values tried: widen them`` when a numeric parameter's best
    value is its smallest or largest (the optimum may lie outside what was searched)."""
    tried = list(d["best_at"])
    try:
        numbers = sorted(tried, key=float)
    except ValueError:
        return ""
    best = max(tried, key=lambda v: d["best_at"][v])
    spread = d["spread"]
    if spread > 0.01 and best in (numbers[0], numbers[-1]):
        return "; best at an end of the values tried: the optimum may lie beyond"
    return ""


def write_csv(board: dict[str, Any], path: Path) -> None:
    k, metric = board["k"], board["metric"]
    keys = sorted({key for r in board["rows"] for key in r["ranking"]})
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arm", "loss", "params", "seeds", f"{metric}_mean", f"{metric}_ci_lo", f"{metric}_ci_hi",
                    f"{metric}_users_ci_lo", f"{metric}_users_ci_hi", f"ndcg@{k}_mean", "p_seeds_vs_leader",
                    "p_users_vs_leader", "separated_from_leader",
                    "vs_leader", "vs_leader_ci_lo", "vs_leader_ci_hi", "tail_share", "coverage", "seconds_per_epoch",
                    *keys])
        for r in board["rows"]:
            t = board["tests"].get(r["arm"], {})
            s, su = r[metric], r[f"{metric} over users"]
            w.writerow([r["arm"], r["loss"], json.dumps(r["params"]), len(r["seeds"]), s["mean"], *s["ci95"],
                        *su["ci95"], r[f"ndcg@{k}"]["mean"], (t.get("seeds") or {}).get("p"),
                        (t.get("users") or {}).get("p"), t.get("separated"), (t.get("vs_leader") or {}).get("mean"),
                        *((t.get("vs_leader") or {}).get("ci95") or [None, None]), r["tail_share"], r["coverage"],
                        r["seconds_per_epoch"], *(r["ranking"].get(key) for key in keys)])


def figure(board: dict[str, Any], path: Path) -> Path | None:
    """Accuracy against long-tail share, marker area by seconds per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in board["rows"] if r["seeds"]]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 4.2))
    cost = np.array([r["seconds_per_epoch"] for r in rows])
    size = 40 + 400 * cost / max(float(np.nanmax(cost)), 1e-9)
    for r, sz in zip(rows, size):
        m = r[board["metric"]]
        lo, hi = m["ci95"]
        err = None if math.isnan(lo) else [[m["mean"] - lo], [hi - m["mean"]]]
        ax.errorbar(r["tail_share"], m["mean"], yerr=err, fmt="none", ecolor="grey", capsize=3)
        ax.scatter([r["tail_share"]], [m["mean"]], s=sz, alpha=0.7)
        ax.annotate(r["arm"], (r["tail_share"], m["mean"]), textcoords="offset points", xytext=(6, 4))
    ax.set_xlabel("long-tail share of Recall (less popular half of the interactions)")
    ax.set_ylabel(f"test {board['metric']} (mean over seeds, 95% interval)")
    ax.set_title("accuracy vs long tail; marker area: seconds per epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_board(out: Path, state: dict[str, Any], arms: list[Arm], *, k: int,
                described: dict[str, str] | None = None) -> dict[str, Any]:
    """Write ``REPORT.md``, ``leaderboard.csv``, ``leaderboard.json`` and ``race.png``; returns the board."""
    gather_per_user(out, state)
    board = leaderboard(out, state, arms, k)
    (out / "leaderboard.json").write_text(json.dumps(board, indent=1, default=float) + "\n")
    write_csv(board, out / "leaderboard.csv")
    figure(board, out / "race.png")
    (out / "REPORT.md").write_text("\n".join(markdown(board, state, described)) + "\n")
    return board
