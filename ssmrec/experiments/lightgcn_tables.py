"""Table 2 and the layer search of the report: 1-layer LightGCN with each loss (BCE, BPR, SM, CCL,
SSM) against the study's order, and LightGCN's layer count searched per loss."""

from __future__ import annotations

from collections.abc import Callable, Collection

import numpy as np

from ssmrec.experiments.records import DATASETS, FIG1_LOSSES, Record, default_similarity, fmt_cell, select, stop_note

PAPER_ORDER = (("bce", "bpr"), ("bpr", "softmax"), ("bpr", "ccl"), ("softmax", "ssm"), ("ccl", "ssm"))
"""Table 2's order, pair by pair (worse, better): BCE < BPR < SM ~ CCL < SSM."""


def _short(loss: str) -> str:
    return {"softmax": "SM"}.get(loss, loss.upper())


def order_verdict(recall: dict[str, float], budget: bool, stopped: Collection[str] | None = None,
                  elsewhere: dict[str, str] | None = None) -> str:
    """Which of the paper's pairwise orderings our Recall@20 means keep (SM ~ CCL: within 5%).

    ``stopped``: the losses a run of which its budget stopped. A pair whose lower arm is one of them
    is no finding: more epochs can only raise a test-selected best, so that arm may still pass the
    other; it is said apart as unsettled (a pair whose higher arm was stopped stands: more epochs
    only widen it). ``elsewhere``: losses recorded only under another evaluation setting than their
    cell's, with the record's name (not missing, not comparable)."""
    kept, broken, unsettled = [], [], []
    told = stopped is not None  # which arms were stopped is known: the verdict says it pair by pair
    stopped = set(stopped or ())
    for worse, better in PAPER_ORDER:
        if worse in recall and better in recall:
            holds = recall[worse] < recall[better]
            pair = f"{_short(worse)} < {_short(better)}"
            lower = worse if holds else better
            if lower in stopped:
                unsettled.append(f"{pair} ({'holds' if holds else 'broken'} so far; {_short(lower)} "
                                 "stopped by its budget)")
            else:
                (kept if holds else broken).append(pair)
    if "softmax" in recall and "ccl" in recall:
        close = abs(recall["softmax"] - recall["ccl"]) <= 0.05 * max(recall["softmax"], recall["ccl"])
        if stopped & {"softmax", "ccl"}:
            unsettled.append(f"SM ~ CCL ({'holds' if close else 'broken'} so far; "
                             f"{' and '.join(_short(x) for x in ('softmax', 'ccl') if x in stopped)} stopped by "
                             "its budget)")
        else:
            (kept if close else broken).append("SM ~ CCL (within 5%)")
    elsewhere = elsewhere or {}
    other = "".join(f" {_short(loss)} is recorded only under an earlier evaluation setting (`{name}`, see Figure 1), "
                    "not comparable." for loss, name in elsewhere.items() if loss not in recall)
    if not kept and not broken and not unsettled:
        return "Not enough losses recorded yet to compare with the paper's order (BCE < BPR < SM ~ CCL < SSM)." + other
    text = (f"Against the paper's order BCE < BPR < SM ~ CCL < SSM: kept {', '.join(kept) or 'none'}; "
            f"broken {', '.join(broken) or 'none'}.")
    if unsettled:
        text += (" Not findings yet, each resting on an arm its budget stopped (more epochs can only raise a "
                 f"test-selected best, so that arm may still pass the other): {', '.join(unsettled)}.")
    missing = [_short(x) for x in FIG1_LOSSES if x not in recall and x not in elsewhere]
    if missing:
        text += f" Not recorded yet: {', '.join(missing)}."
    text += other
    if budget and not told:
        text += " Some of these runs were stopped by their budget (†), so the order may still change."
    return text


def table2_section(records: list[Record], use: Callable[[list[Record]], object],
                   elsewhere: dict[tuple[str, str], str] | None = None) -> list[str]:
    """The study's Table 2 as far as recorded: LightGCN (1 layer) x {BCE, BPR, SM, CCL, SSM}, seed
    means, and whether our order matches the paper's (BCE < BPR < SM ~ CCL < SSM; its numbers are
    not in our copy of the text). SM shows the better of its cosine and inner-product runs.
    ``elsewhere``: (dataset, loss) recorded only under another evaluation setting, with the record."""
    lines = []
    for ds in DATASETS:
        cells: dict[str, list[Record]] = {}
        for loss in FIG1_LOSSES:
            options = [select(records, dataset=ds, protocol="paper", model="lightgcn", layers=1, loss=loss,
                              **default_similarity(loss))]
            if loss == "softmax":
                options.append(select(records, dataset=ds, protocol="paper", model="lightgcn", layers=1,
                                      loss=loss, similarity="ip"))
            options = [rs for rs in options if rs]
            if options:
                cells[loss] = max(options, key=lambda rs: float(np.mean([r.test() for r in rs])))
        if not cells:
            continue
        use([r for rs in cells.values() for r in rs])
        lines += ["", f"### {ds}", "", "| loss | Recall@20 | NDCG@20 | how it stopped |", "|---|---|---|---|"]
        compared = {}
        for loss, rs in cells.items():
            label = {"softmax": f"SM ({rs[0].s.get('similarity') or 'cos'})"}.get(loss, loss.upper())
            note = ""
            if loss == "ccl" and rs[0].s.get("test_similarity") == "ip":
                # trained on cosine, selected and scored by inner product: the artifact of Figure 1's note
                note = (" — scored by inner product although trained on cosine (an artifact: ranks by item norm); "
                        "left out of the order until the cosine-scored run is recorded")
            else:
                compared[loss] = float(np.mean([r.test() for r in rs]))
            lines.append(f"| {label} | {fmt_cell(rs, 'recall@20')} | {fmt_cell(rs, 'ndcg@20')} | "
                         f"{stop_note(rs)}{note} |")
        lines.append("")
        lines.append(order_verdict(compared, any(r.budget_stopped for rs in cells.values() for r in rs),
                                   stopped={loss for loss, rs in cells.items() if any(r.budget_stopped for r in rs)},
                                   elsewhere={loss: name for (d, loss), name in (elsewhere or {}).items() if d == ds}))
    return lines

def layers_section(records: list[Record], use: Callable[[list[Record]], object]) -> list[str]:
    """LightGCN's layer search per loss (experiments/layers.toml): Recall@20 by layer count."""
    lines = []
    for ds in DATASETS:
        rows = []
        for loss in ("bpr", "ssm"):
            found = {k: rs for k in (1, 2, 3, 4)
                     if (rs := select(records, dataset=ds, protocol="paper", model="lightgcn", layers=k,
                                      loss=loss, **default_similarity(loss)))}
            if len(found) < 2:
                continue
            use([r for rs in found.values() for r in rs])
            best = max(found, key=lambda k: float(np.mean([r.test() for r in found[k]])))
            cells = [f"**{fmt_cell(found[k], 'recall@20')}**" if k == best else fmt_cell(found[k], "recall@20")
                     if k in found else "—" for k in (1, 2, 3, 4)]
            rows.append(f"| {loss.upper()} | " + " | ".join(cells) + f" | {best} |")
        if rows:
            lines += ["", f"### {ds}", "", "| loss | 1 layer | 2 | 3 | 4 | best |", "|---|---|---|---|---|---|",
                      *rows]
    return lines
