"""Schemathesis against the app's OpenAPI schema: no 5xx, no response violating the schema.

Every operation of the schema is fuzzed with valid (positive) and invalid (negative)
requests carrying an admin key, so write and admin endpoints run as well as the 4xx
paths, over a SQLite store with a fitted model registered. (The operations are driven
from one test with Hypothesis directly: schemathesis' lazy pytest fixture loader does not
run under pytest 9.)
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
)

from tests.serving.app_helpers import make_shop  # noqa: E402

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.fixture(scope="module")
def fuzz_shop(tmp_path_factory):
    made = make_shop(tmp_path_factory.mktemp("fuzz"))
    yield made
    made.store.close()


def fuzz(shop, max_examples: int, derandomize: bool) -> int:
    """Fuzz every operation in both modes; the number of operations fuzzed."""
    from recoforge.serving.app import create_app

    app = create_app(shop.store, models_dir=shop.models_dir)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    headers = shop.headers("admin")
    done = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @settings(max_examples=max_examples, deadline=None, database=None,
                      derandomize=derandomize, suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case) -> None:
                case.call_and_validate(headers=headers, checks=CHECKS)

            try:
                check()
            except Unsatisfiable:  # nothing to make invalid (an operation without inputs)
                continue
            except Exception as exc:
                raise AssertionError(f"{operation.label} ({mode.value}): {exc}") from exc
        done += 1
    app.state.impressions.close()
    return done


def test_no_server_error_or_schema_violation(fuzz_shop):
    assert fuzz(fuzz_shop, max_examples=6, derandomize=True) >= 25


@pytest.mark.slow
def test_no_server_error_or_schema_violation_at_length(fuzz_shop):
    assert fuzz(fuzz_shop, max_examples=100, derandomize=False) >= 25
