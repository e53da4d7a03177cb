"""The mutable part of a running service: which model versions are loaded and active,
experiment assignment, and the impression log.

:class:`ServiceState` hangs off ``app.state.service`` (one per app; nothing global).
Requests take a reference to a :class:`~recoforge.serving.predictor.Predictor` once and use
it to the end, so activating another version is one reference replacement: in-flight
requests finish on the predictor they started with, new ones get the new one. Loading
happens before the swap, outside the request path of anyone else.

Several worker processes share one database: each notices a version activated elsewhere
(another worker, ``recoforge retrain``) within ``refresh_seconds`` by reading the store's
active version, and loads it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recoforge.errors import ArtifactError, UnknownIdError
from recoforge.serving.experiments import assign_variant
from recoforge.serving.predictor import Predictor
from recoforge.serving.schemas import ServeSettings

if TYPE_CHECKING:
    from recoforge.serving.store import Store

_log = logging.getLogger(__name__)

#: how often a worker re-reads the active version and experiment from the store
REFRESH_SECONDS = 2.0


class HiddenItems:
    """The store's hidden items, re-read at most every ``ttl`` seconds (and after
    :meth:`invalidate`): a hidden flag set through this app applies to its next request,
    one set elsewhere (another worker) within ``ttl``."""

    def __init__(self, store: Store, ttl: float) -> None:
        self.store = store
        self.ttl = ttl
        self._value: frozenset[str] = frozenset()
        self._read = -float("inf")

    def __call__(self) -> frozenset[str]:
        now = time.monotonic()
        if now - self._read >= self.ttl:
            self._value = frozenset(self.store.hidden_items())
            self._read = now
        return self._value

    def invalidate(self) -> None:
        self._read = -float("inf")


class ServiceState:
    """Loaded predictors, the active one, and the running experiment of one app.

    Parameters
    ----------
    store : Store
    settings : ServeSettings
    models_dir : path, optional
        Where relative model-version paths are resolved.
    model_dir : path, optional
        A model directory to serve as is (version None) until a version is activated.
    """

    def __init__(self, store: Store, settings: ServeSettings, *,
                 models_dir: str | Path | None = None, model_dir: str | Path | None = None,
                 refresh_seconds: float = REFRESH_SECONDS) -> None:
        self.store = store
        self.settings = settings
        self.models_dir = None if models_dir is None else Path(models_dir)
        self.refresh_seconds = refresh_seconds
        self._loaded: OrderedDict[int, Predictor] = OrderedDict()
        self._lock = threading.Lock()
        self._checked = 0.0
        self._experiment: dict[str, Any] | None = None
        self._pinned = model_dir is not None
        self._active: Predictor | None = None
        self.hidden = HiddenItems(store, settings.hidden_ttl)
        if model_dir is not None:
            self._active = Predictor.from_dir(model_dir, store, hidden=self.hidden)
        else:
            self.refresh(force=True)

    # ------------------------------------------------------------------ versions
    @property
    def active(self) -> Predictor | None:
        """The predictor answering requests outside experiments (None: no model yet)."""
        self.refresh()
        return self._active

    def _path(self, row: Mapping[str, Any]) -> Path:
        path = Path(str(row["path"]))
        if not path.is_absolute() and self.models_dir is not None:
            path = self.models_dir / path
        return path

    def predictor(self, version: int) -> Predictor:
        """The predictor of ``version``, loaded on first use (at most
        ``max_loaded_versions`` kept; the active one is never evicted)."""
        with self._lock:
            found = self._loaded.get(version)
            if found is not None:
                self._loaded.move_to_end(version)
                return found
        row = self.store.model_version(version)
        if row is None:
            raise UnknownIdError(f"model version {version} does not exist")
        try:
            loaded = Predictor.from_dir(self._path(row), self.store, version=version,
                                        hidden=self.hidden)
        except FileNotFoundError as exc:
            raise ArtifactError(f"model version {version}: directory {row['path']} is "
                                f"missing") from exc
        with self._lock:
            loaded = self._loaded.setdefault(version, loaded)
            active = None if self._active is None else self._active.version
            while len(self._loaded) > max(1, self.settings.max_loaded_versions):
                victims = [v for v in self._loaded if v not in (version, active)]
                if not victims:
                    break
                del self._loaded[victims[0]]
        return loaded

    def activate(self, version: int) -> Predictor:
        """Load ``version``, record it as active in the store, and swap it in."""
        loaded = self.predictor(version)
        self.store.activate_version(version)
        self._active = loaded  # one reference replacement: in-flight requests keep theirs
        self._pinned = False
        _log.info("model version %d (%s) is active", version, loaded.name)
        return loaded

    def refresh(self, force: bool = False) -> None:
        """Follow the store's active version and experiment (every ``refresh_seconds``)."""
        now = time.monotonic()
        if not force and now - self._checked < self.refresh_seconds:
            return
        self._checked = now
        self._experiment = self.store.active_experiment()
        if self._pinned:
            return
        row = self.store.active_version()
        if row is None:
            return
        if self._active is None or self._active.version != row["id"]:
            try:
                self._active = self.predictor(int(row["id"]))
            except (ArtifactError, OSError) as exc:  # keep serving the current one
                _log.error("cannot load active model version %s: %s", row["id"], exc)

    def settled(self) -> bool:
        """Whether :meth:`route` answers from memory now: no refresh due and every variant
        of the running experiment loaded (otherwise it reads the store or loads a model)."""
        if time.monotonic() - self._checked >= self.refresh_seconds:
            return False
        experiment = self._experiment
        if experiment is None:
            return True
        loaded = self._loaded
        return all(int(v["version"]) in loaded for v in experiment["variants"].values())

    def loaded_versions(self) -> set[int]:
        with self._lock:
            return set(self._loaded)

    # ------------------------------------------------------------------ experiments
    def experiment(self) -> dict[str, Any] | None:
        self.refresh()
        return self._experiment

    def invalidate(self) -> None:
        """Re-read the store on the next request (after an admin change)."""
        self._checked = 0.0

    def route(self, user: str | None) -> tuple[Predictor | None, int | None, str | None]:
        """(predictor, experiment id, variant) answering ``user``: the experiment's variant
        by the stable hash of the user id when one runs, else the active version."""
        experiment = self.experiment()
        active = self.active
        if experiment is None or user is None:
            return active, None, None
        label = assign_variant(user, str(experiment["name"]), experiment["variants"])
        version = int(experiment["variants"][label]["version"])
        if active is not None and active.version == version:
            return active, int(experiment["id"]), label
        try:
            return self.predictor(version), int(experiment["id"]), label
        except (UnknownIdError, ArtifactError, OSError) as exc:
            _log.error("experiment %s variant %s: %s; serving the active version",
                       experiment["id"], label, exc)
            return active, None, None


class ImpressionLog:
    """Writes served lists to the store's impressions in the background, in batches.

    ``add`` never blocks a request on the database; a daemon thread (started on first
    use) writes what has queued every ``interval`` seconds or ``batch`` rows. ``flush``
    waits until everything added so far is written; ``close`` flushes and stops.
    Memory: O(queued rows), bounded by ``max_queued`` (beyond it rows are dropped and
    counted in ``dropped``).
    """

    def __init__(self, store: Store, *, batch: int = 1000, interval: float = 0.2,
                 max_queued: int = 100_000) -> None:
        self.store = store
        self.batch = batch
        self.interval = interval
        self._queue: queue.Queue[Sequence[Mapping[str, Any]] | None] = queue.Queue(max_queued)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.dropped = 0

    def add(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        self._ensure_thread()
        try:
            self._queue.put_nowait(rows)
        except queue.Full:
            self.dropped += len(rows)

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="impressions",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.interval)
            except queue.Empty:
                continue
            pending: list[Mapping[str, Any]] = []
            taken, stop = 1, first is None
            if first is not None:
                pending.extend(first)
                taken, stop = self._drain(pending, taken)
                if len(pending) < self.batch and not stop:
                    # gather a batch for up to ``interval``: one write for many requests,
                    # not one per request (and no wake-up of this thread per request)
                    time.sleep(self.interval)
                    taken, stop = self._drain(pending, taken)
            try:
                if pending:
                    self.store.log_impressions(pending)
            except Exception:  # noqa: BLE001 - a logging failure must not kill the writer
                _log.exception("could not write %d impressions", len(pending))
            finally:
                for _ in range(taken):
                    self._queue.task_done()
            if stop:
                return

    def _drain(self, pending: list[Mapping[str, Any]], taken: int) -> tuple[int, bool]:
        """Move queued rows into ``pending`` up to a batch: (queue items taken, stop seen)."""
        while len(pending) < self.batch:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            taken += 1
            if more is None:
                return taken, True
            pending.extend(more)
        return taken, False

    def flush(self) -> None:
        """Block until every row added so far is written (or failed and logged)."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.join()

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=10)
