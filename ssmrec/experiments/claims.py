"""The study's four claims, measured on a trained model.

1. Popularity bias (eq. 11): how a model's scores and recommendations grow with item popularity.
2. Hard negatives (eq. 12-14): each in-batch negative's share of the gradient on the user,
   measured with autograd, against the predicted ``sqrt(1 - c^2) exp(c / tau)``.
3. DCG bound (eq. 15-17): ``-log DCG`` against the SSM loss over the full item set, per user.
4. Magnitude (eq. 29-30): representation norm against node degree.

Every function returns plain JSON-able numbers (binned curves, fitted slopes, shares) so that a
record can carry them and a report can plot them without the model.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ssmrec.data.interactions import Interactions
from ssmrec.data.sampling import PairSampler
from ssmrec.eval.ranking import SeenItems, iter_topk


def _fit(x: np.ndarray, y: np.ndarray) -> dict:
    """Least-squares slope and Pearson / Spearman correlations of y on x."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 3 or x.std() == 0 or y.std() == 0:
        return {"slope": float("nan"), "intercept": float("nan"), "pearson": float("nan"), "spearman": float("nan")}
    slope, intercept = np.polyfit(x, y, 1)
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return {"slope": float(slope), "intercept": float(intercept), "pearson": float(np.corrcoef(x, y)[0, 1]),
            "spearman": float(np.corrcoef(rx, ry)[0, 1])}


def _binned(x: np.ndarray, y: np.ndarray, bins: int = 20) -> dict:
    """Mean of y in equal-width bins of x (empty bins dropped)."""
    edges = np.linspace(np.nanmin(x), np.nanmax(x), bins + 1)
    idx = np.clip(np.digitize(x, edges) - 1, 0, bins - 1)
    centers, means, counts = [], [], []
    for b in range(bins):
        m = idx == b
        if m.any():
            centers.append(float((edges[b] + edges[b + 1]) / 2))
            means.append(float(np.mean(y[m])))
            counts.append(int(m.sum()))
    return {"x": centers, "y": means, "n": counts}


def _norm(x: torch.Tensor, similarity: str) -> torch.Tensor:
    return F.normalize(x, dim=-1) if similarity == "cos" else x


@torch.no_grad()
def popularity_bias(user_reps: torch.Tensor, item_reps: torch.Tensor, train: Interactions,
                    test: Interactions, exclude: list[Interactions], *, similarity: str = "ip",
                    n_users: int = 2000, k: int = 20, seed: int = 0) -> dict:
    """Mean score of each item over a user sample, and how often it is recommended, against
    ``log(1 + training degree)``; the fitted slopes say how strongly a model favours popular items."""
    rng = np.random.default_rng(seed)
    users = rng.choice(train.n_users, size=min(n_users, train.n_users), replace=False)
    u = _norm(user_reps[torch.from_numpy(users).to(user_reps.device)], similarity)
    mean_score = (u @ _norm(item_reps, similarity).T).mean(0).cpu().numpy()
    freq = torch.zeros(train.n_items, dtype=torch.float64, device=item_reps.device)
    seen = SeenItems(exclude, item_reps.device) if exclude else None
    targets = torch.from_numpy(test.active_users).to(item_reps.device)
    for _, top, _ in iter_topk(user_reps, item_reps, targets, k, seen=seen, similarity=similarity):
        freq.index_add_(0, top.reshape(-1), torch.ones(top.numel(), dtype=torch.float64, device=freq.device))
    freq = (freq / max(targets.numel(), 1)).cpu().numpy()
    logpop = np.log1p(train.item_degree.astype(np.float64))
    return {
        "similarity": similarity,
        "score_vs_logpop": _fit(logpop, mean_score),
        "recfreq_vs_logpop": _fit(logpop, freq),
        "score_curve": _binned(logpop, mean_score),
        "recfreq_curve": _binned(logpop, freq),
    }


def hard_negatives(user_reps_fn, train: Interactions, *, tau: float, batch_size: int = 2048, batches: int = 3,
                   seed: int = 0) -> dict:
    """Per-negative gradient weight on the user representation under SSM, on trained representations.

    For a batch, the gradient of one row's SSM loss with respect to ``z_u`` is a sum of one term per
    candidate (eq. 12-13); the terms are computed and checked to add up to the autograd gradient
    (an error is raised otherwise). Each negative's share of the row's gradient mass is compared with
    ``sqrt(1 - c^2) exp(c / tau)`` normalised over the row (eq. 14), and the share of the gradient
    carried by the hardest 10% of negatives (highest cosine) says how much SSM mines hard negatives.

    ``user_reps_fn(users, items)`` returns the batch's final representations (a model's
    ``batch_reps``); the model's parameters are not changed.
    """
    sampler = PairSampler(train, batch_size, seed=seed)
    cos_all, weight_all, theory_all = [], [], []
    for batch in list(sampler.epoch(10_000))[:batches]:
        with torch.no_grad():
            zu, zi = user_reps_fn(batch.users, batch.items)
        rows = min(64, zu.shape[0])  # exact per-negative isolation costs one backward per negative
        zu, zi = zu[:rows].double(), zi.double()
        su, si = F.normalize(zu, dim=-1), F.normalize(zi, dim=-1)
        cos = (su @ si.T).detach()
        for r in range(rows):
            z = zu[r : r + 1].clone().requires_grad_(True)
            logits = (F.normalize(z, dim=-1) @ si.T / tau).squeeze(0)
            loss = -torch.log_softmax(logits, 0)[r]
            (g_full,) = torch.autograd.grad(loss, z)
            # gradient through one logit j: d loss / d logit_j * d logit_j / d z  (chain rule, exact)
            p = torch.softmax(logits.detach(), 0)
            s = F.normalize(z.detach(), dim=-1).squeeze(0)
            proj = si - (si @ s).unsqueeze(1) * s  # s_j - (s_u . s_j) s_u, one row per candidate
            terms = (p.unsqueeze(1) * proj) / (tau * z.detach().norm())
            neg = torch.ones(si.shape[0], dtype=torch.bool)
            neg[r] = False
            pos_term = (p[r] - 1) * proj[r] / (tau * z.detach().norm())
            assembled = pos_term + terms[neg].sum(0)
            if not torch.allclose(assembled, g_full.squeeze(0), rtol=1e-6, atol=1e-9):
                raise AssertionError("per-candidate decomposition does not add up to the autograd gradient")
            w = terms[neg].norm(dim=1).numpy()
            c = cos[r][neg].numpy()
            theory = np.sqrt(np.clip(1 - c**2, 0, None)) * np.exp(c / tau)
            cos_all.append(c)
            weight_all.append(w / w.sum())
            theory_all.append(theory / theory.sum())
    c = np.concatenate(cos_all)
    w = np.concatenate(weight_all)
    t = np.concatenate(theory_all)
    order = np.argsort(-c)
    top = order[: max(1, c.size // 10)]
    return {
        "tau": tau,
        "negatives": int(c.size),
        "weight_vs_theory": _fit(t, w),
        "max_abs_error": float(np.max(np.abs(w - t))),
        "curve": _binned(c, w),
        "theory_curve": _binned(c, t),
        "share_of_gradient_from_hardest_10pct": float(w[top].sum() / w.sum()),
        "cosine_quantiles": [float(q) for q in np.quantile(c, [0.1, 0.5, 0.9, 0.99])],
    }


@torch.no_grad()
def dcg_bound(user_reps: torch.Tensor, item_reps: torch.Tensor, test: Interactions, *, similarity: str,
              tau: float, n_users: int = 3000, seed: int = 0, chunk: int = 512) -> dict:
    """Per user, ``-log DCG`` (ranking over all items, relevance = held-out items) against the mean
    full-item-set softmax loss of the user's held-out items; eq. 17 says the first never exceeds the
    second. Also checked per positive: ``log log2(1 + rank) <= -log softmax``."""
    rng = np.random.default_rng(seed)
    users = test.active_users
    if users.size > n_users:
        users = np.sort(rng.choice(users, n_users, replace=False))
    items = _norm(item_reps, similarity)
    neg_log_dcg, loss_mean = [], []
    per_positive_ok = per_positive_n = 0
    for s in range(0, users.size, chunk):
        chunk_users = users[s : s + chunk]
        scores = (_norm(user_reps[torch.from_numpy(chunk_users).to(items.device)], similarity) @ items.T) / tau
        scores = scores.double()
        lse = torch.logsumexp(scores, 1)
        for r, u in enumerate(chunk_users):
            rel = torch.from_numpy(test.row(u)).to(items.device)
            f = scores[r, rel]
            rank = 1 + (scores[r].unsqueeze(0) > f.unsqueeze(1)).sum(1).double()  # 1-based, ties favourable
            dcg = (1.0 / torch.log2(1 + rank)).sum()
            losses = lse[r] - f
            neg_log_dcg.append(float(-torch.log(dcg)))
            loss_mean.append(float(losses.mean()))
            per_positive_ok += int((torch.log(torch.log2(1 + rank)) <= losses + 1e-9).sum())
            per_positive_n += int(rel.numel())
    a, b = np.array(neg_log_dcg), np.array(loss_mean)
    return {
        "users": int(a.size),
        "similarity": similarity,
        "tau": tau,
        "share_users_bound_holds": float(np.mean(a <= b + 1e-9)),
        "share_positives_bound_holds": per_positive_ok / max(per_positive_n, 1),
        "mean_neg_log_dcg": float(a.mean()),
        "mean_full_softmax_loss": float(b.mean()),
        "correlation": _fit(a, b)["pearson"],
        "sample": {"neg_log_dcg": a[:400].round(5).tolist(), "loss": b[:400].round(5).tolist()},
    }


@torch.no_grad()
def magnitude(user_reps: torch.Tensor, item_reps: torch.Tensor, train: Interactions) -> dict:
    """Representation norm against degree (log-log), for items and users."""
    out = {}
    for side, reps, deg in (("item", item_reps, train.item_degree), ("user", user_reps, train.user_degree)):
        norm = reps.norm(dim=1).cpu().double().numpy()
        ok = deg > 0
        x, y = np.log(deg[ok].astype(np.float64)), np.log(norm[ok] + 1e-12)
        out[side] = {"loglog": _fit(x, y), "curve": _binned(x, np.exp(y)), "mean_norm": float(norm[ok].mean())}
    return out


def analyse(model, data, cfg, *, users: int = 2000, seed: int = 0, progress: bool = False) -> dict:
    """All four claims for a trained model (``model`` holds its best parameters)."""
    from tqdm.auto import tqdm

    model.eval()
    with torch.no_grad():
        u, i = model()
    exclude = data.exclusions("test")
    train_sim = cfg.similarity or ("cos" if cfg.loss in ("ssm", "softmax", "ccl") else "ip")
    tau = cfg.tau if cfg.loss in ("ssm", "softmax") else (1.0 if train_sim == "ip" else 0.1)
    steps = {
        "popularity_bias": lambda: popularity_bias(u, i, data.train, data.test, exclude,
                                                   similarity=cfg.scoring, n_users=users, seed=seed),
        "hard_negatives": lambda: hard_negatives(model.batch_reps, data.train,
                                                 tau=cfg.tau if cfg.loss == "ssm" else 0.1, seed=seed),
        "dcg_bound": lambda: dcg_bound(u, i, data.test, similarity=train_sim, tau=tau, n_users=users, seed=seed),
        "magnitude": lambda: magnitude(u, i, data.train),
    }
    out = {}
    for name, step in tqdm(steps.items(), desc="claims", unit="claim", disable=not progress, leave=False):
        out[name] = step()
    return out

