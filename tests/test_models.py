"""Models against dense / naive references; one contract suite over every model x loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssmrec.data import Batch, Interactions, synthetic
from ssmrec.losses import LOSSES, kind_of
from ssmrec.models import MF, SVDPP, LightGCN, build_model, propagation_matrix
from ssmrec.train import TrainConfig, build_objective


@pytest.fixture(scope="module")
def graph() -> Interactions:
    return synthetic(40, 30, per_user=(2, 9), seed=5)


def test_propagation_matrix_matches_naive(graph):
    du, di = graph.user_degree, graph.item_degree
    for side, a0, a1 in [("user", 0.5, 0.5), ("user", 1.0, 0.0), ("item", 0.5, 0.0), ("item", 0.3, 0.7)]:
        w = propagation_matrix(graph, side, a0, a1).toarray()
        want = np.zeros((graph.n_users, graph.n_items))
        for u in range(graph.n_users):
            for i in graph.row(u):
                want[u, i] = 1 / (du[u] ** a0 * di[i] ** a1) if side == "user" else 1 / (di[i] ** a0 * du[u] ** a1)
        assert np.allclose(w, want if side == "user" else want.T, atol=1e-7)


def test_isolated_nodes_get_zero_weight():
    inter = Interactions.from_pairs(np.array([0, 0]), np.array([0, 1]), 3, 4)  # user 1,2 and item 2,3 isolated
    w = propagation_matrix(inter, "user", 0.5, 0.5)
    assert np.isfinite(w.data).all() and w.nnz == 2


def test_lightgcn_matches_dense_adjacency(graph):
    torch.manual_seed(0)
    m = LightGCN(graph, dim=6, layers=3)
    m_users, n = graph.n_users, graph.n_items
    A = np.zeros((m_users + n, m_users + n))
    r = graph.to_scipy().toarray()
    A[:m_users, m_users:], A[m_users:, :m_users] = r, r.T
    deg = A.sum(1)
    dinv = np.where(deg > 0, deg ** -0.5, 0)
    A_hat = dinv[:, None] * A * dinv[None, :]
    E = torch.cat([m.user_emb, m.item_emb]).detach().double().numpy()
    layers = [E]
    for _ in range(3):
        layers.append(A_hat @ layers[-1])
    final = np.mean(layers, axis=0)
    u, i = m()
    assert np.allclose(u.detach().numpy(), final[:m_users], atol=1e-5)
    assert np.allclose(i.detach().numpy(), final[m_users:], atol=1e-5)


@pytest.mark.parametrize("side", ["user", "item"])
def test_svdpp_matches_equations(graph, side):
    torch.manual_seed(0)
    a0, a1 = 1.0, 0.5
    m = SVDPP(graph, dim=4, side=side, a0=a0, a1=a1)
    P, Q = m.user_emb.detach().numpy(), m.item_emb.detach().numpy()
    du, di = graph.user_degree, graph.item_degree
    u, i = (t.detach().numpy() for t in m())
    if side == "user":  # eq. 23
        want = P.copy()
        for x in range(graph.n_users):
            for y in graph.row(x):
                want[x] += Q[y] / (du[x] ** a0 * di[y] ** a1)
        assert np.allclose(u, want, atol=1e-5) and np.allclose(i, Q)
    else:  # eq. 31
        want = Q.copy()
        for x in range(graph.n_users):
            for y in graph.row(x):
                want[y] += P[x] / (di[y] ** a0 * du[x] ** a1)
        assert np.allclose(i, want, atol=1e-5) and np.allclose(u, P)


@pytest.mark.parametrize("name", ["svdpp", "lightgcn"])
def test_fast_backward_equals_autograd(graph, name):
    grads = []
    for fast in (True, False):
        torch.manual_seed(0)
        m = build_model(name, graph, 8, layers=2, side="item", fast=fast)
        u, i = m()
        w = torch.linspace(-1, 1, u.numel()).view_as(u)
        ((u * w).sum() + (i ** 2).sum()).backward()
        grads.append((m.user_emb.grad.clone(), m.item_emb.grad.clone()))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-6)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-6)


def test_xavier_init_bounds(graph):
    torch.manual_seed(0)
    m = MF(1000, 500, 64)
    bound = (6 / (1000 + 64)) ** 0.5
    assert m.user_emb.abs().max() <= bound and m.user_emb.abs().max() > 0.9 * bound


def test_unknown_model():
    with pytest.raises(ValueError, match="unknown model 'ncf'.*mf, svdpp, lightgcn"):
        build_model("ncf", synthetic(5, 5, per_user=(1, 2)))


# ----------------------------------------------------------------------------- contract suite
MODEL_SETTINGS = {
    "mf": {},
    "svdpp-user": {"model": "svdpp", "side": "user", "a0": 1.0, "a1": 0.0},
    "svdpp-item": {"model": "svdpp", "side": "item", "a0": 0.5, "a1": 0.5},
    "lightgcn": {"model": "lightgcn", "layers": 2},
}


@pytest.mark.parametrize("model_key", list(MODEL_SETTINGS))
@pytest.mark.parametrize("loss", list(LOSSES))
def test_contract_every_model_with_every_loss(graph, model_key, loss):
    settings = {"model": "mf", **MODEL_SETTINGS[model_key]}
    # sampled losses: 3 negatives per positive; in-batch ones: the batch's other positives
    negatives = {"negatives": 3} if kind_of(loss) == "sampled" else {}
    cfg = TrainConfig.from_dict({**settings, "loss": loss, "dim": 8, "batch_size": 32, **negatives,
                                 "reg": 1e-4, "tau": 0.2, "seed": 0})
    torch.manual_seed(0)
    model = build_model(cfg.model, graph, cfg.dim, layers=cfg.layers, side=cfg.side, a0=cfg.a0, a1=cfg.a1)
    dislikes = None
    if loss == "ntr":  # learns from explicit negatives too: a few unseen (user, item) pairs
        from ssmrec.data import Interactions

        rng = np.random.default_rng(0)
        users, items = rng.integers(0, graph.n_users, 60), rng.integers(0, graph.n_items, 60)
        keep = ~graph.contains(users, items)
        dislikes = Interactions.from_pairs(users[keep], items[keep], graph.n_users, graph.n_items)
    objective, sampler = build_objective(cfg, graph, dislikes=dislikes)

    # 1. representations: full tables, and batch rows equal to indexing the tables
    u, i = model()
    assert u.shape == (graph.n_users, 8) and i.shape == (graph.n_items, 8)
    users, items = torch.tensor([3, 0, 3]), torch.tensor([5, 5, 29])
    bu, bi = model.batch_reps(users, items)
    assert torch.allclose(bu, u[users]) and torch.allclose(bi, i[items])

    # 2. a finite loss whose gradient reaches both embedding tables
    batch = next(iter(sampler.epoch(0)))
    value = objective(model, batch)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert model.user_emb.grad.abs().sum() > 0 and model.item_emb.grad.abs().sum() > 0

    # 3. optimisation lowers the loss on a fixed batch
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    first = objective(model, batch).item()
    for _ in range(30):
        opt.zero_grad()
        objective(model, batch).backward()
        opt.step()
    assert objective(model, batch).item() < first

    # 4. the model holds no loss and the loss no model
    assert not any(isinstance(m, tuple(LOSSES.values())) for m in model.modules())


def test_objective_regularises_layer0_of_users_positives_and_negatives(graph):
    cfg = TrainConfig.from_dict({"model": "mf", "loss": "bpr", "dim": 4, "reg": 1.0, "negatives": 1})
    torch.manual_seed(0)
    model = build_model("mf", graph, 4)
    objective, _ = build_objective(cfg, graph)
    batch = Batch(torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([[4], [5]]))
    with torch.no_grad():
        model.user_emb.zero_()
        model.item_emb.zero_()
        model.user_emb[0] = 1.0  # ||.||^2 = 4
        model.item_emb[4] = 2.0  # ||.||^2 = 16 (a negative)
    # main loss: every score is 0 except f(u0, i4)... u0 . i4 = 8 -> bpr terms log(1+e^8), log 2
    main = (np.log1p(np.exp(8.0)) + np.log(2)) / 2
    reg = 0.5 * (4 + 16) / 2
    assert objective(model, batch).item() == pytest.approx(main + reg, rel=1e-6)


@pytest.mark.parametrize("settings", [
    {"model": "lightgcn", "layers": 1}, {"model": "lightgcn", "layers": 3}, {"model": "lightgcn", "layers": 0},
    {"model": "svdpp", "side": "user", "a0": 1.0}, {"model": "svdpp", "side": "item", "a0": 0.5, "a1": 0.5},
])
def test_fast_batch_path_equals_plain_path(graph, settings):
    """Same representations and same gradients from the batch-restricted and the full computation."""
    users, items = torch.tensor([0, 5, 5, 39, 2]), torch.tensor([1, 1, 29, 7, 0])
    out = []
    for fast in (True, False):
        torch.manual_seed(0)
        m = build_model(settings["model"], graph, 8, layers=settings.get("layers", 1),
                        side=settings.get("side", "user"), a0=settings.get("a0", 0.5),
                        a1=settings.get("a1", 0.0), fast=fast)
        u, i = m.batch_reps(users, items)
        (u.pow(3).sum() + (u * i).sum()).backward()
        out.append((u.detach(), i.detach(), m.user_emb.grad.clone(), m.item_emb.grad.clone()))
    for a, b in zip(*out):
        assert torch.allclose(a, b, atol=1e-6)


def test_propagation_gather_paths_agree(graph):
    torch.manual_seed(0)
    m = LightGCN(graph, dim=4, layers=1)
    x = torch.randn(graph.n_items, 4)
    few = torch.tensor([3, 3, 0])
    many = torch.randint(0, graph.n_users, (500,))
    full = m.to_users(x)
    assert torch.allclose(m.to_users.gather(few, x), full[few], atol=1e-6)
    assert torch.allclose(m.to_users.gather(many, x), full[many], atol=1e-6)
    assert torch.allclose(m.to_users.rows(many, x), full[many], atol=1e-6)
