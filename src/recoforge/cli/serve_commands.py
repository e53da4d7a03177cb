"""``recoforge serve``, ``precompute`` and ``api-key``: run the HTTP service and manage it.

``serve`` runs the app of :mod:`recoforge.serving.app` under uvicorn (``--workers N``
processes, each with its own connection pool, following the database's active model
version). ``precompute`` writes top-N lists of every user for the active version (served
while fresher than the user's last event). ``api-key create`` prints a new key once;
the database keeps only its salted hash.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from recoforge.cli._app import app, console
from recoforge.errors import ConfigError

DbOpt = Annotated[str, typer.Option(
    "--db", help="Database: a SQLite file path or a SQLAlchemy URL "
                 "(postgresql+psycopg://...).")]
ServeDbOpt = Annotated[str, typer.Option(
    "--db", help="Database: a SQLite file path or a SQLAlchemy URL "
                 "(postgresql+psycopg://...); created when missing.")]
ModelsDirOpt = Annotated[Path | None, typer.Option(
    "--models-dir", help="Root of the registered model versions (relative paths).")]

api_key_app = typer.Typer(help="Create, list and revoke API keys of the service.",
                          no_args_is_help=True)
app.add_typer(api_key_app, name="api-key")


def _open(db: str, create: bool = False):  # noqa: ANN202 - a Store
    from recoforge.errors import require

    require("sqlalchemy", "serve")
    from recoforge.serving.store import Store

    return Store.open(db, create=create)


@app.command()
def serve(
    db: ServeDbOpt = "recoforge.db",
    model: Annotated[Path | None, typer.Option(
        "--model", help="Serve this model directory (default: the database's active "
                        "version, followed when it changes).")] = None,
    models_dir: ModelsDirOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option("--workers", min=1,
                                         help="Worker processes.")] = 1,
    api_key_required: Annotated[bool, typer.Option(
        "--api-key-required", help="Read endpoints need an API key too (write and admin "
                                   "endpoints always do).")] = False,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
) -> None:
    """Serve recommendations over HTTP (OpenAPI at /docs, dashboard at /dashboard)."""
    from recoforge.errors import require
    from recoforge.serving import app as serving_app

    uvicorn = require("uvicorn", "serve")
    if model is not None and not (model / "manifest.json").is_file():
        raise ConfigError(f"--model {model}: not a model directory (no manifest.json); "
                          f"write one with `recoforge fit --out`")
    with _open(db, create=True) as store:
        if model is None and store.active_version() is None:
            console.print("no active model version yet: lists are the most popular items "
                          "until one is activated (`recoforge retrain`, or --model DIR)")
    os.environ[serving_app.ENV_DB] = db
    os.environ[serving_app.ENV_MODEL] = "" if model is None else str(model.resolve())
    os.environ[serving_app.ENV_MODELS_DIR] = "" if models_dir is None else str(
        models_dir.resolve())
    os.environ[serving_app.ENV_READ_KEY] = "1" if api_key_required else "0"
    uvicorn.run("recoforge.serving.app:app_from_environment", factory=True, host=host,
                port=port, workers=workers, log_level=log_level)


@app.command()
def precompute(
    db: DbOpt,
    version: Annotated[int | None, typer.Option(
        "--version", help="Model version (default: the active one).")] = None,
    n: Annotated[int, typer.Option("--n", min=1, max=10_000,
                                   help="List length per user.")] = 100,
    models_dir: ModelsDirOpt = None,
) -> None:
    """Write top-N lists of every user for a model version (a batch job)."""
    from recoforge.serving.predictor import precompute as run
    from recoforge.serving.runtime import ServiceState
    from recoforge.serving.schemas import ServeSettings

    with _open(db) as store:
        row = store.active_version() if version is None else store.model_version(version)
        if row is None:
            raise ConfigError("no active model version; pass --version or activate one"
                              if version is None else f"model version {version} does not "
                                                      f"exist")
        state = ServiceState(store, ServeSettings(), models_dir=models_dir)
        written = run(store, state.predictor(int(row["id"])), n=n)
    console.print(f"wrote {written} lists of model version {row['id']}")


@api_key_app.command("create")
def api_key_create(
    name: Annotated[str, typer.Option("--name", help="A name to revoke the key by.")],
    db: DbOpt,
    scope: Annotated[str, typer.Option(
        "--scope", help="read, write (data and feedback) or admin (model versions, "
                        "experiments).")] = "write",
) -> None:
    """Create an API key and print it (shown only this once)."""
    with _open(db, create=True) as store:
        key = store.create_api_key(name, scope)
    typer.echo(key)


@api_key_app.command("revoke")
def api_key_revoke(name: Annotated[str, typer.Option("--name")],
                   db: DbOpt) -> None:
    """Revoke the API key of that name."""
    with _open(db) as store:
        if not store.revoke_api_key(name):
            raise ConfigError(f"no active API key is named {name!r}")
    console.print(f"revoked {name}")


@api_key_app.command("list")
def api_key_list(db: DbOpt) -> None:
    """Names, scopes and state of the API keys (never the keys)."""
    with _open(db) as store:
        for row in store.api_keys():
            state = "revoked" if row["revoked"] is not None else "active"
            console.print(f"{row['name']}\t{row['scope']}\t{state}")
