"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


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
