"""Model versions (activation and rollback, also under load), experiments and impressions,
precomputed lists, and the serve / precompute / api-key commands."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from recoforge.cli import main
from recoforge.serving.experiments import assign_variant
from tests.serving.app_helpers import client, items_of, make_shop

MODELS = (("item_knn", {"k": 20}), ("ease", {"regularization": 50.0}))


@pytest.fixture
def shop(tmp_path):
    made = make_shop(tmp_path, models=MODELS)
    yield made
    made.store.close()


def test_activate_and_roll_back(shop):
    first, second = sorted(shop.models)
    admin = shop.headers("admin")
    with client(shop) as api:
        assert api.get("/recommend/u0001").json()["version"] == first
        activated = api.post(f"/models/{second}/activate", headers=admin)
        assert activated.status_code == 200 and activated.json()["active"] is True
        served = api.get("/recommend/u0001", params={"n": 5})
        assert served.json()["version"] == second
        expected = shop.models[second].recommend(["u0001"], k=5)
        assert items_of(served) == [str(i) for i in expected["item"]]
        assert api.post(f"/models/{first}/activate", headers=admin).status_code == 200
        assert api.get("/recommend/u0001").json()["version"] == first
        assert [m["active"] for m in api.get("/models").json()] == [True, False]
        assert api.post("/models/99/activate", headers=admin).status_code == 404


def test_other_workers_follow_the_active_version(shop):
    """Another process (a worker, `recoforge retrain`) activating a version is picked up."""
    first, second = sorted(shop.models)
    with client(shop) as api:
        api.app.state.service.refresh_seconds = 0.0
        assert api.get("/recommend/u0001").json()["version"] == first
        shop.store.activate_version(second)
        assert api.get("/recommend/u0001").json()["version"] == second


@pytest.fixture
def server(shop):
    """The app under uvicorn in a thread, on a free loopback port."""
    import uvicorn

    from recoforge.serving.app import create_app

    app = create_app(shop.store, models_dir=shop.models_dir)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(timeout=10)
    sock.close()


def test_activation_while_requests_run(shop, server):
    """Versions swap back and forth under concurrent requests: every request succeeds and
    gets exactly one version's list, never a mixture."""
    first, second = sorted(shop.models)
    users = [f"u{k:04d}" for k in range(1, 21)]
    expected = {v: {u: [str(i) for i in shop.models[v].recommend([u], k=5)["item"]]
                    for u in users} for v in (first, second)}
    stop = threading.Event()

    def swap() -> int:
        swaps = 0
        with httpx.Client(base_url=server, headers=shop.headers("admin")) as admin:
            while not stop.is_set():
                for version in (second, first):
                    assert admin.post(f"/models/{version}/activate").status_code == 200
                    swaps += 1
        return swaps

    def fetch(user: str) -> tuple[str, int, list[str]]:
        with httpx.Client(base_url=server) as http:
            body = http.get(f"/recommend/{user}", params={"n": 5}).raise_for_status().json()
        return user, body["version"], [e["item"] for e in body["items"]]

    with ThreadPoolExecutor(4) as pool:
        swapper = pool.submit(swap)
        answers = list(pool.map(fetch, users * 4))
        stop.set()
        assert swapper.result() >= 2
    for user, version, items in answers:
        assert items == expected[version][user]
    assert {version for _, version, _ in answers} <= {first, second}


def test_experiment_assignment_impressions_and_report(shop):
    first, second = sorted(shop.models)
    admin = shop.headers("admin")
    variants = {"A": {"version": first, "share": 0.5}, "B": {"version": second, "share": 0.5}}
    with client(shop) as api:
        started = api.post("/experiments", json={"name": "knn-vs-ease", "variants": variants},
                           headers=admin)
        assert started.status_code == 200, started.text
        experiment = started.json()["id"]
        users = [f"u{k:04d}" for k in range(1, 31)]
        served = {}
        for user in users:
            body = api.get(f"/recommend/{user}", params={"n": 3}).json()
            label = assign_variant(user, "knn-vs-ease", variants)
            assert (body["experiment"], body["variant"]) == (experiment, label)
            assert body["version"] == variants[label]["version"]
            served[user] = [e["item"] for e in body["items"]]
        clicks = [{"user": u, "item": items[0], "type": "click"} for u, items in served.items()
                  if assign_variant(u, "knn-vs-ease", variants) == "B"]
        api.post("/feedback", json=clicks, headers=shop.headers("write"))
        api.app.state.impressions.flush()
        report = api.get(f"/experiments/{experiment}/report").json()
        rows = {row["variant"]: row for row in report["variants"]}
        assert sum(row["impressions"] for row in rows.values()) == 3 * len(users)
        assert rows["B"]["clicks"] == len(clicks) and rows["A"]["clicks"] == 0
        assert rows["A"]["p_value"] is None and rows["B"]["p_value"] is not None
        assert report["daily"] and {d["variant"] for d in report["daily"]} == {"A", "B"}
        bad = api.post("/experiments", json={"name": "x", "variants": {
            "A": {"version": first, "share": 0.7}}}, headers=admin)
        assert bad.status_code == 422 and bad.json()["field"] == "body.variants"
        stopped = api.post(f"/experiments/{experiment}/stop", headers=admin)
        assert stopped.json()["stopped"] is not None
        after = api.get("/recommend/u0001").json()
        assert after["experiment"] is None and after["version"] == first
        assert api.get("/experiments/999/report").status_code == 404


def test_precompute_command_and_fresh_lists(shop, tmp_path):
    url = shop.store.url
    assert_exit(["precompute", "--db", url, "--n", "20"], 0)
    with client(shop) as api:
        cached = api.get("/recommend/u0003", params={"n": 5}).json()
        assert cached["source"] == "precomputed"
        model = shop.models[min(shop.models)]
        assert [e["item"] for e in cached["items"]] == \
            [str(i) for i in model.recommend(["u0003"], k=5)["item"]]
        api.post("/feedback", json=[{"user": "u0003", "item": "i0001", "type": "click"}],
                 headers=shop.headers("write"))
        assert api.get("/recommend/u0003").json()["source"] == "live"
    assert_exit(["precompute", "--db", url, "--version", "42"], 2)


def test_api_key_commands(shop, capsys):
    url = shop.store.url
    assert_exit(["api-key", "create", "--db", url, "--name", "cli", "--scope", "admin"], 0)
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert shop.store.verify_api_key(key) == "admin"
    assert_exit(["api-key", "create", "--db", url, "--name", "bad", "--scope", "root"], 2)
    assert_exit(["api-key", "revoke", "--db", url, "--name", "cli"], 0)
    assert shop.store.verify_api_key(key) is None
    assert_exit(["api-key", "revoke", "--db", url, "--name", "cli"], 2)


def test_serve_command_checks_before_starting(tmp_path, monkeypatch):
    import uvicorn

    from recoforge.serving import app as serving_app

    for name in (serving_app.ENV_DB, serving_app.ENV_MODEL, serving_app.ENV_MODELS_DIR,
                 serving_app.ENV_READ_KEY):
        monkeypatch.setenv(name, "")  # restored afterwards; `serve` sets them
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: calls.append((a, k)))
    assert_exit(["serve", "--db", str(tmp_path / "s.db"), "--model", str(tmp_path)], 2)
    assert_exit(["serve", "--db", str(tmp_path / "s.db"), "--workers", "3",
                 "--api-key-required"], 0)
    (target,), options = calls[0]
    assert target == "recoforge.serving.app:app_from_environment"
    assert options["factory"] is True and options["workers"] == 3
    from recoforge.serving.app import app_from_environment

    app = app_from_environment()  # what each worker builds from the environment
    assert app.state.settings.read_requires_key is True
    app.state.store.close()


def assert_exit(args: list[str], status: int) -> None:
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == status


@pytest.mark.slow  # three processes import recoforge: about a minute on a busy 2-core box
def test_recoforge_serve_with_workers(shop):
    """The real command: two uvicorn workers over one database; a write through one is
    seen by the next read, whichever worker answers it."""
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "recoforge", "serve", "--db", shop.store.url,
               "--port", str(port), "--workers", "2", "--log-level", "warning"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stdout.read().decode()
            try:
                if httpx.get(f"{base}/health/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the service did not get ready in 60 s"
            time.sleep(0.2)
        with httpx.Client(base_url=base) as http:
            before = http.get("/recommend/u0014", params={"n": 5}).json()["items"]
            item = before[0]["item"]
            posted = http.post("/feedback", json=[{"user": "u0014", "item": item}],
                               headers=shop.headers("write"))
            assert posted.status_code == 200
            for _ in range(6):  # answered by either worker
                after = [e["item"] for e in http.get("/recommend/u0014",
                                                     params={"n": 5}).json()["items"]]
                assert item not in after
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_model_directory_served_as_is_until_a_version_is_activated(shop):
    from fastapi.testclient import TestClient

    from recoforge.serving.app import create_app

    first, second = sorted(shop.models)
    pinned = shop.store.model_version(second)["path"]
    app = create_app(shop.store, model_dir=pinned)
    with TestClient(app) as api:
        api.app.state.service.refresh_seconds = 0.0
        body = api.get("/recommend/u0001", params={"n": 5}).json()
        assert body["version"] is None  # pinned: the store's active version is not followed
        assert [e["item"] for e in body["items"]] == \
            [str(i) for i in shop.models[second].recommend(["u0001"], k=5)["item"]]
        assert api.get("/health/ready").json()["model"] == "ease"
        api.post(f"/models/{first}/activate", headers=shop.headers("admin"))
        assert api.get("/recommend/u0001").json()["version"] == first
