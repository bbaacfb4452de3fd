"""Evaluation: chunked full ranking with masking, metric accumulators; ranking within candidate sets."""

from ssmrec.eval.candidates import CandidateEvaluator, retrieved_candidates, sampled_candidates
from ssmrec.eval.evaluator import Evaluator
from ssmrec.eval.metrics import METRICS, MetricAccumulator, metric_values
from ssmrec.eval.ranking import SeenItems, hit_matrix, iter_topk

__all__ = ["METRICS", "CandidateEvaluator", "Evaluator", "MetricAccumulator", "SeenItems", "hit_matrix", "iter_topk",
           "metric_values", "retrieved_candidates", "sampled_candidates"]
