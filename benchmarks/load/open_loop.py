"""Open-loop load at a fixed request rate: latency percentiles of GET /recommend/{user}.

wrk measures throughput with a closed loop (each connection waits for its answer); latency at
a given rate needs an open loop (requests start on schedule whether or not earlier ones have
finished, so a slow answer cannot hide the queue behind it). This process sends ``--rate``
requests per second for ``--duration`` seconds over keep-alive connections and prints one JSON
line: sent, ok, errors, achieved rate, and p50/p90/p99/max latency in milliseconds measured from
each request's *scheduled* start.

    python benchmarks/load/open_loop.py --url http://127.0.0.1:8000 --users users.txt \
        --rate 100 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time

import httpx


async def _one(client: httpx.AsyncClient, path: str, scheduled: float,
               latencies: list[float], failures: list[str]) -> None:
    try:
        response = await client.get(path)
        if response.status_code != 200:
            failures.append(str(response.status_code))
    except httpx.HTTPError as error:
        failures.append(type(error).__name__)
    latencies.append(time.perf_counter() - scheduled)


async def run(url: str, users: list[str], rate: float, duration: float, n: int,
              seed: int) -> dict:
    rng = random.Random(seed)
    latencies: list[float] = []
    failures: list[str] = []
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10.0) as client:
        for user in users[:8]:      # warm-up: connections and the server's first-call costs
            await client.get(f"/recommend/{user}?n={n}")
        start = time.perf_counter()
        tasks = []
        total = int(rate * duration)
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            path = f"/recommend/{rng.choice(users)}?n={n}"
            tasks.append(asyncio.create_task(_one(client, path, scheduled, latencies,
                                                  failures)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"sent": total, "ok": total - len(failures), "errors": len(failures),
            "error_kinds": sorted(set(failures)), "rate_target": rate,
            "rate_achieved": round(total / elapsed, 1), "p50_ms": pct(0.50),
            "p90_ms": pct(0.90), "p99_ms": pct(0.99), "max_ms": round(1000 * ordered[-1], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--users", required=True, help="file with one user id per line")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with open(args.users, encoding="utf-8") as handle:
        users = [line.strip() for line in handle if line.strip()]
    print(json.dumps(asyncio.run(run(args.url, users, args.rate, args.duration, args.n,
                                     args.seed))))


if __name__ == "__main__":
    main()
