"""Latent-factor models: PureSVD, SGD MF, SVD++, timeSVD++, ALS, BPR/WARP, EASE, BPMF."""
