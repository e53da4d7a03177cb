"""Fixtures of the serving tests: a SQLite file per test, a PostgreSQL schema per test.

``postgres_url`` needs ``$RECOFORGE_TEST_POSTGRES_URL`` (``.ci/services.sh`` prints it);
without it the PostgreSQL variants skip, saying so. Each test gets a fresh schema of that
database (selected through the connection's ``search_path``), dropped afterwards; nothing
else in the database is touched.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest

POSTGRES_ENV = "RECOFORGE_TEST_POSTGRES_URL"


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A SQLite database file of its own (``sqlite:///...``), not created yet."""
    return f"sqlite:///{tmp_path / 'serving.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose connections use a fresh, empty schema (dropped afterwards)."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"PostgreSQL tests need ${POSTGRES_ENV} (eval \"$(bash .ci/services.sh)\")")
    import sqlalchemy as sa

    schema = f"rf_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, poolclass=sa.pool.NullPool)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL at ${POSTGRES_ENV} is not reachable: {exc.orig}")
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request) -> str:
    """The URL of an empty database: a SQLite file, then a PostgreSQL schema."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def store(store_url):
    """A :class:`~recoforge.serving.store.Store` on :func:`store_url`, closed afterwards."""
    from recoforge.serving.store import Store

    opened = Store.open(store_url)
    try:
        yield opened
    finally:
        opened.close()
