"""The serving database: tables, ordered migrations and the engine a :class:`Store` uses.

One schema for SQLite (embedded, the default) and PostgreSQL, written with SQLAlchemy 2
Core. Every time is a float of epoch seconds (UTC), every id a string.

Migrations are an ordered list of functions; ``MIGRATIONS[i]`` brings a database from
version ``i`` to ``i + 1``. :func:`migrate` applies the missing ones in one transaction
(serialised between processes: ``BEGIN IMMEDIATE`` on SQLite, an advisory lock on
PostgreSQL) and records the version in ``schema_version``. A database whose version is
newer than :data:`SCHEMA_VERSION` is refused, naming both versions. To change the schema,
append a migration (never edit a released one) and keep the table definitions below in
step with the result.

SQLite connections run in WAL mode with ``synchronous=FULL`` (a commit is on disk before
it returns), a busy timeout, and ``BEGIN IMMEDIATE`` for write transactions so that
concurrent writers queue instead of failing on a lock upgrade.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recoforge.errors import ConfigError, require

require("sqlalchemy", "serve")

import sqlalchemy as sa  # noqa: E402 - after the check naming the extra
from sqlalchemy.engine import Connection, Engine  # noqa: E402

metadata = sa.MetaData()
#: 64-bit row ids on PostgreSQL; SQLite's INTEGER PRIMARY KEY is 64-bit already (and is
#: the only type it auto-increments)
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("attributes", sa.JSON, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
)
items = sa.Table(
    "items", metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("attributes", sa.JSON, nullable=False),
    sa.Column("categories", sa.JSON, nullable=False),
    sa.Column("hidden", sa.Boolean, nullable=False, default=False),
    sa.Column("time", sa.Float, nullable=True),
)
events = sa.Table(
    "events", metadata,
    sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("user", sa.Text, nullable=False),
    sa.Column("item", sa.Text, nullable=False),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("weight", sa.Float, nullable=False),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("idempotency_key", sa.Text, nullable=True),
    sa.Index("ix_events_user_time", "user", "time"),
    sa.Index("ix_events_item", "item"),
)
idempotency = sa.Table(
    "idempotency", metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("n_events", sa.Integer, nullable=False),
    sa.Column("time", sa.Float, nullable=False),
)
model_versions = sa.Table(
    "model_versions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, default=False),
    sa.Column("note", sa.Text, nullable=False, default=""),
)
experiments = sa.Table(
    "experiments", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("variants", sa.JSON, nullable=False),
    sa.Column("started", sa.Float, nullable=False),
    sa.Column("stopped", sa.Float, nullable=True),
)
impressions = sa.Table(
    "impressions", metadata,
    sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.Text, nullable=False),
    sa.Column("user", sa.Text, nullable=False),
    sa.Column("item", sa.Text, nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("experiment", sa.Integer, nullable=True),
    sa.Column("variant", sa.Text, nullable=True),
    sa.Column("time", sa.Float, nullable=False),
    sa.Index("ix_impressions_experiment_variant", "experiment", "variant"),
    sa.Index("ix_impressions_user_item", "user", "item"),
)
lists = sa.Table(
    "lists", metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("user", sa.Text, primary_key=True),
    sa.Column("items", sa.JSON, nullable=False),
    sa.Column("scores", sa.JSON, nullable=False),
    sa.Column("computed", sa.Float, nullable=False),
)
api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("salt", sa.Text, nullable=False),
    sa.Column("hash", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("revoked", sa.Float, nullable=True),
)
schema_version = sa.Table(
    "schema_version", metadata,
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("applied", sa.Float, nullable=False),
)

#: the tables of version 1, in creation order
_V1_TABLES = (users, items, events, idempotency, model_versions, experiments, impressions,
              lists, api_keys)


def _create_v1(conn: Connection) -> None:
    """Version 1: every table and index."""
    metadata.create_all(conn, tables=list(_V1_TABLES))


#: MIGRATIONS[i] brings a database from version i to version i + 1
MIGRATIONS: tuple[Callable[[Connection], None], ...] = (_create_v1,)
#: the schema version this code reads and writes
SCHEMA_VERSION = len(MIGRATIONS)
#: PostgreSQL advisory lock key serialising migrations between processes
_MIGRATION_LOCK = 7_313_001


def database_url(url: str) -> str:
    """A SQLAlchemy URL: a bare path (no ``scheme://``) becomes ``sqlite:///<path>``."""
    text = str(url).strip()
    if not text:
        raise ConfigError("--db: empty database URL or path")
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().absolute()}"


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    """Pragmas of every SQLite connection; transactions are begun by :func:`_sqlite_begin`."""
    dbapi_connection.isolation_level = None  # the driver opens no transaction itself
    cursor = dbapi_connection.cursor()
    for pragma in ("busy_timeout=30000", "journal_mode=WAL", "synchronous=FULL",
                   "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    """``BEGIN IMMEDIATE`` for write transactions (execution option ``write``), else
    ``BEGIN``: writers take the lock up front and queue on the busy timeout."""
    options = conn.get_execution_options()
    if options.get("single_statement", False):
        return  # one read statement in SQLite's autocommit mode (see Store._read_statement)
    immediate = options.get("write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_engine(url: str, *, create: bool = True) -> Engine:
    """The engine of a database URL (see the module docstring for SQLite's settings);
    without ``create`` a missing SQLite file is an error (rather than an empty database)."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"--db {url!r}: not a database URL or path ({exc})") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            raise ConfigError(f"--db {url!r}: the serving store needs a SQLite file "
                              f"(an in-memory database is not shared between connections)")
        if not create and not Path(database).is_file():
            raise ConfigError(f"--db {url}: no such database file (create it with "
                              f"`recoforge load --db ...`)")
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, poolclass=sa.pool.QueuePool, pool_size=8,
                                  max_overflow=56, connect_args={"check_same_thread": False,
                                                                 "timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_connect)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend == "postgresql":
        if parsed.get_driver_name() == "psycopg":
            require("psycopg", "postgres")
        return sa.create_engine(parsed, pool_pre_ping=True, pool_size=8, max_overflow=24)
    raise ConfigError(f"--db {url!r}: unsupported database {backend!r} (use a SQLite path "
                      f"or a postgresql+psycopg:// URL)")


def current_version(conn: Connection) -> int:
    """The schema version recorded in the database (0: an empty database)."""
    if not sa.inspect(conn).has_table("schema_version"):
        return 0
    version = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
    return int(version or 0)


def check_version(version: int, url: str) -> None:
    """Refuse a database written by a newer recoforge."""
    if version > SCHEMA_VERSION:
        raise ConfigError(f"database {url} has schema version {version}, newer than "
                          f"version {SCHEMA_VERSION} that this recoforge supports; "
                          f"upgrade recoforge")


def migrate(engine: Engine, url: str, *, create: bool = True) -> int:
    """Bring the database to :data:`SCHEMA_VERSION` (one transaction); its version."""
    with engine.connect().execution_options(write=True) as conn, conn.begin():
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                         {"key": _MIGRATION_LOCK})
        version = current_version(conn)
        check_version(version, url)
        if version == SCHEMA_VERSION:
            return version
        if version == 0 and not create:
            raise ConfigError(f"database {url} has no recoforge schema (run `recoforge "
                              f"load --db ...` first, or open it with create=True)")
        if version == 0:
            metadata.create_all(conn, tables=[schema_version])
        for step in range(version, SCHEMA_VERSION):
            MIGRATIONS[step](conn)
            conn.execute(schema_version.insert().values(version=step + 1,
                                                        applied=time.time()))
    return SCHEMA_VERSION
