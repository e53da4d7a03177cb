"""Options shared by several commands, and their validation.

Everything an option can get wrong is checked here, before any data is read or any
model fitted: separators, encodings, column names without a header, repeated
``--param`` keys, seeds.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from recoforge.errors import ConfigError
from recoforge.models.params import SEED_MAX

Duplicates = Literal["error", "last", "first", "sum", "mean"]

UserCol = Annotated[str | None, typer.Option(
    help="User id column (a position such as 0 with --no-header). Default: user, or 0.")]
ItemCol = Annotated[str | None, typer.Option(
    help="Item id column (a position such as 1 with --no-header). Default: item, or 1.")]
RatingCol = Annotated[str | None, typer.Option(help="Rating/value column (explicit data).")]
TimeCol = Annotated[str | None, typer.Option(help="Timestamp column.")]
SepOpt = Annotated[str | None, typer.Option(
    help="Field separator (default: by extension; '\\t' for a tab).")]
HeaderOpt = Annotated[bool | None, typer.Option(
    "--header/--no-header", help="Whether the first line names the columns (default: yes). "
    "Without a header, name columns by position: --user-col 0.")]
EncodingOpt = Annotated[str | None, typer.Option(
    help="Text encoding of input files (default utf-8; e.g. latin-1).")]
ImplicitOpt = Annotated[bool, typer.Option("--implicit", help="Treat values as implicit "
                                           "event weights.")]
DupOpt = Annotated[Duplicates | None, typer.Option(
    help="Repeated (user, item) pairs: error, last, first, sum, mean.")]
SeedOpt = Annotated[int, typer.Option(min=0, max=SEED_MAX, help="Seed (0 .. 2**32-1).")]
KOpt = Annotated[int, typer.Option("--k", min=1, help="Items per user.")]


def check_encoding(encoding: str | None) -> str:
    """The encoding to read with (utf-8 by default); ConfigError for an unknown one."""
    if encoding is None:
        return "utf-8"
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(f"--encoding {encoding!r}: unknown text encoding; use e.g. utf-8 "
                          f"or latin-1") from None
    return encoding


def check_sep(sep: str | None) -> str | None:
    """The separator to read with; ``\\t`` spelled out means a tab."""
    if sep is None:
        return None
    if sep == "":
        raise ConfigError("--sep must not be empty; give the character between fields, "
                          "e.g. --sep ';' or --sep '\\t'")
    sep = sep.replace("\\t", "\t")
    if sep in ('"', "\n", "\r"):
        raise ConfigError(f"--sep {sep!r} cannot separate fields; use e.g. ',' ';' or '\\t'")
    return sep


def interaction_columns(user_col: str | None, item_col: str | None, rating_col: str | None,
                        timestamp_col: str | None, header: bool) -> dict[str, Any]:
    """The column keywords of ``read_interactions`` from the column options."""
    from recoforge.cli._files import column_key

    return {
        "user_col": column_key(user_col or ("user" if header else "0"), header, "--user-col"),
        "item_col": column_key(item_col or ("item" if header else "1"), header, "--item-col"),
        "rating_col": column_key(rating_col, header, "--rating-col"),
        "timestamp_col": column_key(timestamp_col, header, "--timestamp-col"),
    }


def load_interactions(data: Path, *, user_col: str | None, item_col: str | None,
                      rating_col: str | None, timestamp_col: str | None, sep: str | None,
                      header: bool | None, encoding: str | None, implicit: bool,
                      duplicates: str | None):  # noqa: ANN201 - a Dataset
    """Read an interactions file with the command's options (validated first)."""
    from recoforge.data.loaders import read_interactions

    has_header = header is not False
    columns = interaction_columns(user_col, item_col, rating_col, timestamp_col, has_header)
    return read_interactions(data, sep=check_sep(sep), header=has_header,
                             encoding=check_encoding(encoding),
                             kind="implicit" if implicit else None,
                             duplicates=duplicates, **columns)  # type: ignore[arg-type]


def parse_params(pairs: list[str], model_name: str) -> dict[str, Any]:
    """``--param key=value`` options as the model's typed parameters.

    Raises
    ------
    ConfigError
        A pair without ``=``, a key given twice, an unknown key or an invalid value.
    """
    from recoforge.models.registry import model_class

    raw: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--param expects key=value, got {pair!r}")
        if key in raw:
            raise ConfigError(f"--param {key} given twice ({raw[key]!r} and "
                              f"{value.strip()!r}); give each parameter once")
        raw[key] = value.strip()
    return model_class(model_name).Config.from_strings(raw)


# ---------------------------------------------------------------------- item features
ItemFeaturesOpt = Annotated[Path | None, typer.Option(
    "--item-features", help="Item attributes file (id column + feature columns); its items "
    "join the catalogue.")]
ItemIdCol = Annotated[str, typer.Option(help="Id column of --item-features.")]
TextCols = Annotated[list[str] | None, typer.Option(help="TF-IDF text column (repeat).")]
LabelCols = Annotated[list[str] | None, typer.Option(
    help="Multi-label column such as 'Action|Comedy' (repeat).")]
CategoryCols = Annotated[list[str] | None, typer.Option(help="One-hot column (repeat).")]
NumericCols = Annotated[list[str] | None, typer.Option(help="Scaled numeric column (repeat).")]
NumericMissing = Annotated[Literal["error", "mean", "zero"], typer.Option(
    help="Missing numeric feature values: error, mean (the column mean) or zero.")]
ParamOpt = Annotated[list[str] | None, typer.Option(
    "--param", help="MODEL.key=value for one model of --models, or key=value when there is "
    "one model (repeat).")]


def model_params(pairs: list[str], names: list[str], seed: int) -> dict[str, dict[str, Any]]:
    """Each model's parameters from ``--param MODEL.key=value`` and the run's seed.

    ``key=value`` without a model name is accepted when ``names`` holds one model. Every
    model with a ``seed`` parameter gets ``seed`` unless ``--param`` sets it, so that one
    ``--seed`` makes the whole run reproducible.

    Raises
    ------
    ConfigError
        A pair naming no model of ``names``, a bare key with several models, an unknown
        key or an invalid value (see :func:`parse_params`).
    """
    from recoforge.models.registry import model_class

    given: dict[str, list[str]] = {name: [] for name in names}
    for pair in pairs:
        key = pair.partition("=")[0].strip()
        model, dot, rest = key.partition(".")
        if dot and model in given:
            given[model].append(pair.strip()[len(model) + 1:])
        elif len(names) == 1 and not (dot and model_exists(model)):
            given[names[0]].append(pair)
        elif dot and model_exists(model):
            raise ConfigError(f"--param {pair!r}: model {model!r} is not in --models "
                              f"({','.join(names)})")
        else:
            raise ConfigError(f"--param {pair!r}: name the model, e.g. --param "
                              f"{names[0]}.{key}=... (models: {','.join(names)})")
    params = {}
    for name in names:
        try:
            params[name] = parse_params(given[name], name)
        except ConfigError as exc:
            raise ConfigError(f"--param of {name}: {exc}") from None
    for name in names:
        if "seed" in model_class(name).Config.field_names() and "seed" not in params[name]:
            params[name]["seed"] = seed
    return params


def model_exists(name: str) -> bool:
    """Whether ``name`` is a registered model."""
    from recoforge.models.registry import available_models

    return name in available_models()
