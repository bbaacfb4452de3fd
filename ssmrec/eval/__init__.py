"""Evaluation: chunked full ranking with masking, metric accumulators."""

from ssmrec.eval.evaluator import Evaluator
from ssmrec.eval.metrics import METRICS, MetricAccumulator, metric_values
from ssmrec.eval.ranking import SeenItems, hit_matrix, iter_topk

__all__ = ["METRICS", "Evaluator", "MetricAccumulator", "SeenItems", "hit_matrix", "iter_topk",
           "metric_values"]
