"""Fixtures of the conformance suite: the taste data and every spec's fitted model."""

from __future__ import annotations

import pytest

import recoforge as rf
from tests.conformance.specs import SPECS, ModelSpec, taste_data


@pytest.fixture(scope="module")
def data():
    return taste_data(seed=0)


@pytest.fixture(scope="module", params=SPECS, ids=[s.id for s in SPECS])
def fitted(request, data):
    spec: ModelSpec = request.param
    train, _ = data
    return spec, rf.create(spec.name, **spec.params).fit(train)
