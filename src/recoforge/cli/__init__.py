"""The ``recoforge`` command: demo, fit, recommend, predict, similar, explain, find, evaluate,
datasets, models.

Errors caused by input (bad files, unknown ids, invalid parameters, unwritable paths)
print one line on stderr and exit with status 2; output files are written to a temporary
path and renamed, so a failed command leaves nothing behind. ``--threads N`` (before the
command) sets the threads of every compute back-end.

Modules: :mod:`._app` (the Typer app, global options, error handling), :mod:`._options`
and :mod:`._files` (shared options, reading ids, writing outputs),
:mod:`.model_commands` (fit, recommend, predict), :mod:`.item_commands` (similar,
explain, find: readable by item title), :mod:`.eval_commands` (evaluate, demo, datasets,
models).
"""

from recoforge.cli import (  # noqa: F401 - register commands
    eval_commands,
    item_commands,
    model_commands,
    serve_commands,
    store_commands,
)
from recoforge.cli._app import app, main
from recoforge.cli._files import write_atomic

__all__ = ["app", "main", "write_atomic"]
