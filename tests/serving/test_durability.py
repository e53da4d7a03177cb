"""Feedback acknowledged over HTTP survives ``kill -9`` of the server.

A real ``recoforge serve`` process takes ``POST /feedback`` batches from concurrent clients
and is killed with SIGKILL while requests are in flight; every batch answered 2xx must then
be in the database, read directly. (The store-level version is test_store_durability.py;
benchmarks/bench_durability.py runs 10,000 events, restarts the server and retries.)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from recoforge.serving.store import Store  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

N_BATCHES, BATCH, KILL_AFTER, CLIENTS = 60, 4, 20, 3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(url: str, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "recoforge", "serve", "--db", url, "--port", str(port),
         "--log-level", "warning"], start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, env={**os.environ, "RECOFORGE_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            assert proc.stderr is not None
            pytest.fail(f"server exited ({proc.returncode}): {proc.stderr.read()[-2000:]!r}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail("server did not answer /health/live within 120 s")


def _batch(b: int) -> list[dict]:
    return [{"user": f"u{b % 5}", "item": f"i{b}-{k}", "type": "click", "time": 1.7e9 + b}
            for k in range(BATCH)]


def test_acknowledged_feedback_survives_sigkill_of_the_server(store_url):
    with Store.open(store_url) as store:
        key = store.create_api_key("durability", "write")
    port = _free_port()
    server = _serve(store_url, port)
    todo, acknowledged, lock = list(range(N_BATCHES)), [], threading.Lock()
    outcomes: list[str] = []

    def client() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20,
                          headers={"X-API-Key": key}) as http:
            while True:
                with lock:
                    if not todo:
                        return
                    b = todo.pop(0)
                try:
                    answer = http.post("/feedback", json=_batch(b),
                                       headers={"Idempotency-Key": f"batch-{b}"})
                    outcome = str(answer.status_code)
                except httpx.HTTPError as error:
                    outcome = type(error).__name__
                with lock:
                    outcomes.append(outcome)
                    if outcome.startswith("2"):
                        acknowledged.append(b)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    try:
        for thread in threads:
            thread.start()
        while len(acknowledged) < KILL_AFTER and any(t.is_alive() for t in threads):
            time.sleep(0.001)
    finally:
        os.killpg(server.pid, signal.SIGKILL)  # mid-stream, requests in flight
        server.wait(timeout=30)
    for thread in threads:
        thread.join(timeout=60)
    assert server.returncode == -signal.SIGKILL
    assert KILL_AFTER <= len(acknowledged) < N_BATCHES, outcomes  # killed mid-stream
    assert all(o == "200" for o in outcomes[:KILL_AFTER]), outcomes
    with Store.open(store_url, create=False) as store:
        items = store.events_frame()["item"].astype(str).tolist()
    missing = [b for b in acknowledged if not {f"i{b}-{k}" for k in range(BATCH)} <= set(items)]
    assert not missing, f"acknowledged batches lost after kill -9: {missing}"
    assert len(items) == len(set(items)), "an event was stored twice"
