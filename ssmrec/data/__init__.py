"""Data: interactions, readers, splits, the dataset registry and training batches.

Names are imported on first use (PEP 562), so that importing one light submodule (settings,
errors) does not load pandas or torch.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "PROTOCOLS": "config", "DataConfig": "config",
    "Dataset": "dataset", "load_dataset": "dataset",
    "DataError": "interactions", "Interactions": "interactions",
    "PairTable": "readers", "check_disjoint": "readers", "encode": "readers", "read_any": "readers",
    "read_lightgcn": "readers", "read_pairs": "readers", "read_recbole": "readers",
    "REGISTRY": "registry", "DatasetSpec": "registry", "get_spec": "registry", "locate": "registry",
    "Batch": "sampling", "PairSampler": "sampling", "PopularityNegatives": "sampling",
    "log_expected_counts": "sampling", "sample_unseen": "sampling",
    "carve_validation": "splits", "kcore": "splits", "ratio_split": "splits",
    "synthetic": "synthetic", "write_lightgcn": "synthetic",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
