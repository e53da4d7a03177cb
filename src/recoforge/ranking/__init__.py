"""Ranking: top-k selection, (later) ANN retrieval, re-ranking and pipelines."""

from recoforge.ranking.topk import topk

__all__ = ["topk"]
