"""Serving throughput and latency of ``GET /recommend/{user}`` on MovieLens 1M, end to end.

Everything runs as separate processes, as in production: ``recoforge load`` fills the
database, ``recoforge fit`` writes the models, ``recoforge serve`` answers on loopback, and
the load comes from other processes: ``wrk`` (closed loop, throughput; script
``benchmarks/load/recommend.lua``) and ``benchmarks/load/open_loop.py`` (fixed request
rate, latency percentiles from each request's scheduled start). Each configuration is
measured ``--repeats`` times (a fresh server each time) and every figure is kept: the
machine may be shared, so the load average before and after each run is recorded too.

Configurations (``--configs``):

- ``sqlite-ials``: ``implicit_als`` (64 factors, exact scoring), SQLite store;
- ``postgres-ials``: the same model, PostgreSQL store (a fresh schema of
  ``$RECOFORGE_TEST_POSTGRES_URL``, created, loaded, and dropped afterwards);
- ``sqlite-ease``: ``ease`` (scored from each user's history), SQLite store.

Usage::

    python benchmarks/bench_serving.py --work /tmp/rf-serving \\
        --data ../shared/datasets/ml-1m --workers 2 --repeats 2 \\
        --json benchmarks/results/serving.json

Needs ``wrk`` on the PATH (Debian: ``apt-get install wrk``) and the ``serve`` extra
(``postgres`` too for PostgreSQL). Prints one JSON line per measurement and a Markdown
table at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LOAD = HERE / "load"
PYTHON = sys.executable
MODELS = {"ials": ("implicit_als", ["n_factors=64", "seed=0"]), "ease": ("ease", [])}
CONFIGS = {"sqlite-ials": ("sqlite", "ials"), "postgres-ials": ("postgres", "ials"),
           "sqlite-ease": ("sqlite", "ease")}


def recoforge(*args: str) -> list[str]:
    """The command line of the project's CLI in this interpreter."""
    return [PYTHON, "-m", "recoforge", *args]


def redact(cmd: list[str]) -> str:
    """A command line for the record, database passwords masked."""
    return re.sub(r"(://[^:/@\s]+):[^@\s]+@", r"\1:***@", " ".join(cmd))


def run(cmd: list[str], log: list[str], **kwargs: Any) -> str:
    """Run a command to completion (its line recorded in ``log``), returning stdout."""
    log.append(redact(cmd))
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return done.stdout


def env() -> dict[str, str]:
    return {**os.environ, "RECOFORGE_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


# ---------------------------------------------------------------------- preparation
def prepare_sqlite(work: Path, data: str, log: list[str]) -> str:
    path = work / "ml1m.db"
    if not path.is_file():
        run(recoforge("load", "--db", str(path), "--data", data), log, env=env())
    return str(path)


def prepare_postgres(data: str, log: list[str]) -> tuple[str, str]:
    """A fresh schema of ``$RECOFORGE_TEST_POSTGRES_URL`` loaded with ``data``: (url, schema)."""
    from urllib.parse import quote

    import sqlalchemy as sa

    base = os.environ.get("RECOFORGE_TEST_POSTGRES_URL")
    if not base:
        raise SystemExit("postgres-ials needs $RECOFORGE_TEST_POSTGRES_URL "
                         "(eval \"$(bash .ci/services.sh)\")")
    schema = f"rf_bench_serving_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    admin.dispose()
    url = f"{base}{'&' if '?' in base else '?'}options={quote(f'-csearch_path={schema}')}"
    run(recoforge("load", "--db", url, "--data", data), log, env=env())
    return url, schema


def drop_postgres_schema(schema: str) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(os.environ["RECOFORGE_TEST_POSTGRES_URL"],
                             poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    admin.dispose()


def prepare_model(work: Path, data: str, key: str, log: list[str]) -> Path:
    out = work / f"model-{key}"
    if not (out / "manifest.json").is_file():
        name, params = MODELS[key]
        cmd = recoforge("fit", "--data", data, "--model", name, "--out", str(out))
        for param in params:
            cmd += ["--param", param]
        run(cmd, log, env=env())
    return out


# ---------------------------------------------------------------------- the server
class Server:
    """``recoforge serve`` in its own process group (stopped with the whole group)."""

    def __init__(self, db: str, model: Path, port: int, workers: int, log: list[str]) -> None:
        self.cmd = recoforge("serve", "--db", db, "--model", str(model), "--port", str(port),
                             "--workers", str(workers), "--log-level", "warning")
        self.url = f"http://127.0.0.1:{port}"
        log.append(redact(self.cmd))
        self.proc = subprocess.Popen(self.cmd, env=env(), start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise SystemExit(f"server exited ({self.proc.returncode}):\n{err[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise SystemExit(f"server not ready after {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def warm_up(url: str, users: list[str], n: int = 300) -> None:
    """First-call costs (model pages, connection pool, JIT) out of the measurement."""
    for user in users[:n]:
        with urllib.request.urlopen(f"{url}/recommend/{user}?n=10", timeout=30) as answer:
            answer.read()


# ---------------------------------------------------------------------- load generators
RESULT = re.compile(r"RESULT (.*)")


def wrk(url: str, users_file: Path, connections: int, seconds: int, log: list[str]
        ) -> dict[str, Any]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s",
           str(LOAD / "recommend.lua"), url, "--", str(users_file), "10"]
    out = run(cmd, log)
    found = RESULT.search(out)
    if found is None:
        raise SystemExit(f"no RESULT line from wrk:\n{out}")
    fields = dict(part.split("=") for part in found.group(1).split())
    return {"tool": "wrk", "connections": connections, "seconds": seconds,
            **{k: float(v) for k, v in fields.items()}}


def open_loop(url: str, users_file: Path, rate: float, seconds: int, log: list[str]
              ) -> dict[str, Any]:
    cmd = [PYTHON, str(LOAD / "open_loop.py"), "--url", url, "--users", str(users_file),
           "--rate", str(rate), "--duration", str(seconds)]
    out = run(cmd, log)
    return {"tool": "open_loop", **json.loads(out.strip().splitlines()[-1])}


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of the live processes of a process group (Linux /proc;
    0 elsewhere): the server's own cost, whatever else the machine is running."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # after the name: state, ppid, pgrp, ..., utime, stime
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def timed(server: Server, fn: Any, *args: Any) -> dict[str, Any]:
    """Run a load generator, adding the server's and the generator's CPU ms per request
    and the load average before and after."""
    before, cpu = load_average(), group_cpu_seconds(server.proc.pid)
    children = os.times()
    row = fn(*args)
    after = os.times()
    served = row.get("requests", row.get("ok", 0)) or 1
    server_cpu = group_cpu_seconds(server.proc.pid) - cpu
    client_cpu = (after.children_user + after.children_system
                  - children.children_user - children.children_system)
    return {**row, "server_cpu_ms_per_request": round(1000 * server_cpu / served, 2),
            "client_cpu_ms_per_request": round(1000 * client_cpu / served, 2),
            "load_before": before, "load_after": load_average()}


# ---------------------------------------------------------------------- one configuration
def measure(name: str, db: str, model: Path, args: argparse.Namespace, users_file: Path,
            users: list[str], log: list[str], repeat: int) -> list[dict[str, Any]]:
    server = Server(db, model, args.port, args.workers, log)
    rows = []
    try:
        server.wait_ready()
        warm_up(server.url, users)
        base = {"config": name, "repeat": repeat, "workers": args.workers}
        for connections in args.connections:
            rows.append({**base, **timed(server, wrk, server.url, users_file, connections,
                                         args.seconds, log)})
            print(json.dumps(rows[-1]), flush=True)
        rows.append({**base, **timed(server, open_loop, server.url, users_file, args.rate,
                                     args.open_seconds, log)})
        print(json.dumps(rows[-1]), flush=True)
    finally:
        server.stop()
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per configuration and repeat, best wrk throughput and open-loop p99."""
    lines = ["| config | repeat | workers | best wrk req/s (connections, p50/p99 ms) | "
             "server CPU ms/req | open loop: rate, p50 / p99 / max ms, errors | load avg |",
             "|---|---|---|---|---|---|---|"]
    keys = sorted({(r["config"], r["repeat"]) for r in rows})
    for config, repeat in keys:
        mine = [r for r in rows if r["config"] == config and r["repeat"] == repeat]
        closed = [r for r in mine if r["tool"] == "wrk"]
        best = max(closed, key=lambda r: r["rps"])
        opened = next(r for r in mine if r["tool"] == "open_loop")
        loads = [r["load_before"] for r in mine] + [r["load_after"] for r in mine]
        lines.append(
            f"| {config} | {repeat} | {best['workers']} | {best['rps']:.0f} "
            f"(c={best['connections']}, {best['p50_ms']:.1f}/{best['p99_ms']:.1f}; "
            f"non-2xx {best['non2xx']:.0f}) | {best['server_cpu_ms_per_request']:.2f} | "
            f"{opened['rate_achieved']:.0f}/s, "
            f"{opened['p50_ms']:.1f} / {opened['p99_ms']:.1f} / {opened['max_ms']:.1f}, "
            f"{opened['errors']} (client lag p99 {opened['dispatch_lag_p99_ms']:.1f}) | "
            f"{min(loads):.1f}-{max(loads):.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True,
                        help="scratch folder (database, models); reused when present")
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared/datasets/ml-1m"))
    parser.add_argument("--configs", default="sqlite-ials,postgres-ials,sqlite-ease")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--connections", type=lambda s: [int(c) for c in s.split(",")],
                        default=[16, 32, 64])
    parser.add_argument("--seconds", type=int, default=20, help="wrk duration per run")
    parser.add_argument("--rate", type=float, default=100.0, help="open-loop requests/s")
    parser.add_argument("--open-seconds", type=int, default=30)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--json", type=Path, help="write every measurement here")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configs {unknown}; choose from {sorted(CONFIGS)}")
    args.work.mkdir(parents=True, exist_ok=True)
    users_file = args.work / "users.txt"
    users = [str(u) for u in range(1, 6041)]  # ML-1M user ids
    users_file.write_text("\n".join(users) + "\n", encoding="utf-8")
    log: list[str] = []
    rows: list[dict[str, Any]] = []
    schema = None
    try:
        for config in configs:
            store, key = CONFIGS[config]
            model = prepare_model(args.work, args.data, key, log)
            if store == "sqlite":
                db = prepare_sqlite(args.work, args.data, log)
            else:
                db, schema = prepare_postgres(args.data, log)
            for repeat in range(1, args.repeats + 1):
                rows += measure(config, db, model, args, users_file, users, log, repeat)
            if schema is not None:
                drop_postgres_schema(schema)
                schema = None
    finally:
        if schema is not None:
            drop_postgres_schema(schema)
    print(table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": rows, "commands": log,
                                         "cpus": os.cpu_count()}, indent=1) + "\n",
                             encoding="utf-8")


if __name__ == "__main__":
    main()
