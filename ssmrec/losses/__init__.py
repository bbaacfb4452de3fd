"""Losses: tensors in, a scalar out. This package imports torch alone.

Each loss declares what it consumes through :attr:`KINDS`:

* ``in_batch``: user and positive-item representations of the batch (SSM);
* ``full``: the batch's users against every item (softmax);
* ``sampled``: users, positives and per-positive negatives (BPR, BCE, CCL).

The losses that came after the study (:data:`BEYOND`: BSL, PSL, Adap-τ, SL@K, corrected logQ,
NTR) are in-batch losses like SSM; their own hyper-parameters are ``loss_params``
(``--loss-param tau2=0.5``), the shared ones (``tau``, ``similarity``, ``mask_duplicates``) settings.
A loss may keep per-user state: it then has ``on_epoch_start(epoch, scorer)``, which the trainer
calls before every epoch (see :class:`ssmrec.train.scorer.ModelScorer`), and buffers that the
checkpoints hold.

:data:`SEARCH_SPACES` (:mod:`ssmrec.losses.search`) holds each built-in loss's key parameters and
the values to tune them over, so that a comparison tunes every loss on its own parameters.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ssmrec.losses.adaptau import AdaptiveTemperatureLoss
from ssmrec.losses.bsl import BilateralSoftmaxLoss
from ssmrec.losses.logq import CorrectedLogQLoss
from ssmrec.losses.ntr import NegativeFeedbackLoss
from ssmrec.losses.pairwise import BCELoss, BPRLoss, CCLLoss
from ssmrec.losses.psl import PairwiseSoftmaxLoss
from ssmrec.losses.regularization import l2_regularization
from ssmrec.losses.search import SEARCH_SPACES
from ssmrec.losses.similarity import SIMILARITIES, score_matrix, scores
from ssmrec.losses.slk import SoftmaxAtKLoss
from ssmrec.losses.ssm import SampledSoftmaxLoss, SoftmaxLoss

LOSSES: dict[str, type[nn.Module]] = {
    "ssm": SampledSoftmaxLoss,
    "softmax": SoftmaxLoss,
    "bpr": BPRLoss,
    "bce": BCELoss,
    "ccl": CCLLoss,
}
ALIASES = {"sm": "softmax", "sampled_softmax": "ssm", "infonce": "ssm", "adap-tau": "adaptau", "adap_tau": "adaptau",
           "sl@k": "slk", "slatk": "slk", "corrected-logq": "clogq", "corrected_logq": "clogq"}
KINDS = {"ssm": "in_batch", "softmax": "full", "bpr": "sampled", "bce": "sampled", "ccl": "sampled"}
DEFAULT_NEGATIVES = {"bpr": 1, "bce": 4, "ccl": 800}
KIND_NAMES = ("in_batch", "sampled", "full")
ENTRY_POINT_GROUP = "ssmrec.losses"


@dataclass(frozen=True)
class LossSpec:
    """A loss added with :func:`register_loss`: its class, what it consumes, its parameters."""

    name: str
    cls: type[nn.Module]
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    negatives: int | None = None
    similarity: str = "ip"


BEYOND: dict[str, LossSpec] = {spec.name: spec for spec in [
    LossSpec("bsl", BilateralSoftmaxLoss, "in_batch", {"tau2": 1.1, "pool_positives": False, "form": "authors"},
             similarity="cos"),
    LossSpec("psl", PairwiseSoftmaxLoss, "in_batch", {"activation": "tanh"}, similarity="cos"),
    LossSpec("adaptau", AdaptiveTemperatureLoss, "in_batch",
             {"beta": 1.0, "center": "mean", "warmup": 100, "adapt_tau0": True, "warmup_gap": None,
              "authors_loss": False}, similarity="cos"),
    LossSpec("slk", SoftmaxAtKLoss, "in_batch",
             {"k": 20, "tau_w": 1.0, "refresh_every": 20, "n_samples": 1000}, similarity="cos"),
    LossSpec("clogq", CorrectedLogQLoss, "in_batch", {"weight": True}, similarity="cos"),
    LossSpec("ntr", NegativeFeedbackLoss, "in_batch", {"weight": 1.0}, similarity="cos"),
]}
"""The losses that came after the study, built in; their hyper-parameters are ``loss_params``."""
LOSSES.update({name: spec.cls for name, spec in BEYOND.items()})
KINDS.update({name: spec.kind for name, spec in BEYOND.items()})

REGISTERED: dict[str, LossSpec] = {}
"""Losses registered by users or plugins (the built-in ones are in :data:`LOSSES`)."""


def register_loss(name: str, *, kind: str, params: dict[str, Any] | None = None, negatives: int | None = None,
                  similarity: str = "ip"):
    """Class decorator adding a loss to ssmrec: the command line (``--loss NAME --loss-param
    k=v``), TOML files, grids and the Python API then take it like a built-in.

    What the objective passes to ``forward`` depends on ``kind``:

    * ``"sampled"``: ``(users [B, d], positives [B, d], negatives [B, n, d])`` with ``n`` per-positive
      uniform unseen negatives (``negatives``, default 1; ``--negatives`` overrides);
    * ``"in_batch"``: ``(users [B, d], positives [B, d], **extras)``, the batch's positives as
      candidates (extras: ``item_ids``, ``extra_reps``, ``extra_ids``, ``logq``, ``exclude``,
      ``target``: accept ``**kwargs`` if you ignore them; ``user_ids`` too when ``forward`` takes
      it by name or through ``**kwargs``);
    * ``"full"``: ``(users [B, d], all_items [N, d], positive_ids [B])``.

    The class is built as ``cls(similarity=..., **params)`` when its ``__init__`` takes a
    ``similarity`` argument, else ``cls(**params)``; ``params`` are the defaults of its
    hyper-parameters, overridden per run by ``loss_params``. Returns the class unchanged.

        @register_loss("hinge", kind="sampled", params={"margin": 1.0})
        class Hinge(torch.nn.Module):
            def __init__(self, margin=1.0):
                super().__init__(); self.margin = margin
            def forward(self, u, pos, neg):
                return (self.margin - (u * pos).sum(-1, keepdim=True) + (u[:, None] * neg).sum(-1)).clamp(min=0).mean()

    Plugins: a module named by ``--plugin MODULE`` (or ``plugins = [...]`` in TOML) is imported
    before the settings are checked, and installed packages may declare an entry point in the
    ``ssmrec.losses`` group, loaded the first time an unknown loss name is met.
    """
    if kind not in KIND_NAMES:
        raise ValueError(f"kind must be one of {', '.join(KIND_NAMES)}, got {kind!r}")
    key = name.lower()
    if key in LOSSES or key in ALIASES:
        raise ValueError(f"{name!r} is a built-in loss; register yours under another name")
    if similarity not in ("ip", "cos"):
        raise ValueError(f"similarity must be 'ip' or 'cos', got {similarity!r}")

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        REGISTERED[key] = LossSpec(key, cls, kind, dict(params or {}), negatives, similarity)
        return cls

    return add


def unregister_loss(name: str) -> None:
    REGISTERED.pop(name.lower(), None)


_entry_points_loaded = False


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()  # the module registers its losses on import


def canonical(name: str) -> str:
    key = ALIASES.get(name.lower(), name.lower())
    if key in LOSSES or key in REGISTERED:
        return key
    _load_entry_points()
    if key in REGISTERED:
        return key
    choices = [*LOSSES, *REGISTERED]
    raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(choices)} "
                     "(or register one: ssmrec.losses.register_loss)")


def spec_of(name: str) -> LossSpec | None:
    """The spec of a loss that takes ``loss_params`` (a :data:`BEYOND` or registered loss), else None."""
    key = canonical(name)
    return BEYOND.get(key) or REGISTERED.get(key)


def kind_of(name: str) -> str:
    key = canonical(name)
    return KINDS[key] if key in KINDS else REGISTERED[key].kind


def default_negatives(name: str) -> int:
    key = canonical(name)
    if key in REGISTERED:
        return REGISTERED[key].negatives or 1
    return DEFAULT_NEGATIVES.get(key, 0)


def default_similarity(name: str) -> str:
    key = canonical(name)
    if key in REGISTERED:
        return REGISTERED[key].similarity
    if key in BEYOND:
        return BEYOND[key].similarity
    return {"ssm": "cos", "softmax": "cos", "ccl": "cos"}.get(key, "ip")


def check_params(name: str, params: dict[str, Any]) -> None:
    """Refuse parameters the loss does not take (built-in losses take theirs as settings)."""
    key = canonical(name)
    spec = spec_of(key)
    if spec is None:
        if params:
            raise ValueError(f"loss_params are for losses with their own parameters; {key} takes its settings as "
                             f"flags (got {', '.join(params)})")
        return
    unknown = set(params) - set(spec.params)
    if unknown:
        known = ", ".join(spec.params) or "none"
        raise ValueError(f"loss {key!r} has no parameter {', '.join(sorted(unknown))} (its parameters: {known})")


def build_loss(name: str, *, tau: float = 0.1, similarity: str | None = None,
               margin: float = 0.9, weight: float = 150.0, mask_duplicates: bool = False,
               params: dict[str, Any] | None = None, seed: int = 0) -> nn.Module:
    """Make a loss by name with the settings it uses (the others are ignored)."""
    key = canonical(name)
    if key in BEYOND:
        spec = BEYOND[key]
        check_params(key, params or {})
        taken = inspect.signature(spec.cls.__init__).parameters
        shared = {"tau": tau, "similarity": similarity or spec.similarity, "mask_duplicates": mask_duplicates,
                  "seed": seed}
        kwargs = {k: v for k, v in shared.items() if k in taken}
        return spec.cls(**kwargs, **{**spec.params, **(params or {})})
    if key in REGISTERED:
        spec = REGISTERED[key]
        check_params(key, params or {})
        kwargs = {**spec.params, **(params or {})}
        if "similarity" in inspect.signature(spec.cls.__init__).parameters:
            kwargs["similarity"] = similarity or spec.similarity
        return spec.cls(**kwargs)
    if key == "ssm":
        return SampledSoftmaxLoss(tau, similarity or "cos", mask_duplicates)
    if key == "softmax":
        return SoftmaxLoss(tau, similarity or "cos")
    if key == "ccl":
        return CCLLoss(margin, weight)
    return LOSSES[key](similarity or "ip")


__all__ = [
    "BEYOND", "AdaptiveTemperatureLoss", "BilateralSoftmaxLoss", "CorrectedLogQLoss", "NegativeFeedbackLoss",
    "PairwiseSoftmaxLoss", "SoftmaxAtKLoss", "spec_of",
    "ALIASES", "DEFAULT_NEGATIVES", "KINDS", "LOSSES", "REGISTERED", "SEARCH_SPACES", "SIMILARITIES", "BCELoss",
    "BPRLoss",
    "CCLLoss", "LossSpec", "SampledSoftmaxLoss", "SoftmaxLoss", "build_loss", "canonical", "check_params",
    "default_negatives", "default_similarity", "kind_of", "l2_regularization", "register_loss", "score_matrix",
    "scores", "unregister_loss",
]
