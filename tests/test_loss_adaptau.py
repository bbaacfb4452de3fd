"""Adap-tau: the Lambert W refresh by hand and against a root finder, the per-row-temperature loss
against a naive loop and SSM, the global tau_0 against the authors' logged value, gradcheck, state."""

from __future__ import annotations

import math

import pytest
import torch
from loss_cases import T, in_batch_case, rand
from scipy.optimize import brentq

from ssmrec.losses.adaptau import (
    AdaptiveTemperatureLoss,
    active_users,
    global_temperature,
    personalized_temperatures,
    similarity_gap,
)
from ssmrec.losses.ssm import SampledSoftmaxLoss

E = math.e


class FakeScorer:
    """The trainer's scorer over fixed embeddings: raw cos / ip of users against items."""

    def __init__(self, users, items, train_users, train_items, similarity="cos"):
        self.u, self.i, self.similarity = users, items, similarity
        self.n_users, self.n_items = len(users), len(items)
        self.train_users, self.train_items = train_users, train_items
        self.device = torch.device("cpu")

    def scores(self, users, items=None):
        u, i = self.u[users], self.i if items is None else self.i[items]
        if self.similarity == "cos":
            u, i = u / u.norm(dim=1, keepdim=True), i / i.norm(dim=1, keepdim=True)
        return u @ i.T


def small_scorer(n_users=6, n_items=9, seed=0):
    train_users = T([0, 0, 1, 2, 2, 2, 3, 4, 4, 5, 5, 5, 5])
    train_items = T([1, 4, 0, 2, 3, 8, 5, 6, 7, 0, 1, 2, 3])
    return FakeScorer(rand(n_users, 4, seed=seed), rand(n_items, 4, seed=seed + 1), train_users, train_items)


def loss_with_taus(taus, **kwargs):
    """A loss whose users already have the temperatures ``taus`` (set directly in the buffer)."""
    loss = AdaptiveTemperatureLoss(**kwargs)
    loss.on_epoch_start(1, FakeScorer(rand(len(taus), 2), rand(3, 2), T([0]), T([0])))
    loss.user_tau.copy_(T(taus, dtype=torch.float64))
    return loss


# ----------------------------------------------------------------------------- the refresh rule
def test_closed_form_hand_values():
    # losses 1+e, 1, 1-e: mean 1, beta 1 -> z = e, 0, -e (clipped to -1/e)
    # W(e) = 1 (1 * e^1 = e), W(0) = 0, W(-1/e) = -1  ->  tau = 0.1 * (e, 1, 1/e)
    got = personalized_temperatures(T([1 + E, 1.0, 1 - E], dtype=torch.float64), 0.1)
    assert got.tolist() == pytest.approx([0.1 * E, 0.1, 0.1 / E], rel=1e-12)
    # beta 2, losses (0, 2e): mean e, z = -e/2 (clipped to -1/e) and e/2 = 1.359141;
    # W(1.359141) = 0.685077 (0.685077 * e^0.685077 = 1.359141) -> tau = 0.2 * e^0.685077 = 0.396785
    got = personalized_temperatures(T([0.0, 2 * E], dtype=torch.float64), 0.2, beta=2.0)
    assert got.tolist() == pytest.approx([0.2 / E, 0.396785], abs=1e-6)
    # the quantile centre (the authors' weight_ratio): the median of (0, 1, 2) is 1 -> z = -1 (clipped), 0, 1
    # W(1) = 0.567143 (the omega constant) -> tau = 0.1 * (1/e, 1, e^0.567143 = 1.763223)
    got = personalized_temperatures(T([0.0, 1.0, 2.0], dtype=torch.float64), 0.1, center=0.5)
    assert got.tolist() == pytest.approx([0.1 / E, 0.1, 0.1763223], abs=1e-7)
    # beta = inf: no personalisation (the authors' "Adap-tau_0")
    assert personalized_temperatures(T([0.0, 5.0]), 0.3, beta=math.inf).tolist() == [0.3, 0.3]


@pytest.mark.parametrize("center", ["mean", 0.9])
def test_closed_form_solves_its_equation(center):
    """tau_u = tau_0 exp(W(z)) is the root t of (t / tau_0) log(t / tau_0) = z_u, t >= tau_0 / e."""
    losses = rand(40, seed=3).abs() * 3
    tau0, beta = 0.12, 0.7
    got = personalized_temperatures(losses, tau0, beta, center)
    c = losses.mean().item() if center == "mean" else torch.quantile(losses, center).item()
    for loss_u, tau_u in zip(losses.tolist(), got.tolist()):
        z = min(max((loss_u - c) / beta, -1 / E), 1000.0)
        if z == -1 / E:
            want = tau0 / E
        else:
            t = brentq(lambda t, z=z: t * math.log(t) - z, 1 / E, 1e4, xtol=1e-15, rtol=1e-15)
            want = tau0 * t
        assert tau_u == pytest.approx(want, rel=1e-10)


def test_global_temperature_matches_the_authors_log():
    # hand: gap 0.7, |U'| 2, |I| 50, |Y'| 5 -> 0.7 / log(2 * 50 / 10) = 0.7 / 2.302585 = 0.304006
    assert global_temperature(0.7, 2, 50, 5) == pytest.approx(0.304006, abs=1e-6)
    # Gowalla (LightGCN split): |U'| = 22490 users above the 20% activity quantile, 40981 items,
    # |Y'| = 746347 pairs; the authors' warm-up (gap 0.7) logged "current w_0 is 9.17942388767301"
    assert 1 / global_temperature(0.7, 22490, 40981, 746347) == pytest.approx(9.17942388767301, rel=1e-7)
    assert global_temperature(-0.1, 2, 50, 5) is None
    assert global_temperature(0.5, 2, 5, 5) is None  # log(10 / 10) = 0: no finite tau_0


def test_active_users_and_similarity_gap_match_naive_loop():
    sc = small_scorer()
    # degrees (2, 1, 3, 1, 2, 4): the 20% quantile (linear) of sorted (1, 1, 2, 2, 3, 4) is 1 -> keep > 1
    keep = active_users(sc.train_users, sc.n_users)
    assert keep.tolist() == [True, False, True, False, True, True]
    kept = [u for u in range(sc.n_users) if keep[u]]
    pairs = [(int(u), int(i)) for u, i in zip(sc.train_users, sc.train_items) if keep[u]]
    mu_pos = sum(float(sc.scores(T([u]), T([i]))) for u, i in pairs) / len(pairs)
    mu_all = sum(float(sc.scores(T([u]), T([i]))) for u in kept for i in range(sc.n_items)) / (len(kept) * sc.n_items)
    for chunk in (1, 9, 20, 1 << 22):  # one user per chunk, one, two, all
        gap, n_kept, n_pairs = similarity_gap(sc, chunk_elements=chunk)
        assert (n_kept, n_pairs) == (4, 11)
        assert gap == pytest.approx(mu_pos - mu_all, rel=1e-12)


# ----------------------------------------------------------------------------- the loss
def test_hand_value_with_per_user_temperatures():
    # cosines [[1, 0], [0, 1]]; user 0 at tau 0.5 -> logits [2, 0], user 1 at tau 1 -> [0, 1]
    # row 0: log(1 + e^-2) = 0.126928; row 1: log(1 + e^-1) = 0.313262; mean 0.220095
    u, i = T([[1.0, 0.0], [0.0, 1.0]]), T([[1.0, 0.0], [0.0, 1.0]])
    loss = loss_with_taus([0.5, 1.0])
    assert loss(u, i, user_ids=T([0, 1])).item() == pytest.approx(0.220095, abs=1e-6)
    # rows are matched to users by user_ids, not by position: swapped ids swap the temperatures
    # row 0 at tau 1: log(1 + e^-1); row 1 at tau 0.5: log(1 + e^-2): the same mean
    assert loss(u, i, user_ids=T([1, 0])).item() == pytest.approx(0.220095, abs=1e-6)
    assert loss(u, 3 * i, user_ids=T([1, 1])).item() == pytest.approx(0.313262, abs=1e-6)


def naive(u, i, ids, extra, extra_ids, taus, tau0, sim, logq, mask_dup, exclude, authors):
    def f(a, b):
        if sim == "cos":
            a, b = a / a.norm(), b / b.norm()
        return float(a @ b)

    cands = [(i[c], int(ids[c])) for c in range(len(i))] + (
        [(extra[k], int(extra_ids[k])) for k in range(len(extra))] if extra is not None else [])
    lq = (lambda c: float(logq[c])) if logq is not None else (lambda c: 0.0)
    total = 0.0
    for b in range(len(u)):
        pos = f(u[b], i[b]) / (tau0 if authors else taus[b]) - lq(b)
        denom = 0.0
        for c, (vec, cid) in enumerate(cands):
            if c == b and authors:
                continue
            if c != b and mask_dup and cid == int(ids[b]):
                continue
            if c != b and exclude is not None and exclude[b][c]:
                continue
            denom += math.exp(f(u[b], vec) / taus[b] - lq(c))
        total += -(pos - math.log(denom))
    return total / len(u)


@pytest.mark.parametrize("sim", ["cos", "ip"])
@pytest.mark.parametrize("mask_dup", [False, True])
@pytest.mark.parametrize("with_extra", [False, True])
@pytest.mark.parametrize("authors", [False, True])
def test_matches_naive_loop(sim, mask_dup, with_extra, authors):
    u, i, ids, extra, extra_ids, c, logq, exclude = in_batch_case(with_extra)
    user_ids = T([2, 0, 4, 2, 1, 3])
    user_taus = [0.3, 0.15, 0.5, 1.2, 0.07]
    loss = loss_with_taus(user_taus, tau=0.2, similarity=sim, mask_duplicates=mask_dup, authors_loss=authors)
    got = loss(u, i, item_ids=ids, extra_reps=extra, extra_ids=extra_ids, logq=logq, exclude=exclude,
               user_ids=user_ids)
    want = naive(u, i, ids, extra, extra_ids, [user_taus[x] for x in user_ids], 0.2, sim, logq, mask_dup,
                 exclude, authors)
    assert got.item() == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("sim", ["cos", "ip"])
def test_equals_ssm_when_every_user_has_tau(sim):
    u, i, e = rand(5, 4, seed=1), rand(5, 4, seed=2), rand(3, 4, seed=3)
    ids, extra_ids = T([0, 1, 0, 2, 3]), T([2, 4, 5])
    logq, exclude = rand(8, seed=4).abs(), rand(5, 8, seed=5) > 0.7
    kw = dict(item_ids=ids, extra_reps=e, extra_ids=extra_ids, logq=logq, exclude=exclude)
    want = SampledSoftmaxLoss(0.15, sim, mask_duplicates=True)(u, i, **kw).item()
    fresh = AdaptiveTemperatureLoss(0.15, sim, mask_duplicates=True)
    assert fresh(u, i, user_ids=T([0, 1, 2, 3, 4]), **kw).item() == pytest.approx(want, rel=1e-10)  # before any refresh
    loss = loss_with_taus([0.15] * 7, tau=0.15, similarity=sim, mask_duplicates=True)
    assert loss(u, i, user_ids=T([6, 1, 0, 1, 4]), **kw).item() == pytest.approx(want, rel=1e-10)
    assert loss(u, i, **kw).item() == pytest.approx(want, rel=1e-10)  # no user_ids: tau_0 for every row


@pytest.mark.parametrize("sim", ["cos", "ip"])
@pytest.mark.parametrize("authors", [False, True])
def test_gradcheck(sim, authors):
    loss = loss_with_taus([0.4, 0.9, 0.25], tau=0.5, similarity=sim, mask_duplicates=True, authors_loss=authors)
    ids, logq = T([0, 1, 0, 2]), rand(6, seed=9)
    exclude = torch.zeros(4, 6, dtype=torch.bool)
    exclude[1, 2] = True
    inputs = [x.clone().requires_grad_(True) for x in (rand(4, 3, seed=1), rand(4, 3, seed=2), rand(2, 3, seed=3))]
    assert torch.autograd.gradcheck(
        lambda a, b, c: loss(a, b, item_ids=ids, extra_reps=c, extra_ids=T([2, 3]), logq=logq, exclude=exclude,
                             user_ids=T([2, 0, 1, 2])), inputs, eps=1e-6, atol=1e-5)
    assert list(loss.parameters()) == [] and not loss.user_tau.requires_grad


# ----------------------------------------------------------------------------- statistics and epochs
def scorer_with_n_users(n):
    """A scorer good for sizing the buffers and for refreshes within the warm-up."""
    return FakeScorer(rand(n, 2), rand(3, 2), T([0]), T([0]))


def naive_row_loss_at_tau_1(u, i, ids, b):
    """Row b's cosine softmax loss at tau 1 over the batch's items, accidental hits masked."""
    cos = lambda a, c: float(a @ c / (a.norm() * c.norm()))  # noqa: E731
    denom = sum(math.exp(cos(u[b], i[c])) for c in range(len(i)) if c == b or int(ids[c]) != int(ids[b]))
    return -(cos(u[b], i[b]) - math.log(denom))


def test_statistics_accumulate_the_loss_at_tau_1_and_refresh():
    loss = loss_with_taus([0.2] * 4, tau=0.2, beta=0.5, mask_duplicates=True)
    batches = [(rand(3, 4, seed=s), rand(3, 4, seed=s + 10), T(uids), T(items))
               for s, uids, items in ((1, [0, 2, 0], [5, 6, 5]), (2, [1, 2, 2], [7, 8, 9]))]
    sums, counts = [0.0] * 4, [0] * 4
    for u, i, uids, items in batches:
        loss(u, i, item_ids=items, user_ids=uids)
        for b in range(3):
            sums[int(uids[b])] += naive_row_loss_at_tau_1(u, i, items, b)
            counts[int(uids[b])] += 1
    assert loss.loss_count.tolist() == counts == [2, 1, 3, 0]
    assert loss.loss_sum.tolist() == pytest.approx(sums, rel=1e-10)
    loss.eval()  # evaluation passes do not count
    loss(batches[0][0], batches[0][1], item_ids=batches[0][3], user_ids=batches[0][2])
    assert loss.loss_count.tolist() == [2, 1, 3, 0]
    loss.train()

    loss.on_epoch_start(2, scorer_with_n_users(4))  # within the warm-up: tau_0 stays 0.2
    means = T([sums[0] / 2, sums[1] / 1, sums[2] / 3], dtype=torch.float64)
    assert loss.user_tau[:3].tolist() == pytest.approx(personalized_temperatures(means, 0.2, 0.5).tolist(), rel=1e-12)
    assert loss.user_tau[3].item() == 0.2  # no rows last epoch: tau_0
    assert loss.loss_sum.abs().sum() == 0 and loss.loss_count.sum() == 0
    loss.on_epoch_start(3, scorer_with_n_users(4))  # an epoch without rows: everybody back to tau_0
    assert loss.user_tau.tolist() == [0.2] * 4


def test_epoch_schedule_and_global_tau():
    sc = small_scorer()
    loss = AdaptiveTemperatureLoss(tau=0.1, warmup=2)
    loss.on_epoch_start(1, sc)
    assert loss.user_tau.shape == (6,) and loss.user_tau.tolist() == [0.1] * 6  # first epoch: tau for all
    loss.on_epoch_start(2, sc)
    assert loss.tau0.item() == 0.1  # still in the warm-up
    loss(rand(2, 4, seed=7), rand(2, 4, seed=8), user_ids=T([0, 5]))
    user_loss = loss.loss_sum[[0, 5]].clone()
    loss.on_epoch_start(3, sc)  # first adaptive epoch: tau_0 from the model, then the users from it
    gap, n_kept, n_pairs = similarity_gap(sc)
    tau0 = global_temperature(gap, n_kept, sc.n_items, n_pairs)
    assert 0 < tau0 < 10 and loss.tau0.item() == pytest.approx(tau0, rel=1e-12)
    assert loss.user_tau[[1, 2, 3, 4]].tolist() == pytest.approx([tau0] * 4, rel=1e-12)
    assert loss.user_tau[[0, 5]].tolist() == pytest.approx(personalized_temperatures(user_loss, tau0).tolist(),
                                                           rel=1e-12)
    # warmup_gap: the authors' warm-up tau_0 = 0.7 / log(|U'| |I| / (2 |Y'|)) = 0.7 / log(4 * 9 / 22)
    warm = AdaptiveTemperatureLoss(warmup_gap=0.7)
    warm.on_epoch_start(1, sc)
    assert warm.tau0.item() == pytest.approx(0.7 / math.log(36 / 22), rel=1e-12)
    assert warm.user_tau.tolist() == pytest.approx([0.7 / math.log(36 / 22)] * 6, rel=1e-12)
    with pytest.raises(ValueError, match="temperatures for 6 users, the scorer has 7"):
        loss.on_epoch_start(4, scorer_with_n_users(7))


def test_two_users_refresh_hand_value():
    # one row each, equal candidates (ip, tau 1): user 0 logits [2, 0] -> log(1 + e^-2) = 0.126928,
    # user 1 logits [0, 1] -> log(1 + e^-1) = 0.313262; mean 0.220095; beta 0.1:
    # z0 = -0.931668 -> clipped to -1/e -> tau_0 / e;  z1 = +0.931668 -> W = 0.541898
    # (0.541898 * e^0.541898 = 0.931668) -> tau_1 = 0.1 * e^0.541898 = 0.171927
    loss = AdaptiveTemperatureLoss(tau=0.1, similarity="ip", beta=0.1)
    loss.on_epoch_start(1, scorer_with_n_users(2))
    loss(T([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64), T([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64),
         user_ids=T([0, 1]))
    assert loss.loss_sum.tolist() == pytest.approx([0.126928, 0.313262], abs=1e-6)
    loss.on_epoch_start(2, scorer_with_n_users(2))
    assert loss.user_tau.tolist() == pytest.approx([0.1 / E, 0.171927], abs=1e-6)


def test_state_dict_round_trip():
    loss = loss_with_taus([0.3, 0.05, 0.2], tau=0.1, beta=0.4)
    loss.tau0.fill_(0.13)
    loss(rand(2, 3, seed=1), rand(2, 3, seed=2), user_ids=T([2, 0]))
    state = loss.state_dict()
    assert set(state) == {"tau0", "user_tau", "loss_sum", "loss_count"}
    fresh = AdaptiveTemperatureLoss(tau=0.1, beta=0.4)  # buffers not yet sized
    fresh.load_state_dict(state)
    for name in state:
        assert torch.equal(getattr(fresh, name), state[name])
    u, i = rand(3, 3, seed=5), rand(3, 3, seed=6)
    assert fresh(u, i, user_ids=T([1, 0, 2])).item() == loss(u, i, user_ids=T([1, 0, 2])).item()
    fresh.on_epoch_start(2, scorer_with_n_users(3))  # the restored statistics feed the next refresh
    loss.on_epoch_start(2, scorer_with_n_users(3))
    assert torch.equal(fresh.user_tau, loss.user_tau)


def test_argument_errors():
    with pytest.raises(ValueError, match="tau must be positive, got 0"):
        AdaptiveTemperatureLoss(tau=0)
    with pytest.raises(ValueError, match="beta must be positive, got -1"):
        AdaptiveTemperatureLoss(beta=-1)
    with pytest.raises(ValueError, match="center must be 'mean' or a quantile"):
        AdaptiveTemperatureLoss(center="median")
    with pytest.raises(ValueError, match="center must be 'mean' or a quantile"):
        AdaptiveTemperatureLoss(center=1.5)
    with pytest.raises(ValueError, match="warmup must be a non-negative integer, got -2"):
        AdaptiveTemperatureLoss(warmup=-2)
    with pytest.raises(ValueError, match="warmup_gap must be positive"):
        AdaptiveTemperatureLoss(warmup_gap=0.0)
    with pytest.raises(ValueError, match="similarity"):
        AdaptiveTemperatureLoss(similarity="dot")
    assert AdaptiveTemperatureLoss(center="0.9").center == 0.9
