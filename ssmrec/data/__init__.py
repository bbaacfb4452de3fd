"""Data: interactions, readers, splits, the dataset registry and training batches."""

from ssmrec.data.dataset import PROTOCOLS, DataConfig, Dataset, load_dataset
from ssmrec.data.interactions import DataError, Interactions
from ssmrec.data.readers import (
    PairTable,
    check_disjoint,
    encode,
    read_any,
    read_lightgcn,
    read_pairs,
    read_recbole,
)
from ssmrec.data.registry import REGISTRY, DatasetSpec, get_spec, locate
from ssmrec.data.sampling import Batch, PairSampler, PopularityNegatives, log_expected_counts, sample_unseen
from ssmrec.data.splits import carve_validation, kcore, ratio_split
from ssmrec.data.synthetic import synthetic, write_lightgcn

__all__ = [
    "PROTOCOLS", "REGISTRY", "Batch", "DataConfig", "DataError", "Dataset", "DatasetSpec",
    "Interactions", "PairSampler", "PairTable", "PopularityNegatives", "carve_validation",
    "check_disjoint", "encode", "get_spec", "kcore", "load_dataset", "locate",
    "log_expected_counts", "ratio_split", "read_any", "read_lightgcn", "read_pairs",
    "read_recbole", "sample_unseen", "synthetic", "write_lightgcn",
]
