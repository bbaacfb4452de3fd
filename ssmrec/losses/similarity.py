"""Scoring functions shared by the losses: cosine with temperature, or inner product."""

from __future__ import annotations

import torch
import torch.nn.functional as F

SIMILARITIES = ("cos", "ip")


def check_similarity(similarity: str) -> str:
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
    return similarity


def prepare(x: torch.Tensor, similarity: str) -> torch.Tensor:
    """Unit-normalise rows for ``cos``; leave them for ``ip``."""
    return F.normalize(x, dim=-1) if similarity == "cos" else x


def scores(u: torch.Tensor, i: torch.Tensor, similarity: str, tau: float = 1.0) -> torch.Tensor:
    """Matching rows: ``u`` is ``(B, d)``, ``i`` is ``(B, d)`` or ``(B, n, d)``; ``(B)`` or ``(B, n)`` out."""
    u, i = prepare(u, similarity), prepare(i, similarity)
    if tau != 1.0:
        u = u / tau  # scale the (B, d) side: cheaper than the scores, same result
    return (u * i).sum(-1) if i.dim() == 2 else torch.einsum("bd,bnd->bn", u, i)


def score_matrix(u: torch.Tensor, c: torch.Tensor, similarity: str, tau: float = 1.0) -> torch.Tensor:
    """Every user against every candidate: ``(B, d) x (C, d) -> (B, C)``."""
    u = prepare(u, similarity)
    if tau != 1.0:
        u = u / tau  # scale the (B, d) side rather than the (B, C) scores
    return u @ prepare(c, similarity).T
