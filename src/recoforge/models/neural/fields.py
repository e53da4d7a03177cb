"""Field input of the factorisation-machine family (``fm``, ``ffm``, ``nfm``, ``deepfm``,
``wide_deep``): (user, item) pairs as bags of feature embeddings, one bag per field.

A pair is described by fields: the user id, the item id (each optional), every field of
the user :class:`~recoforge.data.features.FeatureEncoder` (gender, age group, ...) and
every field of the item encoder (genres, ...). The encoders' features share one global
feature index space, user features first (``0 .. n_user_features - 1``) then item
features, in one table; the ids have tables of their own (``user_embedding``,
``item_embedding``), because users are folded in (the engine's per-user parameters) and
items are appended after training, neither of which a shared table allows. Every table
row is a feature's embedding followed by its first-order weight, so one lookup serves
both terms.

A field's embedding is e_f = sum_{j in f} x_j v_j (``torch.nn.functional.embedding_bag``
with ``mode="sum"`` and per-sample weights x_j): a categorical field is its one active
feature, a numeric field is its embedding scaled by the value, a multi-label field is
the mean of its labels' embeddings (rows of multi-label fields are normalised to sum 1,
as RecBole pools token sequences), a text field the tf-idf-weighted sum. The first-order
term is sum_f sum_{j in f} x_j w_j over the same bags. Bags are gathered for a whole
batch of rows at once with NumPy from the CSR rows (no per-row Python): a row's CSR
entries are sorted by column and fields are contiguous column ranges, so entries are
already grouped by (row, field) and the offsets are one ``searchsorted``; the user and
item sides of a batch share one ``embedding_bag`` call.

Every model splits its logit into a user half and an item half (:class:`FieldModule`):
training combines the halves of each (user, item) row; scoring computes each user's half
once and each distinct candidate item's half once. The recommender on top (training
losses, fold-in, scoring, new items) is :class:`~.fm.FieldRecommender`.

Memory: the tables (O((n_users + n_items + n_features) k)) and one batch of bags.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recoforge.data.features import FeatureMatrix
from recoforge.errors import ConfigError, DataError
from recoforge.models.neural import losses
from recoforge.models.neural._torch import MixedPrecisionLinear, Seeds
from recoforge.models.neural.batches import Batch, BatchSource
from recoforge.models.neural.ncf import Dropout16
from recoforge.models.neural.samplers import make_sampler


# --------------------------------------------------------------------------- bags
def field_layout(features: FeatureMatrix | None, n_rows: int, side: str
                 ) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, list[str]]:
    """(rows CSR, field start columns, multi-label mask, field names) of one side."""
    if features is None:
        return (sp.csr_matrix((n_rows, 0), dtype=np.float32), np.zeros(0, np.int64),
                np.zeros(0, bool), [])
    matrix = sp.csr_matrix(features.matrix, dtype=np.float32)
    if not np.isfinite(matrix.data).all():
        raise DataError(f"{side} features hold NaN or infinite values")
    encoder = features.encoder
    if encoder is not None and encoder.n_features == matrix.shape[1]:
        slices = [s for s in encoder.field_slices() if s.width > 0]
        starts = np.asarray([s.start for s in slices], np.int64)
        multi = np.asarray([s.kind == "multilabel" for s in slices], bool)
        names = [f"{side}:{s.name}" for s in slices]
    else:  # a matrix without its encoder: one field
        starts, multi, names = np.zeros(1, np.int64), np.zeros(1, bool), [f"{side}:features"]
    return pool_rows(matrix, starts, multi), starts, multi, names


def pool_rows(matrix: sp.spmatrix, starts: np.ndarray, multi: np.ndarray) -> sp.csr_matrix:
    """Rows with every multi-label field's weights divided by their sum (mean pooling)."""
    matrix = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    matrix.sum_duplicates()
    matrix.sort_indices()
    if len(starts) == 0 or not multi.any() or matrix.nnz == 0:
        return matrix
    field = np.searchsorted(starts, matrix.indices, side="right") - 1
    row = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    bag = row * len(starts) + field
    totals = np.bincount(bag, weights=matrix.data, minlength=matrix.shape[0] * len(starts))
    pooled = multi[field] & (totals[bag] != 0)
    matrix.data[pooled] = (matrix.data[pooled] / totals[bag[pooled]]).astype(np.float32)
    return matrix


def side_entries(matrix: sp.csr_matrix, rows: np.ndarray, starts: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(columns, weights, field of each entry, entries per row) of ``rows``' CSR entries,
    row by row (columns sorted, so fields are non-decreasing within a row)."""
    rows = np.asarray(rows, dtype=np.int64)
    lo = matrix.indptr[rows].astype(np.int64)
    lengths = matrix.indptr[rows + 1] - lo
    ends = np.cumsum(lengths)
    total = int(ends[-1]) if len(ends) else 0
    pos = np.arange(total) + np.repeat(lo - (ends - lengths), lengths)
    cols = matrix.indices[pos].astype(np.int64)
    field = np.searchsorted(starts, cols, side="right") - 1
    return cols, matrix.data[pos], field, lengths


def merge_bags(parts: list[tuple[np.ndarray, ...]], n_rows: int, n_fields: list[int]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices, weights, offsets) for ``embedding_bag`` of ``n_rows`` rows with one bag per
    field: row r's bags are the fields of ``parts[0]`` then ``parts[1]`` ... (each part
    (global indices, weights, field, entries per row) from :func:`side_entries`, its
    indices already shifted into the global space). No per-row Python."""
    total_fields = sum(n_fields)
    counts = np.stack([p[3] for p in parts]) if parts else np.zeros((0, n_rows), np.int64)
    per_row = counts.sum(0)
    row_start = np.cumsum(per_row) - per_row
    size = int(per_row.sum())
    idx, weights = np.empty(size, np.int64), np.empty(size, np.float32)
    bag = np.empty(size, np.int64)
    before = np.zeros(n_rows, np.int64)  # entries of earlier parts in each row
    shift = 0
    for (cols, w, field, lengths), width in zip(parts, n_fields):
        ends = np.cumsum(lengths)
        within = np.arange(int(ends[-1]) if len(ends) else 0) - np.repeat(ends - lengths,
                                                                         lengths)
        row = np.repeat(np.arange(n_rows, dtype=np.int64), lengths)
        dest = row_start[row] + before[row] + within
        idx[dest], weights[dest] = cols, w
        bag[dest] = row * total_fields + shift + field
        before += lengths
        shift += width
    offsets = np.searchsorted(bag, np.arange(n_rows * total_fields, dtype=np.int64))
    return idx, weights, offsets


@dataclass
class SideRows:
    """Pooled feature rows of one side with their field starts and global offset."""

    matrix: sp.csr_matrix
    starts: np.ndarray
    offset: int

    def entries(self, rows: np.ndarray) -> tuple[np.ndarray, ...]:
        cols, weights, field, lengths = side_entries(self.matrix, rows, self.starts)
        return cols + self.offset, weights, field, lengths


def bag_tensors(sides: list[tuple[SideRows, np.ndarray]], n_rows: int,
                device: torch.device) -> tuple[torch.Tensor, ...]:
    """(indices, weights, offsets) tensors of the feature bags of each row's sides."""
    parts = [side.entries(rows) for side, rows in sides if len(side.starts)]
    widths = [len(side.starts) for side, _ in sides if len(side.starts)]
    idx, weights, offsets = merge_bags(parts, n_rows, widths)
    return (torch.as_tensor(idx, device=device),
            torch.as_tensor(weights, device=device),
            torch.as_tensor(offsets, device=device))


# --------------------------------------------------------------------------- crosses
@dataclass
class CrossLayout:
    """Wide cross-product features x_u^T (W * M) x_i between user and item feature fields.

    ``item_columns``: the item feature columns any cross reads (item feature space);
    ``mask`` (n_user_features, len(item_columns)): 1 where a user feature's field is
    crossed with the item column's field.
    """

    n_user_features: int
    n_item_features: int
    item_columns: np.ndarray
    mask: np.ndarray


def cross_layout(spec: str, names: list[str], user_starts: np.ndarray, n_user: int,
                 item_starts: np.ndarray, n_item: int) -> CrossLayout | None:
    """The :class:`CrossLayout` of ``spec``: "" (none), "all" (every user feature field
    with every item feature field) or "a*b,c*d" (user field * item field, by the names of
    the feature encoders' fields, e.g. "gender*genres"); ConfigError for unknown fields."""
    spec = spec.strip()
    if not spec:
        return None
    fields = [n for n in names if n.startswith(("user:", "item:"))]
    ranges = {}
    for side, starts, width in (("user", user_starts, n_user), ("item", item_starts, n_item)):
        side_names = [n for n in fields if n.startswith(side + ":")]
        ends = list(starts[1:]) + [width]
        ranges.update({n: (int(a), int(b)) for n, a, b in zip(side_names, starts, ends)})
    if spec == "all":
        pairs = [(u, i) for u in ranges if u.startswith("user:")
                 for i in ranges if i.startswith("item:")]
    else:
        pairs = []
        for part in spec.split(","):
            left, sep, right = (t.strip() for t in part.partition("*"))
            if not sep:
                raise ConfigError(f"crosses: {part.strip()!r} is not 'user_field*item_field'")
            pairs.append((_cross_field(left, "user", ranges), _cross_field(right, "item",
                                                                           ranges)))
    if not pairs:
        raise ConfigError("crosses='all' needs user and item feature fields; the data has "
                          f"fields {fields}")
    columns = np.unique(np.concatenate([np.arange(*ranges[i]) for _, i in pairs]))
    position = {int(c): k for k, c in enumerate(columns)}
    mask = np.zeros((n_user, len(columns)), np.float32)
    for u, i in pairs:
        cols = [position[c] for c in range(*ranges[i])]
        mask[ranges[u][0]:ranges[u][1], cols] = 1.0
    return CrossLayout(n_user, n_item, columns.astype(np.int64), mask)


def _cross_field(name: str, side: str, ranges: dict[str, tuple[int, int]]) -> str:
    full = name if name.startswith(side + ":") else f"{side}:{name}"
    if full not in ranges:
        known = sorted(n.split(":", 1)[1] for n in ranges if n.startswith(side + ":"))
        raise ConfigError(f"crosses: {name!r} is not a {side} feature field; {side} fields: "
                          f"{known}")
    return full


# --------------------------------------------------------------------------- batches
class PairBatches(BatchSource):
    """Shuffled training rows (user, item, label) with their field bags.

    Observed pairs of ``matrix`` once per epoch; ``negatives`` > 0 adds that many uniform
    unobserved items per pair (label 0, or the BPR partner). Keys: ``users``, ``items``,
    ``labels`` and the feature bags ``bag_idx``, ``bag_w``, ``bag_off`` (each row's user
    feature fields, then its item feature fields), positives first then the negatives.
    """

    def __init__(self, matrix: sp.csr_matrix, labels: np.ndarray, user_rows: SideRows,
                 item_rows: SideRows, batch_size: int, seeds: Seeds, device: torch.device,
                 negatives: int) -> None:
        self.matrix = sp.csr_matrix(matrix)
        self.users_np = np.repeat(np.arange(matrix.shape[0], dtype=np.int64),
                                  np.diff(self.matrix.indptr))
        self.items_np = self.matrix.indices.astype(np.int64)
        self.labels = labels.astype(np.float32)
        self.n_rows, self.batch_size = len(self.items_np), int(batch_size)
        self.user_rows, self.item_rows = user_rows, item_rows
        self.generator, self.device, self.negatives = seeds.torch, device, negatives
        self.sampler = make_sampler("uniform", self.matrix, seeds.numpy) if negatives else None

    def __iter__(self) -> Iterator[Batch]:
        order = torch.randperm(self.n_rows, generator=self.generator).numpy()
        for start in range(0, self.n_rows, self.batch_size):
            pick = order[start:start + self.batch_size]
            users, items, labels = self.users_np[pick], self.items_np[pick], self.labels[pick]
            if self.sampler is not None:
                drawn = self.sampler.draw(users, items, self.negatives)  # (b, n)
                users = np.concatenate([users, np.repeat(users, self.negatives)])
                items = np.concatenate([items, drawn.reshape(-1).astype(np.int64)])
                labels = np.concatenate([labels, np.zeros(drawn.size, np.float32)])
            yield self.batch(users, items, labels)

    def batch(self, users: np.ndarray, items: np.ndarray, labels: np.ndarray) -> Batch:
        dev = self.device
        idx, weights, offsets = bag_tensors([(self.user_rows, users),
                                             (self.item_rows, items)], len(users), dev)
        return {"users": torch.as_tensor(users, device=dev),
                "items": torch.as_tensor(items, device=dev),
                "labels": torch.as_tensor(labels, device=dev),
                "bag_idx": idx, "bag_w": weights, "bag_off": offsets}


# --------------------------------------------------------------------------- module
class FieldModule(nn.Module):
    """Tables of the field models and the split of a logit into user and item halves.

    Every table row is a feature's embedding (``width`` values: k, or n_fields * k for
    FFM) followed by its first-order weight, so one lookup serves both terms. Subclasses
    define ``user_half(E, lin)``, ``item_half(E, lin)`` (E: (n, fields of the side,
    width), lin: (n,) first-order terms) and ``combine(user, item)`` -> (n, c) logits of
    user halves (n, ...) against item halves (n, c, ...).
    """

    def __init__(self, n_users: int, n_items: int, n_features: int, n_user_fields: int,
                 n_item_fields: int, width: int, ids: tuple[bool, bool], loss: str,
                 init_scale: float, crosses: CrossLayout | None = None) -> None:
        super().__init__()
        self.ids, self.loss = ids, loss
        self.n_user_fields, self.n_item_fields = n_user_fields, n_item_fields
        self.n_fields = n_user_fields + n_item_fields + int(ids[0]) + int(ids[1])
        self.n_items, self.width = n_items, width
        self.feature_embedding = nn.Parameter(_table(n_features, width, init_scale))
        # id tables exist (unused) when an id is not a field: one state layout for all
        self.user_embedding = nn.Embedding(n_users, width + 1)
        self.item_embedding = nn.Embedding(n_items, width + 1)
        self.bias = nn.Parameter(torch.zeros(1))
        with torch.no_grad():
            for table in (self.user_embedding, self.item_embedding):
                table.weight.copy_(_table(table.weight.shape[0], width, init_scale))
        self.crossed = crosses is not None
        if crosses is not None:  # W: learned; the item rows of the cross table: fixed
            n_cols = len(crosses.item_columns)
            self.cross_weight = nn.Parameter(torch.zeros(crosses.n_user_features, n_cols))
            select = torch.zeros(crosses.n_item_features, n_cols)
            select[torch.as_tensor(crosses.item_columns), torch.arange(n_cols)] = 1.0
            self.register_buffer("cross_mask", torch.as_tensor(crosses.mask), persistent=False)
            self.register_buffer("cross_select", select, persistent=False)

    def _cross_table(self) -> torch.Tensor:
        """Rows of the global feature space: user features -> their crossed weights
        W * M, item features -> their position among the crossed item columns."""
        mask, select = cast(torch.Tensor, self.cross_mask), cast(torch.Tensor, self.cross_select)
        return torch.cat([self.cross_weight * mask, select])

    def fields(self, users: torch.Tensor | None, items: torch.Tensor | None,
               bags: tuple[torch.Tensor, ...]) -> list[tuple[torch.Tensor, ...]]:
        """[(E, first-order)] of the user side (when ``users`` is given) and of the item
        side (when ``items`` is given) of n rows, plus the side's crossed vector when the
        module has crosses; ``bags`` hold each row's feature bags of the sides asked for
        (user fields first)."""
        sides = [(users, self.n_user_fields, self.ids[0], self.user_embedding),
                 (items, self.n_item_fields, self.ids[1], self.item_embedding)]
        sides = [side for side in sides if side[0] is not None]
        n = len(cast(torch.Tensor, sides[0][0]))
        n_bags = sum(side[1] for side in sides)
        feats = cross = None
        if n_bags:
            idx, weights, offsets = bags
            feats = F.embedding_bag(idx, self.feature_embedding, offsets, mode="sum",
                                    per_sample_weights=weights).view(n, n_bags, -1)
            if self.crossed:
                cross = F.embedding_bag(idx, self._cross_table(), offsets, mode="sum",
                                        per_sample_weights=weights).view(n, n_bags, -1)
        out: list[tuple[torch.Tensor, ...]] = []
        start = 0
        for ids, n_side, use_id, table in sides:
            parts = [table(ids).unsqueeze(1)] if use_id else []
            if n_side and feats is not None:
                parts.append(feats[:, start:start + n_side])
            both = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
            side: tuple[torch.Tensor, ...] = (both[..., :-1], both[..., -1].sum(1))
            if self.crossed:  # the side's crossed vector: x_u (W * M), or x_i selected
                side += (cross[:, start:start + n_side].sum(1) if cross is not None
                         and n_side else both.new_zeros(n, self.cross_weight.shape[1]),)
            out.append(side)
            start += n_side
        return out

    def user_half(self, emb: torch.Tensor, lin: torch.Tensor
                  ) -> tuple[torch.Tensor, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    def item_half(self, emb: torch.Tensor, lin: torch.Tensor
                  ) -> tuple[torch.Tensor, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    def combine(self, user: tuple[torch.Tensor, ...], item: tuple[torch.Tensor, ...]
                ) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def logits(self, batch: Batch) -> torch.Tensor:
        """Logit of each (user, item) row of a batch."""
        user, item = self.fields(batch["users"], batch["items"],
                                 (batch["bag_idx"], batch["bag_w"], batch["bag_off"]))
        halves = self.item_half(*item)
        return self.combine(self.user_half(*user), tuple(t.unsqueeze(1) for t in halves))[:, 0]

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        logits = self.logits(batch)
        if self.loss == "mse":
            return losses.mse(logits, batch["labels"])
        if self.loss == "bpr":
            n = int((batch["labels"] > 0).sum())  # positives first, then one negative each
            return losses.bpr(logits[:n], logits[n:])
        return losses.bce_with_logits(logits, batch["labels"])


def _table(rows: int, width: int, init_scale: float) -> torch.Tensor:
    """Embeddings ~ N(0, s^2) with a zero first-order column; s = ``init_scale``, or when
    it is 0 Glorot's sqrt(2 / (rows + width)) (RecBole's Xavier-normal tables)."""
    std = init_scale if init_scale > 0 else (2.0 / max(1, rows + width)) ** 0.5
    return torch.cat([torch.randn(rows, width) * std, torch.zeros(rows, 1)], dim=1)


def linear(n_in: int, n_out: int, bias: bool = True) -> nn.Linear:
    """A linear layer with Glorot-normal weights and zero bias (as RecBole's context-aware
    models initialise theirs); its product may run in bfloat16 while training (see
    :func:`~._torch.set_training_precision`)."""
    layer = MixedPrecisionLinear(n_in, n_out, bias=bias)
    nn.init.xavier_normal_(layer.weight)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


def mlp(sizes: tuple[int, ...], dropout: float) -> nn.Sequential:
    """Dropout -> Linear -> ReLU per layer of ``sizes`` (input size first); the dropout
    is NCF's 16-bit :class:`~.ncf.Dropout16` (cheaper than ``nn.Dropout`` on the CPU)."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [Dropout16(dropout), linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)
