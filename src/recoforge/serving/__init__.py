"""The recommendation service: database store, model versions, HTTP app (extra ``serve``).

Modules: :mod:`.schema` (tables and migrations), :mod:`.store` (:class:`Store`, the
database: users, items, feedback events, model versions, experiments, impressions, lists,
API keys), :mod:`.registry` (model versions on disk), :mod:`.retrain` (fit from the
store, evaluate on a time-based holdout, register and activate). Nothing here holds
state in module globals: every object comes from a factory (``Store.open(url)``, ...).
"""

from recoforge.serving.store import Event, Store

__all__ = ["Event", "Store"]
