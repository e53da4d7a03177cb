"""The ``recoforge demo`` job: every model on the built-in demo shop, side by side.

Generates :func:`recoforge.data.synthetic.category_demo`, splits it per user (80/20), fits
and evaluates every registered model under the full-ranking protocol, prints the
leaderboard, then shows one user's history and the best model's recommendations with
titles and categories.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from recoforge.errors import ConfigError, DataError, RecoforgeError

#: metrics shown in the leaderboard (at the demo's k)
BOARD_METRICS = ("ndcg", "precision", "recall", "map", "hit_rate", "coverage")
HEADERS = {"ndcg": "NDCG@{k}", "precision": "P@{k}", "recall": "R@{k}", "map": "MAP@{k}",
           "hit_rate": "HR@{k}", "coverage": "cover", "fit_s": "fit s"}


def _leaderboard(data, split, k: int, seed: int, console: Console) -> tuple[pd.DataFrame, dict]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from recoforge.models.registry import available_models

    rows, fitted, skipped = [], {}, []
    names = available_models()
    bar = Progress(TextColumn("{task.description}"), BarColumn(),
                   TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                   console=console, transient=True, disable=not console.is_terminal)
    with bar:
        task = bar.add_task("fitting", total=len(names))
        for name in names:
            bar.update(task, description=f"fitting {name}")
            try:
                model, result = _fit_one(name, split, k, seed)
            except RecoforgeError as exc:  # e.g. a model that needs data the demo lacks
                skipped.append(f"{name}: {exc}")
                continue
            finally:
                bar.advance(task)
            fitted[name] = model
            row: dict[str, Any] = {"model": name}
            row.update({m: float(result.summary.get(f"{m}@{k}",
                                                    result.summary.get(m, float("nan"))))
                        for m in BOARD_METRICS})
            row["fit_s"] = model.fit_seconds_
            rows.append(row)
    for line in skipped:
        console.print(f"[yellow]skipped[/yellow] {escape(line)}", highlight=False)
    if not rows:
        raise DataError(f"no model could be fitted on the demo data ({skipped[0]})")
    board = pd.DataFrame(rows).sort_values("ndcg", ascending=False).reset_index(drop=True)
    return board, fitted


def _fit_one(name: str, split, k: int, seed: int) -> tuple[Any, Any]:
    """One model fitted on the demo's training part and evaluated at ``k``."""
    from recoforge.evaluation import evaluate
    from recoforge.models.registry import model_class

    fields = model_class(name).Config.field_names()
    params: dict[str, Any] = {"seed": seed} if "seed" in fields else {}
    model = model_class(name)(**params).fit(split.train)
    return model, evaluate(model, split, k=[k], metrics=BOARD_METRICS)


def _check_options(seed: int, k: int) -> None:
    """Refuse a bad seed or list length before generating data or fitting anything."""
    from recoforge.models.params import SEED_MAX

    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"seed must be an integer in 0 .. {SEED_MAX}, got {seed!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")


def _board_table(board: pd.DataFrame, k: int, title: str) -> Table:
    table = Table(title=title)
    table.add_column("model", no_wrap=True)
    for col in board.columns[1:]:
        label = HEADERS.get(col, col).format(k=k)
        table.add_column(label, justify="right", no_wrap=True)
    for _, row in board.iterrows():
        table.add_row(row["model"], *[f"{row[c]:.3f}" if c == "fit_s" else f"{row[c]:.4f}"
                                      for c in board.columns[1:]])
    return table


def _describe(items: pd.DataFrame, info: pd.DataFrame | None, title: str,
              value_col: str) -> Table:
    table = Table(title=title)
    for col in ("item", "title", "category", value_col):
        table.add_column(col, justify="right" if col == value_col else "left")
    for row in items.itertuples(index=False):
        meta = info.loc[row.item] if info is not None and row.item in info.index else {}
        table.add_row(str(row.item), str(meta.get("title", "")), str(meta.get("category", "")),
                      f"{getattr(row, value_col):.2f}")
    return table


def run_demo(console: Console, seed: int = 0, k: int = 10, user: str | None = None) -> None:
    """Run the demo and print to ``console``.

    Raises
    ------
    ConfigError
        ``seed`` outside 0 .. 2**32-1 or ``k`` < 1 (checked before anything is fitted).
    """
    from recoforge.data.split import holdout_per_user
    from recoforge.data.synthetic import category_demo

    _check_options(seed, k)
    data = category_demo(seed=seed)
    split = holdout_per_user(data, test_fraction=0.2, seed=seed)
    console.print(f"demo data: {len(data.interactions):,} ratings, {data.n_users} users, "
                  f"{data.n_items} items; split {split.name}")
    board, fitted = _leaderboard(data, split, k, seed, console)
    console.print(_board_table(board, k, f"leaderboard (full ranking, {len(split.test):,} "
                                         f"held-out ratings)"))
    best_name = board.loc[0, "model"]
    best = fitted[best_name]
    user = user if user is not None else str(split.train.user_index.ids[0])
    history = split.train.interactions.to_frame()
    history = history[history["user"] == user].sort_values("value", ascending=False)
    if history.empty:
        raise RecoforgeError(f"user {user!r} has no training history in the demo data")
    info = data.item_info
    console.print(_describe(history.head(k), info, f"{user}: top of rating history", "value"))
    recs = best.recommend([user], k=k)
    console.print(_describe(recs, info, f"{user}: recommendations by {best_name}", "score"))
