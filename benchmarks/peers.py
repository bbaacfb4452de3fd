"""Time the same LightGCN + BPR workload on Gowalla with two peer libraries: RecBole and PyG.

    python benchmarks/peers.py --peer recbole --threads 1 --batches 20 --warmup 3 --out recbole.json
    python benchmarks/peers.py --all --threads 1 --out benchmarks/results/peers-gowalla-t1.json

The peers are not dependencies of ssmrec. Install them in a separate virtual environment that sees
the system torch (``pip install ".[bench]"`` lists them), and make sure pip keeps that torch::

    python3 -m venv --system-site-packages /work/peers-venv
    /work/peers-venv/bin/pip install recbole==1.2.1 torch_geometric torch==2.13.0

``--peer NAME`` runs one peer in the current process; ``--all`` runs each peer in a fresh subprocess
of the peers' interpreter (``--python``, default ``$PEERS_PYTHON`` or /work/peers-venv/bin/python),
so that every peak RSS belongs to one peer alone, and prints a table.

Workload (the same for every peer): 3-layer LightGCN (mean of layers 0..3, symmetric-normalised
user-item graph), embedding size 64, BPR loss with one uniform negative per positive, batches of
2048 positive pairs, Adam with lr 1e-3, L2 reg 1e-4 on the batch's layer-0 embeddings; full-ranking
evaluation of all 29,858 test users with the training items masked, Recall@20.

Measured, per peer:

* ``median_batch_s`` / ``mean_batch_s``: over N timed training batches after W warm-up batches. A
  batch is timed from fetching it (the peer's own sampling of positives and negatives included) to
  the end of the optimiser step. ``epoch_s`` = median x ceil(810,128 / 2048) = 396 batches.
* ``eval_s``: one full-ranking pass over every test user, after one warm-up forward pass; the timed
  pass includes computing the final (propagated) embeddings once, scoring, masking, top-20 and the
  metric. ``recall@20`` is what that pass computes after only W + N training steps: a sanity value,
  reported, not checked (an untrained PyG LightGCN gives 0.0006; popularity is learnt within a few Adam
  steps, so 2-4 steps gave 0.004-0.017 and 23 steps ~0.08 on Gowalla).
* ``peak_rss_mb``: ``ru_maxrss`` of the process at the end, i.e. the peak over the whole run,
  including loading the data and each library's own dataset/graph construction.

Peers and the deviations from the workload above (also recorded in each row's ``notes``):

* ``recbole``: RecBole 1.2.1's ``LightGCN`` on its own ``Dataset``/``TrainDataLoader`` (uniform
  negative sampling of unseen items) with a Trainer-style step (``calculate_loss`` + backward + Adam
  from ``Trainer._build_optimizer``), and ``Trainer.evaluate`` on the ``FullSortEvalDataLoader``
  (``full_sort_predict``, RecBole's ``Collector`` and ``Evaluator``, metric Recall, topk 20).
  The given split is loaded through ``benchmark_filename = ['train', 'valid', 'test']`` from atomic
  files written to a temp dir; RecBole's ``build()`` must return three parts, so ``valid`` is a copy
  of ``test`` (it is only built, never evaluated; RecBole masks used items minus the user's own test
  items, so the test ranking masks exactly the training items). No filtering, no k-core.
  ``eval_batch_size`` is counted by RecBole in user x item scores; it is set to 4096 x item_num so
  that RecBole scores 4096 users per batch like the others (its default, 4096, would score one user
  per batch). RecBole's own regulariser is kept: ``reg_weight`` x sum of the L2 *norms* (not squared,
  ``require_pow: False`` default) of the batch's layer-0 embeddings / batch size. RecBole adds a
  padding user and item (ids 0), so its tables are one row larger. Compatibility shims applied at
  run time, nothing patched on disk: numpy 2 removed ``np.float_``, ``np.complex_`` and
  ``np.unicode_``, which RecBole's ``Config.compatibility_settings`` reads (restored as aliases of
  float64 / complex128 / str_); SciPy >= 1.12 removed ``dok_matrix._update``, which RecBole's
  ``LightGCN.get_norm_adj_mat`` calls (re-added as a plain update of the dok's dict, what it was).
  Under pandas 3 RecBole's ``_fill_nan`` (chained in-place ``fillna``) no longer fills anything and
  warns; harmless here, the atomic files have no missing values.
* ``pyg-edge`` / ``pyg-csr``: ``torch_geometric.nn.models.LightGCN(num_nodes, 64, num_layers=3)``
  on the undirected user-item graph (users 0..U-1, items U..U+I-1), trained as in PyG's LightGCN
  example: each epoch a random permutation of the training pairs cut into batches of 2048, one
  negative drawn uniformly from *all* items (seen items are not excluded, as in the example),
  ``model(graph, edge_label_index)`` for the positive and negative pairs, and
  ``model.recommendation_loss(pos, neg, node_id=<nodes of the batch>, lambda_reg=1e-4)`` (mean BPR
  + 1e-4 x squared norm of the batch's distinct nodes' layer-0 embeddings / batch size). ``pyg-edge`` passes a COO
  ``edge_index`` (message passing with gather/scatter), ``pyg-csr`` a ``torch.sparse_csr_tensor``
  adjacency (``to_torch_csr_tensor``, propagated with ``torch.sparse.mm``); torch_sparse's
  ``SparseTensor`` is not used: it needs a compiled extension that is not installed. In both, PyG's
  ``LGConv`` recomputes the symmetric normalisation (``gcn_norm``) in every layer of every forward
  pass; that is how PyG's LightGCN runs by default, so it is part of the timing. Evaluation computes
  the final embeddings once (``get_embedding``), then scores users in chunks of 4096 against all
  items with the training items masked and takes the top 20 with ``torch.topk``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable

PEERS = ("recbole", "pyg-edge", "pyg-csr")
DEFAULT_PYTHON = os.environ.get("PEERS_PYTHON", "/work/peers-venv/bin/python")

# The workload, shared by every peer.
DATASET = "gowalla"
DIM = 64
LAYERS = 3
BATCH = 2048
LR = 1e-3
REG = 1e-4
TOPK = 20
EVAL_CHUNK = 4096
SEED = 2020


# ---------------------------------------------------------------------------------------- helpers
def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_gowalla():
    """The given Gowalla train/test split, through ssmrec's loader (honours $SSMREC_DATA)."""
    from ssmrec.data import DataConfig, load_dataset

    return load_dataset(DataConfig(DATASET))


def time_steps(step: Callable[[], None], batches: int, warmup: int) -> list[float]:
    """Run ``warmup + batches`` training steps; return the wall times of the last ``batches``."""
    times = []
    for k in range(warmup + batches):
        start = time.perf_counter()
        step()
        if k >= warmup:
            times.append(time.perf_counter() - start)
    return times


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """``(seconds, result)`` of one call of ``fn``."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def make_row(peer: str, version: str, threads: int, times: list[float], n_pairs: int,
             eval_s: float, recall: float, notes: list[str]) -> dict:
    import torch

    median = statistics.median(times)
    return {
        "peer": peer, "version": version, "torch": torch.__version__, "threads": threads,
        "median_batch_s": median, "mean_batch_s": statistics.fmean(times),
        "epoch_s": median * math.ceil(n_pairs / BATCH), "batches_per_epoch": math.ceil(n_pairs / BATCH),
        "timed_batches": len(times), "eval_s": eval_s, "recall@20": recall,
        "peak_rss_mb": peak_rss_mb(), "notes": "; ".join(notes),
    }


def full_ranking_recall(user_emb, item_emb, train, test) -> float:
    """Recall@TOPK over users with test items: inner-product scores against every item, each user's
    training items masked, top-K by ``torch.topk``; users scored EVAL_CHUNK at a time."""
    import torch

    n_users, n_items = user_emb.shape[0], item_emb.shape[0]
    train_ptr, train_idx = torch.from_numpy(train.indptr), torch.from_numpy(train.indices)
    test_ptr, test_idx = torch.from_numpy(test.indptr), torch.from_numpy(test.indices)
    recall_sum, n_eval = 0.0, 0
    for start in range(0, n_users, EVAL_CHUNK):
        stop = min(start + EVAL_CHUNK, n_users)
        rows = torch.arange(stop - start)
        scores = user_emb[start:stop] @ item_emb.T
        # Mask each user's training items.
        n_train = train_ptr[start + 1:stop + 1] - train_ptr[start:stop]
        scores[rows.repeat_interleave(n_train), train_idx[train_ptr[start]:train_ptr[stop]]] = -math.inf
        top = torch.topk(scores, TOPK, dim=1).indices
        # Hits: (row, item) keys of the top-K that are among the chunk's (row, test item) keys.
        n_test = test_ptr[start + 1:stop + 1] - test_ptr[start:stop]
        test_keys = rows.repeat_interleave(n_test) * n_items + test_idx[test_ptr[start]:test_ptr[stop]]
        hits = torch.isin(rows.unsqueeze(1) * n_items + top, test_keys).sum(1)
        has_test = n_test > 0
        recall_sum += (hits[has_test] / n_test[has_test]).sum().item()
        n_eval += int(has_test.sum())
    return recall_sum / n_eval


# ---------------------------------------------------------------------------------------- RecBole
def _recbole_shims() -> list[str]:
    """Restore what RecBole 1.2.1 needs from numpy 1.x and SciPy < 1.12 (see the module docstring)."""
    import numpy as np
    import scipy.sparse as sp

    applied = []
    for old, new in (("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_)):
        if not hasattr(np, old):
            setattr(np, old, new)
            applied.append(f"np.{old}")
    if not hasattr(sp.dok_matrix, "_update"):
        # dok_matrix used to subclass dict; _update was dict.update without index checks.
        sp.dok_matrix._update = lambda self, data: self._dict.update(data)
        applied.append("dok_matrix._update")
    return applied


def _write_atomic(path: str, users, items) -> None:
    """A RecBole atomic ``.inter`` file: a typed header, then one tab-separated pair per line."""
    with open(path, "w") as f:
        f.write("user_id:token\titem_id:token\n")
        f.writelines(f"{u}\t{i}\n" for u, i in zip(users.tolist(), items.tolist()))


def run_recbole(threads: int, batches: int, warmup: int) -> dict:
    shims = _recbole_shims()  # before recbole is imported: Config applies its aliases on creation
    import logging

    import recbole
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.general_recommender import LightGCN
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    torch.set_num_threads(threads)
    ds = load_gowalla()
    n_pairs = int(ds.train.indices.size)
    workdir = tempfile.mkdtemp(prefix="peers-recbole-")
    cwd = os.getcwd()
    try:
        folder = os.path.join(workdir, DATASET)
        os.makedirs(folder)
        _write_atomic(os.path.join(folder, f"{DATASET}.train.inter"), *ds.train.pairs())
        test_pairs = ds.test.pairs()
        for part in ("valid", "test"):  # RecBole's build() needs three parts: valid = test
            _write_atomic(os.path.join(folder, f"{DATASET}.{part}.inter"), *test_pairs)
        item_num = ds.train.n_items + 1  # RecBole's ids start at 1; 0 is padding
        del ds, test_pairs
        os.chdir(workdir)  # the Trainer writes its tensorboard folder under the working directory

        argv, sys.argv = sys.argv, sys.argv[:1]  # Config would also parse our command line
        config = Config(model="LightGCN", dataset=DATASET, config_dict={
            "data_path": workdir, "checkpoint_dir": os.path.join(workdir, "saved"),
            "benchmark_filename": ["train", "valid", "test"],
            "load_col": {"inter": ["user_id", "item_id"]},
            "user_inter_num_interval": "[0,inf)", "item_inter_num_interval": "[0,inf)",
            "use_gpu": False, "seed": SEED, "reproducibility": True, "state": "WARNING",
            "show_progress": False, "worker": 0,
            "embedding_size": DIM, "n_layers": LAYERS, "reg_weight": REG,
            "train_batch_size": BATCH, "learner": "adam", "learning_rate": LR, "weight_decay": 0.0,
            "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1, "alpha": 1.0,
                                      "dynamic": False, "candidate_num": 0},
            "eval_args": {"group_by": "user", "order": "RO", "mode": "full"},
            "metrics": ["Recall"], "topk": [TOPK], "valid_metric": f"Recall@{TOPK}",
            "eval_batch_size": EVAL_CHUNK * item_num,
        })
        sys.argv = argv
        logging.getLogger().setLevel(logging.WARNING)
        init_seed(config["seed"], config["reproducibility"])
        dataset = create_dataset(config)
        train_data, _, test_data = data_preparation(config, dataset)
        # The split must arrive whole: no pair filtered out, no id added.
        assert dataset.item_num == item_num, (dataset.item_num, item_num)
        assert train_data._dataset.inter_num == n_pairs, (train_data._dataset.inter_num, n_pairs)
        model = LightGCN(config, train_data._dataset).to(config["device"])
        trainer = Trainer(config, model)

        # Training: the body of Trainer._train_epoch, one batch per call.
        model.train()
        batches_iter = iter(train_data)

        def step():
            nonlocal batches_iter
            try:
                interaction = next(batches_iter)
            except StopIteration:  # more batches asked for than one epoch holds: next epoch
                batches_iter = iter(train_data)
                interaction = next(batches_iter)
            interaction = interaction.to(config["device"])
            trainer.optimizer.zero_grad()
            loss = model.calculate_loss(interaction)
            trainer._check_nan(loss)
            loss.item()  # RecBole accumulates the epoch's loss with .item() every batch
            loss.backward()
            trainer.optimizer.step()

        times = time_steps(step, batches, warmup)

        # Evaluation: a warm-up forward, then RecBole's full-sort evaluation of every test user.
        model.eval()
        with torch.no_grad():
            model.forward()
        model.restore_user_e = model.restore_item_e = None  # the timed pass propagates again
        eval_s, result = timed(lambda: trainer.evaluate(test_data, load_best_model=False))
        recall = float(result[f"recall@{TOPK}"])
        n_eval_users = int(test_data.sample_size)
    finally:
        os.chdir(cwd)
        shutil.rmtree(workdir, ignore_errors=True)

    notes = [f"{n_eval_users} users evaluated by Trainer.evaluate (full mode, {EVAL_CHUNK} users/batch)",
             "split via benchmark_filename train/valid/test with valid = copy of test",
             "RecBole reg: reg_weight * sum of L2 norms (require_pow False) / batch",
             "negatives: RecBole uniform sampler, unseen items only"]
    if shims:
        notes.append("runtime shims: " + ", ".join(shims))
    return make_row("recbole", recbole.__version__, threads, times, n_pairs, eval_s, recall, notes)


# ---------------------------------------------------------------------------------------- PyG
def run_pyg(variant: str, threads: int, batches: int, warmup: int) -> dict:
    import torch
    import torch_geometric
    from torch_geometric.nn.models import LightGCN
    from torch_geometric.utils import to_torch_csr_tensor

    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    ds = load_gowalla()
    n_users, n_items = ds.train.n_users, ds.train.n_items
    n_nodes = n_users + n_items
    users, items = (torch.from_numpy(a) for a in ds.train.pairs())
    n_pairs = users.numel()

    # The undirected bipartite graph: user u is node u, item i is node n_users + i.
    edge_index = torch.cat([torch.stack([users, items + n_users]), torch.stack([items + n_users, users])], 1)
    graph = edge_index if variant == "edge" else to_torch_csr_tensor(edge_index, size=(n_nodes, n_nodes))

    model = LightGCN(n_nodes, DIM, num_layers=LAYERS)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)

    # Training, as in PyG's LightGCN example: batches of a shuffled pass, uniform negatives.
    order = torch.randperm(n_pairs)
    cursor = 0

    def step():
        nonlocal order, cursor
        if cursor >= n_pairs:  # more batches asked for than one epoch holds: next epoch
            order, cursor = torch.randperm(n_pairs), 0
        idx = order[cursor:cursor + BATCH]
        cursor += BATCH
        u, pos = users[idx], items[idx] + n_users
        neg = torch.randint(n_users, n_nodes, (idx.numel(),))
        edge_label_index = torch.stack([torch.cat([u, u]), torch.cat([pos, neg])])
        pos_rank, neg_rank = model(graph, edge_label_index).chunk(2)
        loss = model.recommendation_loss(pos_rank, neg_rank, node_id=edge_label_index.unique(), lambda_reg=REG)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    model.train()
    times = time_steps(step, batches, warmup)

    # Evaluation: a warm-up forward, then one timed pass over all test users.
    model.eval()

    def evaluate() -> float:
        with torch.no_grad():
            emb = model.get_embedding(graph)
            return full_ranking_recall(emb[:n_users], emb[n_users:], ds.train, ds.test)

    with torch.no_grad():
        model.get_embedding(graph)
    eval_s, recall = timed(evaluate)

    notes = ["PyG LightGCN example loop: shuffled pass, 1 negative uniform over all items (seen not excluded)",
             "recommendation_loss: mean BPR + 1e-4 * sq. norm of the batch's distinct layer-0 node embeddings / batch",
             "gcn_norm recomputed in every layer of every forward (LGConv default)"]
    notes.append("COO edge_index, gather/scatter message passing" if variant == "edge" else
                 "torch.sparse_csr_tensor adjacency (torch.sparse.mm); torch_sparse SparseTensor not installed")
    return make_row(f"pyg-{variant}", torch_geometric.__version__, threads, times, n_pairs, eval_s, recall, notes)


# ---------------------------------------------------------------------------------------- driver
def run_one(peer: str, threads: int, batches: int, warmup: int) -> dict:
    if peer == "recbole":
        return run_recbole(threads, batches, warmup)
    return run_pyg(peer.split("-", 1)[1], threads, batches, warmup)


def run_all(a) -> list[dict]:
    """Each peer in its own fresh interpreter, so that peak RSS and library state are its own."""
    rows = []
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(a.threads)
    for peer in PEERS:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
            out = tmp.name
        cmd = [a.python, os.path.abspath(__file__), "--peer", peer, "--threads", str(a.threads),
               "--batches", str(a.batches), "--warmup", str(a.warmup), "--out", out]
        print(f"-- {peer}: {' '.join(cmd)}", flush=True)
        proc = subprocess.run(cmd, env=env)
        if proc.returncode == 0:
            with open(out) as f:
                rows.append(json.load(f))
        else:
            rows.append({"peer": peer, "error": f"exit status {proc.returncode}"})
        os.unlink(out)
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'peer':<10} {'version':<8} {'thr':>3} {'batch ms':>9} {'mean ms':>9} {'epoch s':>8} "
          f"{'eval s':>7} {'R@20':>7} {'RSS MB':>7}")
    for r in rows:
        if "error" in r:
            print(f"{r['peer']:<10} FAILED ({r['error']})")
            continue
        print(f"{r['peer']:<10} {r['version']:<8} {r['threads']:>3} {r['median_batch_s'] * 1e3:9.1f} "
              f"{r['mean_batch_s'] * 1e3:9.1f} {r['epoch_s']:8.1f} {r['eval_s']:7.2f} "
              f"{r['recall@20']:7.4f} {r['peak_rss_mb']:7.0f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--peer", choices=PEERS, help="run this peer in the current process")
    which.add_argument("--all", action="store_true", help="run every peer, each in a fresh subprocess")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--batches", type=int, default=20, help="timed training batches")
    p.add_argument("--warmup", type=int, default=3, help="untimed training batches first")
    p.add_argument("--python", default=DEFAULT_PYTHON, help="interpreter with the peers installed (--all)")
    p.add_argument("--out", default=None, help="JSON file to write")
    a = p.parse_args()

    warnings.filterwarnings("ignore")  # the libraries' deprecation and beta notices
    if a.peer:
        result = run_one(a.peer, a.threads, a.batches, a.warmup)
        print_table([result])
    else:
        rows = run_all(a)
        print_table(rows)
        result = {"dataset": DATASET, "threads": a.threads, "batches": a.batches, "warmup": a.warmup,
                  "workload": {"model": f"lightgcn-{LAYERS}", "dim": DIM, "loss": "bpr", "batch": BATCH,
                               "lr": LR, "reg": REG, "eval": f"full ranking, recall@{TOPK}"},
                  "env": {"python": a.python, "cpus": os.cpu_count()}, "rows": rows}
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
