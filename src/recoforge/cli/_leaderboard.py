"""The ``evaluate`` leaderboard as a terminal table that fits the terminal's width.

A leaderboard has a column per metric and cut-off (10 metrics at two cut-offs is 20
columns), which no 80-120 column terminal shows legibly. :func:`leaderboard_table` keeps
the model name whole, then adds columns in order of interest (NDCG and recall at every
cut-off, then hit rate, precision, MAP, MRR, the beyond-accuracy metrics, timings) while
the table still fits, and says how many were left out; ``--out`` writes them all. A
model that could not run is a row with its reason instead of figures.
"""

from __future__ import annotations

import shutil

import pandas as pd
from rich.table import Table

#: metrics in the order their columns are shown when the width runs out
METRIC_ORDER = ("ndcg", "recall", "hit_rate", "precision", "map", "mrr", "rmse", "mae",
                "auc", "coverage", "novelty", "gini", "diversity", "popularity",
                "fit_seconds", "eval_seconds")
#: characters a rich column takes besides its text (padding and the border)
COLUMN_OVERHEAD = 3


def terminal_width(default: int = 80) -> int:
    """Columns of the terminal: ``$COLUMNS``, else the terminal's size, else ``default``."""
    return max(40, shutil.get_terminal_size((default, 24)).columns)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:.4f}"
    return str(value)


def _rank(column: str) -> tuple[int, int, int]:
    """Sort key: NDCG and recall at every cut-off first, then the rest metric by metric."""
    metric, _, cut = column.partition("@")
    order = METRIC_ORDER.index(metric) if metric in METRIC_ORDER else len(METRIC_ORDER)
    k = int(cut) if cut.isdigit() else 0
    if metric in ("ndcg", "recall"):
        return (0, k, order)
    return (1, order, k)


def ordered_columns(columns: list[str]) -> list[str]:
    """Metric columns in the order they are shown."""
    return sorted(columns, key=_rank)


def _width(header: str, cells: list[str]) -> int:
    return max([len(header), *map(len, cells)]) + COLUMN_OVERHEAD


def leaderboard_table(board: pd.DataFrame, title: str, width: int,
                      failures: dict[str, str] | None = None,
                      caption: str | None = None) -> tuple[Table, list[str]]:
    """The leaderboard (index: model name) as a table at most ``width`` characters wide.

    Returns
    -------
    (Table, list of str)
        The table and the metric columns left out for lack of width.
    """
    failures = failures or {}
    names = [str(name) for name in board.index]
    used = 1 + _width("model", names)  # the left border, then the name column
    shown: list[str] = []
    cells = {col: [_cell(v) for v in board[col]] for col in board.columns}
    left_out: list[str] = []
    for col in ordered_columns([str(c) for c in board.columns]):
        need = _width(col, cells[col])
        if left_out or (shown and used + need > width):  # the first metric always shows
            left_out.append(col)
        else:
            shown.append(col)
            used += need
    table = Table(title=title, caption=caption)
    table.add_column("model", no_wrap=True, min_width=max(map(len, names), default=5))
    for col in shown:
        table.add_column(col, justify="right", no_wrap=True)
    for row, name in enumerate(names):
        if name in failures:  # the reason is printed below the table (it is long)
            table.add_row(name, *(["failed"] + [""] * (len(shown) - 1) if shown else []))
            continue
        table.add_row(name, *(cells[col][row] for col in shown))
    return table, left_out


def failure_lines(failures: dict[str, str]) -> list[str]:
    """One line per model that could not run, with its reason."""
    from recoforge.cli._app import cli_wording

    return [f"{name}: could not run: {cli_wording(reason)}"
            for name, reason in failures.items()]
