"""The parts of :class:`~recoforge.serving.store.Store` beyond users, items and events:
model versions, A/B experiments, impressions, precomputed lists and API keys, plus the
connection helpers every method shares.

API keys are stored hashed: a key is ``rf_<id>_<secret>``; the table keeps the public
``id``, a random salt and ``sha256(salt + key)``; the plaintext is returned once by
:meth:`StoreAdmin.create_api_key` and never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from recoforge.errors import ConfigError, DataError, UnknownIdError
from recoforge.serving import schema as db

#: rows bound per statement in bulk writes and ``IN (...)`` lookups
CHUNK = 500
#: the scopes of an API key, weakest first (a key grants its scope and those before it)
SCOPES = ("read", "write", "admin")


def chunks(values: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    """Consecutive slices of at most ``size`` values."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _hash_key(salt: str, key: str) -> str:
    return hashlib.sha256((salt + key).encode("utf-8")).hexdigest()


class StoreAdmin:
    """Connection helpers and the service's bookkeeping tables (see the module docstring)."""

    engine: Engine
    dialect: str

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction, committed on exit (``BEGIN IMMEDIATE`` on SQLite)."""
        with self.engine.connect().execution_options(write=True) as conn, conn.begin():
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A read transaction."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def _relaxed_write(self) -> Iterator[Connection]:
        """A write transaction whose commit SQLite does not fsync (``synchronous=NORMAL``
        in WAL mode: consistent after a crash, durable at the next checkpoint or the next
        fully synced commit), for records never acknowledged to a client (impressions)."""
        with self.engine.connect().execution_options(write=True) as conn:
            raw = conn.connection.dbapi_connection if self.dialect == "sqlite" else None
            if raw is not None:
                raw.execute("PRAGMA synchronous=NORMAL")
            try:
                with conn.begin():
                    yield conn
            finally:
                if raw is not None:
                    raw.execute("PRAGMA synchronous=FULL")

    @contextmanager
    def _read_statement(self) -> Iterator[Connection]:
        """A connection for ONE read statement, without BEGIN/COMMIT around it: a single
        statement sees a consistent snapshot on its own (SQLite and PostgreSQL), and the
        hot read of serving (a user's history) costs a third less without them."""
        with self.engine.connect().execution_options(single_statement=True) as conn:
            yield conn

    def _insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT (with ``on_conflict_*``) for ``table``."""
        if self.dialect == "sqlite":
            return sqlite.insert(table)
        return postgresql.insert(table)

    def _upsert(self, conn: Connection, table: sa.Table, rows: list[dict[str, Any]],
                update: Sequence[str]) -> None:
        """Insert ``rows``, replacing the ``update`` columns of existing primary keys
        (``update`` empty: existing rows are left as they are)."""
        keys = [column.name for column in table.primary_key.columns]
        for chunk in chunks(rows):
            statement = self._insert(table).values(list(chunk))
            if update:
                statement = statement.on_conflict_do_update(
                    index_elements=keys,
                    set_={name: statement.excluded[name] for name in update})
            else:
                statement = statement.on_conflict_do_nothing(index_elements=keys)
            conn.execute(statement)

    # ------------------------------------------------------------------ model versions
    def add_model_version(self, name: str, path: str, metrics: Mapping[str, Any],
                          note: str = "") -> int:
        """Record a model version (inactive); its id."""
        with self._write() as conn:
            return int(conn.execute(db.model_versions.insert().values(
                name=str(name), path=str(path), metrics=dict(metrics), created=time.time(),
                active=False, note=str(note)).returning(db.model_versions.c.id)).scalar_one())

    def model_versions(self) -> list[dict[str, Any]]:
        """Every model version, oldest first."""
        with self._read() as conn:
            return [dict(row._mapping) for row in conn.execute(
                sa.select(db.model_versions).order_by(db.model_versions.c.id))]

    def model_version(self, version: int) -> dict[str, Any] | None:
        """One model version's row, or None."""
        with self._read() as conn:
            row = conn.execute(sa.select(db.model_versions)
                               .where(db.model_versions.c.id == int(version))).first()
        return None if row is None else dict(row._mapping)

    def active_version(self) -> dict[str, Any] | None:
        """The active model version's row, or None."""
        with self._read() as conn:
            row = conn.execute(sa.select(db.model_versions)
                               .where(db.model_versions.c.active.is_(True))).first()
        return None if row is None else dict(row._mapping)

    def activate_version(self, version: int) -> None:
        """Make ``version`` the only active model version (one transaction)."""
        table = db.model_versions
        with self._write() as conn:
            known = conn.execute(sa.select(table.c.id).where(table.c.id == int(version)))
            if known.first() is None:
                raise UnknownIdError(f"model version {version} does not exist")
            conn.execute(table.update().where(table.c.active.is_(True)).values(active=False))
            conn.execute(table.update().where(table.c.id == int(version)).values(active=True))

    # ------------------------------------------------------------------ experiments
    def create_experiment(self, name: str, variants: Mapping[str, Mapping[str, Any]]) -> int:
        """Start an A/B experiment: ``{"A": {"version": 1, "share": 0.5}, ...}``.

        Shares must be positive and sum to 1, every version must exist, and no other
        experiment may be running (stop it first). Returns its id.
        """
        clean = self._check_variants(variants)
        with self._write() as conn:
            running = conn.execute(sa.select(db.experiments.c.name)
                                   .where(db.experiments.c.stopped.is_(None))).first()
            if running is not None:
                raise ConfigError(f"experiment {running[0]!r} is running; stop it first")
            versions = set(conn.execute(sa.select(db.model_versions.c.id)).scalars())
            for label, variant in clean.items():
                if variant["version"] not in versions:
                    raise UnknownIdError(f"variants.{label}.version: model version "
                                         f"{variant['version']} does not exist")
            return int(conn.execute(db.experiments.insert().values(
                name=str(name), variants=clean, started=time.time(), stopped=None)
                .returning(db.experiments.c.id)).scalar_one())

    @staticmethod
    def _check_variants(variants: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        if len(variants) < 1:
            raise ConfigError("variants: an experiment needs at least one variant")
        clean: dict[str, Any] = {}
        for label, variant in variants.items():
            version, share = variant.get("version"), variant.get("share")
            if not isinstance(label, str) or not label:
                raise ConfigError(f"variants: label {label!r} must be a non-empty string")
            if isinstance(version, bool) or not isinstance(version, int):
                raise ConfigError(f"variants.{label}.version: expected a model version id")
            if isinstance(share, bool) or not isinstance(share, (int, float)) \
                    or not math.isfinite(share) or share <= 0:
                raise ConfigError(f"variants.{label}.share: expected a number > 0")
            clean[label] = {"version": version, "share": float(share)}
        total = sum(variant["share"] for variant in clean.values())
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(f"variants: shares sum to {total:g}, not 1")
        return clean

    def active_experiment(self) -> dict[str, Any] | None:
        """The running experiment's row (id, name, variants, started, stopped), or None."""
        with self._read() as conn:
            row = conn.execute(sa.select(db.experiments)
                               .where(db.experiments.c.stopped.is_(None))
                               .order_by(db.experiments.c.id.desc())).first()
        return None if row is None else dict(row._mapping)

    def experiments(self) -> list[dict[str, Any]]:
        """Every experiment, oldest first."""
        with self._read() as conn:
            return [dict(row._mapping) for row in conn.execute(
                sa.select(db.experiments).order_by(db.experiments.c.id))]

    def stop_experiment(self, experiment: int) -> None:
        """Stop an experiment (stopping a stopped one changes nothing)."""
        table = db.experiments
        with self._write() as conn:
            if conn.execute(sa.select(table.c.id).where(table.c.id == int(experiment))
                            ).first() is None:
                raise UnknownIdError(f"experiment {experiment} does not exist")
            conn.execute(table.update().where(table.c.id == int(experiment),
                                              table.c.stopped.is_(None))
                         .values(stopped=time.time()))

    # ------------------------------------------------------------------ impressions
    def log_impressions(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Record served items: ``request_id, user, item, position, version, experiment,
        variant, time`` (time None or missing: now); their number."""
        now = time.time()
        columns = ("request_id", "user", "item", "position", "version", "experiment",
                   "variant")
        records = []
        for index, row in enumerate(rows):
            record = {name: row.get(name) for name in columns}
            for name in ("request_id", "user", "item"):
                if not isinstance(record[name], str) or not record[name]:
                    raise DataError(f"impressions[{index}].{name}: expected a non-empty "
                                    f"string, got {record[name]!r}")
            stamp = row.get("time")
            record["time"] = now if stamp is None else float(stamp)
            records.append(record)
        with self._relaxed_write() as conn:
            for chunk in chunks(records):
                conn.execute(db.impressions.insert(), list(chunk))
        return len(records)

    def experiment_outcomes(self, experiment: int, click_types: Sequence[str] = ("click",),
                            conversion_types: Sequence[str] = ("purchase",), *,
                            window: float | None = None) -> pd.DataFrame:
        """One row per impression of ``experiment``: variant, day (UTC date), user, item,
        time, clicked, converted.

        ``clicked`` (``converted``): the user has an event of ``click_types``
        (``conversion_types``) on that item at or after the impression (and within
        ``window`` seconds of it when given).
        """
        i, e = db.impressions.c, db.events.c

        def followed_by(types: Sequence[str]) -> Any:
            condition = [e.user == i.user, e.item == i.item, e.time >= i.time,
                         e.type.in_(list(types))]
            if window is not None:
                condition.append(e.time <= i.time + float(window))
            return sa.exists(sa.select(1).select_from(db.events).where(*condition))

        query = (sa.select(i.variant, i.user, i.item, i.time,
                           followed_by(click_types).label("clicked"),
                           followed_by(conversion_types).label("converted"))
                 .where(i.experiment == int(experiment)).order_by(i.time, i.id))
        with self._read() as conn:
            rows = conn.execute(query).all()
        frame = pd.DataFrame(rows, columns=["variant", "user", "item", "time", "clicked",
                                            "converted"])
        frame = frame.astype({"time": float, "clicked": bool, "converted": bool})
        frame.insert(1, "day", pd.to_datetime(frame["time"], unit="s", utc=True).dt.date)
        return frame

    # ------------------------------------------------------------------ precomputed lists
    def put_lists(self, version: int, lists: Mapping[str, tuple[Sequence[str],
                                                                 Sequence[float]]],
                  computed: float) -> int:
        """Store (replace) precomputed top-N lists of model ``version``; their number."""
        records = [{"version": int(version), "user": user, "items": list(items),
                    "scores": [float(score) for score in scores], "computed": float(computed)}
                   for user, (items, scores) in lists.items()]
        with self._write() as conn:
            self._upsert(conn, db.lists, records, ["items", "scores", "computed"])
        return len(records)

    def get_list(self, version: int, user: str) -> tuple[list[str], list[float], float] | None:
        """A precomputed list (items, scores, when computed), or None."""
        with self._read_statement() as conn:
            row = conn.execute(sa.select(db.lists.c["items"], db.lists.c.scores,
                                         db.lists.c.computed)
                               .where(db.lists.c.version == int(version),
                                      db.lists.c.user == user)).first()
        return None if row is None else (list(row[0]), list(row[1]), float(row[2]))

    def delete_lists(self, version: int | None = None) -> int:
        """Drop the precomputed lists of ``version`` (None: of every version)."""
        with self._write() as conn:
            statement = db.lists.delete()
            if version is not None:
                statement = statement.where(db.lists.c.version == int(version))
            return int(conn.execute(statement).rowcount)

    # ------------------------------------------------------------------ API keys
    def create_api_key(self, name: str, scope: str) -> str:
        """A new API key ``name`` with ``scope`` (read, write or admin): the plaintext,
        returned only here (the store keeps a salted hash)."""
        if scope not in SCOPES:
            raise ConfigError(f"scope {scope!r}: expected one of {', '.join(SCOPES)}")
        if not isinstance(name, str) or not name:
            raise ConfigError("API key name: expected a non-empty string")
        key_id = secrets.token_hex(6)
        key = f"rf_{key_id}_{secrets.token_urlsafe(32)}"
        salt = secrets.token_hex(16)
        with self._write() as conn:
            taken = conn.execute(sa.select(db.api_keys.c.id)
                                 .where(db.api_keys.c.name == name,
                                        db.api_keys.c.revoked.is_(None))).first()
            if taken is not None:
                raise ConfigError(f"an API key named {name!r} exists; pick another name")
            conn.execute(db.api_keys.insert().values(
                id=key_id, name=name, scope=scope, salt=salt, hash=_hash_key(salt, key),
                created=time.time(), revoked=None))
        return key

    def verify_api_key(self, key: str) -> str | None:
        """The scope of a valid, unrevoked key; None for anything else."""
        if not isinstance(key, str) or key.count("_") < 2 or not key.startswith("rf_"):
            return None
        key_id = key.split("_", 2)[1]
        with self._read() as conn:
            row = conn.execute(sa.select(db.api_keys.c.salt, db.api_keys.c.hash,
                                         db.api_keys.c.scope)
                               .where(db.api_keys.c.id == key_id,
                                      db.api_keys.c.revoked.is_(None))).first()
        if row is None or not hmac.compare_digest(_hash_key(row[0], key), row[1]):
            return None
        return str(row[2])

    def revoke_api_key(self, name: str) -> bool:
        """Revoke the key ``name``; whether an unrevoked key had that name."""
        with self._write() as conn:
            return bool(conn.execute(db.api_keys.update()
                                     .where(db.api_keys.c.name == name,
                                            db.api_keys.c.revoked.is_(None))
                                     .values(revoked=time.time())).rowcount)

    def api_keys(self) -> list[dict[str, Any]]:
        """Every key's name, scope, created and revoked (no secrets)."""
        k = db.api_keys.c
        with self._read() as conn:
            return [dict(row._mapping) for row in conn.execute(
                sa.select(k.name, k.scope, k.created, k.revoked).order_by(k.created))]

    def has_api_keys(self) -> bool:
        """Whether any unrevoked key exists."""
        with self._read() as conn:
            return conn.execute(sa.select(db.api_keys.c.id)
                                .where(db.api_keys.c.revoked.is_(None)).limit(1)
                                ).first() is not None
