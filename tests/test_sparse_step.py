"""The sparse step (``optimizer`` = ``sparse-adam`` / ``rowwise-adagrad``): every model and loss
gives the tables row gradients equal to the dense gradient on the rows a batch reaches (and the
dense gradient is zero elsewhere), the optimizers follow their update rules written out here on
those rows and leave every other row alone, checkpoints resume exactly, and the settings where a
step must touch every row are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ssmrec import Recommender
from ssmrec.cli import main
from ssmrec.data import Dataset, Interactions, ratio_split, synthetic
from ssmrec.errors import ConfigError, TrainingError
from ssmrec.experiments.grid import result_settings
from ssmrec.experiments.records import Record, stop_note
from ssmrec.models import SVDPP, LightGCN, build_model
from ssmrec.sweeps import Sweep
from ssmrec.sweeps.members import member_configs
from ssmrec.train import TrainConfig, Trainer
from ssmrec.train import optim as optim_module
from ssmrec.train.config_io import load_toml
from ssmrec.train.distributed import SINGLE, launch
from ssmrec.train.objective import build_objective
from ssmrec.train.optim import RowWiseAdagrad, SparseAdam, dense_hint
from ssmrec.train.setup import make_optimizer

MODELS = {
    "mf": {"model": "mf"},
    "svdpp-user": {"model": "svdpp", "side": "user"},
    "svdpp-item": {"model": "svdpp", "side": "item", "a1": 0.5},
    "lightgcn-1": {"model": "lightgcn", "layers": 1},
}
LOSSES = {
    "bpr": {"loss": "bpr"},
    "bce": {"loss": "bce", "negatives": 3},
    "ccl": {"loss": "ccl", "negatives": 10},
    "ssm": {"loss": "ssm", "mask_duplicates": True},
    "ssm-extra": {"loss": "ssm", "extra_negatives": 12, "negative_beta": 0.5},
    "ssm-row-negatives": {"loss": "ssm", "negatives": 3},
    "ssm-logq": {"loss": "ssm", "logq": True, "mask_seen": True, "extra_negatives": 5},
    "bsl": {"loss": "bsl"},
}
OPTIMIZERS = ("sparse-adam", "rowwise-adagrad")
LR = {"sparse-adam": 0.01, "rowwise-adagrad": 0.05}


@pytest.fixture(scope="module")
def data() -> Dataset:
    """400 users x 300 items: a batch of 24 reaches a part of the tables, its graph rows more."""
    inter = synthetic(400, 300, per_user=(3, 12), seed=3)
    train, _, test = ratio_split(inter, (0.8, 0.0, 0.2), seed=0)
    return Dataset("small", train, test, source="synthetic")


@pytest.fixture(scope="module")
def dislikes(data) -> Interactions:
    """Some user-item pairs outside the training pairs, as explicit negatives (for ntr)."""
    rng = np.random.default_rng(5)
    u, i = rng.integers(0, data.n_users, 600), rng.integers(0, data.n_items, 600)
    keep = ~data.train.contains(u, i)
    return Interactions.from_pairs(u[keep], i[keep], data.n_users, data.n_items, name="dislikes")


def build(data, settings: dict, dislikes=None):
    """Model, objective, sampler and optimizer of a configuration, as Trainer builds them."""
    cfg = TrainConfig.from_dict({"dataset": "small", "dim": 8, "batch_size": 24, "reg": 1e-2, "tau": 0.3,
                                 **settings})
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, data.train, cfg.dim, layers=cfg.layers, side=cfg.side, a0=cfg.a0, a1=cfg.a1)
    objective, sampler = build_objective(cfg, data.train, dislikes=dislikes)
    opt = make_optimizer(model, cfg.lr, torch.device("cpu"), cfg.optimizer)
    return cfg, model, objective, sampler, opt


def expected_rows(data, cfg, batch) -> dict[str, set[int]]:
    """The rows of each table a batch reaches: its own ids, and for graph models the rows whose
    messages the batch's representations read (an independent account, from the training pairs)."""
    users = set(batch.users.tolist())
    cand = set(batch.items.tolist())
    for extra in (batch.negatives, batch.shared):
        if extra is not None:
            cand |= set(extra.reshape(-1).tolist())
    if batch.dislike_users is not None:
        users |= set(batch.dislike_users.tolist())
        cand |= set(batch.dislike_items.tolist())
    r = data.train.to_scipy().tocsr()
    rt = r.T.tocsr()
    items_of = {i for u in users for i in r.indices[r.indptr[u]:r.indptr[u + 1]]}
    users_of = {u for i in cand for u in rt.indices[rt.indptr[i]:rt.indptr[i + 1]]}
    if cfg.model == "mf":
        return {"user_emb": users, "item_emb": cand}
    if cfg.model == "svdpp" and cfg.side == "user":
        return {"user_emb": users, "item_emb": cand | items_of}
    if cfg.model == "svdpp":
        return {"user_emb": users | users_of, "item_emb": cand}
    return {"user_emb": users | users_of, "item_emb": cand | items_of}


def dense_twin(data, cfg):
    """The same model (same initialisation) with dense gradients."""
    torch.manual_seed(cfg.seed)
    return build_model(cfg.model, data.train, cfg.dim, layers=cfg.layers, side=cfg.side, a0=cfg.a0, a1=cfg.a1)


def check_rows(data, cfg, model, objective, batch) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Backward one batch with row gradients, check them against the dense gradient, return each
    table's coalesced ``(rows, values)``."""
    model.zero_grad(set_to_none=True)
    objective(model, batch).backward()
    twin = dense_twin(data, cfg)
    twin.load_state_dict(model.state_dict())
    objective(twin, batch).backward()
    expected = expected_rows(data, cfg, batch)
    out = {}
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        assert p.grad.layout == torch.sparse_coo, name
        assert q.grad.layout == torch.strided, name
        g = p.grad.coalesce()
        rows = g.indices()[0]
        assert set(rows.tolist()) == expected[name], name
        assert len(expected[name]) < p.shape[0], f"{name}: the batch reaches every row; the check proves nothing"
        torch.testing.assert_close(g.values(), q.grad[rows], rtol=1e-5, atol=1e-8, msg=name)
        elsewhere = torch.ones(p.shape[0], dtype=torch.bool)
        elsewhere[rows] = False
        assert torch.count_nonzero(q.grad[elsewhere]) == 0, name
        out[name] = (rows, g.values())
    return out


def reference_step(name: str, opt, p: torch.Tensor, rows, g, before, state_before, lr: float) -> np.ndarray:
    """The update rule written out (float64) on the touched rows; untouched rows as they were."""
    w = before.double().numpy().copy()
    r, g = rows.numpy(), g.double().numpy()
    if name == "sparse-adam":
        b1, b2, eps = 0.9, 0.999, 1e-8
        t = state_before.get("step", 0) + 1
        m = state_before["exp_avg"].double().numpy()[r] if state_before else np.zeros_like(g)
        v = state_before["exp_avg_sq"].double().numpy()[r] if state_before else np.zeros_like(g)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w[r] -= lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps)
        new = opt.state[p]
        # float32 against float64: tolerances at float32's resolution of the largest entry
        np.testing.assert_allclose(new["exp_avg"].double().numpy()[r], m, rtol=1e-5, atol=1e-6 * abs(m).max())
        np.testing.assert_allclose(new["exp_avg_sq"].double().numpy()[r], v, rtol=1e-5, atol=1e-6 * v.max())
        assert new["step"] == t
    else:
        eps = 1e-8
        acc = state_before["sum"].double().numpy()[r] if state_before else np.zeros(len(r))
        acc = acc + (g * g).mean(axis=1)
        w[r] -= lr * g / (np.sqrt(acc)[:, None] + eps)
        np.testing.assert_allclose(opt.state[p]["sum"].double().numpy()[r], acc, rtol=1e-5, atol=1e-6 * acc.max())
    return w


def snapshot_state(opt, p) -> dict:
    return {k: (v.clone() if torch.is_tensor(v) else v) for k, v in opt.state.get(p, {}).items()}


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("model", list(MODELS))
def test_row_gradients_and_update_rule(data, model, loss, optimizer):
    lr = LR[optimizer]
    cfg, m, objective, sampler, opt = build(data, {**MODELS[model], **LOSSES[loss], "optimizer": optimizer,
                                                  "lr": lr})
    assert m.sparse_grads
    batches = sampler.epoch(0)
    for _ in range(2):  # the second step starts from the state of the first, on other rows
        batch = next(batches)
        grads = check_rows(data, cfg, m, objective, batch)
        before = {n: (p.detach().clone(), snapshot_state(opt, p)) for n, p in m.named_parameters()}
        opt.step()
        for n, p in m.named_parameters():
            rows, g = grads[n]
            w0, s0 = before[n]
            want = reference_step(optimizer, opt, p, rows, g, w0, s0, lr)
            np.testing.assert_allclose(p.detach().double().numpy(), want, rtol=0, atol=1e-7, err_msg=n)
            untouched = torch.ones(p.shape[0], dtype=torch.bool)
            untouched[rows] = False
            assert torch.equal(p.detach()[untouched], w0[untouched]), n  # not a bit moved
            for k, v in opt.state[p].items():  # nor their state
                if torch.is_tensor(v) and v.dim() and k in s0:
                    assert torch.equal(v[untouched], s0[k][untouched]), (n, k)
                elif torch.is_tensor(v) and v.dim():
                    assert torch.count_nonzero(v[untouched]) == 0, (n, k)


@pytest.mark.parametrize("model", ["mf", "lightgcn-1"])
def test_ntr_dislikes_give_row_gradients(data, dislikes, model):
    cfg, m, objective, sampler, opt = build(data, {**MODELS[model], "loss": "ntr", "optimizer": "sparse-adam"},
                                            dislikes=dislikes)
    batch = next(sampler.epoch(0))
    assert batch.dislike_users is not None and batch.dislike_users.numel()
    check_rows(data, cfg, m, objective, batch)


@pytest.mark.parametrize("make", [lambda t: SVDPP(t, 8, side="user"), lambda t: SVDPP(t, 8, side="item", a1=0.5),
                                  lambda t: LightGCN(t, 8, layers=1)], ids=["svdpp-user", "svdpp-item", "lightgcn-1"])
def test_one_hop_rows_with_a_row_drawn_many_times(data, make):
    """The sparse one-hop path builds its blocks over the batch's distinct rows: copies of a row
    get the same representation and their gradients add up, as on the dense path."""
    popular_item = int(np.argmax(data.train.item_degree))
    users = torch.tensor([3, 3, 7, 3, 11])
    items = torch.tensor([popular_item, 5, popular_item, popular_item, 9, 2])
    weights = (torch.randn(5, 8, generator=torch.Generator().manual_seed(0)),
               torch.randn(6, 8, generator=torch.Generator().manual_seed(1)))
    out = {}
    for sparse in (False, True):
        torch.manual_seed(0)
        m = make(data.train)
        m.use_sparse_grads(sparse)
        u, i = m.batch_reps(users, items)
        ((u * weights[0]).sum() + (i * weights[1]).sum()).backward()
        out[sparse] = (u.detach(), i.detach(), [p.grad for p in m.parameters()])
    torch.testing.assert_close(out[True][0], out[False][0])
    torch.testing.assert_close(out[True][1], out[False][1])
    for g_sparse, g_dense in zip(out[True][2], out[False][2]):
        assert g_sparse.layout == torch.sparse_coo
        torch.testing.assert_close(g_sparse.to_dense(), g_dense, rtol=1e-5, atol=1e-7)


def test_lightgcn_without_layers_is_mf(data):
    cfg, m, objective, sampler, _ = build(data, {"model": "lightgcn", "layers": 0, "loss": "ssm",
                                                "optimizer": "rowwise-adagrad"})
    batch = next(sampler.epoch(0))
    cfg = cfg.replace({"model": "mf"})  # the rows reached are those of MF
    check_rows(data, cfg, m, objective, batch)


def test_sparse_adam_is_torch_sparse_adam(data):
    """Lazy Adam here and torch.optim.SparseAdam take the same steps (to float rounding)."""
    cfg, m, objective, sampler, opt = build(data, {"model": "svdpp", "loss": "ssm", "optimizer": "sparse-adam",
                                                  "lr": 0.01})
    twin = dense_twin(data, cfg)
    twin.load_state_dict(m.state_dict())
    twin.use_sparse_grads()
    ref = torch.optim.SparseAdam(list(twin.parameters()), lr=0.01)
    for _, batch in zip(range(3), sampler.epoch(0)):
        for model, o in ((m, opt), (twin, ref)):
            model.zero_grad(set_to_none=True)
            objective(model, batch).backward()
            o.step()
    for p, q in zip(m.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)


def test_default_adam_keeps_dense_gradients(data):
    cfg, m, objective, sampler, opt = build(data, {"model": "mf", "loss": "ssm"})
    assert cfg.optimizer == "adam" and isinstance(opt, torch.optim.Adam) and not m.sparse_grads
    objective(m, next(sampler.epoch(0))).backward()
    assert all(p.grad.layout == torch.strided for p in m.parameters())


# ---------------------------------------------------------------------- resume
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("settings", [{"model": "mf", "loss": "ssm", "extra_negatives": 8},
                                      {"model": "svdpp", "loss": "bpr"}], ids=["mf-ssm", "svdpp-bpr"])
def test_checkpoint_mid_epoch_then_resume_is_the_uninterrupted_run(data, tmp_path, monkeypatch, optimizer,
                                                                    settings):
    base = {"dataset": "small", "dim": 8, "batch_size": 128, "epochs": 2, "progress": False, "optimizer": optimizer,
            "lr": LR[optimizer], **settings}
    whole = Trainer(TrainConfig.from_dict(base), data, run_dir=tmp_path / "whole", echo=None)
    whole.fit()
    cut = Trainer(TrainConfig.from_dict({**base, "checkpoint_every": 1e-9}), data, run_dir=tmp_path / "cut",
                  echo=None)
    per_epoch, calls = len(cut.sampler), {"n": 0}
    original = cut.objective.__class__.__call__

    def killed(self, model, batch):
        calls["n"] += 1
        if calls["n"] == per_epoch + 3:  # the third batch of epoch 2: nothing saved at this point
            raise SystemExit("killed")
        return original(self, model, batch)

    monkeypatch.setattr(cut.objective.__class__, "__call__", killed)
    with pytest.raises(SystemExit):
        cut.fit()
    monkeypatch.undo()
    resumed = Trainer.resume(tmp_path / "cut", echo=None, dataset=data)
    assert (resumed.epoch, resumed.batch) == (1, 2)
    assert resumed.model.sparse_grads and type(resumed.optimizer) is type(whole.optimizer)
    resumed.fit()
    for (k, v), w in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(v, w), k
    for p, q in zip(whole.model.parameters(), resumed.model.parameters()):
        for k, v in whole.optimizer.state[p].items():
            w = resumed.optimizer.state[q][k]
            assert torch.equal(v, w) if torch.is_tensor(v) else v == w, k
    assert [h["loss"] for h in whole.history] == [h["loss"] for h in resumed.history]


# ---------------------------------------------------------------------- several processes
# 97 rows: the 2348 pairs make 25 global batches, the last of 20 rows, split 49 + 48 (10 + 10)
DIST_BASE = {"dataset": "small", "dim": 8, "batch_size": 97, "epochs": 1, "progress": False, "reg": 1e-2,
             "tau": 0.3}
DIST_SCENARIOS = {
    "mf-ssm-sparse-adam": {"model": "mf", "loss": "ssm", "extra_negatives": 6, "optimizer": "sparse-adam",
                           "lr": 0.01},
    "lightgcn-bpr-rowwise-adagrad": {"model": "lightgcn", "layers": 1, "loss": "bpr", "optimizer": "rowwise-adagrad",
                                     "lr": 0.05},
    "svdpp-item-bce-sparse-adam": {"model": "svdpp", "side": "item", "loss": "bce", "optimizer": "sparse-adam",
                                   "lr": 0.01},
}


def run_steps(ctx, data, settings):
    """An epoch step by step: each step's global loss and summed row gradients, the tables at the end."""
    t = Trainer(TrainConfig.from_dict({**DIST_BASE, **settings}), data, write=False, echo=None, dist=ctx)
    losses, grads = [], []
    for batch in t.sampler.epoch(0, rank=ctx.rank, world=ctx.world):
        losses.append(t.step(batch, 0))
        grads.append({n: p.grad.coalesce() for n, p in t.model.named_parameters()})
    return {"loss": losses, "grads": grads, "params": {k: v.clone() for k, v in t.model.state_dict().items()}}


def _dist_worker(ctx, data, out):
    torch.save({name: run_steps(ctx, data, s) for name, s in DIST_SCENARIOS.items()}, out / f"rank{ctx.rank}.pt")


@pytest.fixture(scope="module")
def two_workers(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("sparse-dist")
    launch(_dist_worker, (data, out), nproc=2, timeout=120)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.mark.parametrize("name", list(DIST_SCENARIOS))
def test_two_processes_exchange_rows_and_take_the_one_process_step(two_workers, data, name):
    one = run_steps(SINGLE, data, DIST_SCENARIOS[name])
    r0, r1 = two_workers[0][name], two_workers[1][name]
    assert len(r0["loss"]) == len(one["loss"]) == 25
    assert r0["loss"] == pytest.approx(one["loss"], abs=1e-5)
    for step, (g0, g1, g) in enumerate(zip(r0["grads"], r1["grads"], one["grads"])):
        for k in g:  # the same rows, the summed gradient, on both replicas
            assert g0[k].layout == torch.sparse_coo and g0[k].is_coalesced(), k
            assert torch.equal(g0[k].indices(), g[k].indices()), f"{k} at step {step}"
            torch.testing.assert_close(g0[k].values(), g[k].values(), atol=1e-6, rtol=1e-4, msg=f"{k} at {step}")
            assert torch.equal(g0[k].values(), g1[k].values()), f"replicas' gradients differ: {k} at {step}"
    for k, v in one["params"].items():
        torch.testing.assert_close(r0["params"][k], v, atol=1e-5, rtol=0, msg=k)
        assert torch.equal(r0["params"][k], r1["params"][k]), f"replicas differ: {k}"


# ---------------------------------------------------------------------- refusals and hints
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_full_softmax_is_refused(optimizer):
    with pytest.raises(ConfigError, match="optimizer.*full-softmax.*every item"):
        TrainConfig.from_dict({"loss": "softmax", "model": "mf", "optimizer": optimizer})


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_lightgcn_with_two_layers_is_refused(optimizer):
    with pytest.raises(ConfigError, match="optimizer.*LightGCN of 2 layers.*whole graph"):
        TrainConfig.from_dict({"model": "lightgcn", "layers": 2, "optimizer": optimizer})
    TrainConfig.from_dict({"model": "lightgcn", "layers": 2, "optimizer": "adam"})  # dense Adam takes it


def test_unknown_optimizer_is_refused():
    with pytest.raises(ConfigError, match="optimizer must be one of adam, sparse-adam, rowwise-adagrad, got 'sgd'"):
        TrainConfig.from_dict({"optimizer": "sgd"})


def test_whole_table_paths_are_refused_by_the_models(data):
    with pytest.raises(ConfigError, match="SVD\\+\\+'s plain path"):
        SVDPP(data.train, 8, fast=False).use_sparse_grads()
    with pytest.raises(ConfigError, match="LightGCN's plain path"):
        LightGCN(data.train, 8, layers=1, fast=False).use_sparse_grads()
    with pytest.raises(ConfigError, match="LightGCN with 3 layers"):
        LightGCN(data.train, 8, layers=3).use_sparse_grads()
    m = LightGCN(data.train, 8, layers=1)
    m.use_sparse_grads()
    m.layers = 2  # changed behind the check's back: the whole-graph path still refuses to run
    with pytest.raises(ConfigError, match="LightGCN with 2 layers"):
        m.batch_reps(torch.tensor([0]), torch.tensor([0]))
    m = SVDPP(data.train, 8)
    m.use_sparse_grads()
    m.fast = False
    with pytest.raises(ConfigError, match="every row's representation"):
        m.batch_reps(torch.tensor([0]), torch.tensor([0]))


@pytest.mark.parametrize("cls", [SparseAdam, RowWiseAdagrad])
def test_a_dense_gradient_is_refused_by_the_sparse_optimizers(cls):
    p = torch.nn.Parameter(torch.zeros(5, 3))
    opt = cls([p], lr=0.1)
    p.grad = torch.ones(5, 3)
    with pytest.raises(TrainingError, match="dense gradient for a table of 5 rows"):
        opt.step()
    assert torch.count_nonzero(p) == 0


def test_hint_for_a_large_catalogue_on_dense_adam(data, monkeypatch):
    cfg = TrainConfig.from_dict({"model": "mf", "loss": "ssm"})
    assert dense_hint(cfg, 300_000, 200_000).startswith("hint: 300,000 users + 200,000 items")
    assert dense_hint(cfg.replace({"optimizer": "sparse-adam"}), 300_000, 200_000) is None
    assert dense_hint(cfg, 1000, 1000) is None
    # where a sparse optimizer would be refused, no hint points to it
    assert dense_hint(cfg.replace({"loss": "softmax"}), 300_000, 200_000) is None
    assert dense_hint(cfg.replace({"model": "lightgcn", "layers": 3}), 300_000, 200_000) is None
    assert dense_hint(cfg.replace({"model": "lightgcn", "layers": 1}), 300_000, 200_000) is not None
    monkeypatch.setattr(optim_module, "LARGE_CATALOGUE", 10)
    lines: list[str] = []
    base = {"dataset": "small", "model": "mf", "dim": 8, "progress": False}
    Trainer(TrainConfig.from_dict(base), data, write=False, echo=lines.append)
    assert sum("--optimizer sparse-adam" in line for line in lines) == 1
    lines.clear()
    Trainer(TrainConfig.from_dict({**base, "optimizer": "rowwise-adagrad"}), data, write=False, echo=lines.append)
    assert not any("hint" in line for line in lines)


def test_sweeps_and_tuning_refuse_a_sparse_optimizer(data):
    base = TrainConfig.from_dict({"dataset": "small", "model": "mf", "optimizer": "sparse-adam", "dim": 8})
    with pytest.raises(ConfigError, match="optimizer: a sweep trains its members with dense Adam"):
        member_configs(base, [{"reg": 1e-3}, {"reg": 1e-2}])
    with pytest.raises(ConfigError, match="optimizer: a sweep"):
        Sweep(base, [{"reg": 1e-3}, {"reg": 1e-2}], data, echo=None)


def test_the_command_line_and_the_python_api_take_the_setting(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", str(tiny_dir), "--model", "svdpp", "--loss", "bpr", "--dim", "8",
                 "--epochs", "1", "--no-progress", "--optimizer", "rowwise-adagrad", "--lr", "0.05",
                 "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["config"]["optimizer"] == "rowwise-adagrad"
    assert main(["train", "--dataset", str(tiny_dir), "--loss", "softmax", "--optimizer", "sparse-adam"]) == 2
    assert "optimizer cannot be sparse-adam with a full-softmax loss" in capsys.readouterr().err
    toml = tmp_path / "run.toml"
    toml.write_text(f'dataset = "{tiny_dir}"\nmodel = "mf"\noptimizer = "sparse-adam"\n')
    assert TrainConfig.from_dict(load_toml(toml)).optimizer == "sparse-adam"
    rec = Recommender(model="mf", loss="ssm", optimizer="sparse-adam", dim=8, epochs=1)
    assert rec.cfg.optimizer == "sparse-adam"
    with pytest.raises(ConfigError, match="optimizer"):
        Recommender(model="lightgcn", layers=3, optimizer="rowwise-adagrad")


def test_grid_cells_keep_their_ids_and_reports_name_a_sparse_optimizer():
    adam = TrainConfig.from_dict({"dataset": "gowalla", "model": "mf"})
    assert "optimizer" not in result_settings(adam)  # every recorded cell's id stays what it was
    assert result_settings(adam.replace({"optimizer": "sparse-adam"}))["optimizer"] == "sparse-adam"
    m = {"stop_reason": "early_stopped", "epochs_run": 10, "best_epoch": 8}
    sparse = Record(Path("a"), {"settings": {"lr": 1e-3, "optimizer": "rowwise-adagrad"}, "metrics": m})
    dense = Record(Path("b"), {"settings": {"lr": 1e-3}, "metrics": m})
    assert stop_note([sparse, dense]).endswith("; optimizer rowwise-adagrad (the study's: adam)")
    assert "optimizer" not in stop_note([dense])
