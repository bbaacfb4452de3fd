"""SL@K (SoftmaxAtKLoss): hand values, a naive loop, gradcheck, the SSM special case, and the
per-user top-K threshold refresh against naive per-user sorting."""

from __future__ import annotations

import math

import pytest
import torch
from loss_cases import T, in_batch_case, rand

from ssmrec.losses.similarity import score_matrix
from ssmrec.losses.slk import SoftmaxAtKLoss, estimate_thresholds, kth_largest, sample_quantile_items
from ssmrec.losses.ssm import SampledSoftmaxLoss

INF = float("inf")


def with_beta(loss: SoftmaxAtKLoss, beta) -> SoftmaxAtKLoss:
    loss.beta = torch.as_tensor(beta, dtype=torch.float64)
    return loss


class FakeScorer:
    """Users and items as fixed vectors; ``scores`` is their raw similarity, as the trainer's."""

    def __init__(self, users, items, similarity="ip", train_users=(), train_items=()):
        self.u, self.i, self.similarity = users, items, similarity
        self.n_users, self.n_items = len(users), len(items)
        self.train_users = torch.as_tensor(train_users, dtype=torch.long)
        self.train_items = torch.as_tensor(train_items, dtype=torch.long)
        self.device = torch.device("cpu")
        self.calls = []

    def scores(self, users, items=None):
        self.calls.append(users.tolist())
        cand = self.i if items is None else self.i[items]
        return score_matrix(self.u[users], cand, self.similarity)


def random_scorer(n_users=7, n_items=11, seed=0):
    """Random users x items, each user with 1-4 training items (user 5 with none)."""
    g = torch.Generator().manual_seed(seed)
    pairs = [(u, int(j)) for u in range(n_users) if u != 5
             for j in torch.randperm(n_items, generator=g)[: 1 + u % 4]]
    tu, ti = zip(*pairs)
    return FakeScorer(rand(n_users, 3, seed=seed + 1), rand(n_items, 3, seed=seed + 2), "ip", tu, ti)


# ----------------------------------------------------------------------------- hand-worked values
def test_hand_value_cos():
    # users (1,0),(0,1); items (1,0),(0,1): cosines [[1,0],[0,1]], tau 0.5 -> logits [[2,0],[0,2]]
    # SSM per row: log(1 + e^-2) = 0.126928
    # thresholds beta = [1, 0], tau_w 0.5: w_0 = sigmoid((1 - 1)/0.5) = 0.5, w_1 = sigmoid((1 - 0)/0.5) = 0.880797
    # loss = (0.5 + 0.880797) / 2 * 0.126928 = 0.087631
    u, i = T([[1.0, 0.0], [0.0, 1.0]]), T([[1.0, 0.0], [0.0, 1.0]])
    loss = with_beta(SoftmaxAtKLoss(tau=0.5, tau_w=0.5), [1.0, 0.0])
    assert loss(u, i, user_ids=T([0, 1])).item() == pytest.approx(0.087631, abs=1e-6)
    # the same users the other way round: w_0 = 0.880797, w_1 = 0.5, same mean
    assert loss(u, i, user_ids=T([1, 0])).item() == pytest.approx(0.087631, abs=1e-6)


def test_hand_value_before_first_refresh_uses_zero_thresholds():
    # no buffer yet: beta = 0 (the paper's initial value): w = sigmoid(1/0.5) = 0.880797 for both rows
    # loss = 0.880797 * 0.126928 = 0.111798; user_ids are not needed yet
    u, i = T([[1.0, 0.0], [0.0, 1.0]]), T([[1.0, 0.0], [0.0, 1.0]])
    assert SoftmaxAtKLoss(tau=0.5, tau_w=0.5)(u, i).item() == pytest.approx(0.111798, abs=1e-6)


def test_hand_value_ip_weight_uses_raw_scores():
    # ip, tau 1: users (2,0),(0,1); items (1,0),(0,3): raw scores [[2,0],[0,3]] = logits
    # SSM rows: log(1 + e^-2) = 0.126928, log(1 + e^-3) = 0.048587
    # beta = [2, 1], tau_w 2: w_0 = sigmoid(0) = 0.5, w_1 = sigmoid((3 - 1)/2) = 0.731059
    # loss = (0.5 * 0.126928 + 0.731059 * 0.048587) / 2 = (0.063464 + 0.035520) / 2 = 0.049492
    u, i = T([[2.0, 0.0], [0.0, 1.0]]), T([[1.0, 0.0], [0.0, 3.0]])
    loss = with_beta(SoftmaxAtKLoss(tau=1.0, similarity="ip", tau_w=2.0), [2.0, 1.0])
    assert loss(u, i, user_ids=T([0, 1])).item() == pytest.approx(0.049492, abs=1e-6)
    # at tau 0.5 the softmax sharpens but the weights stay on the raw scale:
    # rows log(1 + e^-4) = 0.018150, log(1 + e^-6) = 0.002476 -> (0.5*0.018150 + 0.731059*0.002476)/2 = 0.005443
    loss = with_beta(SoftmaxAtKLoss(tau=0.5, similarity="ip", tau_w=2.0), [2.0, 1.0])
    assert loss(u, i, user_ids=T([0, 1])).item() == pytest.approx(0.005443, abs=1e-6)


# ----------------------------------------------------------------------------- naive loop
def naive_slk(u, i, ids, extra, extra_ids, tau, tau_w, sim, logq, mask_dup, exclude, beta, user_ids):
    def raw(a, b):
        if sim == "cos":
            a, b = a / a.norm(), b / b.norm()
        return float(a @ b)

    cands = [(i[c], int(ids[c])) for c in range(len(i))] + (
        [(extra[k], int(extra_ids[k])) for k in range(len(extra))] if extra is not None else [])
    total = 0.0
    for b in range(len(u)):
        lq = lambda c: float(logq[c]) if logq is not None else 0.0  # noqa: E731
        pos = raw(u[b], i[b]) / tau - lq(b)
        denom = 0.0
        for c, (vec, cid) in enumerate(cands):
            if c != b and mask_dup and cid == int(ids[b]):
                continue
            if c != b and exclude is not None and exclude[b][c]:
                continue
            denom += math.exp(raw(u[b], vec) / tau - lq(c))
        x = (raw(u[b], i[b]) - float(beta[int(user_ids[b])])) / tau_w
        total += 1 / (1 + math.exp(-x)) * -(pos - math.log(denom))
    return total / len(u)


@pytest.mark.parametrize("sim", ["cos", "ip"])
@pytest.mark.parametrize("mask_dup", [False, True])
@pytest.mark.parametrize("with_extra", [False, True])
def test_matches_naive_loop(sim, mask_dup, with_extra):
    u, i, ids, extra, extra_ids, c, logq, exclude = in_batch_case(with_extra)
    beta = rand(4, seed=6) * 0.5
    user_ids = T([2, 0, 3, 2, 1, 0])  # user 2 and user 0 appear twice
    loss = with_beta(SoftmaxAtKLoss(0.3, sim, tau_w=0.7, mask_duplicates=mask_dup), beta)
    got = loss(u, i, item_ids=ids, extra_reps=extra, extra_ids=extra_ids, logq=logq, exclude=exclude,
               user_ids=user_ids, ignored_kwarg=1)
    want = naive_slk(u, i, ids, extra, extra_ids, 0.3, 0.7, sim, logq, mask_dup, exclude, beta, user_ids)
    assert got.item() == pytest.approx(want, rel=1e-10)


def test_target_columns_match_naive_loop():
    # rows 0..2 of a 5-positive batch whose positives are columns 2..4 (a distributed worker's share)
    u, items = rand(3, 4, seed=1), rand(5, 4, seed=2)
    beta = T([0.3, -0.2, 1.0], dtype=torch.float64)
    loss = with_beta(SoftmaxAtKLoss(0.4, "ip", tau_w=1.5), beta)
    got = loss(u, items, target=T([2, 3, 4]), user_ids=T([0, 1, 2])).item()
    want = 0.0
    for b in range(3):
        s = [float(u[b] @ items[c]) for c in range(5)]
        row = -(s[2 + b] / 0.4 - math.log(sum(math.exp(x / 0.4) for x in s)))
        want += row / (1 + math.exp(-(s[2 + b] - float(beta[b])) / 1.5))
    assert got == pytest.approx(want / 3, rel=1e-10)


# ----------------------------------------------------------------------------- gradcheck
@pytest.mark.parametrize("sim", ["cos", "ip"])
def test_gradcheck(sim):
    # the weight is not detached: gradcheck's numerical gradient includes d w / d s, so a detached
    # weight would fail here
    ids = T([0, 1, 0, 2])
    logq = rand(6, seed=9)
    exclude = torch.zeros(4, 6, dtype=torch.bool)
    exclude[1, 2] = True
    loss = with_beta(SoftmaxAtKLoss(0.5, sim, tau_w=0.8, mask_duplicates=True), rand(3, seed=7) * 0.3)
    user_ids = T([0, 2, 1, 2])
    inputs = [x.requires_grad_(True) for x in (rand(4, 3, seed=1), rand(4, 3, seed=2), rand(2, 3, seed=3))]
    fn = lambda u, i, e: loss(u, i, item_ids=ids, extra_reps=e, extra_ids=T([2, 3]), logq=logq,  # noqa: E731
                              exclude=exclude, user_ids=user_ids)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5)


def test_weight_gradient_is_not_detached():
    # d/ds [w L] = w dL/ds + w (1 - w) / tau_w * L (paper eq. B.9): the second term is there, so the
    # gradient is that of w * L with w attached, not with w.detach()
    u, i = rand(2, 3, seed=1).requires_grad_(True), rand(2, 3, seed=2)
    loss = with_beta(SoftmaxAtKLoss(0.5, "ip", tau_w=0.5), [0.2, -0.1])
    loss(u, i, user_ids=T([0, 1])).backward()
    ssm = SampledSoftmaxLoss(0.5, "ip")
    rows = torch.nn.functional.cross_entropy(ssm.logits(u, i), torch.arange(2), reduction="none")
    s = (u * i).sum(1)
    w = torch.sigmoid((s - T([0.2, -0.1], dtype=torch.float64)) / 0.5)
    grad_detached = torch.autograd.grad((w.detach() * rows).mean(), u, retain_graph=True)[0]
    grad_full = torch.autograd.grad((w * rows).mean(), u)[0]
    assert torch.allclose(u.grad, grad_full, atol=1e-12)
    assert not torch.allclose(u.grad, grad_detached, atol=1e-6)


# ----------------------------------------------------------------------------- special case: SSM
@pytest.mark.parametrize("sim", ["cos", "ip"])
@pytest.mark.parametrize("with_extra", [False, True])
def test_minus_infinite_thresholds_give_ssm(sim, with_extra):
    b, k, d = 6, 3, 4
    u, i = rand(b, d, seed=11), rand(b, d, seed=12)
    ids = T([3, 1, 3, 0, 2, 1])
    extra = rand(k, d, seed=13) if with_extra else None
    extra_ids = T([1, 5, 3]) if with_extra else None
    c = b + (k if with_extra else 0)
    kw = dict(item_ids=ids, extra_reps=extra, extra_ids=extra_ids, logq=rand(c, seed=14).abs(),
              exclude=rand(b, c, seed=15) > 0.8)
    slk = with_beta(SoftmaxAtKLoss(0.2, sim, tau_w=1.0, mask_duplicates=True), torch.full((5,), -INF))
    got = slk(u, i, user_ids=T([0, 1, 2, 3, 4, 0]), **kw)
    want = SampledSoftmaxLoss(0.2, sim, mask_duplicates=True)(u, i, **kw)
    assert got.item() == pytest.approx(want.item(), rel=1e-10, abs=1e-12)
    # and so are the gradients (the sigmoid is flat at +inf)
    ur = u.clone().requires_grad_(True)
    g_slk = torch.autograd.grad(slk(ur, i, user_ids=T([0, 1, 2, 3, 4, 0]), **kw), ur)[0]
    g_ssm = torch.autograd.grad(SampledSoftmaxLoss(0.2, sim, mask_duplicates=True)(ur, i, **kw), ur)[0]
    assert torch.allclose(g_slk, g_ssm, rtol=1e-10, atol=1e-12)


def test_a_threshold_below_every_score_tends_to_ssm():
    # the other way of seeing it: a huge margin drives the weights to 1
    u, i = rand(4, 3, seed=1), rand(4, 3, seed=2)
    slk = with_beta(SoftmaxAtKLoss(0.3, "cos", tau_w=0.5), torch.full((4,), -1e3))
    assert slk(u, i, user_ids=torch.arange(4)).item() == pytest.approx(SampledSoftmaxLoss(0.3)(u, i).item(),
                                                                     rel=1e-12)


# ----------------------------------------------------------------------------- threshold estimate
def test_threshold_hand_values():
    # one user (ip, vector (1)); items with scores 0.9, 0.1, 0.5, -0.3
    scorer = FakeScorer(T([[1.0]]), T([[0.9], [0.1], [0.5], [-0.3]]), "ip", [0], [0])
    # exact (n_samples 0): sorted descending 0.9, 0.5, 0.1, -0.3 -> 2nd largest 0.5, 4th -0.3, 5th: none
    assert estimate_thresholds(scorer, 2, 0).tolist() == pytest.approx([0.5])
    assert estimate_thresholds(scorer, 4, 0).tolist() == pytest.approx([-0.3])
    assert estimate_thresholds(scorer, 5, 0).tolist() == [-INF]
    # n_samples >= n_items is exact too
    assert estimate_thresholds(scorer, 2, 4).tolist() == pytest.approx([0.5])
    # k = 1 with the positive (item 0, 0.9) always in the sample: 0.9 whatever is drawn
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        assert estimate_thresholds(scorer, 1, 1, g).tolist() == pytest.approx([0.9])
    # k = 2, one drawn negative: the 2nd largest of {0.9, s_j} is s_j, j drawn from items 1..3 only
    seen = set()
    for seed in range(40):
        g = torch.Generator().manual_seed(seed)
        seen.add(round(estimate_thresholds(scorer, 2, 1, g).item(), 6))
    assert seen == {0.1, 0.5, -0.3}
    # k = 3 with positive + 1 drawn: fewer than k items -> -inf (every item counts as top-3)
    assert estimate_thresholds(scorer, 3, 1, torch.Generator().manual_seed(0)).tolist() == [-INF]


def test_exact_thresholds_match_per_user_kthvalue():
    scorer = random_scorer()
    s = score_matrix(scorer.u, scorer.i, "ip")
    for k in (1, 3, 11):
        got = estimate_thresholds(scorer, k, 0, chunk_users=3)
        want = [torch.kthvalue(s[u], scorer.n_items - k + 1).values.item() for u in range(scorer.n_users)]
        assert got.tolist() == want
    assert scorer.calls[:3] == [[0, 1, 2], [3, 4, 5], [6]]  # chunks of 3 users


def test_sampled_thresholds_match_naive_loop():
    scorer = random_scorer()
    k, n = 3, 4
    got = estimate_thresholds(scorer, k, n, torch.Generator().manual_seed(5), chunk_users=3)
    # replay the draws chunk by chunk, then sort each user's kept scores by hand
    s = score_matrix(scorer.u, scorer.i, "ip")
    g = torch.Generator().manual_seed(5)
    pairs = set(zip(scorer.train_users.tolist(), scorer.train_items.tolist()))
    for lo in range(0, scorer.n_users, 3):
        users = range(lo, min(lo + 3, scorer.n_users))
        pos = torch.tensor([[(u, j) in pairs for j in range(scorer.n_items)] for u in users])
        kept = sample_quantile_items(pos, n, g)
        for r, u in enumerate(users):
            # every positive kept, and exactly n of the user's other items
            assert all(kept[r, j] for j in range(scorer.n_items) if (u, j) in pairs)
            assert sum(bool(kept[r, j]) and (u, j) not in pairs for j in range(scorer.n_items)) == n
            vals = sorted((float(s[u, j]) for j in range(scorer.n_items) if kept[r, j]), reverse=True)
            assert got[u].item() == vals[k - 1]


def test_sampled_thresholds_never_exceed_the_exact_ones_and_reach_them_with_every_item():
    scorer = random_scorer(seed=3)
    exact = estimate_thresholds(scorer, 4, 0)
    for seed in range(5):
        sampled = estimate_thresholds(scorer, 4, 3, torch.Generator().manual_seed(seed))
        assert bool((sampled <= exact).all())
    # every user has at most 10 other items: drawing 10 of 11 keeps all of them
    full = estimate_thresholds(scorer, 4, scorer.n_items - 1, torch.Generator().manual_seed(0))
    assert full.tolist() == exact.tolist()


def test_negatives_are_drawn_uniformly_without_replacement():
    # 4000 rows, item 0 positive, 2 of items 1..4 drawn per row: each with probability 1/2
    pos = torch.zeros(4000, 5, dtype=torch.bool)
    pos[:, 0] = True
    kept = sample_quantile_items(pos, 2, torch.Generator().manual_seed(0))
    assert bool(kept[:, 0].all())
    assert kept[:, 1:].sum(1).eq(2).all()  # distinct draws
    freq = kept[:, 1:].double().mean(0)
    assert torch.allclose(freq, torch.full((4,), 0.5, dtype=torch.float64), atol=0.03)


def test_kth_largest_matches_sorting():
    s = rand(5, 9, seed=4)
    kept = rand(5, 9, seed=5) > -0.3
    for k in (1, 2, 5):
        got = kth_largest(s, k, kept)
        for r in range(5):
            vals = sorted((float(x) for x, m in zip(s[r], kept[r]) if m), reverse=True)
            assert got[r].item() == (vals[k - 1] if len(vals) >= k else -INF)


# ----------------------------------------------------------------------------- refresh schedule and state
def test_refresh_schedule_and_initial_zero_thresholds():
    scorer = random_scorer()
    loss = SoftmaxAtKLoss(k=3, refresh_every=3, n_samples=4)
    assert loss.beta is None
    refreshed = []
    for epoch in range(1, 8):
        before = len(scorer.calls)
        loss.on_epoch_start(epoch, scorer)
        if len(scorer.calls) > before:
            refreshed.append(epoch)
        if epoch < 3:
            assert loss.beta.tolist() == [0.0] * scorer.n_users  # allocated at epoch 1, still 0
    assert refreshed == [3, 6]
    # the thresholds are those of the estimate seeded by (seed, epoch 6)
    g = torch.Generator().manual_seed(0 * 1_000_003 + 6)
    want = estimate_thresholds(scorer, 3, 4, g).float()
    assert torch.equal(loss.beta, want)


def test_refresh_is_deterministic_and_varies_with_the_epoch():
    scorer = random_scorer(n_users=20, n_items=30)
    a, b = SoftmaxAtKLoss(k=3, refresh_every=1, n_samples=5), SoftmaxAtKLoss(k=3, refresh_every=1, n_samples=5)
    a.on_epoch_start(4, scorer)
    b.on_epoch_start(4, scorer)
    assert torch.equal(a.beta, b.beta)
    b.on_epoch_start(5, scorer)
    assert not torch.equal(a.beta, b.beta)


def test_forward_after_refresh_uses_the_users_thresholds():
    scorer = random_scorer()
    loss = SoftmaxAtKLoss(0.3, "ip", k=2, tau_w=0.6, refresh_every=1, n_samples=0)
    loss.on_epoch_start(1, scorer)
    s = score_matrix(scorer.u, scorer.i, "ip")
    assert loss.beta.tolist() == pytest.approx([sorted(r.tolist())[-2] for r in s], rel=1e-6)
    users, items = T([4, 0, 6]), T([1, 7, 2])
    got = loss(scorer.u[users], scorer.i[items], user_ids=users)
    want = naive_slk(scorer.u[users], scorer.i[items], items, None, None, 0.3, 0.6, "ip", None, False, None,
                     loss.beta.double(), users)
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_thresholds_are_in_the_state_dict_and_load_into_a_fresh_loss():
    scorer = random_scorer()
    loss = SoftmaxAtKLoss(k=2, refresh_every=1, n_samples=3)
    assert "beta" not in loss.state_dict()  # nothing to save before the first epoch
    loss.on_epoch_start(1, scorer)
    state = loss.state_dict()
    assert torch.equal(state["beta"], loss.beta) and state["beta"].shape == (scorer.n_users,)
    fresh = SoftmaxAtKLoss(k=2, refresh_every=1, n_samples=3)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.beta, loss.beta)
    u, i, ids = rand(3, 3, seed=1), rand(3, 3, seed=2), T([0, 5, 6])
    assert fresh(u, i, user_ids=ids).item() == loss(u, i, user_ids=ids).item()
    # a resumed run continues on the loaded thresholds until the next refresh epoch
    fresh = SoftmaxAtKLoss(k=2, refresh_every=10, n_samples=3)
    fresh.load_state_dict(state)
    fresh.on_epoch_start(3, scorer)
    assert torch.equal(fresh.beta, loss.beta)


# ----------------------------------------------------------------------------- argument errors
@pytest.mark.parametrize("kwargs, match", [
    (dict(tau=0), "tau must be positive, got 0"),
    (dict(tau_w=-1.0), "tau_w must be positive, got -1.0"),
    (dict(k=0), "k must be an integer >= 1, got 0"),
    (dict(k=2.5), "k must be an integer >= 1"),
    (dict(refresh_every=0), "refresh_every must be an integer >= 1, got 0"),
    (dict(n_samples=-1), "n_samples must be an integer >= 0, got -1"),
    (dict(similarity="dot"), "similarity"),
])
def test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SoftmaxAtKLoss(**kwargs)


def test_missing_user_ids_and_wrong_user_count_are_errors():
    scorer = random_scorer()
    loss = SoftmaxAtKLoss(refresh_every=5)
    loss.on_epoch_start(1, scorer)
    with pytest.raises(ValueError, match="needs user_ids"):
        loss(rand(2, 3, seed=1), rand(2, 3, seed=2))
    with pytest.raises(ValueError, match="thresholds for 7 users, the scorer has 8"):
        loss.on_epoch_start(2, random_scorer(n_users=8))
