"""Summaries over seeds and paired significance tests."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def summary(values: list[float]) -> dict:
    """Mean, sample standard deviation and a 95% t-interval of the mean."""
    x = np.asarray(values, np.float64)
    n = int(x.size)
    if n == 0:
        return {"n": 0, "mean": float("nan"), "std": float("nan"), "ci95": [float("nan")] * 2}
    mean = float(x.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "std": float("nan"), "ci95": [float("nan"), float("nan")]}
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))
    return {"n": n, "mean": mean, "std": std, "ci95": [mean - half, mean + half]}


def paired_over_seeds(a: dict[int, float], b: dict[int, float]) -> dict | None:
    """Paired t-test over the seeds both arms ran (needs at least 2 common seeds)."""
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        return None
    x, y = np.array([a[s] for s in common]), np.array([b[s] for s in common])
    if np.allclose(x - y, (x - y)[0]):
        p = 0.0 if (x - y)[0] != 0 else 1.0
    else:
        p = float(stats.ttest_rel(x, y).pvalue)
    return {"test": "paired t-test over seeds", "seeds": common, "p": p}


def paired_over_users(a: np.ndarray, b: np.ndarray) -> dict | None:
    """Wilcoxon signed-rank test on per-user values of two runs over the same test users."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.size < 10 or np.all(a == b):
        return None
    res = stats.wilcoxon(a, b, zero_method="wilcox")
    return {"test": "Wilcoxon signed-rank over users", "users": int(a.size), "p": float(res.pvalue)}


def relative_improvement_interval(a: np.ndarray, b: np.ndarray, *, resamples: int = 2000, seed: int = 0,
                                  level: float = 0.95) -> tuple[float, float]:
    """Paired bootstrap interval of ``mean(a) / mean(b) - 1`` over users (the same users, in the
    same order, in ``a`` and ``b``): users are resampled with replacement ``resamples`` times."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("the two runs must give values for the same users")
    rng = np.random.default_rng(seed)
    ri = np.empty(resamples)
    step = max(1, 2**24 // a.size)  # resamples at a time: memory stays about 128 MB whatever the users
    for lo in range(0, resamples, step):
        idx = rng.integers(0, a.size, size=(min(step, resamples - lo), a.size))
        ri[lo:lo + len(idx)] = a[idx].mean(1) / b[idx].mean(1) - 1
    lo, hi = np.quantile(ri, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)

