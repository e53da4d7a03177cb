"""The HTTP recommendation service: an app factory over a store and model versions.

>>> from recoforge.serving import Store                               # doctest: +SKIP
>>> from recoforge.serving.app import create_app
>>> app = create_app(Store.open("shop.db"), models_dir="models/")   # doctest: +SKIP

Everything a running app holds hangs off ``app.state`` (``store``, ``settings``,
``service`` (:class:`~recoforge.serving.runtime.ServiceState`: loaded and active model
versions, experiments), ``impressions``, ``metrics``): there are no module globals, so
tests make many apps side by side. Endpoints (Gorse's API is the anchor):

- data: ``PUT/GET/DELETE /users/{id}``, ``POST /users``, ``GET /users``; the same for
  ``/items`` (with categories and a hidden flag, ``PUT /items/{id}/hidden``);
  ``POST /feedback`` (a batch of typed events, ``Idempotency-Key`` header),
  ``GET /users/{id}/feedback``, ``GET /items/{id}/feedback``; ``DELETE /users/{id}``
  forgets a user (events, impressions, cached lists);
- recommendations: ``GET /recommend/{user}`` (``n``, ``offset``, ``category``, ``attr``,
  ``exclude``, ``exclude_seen``, ``diversity``, ``explore``), ``POST /recommend`` (an
  anonymous session), ``GET /items/{id}/similar``, ``GET /users/{id}/similar``,
  ``GET /recommend/{user}/explain/{item}``, ``GET /popular``, ``GET /latest``;
- operations: ``/health/live``, ``/health/ready``, ``/metrics`` (Prometheus), ``GET /models``,
  ``POST /models/{version}/activate`` (rollback = activate an older version),
  ``POST /experiments``, ``GET /experiments``, ``POST /experiments/{id}/stop``,
  ``GET /experiments/{id}/report``.

Security, limits and error answers: :mod:`.security`; request bodies: :mod:`.schemas`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from recoforge.errors import require

require("fastapi", "serve")

from fastapi import FastAPI  # noqa: E402

from recoforge._version import __version__  # noqa: E402
from recoforge.serving import routes_admin, routes_data, routes_recommend  # noqa: E402
from recoforge.serving.metrics import Metrics, MetricsMiddleware  # noqa: E402
from recoforge.serving.runtime import ImpressionLog, ServiceState  # noqa: E402
from recoforge.serving.schemas import ServeSettings  # noqa: E402
from recoforge.serving.security import (  # noqa: E402
    BodyLimit,
    install_error_handlers,
    read_access,
)

if TYPE_CHECKING:
    from recoforge.serving.store import Store

_log = logging.getLogger(__name__)
DEFAULT_SETTINGS = ServeSettings()


def create_app(store: Store, *, models_dir: str | Path | None = None,
               model_dir: str | Path | None = None,
               settings: ServeSettings = DEFAULT_SETTINGS) -> FastAPI:
    """A FastAPI app serving recommendations from ``store``.

    Parameters
    ----------
    store : Store
        The database (users, items, events, versions, experiments, keys); the app does not
        close it.
    models_dir : path, optional
        Root of the model-version directories (relative version paths resolve here).
    model_dir : path, optional
        A model directory served as is (no version) until a version is activated; without
        it the store's active version is served (and followed when it changes).
    settings : ServeSettings
        Key requirements and limits.

    Returns
    -------
    FastAPI
        With ``app.state.store``, ``settings``, ``service``, ``impressions``, ``metrics``.
    """
    impressions = ImpressionLog(store)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        impressions.close()

    app = FastAPI(title="recoforge", version=__version__, lifespan=lifespan,
                  description="Recommendations from a recoforge model over a live store: "
                              "feedback changes the next list without retraining.")
    metrics = Metrics()
    app.state.store = store
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.impressions = impressions
    app.state.service = ServiceState(store, settings, models_dir=models_dir,
                                     model_dir=model_dir)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    for module in (routes_data, routes_recommend, routes_admin):
        app.include_router(module.router)
    _mount_dashboard(app)
    return app


def _mount_dashboard(app: FastAPI) -> None:
    """The dashboard page and its JSON (:mod:`.dashboard`), keyed like read endpoints."""
    if importlib.util.find_spec("recoforge.serving.dashboard") is None:
        return
    from recoforge.serving.dashboard import dashboard_router

    state = app.state
    app.include_router(dashboard_router(lambda: state.store, lambda: state.service.active,
                                        dependencies=[read_access()]))


#: environment variables read by :func:`app_from_environment` (set by ``recoforge serve``)
ENV_DB, ENV_MODEL, ENV_MODELS_DIR, ENV_READ_KEY = (
    "RECOFORGE_SERVE_DB", "RECOFORGE_SERVE_MODEL", "RECOFORGE_SERVE_MODELS_DIR",
    "RECOFORGE_SERVE_READ_KEY")


def app_from_environment() -> FastAPI:
    """The app of ``recoforge serve`` in each uvicorn worker process (a factory: every
    worker opens its own store), configured by ``RECOFORGE_SERVE_*`` variables."""
    import os

    from recoforge.errors import ConfigError
    from recoforge.serving.store import Store

    url = os.environ.get(ENV_DB)
    if not url:
        raise ConfigError(f"${ENV_DB} is not set; start the service with `recoforge serve`")
    store = Store.open(url, create=False)
    settings = ServeSettings(read_requires_key=os.environ.get(ENV_READ_KEY) == "1")
    return create_app(store, models_dir=os.environ.get(ENV_MODELS_DIR) or None,
                      model_dir=os.environ.get(ENV_MODEL) or None, settings=settings)
