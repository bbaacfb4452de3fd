"""Losses: tensors in, a scalar out. This package imports torch alone.

Each loss declares what it consumes through :attr:`KINDS`:

* ``in_batch``: user and positive-item representations of the batch (SSM);
* ``full``: the batch's users against every item (softmax);
* ``sampled``: users, positives and per-positive negatives (BPR, BCE, CCL).
"""

from __future__ import annotations

from torch import nn

from ssmrec.losses.pairwise import BCELoss, BPRLoss, CCLLoss
from ssmrec.losses.regularization import l2_regularization
from ssmrec.losses.similarity import SIMILARITIES, score_matrix, scores
from ssmrec.losses.ssm import SampledSoftmaxLoss, SoftmaxLoss

LOSSES: dict[str, type[nn.Module]] = {
    "ssm": SampledSoftmaxLoss,
    "softmax": SoftmaxLoss,
    "bpr": BPRLoss,
    "bce": BCELoss,
    "ccl": CCLLoss,
}
ALIASES = {"sm": "softmax", "sampled_softmax": "ssm", "infonce": "ssm"}
KINDS = {"ssm": "in_batch", "softmax": "full", "bpr": "sampled", "bce": "sampled", "ccl": "sampled"}
DEFAULT_NEGATIVES = {"bpr": 1, "bce": 4, "ccl": 800}


def canonical(name: str) -> str:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return key


def build_loss(name: str, *, tau: float = 0.1, similarity: str | None = None,
               margin: float = 0.9, weight: float = 150.0, mask_duplicates: bool = False) -> nn.Module:
    """Make a loss by name with the settings it uses (the others are ignored)."""
    key = canonical(name)
    if key == "ssm":
        return SampledSoftmaxLoss(tau, similarity or "cos", mask_duplicates)
    if key == "softmax":
        return SoftmaxLoss(tau, similarity or "cos")
    if key == "ccl":
        return CCLLoss(margin, weight)
    return LOSSES[key](similarity or "ip")


__all__ = ["ALIASES", "DEFAULT_NEGATIVES", "KINDS", "LOSSES", "SIMILARITIES", "BCELoss", "BPRLoss",
           "CCLLoss", "SampledSoftmaxLoss", "SoftmaxLoss", "build_loss", "canonical",
           "l2_regularization", "score_matrix", "scores"]
