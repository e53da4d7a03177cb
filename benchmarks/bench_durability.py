"""Durability of acknowledged feedback: ``kill -9`` of the server mid-stream loses nothing.

A client process streams ``--events`` feedback events (``POST /feedback``, batches of
``--batch`` events, each batch with its own ``Idempotency-Key``) from ``--clients``
concurrent connections to ``recoforge serve``. When ``--kill-after`` events have been
acknowledged (2xx), the server's whole process group gets SIGKILL while requests are in
flight. The server is restarted on the same database; the client retries every batch that
was not acknowledged (same key, so a batch that was committed but not answered is not
inserted twice) until all are. Then the database is opened directly and counted:

- ``lost``: acknowledged events missing from the database (the target is 0);
- ``duplicates``: events stored more than once (0 thanks to the idempotency keys);
- ``stored``: distinct events stored (all of them once every batch is acknowledged).

Usage::

    python benchmarks/bench_durability.py --db /tmp/rf-durability.db --events 10000 \\
        --batch 1 --clients 4

``--db postgres`` runs on a fresh schema of ``$RECOFORGE_TEST_POSTGRES_URL`` (created, and
dropped afterwards). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

PYTHON = sys.executable


def server_command(db: str, port: int, workers: int) -> list[str]:
    return [PYTHON, "-m", "recoforge", "serve", "--db", db, "--port", str(port),
            "--workers", str(workers), "--log-level", "warning"]


def start(db: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    """``recoforge serve`` in its own process group, once it answers ``/health/live``."""
    proc = subprocess.Popen(server_command(db, port, workers), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "RECOFORGE_NUM_THREADS": "1"})
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("server did not start within 180 s")


def batches(n_events: int, size: int, run: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """(idempotency key, events) pairs; event ``i`` is item ``dur-<i>`` of one of 97 users."""
    out = []
    for start_at in range(0, n_events, size):
        events = [{"user": f"dur-user-{i % 97}", "item": f"dur-{i}", "type": "click",
                   "weight": 1.0, "time": 1.7e9 + i} for i in range(start_at,
                                                          min(n_events, start_at + size))]
        out.append((f"{run}-{start_at}", events))
    return out


class Stream:
    """Clients posting batches from a shared queue; records which batches were answered 2xx."""

    def __init__(self, url: str, key: str, todo: list[tuple[str, list[dict[str, Any]]]]
                 ) -> None:
        self.url, self.key = url, key
        self.todo = list(reversed(todo))
        self.lock = threading.Lock()
        self.acknowledged: dict[str, int] = {}
        self.failed: list[tuple[str, list[dict[str, Any]]]] = []
        self.acked_events = 0
        self.statuses: dict[str, int] = {}

    def _take(self) -> tuple[str, list[dict[str, Any]]] | None:
        with self.lock:
            return self.todo.pop() if self.todo else None

    def client(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30.0,
                          headers={"X-API-Key": self.key}) as http:
            while (job := self._take()) is not None:
                key, events = job
                try:
                    status = http.post("/feedback", json=events,
                                       headers={"Idempotency-Key": key}).status_code
                except httpx.HTTPError as error:
                    status_name = type(error).__name__
                else:
                    status_name = str(status)
                with self.lock:
                    self.statuses[status_name] = self.statuses.get(status_name, 0) + 1
                    if status_name.startswith("2"):
                        self.acknowledged[key] = len(events)
                        self.acked_events += len(events)
                    else:
                        self.failed.append(job)

    def run(self, clients: int) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.client, daemon=True) for _ in range(clients)]
        for thread in threads:
            thread.start()
        return threads


def count(db: str, todo: list[tuple[str, list[dict[str, Any]]]],
          acknowledged: set[str]) -> dict[str, int]:
    """Lost acknowledged events, duplicates and distinct stored events, read from the
    database itself."""
    from recoforge.serving.store import Store

    with Store.open(db, create=False) as store:
        frame = store.events_frame()
    items = frame.loc[frame["item"].astype(str).str.startswith("dur-"), "item"].astype(str)
    stored = set(items)
    wanted = [event["item"] for key, events in todo if key in acknowledged for event in events]
    return {"acknowledged_events": len(wanted),
            "lost": sum(item not in stored for item in wanted),
            "stored": len(stored), "duplicates": int(len(items) - len(stored))}


def fresh_postgres_schema() -> tuple[str, str]:
    """(url, schema): a new schema of ``$RECOFORGE_TEST_POSTGRES_URL`` used through the
    connections' ``search_path``."""
    from urllib.parse import quote

    import sqlalchemy as sa

    base = os.environ.get("RECOFORGE_TEST_POSTGRES_URL")
    if not base:
        raise SystemExit("--db postgres needs $RECOFORGE_TEST_POSTGRES_URL "
                         "(eval \"$(bash .ci/services.sh)\")")
    schema = f"rf_bench_durability_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    admin.dispose()
    return f"{base}{'&' if '?' in base else '?'}options={quote(f'-csearch_path={schema}')}", \
        schema


def drop_postgres_schema(schema: str) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(os.environ["RECOFORGE_TEST_POSTGRES_URL"],
                             poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True,
                        help="a new SQLite file, or 'postgres' (a fresh schema)")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1, help="events per POST")
    parser.add_argument("--clients", type=int, default=4, help="concurrent connections")
    parser.add_argument("--kill-after", type=int, default=None,
                        help="acknowledged events before SIGKILL (default: half)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    kill_after = args.events // 2 if args.kill_after is None else args.kill_after
    if not 0 < kill_after < args.events:
        raise SystemExit("--kill-after must be between 0 and --events")
    schema = None
    if args.db == "postgres":
        args.db, schema = fresh_postgres_schema()
    elif Path(args.db).exists():
        raise SystemExit(f"{args.db} exists; give a fresh database file")
    try:
        result = stream_kill_restart(args, kill_after)
    finally:
        if schema is not None:
            drop_postgres_schema(schema)
    print(json.dumps({"command": " ".join(["python", *sys.argv]), **result}))


def stream_kill_restart(args: argparse.Namespace, kill_after: int) -> dict[str, Any]:
    """Stream, kill -9 mid-stream, restart, retry the unacknowledged; count."""
    key = subprocess.run([PYTHON, "-m", "recoforge", "api-key", "create", "--name",
                          f"durability-{uuid.uuid4().hex[:6]}", "--scope", "write",
                          "--db", args.db], check=True, capture_output=True,
                         text=True).stdout.strip().splitlines()[-1]
    url = f"http://127.0.0.1:{args.port}"
    todo = batches(args.events, args.batch, uuid.uuid4().hex[:8])
    server = start(args.db, args.port, args.workers)
    began = time.monotonic()
    stream = Stream(url, key, todo)
    threads = stream.run(args.clients)
    while stream.acked_events < kill_after and any(t.is_alive() for t in threads):
        time.sleep(0.001)
    os.killpg(server.pid, signal.SIGKILL)  # the whole group: supervisor and workers
    server.wait()
    killed_at = stream.acked_events
    for thread in threads:  # the clients drain the queue against a dead port: failures
        thread.join()
    acknowledged_before_kill = set(stream.acknowledged)
    before = count(args.db, todo, acknowledged_before_kill)  # the database as the kill left it
    server = start(args.db, args.port, args.workers)
    retried = 0
    try:
        for _ in range(20):  # retry what was not acknowledged, same keys, until all are
            if not stream.failed:
                break
            retry = Stream(url, key, stream.failed)
            retried += len(stream.failed)
            for thread in retry.run(args.clients):
                thread.join()
            stream.acknowledged.update(retry.acknowledged)
            stream.failed = retry.failed
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    after = count(args.db, todo, set(stream.acknowledged))
    return {
        "db": args.db.split("://")[0] if "://" in args.db else "sqlite",
        "events": args.events, "batch": args.batch, "clients": args.clients,
        "killed_after_acknowledged_events": killed_at, "statuses_before_restart":
        stream.statuses, "after_kill": before, "batches_retried": retried,
        "unacknowledged_at_end": len(stream.failed), "after_restart_and_retries": after,
        "seconds": round(time.monotonic() - began, 1)}


if __name__ == "__main__":
    main()
