"""Item titles of a fitted model: a title column for its frames, items found by name.

A model fitted on a :class:`~recoforge.data.dataset.Dataset` whose ``item_info`` holds
titles or names (MovieLens ``title``, Last.fm ``name``, an ``--item-features`` file with
``--title-col``) keeps them as learned state ``item_titles_`` (a text array over the item
vocabulary, declared in :data:`recoforge.artifacts.state.CONVENTIONAL_STATE`), so a saved
and loaded model shows them too. :class:`ItemTitles` is the part of
:class:`~recoforge.models.base.Recommender` that reads them:

- ``recommend(..., titles=True)``, ``similar_items(..., titles=True)`` and
  ``explain(..., titles=True)`` add a ``title`` column (``similar_title`` for the
  neighbours of ``similar_items``);
- :meth:`ItemTitles.find_items` searches titles (case-insensitive substring; exact
  matches first, then titles starting with the text, then the rest);
- :meth:`ItemTitles.item_by_title` resolves a name to one item id, or raises
  :class:`~recoforge.errors.UnknownIdError` naming a few candidates (no match, or
  several equally good ones); ``similar_items(names, by_title=True)`` uses it.

Memory: the titles are one fixed-width text array (n_items x longest title).
"""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recoforge.errors import NotSupportedError, UnknownIdError
from recoforge.models._requests import as_list

if TYPE_CHECKING:
    from recoforge.data.dataset import Dataset
    from recoforge.data.ids import IdIndex

#: candidates named in an error message about an unknown or ambiguous title
SHOWN_CANDIDATES = 5
_YEAR = re.compile(r"\s*\(\d{4}\)\s*$")


def learn_titles(model: Any, data: Dataset) -> None:
    """Keep ``data``'s item titles on ``model`` as ``item_titles_`` (when it has any)."""
    titles = data.item_titles()
    if titles is not None:
        model.item_titles_ = titles


def _candidates(ids: np.ndarray, titles: np.ndarray) -> str:
    shown = [f"{item!r} ({title})" for item, title in
             zip(ids[:SHOWN_CANDIDATES].tolist(), titles[:SHOWN_CANDIDATES])]
    more = f" and {len(ids) - SHOWN_CANDIDATES} more" if len(ids) > SHOWN_CANDIDATES else ""
    return ", ".join(shown) + more


def _closest(text: str, titles: np.ndarray) -> list[str]:
    """Up to SHOWN_CANDIDATES titles spelled like ``text`` (ignoring case and a year)."""
    bare = [_YEAR.sub("", title).lower() for title in titles.tolist()]
    first: dict[str, str] = {}
    for key, title in zip(bare, titles.tolist()):
        first.setdefault(key, title)
    close = difflib.get_close_matches(text.strip().lower(), list(first),
                                      n=SHOWN_CANDIDATES, cutoff=0.6)
    return [first[key] for key in close]


class ItemTitles:
    """Title lookups of a fitted recommender (mixed into ``Recommender``)."""

    item_index_: IdIndex
    item_titles_: np.ndarray

    def _check_fitted(self) -> None:  # pragma: no cover - Recommender defines it
        raise NotImplementedError

    @property
    def has_titles(self) -> bool:
        """Whether the fitted model knows its items' titles."""
        return getattr(self, "item_titles_", None) is not None

    def _titles(self) -> np.ndarray:
        self._check_fitted()
        if not self.has_titles:
            raise NotSupportedError(
                f"this {type(self).__name__} has no item titles: fit it on data whose item "
                f"attributes have a title or name column (MovieLens, Last.fm, or "
                f"item_info with title_col=; CLI: --item-features FILE --title-col NAME)")
        return self.item_titles_

    def titles_of(self, items: Any) -> np.ndarray:
        """The titles of item ids (``""`` for an item without one); raises for unknown ids."""
        return self._titles()[self.item_index_.to_index(as_list(items))]

    def find_items(self, text: str, limit: int | None = 10) -> pd.DataFrame:
        """Items whose title contains ``text`` (case-insensitive), best matches first.

        Parameters
        ----------
        text : str
            Part of a title or name, e.g. ``"star wars"``.
        limit : int, optional
            At most this many rows (None: all matches).

        Returns
        -------
        DataFrame (item, title)
            Exact matches first (ignoring case and a trailing year such as ``(1977)``),
            then titles starting with ``text``, then titles containing it; catalogue order
            within each group. Empty when nothing matches.
        """
        order, _ = self._matches(text)
        order = order if limit is None else order[:max(int(limit), 0)]
        return pd.DataFrame({"item": self.item_index_.to_ids(order),
                             "title": self._titles()[order]})

    def _matches(self, text: str) -> tuple[np.ndarray, int]:
        """(indices of matching items best first, how many match exactly)."""
        if not isinstance(text, str) or not text.strip():
            raise UnknownIdError(f"an item title to search for must be non-empty text, "
                                 f"not {text!r}")
        needle = text.strip().lower()
        titles = pd.Series(self._titles())
        folded = titles.str.lower().to_numpy().astype(str)
        whole = (folded == needle) | (titles.str.replace(_YEAR, "", regex=True).str.lower()
                                      == needle).to_numpy()
        position = np.char.find(folded, needle)
        exact = np.flatnonzero(whole)
        starts = np.flatnonzero((position == 0) & ~whole)
        inside = np.flatnonzero(position > 0)
        return np.concatenate([exact, starts, inside]).astype(np.int64), len(exact)

    def item_by_title(self, text: str) -> Any:
        """The id of the one item titled ``text``.

        An exact title match (ignoring case and a trailing year) wins; otherwise the title
        must contain ``text`` for exactly one item.

        Raises
        ------
        UnknownIdError
            When no title matches (naming the closest titles) or several match equally
            well (naming a few, with their ids).
        """
        order, n_exact = self._matches(text)
        best = order[:n_exact] if n_exact else order
        if len(best) == 1:
            return self.item_index_.to_ids(best)[0]
        titles = self._titles()
        if len(best) > 1:
            raise UnknownIdError(
                f"item title {text!r} matches {len(best)} items: "
                f"{_candidates(self.item_index_.to_ids(best), titles[best])}; give more of "
                f"the title or the item id")
        close = _closest(text, titles)
        hint = f"; closest titles: {', '.join(repr(t) for t in close)}" if close else ""
        raise UnknownIdError(f"no item title contains {text!r}{hint}")

    def items_by_title(self, names: Any) -> list[Any]:
        """Item ids of one title or a list of titles (see :meth:`item_by_title`)."""
        names = [names] if isinstance(names, str) else list(names)
        return [self.item_by_title(name) for name in names]

    def _titled(self, frame: pd.DataFrame, titles: bool | None, *columns: str
                ) -> pd.DataFrame:
        """``frame`` with a title column after each id column of ``columns`` (when asked).

        The title of column ``item`` is ``title``; of another, ``<column>``'s name with
        ``item`` replaced by ``title`` (``similar_item`` -> ``similar_title``). In an
        ``explain`` frame (a ``source`` column) rows that are not items get ``""``.
        """
        if not titles:
            return frame
        table = self._titles()
        out = frame.copy()
        for column in columns:
            rows = np.ones(len(out), dtype=bool)
            if "source" in out.columns:
                rows = (out["source"] == "item").to_numpy()
            values = np.full(len(out), "", dtype=object)
            if rows.any():
                index = self.item_index_.to_index(out[column].to_numpy()[rows])
                values[rows] = table[index]
            name = "title" if column in ("item", "id") else column.replace("item", "title")
            out.insert(out.columns.get_loc(column) + 1, name, values)
        return out
