"""The dashboard: its JSON through the app (TestClient), and the page in a real headless
Chromium driven by Playwright against the app served by uvicorn on a loopback port.

The browser tests need Chromium (``$RECOFORGE_TEST_CHROMIUM``, default /usr/bin/chromium)
and the ``playwright`` package; without them they skip, saying which is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import recoforge as rf  # noqa: E402
from recoforge.data.synthetic import category_demo  # noqa: E402
from recoforge.serving.experiments import assign_variant  # noqa: E402
from recoforge.serving.store import Event, Store  # noqa: E402

DAY = 86_400.0
N_IMPRESSION_USERS = 30
N_ITEMS = 60
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync",
                 "--disable-quic"]


def _fill_store(store: Store, data, models_dir: Path) -> dict:
    """Items, events, two model versions (1 active), a 50/50 experiment with impressions
    and clicks over three past days. Returns what the tests check against."""
    store.upsert_items([{"id": item, "attributes": {"title": row.title, "category": row.category},
                         "categories": [row.category], "hidden": False, "time": None}
                        for item, row in data.item_info.iterrows()])
    inter = data.interactions
    users, items = inter.user_index.ids, inter.item_index.ids
    store.upsert_users([{"id": str(u), "attributes": {"segment": "demo"}} for u in users])
    store.insert_events([Event(str(users[u]), str(items[i]), "rating", float(v), float(t))
                         for u, i, v, t in zip(inter.users, inter.items, inter.values,
                                               inter.timestamps, strict=True)])
    versions = []
    for name in ("item_knn", "ease"):
        model = rf.create(name).fit(data)
        path = models_dir / name
        model.save(str(path))
        versions.append(store.add_model_version(name, str(path), {"ndcg@10": 0.25},
                                                note=f"{name} on the demo"))
    store.activate_version(versions[0])
    split = {"A": {"version": versions[0], "share": 0.5},
             "B": {"version": versions[1], "share": 0.5}}
    experiment = store.create_experiment("homepage", split)
    start = time.time() - 3 * DAY
    impressions, clicks, per_variant = [], [], {"A": 0, "B": 0}
    for k in range(N_IMPRESSION_USERS):
        user = str(users[k])
        variant = assign_variant(user, "homepage", split)
        for day in range(3):
            stamp = start + day * DAY + k
            for position in range(3):
                item = str(items[(k + day + position) % len(items)])
                impressions.append({"request_id": f"r{k}-{day}", "user": user, "item": item,
                                    "position": position, "version": split[variant]["version"],
                                    "experiment": experiment, "variant": variant,
                                    "time": stamp})
                per_variant[variant] += 1
                if (k + day + position) % (3 if variant == "A" else 2) == 0:
                    clicks.append(Event(user, item, "click", 1.0, stamp + 5))
    store.log_impressions(impressions)
    store.insert_events(clicks)
    return {"versions": versions, "experiment": experiment, "impressions": per_variant,
            "user": str(users[0]), "item": str(items[3]),
            "title": str(data.item_info.loc[items[3], "title"])}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A SQLite store filled by :func:`_fill_store` and the facts about it."""
    root = tmp_path_factory.mktemp("dashboard")
    (root / "models").mkdir()
    data = category_demo(n_users=40, n_items=N_ITEMS, seed=0)
    store = Store.open(f"sqlite:///{root / 'serving.db'}")
    facts = _fill_store(store, data, root / "models")
    yield store, facts
    store.close()


def make_app(store, **settings):
    from recoforge.serving.app import create_app
    from recoforge.serving.schemas import ServeSettings

    return create_app(store, settings=ServeSettings(**settings))


@pytest.fixture(scope="module")
def client(served):
    from fastapi.testclient import TestClient

    store, _ = served
    with TestClient(make_app(store)) as test_client:
        yield test_client


# ---------------------------------------------------------------------- JSON and files
def test_page_and_static_files(client):
    page = client.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="/dashboard/static/dashboard.js"' in page.text and "{{prefix}}" not in page.text
    script = client.get("/dashboard/static/dashboard.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert client.get("/dashboard/static/dashboard.css").status_code == 200
    for name in ("secret.txt", "..%2Fdashboard.py", "dashboard.html"):
        assert client.get(f"/dashboard/static/{name}").status_code == 404


def test_models_json(client, served):
    _, facts = served
    body = client.get("/dashboard/api/models").json()
    assert body["serving"]["name"] == "item_knn"
    assert body["serving"]["version"] == facts["versions"][0]
    assert body["active"]["id"] == facts["versions"][0]
    assert [v["name"] for v in body["versions"]] == ["item_knn", "ease"]
    assert all("path" not in v for v in body["versions"])  # no server paths on the page


def test_experiment_json(client, served):
    _, facts = served
    listed = client.get("/dashboard/api/experiments").json()["experiments"]
    assert [e["id"] for e in listed] == [facts["experiment"]]
    body = client.get(f"/dashboard/api/experiments/{facts['experiment']}").json()
    report = {row["variant"]: row for row in body["report"]}
    assert list(report) == ["A", "B"]
    for label, count in facts["impressions"].items():
        assert report[label]["impressions"] == count
    assert report["A"]["p_value"] is None and report["A"]["ctr_lift"] is None  # control
    assert 0 <= report["B"]["p_value"] <= 1
    assert report["B"]["ctr"] > report["A"]["ctr"]  # B's users clicked every 2nd item
    days = sorted({row["day"] for row in body["daily"]})
    assert len(days) in (3, 4)  # three days of impressions (a UTC midnight may split one)
    assert sum(row["impressions"] for row in body["daily"]) == sum(facts["impressions"].values())
    missing = client.get("/dashboard/api/experiments/9999")
    assert missing.status_code == 404 and "9999" in missing.json()["error"]


def test_user_json(client, served):
    store, facts = served
    body = client.get(f"/dashboard/api/users/{facts['user']}", params={"n": 5}).json()
    assert body["known"] and body["attributes"] == {"segment": "demo"}
    assert len(body["history"]) == min(50, len(store.user_events(facts["user"], 0, 1000)))
    assert {"item", "label", "type", "weight", "time"} <= set(body["history"][0])
    recs = body["recommendations"]
    assert recs["source"] == "live" and len(recs["items"]) == 5
    seen = {event["item"] for event in store.user_events(facts["user"], 0, 1000)}
    for entry in recs["items"]:
        assert entry["item"] not in seen and entry["label"] != entry["item"]
        contributions = entry["explanation"]["contributions"]
        assert 1 <= len(contributions) <= 3 and all(c["source"] for c in contributions)
        for part in contributions:  # item_knn explains by the user's items, with labels
            assert part["source"] == "item" and part["id"] in seen
            assert part["label"] == store.get_item(part["id"])["attributes"]["title"]


def test_unknown_user_json(client):
    body = client.get("/dashboard/api/users/nobody-here").json()
    assert not body["known"] and body["history"] == []
    recs = body["recommendations"]
    assert recs["source"] == "popular" and len(recs["items"]) == 10
    assert all(e["explanation"] is None and e["explanation_error"] for e in recs["items"])


def test_item_search_and_validation(client, served):
    _, facts = served
    body = client.get("/dashboard/api/items", params={"q": facts["title"].upper()}).json()
    assert facts["item"] in [row["item"] for row in body["items"]]
    assert client.get("/dashboard/api/items", params={"q": ""}).status_code == 422
    bad_n = client.get(f"/dashboard/api/users/{facts['user']}", params={"n": 0})
    assert bad_n.status_code == 422 and bad_n.json()["field"] == "query.n"


def test_json_needs_key_when_reads_do(served):
    from fastapi.testclient import TestClient

    store, _ = served
    key = store.create_api_key("dashboard-test", "read")
    with TestClient(make_app(store, read_requires_key=True)) as keyed:
        assert keyed.get("/dashboard").status_code == 200  # the page carries no data
        assert keyed.get("/dashboard/api/models").status_code == 401
        assert keyed.get("/dashboard/api/models", headers={"X-API-Key": key}).status_code == 200


# ---------------------------------------------------------------------- real browser
def client_json_first_contribution(store, user: str, item: str) -> dict:
    """The first contribution the JSON gives for ``item`` in ``user``'s list."""
    from fastapi.testclient import TestClient

    with TestClient(make_app(store)) as test_client:
        body = test_client.get(f"/dashboard/api/users/{user}").json()
    entry = next(e for e in body["recommendations"]["items"] if e["item"] == item)
    return entry["explanation"]["contributions"][0]


def _chromium() -> str:
    path = os.environ.get("RECOFORGE_TEST_CHROMIUM", "/usr/bin/chromium")
    if not (Path(path).is_file() or shutil.which(path)):
        pytest.skip(f"the dashboard browser test needs Chromium at {path} "
                    f"(set RECOFORGE_TEST_CHROMIUM)")
    pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright")
    return path


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """``app`` served by uvicorn in a background thread on a free loopback port."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start within 30 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextlib.contextmanager
def browser_page() -> Iterator[Any]:
    """A fresh page of a headless Chromium (skips without Chromium or playwright)."""
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page()
            tab.set_default_timeout(20_000)
            yield tab
        finally:
            browser.close()


@pytest.fixture(scope="module")
def base_url(served):
    _chromium()  # skip before starting a server no browser will visit
    store, _ = served
    with serving(make_app(store)) as url:
        yield url


@pytest.fixture
def page(base_url):
    """The dashboard opened in Chromium; the test fails if the page logs an error."""
    with browser_page() as tab:
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        tab.goto(f"{base_url}/dashboard")
        yield tab
        assert errors == [], f"the page logged errors: {errors}"


def test_browser_shows_model_and_ctr_chart(page, served):
    from playwright.sync_api import expect

    _, facts = served
    expect(page.locator("#model-serving")).to_contain_text(
        f"Serving item_knn version {facts['versions'][0]}")
    rows = page.locator("#model-versions tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("active")
    report = page.locator("#experiment-report tbody tr")
    expect(report).to_have_count(2)
    expect(report.nth(0)).to_contain_text(str(facts["impressions"]["A"]))
    series = page.locator("#ctr-chart path.series")
    expect(series).to_have_count(2)
    assert sorted(series.evaluate_all("nodes => nodes.map(n => n.dataset.variant)")) == ["A", "B"]
    n_points = int(page.locator("#ctr-chart").get_attribute("data-points"))
    assert n_points >= 6  # 2 variants x 3 days (4 when a UTC midnight splits a day)
    path = series.first.get_attribute("d")
    assert path.startswith("M") and path.count("L") >= 2
    box = page.locator("#ctr-chart").bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 50  # drawn, visible
    expect(page.locator("#traffic-chart path.series")).to_have_count(2)


def _settled(page) -> None:
    """Wait until the dashboard's first loads have drawn the model and experiment panels,
    so that no layout shift moves a button between Playwright's aim and its click."""
    from playwright.sync_api import expect

    expect(page.locator("#model-serving")).to_contain_text("Serving")
    expect(page.locator("#experiment-report tbody tr").first).to_be_visible()
    expect(page.locator("#ctr-chart path.series").first).to_be_attached()


def test_browser_item_search(page, served):
    from playwright.sync_api import expect

    _, facts = served
    _settled(page)
    page.fill("#item-query", facts["title"].lower())
    page.click("#item-search")
    results = page.locator("#item-results tbody tr")
    expect(results.first).to_be_visible()
    expect(page.locator("#item-results")).to_contain_text(facts["item"])
    expect(page.locator("#item-results")).to_contain_text(facts["title"])


def test_browser_user_history_and_recommendations(page, served):
    from playwright.sync_api import expect

    store, facts = served
    _settled(page)
    page.fill("#user-id", facts["user"])
    page.click("#user-load")
    events = store.user_events(facts["user"], 0, 1000)
    expect(page.locator("#user-history tbody tr")).to_have_count(min(50, len(events)))
    recs = page.locator("#user-recs > li")
    expect(recs).to_have_count(min(10, N_ITEMS - len({e["item"] for e in events})))
    expect(page.locator("#user-source")).to_contain_text("live")
    first_item = recs.first.get_attribute("data-item")
    assert first_item and first_item not in {e["item"] for e in events}
    # each recommendation shows why: contributions of the user's items, with bars
    expect(recs.first.locator("ul.why > li")).to_have_count(3)
    because = recs.first.locator("ul.why > li").first.text_content()
    contribution = client_json_first_contribution(store, facts["user"], first_item)
    assert f"{contribution['label']} ({contribution['id']})" in because
    assert recs.locator("ul.why .bar").count() >= 10
    expect(page.locator("#user-status")).not_to_have_class("status error")


def test_browser_sends_the_typed_api_key(served):
    from playwright.sync_api import expect

    store, facts = served
    key = store.create_api_key("dashboard-browser", "read")
    with serving(make_app(store, read_requires_key=True)) as url, browser_page() as tab:
        tab.goto(f"{url}/dashboard")
        expect(tab.locator("#model-serving")).to_contain_text("401")
        expect(tab.locator("#model-serving")).to_have_class("status error")
        tab.fill("#api-key", key)
        tab.press("#api-key", "Tab")  # commits the value: the page reloads its data
        expect(tab.locator("#model-serving")).to_contain_text("Serving item_knn")
        expect(tab.locator("#ctr-chart path.series")).to_have_count(2)
        tab.fill("#user-id", facts["user"])
        tab.click("#user-load")
        expect(tab.locator("#user-recs > li").first).to_be_visible()
