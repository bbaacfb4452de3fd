"""The losses side by side, from records only: the leaderboard section of the report, the
negative-feedback (NTR) study, and the "which loss should I use?" page.

A leaderboard arm is a (dataset, model, loss) triple; SSM with extra sampled negatives counts as
its own arm (``ssm+mixed``). Within an arm, the records that differ in anything but the seed are
the hyper-parameter values tried: the arm shows the one with the best mean selection score
(validation under ``holdout``, test under ``paper``), its mean ± std over seeds, and how much the
score moved across the values tried (its sensitivity).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ssmrec.experiments.budget import curve
from ssmrec.experiments.published import PUBLISHED, PUBLISHED_SETTINGS, SETUPS, SIMPLEX, STUDY_SETTINGS, TARGETS
from ssmrec.experiments.records import Record, _score, rank, seconds_by_machine, settings_id
from ssmrec.experiments.stats import paired_over_seeds, summary

LOSS_ORDER = ("bpr", "ssm", "bsl", "adaptau", "psl", "slk", "ssm+logq", "clogq", "ssm+mixed")
TAIL_WITHIN = 0.9
"""The long-tail winner is named among the losses within 10% of the most accurate one's Recall."""
LABELS = {"bpr": "BPR", "ssm": "SSM", "bsl": "BSL", "adaptau": "Adap-τ", "psl": "PSL", "slk": "SL@K",
          "ssm+logq": "SSM + logQ (standard)", "clogq": "SSM + corrected logQ", "ssm+mixed": "SSM + mixed negatives"}
_SETTING_LABEL = {"layers": "{} layers", "batch_size": "batch {}", "lr": "lr {}", "reg": "L2 {}", "tau": "τ {}",
                  "negatives": "{} negatives per positive", "dropout": "message dropout {}"}
SEED_FREE = {"seed", "out"}


def arm_of(r: Record) -> str:
    loss = r.s.get("loss", "")
    if loss == "ssm" and r.s.get("extra_negatives"):
        return "ssm+mixed"
    if loss == "ssm" and r.s.get("logq"):
        return "ssm+logq"
    return loss


def model_key(r: Record) -> str:
    """The model and any setup that makes its runs a different experiment: ``lightgcn``,
    ``lightgcn (3 layers)``, ``mf (800 negatives per positive)``. Arms never mix setups."""
    model = str(r.s.get("model", "?"))
    setup = []
    if model == "lightgcn" and int(r.s.get("layers", 1)) != 1:
        setup.append(f"{r.s.get('layers')} layers")
    if r.s.get("negatives") and "extra_negatives" in r.s:  # an in-batch loss given sampled negatives
        setup.append(f"{r.s.get('negatives')} negatives per positive")
    return f"{model} ({', '.join(setup)})" if setup else model


def model_label(key: str) -> str:
    name, _, setup = key.partition(" ")
    return {"mf": "MF", "lightgcn": "LightGCN"}.get(name, name) + (f" {setup}" if setup else "")


@dataclass
class Arm:
    """One (dataset, model, loss) of the leaderboard: its configurations and the chosen one."""

    dataset: str
    model: str
    loss: str
    configs: dict[str, list[Record]]

    @property
    def chosen(self) -> list[Record]:
        """The configuration with the best mean selection score, compared on the seeds every
        configuration ran (all of each one's seeds when they share none)."""
        common = set.intersection(*({int(r.s.get("seed", 0)) for r in rs} for rs in self.configs.values()))

        def score(rs: list[Record]) -> float:
            on = [r for r in rs if int(r.s.get("seed", 0)) in common] or rs
            return float(np.mean([_score(r) for r in on]))

        return max(self.configs.values(), key=score)

    def mean(self, key: str = "recall@20") -> dict:
        return summary([r.test(key) for r in self.chosen])

    @property
    def sensitivity(self) -> float | None:
        """Relative spread of the selection score over the values tried: (best - worst) / best."""
        if len(self.configs) < 2:
            return None
        means = [float(np.mean([_score(r) for r in rs])) for rs in self.configs.values()]
        return (max(means) - min(means)) / max(means) if max(means) > 0 else None

    def varied(self) -> str:
        """What the configurations differ in, with the chosen value: ``tau 0.12 (of 0.1, 0.12, 0.15)``."""
        settings = [rs[0].s for rs in self.configs.values()]
        keys = sorted({k for s in settings for k in s if k not in SEED_FREE
                       and len({_show(x.get(k)) for x in settings}) > 1})
        chosen = self.chosen[0].s
        return "; ".join(f"{k} {_show(chosen.get(k))} (of {', '.join(sorted({_show(s.get(k)) for s in settings}))})"
                         for k in keys)

    @property
    def stopped_by_budget(self) -> bool:
        return any(r.budget_stopped for r in self.chosen)

    @property
    def collapsed(self) -> bool:
        """A run of it fell, after its best evaluation, below half of its best (a loss that
        degenerated: its record keeps the best epoch, the curve says the loss is not usable as set)."""
        return any(collapsed(r) for r in self.chosen)


def _show(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, dict):
        return ",".join(f"{k}={_show(x)}" for k, x in sorted(v.items())) or "-"
    return str(v)


def grid_records(records: list[Record], grid_path: str | Path, experiment: str) -> list[Record]:
    """The records of a grid's cells: a cell shares its record with an identical cell of another grid
    (same settings, same id hash), so they are found by hash, the first by
    :func:`~ssmrec.experiments.records.rank` of a cell where there are several (one continued with
    ``--extend``). A configuration of the grid recorded at more seeds than the grid lists (Table 3's
    five seeds of a cell the leaderboard runs at three) takes them all, so that one configuration
    shows one value wherever it appears. Without the grid file, by experiment name."""
    path = Path(grid_path)
    if not path.exists():
        return [r for r in records if r.data.get("experiment") == experiment]
    from ssmrec.experiments.grid import load_grid

    cells = load_grid(path).cells
    digests = {cell.digest for cell in cells}
    configs = {settings_id(cell.key, ("seed",)) for cell in cells}
    chosen: dict[str, Record] = {}
    for r in records:
        digest = str(r.data.get("cell", "")).rsplit("-", 1)[-1]
        if digest not in digests and settings_id(r.s, ("seed",)) not in configs:
            continue
        old = chosen.get(digest)
        if old is None or rank(r) > rank(old):
            chosen[digest] = r
    return list(chosen.values())


def arms(records: list[Record]) -> dict[tuple[str, str, str], Arm]:
    """The leaderboard's arms from its records (see :func:`grid_records`)."""
    out: dict[tuple[str, str, str], Arm] = {}
    groups: dict[tuple[str, str, str], dict[str, list[Record]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        key = (r.s.get("dataset"), model_key(r), arm_of(r))
        config = repr(sorted((k, _show(v)) for k, v in r.s.items() if k not in SEED_FREE))
        groups[key][config].append(r)
    for key, configs in groups.items():
        out[key] = Arm(*key, dict(configs))
    return out


def collapsed(r: Record) -> bool:
    """The run's selection metric ended below half of its best (evaluations after the best one)."""
    epochs, values = curve(r)
    return bool(values) and max(values) > 0 and values[-1] < 0.5 * max(values)


def _value(key: str, v: Any) -> str:
    if key == "dropout" and not v:
        return "no dropout"
    if key == "layers" and v == 1:
        return "1 layer"
    return _SETTING_LABEL[key].format(_num(v))


def _num(v: Any) -> str:
    return f"{v:g}".replace("e-0", "e-") if isinstance(v, float) else _show(v)


def published_setting(dataset: str, model: str, loss: str, arm: Arm | None) -> str:
    """How a published number was run, and where that differs from our arm's chosen configuration
    (read from its record): ``3 layers, batch 1024, ..., τ₂ 1.12; not ours: 3 layers (ours 1), ...``."""
    name = model.partition(" ")[0]
    if (dataset, name, loss) in PUBLISHED_SETTINGS:
        settings, other = PUBLISHED_SETTINGS[(dataset, name, loss)]
    elif (dataset, name, loss) in PUBLISHED:
        settings, other = STUDY_SETTINGS
    else:
        return "—"
    text = ", ".join([*(_value(k, v) for k, v in settings.items()), other])
    if arm is None:
        return text
    ours = arm.chosen[0].s
    differ = []
    for k, v in settings.items():
        have = ours.get(k, 0.0 if k == "dropout" else None)
        if k == "negatives" and have is None:
            differ.append(f"{_value(k, v)} (ours in-batch)")
        elif have is not None and _show(have) != _show(v) and not (isinstance(have, (int, float))
                                                                  and abs(float(have) - float(v)) < 1e-12):
            differ.append(f"{_value(k, v)} (ours {_num(have)})")
    return text + ("; not ours: " + ", ".join(differ) if differ else "; as ours in these")


def own_settings(arm: Arm | None) -> str:
    """The chosen configuration's temperature and loss parameters, as its record has them."""
    if arm is None:
        return ""
    s = arm.chosen[0].s
    parts = [f"τ {_show(s['tau'])}"] if s.get("tau") is not None else []
    parts += [f"{k} {_show(v)}" for k, v in sorted((s.get("loss_params") or {}).items())]
    return ", ".join(parts)


def _cell(arm: Arm | None) -> str:
    if arm is None:
        return "—"
    rec, nd = arm.mean("recall@20"), arm.mean("ndcg@20")
    sd = f" ± {rec['std']:.4f}" if rec["n"] > 1 else ""
    dagger = " †" if arm.stopped_by_budget else ""
    dagger += " ‡" if arm.collapsed else ""
    return f"{rec['mean']:.4f}{sd} / {nd['mean']:.4f} (n={rec['n']}){dagger}"


def leaderboard_section(records: list[Record]) -> list[str]:
    """Markdown: per dataset, every loss on MF and LightGCN beside the published numbers."""
    found = arms(records)
    if not found:
        return []
    lines: list[str] = []
    for ds in sorted({k[0] for k in found}):
        models = [m for m in ("mf", "lightgcn") if any(k[:2] == (ds, m) for k in found)]
        lines += ["", f"### {ds}", "",
                  "| loss | " + " | ".join(f"{m.upper() if m == 'mf' else 'LightGCN'} ours (Recall / NDCG @20)"
                                          f" | published | published setting" for m in models)
                  + " | tuned (chosen of tried) | ours: τ and loss parameters (from the record) |",
                  "|---|" + "---|---|---|" * len(models) + "---|---|"]
        for loss in LOSS_ORDER:
            row = [found.get((ds, m, loss)) for m in models]
            if not any(row):
                continue
            cells = []
            for m, arm in zip(models, row):
                pub = PUBLISHED.get((ds, m, loss))
                cells += [_cell(arm), f"{pub[0]:.4f} / {pub[1]:.4f}" if pub else "—",
                          published_setting(ds, m, loss, arm) if pub else "—"]
            tuned = "; ".join(f"{m}: {a.varied()}" for m, a in zip(models, row) if a and a.varied()) or "—"
            own = "; ".join(f"{m}: {o}" for m, a in zip(models, row) if (o := own_settings(a))) or "—"
            lines.append(f"| {LABELS[loss]} | " + " | ".join(cells) + f" | {tuned} | {own} |")
        others = sorted({k[1] for k in found if k[0] == ds and k[1] not in ("mf", "lightgcn")})
        if others:
            lines += ["", "In other setups (published ones we reproduce; not mixed with the arms above):", "",
                      "| model, setup | loss | ours (Recall / NDCG @20) | published | published setting |",
                      "|---|---|---|---|---|"]
            for m in others:
                for loss in LOSS_ORDER:
                    arm = found.get((ds, m, loss))
                    if arm is None:
                        continue
                    pub = PUBLISHED.get((ds, m.partition(" ")[0], loss))
                    lines.append(f"| {model_label(m)} | {LABELS[loss]} | {_cell(arm)} | "
                                 f"{f'{pub[0]:.4f} / {pub[1]:.4f}' if pub else '—'} | "
                                 f"{published_setting(ds, m, loss, arm) if pub else '—'} |")
            lines.append("")
        if ds in SIMPLEX:  # its own model, shown in the LightGCN column for reference
            cells = []
            for m in models:
                cells += ["—", f"{SIMPLEX[ds][0]:.4f} / {SIMPLEX[ds][1]:.4f}" if m == "lightgcn" else "—",
                          "its own model (SimpleX), not LightGCN" if m == "lightgcn" else "—"]
            lines.append("| SimpleX (CCL), published | " + " | ".join(cells) + " | — | — |")
        lgcn = [a for k, a in found.items() if k[0] == ds and k[1] == "lightgcn"]
        best = max(lgcn, key=lambda a: a.mean()["mean"], default=None)
        if best is not None and ds in TARGETS:
            ours = best.mean()["mean"]
            verdict = "reaches" if ours >= TARGETS[ds] else "falls short of"
            tried = ", ".join(LABELS[loss] for loss in LOSS_ORDER if any(a.loss == loss for a in lgcn))
            missing = len(LOSS_ORDER) - len({a.loss for a in lgcn})
            target = next(k for k, v in PUBLISHED.items() if k[:2] == (ds, "lightgcn") and v[0] == TARGETS[ds])
            setting = published_setting(ds, "lightgcn", target[2], best)
            lines += ["", f"Best LightGCN loss recorded so far (of {tried}; {missing} of the {len(LOSS_ORDER)} "
                          f"losses not run yet): **{LABELS[best.loss]}**, Recall@20 {ours:.4f}"
                          f"{' (stopped by its budget)' if best.stopped_by_budget else ''}; it {verdict} the best "
                          f"published loss-based number on this split ({TARGETS[ds]:.4f}, {LABELS[target[2]]}), "
                          f"{(ours - TARGETS[ds]) / TARGETS[ds]:+.1%}. Not like-for-like: that number was run with "
                          f"its authors' settings ({setting})."]
    lines += ["", "Mean ± std over seeds of the configuration with the best mean selection score; † = a run of "
                  "it was stopped by its budget; ‡ = a run of it collapsed after its best epoch (its last evaluation "
                  "below half of its best: the number is its best epoch's, the loss is not usable as set). *tuned* "
                  "lists what the configurations tried differ in.", "",
              "How the published numbers were obtained:",
              "", *[f"- {line}" for line in SETUPS]]
    return lines


def ntr_section(runs: list[Record]) -> list[str]:
    """SSM vs SSM + negative feedback on explicit data (the NTR grid's records), per model: Recall@20
    of positives, dislike@20, and paired tests of each NTR arm against SSM over seeds."""
    if not runs:
        return []
    by: dict[tuple[str, str], dict[int, Record]] = defaultdict(dict)
    for r in runs:
        by[(r.s.get("model", "?"), _ntr_arm(r))][int(r.s.get("seed", 0))] = r
    lines = ["| model | objective | seeds | Recall@20 (held-out positives) | dislike@20 (held-out dislikes in the top "
             "20; lower is better) |", "|---|---|---|---|---|"]
    for (model, name), seeds in sorted(by.items()):
        rec = summary([r.test("recall@20") for r in seeds.values()])
        dis = summary([r.test("dislike@20") for r in seeds.values() if "dislike@20" in r.m["test"]])
        lines.append(f"| {model} | {name} | {rec['n']} | {_ms(rec)} | {_ms(dis)} |")
    tests = []
    for (model, name), seeds in sorted(by.items()):
        base = by.get((model, LABELS["ssm"]))
        if base is None or name == LABELS["ssm"]:
            continue
        for key in ("recall@20", "dislike@20"):
            t = paired_over_seeds({s: r.test(key) for s, r in seeds.items() if key in r.m["test"]},
                                  {s: r.test(key) for s, r in base.items() if key in r.m["test"]})
            if t:
                tests.append(f"- {model}, {key}: {name} vs SSM, {t['test']} over {len(t['seeds'])} seeds: "
                             f"p = {t['p']:.3g}")
    return lines + ([""] + tests if tests else [])


def _ntr_arm(r: Record) -> str:
    loss = r.s.get("loss")
    if loss == "ntr":
        w = (r.s.get("loss_params") or {}).get("weight", 1.0)
        return f"SSM + NTR (weight {_show(w)})"
    return LABELS.get(loss, loss)


def _ms(s: dict) -> str:
    if not s["n"]:
        return "—"
    lo, hi = s["ci95"]
    ci = f" [{lo:.4f}, {hi:.4f}]" if s["n"] > 1 else ""
    return f"{s['mean']:.4f}" + (f" ± {s['std']:.4f}" if s["n"] > 1 else "") + ci


def tail_share(r: Record) -> float | None:
    """Share of Recall@20 earned on the less popular half of the interactions
    (:func:`~ssmrec.eval.popularity.recall_tail_share` of the record's profile)."""
    from ssmrec.eval.popularity import recall_tail_share  # (torch: only when a profile is read)

    return recall_tail_share(r.data.get("profile") or {})


def which_loss(records: list[Record]) -> list[str]:
    """The "which loss should I use?" page, from the leaderboard's records."""
    found = arms(records)
    lines = ["# Which loss should I use?", "",
             "Generated by `ssmrec report` from the leaderboard's records (`experiments/leaderboard.toml`); "
             "nothing is re-run. For every dataset × model: accuracy of the chosen configuration relative to SSM on "
             "the same model, the share of its recall earned on long-tail items, catalogue coverage of its top-20 "
             "lists, training seconds per epoch (with the machine), and how far the score moved over the "
             "hyper-parameter values tried (sensitivity: a loss you must tune carefully has a large one).", ""]
    if not found:
        return lines + ["No leaderboard record yet: run `ssmrec experiment experiments/leaderboard.toml`."]
    for ds, model in sorted({k[:2] for k in found}):
        base = found.get((ds, model, "ssm"))
        lines += [f"## {ds}, {model_label(model)}", "",
                  "| loss | Recall@20 | vs SSM | long-tail share | coverage | s / epoch | sensitivity (values tried) |",
                  "|---|---|---|---|---|---|---|"]
        for loss in LOSS_ORDER:
            arm = found.get((ds, model, loss))
            if arm is None:
                continue
            rec = arm.mean()["mean"]
            vs = f"{(rec - base.mean()['mean']) / base.mean()['mean']:+.1%}" if base and loss != "ssm" else "—"
            tails = [t for r in arm.chosen if (t := tail_share(r)) is not None]
            cover = [r.data["profile"]["coverage"] for r in arm.chosen if (r.data.get("profile") or {}).get("coverage")]
            sec = seconds_by_machine(arm.chosen)  # a GPU's seconds never mixed with a CPU thread's
            sens = arm.sensitivity
            lines.append(
                f"| {LABELS[loss]} | {rec:.4f}{' †' if arm.stopped_by_budget else ''}"
                f"{' ‡' if arm.collapsed else ''} | {vs} | "
                f"{f'{np.mean(tails):.1%}' if tails else '—'} | {f'{np.mean(cover):.1%}' if cover else '—'} | "
                f"{'; '.join(f'{v:.1f} ({m})' for m, v in sec.items()) or '—'} | "
                f"{f'{sens:.1%}' if sens is not None else '—'} ({len(arm.configs)}) |")
        lines += ["", *_verdict([found[(ds, model, loss)] for loss in LOSS_ORDER if (ds, model, loss) in found]), ""]
    lines += ["† = stopped by its budget, not by early stopping; ‡ = collapsed after its best epoch (see the report). "
              "Seconds per epoch: the median training seconds of the chosen configuration's runs on each machine they "
              "ran on (one CPU thread first, a GPU named as such); comparable only between rows run on the same "
              "machine."]
    return lines


def _verdict(group: list[Arm]) -> list[str]:
    """One line of advice from a dataset x model's arms (when there are at least two)."""
    if len(group) < 2:
        return []
    best = max(group, key=lambda a: a.mean()["mean"])
    top = best.mean()["mean"]
    # seconds compare only on one machine: the cheapest among the close ones on a machine the best ran on
    machine = next(iter(seconds_by_machine(best.chosen)), None)
    close = [a for a in group if a.mean()["mean"] >= 0.98 * top and machine in seconds_by_machine(a.chosen)]
    cheapest = min(close, key=lambda a: seconds_by_machine(a.chosen)[machine], default=best)
    # the long tail is worth having only with the accuracy: a model that collapsed has a flat, "fair" list
    useful = [a for a in group if a.mean()["mean"] >= TAIL_WITHIN * top]
    tails = {a.loss: np.mean(t) for a in useful if (t := [x for r in a.chosen if (x := tail_share(r)) is not None])}
    line = f"On these records: most accurate **{LABELS[best.loss]}** ({top:.4f})"
    if cheapest is not best:
        line += f"; within 2% of it and cheapest per epoch on the same machine: **{LABELS[cheapest.loss]}**"
    if tails:
        fair = max(tails, key=tails.get)
        line += (f"; largest long-tail share among those within {1 - TAIL_WITHIN:.0%} of the most accurate: "
                 f"**{LABELS[fair]}** ({tails[fair]:.1%})")
    unsure = [LABELS[a.loss] for a in group if len(a.chosen) < 2]
    if unsure:
        line += f". One seed only for {', '.join(unsure)}: differences under ~1% are within seed noise"
    return [line + "."]


def write_which_loss(records: list[Record], out_dir: str | Path) -> Path:
    path = Path(out_dir) / "WHICH_LOSS.md"
    path.write_text("\n".join(which_loss(records)) + "\n")
    return path


def headlines(board: list[Record], ntr: list[Record]) -> list[str]:
    """Lines for the report's summary: the best loss per dataset x model so far, and what NTR did."""
    out = []
    found = arms(board)
    best = []
    for ds, model in sorted({k[:2] for k in found}):
        group = [a for k, a in found.items() if k[:2] == (ds, model)]
        if len(group) < 3:  # BPR and SSM alone are Table 3's story
            continue
        top = max(group, key=lambda a: a.mean()["mean"])
        base = found.get((ds, model, "ssm"))
        vs = (f", {(top.mean()['mean'] - base.mean()['mean']) / base.mean()['mean']:+.1%} over SSM"
              if base is not None and top is not base else "")
        best.append(f"{ds} {model}: {LABELS[top.loss]} {top.mean()['mean']:.4f}{vs} (of {len(group)} losses run)")
    if best:
        out.append("- **Losses after the study** (leaderboard so far, Recall@20): " + "; ".join(best) + ".")
    by: dict[tuple[str, str], dict[int, Record]] = defaultdict(dict)
    for r in ntr:
        by[(r.s.get("model", "?"), _ntr_arm(r))][int(r.s.get("seed", 0))] = r
    said = []
    for (model, name), seeds in sorted(by.items()):
        base = by.get((model, LABELS["ssm"]))
        if base is None or name == LABELS["ssm"] or "dislike@20" not in next(iter(seeds.values())).m["test"]:
            continue
        both = sorted(set(base) & set(seeds)) or sorted(seeds)  # the means of the seeds the test pairs
        d0 = float(np.mean([base[s].test("dislike@20") for s in both if s in base]))
        d1 = float(np.mean([seeds[s].test("dislike@20") for s in both]))
        r0 = float(np.mean([base[s].test("recall@20") for s in both if s in base]))
        r1 = float(np.mean([seeds[s].test("recall@20") for s in both]))
        t = paired_over_seeds({s: r.test("dislike@20") for s, r in seeds.items()},
                              {s: r.test("dislike@20") for s, r in base.items()})
        p = f", p = {t['p']:.2g}" if t else ""
        said.append(f"{model} {name}: dislike@20 {d0:.4f} → {d1:.4f} ({(d1 - d0) / d0:+.0%}{p}), "
                    f"Recall@20 {r0:.4f} → {r1:.4f}")
    if said:
        out.append("- **Negative feedback (MovieLens-100K)**: " + "; ".join(said) + ".")
    return out

