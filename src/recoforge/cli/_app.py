"""The ``recoforge`` Typer application, its global options and its error handling.

Every command is registered on :data:`app` by the modules of this package. :func:`main`
runs it so that a user never sees a traceback for something they caused:

- a :class:`~recoforge.errors.RecoforgeError`, an operating-system error on a file the user
  named (missing, unwritable, a folder where a file was expected, a full disk) and a
  MemoryError print one line ``error: ...`` on stderr and exit with status 2;
- usage errors (unknown options, bad option values, a missing option) print one line too,
  with the command's ``--help`` hint, and exit 2;
- anything else is a bug: it keeps its traceback (exit 1).

Messages written for the Python API name keyword arguments (``pass encoding=``); the CLI
re-words them to the flag that does the same thing (``pass --encoding``), so that the
advice printed is advice the user can follow.
"""

from __future__ import annotations

import importlib
import re
import sys
import warnings
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from recoforge.errors import RecoforgeError

app = typer.Typer(help="recoforge: from raw interactions to recommendations.",
                  no_args_is_help=True, pretty_exceptions_enable=False,
                  add_completion=False)
console = Console()
err_console = Console(stderr=True)

#: exit status of errors caused by input, configuration, files or resources
USER_ERROR = 2

#: API advice -> the CLI flag that does the same (applied to every one-line error)
CLI_WORDING: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement) for pattern, replacement in (
        (r"pass encoding= \(e\.g\. ('[^']+'); CLI: --encoding\)", r"pass --encoding (e.g. \1)"),
        (r"pass [\w.]+=[^\s(;,]* \(CLI: (--[\w-]+)\)", r"pass \1"),
        (r"pass overwrite=True", "pass --overwrite"),
        (r"overwrite=True", "--overwrite"),
        (r"pass encoding=", "pass --encoding"),
        (r"pass path= to its folder or download=True", "pass --path to its folder or "
                                                        "--download"),
        (r"pass path=", "pass --path"),
        (r"download=True", "--download"),
        (r"missing='mean' or 'zero' \(numeric_missing= in build_features\)",
         "--numeric-missing mean (or zero)"),
        (r"numeric_missing='(\w+)'", r"--numeric-missing \1"),
        (r"pass history= for new users, or unknown='skip' / 'fallback'",
         "pass --unknown skip, or --unknown fallback with a model fitted with --fallback"),
        (r"unknown='fallback' needs a model fitted with fit\(\.\.\., fallback=\)",
         "--unknown fallback needs a model fitted with --fallback NAME"),
        (r"load it with load_model\(path, history=\.\.\.\), or save it with "
         r"include_history=True", "fit it again without --no-history"),
        (r"include_history=True", "--history (the default of fit)"),
        (r"attach them with recoforge\.data\.build_features\(\.\.\.\)",
         "pass --item-features FILE with --text-col, --label-col, --category-col or "
         "--numeric-col"),
        (r"pass kind='implicit' \(CLI: --implicit\)", "pass --implicit"),
    ))


def cli_wording(message: str) -> str:
    """``message`` with API keyword advice replaced by the equivalent CLI flags."""
    for pattern, replacement in CLI_WORDING:
        message = pattern.sub(replacement, message)
    return message


def fail(message: str) -> None:
    """Print one ``error:`` line on stderr and exit with status 2."""
    text = " ".join(cli_wording(message).split())  # one line, whatever the message held
    err_console.print(f"error: {text}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(USER_ERROR)


def os_error_message(exc: OSError) -> str:
    """``path: reason`` for an OSError (``Permission denied``, ``Is a directory``, ...)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    names = [str(name) for name in (exc.filename, exc.filename2) if name is not None]
    return f"{' -> '.join(names)}: {reason}" if names else reason


def progress_bar() -> Progress:
    """A transient progress bar on stderr, shown only when stderr is a terminal."""
    return Progress(TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                    console=err_console, transient=True, disable=not err_console.is_terminal)


def _show_warning(message: Any, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """Warnings as one ``warning:`` line, without the source line Python adds."""
    text = " ".join(cli_wording(str(message)).split())
    err_console.print(f"warning: {text}", markup=False, highlight=False, soft_wrap=True)


@app.callback()
def _global_options(
    threads: Annotated[int | None, typer.Option(
        "--threads", min=0, help="Threads for every compute back-end (numba, BLAS, torch); "
        "0: every core. Default: $RECOFORGE_NUM_THREADS, else every core.")] = None,
) -> None:
    """recoforge: from raw interactions to recommendations."""
    if threads is not None:
        from recoforge.threads import set_num_threads

        set_num_threads(threads)


def _usage_error(exc: Any) -> str:
    """One line for a usage error, with the command's help hint when there is one."""
    text = exc.format_message()
    if text.startswith("No such option: --threads"):
        return "--threads goes before the command: recoforge --threads N COMMAND ..."
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        text += f" (see '{ctx.command_path} --help')"
    return text


def _click_exception_type() -> type[Exception]:
    """The ClickException class of the click that typer runs on: vendored inside typer
    since 0.20, the ``click`` package before (typer >= 0.12 is supported)."""
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            return importlib.import_module(name).ClickException
        except (ImportError, AttributeError):
            continue
    raise ImportError("typer's click is missing")  # pragma: no cover - broken install


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``recoforge`` command (see the module docstring for exit codes).

    Parameters
    ----------
    args : list of str, optional
        The arguments (default: ``sys.argv[1:]``).
    """
    from recoforge import cli as _commands  # noqa: F401 - registers every command

    argv = list(sys.argv[1:] if args is None else args)
    if not argv:  # help, as no_args_is_help, with the status of a usage error
        app(args=["--help"], prog_name="recoforge", standalone_mode=False)
        sys.exit(USER_ERROR)
    usage_error = _click_exception_type()
    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        status = app(args=argv, prog_name="recoforge", standalone_mode=False)
    except usage_error as exc:
        fail(_usage_error(exc))
    except typer.Abort:
        fail("aborted")
    except RecoforgeError as exc:
        fail(str(exc))
    except MemoryError as exc:
        fail(f"out of memory{': ' + str(exc) if str(exc) else ''}; use a smaller dataset, "
             f"model or --k")
    except OSError as exc:
        fail(os_error_message(exc))
    finally:
        warnings.showwarning = previous
    sys.exit(status if isinstance(status, int) else 0)
