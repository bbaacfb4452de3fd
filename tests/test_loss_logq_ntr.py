"""CorrectedLogQLoss and NegativeFeedbackLoss: hand values, naive loops, gradcheck, special cases."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from loss_cases import T, in_batch_case, rand
from loss_cases import gradcheck as _check

from ssmrec.losses import SampledSoftmaxLoss, SoftmaxLoss, build_loss
from ssmrec.losses.logq import CorrectedLogQLoss
from ssmrec.losses.ntr import NegativeFeedbackLoss

F64 = torch.float64
# the estimator's arithmetic is checked unmasked too (mask_duplicates=False), which warns by design
pytestmark = pytest.mark.filterwarnings("ignore:corrected logQ without mask_duplicates")


def f(a, b, sim, tau):
    """One score, in plain Python."""
    if sim == "cos":
        a, b = a / a.norm(), b / b.norm()
    return float(a @ b) / tau


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


# ============================================================================ CorrectedLogQLoss
# ----------------------------------------------------------------------------- hand value
def test_corrected_logq_hand_value():
    # ip, tau 1: users (1,0),(0,1); positives (1,0),(0,2); one extra (1,1)
    #   scores row 1: [1, 0, 1] (positive col 0);  row 2: [0, 2, 1] (positive col 1)
    # logq = log E = log [1.5, 0.75, 0.75] over n = C + K = 3 draws -> q = E / 3 = [0.5, 0.25, 0.25]
    # row 1: q(pos) = 0.5 -> q' = q / 0.5 = [., 0.5, 0.5];  m = 2
    #   Z_hat = 1/2 (e^0 / 0.5 + e^1 / 0.5) = 1 + e = 3.718282
    #   ell = log(1 + e) - 1 = log(1 + e^-1) = 0.313262;  1 - p_hat = sigmoid(ell) = 0.577681
    # row 2: q(pos) = 0.25 -> q' = q / 0.75 = [2/3, ., 1/3];  m = 2
    #   Z_hat = 1/2 (e^0 / (2/3) + e^1 / (1/3)) = 0.75 + 1.5 e = 4.827423
    #   ell = log(4.827423) - 2 = -0.425687;  1 - p_hat = sigmoid(-0.425687) = 0.395157
    # loss = (0.577681 * 0.313262 + 0.395157 * -0.425687) / 2 = 0.006376;  unweighted: -0.056213
    u, i, e = T([[1.0, 0.0], [0.0, 1.0]]), T([[1.0, 0.0], [0.0, 2.0]]), T([[1.0, 1.0]])
    logq = torch.log(T([1.5, 0.75, 0.75]))
    loss = CorrectedLogQLoss(1.0, "ip", mask_duplicates=False)
    parts = loss.parts(u, i, extra_reps=e, logq=logq)
    assert parts.ell.tolist() == pytest.approx([0.313262, -0.425687], abs=1e-6)
    assert (1 - parts.p_hat).tolist() == pytest.approx([0.577681, 0.395157], abs=1e-6)
    assert loss(u, i, extra_reps=e, logq=logq).item() == pytest.approx(0.006376, abs=1e-6)
    assert CorrectedLogQLoss(1.0, "ip", False, weight=False)(u, i, extra_reps=e, logq=logq).item() == pytest.approx(
        -0.056213, abs=1e-6)
    # n_draws = 6 halves every q: row 1 q = [0.25, 0.125, 0.125], q' = 0.125 / 0.75 = 1/6 for both negatives
    #   Z_hat = 1/2 (e^0 + e^1) * 6 = 3 (1 + e);  ell = log 3 + 0.313262 = 1.411874
    assert loss.parts(u, i, extra_reps=e, logq=logq, n_draws=6).ell[0].item() == pytest.approx(1.411874, abs=1e-6)


def test_corrected_logq_positive_not_corrected_and_not_in_the_sum():
    # the positive's own logq never enters: changing it only moves q(pos), i.e. the factor 1 - q(pos)
    # that conditions the negatives. With n huge, 1 - q(pos) ~ 1 and the positive's logq is inert.
    u, i = rand(3, 4, seed=1), rand(3, 4, seed=2)
    logq = rand(3, seed=3)
    bumped = logq.clone()
    bumped[0] += 5.0  # column 0 is row 0's positive and a negative of rows 1, 2
    loss = CorrectedLogQLoss(0.5, "cos", mask_duplicates=False)
    a = loss.parts(u, i, logq=logq, n_draws=10**9).ell
    b = loss.parts(u, i, logq=bumped, n_draws=10**9).ell
    assert a[0].item() == pytest.approx(b[0].item(), rel=1e-7)
    assert abs(a[1].item() - b[1].item()) > 1e-3


# ----------------------------------------------------------------------------- naive loop
def naive_corrected(u, i, ids, extra, extra_ids, tau, sim, logq, mask_dup, exclude, n_draws, weight):
    cands = [(i[c], int(ids[c])) for c in range(len(i))] + (
        [(extra[k], int(extra_ids[k])) for k in range(len(extra))] if extra is not None else [])
    n = len(cands) if n_draws is None else n_draws
    q = [math.exp(float(x)) / n for x in logq]
    total = 0.0
    for b in range(len(u)):
        s_pos = f(u[b], i[b], sim, tau)
        z, m = 0.0, 0
        for c, (vec, cid) in enumerate(cands):
            if c == b or (mask_dup and cid == int(ids[b])) or (exclude is not None and exclude[b][c]):
                continue
            q_cond = q[c] / (1.0 - q[b])
            z += math.exp(f(u[b], vec, sim, tau)) / q_cond
            m += 1
        if m == 0:
            continue
        z /= m
        p_hat = math.exp(s_pos) / (math.exp(s_pos) + z)
        ell = math.log(z) - s_pos
        total += ((1.0 - p_hat) if weight else 1.0) * ell
    return total / len(u)


@pytest.mark.parametrize("sim", ["cos", "ip"])
@pytest.mark.parametrize("mask_dup", [False, True])
@pytest.mark.parametrize("with_extra", [False, True])
@pytest.mark.parametrize("weight", [True, False])
def test_corrected_logq_matches_naive_loop(sim, mask_dup, with_extra, weight):
    u, i, ids, extra, extra_ids, c, _, exclude = in_batch_case(with_extra)
    logq = torch.log(torch.rand(c, generator=torch.Generator().manual_seed(4), dtype=F64) * 1.5 + 0.1)
    loss = CorrectedLogQLoss(0.3, sim, mask_duplicates=mask_dup, weight=weight)
    for n_draws in (None, 25):
        got = loss(u, i, item_ids=ids, extra_reps=extra, extra_ids=extra_ids, logq=logq, exclude=exclude,
                   n_draws=n_draws)
        want = naive_corrected(u, i, ids, extra, extra_ids, 0.3, sim, logq, mask_dup, exclude, n_draws, weight)
        assert got.item() == pytest.approx(want, rel=1e-10)


def test_corrected_logq_target_rows_are_a_part_of_the_batch():
    # a worker's rows 0..1 are rows 2..3 of the whole batch: same terms as those rows of the whole
    u, i, logq = rand(4, 3, seed=1), rand(4, 3, seed=2), rand(4, seed=3) - 1.0
    loss = CorrectedLogQLoss(0.5, "ip", mask_duplicates=False)
    whole = loss.parts(u, i, logq=logq).ell
    part = loss.parts(u[2:], i, logq=logq, target=T([2, 3])).ell
    assert torch.allclose(part, whole[2:], rtol=1e-12)


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("sim", ["cos", "ip"])
def test_gradcheck_corrected_logq(sim):
    # the differentiable part: the row terms ell, and the unweighted loss. With weight=True the loss
    # is not the antiderivative of its own gradient (the weight is held constant), so finite
    # differences cannot check it; the next test pins its gradient to stopgrad(1 - p_hat) * grad ell.
    ids = T([0, 1, 0, 2])
    logq = rand(6, seed=9) - 1.0
    exclude = torch.zeros(4, 6, dtype=torch.bool)
    exclude[1, 2] = True
    kw = dict(item_ids=ids, extra_ids=T([2, 3]), logq=logq, exclude=exclude)
    loss = CorrectedLogQLoss(0.5, sim, mask_duplicates=True)
    unweighted = CorrectedLogQLoss(0.5, sim, mask_duplicates=True, weight=False)
    inputs = rand(4, 3, seed=1), rand(4, 3, seed=2), rand(2, 3, seed=3)
    _check(lambda u, i, e: loss.parts(u, i, extra_reps=e, **kw).ell, *inputs)
    _check(lambda u, i, e: unweighted(u, i, extra_reps=e, **kw), *inputs)
    # the weighted loss against a constant weight taken at the checked point
    w = 1 - loss.parts(*inputs[:2], extra_reps=inputs[2], **kw).p_hat
    _check(lambda u, i, e: (w * loss.parts(u, i, extra_reps=e, **kw).ell).mean(), *inputs)


def test_corrected_logq_weight_carries_no_gradient():
    u, i, e = rand(4, 3, seed=1), rand(4, 3, seed=2), rand(3, 3, seed=3)
    logq = rand(7, seed=4) - 1.0
    loss = CorrectedLogQLoss(0.4, "ip", mask_duplicates=False)
    parts = loss.parts(u, i, extra_reps=e, logq=logq)
    assert not parts.p_hat.requires_grad

    def grads(fn):
        uu = u.clone().requires_grad_(True)
        fn(uu).backward()
        return uu.grad

    # the weight computed apart, as a plain number, gives the same gradient ...
    w = [1 - p for p in parts.p_hat.tolist()]
    g_loss = grads(lambda uu: loss(uu, i, extra_reps=e, logq=logq))
    g_const = grads(lambda uu: (T(w, dtype=F64) * loss.parts(uu, i, extra_reps=e, logq=logq).ell).mean())
    assert torch.allclose(g_loss, g_const, rtol=1e-10, atol=1e-12)
    # ... and differentiating through 1 - p_hat = sigmoid(ell) would not
    g_through = grads(lambda uu: (lambda ell: (torch.sigmoid(ell) * ell).mean())(
        loss.parts(uu, i, extra_reps=e, logq=logq).ell))
    assert (g_through - g_loss).abs().max() > 1e-3


def test_corrected_logq_row_without_negatives_adds_nothing():
    # row 0's only other candidate is excluded: Z_hat = 0, p_hat = 1, the row adds 0 (still counted in B)
    u, i = rand(2, 3, seed=1), rand(2, 3, seed=2)
    logq = T([0.1, -0.2], dtype=F64)
    exclude = T([[False, True], [False, False]])
    loss = CorrectedLogQLoss(0.5, "ip", mask_duplicates=False)
    uu = u.clone().requires_grad_(True)
    got = loss(uu, i, logq=logq, exclude=exclude)
    got.backward()
    assert torch.isfinite(uu.grad).all()
    row1 = naive_corrected(u[1:], i[[1, 0]], T([1, 0]), None, None, 0.5, "ip", logq[[1, 0]], False, None, 2, True)
    assert got.item() == pytest.approx(row1 / 2, rel=1e-10)
    for w in (True, False):
        loss = CorrectedLogQLoss(0.5, "ip", mask_duplicates=False, weight=w)
        assert loss(u, i, logq=logq, exclude=torch.ones(2, 2, dtype=bool)) == 0


# ----------------------------------------------------------------------------- special case
def test_corrected_logq_with_every_item_once_has_the_full_softmax_gradient():
    """Negatives = every other item once, uniform q: Z_hat = Z_{-i} exactly, so p_hat is the full
    softmax probability, ell = -logit(p), and the weighted loss has the full softmax gradient."""
    b, n, d = 4, 9, 3
    u, all_items = rand(b, d, seed=1), rand(n, d, seed=2)
    pos = T([3, 0, 8, 3])
    exclude = ~torch.eye(b, n + b, dtype=torch.bool)  # in-batch columns other than the diagonal
    exclude[:, b:] = False
    n_draws = 30
    logq = torch.full((b + n,), math.log(n_draws / n), dtype=F64)  # q = 1/n each -> q' = 1/(n - 1)
    kw = dict(item_ids=pos, extra_ids=torch.arange(n), exclude=exclude, logq=logq, n_draws=n_draws)
    for sim in ("cos", "ip"):
        loss = CorrectedLogQLoss(0.3, sim, mask_duplicates=True)
        uu, vv = u.clone().requires_grad_(True), all_items.clone().requires_grad_(True)
        got = loss(uu, vv[pos], extra_reps=vv, **kw)
        got.backward()
        u2, v2 = u.clone().requires_grad_(True), all_items.clone().requires_grad_(True)
        full = SoftmaxLoss(0.3, sim)(u2, v2, pos)
        full.backward()
        assert torch.allclose(uu.grad, u2.grad, rtol=1e-10, atol=1e-13)
        assert torch.allclose(vv.grad, v2.grad, rtol=1e-10, atol=1e-13)
        p = torch.softmax(torch.stack([T([f(u[r], all_items[j], sim, 0.3) for j in range(n)], dtype=F64)
                                       for r in range(b)]), 1)[torch.arange(b), pos]
        ell = loss.parts(u, all_items[pos], extra_reps=all_items, **kw).ell
        assert torch.allclose(ell, torch.log((1 - p) / p), rtol=1e-10)


# ----------------------------------------------------------------------------- Monte Carlo
def _mc_score_gradients(n, trials=400, block=20, seed=0):
    """E[d loss / d score] over ``trials`` draws of ``n`` negatives for one user and one positive on a
    10-item catalogue with Zipf sampling, for the corrected and the standard correction, and the
    full softmax gradient."""
    n_items, d = 10, 4
    q = 1.0 / np.arange(1, n_items + 1)
    q /= q.sum()
    g = torch.Generator().manual_seed(0)
    items = torch.randn(n_items, d, generator=g, dtype=F64)
    user = torch.randn(1, d, generator=g, dtype=F64)
    scores = (user @ items.T).squeeze(0)
    pos = int(scores.argmax())
    assert pos == 0  # the most popular item: full-softmax p = 0.499, q(pos) = 0.341
    logq = torch.log(torch.from_numpy(n * q))  # expected counts among n draws
    ids = torch.arange(n_items)
    rng = np.random.default_rng(seed)

    def score_grad(fn, *args, **kwargs):
        v = items.clone().requires_grad_(True)
        fn(v, *args, **kwargs).backward()
        return (v.grad @ user.T).squeeze(1) / (user @ user.T).item()  # d loss / d f(u, j) for ip, tau 1

    # rows are independent trials sharing the positive (column 0); each sees only its own n draws
    exclude = torch.ones(block, 1 + block * n, dtype=torch.bool)
    for r in range(block):
        exclude[r, 0] = False
        exclude[r, 1 + r * n: 1 + (r + 1) * n] = False
    losses = {"corrected": (CorrectedLogQLoss(1.0, "ip", mask_duplicates=True), {"n_draws": n}),
              "standard": (SampledSoftmaxLoss(1.0, "ip", mask_duplicates=True), {})}
    users, target = user.expand(block, d), torch.zeros(block, dtype=torch.long)

    def trial_block(v, loss, draws, **extra):
        return loss(users, v[[pos]], extra_reps=v[draws], item_ids=ids[[pos]], extra_ids=draws, exclude=exclude,
                    target=target, logq=torch.cat([logq[[pos]], logq[draws]]), **extra)

    est = {"corrected": 0.0, "standard": 0.0}
    for _ in range(trials // block):
        draws = torch.from_numpy(rng.choice(n_items, size=block * n, p=q))
        for name, (loss, extra) in losses.items():
            est[name] += score_grad(trial_block, loss, draws, **extra)
    full = score_grad(lambda v: SoftmaxLoss(1.0, "ip")(user, v, T([pos])))
    rel = {k: float((v / (trials // block) - full).norm() / full.norm()) for k, v in est.items()}
    return rel


def test_corrected_logq_is_consistent_and_the_standard_correction_is_not():
    """The paper's point: the positive is always a candidate, not a draw. Its estimator of the
    full-softmax gradient loses its bias as the draws grow (measured: 0.031 at n = 10, 0.012 at
    n = 50), while subtracting log E from the positive too drives p(pos) to 0 and the gradient to
    that of log Z_{-i} - f(u, i) without the factor 1 - p(pos) (bias 0.50 at n = 10, 0.88 at 50)."""
    small, large = _mc_score_gradients(10), _mc_score_gradients(50)
    assert small["corrected"] < 0.08 and large["corrected"] < 0.03  # seeds 0-4: <= 0.055, <= 0.012
    assert large["corrected"] < small["corrected"]
    assert small["standard"] > 0.4 and large["standard"] > 0.8


# ----------------------------------------------------------------------------- default
def test_corrected_logq_masks_duplicates_by_default_and_warns_without():
    """The estimator conditions q on "not the positive", so the positive's in-batch copies must
    leave the negatives: that is the default; False (the shared setting's default) warns, and
    the warning reaches ``--loss clogq`` through build_loss. The case has item 3 and item 1
    twice among the positives and again among the extras: masking changes the value."""
    u, i, ids, extra, extra_ids, _, logq, _ = in_batch_case(True)
    kw = dict(item_ids=ids, extra_reps=extra, extra_ids=extra_ids, logq=logq)
    masked = CorrectedLogQLoss(0.3)
    assert masked.mask_duplicates
    want = naive_corrected(u, i, ids, extra, extra_ids, 0.3, "cos", logq, True, None, None, True)
    assert masked(u, i, **kw).item() == pytest.approx(want, rel=1e-10)
    with pytest.warns(UserWarning, match="corrected logQ without mask_duplicates.*--mask-duplicates"):
        unmasked = CorrectedLogQLoss(0.3, mask_duplicates=False)
    assert abs(unmasked(u, i, **kw).item() - want) > 1e-4
    with pytest.warns(UserWarning, match="corrected logQ without mask_duplicates"):
        build_loss("clogq")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_loss("clogq", mask_duplicates=True)


# ----------------------------------------------------------------------------- arguments
def test_corrected_logq_arguments():
    u, i = rand(2, 3, seed=1), rand(2, 3, seed=2)
    with pytest.raises(ValueError, match="corrected logQ loss needs the sampling log-probabilities"):
        CorrectedLogQLoss()(u, i)
    with pytest.raises(ValueError, match="tau must be positive"):
        CorrectedLogQLoss(tau=-1)
    with pytest.raises(ValueError, match="similarity"):
        CorrectedLogQLoss(similarity="dot")
    with pytest.raises(ValueError, match="n_draws must be positive"):
        CorrectedLogQLoss(mask_duplicates=False)(u, i, logq=torch.zeros(2), n_draws=0)
    with pytest.raises(ValueError, match="mask_duplicates needs item_ids"):
        CorrectedLogQLoss(mask_duplicates=True)(u, i, logq=torch.zeros(2))
    # extras of the in-batch interface are accepted and ignored
    assert torch.isfinite(CorrectedLogQLoss()(u, i, logq=torch.zeros(2), item_ids=T([4, 5]), user_ids=T([0, 1]),
                                              unknown=1))


# ============================================================================ NegativeFeedbackLoss
# ----------------------------------------------------------------------------- hand value
def test_ntr_hand_value():
    # ip, tau 1: users (1,0),(0,1); positives (1,0),(0,1): SSM logits [[1,0],[0,1]]
    #   each row -log(e / (e + 1)) = log(1 + e^-1) = 0.313262
    # one dislike: user (1,0), item (2,0): f = 2; candidates (1,0),(0,1): f = 1, 0
    #   p = e^2 / (e^2 + e + 1) = 7.389056 / 11.107338 = 0.665241
    #   -log(1 - p) = log(11.107338) - log(e + 1) = 2.407606 - 1.313262 = 1.094344
    # weight 0.5: 0.313262 + 0.5 * 1.094344 = 0.860434
    u, i = T([[1.0, 0.0], [0.0, 1.0]]), T([[1.0, 0.0], [0.0, 1.0]])
    nu, ni = T([[1.0, 0.0]]), T([[2.0, 0.0]])
    loss = NegativeFeedbackLoss(1.0, "ip", weight=0.5)
    assert loss.negative_terms(nu, ni, i).item() == pytest.approx(1.094344, abs=1e-6)
    assert loss(u, i, neg_user_reps=nu, neg_item_reps=ni).item() == pytest.approx(0.860434, abs=1e-6)
    # a second dislike does not see the first's item: user (0,1), item (0,-1): f = -1; candidates 0, 1
    #   -log(1 - p) = log(e^-1 + 1 + e) - log(1 + e) = log(4.086161 / 3.718282) = 0.094344
    # mean over the two: (1.094344 + 0.094344) / 2 = 0.594344 -> 0.313262 + 0.5 * 0.594344 = 0.610434
    nu2, ni2 = T([[1.0, 0.0], [0.0, 1.0]]), T([[2.0, 0.0], [0.0, -1.0]])
    assert loss(u, i, neg_user_reps=nu2, neg_item_reps=ni2).item() == pytest.approx(0.610434, abs=1e-6)


# ----------------------------------------------------------------------------- naive loop
def naive_ssm(u, i, ids, extra, extra_ids, tau, sim, logq, mask_dup, exclude):
    cands = [(i[c], int(ids[c])) for c in range(len(i))] + (
        [(extra[k], int(extra_ids[k])) for k in range(len(extra))] if extra is not None else [])
    lq = (lambda c: float(logq[c])) if logq is not None else (lambda c: 0.0)
    total = 0.0
    for b in range(len(u)):
        denom = 0.0
        for c, (vec, cid) in enumerate(cands):
            if c != b and ((mask_dup and cid == int(ids[b])) or (exclude is not None and exclude[b][c])):
                continue
            denom += math.exp(f(u[b], vec, sim, tau) - lq(c))
        total += -(f(u[b], i[b], sim, tau) - lq(b) - math.log(denom))
    return total / len(u)


def naive_ntr_terms(nu, ni, nids, nlogq, nexclude, i, ids, extra, extra_ids, tau, sim, logq, mask_dup):
    cands = [(i[c], int(ids[c])) for c in range(len(i))] + (
        [(extra[k], int(extra_ids[k])) for k in range(len(extra))] if extra is not None else [])
    lq = (lambda c: float(logq[c])) if logq is not None else (lambda c: 0.0)
    terms = []
    for m in range(len(nu)):
        own = math.exp(f(nu[m], ni[m], sim, tau) - (float(nlogq[m]) if nlogq is not None else 0.0))
        rest = 0.0
        for c, (vec, cid) in enumerate(cands):
            if (mask_dup and cid == int(nids[m])) or (nexclude is not None and nexclude[m][c]):
                continue
            rest += math.exp(f(nu[m], vec, sim, tau) - lq(c))
        p = own / (own + rest)
        terms.append(-math.log(1.0 - p))
    return terms


@pytest.mark.parametrize("sim", ["cos", "ip"])
@pytest.mark.parametrize("mask_dup", [False, True])
@pytest.mark.parametrize("with_extra", [False, True])
@pytest.mark.parametrize("with_logq", [False, True])
def test_ntr_matches_naive_loop(sim, mask_dup, with_extra, with_logq):
    b, k, m, d = 6, 4, 5, 5
    u, i = rand(b, d, seed=1), rand(b, d, seed=2)
    ids = T([3, 1, 3, 0, 2, 1])
    extra = rand(k, d, seed=3) if with_extra else None
    extra_ids = T([1, 5, 6, 3]) if with_extra else None
    c = b + (k if with_extra else 0)
    logq = rand(c, seed=4).abs() if with_logq else None
    exclude = rand(b, c, seed=5) > 0.8
    nu, ni = rand(m, d, seed=6), rand(m, d, seed=7)
    nids = T([1, 7, 3, 3, 5])  # 1 and 3 are also candidates (accidental hits when masked)
    nlogq = rand(m, seed=8).abs() if with_logq else None
    nexclude = rand(m, c, seed=9) > 0.8
    loss = NegativeFeedbackLoss(0.3, sim, weight=0.7, mask_duplicates=mask_dup)
    got = loss(u, i, item_ids=ids, extra_reps=extra, extra_ids=extra_ids, logq=logq, exclude=exclude,
               neg_user_reps=nu, neg_item_reps=ni, neg_item_ids=nids, neg_logq=nlogq, neg_exclude=nexclude)
    terms = naive_ntr_terms(nu, ni, nids, nlogq, nexclude, i, ids, extra, extra_ids, 0.3, sim, logq, mask_dup)
    want = naive_ssm(u, i, ids, extra, extra_ids, 0.3, sim, logq, mask_dup, exclude) + 0.7 * sum(terms) / m
    assert got.item() == pytest.approx(want, rel=1e-10)


# ----------------------------------------------------------------------------- special cases
def test_ntr_without_negatives_is_ssm():
    u, i, e = rand(5, 4, seed=1), rand(5, 4, seed=2), rand(3, 4, seed=3)
    kw = dict(item_ids=T([0, 1, 0, 2, 3]), extra_reps=e, extra_ids=T([4, 0, 5]), logq=rand(8, seed=4),
              exclude=rand(5, 8, seed=5) > 0.7)
    for sim in ("cos", "ip"):
        want = SampledSoftmaxLoss(0.2, sim, mask_duplicates=True)(u, i, **kw).item()
        loss = NegativeFeedbackLoss(0.2, sim, weight=3.0, mask_duplicates=True)
        assert loss(u, i, **kw).item() == pytest.approx(want, rel=1e-10, abs=1e-12)
        empty = torch.zeros(0, 4, dtype=F64)
        assert loss(u, i, neg_user_reps=empty, neg_item_reps=empty, **kw).item() == pytest.approx(
            want, rel=1e-10, abs=1e-12)
    # weight 0 switches the term off
    nu, ni = rand(2, 4, seed=6), rand(2, 4, seed=7)
    assert NegativeFeedbackLoss(0.2, "ip", weight=0.0)(u, i, neg_user_reps=nu, neg_item_reps=ni).item() == \
        pytest.approx(SampledSoftmaxLoss(0.2, "ip")(u, i).item(), rel=1e-12)


def test_ntr_is_stable_when_p_goes_to_one():
    # ip, tau 1: the disliked item scores 1e3, the candidates 0 and -1e3:
    #   -log(1 - p) = log(e^1000 + 1 + e^-1000) - log(1 + e^-1000) = 1000 (no inf, no NaN)
    for dtype in (F64, torch.float32):
        nu = T([[1000.0, 0.0]], dtype=dtype, requires_grad=True)
        ni = T([[1.0, 0.0]], dtype=dtype, requires_grad=True)
        items = T([[0.0, 1.0], [-1.0, 0.0]], dtype=dtype, requires_grad=True)
        loss = NegativeFeedbackLoss(1.0, "ip")
        term = loss.negative_terms(nu, ni, items)
        assert term.item() == pytest.approx(1000.0, rel=1e-6)
        total = loss(T([[0.0, 1.0], [1.0, 0.0]], dtype=dtype), items, neg_user_reps=nu, neg_item_reps=ni)
        total.backward()
        assert torch.isfinite(total)
        assert all(torch.isfinite(t.grad).all() for t in (nu, ni, items))
    # and p -> 0 (the disliked item far below the candidates): the term -> 0, still finite
    far = NegativeFeedbackLoss(1.0, "ip").negative_terms(T([[-1000.0, 0.0]]), T([[1.0, 0.0]]), T([[0.0, 1.0]]))
    assert 0.0 <= far.item() < 1e-12


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("sim", ["cos", "ip"])
def test_gradcheck_ntr(sim):
    ids = T([0, 1, 0, 2])
    logq = rand(6, seed=9)
    exclude = torch.zeros(4, 6, dtype=torch.bool)
    exclude[1, 2] = True
    nexclude = torch.zeros(3, 6, dtype=torch.bool)
    nexclude[0, 5] = True
    loss = NegativeFeedbackLoss(0.5, sim, weight=0.8, mask_duplicates=True)
    _check(lambda u, i, e, nu, ni: loss(u, i, item_ids=ids, extra_reps=e, extra_ids=T([2, 3]), logq=logq,
                                        exclude=exclude, neg_user_reps=nu, neg_item_reps=ni,
                                        neg_item_ids=T([1, 4, 2]), neg_logq=rand(3, seed=10), neg_exclude=nexclude),
           rand(4, 3, seed=1), rand(4, 3, seed=2), rand(2, 3, seed=3), rand(3, 3, seed=4), rand(3, 3, seed=5))


# ----------------------------------------------------------------------------- arguments
def test_ntr_arguments():
    u, i, nu = rand(2, 3, seed=1), rand(2, 3, seed=2), rand(1, 3, seed=3)
    with pytest.raises(ValueError, match="weight must be non-negative"):
        NegativeFeedbackLoss(weight=-1.0)
    with pytest.raises(ValueError, match="tau must be positive"):
        NegativeFeedbackLoss(tau=0)
    with pytest.raises(ValueError, match="similarity"):
        NegativeFeedbackLoss(similarity="dot")
    with pytest.raises(ValueError, match="both neg_user_reps and neg_item_reps"):
        NegativeFeedbackLoss()(u, i, neg_user_reps=nu)
    with pytest.raises(ValueError, match="same shape"):
        NegativeFeedbackLoss()(u, i, neg_user_reps=nu, neg_item_reps=rand(2, 3, seed=4))
    with pytest.raises(ValueError, match="neg_logq"):
        NegativeFeedbackLoss()(u, i, logq=torch.zeros(2), neg_user_reps=nu, neg_item_reps=nu)
    with pytest.raises(ValueError, match="neg_item_ids"):
        NegativeFeedbackLoss(mask_duplicates=True)(u, i, item_ids=T([0, 1]), neg_user_reps=nu, neg_item_reps=nu)
    # extras of the in-batch interface are accepted and ignored
    assert torch.isfinite(NegativeFeedbackLoss()(u, i, user_ids=T([0, 1]), unknown=1))
