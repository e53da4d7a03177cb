"""Shared set-up of the app tests: a small shop in a store, models fitted and registered."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import recoforge as rf
from recoforge.data.synthetic import category_demo
from recoforge.serving.store import Event, Store


@dataclass
class Shop:
    """A store filled with the demo shop, model versions on disk and API keys."""

    store: Store
    data: Any
    models_dir: Path
    models: dict[int, Any] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)

    def headers(self, scope: str = "write") -> dict[str, str]:
        return {"X-API-Key": self.keys[scope]}


def demo_data(n_users: int = 80, n_items: int = 60, seed: int = 0) -> Any:
    return category_demo(n_users=n_users, n_items=n_items, ratings_per_user=(5, 12),
                         seed=seed)


def fill(store: Store, data: Any) -> None:
    """Items (title, category) and every rating as a ``rating`` event."""
    info = data.item_info
    store.upsert_items([{"id": str(item), "attributes": {"title": str(row["title"])},
                         "categories": [str(row["category"])], "time": float(k)}
                        for k, (item, row) in enumerate(info.iterrows())])
    frame = data.interactions.to_frame()
    store.insert_events([Event(str(r.user), str(r.item), "rating", float(r.value),
                               float(r.timestamp)) for r in frame.itertuples()])


def register(shop: Shop, name: str, **params: Any) -> int:
    """Fit ``name`` on the shop's data, save it under models_dir and register it."""
    model = rf.create(name, **params).fit(shop.data)
    path = shop.models_dir / f"m{len(shop.models) + 1}-{name}"
    model.save(str(path), include_history=True)
    version = shop.store.add_model_version(name, str(path), {})
    shop.models[version] = model
    return version


def make_shop(root: Path, url: str | None = None, models: tuple[tuple[str, dict], ...] = (
        ("item_knn", {"k": 20}),)) -> Shop:
    """A filled store with the given models registered, the first one active, and keys
    of every scope."""
    store = Store.open(url or f"sqlite:///{root / 'serving.db'}")
    data = demo_data()
    fill(store, data)
    shop = Shop(store, data, root / "models")
    shop.models_dir.mkdir(exist_ok=True)
    for name, params in models:
        register(shop, name, **params)
    store.activate_version(min(shop.models))
    for scope in ("read", "write", "admin"):
        shop.keys[scope] = store.create_api_key(f"test-{scope}", scope)
    return shop


def client(shop: Shop, **settings: Any) -> Any:
    from fastapi.testclient import TestClient

    from recoforge.serving.app import create_app
    from recoforge.serving.schemas import ServeSettings

    app = create_app(shop.store, models_dir=shop.models_dir,
                     settings=ServeSettings(**settings))
    return TestClient(app, raise_server_exceptions=False)


def items_of(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [entry["item"] for entry in response.json()["items"]]
