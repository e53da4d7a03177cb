"""Baselines: popularity (counts, Bayesian-average ratings, time decay) and the bias model."""
