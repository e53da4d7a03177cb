"""Where ``fit`` and ``evaluate`` read their data: a file, a dataset folder or a name.

One set of options for both commands: the file options (columns, separator, encoding...)
apply to interaction files only; ``--path``, ``--download`` and ``--n-interactions`` apply
to registered dataset names only; each is refused, naming the flag, where it does not
apply.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from recoforge.cli._options import load_interactions
from recoforge.errors import ConfigError

DataSource = Annotated[str, typer.Option("--data", help="Interactions file, dataset folder "
                                         "or dataset name (see `recoforge datasets`).")]
DatasetPath = Annotated[Path | None, typer.Option(
    "--path", help="Folder of a named dataset (e.g. where ml-100k was extracted).")]
DownloadOpt = Annotated[bool, typer.Option(
    "--download", help="Download a named public dataset when it is not cached.")]
NInteractions = Annotated[int | None, typer.Option(
    "--n-interactions", min=1, help="Size of a generated dataset that needs one (scalable).")]
#: loader keyword -> the option that sets it
DATASET_OPTIONS = {"path": "--path", "download": "--download",
                   "n_interactions": "--n-interactions"}


def load_data(data: str, *, path: Path | None, download: bool, n_interactions: int | None,
              **file_options: Any) -> Any:
    """The Dataset a command's ``--data`` and options name (see the module docstring)."""
    dataset_options = {key: value for key, value in (
        ("path", path), ("download", download or None), ("n_interactions", n_interactions))
        if value is not None}
    return dataset_from_options(data, file_options, dataset_options)


def dataset_key(name: str) -> str:
    """The registry key of a dataset name (``movielens-1m`` -> ``ml-1m``)."""
    from recoforge.data import loaders

    key = re.sub(r"^movielens-?", "ml-", name.strip().lower())
    return key if key in loaders._loaders() else f"ml-{key}"


def dataset_loader(name: str) -> Any:
    """The loader behind a registered dataset name (None for any other text)."""
    from recoforge.data import loaders

    return loaders._loaders().get(dataset_key(name))


def check_dataset_options(name: str, options: dict[str, Any]) -> None:
    """Options a dataset's loader lacks, or arguments it needs, named as CLI flags."""
    loader = dataset_loader(name)
    if loader is None:
        if options:
            flag = DATASET_OPTIONS[next(iter(options))]
            raise ConfigError(f"{flag} applies to a registered dataset name (see `recoforge "
                              f"datasets`), not to --data {name!r}")
        return
    parameters = inspect.signature(loader).parameters
    for key in options:
        if key not in parameters:
            raise ConfigError(f"{DATASET_OPTIONS[key]} does not apply to dataset {name!r}")
    for parameter in parameters.values():
        needed = parameter.default is inspect.Parameter.empty and parameter.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        if needed and parameter.name not in options:
            if parameter.name == "path":
                from recoforge.data.loaders import where_to_get

                raise ConfigError(where_to_get(dataset_key(name)))
            flag = DATASET_OPTIONS.get(parameter.name, parameter.name)
            raise ConfigError(f"dataset {name!r} needs {flag} (see `recoforge datasets`)")


def dataset_from_options(data: str, file_options: dict[str, Any],
                     dataset_options: dict[str, Any]) -> Any:
    """A file read with the file options, or a named dataset / dataset folder."""
    from recoforge.data.loaders import load_dataset

    source = Path(data).expanduser()
    if source.is_file():
        if dataset_options:
            flag = DATASET_OPTIONS[next(iter(dataset_options))]
            raise ConfigError(f"{flag} applies to a dataset name; --data {data!r} is a file")
        return load_interactions(source, **file_options)
    given = [flag for flag, value in (
        ("--user-col", file_options["user_col"]), ("--item-col", file_options["item_col"]),
        ("--rating-col", file_options["rating_col"]),
        ("--timestamp-col", file_options["timestamp_col"]), ("--sep", file_options["sep"]),
        ("--header/--no-header", file_options["header"]),
        ("--encoding", file_options["encoding"]), ("--implicit", file_options["implicit"]),
        ("--duplicates", file_options["duplicates"])) if value not in (None, False)]
    if file_options["header"] is not None:
        given.append("--header/--no-header")
    what = "a dataset folder" if source.is_dir() else "a dataset name"
    if given:
        raise ConfigError(f"{given[0]} applies to interaction files; --data {data!r} is "
                          f"{what}, whose columns and format are fixed")
    if source.is_dir():
        if dataset_options:
            flag = DATASET_OPTIONS[next(iter(dataset_options))]
            raise ConfigError(f"{flag} does not apply to a dataset folder (--data {data!r})")
        return load_dataset(source)
    check_dataset_options(data, dataset_options)
    return load_dataset(data, **dataset_options)
