"""BSL (both forms) and PSL: values worked out by hand, naive loops, float64 gradcheck, relations to SSM."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from loss_cases import T, rand
from loss_cases import gradcheck as _check

from ssmrec.losses.bsl import BilateralSoftmaxLoss
from ssmrec.losses.psl import PairwiseSoftmaxLoss
from ssmrec.losses.ssm import SampledSoftmaxLoss

ACTS = ("tanh", "atan", "relu", "exp")


def batch(sim_seed=0, with_extra=True, b=6, k=4, d=5):
    """A random float64 batch with duplicate positives, extra negatives, logq and an exclude mask."""
    c = b + (k if with_extra else 0)
    return dict(
        u=rand(b, d, seed=sim_seed + 1), i=rand(b, d, seed=sim_seed + 2),
        ids=T([3, 1, 3, 0, 2, 1]), extra=rand(k, d, seed=sim_seed + 3) if with_extra else None,
        extra_ids=T([1, 5, 6, 3]) if with_extra else None,
        logq=rand(c, seed=sim_seed + 4).abs(), exclude=rand(b, c, seed=sim_seed + 5) > 0.8,
    )


def kwargs(x, logq=True):
    return dict(item_ids=x["ids"], extra_reps=x["extra"], extra_ids=x["extra_ids"],
                logq=x["logq"] if logq else None, exclude=x["exclude"])


# ----------------------------------------------------------------------------- naive loops
def f(a, b, sim, scale):
    if sim == "cos":
        a, b = a / a.norm(), b / b.norm()
    return float(a @ b) * scale


def naive_rows(x, sim, scale, mask_dup, target=None, logq=True):
    """Per row: (positive logit, [negative logits]) with masks and logQ, by plain loops."""
    u, i, ids = x["u"], x["i"], x["ids"]
    cands = [(i[c], int(ids[c])) for c in range(len(i))]
    if x["extra"] is not None:
        cands += [(x["extra"][k], int(x["extra_ids"][k])) for k in range(len(x["extra"]))]
    out = []
    for b in range(len(u)):
        t = b if target is None else int(target[b])
        lq = (lambda c: float(x["logq"][c])) if logq else (lambda c: 0.0)
        pos = f(u[b], i[t], sim, scale) - lq(t)
        negs = []
        for c, (vec, cid) in enumerate(cands):
            if c == t or (mask_dup and cid == int(ids[t])) or x["exclude"][b][c]:
                continue
            negs.append(f(u[b], vec, sim, scale) - lq(c))
        out.append((pos, negs))
    return out


def naive_bsl(x, sim, tau, tau2, mask_dup, users=None, target=None, form="authors"):
    """Pass ``users`` to pool the positives; the paper's form scores the negatives at tau2 * tau."""
    rows = naive_rows(x, sim, 1 / tau, mask_dup, target)
    neg_rows = rows if form == "authors" else naive_rows(x, sim, 1 / (tau2 * tau), mask_dup, target)
    total = 0.0
    for b, ((pos, _), (_, negs)) in enumerate(zip(rows, neg_rows)):
        if users is not None:  # log mean exp over this user's positives
            mine = [p for c, (p, _) in enumerate(rows) if int(users[c]) == int(users[b])]
            pos = math.log(sum(math.exp(p) for p in mine) / len(mine))
        if negs:
            total += -pos + tau2 * math.log(sum(math.exp(n) for n in negs))
    return total / len(rows)


def sigma(d, act):
    return {"tanh": math.tanh(d) + 1, "atan": max(math.atan(d) + 1, 0.0), "relu": max(d + 1, 0.0),
            "exp": math.exp(d)}[act]


def naive_psl(x, sim, tau, act, mask_dup, target=None):
    rows = naive_rows(x, sim, 0.5, mask_dup, target, logq=False)
    total = 0.0
    for pos, negs in rows:
        s = sum(sigma(n - pos, act) ** (1 / tau) for n in negs)
        total += math.log(s) if s > 0 else 0.0
    return total / len(rows)


# ----------------------------------------------------------------------------- BSL: hand values
def test_bsl_hand_value():
    # ip, tau 1: users (2,0),(0,1); items (1,0),(0,1); one extra negative (1,1)
    # logits row 1: [2 | 0, 2]   (positive | in-batch other, extra)
    #        row 2: [1 | 0, 1]
    # tau2 = 2: row 1: -2 + 2 log(e^0 + e^2) = -2 + 2 * 2.126928 = 2.253856
    #           row 2: -1 + 2 log(e^0 + e^1) = -1 + 2 * 1.313262 = 1.626523;  mean 1.940190
    # tau2 = 1: row 1: 0.126928, row 2: 0.313262;  mean 0.220095
    u, i, e = T([[2.0, 0.0], [0.0, 1.0]]), T([[1.0, 0.0], [0.0, 1.0]]), T([[1.0, 1.0]])
    assert BilateralSoftmaxLoss(1.0, "ip", tau2=2.0)(u, i, extra_reps=e).item() == pytest.approx(1.940190, abs=1e-6)
    assert BilateralSoftmaxLoss(1.0, "ip", tau2=1.0)(u, i, extra_reps=e).item() == pytest.approx(0.220095, abs=1e-6)


def test_bsl_cos_hand_value_can_be_negative():
    # cos, tau 0.5: users (1,0),(0,1); items (1,0),(0,1); extra (1,1): cosines [1 | 0, 0.707107] per row
    # logits [2 | 0, 1.414214]: -2 + log(1 + e^1.414214) = -2 + 1.631835 = -0.368165 (both rows).
    # Negative: the positive is not in the denominator. Magnitudes do not matter for cos.
    u, i, e = T([[1.0, 0.0], [0.0, 1.0]]), T([[1.0, 0.0], [0.0, 1.0]]), T([[1.0, 1.0]])
    loss = BilateralSoftmaxLoss(0.5, tau2=1.0)
    assert loss(u, i, extra_reps=e).item() == pytest.approx(-0.368165, abs=1e-6)
    assert loss(4 * u, 0.3 * i, extra_reps=2 * e).item() == pytest.approx(-0.368165, abs=1e-6)


def test_bsl_logq_hand_value_and_softplus_is_ssm():
    # ip, tau 1: logits [[2, 0], [0, 1]]; log Q = [log 2, 0] subtracted from each column:
    # row 1: -(2 - 0.693147) + log(e^0) = -1.306853;  row 2: -1 + (0 - 0.693147) = -1.693147
    # mean -1.5.  softplus of the rows: log(1 + e^-1.306853) = 0.239545, log(1 + e^-1.693147) = 0.168848,
    # exactly SSM's rows in test_losses.py::test_ssm_logq_hand_value_and_sign (mean 0.204196).
    u, i = T([[2.0, 0.0], [0.0, 1.0]]), T([[1.0, 0.0], [0.0, 1.0]])
    logq = torch.log(T([2.0, 1.0]))
    bsl = BilateralSoftmaxLoss(1.0, "ip", tau2=1.0)
    assert bsl(u, i, logq=logq).item() == pytest.approx(-1.5, abs=1e-6)
    assert F.softplus(bsl.row_losses(u, i, logq=logq)).tolist() == pytest.approx([0.239545, 0.168848], abs=1e-6)
    assert SampledSoftmaxLoss(1.0, "ip")(u, i, logq=logq).item() == pytest.approx(0.204196, abs=1e-6)


def test_bsl_pool_positives_hand_value():
    # ip, tau 1, tau2 1; rows 1 and 2 are user 7 (same vector (1,0)), row 3 user 8 (0,1);
    # items (1,0),(0,1),(-1,0): logits row 1: [1, 0, -1], row 2: [1, 0, -1], row 3: [0, 1, 0]
    # positives (diagonal): 1, 0, 0.  User 7's pooled positive: log((e^1 + e^0) / 2) = 0.620115
    # row 1: -0.620115 + log(e^0 + e^-1) = -0.620115 + 0.313262 = -0.306853
    # row 2: -0.620115 + log(e^1 + e^-1) = -0.620115 + 1.126928 =  0.506814
    # row 3: -0      + log(e^0 + e^1)  =  1.313262;   mean 0.504407
    u = T([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    i = T([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    loss = BilateralSoftmaxLoss(1.0, "ip", tau2=1.0, pool_positives=True)
    assert loss.row_losses(u, i, user_ids=T([7, 7, 8])).tolist() == pytest.approx(
        [-0.306853, 0.506814, 1.313262], abs=1e-6)
    assert loss(u, i, user_ids=T([7, 7, 8])).item() == pytest.approx(0.504407, abs=1e-6)
    # three different users: pooling changes nothing
    plain = BilateralSoftmaxLoss(1.0, "ip", tau2=1.0)(u, i)
    assert loss(u, i, user_ids=T([1, 2, 3])).item() == pytest.approx(plain.item(), abs=1e-12)


def test_bsl_rows_without_negatives_contribute_zero():
    # both positives are item 7: masking the accidental hit leaves each row no negative -> 0, no NaN
    u, i = T([[1.0, 0.0], [0.0, 1.0]], requires_grad=True), T([[1.0, 0.0], [0.0, 1.0]])
    loss = BilateralSoftmaxLoss(0.5, tau2=1.0, mask_duplicates=True)(u, i, item_ids=T([7, 7]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(u.grad).all()
    # without masking: -2 + log(e^0) = -2 per row
    assert BilateralSoftmaxLoss(0.5, tau2=1.0)(u, i, item_ids=T([7, 7])).item() == pytest.approx(-2.0)


# ----------------------------------------------------------------------------- BSL: naive loop
@pytest.mark.parametrize("sim", ["cos", "ip"])
@pytest.mark.parametrize("mask_dup", [False, True])
@pytest.mark.parametrize("with_extra", [False, True])
@pytest.mark.parametrize("pool", [False, True])
def test_bsl_matches_naive_loop(sim, mask_dup, with_extra, pool):
    x = batch(with_extra=with_extra)
    users = T([4, 9, 4, 1, 9, 4])
    loss = BilateralSoftmaxLoss(0.3, sim, tau2=1.4, mask_duplicates=mask_dup, pool_positives=pool)
    got = loss(x["u"], x["i"], user_ids=users, **kwargs(x))
    want = naive_bsl(x, sim, 0.3, 1.4, mask_dup, users if pool else None)
    assert got.item() == pytest.approx(want, rel=1e-10)


def test_bsl_target_matches_naive_loop():
    # three rows of a six-positive batch, whose positives are columns 3, 4, 5 (a distributed worker)
    x = batch()
    target = T([3, 4, 5])
    part = dict(x, u=x["u"][3:], exclude=x["exclude"][3:])
    loss = BilateralSoftmaxLoss(0.3, "cos", tau2=0.8, mask_duplicates=True)
    got = loss(part["u"], x["i"], target=target, **kwargs(part))
    assert got.item() == pytest.approx(naive_bsl(part, "cos", 0.3, 0.8, True, target=target), rel=1e-10)


# ----------------------------------------------------------------------------- BSL vs SSM
@pytest.mark.parametrize("sim", ["cos", "ip"])
@pytest.mark.parametrize("with_extra", [False, True])
def test_bsl_tau2_one_is_ssm_without_the_positive_in_the_denominator(sim, with_extra):
    """ssm_b = log(1 + exp(bsl_b)) row by row, with masks and logQ; the means differ."""
    x = batch(with_extra=with_extra)
    bsl = BilateralSoftmaxLoss(0.2, sim, tau2=1.0, mask_duplicates=True)
    ssm = SampledSoftmaxLoss(0.2, sim, mask_duplicates=True)
    rows = bsl.row_losses(x["u"], x["i"], **kwargs(x))
    ssm_rows = F.cross_entropy(ssm.logits(x["u"], x["i"], **kwargs(x)), torch.arange(6), reduction="none")
    assert torch.allclose(F.softplus(rows), ssm_rows, rtol=1e-10, atol=1e-12)
    assert abs(bsl(x["u"], x["i"], **kwargs(x)).item() - ssm(x["u"], x["i"], **kwargs(x)).item()) > 0.1
    # one row: the scalar losses themselves obey the relation
    one = dict(item_ids=x["ids"][:1], extra_reps=rand(4, 5, seed=3), extra_ids=T([1, 5, 6, 3]))
    b1 = bsl(x["u"][:1], x["i"][:1], **one)
    assert ssm(x["u"][:1], x["i"][:1], **one).item() == pytest.approx(F.softplus(b1).item(), rel=1e-10)


# ----------------------------------------------------------------------------- BSL: the paper's form
def test_bsl_paper_form_hand_values():
    # ip, tau 1, tau2 2: the negatives at tau_2 = 2; users (2,0),(0,1), two users; items (1,0),(0,1);
    # extra negative (1,1).  Row 1: positive 2, negatives [0, 2] / 2 = [0, 1];
    #                        row 2: positive 1, negatives [0, 1] / 2 = [0, 0.5]
    # row 1: -2 + 2 log(e^0 + e^1)   = -2 + 2 * 1.313262 = 0.626523
    # row 2: -1 + 2 log(e^0 + e^0.5) = -1 + 2 * 0.974077 = 0.948154;  mean 0.787339
    u, i, e = T([[2.0, 0.0], [0.0, 1.0]]), T([[1.0, 0.0], [0.0, 1.0]]), T([[1.0, 1.0]])
    paper = BilateralSoftmaxLoss(1.0, "ip", tau2=2.0, form="paper")
    assert paper(u, i, extra_reps=e, user_ids=T([0, 1])).item() == pytest.approx(0.787339, abs=1e-6)
    # the authors' form at the same tau2 (1.940190, test_bsl_hand_value) keeps the negatives at tau 1
    authors = BilateralSoftmaxLoss(1.0, "ip", tau2=2.0)
    assert authors(u, i, extra_reps=e).item() == pytest.approx(1.940190, abs=1e-6)


def test_bsl_paper_form_pools_the_positives_hand_value():
    # ip, tau 1, tau2 2; rows 1 and 2 are user 7 (vector (1,0)), row 3 user 8 (0,1); items (1,0),(0,1),(-1,0)
    # logits row 1: [1, 0, -1], row 2: [1, 0, -1], row 3: [0, 1, 0]; positives (diagonal) 1, 0, 0
    # user 7's pooled positive: log((e^1 + e^0) / 2) = 0.620115; negatives at s / 2:
    # row 1: 2 log(e^0 + e^-0.5)   - 0.620115 = 0.948154 - 0.620115 = 0.328039
    # row 2: 2 log(e^0.5 + e^-0.5) - 0.620115 = 1.626523 - 0.620115 = 1.006409
    # row 3: 2 log(e^0 + e^0.5)    - 0        = 1.948154;   mean 1.094201
    u = T([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    i = T([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    for pool in (False, True):  # the paper's form pools whatever pool_positives says
        loss = BilateralSoftmaxLoss(1.0, "ip", tau2=2.0, pool_positives=pool, form="paper")
        assert loss.row_losses(u, i, user_ids=T([7, 7, 8])).tolist() == pytest.approx(
            [0.328039, 1.006409, 1.948154], abs=1e-6)
        assert loss(u, i, user_ids=T([7, 7, 8])).item() == pytest.approx(1.094201, abs=1e-6)


@pytest.mark.parametrize("sim", ["cos", "ip"])
@pytest.mark.parametrize("mask_dup", [False, True])
@pytest.mark.parametrize("with_extra", [False, True])
@pytest.mark.parametrize("tau2", [0.6, 1.4])
def test_bsl_paper_form_matches_naive_loop(sim, mask_dup, with_extra, tau2):
    x = batch(with_extra=with_extra)
    users = T([4, 9, 4, 1, 9, 4])
    loss = BilateralSoftmaxLoss(0.3, sim, tau2=tau2, mask_duplicates=mask_dup, form="paper")
    got = loss(x["u"], x["i"], user_ids=users, **kwargs(x))
    want = naive_bsl(x, sim, 0.3, tau2, mask_dup, users, form="paper")
    assert got.item() == pytest.approx(want, rel=1e-10)
    # the authors' form differs from it at tau2 != 1 (the negatives' temperature)
    authors = BilateralSoftmaxLoss(0.3, sim, tau2=tau2, mask_duplicates=mask_dup, pool_positives=True)
    assert abs(authors(x["u"], x["i"], user_ids=users, **kwargs(x)).item() - want) > 1e-3


def test_bsl_paper_form_target_matches_naive_loop():
    x = batch()
    target, users = T([3, 4, 5]), T([2, 2, 5])
    part = dict(x, u=x["u"][3:], exclude=x["exclude"][3:])
    loss = BilateralSoftmaxLoss(0.3, "cos", tau2=0.7, mask_duplicates=True, form="paper")
    got = loss(part["u"], x["i"], target=target, user_ids=users, **kwargs(part))
    want = naive_bsl(part, "cos", 0.3, 0.7, True, users, target=target, form="paper")
    assert got.item() == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("sim", ["cos", "ip"])
@pytest.mark.parametrize("with_extra", [False, True])
def test_bsl_forms_are_one_loss_at_tau2_one(sim, with_extra):
    """tau_2 = tau_1 (tau2 = 1): the paper's form is the authors' (pooled), masks and logQ included."""
    x = batch(with_extra=with_extra)
    users = T([4, 9, 4, 1, 9, 4])
    paper = BilateralSoftmaxLoss(0.2, sim, tau2=1.0, mask_duplicates=True, form="paper")
    authors = BilateralSoftmaxLoss(0.2, sim, tau2=1.0, mask_duplicates=True, pool_positives=True)
    rows = paper.row_losses(x["u"], x["i"], user_ids=users, **kwargs(x))
    assert torch.allclose(rows, authors.row_losses(x["u"], x["i"], user_ids=users, **kwargs(x)),
                          rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sim", ["cos", "ip"])
@pytest.mark.parametrize("r", [0.5, 2.0])
def test_bsl_paper_form_with_one_row_per_user_is_rescaled_sl(sim, r):
    """-s_i/t1 + (t2/t1) LSE(s_j/t2) = (t2/t1) [-s_i/t2 + LSE(s_j/t2)]: with every user once in the
    batch the paper's form (tau, tau2 = r) is r times the authors' SL (tau2 = 1) at tau = r * tau.
    With logQ the two differ by the positive's correction, a constant (1 - r) logQ_i per row."""
    x = batch()
    users = torch.arange(6)
    u = x["u"].clone().requires_grad_(True)
    paper = BilateralSoftmaxLoss(0.2, sim, tau2=r, mask_duplicates=True, form="paper")
    sl = BilateralSoftmaxLoss(0.2 * r, sim, tau2=1.0, mask_duplicates=True)
    plain = kwargs(x, logq=False)
    assert torch.allclose(paper.row_losses(u, x["i"], user_ids=users, **plain),
                          r * sl.row_losses(u, x["i"], **plain), rtol=1e-12, atol=1e-12)
    rows = paper.row_losses(u, x["i"], user_ids=users, **kwargs(x))
    scaled = r * sl.row_losses(u, x["i"], **kwargs(x))
    assert torch.allclose(rows - scaled, (1 - r) * x["logq"][:6], rtol=1e-10, atol=1e-12)
    (g_paper,) = torch.autograd.grad(rows.sum(), u)
    (g_sl,) = torch.autograd.grad(scaled.sum(), u)
    assert torch.allclose(g_paper, g_sl, rtol=1e-10, atol=1e-12)


def test_bsl_default_is_not_sl():
    """The registry's default tau2 is the class's, and neither is 1 (where BSL is SL)."""
    from ssmrec.losses import BEYOND, build_loss

    assert BEYOND["bsl"].params["tau2"] == BilateralSoftmaxLoss().tau2 != 1.0
    assert build_loss("bsl").form == "authors" and build_loss("bsl", params={"form": "paper"}).form == "paper"


# ----------------------------------------------------------------------------- PSL: hand values
def test_psl_hand_values():
    # cos, tau 0.5 (exponent 2): users (1,0),(0,1); items (1,0),(0,1); f = cos / 2 -> [[0.5, 0], [0, 0.5]]
    # each row has one negative with gap d = 0 - 0.5 = -0.5:
    #   tanh: (tanh(-0.5) + 1)^2 = 0.537883^2 = 0.289318 -> log = -1.240229
    #   atan: (atan(-0.5) + 1)^2 = 0.536352^2 = 0.287674 -> log = -1.245928
    #   relu: relu(-0.5 + 1)^2   = 0.5^2      = 0.25     -> log = -1.386294
    #   exp:  exp(-0.5)^2        = e^-1                  -> log = -1
    u, i = T([[1.0, 0.0], [0.0, 1.0]]), T([[1.0, 0.0], [0.0, 1.0]])
    want = {"tanh": -1.240229, "atan": -1.245928, "relu": -1.386294, "exp": -1.0}
    for act, value in want.items():
        assert PairwiseSoftmaxLoss(0.5, activation=act)(u, i).item() == pytest.approx(value, abs=1e-6)
    # an extra negative (0,3): f = 0 for row 1 (gap -0.5), f = 0.5 for row 2 (gap 0, a tie):
    # tanh row 1: log(0.289318 + 0.289318) = log 0.578636 = -0.547082
    #      row 2: log(0.289318 + (tanh(0) + 1)^2) = log 1.289318 = 0.254113;  mean -0.146484
    e = T([[0.0, 3.0]])
    assert PairwiseSoftmaxLoss(0.5)(u, i, extra_reps=e).item() == pytest.approx(-0.146484, abs=1e-6)


def test_psl_relu_drops_zero_terms():
    # cos, tau 0.5, relu: user (1,0), positive (1,0) (f = 0.5); negatives (-1,0) (f = -0.5, d = -1)
    # and (0,1) (f = 0, d = -0.5): relu(0)^2 + relu(0.5)^2 = 0 + 0.25 -> log 0.25 = -1.386294
    u, i = T([[1.0, 0.0]], requires_grad=True), T([[1.0, 0.0]])
    e = T([[-1.0, 0.0], [0.0, 1.0]])
    loss = PairwiseSoftmaxLoss(0.5, activation="relu")(u, i, extra_reps=e)
    assert loss.item() == pytest.approx(math.log(0.25))
    # only the zero term left: the row contributes 0 (not -inf), with a finite gradient
    loss = PairwiseSoftmaxLoss(0.5, activation="relu")(u, i, extra_reps=e[:1])
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(u.grad).all()


def test_psl_ip_far_gaps_stay_finite():
    # ip: gaps far below -1; atan(d) + 1 < 0 there (clamped, dropped); tanh's log is log 2 + logsigmoid(2d)
    u, i, e = T([[10.0, 0.0]]), T([[10.0, 0.0]]), T([[-10.0, 0.0], [0.0, 1.0]])
    for act in ACTS:
        value = PairwiseSoftmaxLoss(0.1, "ip", act)(u, i, extra_reps=e)
        assert torch.isfinite(value)
    # f(u, i) = 100 / 2 = 50; the gaps are -100 (for (-10,0)) and -50 (for (0,1)).
    # atan: atan(-100) + 1 and atan(-50) + 1 are both < 0 -> both dropped -> empty row -> 0
    assert PairwiseSoftmaxLoss(0.1, "ip", "atan")(u, i, extra_reps=e).item() == 0.0
    # tanh: log sum_j (2 sigmoid(2 d_j))^10, dominated by d = -50: 10 (log 2 - 100) = -993.068528
    assert PairwiseSoftmaxLoss(0.1, "ip", "tanh")(u, i, extra_reps=e).item() == pytest.approx(-993.068528, abs=1e-4)


# ----------------------------------------------------------------------------- PSL: naive loop
@pytest.mark.parametrize("sim", ["cos", "ip"])
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("mask_dup", [False, True])
@pytest.mark.parametrize("with_extra", [False, True])
def test_psl_matches_naive_loop(sim, act, mask_dup, with_extra):
    x = batch(with_extra=with_extra)
    loss = PairwiseSoftmaxLoss(0.3, sim, act, mask_duplicates=mask_dup)
    got = loss(x["u"], x["i"], **kwargs(x, logq=False))
    assert got.item() == pytest.approx(naive_psl(x, sim, 0.3, act, mask_dup), rel=1e-10)


def test_psl_target_matches_naive_loop():
    x = batch()
    target = T([3, 4, 5])
    part = dict(x, u=x["u"][3:], exclude=x["exclude"][3:])
    loss = PairwiseSoftmaxLoss(0.2, "cos", "atan", mask_duplicates=True)
    got = loss(part["u"], x["i"], target=target, **kwargs(part, logq=False))
    assert got.item() == pytest.approx(naive_psl(part, "cos", 0.2, "atan", True, target=target), rel=1e-10)


# ----------------------------------------------------------------------------- PSL-exp vs BSL / SSM
@pytest.mark.parametrize("sim", ["cos", "ip"])
def test_psl_exp_is_bsl_and_softplus_is_ssm(sim):
    """PSL-exp(tau) = BSL(2 tau, tau2 = 1) exactly; softplus of its rows = SSM(2 tau)'s rows."""
    x = batch()
    kw = kwargs(x, logq=False)
    psl = PairwiseSoftmaxLoss(0.1, sim, "exp", mask_duplicates=True)
    rows = psl.row_losses(x["u"], x["i"], **kw)
    bsl = BilateralSoftmaxLoss(0.2, sim, 1.0, mask_duplicates=True)
    assert torch.allclose(rows, bsl.row_losses(x["u"], x["i"], **kw), rtol=1e-10, atol=1e-12)
    ssm = SampledSoftmaxLoss(0.2, sim, mask_duplicates=True)
    ssm_rows = F.cross_entropy(ssm.logits(x["u"], x["i"], **kw), torch.arange(6), reduction="none")
    assert torch.allclose(F.softplus(rows), ssm_rows, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- gradcheck
EXCLUDE = torch.zeros(4, 6, dtype=torch.bool)
EXCLUDE[1, 2] = True


@pytest.mark.parametrize("sim", ["cos", "ip"])
@pytest.mark.parametrize("pool", [False, True])
def test_gradcheck_bsl(sim, pool):
    ids, logq, users = T([0, 1, 0, 2]), rand(6, seed=9), T([5, 6, 5, 7])
    loss = BilateralSoftmaxLoss(0.5, sim, tau2=1.3, mask_duplicates=True, pool_positives=pool)
    _check(lambda u, i, e: loss(u, i, item_ids=ids, extra_reps=e, extra_ids=T([2, 3]), logq=logq, exclude=EXCLUDE,
                                user_ids=users), rand(4, 3, seed=1), rand(4, 3, seed=2), rand(2, 3, seed=3))


@pytest.mark.parametrize("sim", ["cos", "ip"])
def test_gradcheck_bsl_paper_form(sim):
    ids, logq, users = T([0, 1, 0, 2]), rand(6, seed=9), T([5, 6, 5, 7])
    loss = BilateralSoftmaxLoss(0.5, sim, tau2=0.7, mask_duplicates=True, form="paper")
    _check(lambda u, i, e: loss(u, i, item_ids=ids, extra_reps=e, extra_ids=T([2, 3]), logq=logq, exclude=EXCLUDE,
                                user_ids=users), rand(4, 3, seed=1), rand(4, 3, seed=2), rand(2, 3, seed=3))


@pytest.mark.parametrize("sim", ["cos", "ip"])
@pytest.mark.parametrize("act", ACTS)
def test_gradcheck_psl(sim, act):
    ids = T([0, 1, 0, 2])
    loss = PairwiseSoftmaxLoss(0.5, sim, act, mask_duplicates=True)
    # ip scores scaled down so that every gap stays clear of relu's kink at -1 and atan's clamp
    scale = 1.0 if sim == "cos" else 0.3
    _check(lambda u, i, e: loss(u, i, item_ids=ids, extra_reps=e, extra_ids=T([2, 3]), exclude=EXCLUDE),
           scale * rand(4, 3, seed=1), scale * rand(4, 3, seed=2), scale * rand(2, 3, seed=3))


# ----------------------------------------------------------------------------- arguments
def test_argument_errors():
    with pytest.raises(ValueError, match="tau must be positive, got 0"):
        BilateralSoftmaxLoss(tau=0)
    with pytest.raises(ValueError, match="tau2 must be positive, got -1"):
        BilateralSoftmaxLoss(tau2=-1)
    with pytest.raises(ValueError, match="similarity"):
        BilateralSoftmaxLoss(similarity="dot")
    with pytest.raises(ValueError, match="form must be one of .*'paper'.*got 'icde'"):
        BilateralSoftmaxLoss(form="icde")
    with pytest.raises(ValueError, match="tau must be positive"):
        PairwiseSoftmaxLoss(tau=-0.1)
    with pytest.raises(ValueError, match="activation must be one of .*'tanh'.*got 'sigmoid'"):
        PairwiseSoftmaxLoss(activation="sigmoid")
    with pytest.raises(ValueError, match="similarity"):
        PairwiseSoftmaxLoss(similarity="dot")
    u, i = rand(2, 3, seed=1), rand(2, 3, seed=2)
    with pytest.raises(ValueError, match="PSL has no logQ correction"):
        PairwiseSoftmaxLoss()(u, i, logq=torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="pool_positives needs user_ids"):
        BilateralSoftmaxLoss(pool_positives=True)(u, i)
    with pytest.raises(ValueError, match="paper form pools each user's positives: it needs user_ids"):
        BilateralSoftmaxLoss(form="paper")(u, i)
    with pytest.raises(ValueError, match="mask_duplicates needs item_ids"):
        PairwiseSoftmaxLoss(mask_duplicates=True)(u, i)
    # the interface's other arguments are accepted and ignored
    assert torch.isfinite(PairwiseSoftmaxLoss()(u, i, user_ids=T([0, 1]), epoch=3))
    assert torch.isfinite(BilateralSoftmaxLoss()(u, i, user_ids=T([0, 1]), epoch=3))
