"""Every endpoint of the app over a SQLite store: data, feedback, recommendations, errors,
keys, metrics and health."""

from __future__ import annotations

import math

import pytest

from recoforge.serving.experiments import assign_variant  # noqa: F401 - extra installed
from tests.serving.app_helpers import client, items_of, make_shop


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    made = make_shop(tmp_path_factory.mktemp("endpoints"),
                     models=(("item_knn", {"k": 20}), ("ease", {"regularization": 50.0})))
    yield made
    made.store.close()


@pytest.fixture(scope="module")
def api(shop):
    with client(shop) as test_client:
        yield test_client


# ---------------------------------------------------------------------- data
def test_users_crud_and_forget(api, shop):
    w = shop.headers("write")
    put = api.put("/users/alice", json={"attributes": {"age": 30, "tags": ["a"]}}, headers=w)
    assert put.status_code == 200 and put.json()["attributes"] == {"age": 30, "tags": ["a"]}
    assert api.get("/users/alice").json()["id"] == "alice"
    batch = api.post("/users", json=[{"id": "bob"}, {"id": "carol", "attributes": {"x": 1}}],
                     headers=w)
    assert batch.json() == {"written": 2}
    assert [u["id"] for u in api.get("/users", params={"limit": 2}).json()] == \
        [u["id"] for u in shop.store.list_users(limit=2)]
    api.post("/feedback", json=[{"user": "alice", "item": "i0001"}], headers=w)
    forgot = api.delete("/users/alice", headers=w)
    assert forgot.status_code == 200
    assert forgot.json()["deleted"]["events"] == 1 and forgot.json()["deleted"]["users"] == 1
    missing = api.get("/users/alice")
    assert missing.status_code == 404 and missing.json()["field"] == "user"
    assert api.get("/users/alice/feedback").json() == []


def test_items_crud_hidden_and_search(api, shop):
    w = shop.headers("write")
    body = {"attributes": {"title": "Blue Kettle"}, "categories": ["kitchen", "new"],
            "time": 4e9}
    put = api.put("/items/new-kettle", json=body, headers=w)
    assert put.status_code == 200 and put.json()["categories"] == ["kitchen", "new"]
    assert api.get("/latest", params={"n": 1}).json()[0]["id"] == "new-kettle"
    assert [i["id"] for i in api.get("/items", params={"category": "new"}).json()] == \
        ["new-kettle"]
    assert "new-kettle" in [i["id"] for i in api.get("/items", params={"q": "blue ket"}).json()]
    hide = api.put("/items/new-kettle/hidden", json={"hidden": True}, headers=w)
    assert hide.json()["hidden"] is True
    assert api.get("/items", params={"category": "new"}).json() == []
    assert api.get("/latest", params={"n": 1}).json()[0]["id"] != "new-kettle"
    assert api.delete("/items/new-kettle", headers=w).status_code == 200
    assert api.get("/items/new-kettle").status_code == 404
    assert api.delete("/items/new-kettle", headers=w).status_code == 404
    assert api.post("/items", json=[{"id": "x1"}, {"id": "x2", "hidden": True}],
                    headers=w).json() == {"written": 2}
    assert api.get("/items/x2").json()["hidden"] is True


def test_feedback_batch_idempotency_and_listing(api, shop):
    w = shop.headers("write") | {"Idempotency-Key": "batch-1"}
    events = [{"user": "dave", "item": "i0002", "type": "click", "time": 1.7e9},
              {"user": "dave", "item": "i0003", "type": "purchase", "weight": 2.5}]
    first = api.post("/feedback", json=events, headers=w)
    again = api.post("/feedback", json=events, headers=w)
    assert first.json() == {"inserted": 2, "replayed": False}
    assert again.json() == {"inserted": 2, "replayed": True}
    listed = api.get("/users/dave/feedback").json()
    assert [(e["item"], e["type"]) for e in listed] == [("i0003", "purchase"),
                                                        ("i0002", "click")]
    assert any(e["user"] == "dave" for e in api.get("/items/i0002/feedback",
                                                    params={"limit": 1000}).json())


# ---------------------------------------------------------------------- recommendations
def test_feedback_through_the_api_changes_the_next_list(api, shop):
    """Freshness: POST /feedback, then GET /recommend reflects the event (no refit)."""
    user = "u0011"
    before = items_of(api.get(f"/recommend/{user}", params={"n": 8}))
    seen = set(shop.store.user_history(user)[0])
    item = next(str(i) for i in shop.data.item_index.ids if str(i) not in seen
                and str(i) not in before)
    posted = api.post("/feedback", json=[{"user": user, "item": item, "type": "purchase",
                                          "weight": 5.0}], headers=shop.headers("write"))
    assert posted.status_code == 200
    after = items_of(api.get(f"/recommend/{user}", params={"n": 8}))
    model = shop.models[min(shop.models)]
    expected = model.recommend([user], k=8, history={user: {item: 5.0}})
    assert after == [str(i) for i in expected["item"]]
    assert after != before and item not in after


def test_recommend_parameters(api, shop):
    user = "u0012"
    full = api.get(f"/recommend/{user}", params={"n": 10}).json()
    assert full["source"] == "live" and full["version"] == min(shop.models)
    ids = [e["item"] for e in full["items"]]
    assert len(ids) == 10 and len(full["request_id"]) == 32
    assert items_of(api.get(f"/recommend/{user}", params={"n": 4, "offset": 2})) == ids[2:6]
    assert items_of(api.get(f"/recommend/{user}",
                            params={"n": 5, "exclude": ids[:2]})) == ids[2:7]
    books = shop.store.items_in_category("books")
    assert set(items_of(api.get(f"/recommend/{user}", params={"n": 5, "category": "books"}))) \
        <= books
    title = shop.store.get_item(ids[3])["attributes"]["title"]
    assert items_of(api.get(f"/recommend/{user}", params={"attr": f"title:{title}"})) == \
        [ids[3]]
    seen = set(shop.store.user_history(user)[0])
    assert set(items_of(api.get(f"/recommend/{user}", params={"n": 30, "exclude_seen": False}))
               ) & seen
    diverse = items_of(api.get(f"/recommend/{user}", params={"n": 10, "diversity": 0.9}))
    assert diverse[0] == ids[0] and diverse != ids and len(diverse) == 10
    explored = api.get(f"/recommend/{user}", params={"n": 10, "explore": 0.3}).json()["items"]
    assert sum(e["explored"] for e in explored) == 3
    assert all(e["score"] is None for e in explored if e["explored"])
    assert explored[0]["item"] == ids[0]
    cold = api.get("/recommend/somebody-new", params={"n": 3}).json()
    assert cold["source"] == "popular"
    assert [e["item"] for e in cold["items"]] == \
        [i for i, _ in shop.store.popular_items(3)]


def test_hiding_through_the_api_applies_to_the_next_list(api, shop):
    w = shop.headers("write")
    top = items_of(api.get("/recommend/u0013", params={"n": 3}))
    assert api.put(f"/items/{top[0]}/hidden", json={"hidden": True}, headers=w).status_code \
        == 200
    try:
        assert top[0] not in items_of(api.get("/recommend/u0013", params={"n": 3}))
        assert top[0] not in [s["id"] for s in api.get(f"/items/{top[1]}/similar",
                                                       params={"n": 50}).json()]
    finally:
        api.put(f"/items/{top[0]}/hidden", json={"hidden": False}, headers=w)
    assert items_of(api.get("/recommend/u0013", params={"n": 3})) == top


def test_session_similar_explain_popular(api, shop):
    session = api.post("/recommend", json={"events": [{"item": "i0004"}, {"item": "i0005"}],
                                           "n": 5})
    assert session.status_code == 200 and session.json()["source"] == "session"
    assert {"i0004", "i0005"}.isdisjoint(items_of(session))
    similar = api.get("/items/i0004/similar", params={"n": 4}).json()
    assert len(similar) == 4 and "i0004" not in [s["id"] for s in similar]
    users = api.get("/users/u0001/similar", params={"n": 3}).json()
    assert len(users) == 3 and "u0001" not in [u["id"] for u in users]
    top = items_of(api.get("/recommend/u0001", params={"n": 1}))[0]
    why = api.get(f"/recommend/u0001/explain/{top}", params={"n": 3}).json()
    assert why["item"] == top and 1 <= len(why["contributions"]) <= 3
    assert all(c["source"] == "item" for c in why["contributions"])
    popular = api.get("/popular", params={"n": 3}).json()
    assert [p["item"] for p in popular] == [i for i, _ in shop.store.popular_items(3)]
    assert api.get("/popular", params={"n": 3, "since": 4e9}).json() == []
    assert api.get("/models").json()[0]["active"] is True


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize(("method", "path", "kwargs", "status", "field"), [
    ("get", "/recommend/u0001", {"params": {"n": 0}}, 422, "query.n"),
    ("get", "/recommend/u0001", {"params": {"n": 5000}}, 422, "query.n"),
    ("get", "/recommend/u0001", {"params": {"n": 900, "offset": 900}}, 422, "query.n"),
    ("get", "/recommend/u0001", {"params": {"diversity": "nan"}}, 422, "query.diversity"),
    ("get", "/recommend/u0001", {"params": {"attr": "nocolon"}}, 422, "query.attr.0"),
    ("get", "/users", {"params": {"limit": 100_000}}, 422, "query.limit"),
    ("post", "/feedback", {"json": [{"item": "i1"}]}, 422, "body.0.user"),
    ("post", "/feedback", {"json": [{"user": "u", "item": "i1", "weight": "x"}]}, 422,
     "body.0.weight"),
    ("post", "/feedback", {"json": [{"user": "u", "item": "i1", "colour": 1}]}, 422,
     "body.0.colour"),
    ("post", "/feedback", {"json": [{"user": "", "item": "i1"}]}, 422, "body.0.user"),
    ("post", "/feedback", {"json": []}, 422, "body"),
    ("post", "/feedback", {"json": {"user": "u"}}, 422, "body"),
    ("post", "/feedback", {"content": b"{not json", "headers": {"content-type":
                                                                "application/json"}},
     422, "body.1"),
    ("post", "/feedback", {"content": b"[" + b"1," * 3_000_000 + b"1]"}, 413, "body"),
    ("post", "/feedback", {"content": b"[" * 100_000 + b"]" * 100_000,
                           "headers": {"content-type": "application/json"}}, 400, "body"),
    ("put", "/items/i0001", {"json": {"categories": "books"}}, 422, "body.categories"),
    ("post", "/recommend", {"json": {"events": []}}, 422, "body.events"),
    ("get", "/recommend/u0001/explain/no-such-item", {}, 404, None),
])
def test_bad_requests_name_the_field(api, shop, method, path, kwargs, status, field):
    kwargs = dict(kwargs)
    kwargs["headers"] = shop.headers("admin") | kwargs.get("headers", {})
    response = getattr(api, method)(path, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]
    if field is not None:
        assert body["field"] == field, body
    if status == 404:
        assert "no-such-item" in body["error"]


def test_no_stack_trace_reaches_a_client(shop, monkeypatch):
    with client(shop) as api:
        def broken(*args, **kwargs):
            raise RuntimeError("secret internals at /srv/app.py line 12")

        monkeypatch.setattr(shop.store, "popular_items", broken)
        response = api.get("/popular")
    assert response.status_code == 500
    assert set(response.json()) == {"error", "field", "request_id"}
    assert "secret" not in response.text and "Traceback" not in response.text


# ---------------------------------------------------------------------- keys
def test_write_and_admin_endpoints_need_keys(api, shop):
    event = [{"user": "eve", "item": "i0001"}]
    missing = api.post("/feedback", json=event)
    assert missing.status_code == 401 and missing.json()["field"] == "X-API-Key"
    wrong = api.post("/feedback", json=event, headers={"X-API-Key": "rf_0_nope"})
    assert wrong.status_code == 401
    read_only = api.post("/feedback", json=event, headers=shop.headers("read"))
    assert read_only.status_code == 403 and "write" in read_only.json()["error"]
    assert api.post("/feedback", json=event, headers=shop.headers("admin")).status_code == 200
    assert api.post("/models/1/activate", headers=shop.headers("write")).status_code == 403
    assert api.get("/recommend/eve").status_code == 200  # reads are public by default
    key = shop.store.create_api_key("short-lived", "write")
    assert api.delete("/users/eve", headers={"X-API-Key": key}).status_code == 200
    shop.store.revoke_api_key("short-lived")
    assert api.delete("/users/eve", headers={"X-API-Key": key}).status_code == 401


def test_reads_need_a_key_when_configured(shop):
    with client(shop, read_requires_key=True) as keyed:
        assert keyed.get("/recommend/u0001").status_code == 401
        assert keyed.get("/recommend/u0001", headers=shop.headers("read")).status_code == 200
        assert keyed.get("/health/live").status_code == 200


# ---------------------------------------------------------------------- operations
def test_metrics_in_prometheus_format(shop):
    with client(shop) as api:  # a fresh app: counters start at zero
        api.get("/recommend/u0002")
        api.get("/recommend/u0003", params={"n": 0})
        response = api.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = response.text.splitlines()
    assert 'recoforge_http_requests_total{method="GET",route="/recommend/{user}",' \
           'status="422"} 1' in lines
    buckets = [line for line in lines if line.startswith(
        'recoforge_http_request_duration_seconds_bucket{route="/recommend/{user}"')]
    counts = [int(line.rsplit(" ", 1)[1]) for line in buckets]
    assert counts == sorted(counts) and buckets[-1].split('le="')[1].startswith("+Inf")
    assert f'recoforge_model_version{{model="item_knn"}} {min(shop.models)}' in lines
    assert any(line.startswith('recoforge_lists_served_total{source="live"}') for line in lines)
    for line in lines:  # every sample is "name{labels} number"
        if not line.startswith("#"):
            assert not math.isnan(float(line.rsplit(" ", 1)[1]))


def test_health(api, shop, tmp_path):
    assert api.get("/health/live").json()["status"] == "ok"
    ready = api.get("/health/ready").json()
    assert ready == {"status": "ok", "version": min(shop.models), "model": "item_knn"}
    from recoforge.serving.store import Store

    empty = Store.open(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        from tests.serving.app_helpers import Shop

        with client(Shop(empty, None, tmp_path)) as bare:
            assert bare.get("/health/ready").status_code == 503
            assert bare.get("/recommend/anyone").json()["source"] == "popular"
            assert bare.get("/items/x/similar").status_code == 409
    finally:
        empty.close()


def test_the_service_on_sqlite_and_postgresql(store_url, tmp_path):
    """The same requests over both databases: freshness, idempotent feedback, impressions,
    forgetting (PostgreSQL skips, saying why, without $RECOFORGE_TEST_POSTGRES_URL)."""
    shop = make_shop(tmp_path, url=store_url)
    try:
        with client(shop) as api:
            user, w = "u0021", shop.headers("write") | {"Idempotency-Key": "k-21"}
            before = items_of(api.get(f"/recommend/{user}", params={"n": 6}))
            seen = set(shop.store.user_history(user)[0])
            item = next(str(i) for i in shop.data.item_index.ids
                        if str(i) not in seen and str(i) not in before)
            event = [{"user": user, "item": item, "type": "purchase", "weight": 5.0}]
            assert api.post("/feedback", json=event, headers=w).json()["replayed"] is False
            assert api.post("/feedback", json=event, headers=w).json()["replayed"] is True
            after = items_of(api.get(f"/recommend/{user}", params={"n": 6}))
            model = shop.models[min(shop.models)]
            assert after == [str(i) for i in model.recommend([user], k=6, history={
                user: {item: 5.0}})["item"]]
            api.app.state.impressions.flush()
            assert api.delete(f"/users/{user}", headers=w).json()["deleted"] == {
                "events": len(seen) + 1, "impressions": 12, "lists": 0, "users": 1}
            assert api.get(f"/recommend/{user}").json()["source"] == "popular"
    finally:
        shop.store.close()
