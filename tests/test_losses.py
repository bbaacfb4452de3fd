"""Every loss: a value worked out by hand, a naive loop, and float64 gradcheck."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from loss_cases import T, in_batch_case, rand
from loss_cases import gradcheck as _check

from ssmrec.data import PopularityNegatives, log_expected_counts
from ssmrec.losses import (
    BCELoss,
    BPRLoss,
    CCLLoss,
    SampledSoftmaxLoss,
    SoftmaxLoss,
    build_loss,
    l2_regularization,
)


# ----------------------------------------------------------------------------- hand-worked values
def test_ssm_hand_value():
    # users (1,0),(0,1); items (1,0),(0,1): cosines [[1,0],[0,1]], tau 0.5 -> logits [[2,0],[0,2]]
    # each row: -log(e^2 / (e^2 + e^0)) = log(1 + e^-2) = 0.126928
    u, i = T([[1.0, 0.0], [0.0, 1.0]]), T([[1.0, 0.0], [0.0, 1.0]])
    assert SampledSoftmaxLoss(tau=0.5)(u, i).item() == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)
    # cosine ignores magnitude: scaling the vectors changes nothing
    assert SampledSoftmaxLoss(tau=0.5)(3 * u, 0.2 * i).item() == pytest.approx(0.126928, abs=1e-6)


def test_ssm_inner_product_hand_value():
    # ip, tau 1: users (2,0),(0,1); items (1,0),(0,3): logits [[2,0],[0,3]]
    # row 1: log(1 + e^-2) = 0.126928; row 2: log(1 + e^-3) = 0.048587; mean 0.087757
    u, i = T([[2.0, 0.0], [0.0, 1.0]]), T([[1.0, 0.0], [0.0, 3.0]])
    assert SampledSoftmaxLoss(tau=1.0, similarity="ip")(u, i).item() == pytest.approx(0.087757, abs=1e-6)


def test_ssm_accidental_hits_hand_value():
    # both rows have the same positive item 7: without masking each row sees its positive twice
    # -> logits [[2, 0], [0, 2]] as above but with the duplicate masked only the diagonal remains: loss 0
    u, i = T([[1.0, 0.0], [0.0, 1.0]]), T([[1.0, 0.0], [0.0, 1.0]])
    ids = T([7, 7])
    assert SampledSoftmaxLoss(0.5, mask_duplicates=True)(u, i, item_ids=ids).item() == pytest.approx(0.0)
    assert SampledSoftmaxLoss(0.5)(u, i, item_ids=ids).item() == pytest.approx(0.126928, abs=1e-6)


def test_ssm_logq_hand_value_and_sign():
    # ip, tau 1: users (2,0),(0,1); items (1,0),(0,1) -> logits [[2,0],[0,1]]
    # log Q = [log 2, 0] is subtracted from each column (the positive's too):
    # row 1: [2 - 0.693147, 0]  -> log(1 + e^-1.306853) = log(1.270670) = 0.239545
    # row 2: [-0.693147, 1]     -> log(1 + e^-1.693147) = log(1.183940) = 0.168848
    # mean = 0.204196.  Adding log Q instead gives 0.308461: the sign matters.
    u, i = T([[2.0, 0.0], [0.0, 1.0]]), T([[1.0, 0.0], [0.0, 1.0]])
    logq = torch.log(T([2.0, 1.0]))
    loss = SampledSoftmaxLoss(1.0, "ip")
    assert loss(u, i, logq=logq).item() == pytest.approx(0.204196, abs=1e-5)
    assert loss(u, i, logq=-logq).item() == pytest.approx(0.308461, abs=1e-5)


def test_bpr_hand_value():
    # f(u,i) = (1,0).(2,0) = 2, f(u,j) = (1,0).(1,1) = 1: -log sigmoid(1) = log(1 + e^-1) = 0.313262
    u, p, n = T([[1.0, 0.0]]), T([[2.0, 0.0]]), T([[1.0, 1.0]])
    assert BPRLoss()(u, p, n).item() == pytest.approx(0.313262, abs=1e-6)


def test_bce_hand_value():
    # f(u,i) = 1 -> -log sigmoid(1) = 0.313262; f(u,j) = -1 -> -log(1 - sigmoid(-1)) = 0.313262
    # mean over the two labelled pairs: 0.313262
    u, p, n = T([[1.0, 0.0]]), T([[1.0, 0.0]]), T([[[-1.0, 0.0]]])
    assert BCELoss()(u, p, n).item() == pytest.approx(0.313262, abs=1e-6)


def test_ccl_hand_value():
    # cos(u,i) = 1 -> 1 - 1 = 0; negatives with cos 1 and 0, margin 0.5, w = 2:
    # 2 * mean(max(0, 1 - 0.5), max(0, 0 - 0.5)) = 2 * 0.25 = 0.5
    u, p = T([[1.0, 0.0]]), T([[3.0, 0.0]])
    n = T([[[2.0, 0.0], [0.0, 5.0]]])
    assert CCLLoss(margin=0.5, weight=2.0)(u, p, n).item() == pytest.approx(0.5)


def test_softmax_hand_value():
    # ip, tau 1: logits [1, 0, -1], positive item 0: log(1 + e^-1 + e^-2) = 0.407606
    u = T([[1.0, 0.0]])
    items = T([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert SoftmaxLoss(1.0, "ip")(u, items, T([0])).item() == pytest.approx(0.407606, abs=1e-6)


def test_l2_hand_value():
    # 1/2 (1 + 4 + 9 + 0) / B with B = 2 -> 3.5
    assert l2_regularization(T([[1.0, 2.0], [3.0, 0.0]])).item() == pytest.approx(3.5)
    assert l2_regularization(T([[1.0, 2.0]]), T([[3.0, 0.0]]), batch_size=1).item() == pytest.approx(7.0)


# ----------------------------------------------------------------------------- naive loops
def naive_ssm(u, i, ids, extra, extra_ids, tau, sim, logq, mask_dup, exclude):
    def f(a, b):
        if sim == "cos":
            a, b = a / a.norm(), b / b.norm()
        return float(a @ b) / tau

    cands = [(i[c], int(ids[c])) for c in range(len(i))] + (
        [(extra[k], int(extra_ids[k])) for k in range(len(extra))] if extra is not None else [])
    total = 0.0
    for b in range(len(u)):
        denom = 0.0
        pos = f(u[b], i[b]) - (float(logq[b]) if logq is not None else 0.0)
        for c, (vec, cid) in enumerate(cands):
            if c != b and mask_dup and cid == int(ids[b]):
                continue
            if c != b and exclude is not None and exclude[b][c]:
                continue
            denom += math.exp(f(u[b], vec) - (float(logq[c]) if logq is not None else 0.0))
        total += -(pos - math.log(denom))
    return total / len(u)


@pytest.mark.parametrize("sim", ["cos", "ip"])
@pytest.mark.parametrize("mask_dup", [False, True])
@pytest.mark.parametrize("with_extra", [False, True])
def test_ssm_matches_naive_loop(sim, mask_dup, with_extra):
    u, i, ids, extra, extra_ids, c, logq, exclude = in_batch_case(with_extra)
    loss = SampledSoftmaxLoss(0.3, sim, mask_duplicates=mask_dup)
    got = loss(u, i, item_ids=ids, extra_reps=extra, extra_ids=extra_ids, logq=logq, exclude=exclude)
    want = naive_ssm(u, i, ids, extra, extra_ids, 0.3, sim, logq, mask_dup, exclude)
    assert got.item() == pytest.approx(want, rel=1e-10)


def test_pairwise_losses_match_naive_loop():
    b, n, d = 5, 3, 4
    u, p, neg = rand(b, d, seed=1), rand(b, d, seed=2), rand(b, n, d, seed=3)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    bpr = bce = ccl = 0.0
    for r in range(b):
        fp = float(u[r] @ p[r])
        cos = lambda a, c: float(a @ c / (a.norm() * c.norm()))  # noqa: E731
        ccl_neg = 0.0
        for j in range(n):
            fn = float(u[r] @ neg[r, j])
            bpr += -math.log(sig(fp - fn))
            bce += -math.log(1 - sig(fn))
            ccl_neg += max(0.0, cos(u[r], neg[r, j]) - 0.4)
        bce += -math.log(sig(fp))
        ccl += (1 - cos(u[r], p[r])) + 10.0 * ccl_neg / n
    assert BPRLoss()(u, p, neg).item() == pytest.approx(bpr / (b * n), rel=1e-10)
    assert BCELoss()(u, p, neg).item() == pytest.approx(bce / (b * (n + 1)), rel=1e-10)
    assert CCLLoss(0.4, 10.0)(u, p, neg).item() == pytest.approx(ccl / b, rel=1e-10)


def test_softmax_matches_naive_loop():
    b, n, d = 4, 9, 3
    u, items = rand(b, d, seed=1), rand(n, d, seed=2)
    pos = T([0, 8, 3, 3])
    for sim in ("cos", "ip"):
        want = 0.0
        for r in range(b):
            def f(j, r=r, sim=sim):
                a, c = u[r], items[j]
                if sim == "cos":
                    a, c = a / a.norm(), c / c.norm()
                return float(a @ c) / 0.2
            want += -(f(int(pos[r])) - math.log(sum(math.exp(f(j)) for j in range(n))))
        got = SoftmaxLoss(0.2, sim)(u, items, pos).item()
        assert got == pytest.approx(want / b, rel=1e-10)


# ----------------------------------------------------------------------------- gradcheck
@pytest.mark.parametrize("sim", ["cos", "ip"])
def test_gradcheck_ssm(sim):
    ids = T([0, 1, 0, 2])
    logq = rand(6, seed=9)
    exclude = torch.zeros(4, 6, dtype=torch.bool)
    exclude[1, 2] = True
    loss = SampledSoftmaxLoss(0.5, sim, mask_duplicates=True)
    _check(lambda u, i, e: loss(u, i, item_ids=ids, extra_reps=e, extra_ids=T([2, 3]), logq=logq,
                                exclude=exclude), rand(4, 3, seed=1), rand(4, 3, seed=2), rand(2, 3, seed=3))


@pytest.mark.parametrize("sim", ["cos", "ip"])
def test_gradcheck_softmax(sim):
    loss = SoftmaxLoss(0.5, sim)
    _check(lambda u, i: loss(u, i, T([1, 4, 0])), rand(3, 3, seed=1), rand(5, 3, seed=2))


@pytest.mark.parametrize("loss", [BPRLoss(), BPRLoss("cos", 0.5), BCELoss(), CCLLoss(0.1, 3.0)])
def test_gradcheck_sampled(loss):
    _check(loss, rand(3, 4, seed=1), rand(3, 4, seed=2), rand(3, 2, 4, seed=3))


def test_gradcheck_l2():
    _check(lambda a, b: l2_regularization(a, b), rand(3, 2, seed=1), rand(3, 2, seed=2))


# ----------------------------------------------------------------------------- properties
def test_ssm_with_all_items_as_negatives_is_full_softmax():
    """Candidates = the positive + every other item exactly once  ->  full softmax (eq. 20)."""
    b, n, d = 5, 12, 4
    u, all_items = rand(b, d, seed=1), rand(n, d, seed=2)
    pos = T([3, 0, 11, 3, 7])
    for sim in ("cos", "ip"):
        ssm = SampledSoftmaxLoss(0.3, sim, mask_duplicates=True)
        # in-batch columns other than the diagonal are excluded; the extra negatives are all
        # items, whose copy of each row's positive is an accidental hit and is masked.
        exclude = ~torch.eye(b, n + b, dtype=torch.bool)
        exclude[:, b:] = False
        got = ssm(u, all_items[pos], item_ids=pos, extra_reps=all_items, extra_ids=torch.arange(n),
                  exclude=exclude)
        want = SoftmaxLoss(0.3, sim)(u, all_items, pos)
        assert got.item() == pytest.approx(want.item(), rel=1e-12)


def test_logq_correction_makes_the_partition_estimate_unbiased():
    """With K negatives drawn from q, sum_k exp(s - log(K q)) estimates sum_j exp(s_j) without bias;
    the loss subtracts the log expected counts, and the opposite sign is far off."""
    rng = np.random.default_rng(0)
    n, k, trials = 50, 20, 4000
    degree = rng.pareto(1.2, n) * 10 + 1
    sampler = PopularityNegatives(degree, beta=1.0)
    logc = log_expected_counts(np.zeros(n) + 1, 0, sampler, k).double()  # batch_size 0: extra only
    assert torch.allclose(logc, torch.log(k * torch.from_numpy(sampler.prob)))
    item_vecs = rand(n, 4, seed=3)
    user = rand(1, 4, seed=4)
    s = (user @ item_vecs.T).squeeze(0)
    exact = torch.exp(s).sum().item()
    ssm = SampledSoftmaxLoss(1.0, "ip")
    est_right, est_wrong = [], []
    for _ in range(trials):
        draw = torch.from_numpy(sampler.sample(k, rng))
        # positive column first (item 0), then the K sampled negatives
        logits = ssm.logits(user, item_vecs[:1], extra_reps=item_vecs[draw],
                            logq=torch.cat([logc[:1], logc[draw]]))
        est_right.append(torch.exp(logits[0, 1:]).sum().item())
        wrong = ssm.logits(user, item_vecs[:1], extra_reps=item_vecs[draw],
                           logq=-torch.cat([logc[:1], logc[draw]]))
        est_wrong.append(torch.exp(wrong[0, 1:]).sum().item())
    assert np.mean(est_right) == pytest.approx(exact, rel=0.05)
    assert abs(np.mean(est_wrong) - exact) / exact > 0.5


def test_in_batch_logq_counts():
    degree = np.array([1, 3, 0, 4])
    got = log_expected_counts(degree, 8)
    assert torch.allclose(got[[0, 1, 3]], torch.log(torch.tensor([1.0, 3.0, 4.0]) * 8 / 8).double())
    assert got[2] == float("-inf")


def test_build_loss_names_and_errors():
    assert isinstance(build_loss("sm"), SoftmaxLoss)
    assert build_loss("ssm", similarity="ip").similarity == "ip"
    with pytest.raises(ValueError, match="unknown loss 'warp'.*ssm"):
        build_loss("warp")
    with pytest.raises(ValueError, match="tau must be positive"):
        SampledSoftmaxLoss(tau=0)
    with pytest.raises(ValueError, match="similarity"):
        SampledSoftmaxLoss(similarity="dot")
