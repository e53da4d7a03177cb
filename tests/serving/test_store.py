"""The serving store on SQLite and PostgreSQL: the same tests on both (``store_url``)."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sqlalchemy")

from recoforge.errors import ConfigError, DataError, UnknownIdError  # noqa: E402
from recoforge.serving import schema  # noqa: E402
from recoforge.serving.store import Event, Store  # noqa: E402

NASTY_IDS = ["Robert'); DROP TABLE events;--", "a\"b", "100%_x", "\\x", "  spaced  ",
             "ünïcödé-用户", "' OR '1'='1", "a;b", "NULL"]


def test_open_creates_schema_and_reopens(store_url):
    with Store.open(store_url) as store:
        assert store.schema_version == schema.SCHEMA_VERSION
        assert store.ping()
        store.upsert_users([{"id": "u1", "attributes": {"age": 3}}])
    with Store.open(store_url, create=False) as again:
        assert again.get_user("u1")["attributes"] == {"age": 3}


def test_bare_path_is_sqlite(tmp_path):
    with Store.open(str(tmp_path / "sub" / "x.db")) as store:
        assert store.dialect == "sqlite"
        assert store.url.startswith("sqlite:///")
        assert (tmp_path / "sub" / "x.db").is_file()


def test_empty_database_without_create_is_refused(store_url):
    if store_url.startswith("sqlite"):
        path = Path(store_url.removeprefix("sqlite:///"))
        with pytest.raises(ConfigError, match="no such database file"):
            Store.open(store_url, create=False)
        assert not path.exists()
        path.touch()
    with pytest.raises(ConfigError, match="no recoforge schema"):
        Store.open(store_url, create=False)


def test_newer_schema_version_is_refused(store_url):
    with Store.open(store_url) as store, store._write() as conn:
        conn.execute(schema.schema_version.insert().values(version=99, applied=time.time()))
    with pytest.raises(ConfigError, match=rf"version 99.*version {schema.SCHEMA_VERSION}"):
        Store.open(store_url)


def test_migrations_apply_in_order_once_and_roll_back_on_failure(store_url, monkeypatch):
    import sqlalchemy as sa

    Store.open(store_url).close()  # version 1
    applied = []

    def add_table(conn):
        conn.execute(sa.text("CREATE TABLE extra_v2 (x INTEGER)"))
        applied.append(2)

    def broken(conn):
        conn.execute(sa.text("CREATE TABLE extra_v3 (x INTEGER)"))
        raise RuntimeError("migration 3 failed")

    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, add_table, broken))
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 3)
    with pytest.raises(RuntimeError, match="migration 3 failed"):
        Store.open(store_url)
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 1)  # what the database says, unchanged:
    with Store.open(store_url, create=False) as store, store._read() as conn:
        assert schema.current_version(conn) == 1
        assert not sa.inspect(conn).has_table("extra_v2")  # rolled back with the failure
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:2])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 2)
    with Store.open(store_url) as store, store._read() as conn:
        assert store.schema_version == 2 and sa.inspect(conn).has_table("extra_v2")
    with Store.open(store_url) as store:
        assert store.schema_version == 2
    assert applied == [2, 2]  # once in the failed attempt (rolled back), once for good


def test_bad_urls_are_refused():
    with pytest.raises(ConfigError, match="in-memory"):
        Store.open("sqlite://")
    with pytest.raises(ConfigError, match="unsupported database 'mysql'"):
        Store.open("mysql://x@localhost/db")
    with pytest.raises(ConfigError, match="empty"):
        Store.open("  ")


def test_sqlite_runs_wal_with_full_sync(sqlite_url):
    with Store.open(sqlite_url) as store, store._read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


# ---------------------------------------------------------------------- users and items
def test_users_upsert_get_list_page(store):
    assert store.upsert_users([{"id": f"u{i}", "attributes": {"i": i}} for i in range(5)]) == 5
    store.upsert_users([{"id": "u1", "attributes": {"i": 100}}])
    assert store.get_user("u1")["attributes"] == {"i": 100}
    assert store.get_user("nobody") is None
    assert [row["id"] for row in store.list_users(offset=1, limit=2)] == ["u1", "u2"]
    with pytest.raises(DataError, match=r"users\[0\]\.id"):
        store.upsert_users([{"id": ""}])
    with pytest.raises(DataError, match="offset"):
        store.list_users(offset=-1)


def test_items_hidden_categories_search_latest(store):
    store.upsert_items([
        {"id": "a", "attributes": {"title": "The Matrix"}, "categories": ["scifi"], "time": 3},
        {"id": "b", "attributes": {"title": "Heat"}, "categories": ["crime", "drama"],
         "time": 5},
        {"id": "c", "attributes": {"title": "Matrix Reloaded"}, "categories": ["scifi"]},
    ])
    assert store.set_hidden("a", True) and not store.set_hidden("zzz", True)
    assert store.hidden_items() == {"a"}
    assert store.items_in_category("scifi") == {"a", "c"}
    assert [row["id"] for row in store.list_items(category="scifi")] == ["c"]
    assert [row["id"] for row in store.list_items(include_hidden=True)] == ["a", "b", "c"]
    assert [row["id"] for row in store.search_items("MATRIX")] == ["a", "c"]
    assert [row["id"] for row in store.search_items("b")] == ["b"]  # the id matches
    assert [row["id"] for row in store.latest_items(5)] == ["b", "c"]
    assert store.get_item("b")["categories"] == ["crime", "drama"]
    assert store.delete_item("b") and store.get_item("b") is None
    assert not store.delete_item("b")
    with pytest.raises(DataError, match=r"items\[0\]\.categories"):
        store.upsert_items([{"id": "x", "categories": "scifi"}])
    with pytest.raises(DataError, match=r"items\[0\]\.hidden"):
        store.upsert_items([{"id": "x", "hidden": "yes"}])


def test_injection_shaped_ids_are_stored_verbatim(store):
    store.upsert_users([{"id": value, "attributes": {"v": value}} for value in NASTY_IDS])
    store.upsert_items([{"id": value, "attributes": {"v": value}} for value in NASTY_IDS])
    store.insert_events([Event(value, value, value) for value in NASTY_IDS])
    for value in NASTY_IDS:
        assert store.get_user(value)["attributes"] == {"v": value}
        assert store.get_item(value)["id"] == value
        assert store.user_history(value)[0] == [value]
        assert store.user_events(value)[0]["type"] == value
    assert sorted(row["id"] for row in store.list_users(limit=100)) == sorted(NASTY_IDS)
    assert [row["id"] for row in store.search_items("100%_")] == ["100%_x"]
    assert [row["id"] for row in store.search_items("%")] == ["100%_x"]  # not a wildcard
    assert [row["id"] for row in store.search_items("ÜNÏ")] == ["ünïcödé-用户"]
    assert [row["id"] for row in store.search_items("drop table")] == [NASTY_IDS[0]]
    assert store.count_events() == len(NASTY_IDS)
    assert store.delete_user(NASTY_IDS[0])["events"] == 1
    assert store.count_events() == len(NASTY_IDS) - 1


# ---------------------------------------------------------------------- events
def test_events_history_and_listing(store):
    n, replayed = store.insert_events([
        Event("u1", "a", "click", 1.0, 10.0), Event("u1", "b", "click", 1.0, 20.0),
        Event("u1", "a", "purchase", 3.0, 30.0), Event("u2", "b", "click", 1.0, 15.0)])
    assert (n, replayed) == (4, False)
    items, weights, last = store.user_history("u1")
    assert items == ["b", "a"]  # ordered by each item's last event
    np.testing.assert_allclose(weights, [1.0, 4.0])
    assert last == 30.0
    assert store.user_history("nobody") == ([], pytest.approx(np.zeros(0)), None)
    histories = store.histories(["u2", "nobody"])
    assert histories["u2"][0] == ["b"] and histories["nobody"][0] == []
    assert store.last_event_times(["u1", "u2", "nobody"]) == {"u1": 30.0, "u2": 15.0}
    assert [e["time"] for e in store.user_events("u1", limit=2)] == [30.0, 20.0]
    assert [e["user"] for e in store.item_events("b")] == ["u1", "u2"]
    assert store.popular_items(3) == [("a", 2), ("b", 2)]  # ties by id
    assert store.popular_items(5, since=16.0) == [("a", 1), ("b", 1)]
    frame = store.events_frame()
    assert list(frame.columns) == ["user", "item", "type", "weight", "time"]
    assert frame["time"].tolist() == [10.0, 15.0, 20.0, 30.0]
    assert store.events_frame(types=["purchase"])["item"].tolist() == ["a"]
    # events create the users and items they name, without attributes
    assert store.get_item("a") == {"id": "a", "attributes": {}, "categories": [],
                                   "hidden": False, "time": None}


def test_numpy_numbers_are_accepted(store):
    store.insert_events([Event("u", "a", weight=np.float32(2.5), time=np.int64(7))])
    assert store.user_events("u")[0]["weight"] == 2.5 and store.user_history("u")[2] == 7.0
    with pytest.raises(DataError, match="weight"):
        store.insert_events([Event("u", "a", weight=np.bool_(True))])


def test_event_without_time_is_now_and_popular_skips_hidden(store):
    before = time.time()
    store.insert_events([Event("u", "x"), Event("u", "x"), Event("u", "y")])
    assert before <= store.user_history("u")[2] <= time.time()
    store.set_hidden("x", True)
    assert store.popular_items(5) == [("y", 1)]
    assert store.popular_items(5, include_hidden=True)[0] == ("x", 2)


@pytest.mark.parametrize("event, field", [
    (Event("", "a"), r"events\[1\]\.user"), (Event("u", 3), r"events\[1\]\.item"),  # type: ignore[arg-type]
    (Event("u", "a", weight=math.nan), r"events\[1\]\.weight"),
    (Event("u", "a", time=math.inf), r"events\[1\]\.time"),
    (Event("u", "a", type=""), r"events\[1\]\.type")])
def test_bad_event_names_its_field_and_stores_nothing(store, event, field):
    with pytest.raises(DataError, match=field):
        store.insert_events([Event("u", "ok"), event])
    assert store.count_events() == 0


def test_idempotency_key_replays_without_inserting(store):
    batch = [Event("u", "a"), Event("u", "b")]
    assert store.insert_events(batch, idempotency_key="req-1") == (2, False)
    assert store.insert_events(batch + batch, idempotency_key="req-1") == (2, True)
    assert store.insert_events([Event("u", "c")], idempotency_key="req-2") == (1, False)
    assert store.insert_events(batch) == (2, False)  # no key: always inserted
    assert store.count_events() == 5


def test_idempotency_key_under_concurrent_retries(store):
    results = []

    def send() -> None:
        results.append(store.insert_events([Event("u", "a"), Event("u", "b")],
                                           idempotency_key="same"))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [(2, False)] + [(2, True)] * 5
    assert store.count_events() == 2


def test_concurrent_writers_all_land(store):
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for i in range(25):
                store.insert_events([Event(f"w{worker}", f"i{i}")])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert store.count_events() == 100


def test_import_rows_is_one_transaction(store, monkeypatch):
    users = [{"id": "u1", "attributes": {"a": 1}}]
    items = [{"id": "i1", "attributes": {"t": "x"}, "categories": ["c"]}]
    events = [Event("u1", "i1", "rating", 4.0, 1.0), Event("u2", "i2", "rating", 2.0, 2.0)]
    done = store.import_rows(users, items, events, idempotency_key="load-1")
    assert done == {"users": 1, "items": 1, "events": 2, "replayed": False}
    assert store.get_user("u2") is not None  # created by its event
    assert store.import_rows(users, items, events, idempotency_key="load-1")["replayed"]
    assert store.count_events() == 2

    def fail(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "_create_missing", fail)  # fails after users and items
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.import_rows([{"id": "new-user"}], [{"id": "new-item"}], events)
    assert store.get_user("new-user") is None and store.get_item("new-item") is None
    assert store.count_events() == 2


def test_attributes_must_be_json(store):
    with pytest.raises(DataError, match=r"users\[0\]\.attributes: not storable as JSON"):
        store.upsert_users([{"id": "u", "attributes": {"x": {1, 2}}}])
    with pytest.raises(DataError, match=r"items\[0\]\.attributes: not storable"):
        store.upsert_items([{"id": "i", "attributes": {"x": float("nan")}}])
    with pytest.raises(DataError, match=r"items\[0\]\.attributes: expected an object"):
        store.upsert_items([{"id": "i", "attributes": ["x"]}])


# ---------------------------------------------------------------------- forget
def test_delete_user_removes_exactly_that_users_rows(store):
    store.upsert_users([{"id": "gone"}, {"id": "stays"}, {"id": "gone2"}])
    store.insert_events([Event("gone", "a", time=1.0), Event("stays", "a", time=2.0),
                         Event("gone2", "a", time=3.0), Event("gone", "b", time=4.0)])
    version = store.add_model_version("m", "/p", {})
    store.log_impressions([{"request_id": "r", "user": user, "item": "a", "position": 0,
                            "version": version} for user in ("gone", "stays", "gone2")])
    store.put_lists(version, {"gone": (["a"], [1.0]), "stays": (["b"], [2.0])}, 5.0)
    assert store.delete_user("gone") == {"events": 2, "impressions": 1, "lists": 1,
                                         "users": 1}
    assert store.get_user("gone") is None and store.user_history("gone")[0] == []
    assert store.get_list(version, "gone") is None
    assert store.get_user("stays") is not None and store.get_user("gone2") is not None
    assert store.events_frame()["user"].tolist() == ["stays", "gone2"]
    assert store.get_list(version, "stays") == (["b"], [2.0], 5.0)
    assert store.delete_user("gone") == {"events": 0, "impressions": 0, "lists": 0,
                                         "users": 0}


# ---------------------------------------------------------------------- versions, experiments
def test_model_versions_exactly_one_active(store):
    assert store.active_version() is None
    first = store.add_model_version("ease", "/m/v1", {"ndcg@10": 0.3}, note="first")
    second = store.add_model_version("als", "/m/v2", {"ndcg@10": 0.4})
    store.activate_version(first)
    store.activate_version(second)
    assert store.active_version()["id"] == second
    assert [v["active"] for v in store.model_versions()] == [False, True]
    assert store.model_version(first)["note"] == "first"
    with pytest.raises(UnknownIdError, match="model version 99"):
        store.activate_version(99)
    assert store.active_version()["id"] == second


def test_experiment_lifecycle_and_outcomes(store):
    a = store.add_model_version("m", "/a", {})
    b = store.add_model_version("m", "/b", {})
    with pytest.raises(ConfigError, match="sum to 0.9"):
        store.create_experiment("x", {"A": {"version": a, "share": 0.5},
                                      "B": {"version": b, "share": 0.4}})
    with pytest.raises(UnknownIdError, match=r"variants\.B\.version"):
        store.create_experiment("x", {"A": {"version": a, "share": 0.5},
                                      "B": {"version": 42, "share": 0.5}})
    experiment = store.create_experiment("x", {"A": {"version": a, "share": 0.5},
                                               "B": {"version": b, "share": 0.5}})
    with pytest.raises(ConfigError, match="is running"):
        store.create_experiment("y", {"A": {"version": a, "share": 1.0}})
    assert store.active_experiment()["id"] == experiment
    day = 86_400.0
    store.log_impressions([
        {"request_id": "r1", "user": "u1", "item": "i1", "position": 0, "version": a,
         "experiment": experiment, "variant": "A", "time": day},
        {"request_id": "r2", "user": "u2", "item": "i1", "position": 0, "version": b,
         "experiment": experiment, "variant": "B", "time": day + 10},
        {"request_id": "r3", "user": "u3", "item": "i2", "position": 1, "version": b,
         "experiment": experiment, "variant": "B", "time": 2 * day}])
    store.insert_events([Event("u1", "i1", "click", time=day + 5),
                         Event("u1", "i1", "purchase", time=day + 6),
                         Event("u2", "i1", "click", time=day + 1),  # before its impression
                         Event("u3", "i1", "click", time=2 * day + 1)])  # other item
    outcomes = store.experiment_outcomes(experiment)
    assert outcomes["variant"].tolist() == ["A", "B", "B"]
    assert outcomes["clicked"].tolist() == [True, False, False]
    assert outcomes["converted"].tolist() == [True, False, False]
    assert [str(d) for d in outcomes["day"]] == ["1970-01-02", "1970-01-02", "1970-01-03"]
    assert store.experiment_outcomes(experiment, window=2.0)["clicked"].tolist() == [
        False, False, False]
    store.stop_experiment(experiment)
    assert store.active_experiment() is None


def test_precomputed_lists_replace(store):
    assert store.put_lists(1, {"u": (["a", "b"], [2.0, 1.0])}, 10.0) == 1
    store.put_lists(1, {"u": (["c"], [3.0])}, 20.0)
    assert store.get_list(1, "u") == (["c"], [3.0], 20.0)
    assert store.get_list(2, "u") is None
    assert store.delete_lists(1) == 1


def test_api_keys_hashed_verified_revoked(store):
    assert not store.has_api_keys()
    key = store.create_api_key("ci", "write")
    assert store.has_api_keys()
    assert store.verify_api_key(key) == "write"
    assert store.verify_api_key(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert store.verify_api_key("rf_nope_x") is None and store.verify_api_key("") is None
    with store._read() as conn:
        stored = [tuple(row) for row in conn.execute(schema.api_keys.select())]
    assert not any(key in str(value) for row in stored for value in row)
    with pytest.raises(ConfigError, match="exists"):
        store.create_api_key("ci", "admin")
    with pytest.raises(ConfigError, match="scope 'root'"):
        store.create_api_key("other", "root")
    assert store.revoke_api_key("ci") and not store.revoke_api_key("ci")
    assert store.verify_api_key(key) is None and not store.has_api_keys()
    assert store.verify_api_key(store.create_api_key("ci", "admin")) == "admin"


def test_upserts_keep_what_a_row_leaves_out_and_the_last_repeat_wins(store):
    store.upsert_items([{"id": "a", "attributes": {"t": 1}, "categories": ["x"],
                         "time": 5.0}])
    store.set_hidden("a", True)
    store.upsert_items([{"id": "a", "attributes": {"t": 2}}, {"id": "b"}])
    assert store.get_item("a") == {"id": "a", "attributes": {"t": 2}, "categories": ["x"],
                                   "hidden": True, "time": 5.0}
    store.upsert_items([{"id": "a", "hidden": False, "categories": []}])
    assert store.get_item("a")["hidden"] is False and store.get_item("a")["categories"] == []
    store.upsert_users([{"id": "u", "attributes": {"v": 1}}, {"id": "u",
                                                             "attributes": {"v": 2}}])
    store.upsert_users([{"id": "u"}])
    assert store.get_user("u")["attributes"] == {"v": 2}
    assert store.import_rows(items=[{"id": "b", "attributes": {"k": 1}},
                                    {"id": "b", "attributes": {"k": 3}}])["items"] == 2
    assert store.get_item("b")["attributes"] == {"k": 3}
