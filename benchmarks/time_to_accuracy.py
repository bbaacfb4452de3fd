"""Time-to-accuracy: wall-clock seconds (training + evaluation) until Recall@20 reaches a target.

Two ways to get the curves:

    # from recorded grid runs (results/records): no training, any machine the records came from
    python benchmarks/time_to_accuracy.py --from-records --target 0.18

    # fresh runs on this machine, evaluating every epoch, stopping at the target or the budget
    python benchmarks/time_to_accuracy.py --run --threads 2 --target 0.18 --budget 1800

Writes benchmarks/results/time_to_accuracy.json and a figure (seconds vs Recall@20, epochs vs
Recall@20) for LightGCN (1 layer) + SSM and + BPR on Gowalla.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
SETTINGS = {
    "ssm": dict(loss="ssm", tau=0.12, reg=1e-5),
    "bpr": dict(loss="bpr", reg=1e-4),
}


def curves_from_records(records: Path) -> dict:
    from ssmrec.experiments.report import load_records, select

    out = {}
    for loss in SETTINGS:
        sim = "cos" if loss == "ssm" else "ip"
        rs = select(load_records(records), dataset="gowalla", protocol="paper", model="lightgcn", layers=1,
                    loss=loss, similarity=sim)
        rs = [r for r in rs if r.s["seed"] == 0]
        if rs:
            h = [x for x in rs[0].data["history"] if "recall@20" in x]
            out[loss] = {"machine": rs[0].machine, "epoch": [x["epoch"] for x in h],
                         "seconds": [x["elapsed_seconds"] for x in h], "recall@20": [x["recall@20"] for x in h],
                         "source": str(rs[0].path)}
    return out


def fresh_curves(threads: int, target: float, budget: float) -> dict:
    import time

    from ssmrec.train import TrainConfig, Trainer
    from ssmrec.train.run import environment

    out = {}
    for loss, extra in SETTINGS.items():
        cfg = TrainConfig.from_dict(dict(dataset="gowalla", model="lightgcn", layers=1, threads=threads,
                                         progress=False, **extra))
        t = Trainer(cfg, write=False, echo=None)
        curve = {"epoch": [], "seconds": [], "recall@20": []}
        elapsed, epoch = 0.0, 0
        while elapsed < budget:
            t0 = time.perf_counter()
            t.train_epoch(epoch)
            t.batch, t.partial = 0, {"loss": 0.0, "batches": 0, "seconds": 0.0}
            recall = t.evaluate(t.select_eval)["recall@20"]
            elapsed += time.perf_counter() - t0
            epoch += 1
            curve["epoch"].append(epoch)
            curve["seconds"].append(elapsed)
            curve["recall@20"].append(recall)
            print(f"{loss}: epoch {epoch} {elapsed:.0f} s recall@20 {recall:.4f}", flush=True)
            if recall >= target:
                break
        curve["machine"] = f"{environment()['cpu']} ({threads} threads)"
        out[loss] = curve
    return out


def summarise(curves: dict, target: float) -> dict:
    res = {}
    for loss, c in curves.items():
        hit = next((k for k, r in enumerate(c["recall@20"]) if r >= target), None)
        res[loss] = {"machine": c["machine"], "best": max(c["recall@20"]),
                     "seconds_to_target": c["seconds"][hit] if hit is not None else None,
                     "epochs_to_target": c["epoch"][hit] if hit is not None else None}
    return res


def plot(curves: dict, target: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for loss, c in curves.items():
        axes[0].plot([s / 60 for s in c["seconds"]], c["recall@20"], label=f"{loss.upper()} ({c['machine']})")
        axes[1].plot(c["epoch"], c["recall@20"], label=loss.upper())
    for ax in axes:
        ax.axhline(target, color="grey", lw=0.8, ls="--")
        ax.set_ylabel("Recall@20 (Gowalla test)")
        ax.legend(fontsize=7)
    axes[0].set_xlabel("minutes (training + evaluation)")
    axes[1].set_xlabel("epoch")
    fig.suptitle("LightGCN (1 layer) on Gowalla: time to accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--from-records", action="store_true")
    mode.add_argument("--run", action="store_true")
    p.add_argument("--records", default=str(HERE.parent / "results" / "records"))
    p.add_argument("--target", type=float, default=0.18)
    p.add_argument("--budget", type=float, default=1800.0, help="seconds per loss (--run)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(HERE / "results" / "time_to_accuracy.json"))
    a = p.parse_args()
    curves = curves_from_records(Path(a.records)) if a.from_records else fresh_curves(a.threads, a.target, a.budget)
    res = {"target": a.target, "summary": summarise(curves, a.target), "curves": curves}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    plot(curves, a.target, Path(a.out).with_suffix(".png"))
    for loss, s in res["summary"].items():
        t = "not reached"
        if s["seconds_to_target"]:
            t = f"{s['seconds_to_target'] / 60:.1f} min, epoch {s['epochs_to_target']}"
        print(f"{loss}: Recall@20 >= {a.target}: {t}; best {s['best']:.4f} ({s['machine']})")


if __name__ == "__main__":
    main()
