"""Evaluation: metrics, protocols (full ranking, sampled negatives), comparison, statistics."""

from recoforge.evaluation.evaluate import Comparison, EvaluationResult, compare, evaluate
from recoforge.evaluation.stats import PairedTestResult, paired_test

__all__ = ["Comparison", "EvaluationResult", "PairedTestResult", "compare", "evaluate",
           "paired_test"]
