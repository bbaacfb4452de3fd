"""Data: interactions, readers, splits, the dataset registry and training batches.

Names are imported on first use (PEP 562), so that importing one light submodule (settings,
errors) does not load pandas or torch.
"""

from __future__ import annotations

from ssmrec._lazy import lazy_exports

_WHERE = {
    "PROTOCOLS": "config", "DataConfig": "config",
    "Dataset": "dataset", "load_dataset": "dataset",
    "DataError": "interactions", "Interactions": "interactions",
    "check_disjoint": "encoding", "encode": "encoding",
    "PairTable": "readers", "read_any": "readers", "read_lightgcn": "readers", "read_pairs": "readers",
    "read_recbole": "readers",
    "REGISTRY": "registry", "DatasetSpec": "registry", "get_spec": "registry", "locate": "registry",
    "DeviceSampler": "device_sampling",
    "Batch": "sampling", "PairSampler": "sampling", "PopularityNegatives": "sampling",
    "log_expected_counts": "sampling", "sample_unseen": "sampling",
    "carve_validation": "splits", "kcore": "splits", "ratio_split": "splits",
    "synthetic": "synthetic", "write_lightgcn": "synthetic",
}
__all__ = sorted(_WHERE)


__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
