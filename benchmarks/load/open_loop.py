"""Open-loop load at a fixed request rate: latency percentiles of GET /recommend/{user}.

wrk measures throughput with a closed loop (each connection waits for its answer); latency at
a given rate needs an open loop (requests start on schedule whether or not earlier ones have
finished, so a slow answer cannot hide the queue behind it). This process sends ``--rate``
requests per second for ``--duration`` seconds over ``--connections`` keep-alive HTTP/1.1
connections and prints one JSON line: sent, ok, errors, achieved rate, and p50/p90/p99/max
latency in milliseconds measured from each request's *scheduled* start (time spent waiting
for a free connection counts). ``dispatch_lag_p99_ms`` says how late the generator itself
issued requests: when it is not small, the client machine was the bottleneck.

The client is plain asyncio streams (no HTTP library), a few tens of microseconds of CPU
per request, so a loaded machine slows the server rather than the generator.

    python benchmarks/load/open_loop.py --url http://127.0.0.1:8000 --users users.txt \
        --rate 100 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from urllib.parse import urlsplit


class Connection:
    """One keep-alive HTTP/1.1 connection sending GETs and reading whole answers."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:] if line)}
        if "content-length" not in headers:
            raise ValueError("answer without Content-Length")
        await self.reader.readexactly(int(headers["content-length"]))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _worker(conn: Connection, jobs: asyncio.Queue, latencies: list[float],
                  failures: list[str]) -> None:
    while True:
        job = await jobs.get()
        if job is None:
            return
        scheduled, path = job
        try:
            status = await conn.get(path)
            if status != 200:
                failures.append(str(status))
        except (OSError, ValueError, asyncio.IncompleteReadError) as error:
            failures.append(type(error).__name__)
            conn.close()
        latencies.append(time.perf_counter() - scheduled)


async def run(url: str, users: list[str], rate: float, duration: float, n: int, seed: int,
              connections: int = 32) -> dict:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    rng = random.Random(seed)
    latencies: list[float] = []
    failures: list[str] = []
    lags: list[float] = []
    conns = [Connection(host, port) for _ in range(connections)]
    for user in users[:8]:  # warm-up: the server's first-call costs
        await conns[0].get(f"/recommend/{user}?n={n}")
    jobs: asyncio.Queue = asyncio.Queue()
    workers = [asyncio.create_task(_worker(c, jobs, latencies, failures)) for c in conns]
    total = int(rate * duration)
    start = time.perf_counter()
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append(time.perf_counter() - scheduled)
        jobs.put_nowait((scheduled, f"/recommend/{rng.choice(users)}?n={n}"))
    for _ in workers:
        jobs.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - start
    for conn in conns:
        conn.close()
    ordered, lag = sorted(latencies), sorted(lags)

    def pct(values: list[float], q: float) -> float:
        return round(1000 * values[min(len(values) - 1, int(q * len(values)))], 2)

    return {"sent": total, "ok": total - len(failures), "errors": len(failures),
            "error_kinds": sorted(set(failures)), "rate_target": rate,
            "rate_achieved": round(total / elapsed, 1), "connections": connections,
            "p50_ms": pct(ordered, 0.50), "p90_ms": pct(ordered, 0.90),
            "p99_ms": pct(ordered, 0.99), "max_ms": round(1000 * ordered[-1], 2),
            "dispatch_lag_p99_ms": pct(lag, 0.99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--users", required=True, help="file with one user id per line")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with open(args.users, encoding="utf-8") as handle:
        users = [line.strip() for line in handle if line.strip()]
    print(json.dumps(asyncio.run(run(args.url, users, args.rate, args.duration, args.n,
                                     args.seed, args.connections))))


if __name__ == "__main__":
    main()
