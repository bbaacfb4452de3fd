"""Shared by the loss tests: seeded float64 tensors, float64 gradcheck, and the in-batch case that
every in-batch loss is checked on against its naive loop."""

from __future__ import annotations

from typing import NamedTuple

import torch

T = torch.tensor


def rand(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def gradcheck(fn, *inputs):
    inputs = [x.clone().requires_grad_(True) for x in inputs]
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5)


class InBatchCase(NamedTuple):
    u: torch.Tensor
    i: torch.Tensor
    ids: torch.Tensor
    extra: torch.Tensor | None
    extra_ids: torch.Tensor | None
    c: int
    logq: torch.Tensor
    exclude: torch.Tensor


def in_batch_case(with_extra: bool) -> InBatchCase:
    """6 rows (item 3 and item 1 twice among the positives), optionally 4 shared extra negatives
    (items 1 and 3 again among them), positive log-counts and a random exclude mask."""
    b, k, d = 6, 4, 5
    u, i = rand(b, d, seed=1), rand(b, d, seed=2)
    ids = T([3, 1, 3, 0, 2, 1])
    extra = rand(k, d, seed=3) if with_extra else None
    extra_ids = T([1, 5, 6, 3]) if with_extra else None
    c = b + (k if with_extra else 0)
    return InBatchCase(u, i, ids, extra, extra_ids, c, rand(c, seed=4).abs(), rand(b, c, seed=5) > 0.8)
