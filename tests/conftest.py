"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    # one compute thread per test worker: -n 2 on 2 cores, no oversubscription (torch in
    # particular slows down many times over when workers x threads exceed the cores)
    os.environ.setdefault("RECOFORGE_NUM_THREADS", "1")


def shared_datasets_dir() -> Path:
    """``$RECOFORGE_DATASETS`` when set, else ``<repo>/../shared/datasets``."""
    env = os.environ.get("RECOFORGE_DATASETS")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The folder of real public datasets (MovieLens); skips the test when it is absent."""
    path = shared_datasets_dir()
    if not path.is_dir():
        pytest.skip(f"shared datasets folder {path} is absent")
    return path


@pytest.fixture(scope="session")
def ml100k(shared_datasets):
    """MovieLens 100K through the project's loader, loaded once per session."""
    from recoforge.data.movielens import load_movielens

    return load_movielens("100k", shared_datasets / "ml-100k")


@pytest.fixture(scope="session")
def ml100k_split(ml100k):
    """The per-user random 80/20 split (seed 0) the MovieLens tests share."""
    from recoforge.data.split import holdout_per_user

    return holdout_per_user(ml100k, test_fraction=0.2, seed=0)


@pytest.fixture(scope="session")
def ml100k_ndcg(ml100k_split):
    """``ndcg(name, **params)``: NDCG@10 of a model fitted on :func:`ml100k_split`."""
    import recoforge as rf
    from recoforge.evaluation import evaluate

    def ndcg(name: str, **params) -> float:
        model = rf.create(name, **params).fit(ml100k_split.train)
        return float(evaluate(model, ml100k_split, k=[10], metrics=["ndcg"])
                     .summary["ndcg@10"])

    return ndcg
