"""The ``recoforge`` command: demo, fit, recommend, predict, evaluate, datasets, models.

Errors caused by input (bad files, unknown ids, invalid parameters, unwritable paths)
print one line on stderr and exit with status 2; output files are written to a temporary
path and renamed, so a failed command leaves nothing behind. ``--threads N`` (before the
command) sets the threads of every compute back-end.

Modules: :mod:`._app` (the Typer app, global options, error handling), :mod:`._options`
and :mod:`._files` (shared options, reading ids, writing outputs),
:mod:`.model_commands` (fit, recommend, predict), :mod:`.eval_commands` (evaluate, demo,
datasets, models).
"""

from recoforge.cli import eval_commands, model_commands  # noqa: F401 - register commands
from recoforge.cli._app import app, main
from recoforge.cli._files import write_atomic

__all__ = ["app", "main", "write_atomic"]
