"""A Dataset: interactions plus optional item/user features, sessions and display info."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recoforge.data.features import FeatureMatrix
from recoforge.data.ids import IdIndex
from recoforge.data.interactions import Interactions
from recoforge.errors import DataError

#: item_info columns read as item titles, in order of preference (see Dataset.item_titles)
TITLE_COLUMNS = ("title", "name")


@dataclass(frozen=True, eq=False)
class Sessions:
    """Ordered item views grouped into sessions (for co-visitation and session models).

    Attributes
    ----------
    session_ids : ndarray
        External session id per event.
    items : ndarray of int32
        Item indices (into the dataset's item vocabulary), in viewing order within a session.
    users : ndarray of int32 or None
        The user index of each event when sessions belong to known users (-1 for anonymous).
    timestamps : ndarray of int64 or None
    """

    session_ids: np.ndarray
    items: np.ndarray
    users: np.ndarray | None = None
    timestamps: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.items)

    def _take(self, keep: np.ndarray, users: np.ndarray | None = None) -> Sessions:
        return Sessions(self.session_ids[keep], self.items[keep],
                        None if self.users is None else (users if users is not None
                                                         else self.users)[keep],
                        None if self.timestamps is None else self.timestamps[keep])

    def restrict(self, old_users: IdIndex, new_users: IdIndex) -> Sessions:
        """Re-index session users to ``new_users``; sessions of users it lacks are dropped.

        Anonymous events (user -1) are kept.
        """
        if self.users is None:
            return self
        mapped = np.full(len(self.users), -1, dtype=np.int32)
        known = self.users >= 0
        mapped[known] = new_users.to_index(old_users.to_ids(self.users[known]),
                                           unknown="ignore")
        return self._take(~known | (mapped >= 0), users=mapped)

    def before(self, cutoff: int) -> Sessions:
        """Only events strictly before ``cutoff`` (epoch seconds); needs timestamps."""
        if self.timestamps is None:
            raise DataError("sessions have no timestamps to cut at a point in time")
        return self._take(self.timestamps < cutoff)

    def groups(self) -> list[np.ndarray]:
        """Item-index arrays, one per session, in order of first appearance."""
        codes, _ = pd.factorize(self.session_ids)
        order = np.argsort(codes, kind="stable")
        bounds = np.flatnonzero(np.diff(codes[order])) + 1
        return np.split(self.items[order], bounds)


@dataclass(frozen=True, eq=False)
class Dataset:
    """Everything a model may learn from.

    Attributes
    ----------
    interactions : Interactions
        The user-item matrix; its vocabularies are the dataset's.
    item_features, user_features : FeatureMatrix or None
        Rows aligned with the item / user vocabularies.
    sessions : Sessions or None
    item_info, user_info : DataFrame or None
        Display attributes (title, category, ...) indexed by external id.
    name : str
    title_col : str, optional
        The ``item_info`` column holding item titles or names; default: ``title``, else
        ``name``, when ``item_info`` has one (see :meth:`item_titles`).
    """

    interactions: Interactions
    item_features: FeatureMatrix | None = None
    user_features: FeatureMatrix | None = None
    sessions: Sessions | None = None
    item_info: pd.DataFrame | None = None
    user_info: pd.DataFrame | None = None
    name: str = "dataset"
    title_col: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.interactions, Interactions):
            raise DataError(f"a Dataset is built from Interactions, not "
                            f"{type(self.interactions).__name__}; use Dataset.from_frame for "
                            f"a table or recoforge.data.loaders.read_interactions for a file")
        for name, kind in (("item_features", FeatureMatrix), ("user_features", FeatureMatrix),
                           ("sessions", Sessions), ("item_info", pd.DataFrame),
                           ("user_info", pd.DataFrame)):
            value = getattr(self, name)
            if value is not None and not isinstance(value, kind):
                raise DataError(f"Dataset {name} must be a {kind.__name__} or None, not "
                                f"{type(value).__name__}")
        if self.item_features is not None and self.item_features.n_rows != self.n_items:
            raise DataError(f"item features have {self.item_features.n_rows} rows for "
                            f"{self.n_items} items")
        if self.user_features is not None and self.user_features.n_rows != self.n_users:
            raise DataError(f"user features have {self.user_features.n_rows} rows for "
                            f"{self.n_users} users")
        if self.title_col is not None and (self.item_info is None
                                           or self.title_col not in self.item_info.columns):
            found = [] if self.item_info is None else [str(c) for c in self.item_info.columns]
            raise DataError(f"title column {self.title_col!r} is not in the item attributes "
                            f"(columns: {found})")

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, *, name: str = "dataset", **kwargs) -> Dataset:
        """Dataset of interactions only; keyword arguments as :meth:`Interactions.from_frame`."""
        return cls(Interactions.from_frame(frame, **kwargs), name=name)

    @property
    def user_index(self) -> IdIndex:
        return self.interactions.user_index

    @property
    def item_index(self) -> IdIndex:
        return self.interactions.item_index

    @property
    def n_users(self) -> int:
        return self.interactions.n_users

    @property
    def n_items(self) -> int:
        return self.interactions.n_items

    @property
    def kind(self) -> str:
        return self.interactions.kind

    def item_titles(self) -> np.ndarray | None:
        """Item titles aligned with the item vocabulary (text array), or None.

        Read from ``item_info[title_col]`` (default column ``title``, else ``name``); an
        item without a row or with an empty value gets ``""``. None when there is no such
        column or no item has a title.
        """
        info = self.item_info
        column = self.title_col or next(
            (c for c in TITLE_COLUMNS if info is not None and c in info.columns), None)
        if info is None or column is None:
            return None
        values = info[column]
        values = values[~values.index.duplicated()]
        aligned = values.reindex(pd.Index(self.item_index.ids))
        text = aligned.astype(object).where(aligned.notna(), "")
        titles = np.asarray([str(v).strip() for v in text], dtype=str)
        return titles if titles.size and (titles != "").any() else None

    def with_item_info(self, info: pd.DataFrame, title_col: str | None = None) -> Dataset:
        """Attach display attributes only (no features, catalogue unchanged).

        Parameters
        ----------
        info : DataFrame
            Indexed by item id; rows for items outside the vocabulary are ignored.
        title_col : str, optional
            Column holding the items' titles or names (default ``title``, else ``name``).
        """
        return replace(self, item_info=info, title_col=title_col)

    def matrix(self) -> sp.csr_matrix:
        """User x item CSR of interaction values."""
        return self.interactions.to_csr()

    def with_interactions(self, interactions: Interactions) -> Dataset:
        """This dataset's side information around other interactions.

        The item vocabulary must be the same; the user vocabulary may differ (user features
        are then re-aligned, users without a row get zeros).
        """
        if interactions.item_index != self.item_index:
            raise DataError("replacement interactions must share the item vocabulary")
        user_features = self.user_features
        if user_features is not None and interactions.user_index != self.user_index:
            rows = self.user_index.to_index(interactions.user_index.ids, unknown="ignore")
            user_features = user_features.take_rows(rows)
        sessions = self.sessions
        if sessions is not None and interactions.user_index != self.user_index:
            sessions = sessions.restrict(self.user_index, interactions.user_index)
        return replace(self, interactions=interactions, user_features=user_features,
                       sessions=sessions)

    def with_item_features(self, info: pd.DataFrame, title_col: str | None = None,
                           **spec) -> Dataset:
        """Attach item attributes: catalogue extended, features built, ``item_info`` set.

        Parameters
        ----------
        info : DataFrame
            Indexed by item id. Items it lists that have no interaction join the catalogue
            (appended to the item vocabulary, so existing indices are unchanged): they can
            be recommended by feature-based models.
        **spec
            Keyword arguments of :func:`~recoforge.data.features.build_features`
            (``text=``, ``multilabel=``, ``categorical=``, ``numeric=``, ...).
        title_col : str, optional
            Column of ``info`` holding the items' titles (default ``title``, else ``name``).
        """
        from recoforge.data.features import build_features

        inter = self.interactions
        catalogue = inter.item_index.extend(info.index)
        if len(catalogue) != len(inter.item_index):
            inter = Interactions(users=inter.users, items=inter.items, values=inter.values,
                                 user_index=inter.user_index, item_index=catalogue,
                                 timestamps=inter.timestamps, kind=inter.kind)
        features = build_features(info, catalogue, **spec)
        return replace(self, interactions=inter, item_features=features, item_info=info,
                       title_col=title_col)

    def subset(self, mask: np.ndarray, *, compact_users: bool = True,
               sessions_before: int | None = None) -> Dataset:
        """The dataset restricted to interactions where ``mask`` is true.

        The item vocabulary (the catalogue) is kept whole so that items without training
        interactions remain recommendable; with ``compact_users`` users left without any
        interaction drop out of the user vocabulary (they become unknown users), and so
        do their sessions. ``sessions_before`` (epoch seconds) also drops session events
        at or after that time, so time-based splits do not leak test-period views.
        """
        inter = self.interactions
        users = None
        if compact_users:
            kept = np.unique(inter.users[mask])
            users = IdIndex(inter.user_index.ids[kept], name="user")
        out = self.with_interactions(inter.select(mask, user_index=users))
        if sessions_before is not None and out.sessions is not None:
            out = replace(out, sessions=out.sessions.before(sessions_before))
        return out

    def __repr__(self) -> str:
        parts = [f"name={self.name!r}", repr(self.interactions)]
        if self.item_features is not None:
            parts.append(f"item_features={self.item_features.n_features}")
        if self.user_features is not None:
            parts.append(f"user_features={self.user_features.n_features}")
        if self.sessions is not None:
            parts.append(f"session_events={len(self.sessions)}")
        return f"Dataset({', '.join(parts)})"


def as_dataset(data: Dataset | Interactions) -> Dataset:
    """Accept either a Dataset or bare Interactions where a Dataset is expected.

    Raises
    ------
    DataError
        For anything else (a DataFrame, a path, a split, None), naming what was given.
    """
    if isinstance(data, Dataset):
        return data
    if isinstance(data, Interactions):
        return Dataset(data)
    hint = ""
    if isinstance(data, pd.DataFrame):
        hint = "; build one with Dataset.from_frame(frame, ...)"
    elif hasattr(data, "train") and hasattr(data, "test"):
        hint = "; pass split.train"
    raise DataError(f"expected a Dataset or Interactions, got {type(data).__name__}{hint}")
