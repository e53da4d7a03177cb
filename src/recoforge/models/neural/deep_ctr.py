"""Deep models over fields: ``nfm`` (He & Chua 2017), ``deepfm`` (Guo et al. 2017) and
``wide_deep`` (Cheng et al. 2016).

Over the field embeddings e_f of a (user, item) pair (see :mod:`.fields`), with the
first-order term w(x) = b + sum_f w_f and an MLP h (ReLU layers ``layers``, dropout
before each, a linear output):

- NFM:      y = w(x) + h(f_BI), the bi-interaction pooling
  f_BI = 1/2 ((sum_f e_f)^2 - sum_f e_f^2) (element-wise squares; a k-vector);
- DeepFM:   y = w(x) + sum_{f<g} <e_f, e_g> + h([e_1; ...; e_F]) (FM and deep part on
  shared embeddings);
- Wide&Deep: y = w(x) + x_u^T (W * M) x_i + h([e_1; ...; e_F]): the wide part is the
  linear model over every field's features plus, with ``crosses``, the cross-product
  features of chosen (user field, item field) pairs -- a weight W_ab for each pair of a
  user feature a and an item feature b of crossed fields (M masks the other pairs), e.g.
  gender x genre, the paper's memorisation of feature co-occurrences.

Pair models (``scores_full_catalogue = False``): each splits into a user half and an item
half computed once per user and once per candidate item (f_BI = S_u * S_i + P_u + P_i with
P = 1/2 (S^2 - sum_f e_f^2) on each side; the first layer W [e_U; e_I] = W_U e_U + W_I e_I),
so only the layers after the first run per pair. Training, losses, fold-in and new items:
:class:`.fm.FieldRecommender`.

Fit O(epochs * rows * (features * k + sum of layer products)); scoring O(n c sum of layer
products) in tiles; memory: the tables plus one batch.

References
----------
He, Chua (2017), "Neural Factorization Machines for Sparse Predictive Analytics", SIGIR.
Guo, Tang, Ye, Li, He (2017), "DeepFM: A Factorization-Machine based Neural Network for
CTR Prediction", IJCAI.
Cheng et al. (2016), "Wide & Deep Learning for Recommender Systems", DLRS (cross-product
transformations: section 3.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from recoforge.errors import ConfigError
from recoforge.models.neural._torch import (
    PRECISION_DOC,
    PRECISIONS,
    product,
    set_training_precision,
)
from recoforge.models.neural.fields import FieldModule, cross_layout, linear, mlp
from recoforge.models.neural.fm import FieldConfig, FieldRecommender
from recoforge.models.neural.ncf import Dropout16, parse_layers
from recoforge.models.params import param
from recoforge.models.registry import register


@dataclass(frozen=True)
class NFMConfig(FieldConfig):
    layers: str = param("64,64,64", doc="MLP hidden sizes over f_BI, comma-separated")
    dropout: float = param(0.0, ge=0.0, lt=1.0, doc="dropout before every MLP layer")
    training_precision: str = param("float32", choices=PRECISIONS, doc=PRECISION_DOC)

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_layers(self.layers, "layers")


@dataclass(frozen=True)
class DeepFMConfig(NFMConfig):
    layers: str = param("256,256,256", doc="MLP hidden sizes over the concatenated fields")
    dropout: float = param(0.2, ge=0.0, lt=1.0, doc="dropout before every MLP layer")


@dataclass(frozen=True)
class WideDeepConfig(NFMConfig):
    layers: str = param("32,16,8", doc="MLP hidden sizes over the concatenated fields")
    dropout: float = param(0.1, ge=0.0, lt=1.0, doc="dropout before every MLP layer")
    crosses: str = param("", doc="cross-product features of the wide part: '' (none), "
                                 "'all' (every user field x every item field) or "
                                 "'user_field*item_field,...' (e.g. 'gender*genres')")

    def __post_init__(self) -> None:
        super().__post_init__()
        for part in filter(None, (p.strip() for p in self.crosses.split(","))):
            if part != "all" and part.count("*") != 1:
                raise ConfigError(f"crosses: {part!r} is not 'user_field*item_field' "
                                  f"(or 'all')")


def _fm_parts(emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(S = sum_f e_f, P = 1/2 (S^2 - sum_f e_f^2)) of (n, fields, k) embeddings."""
    total = emb.sum(1)
    return total, 0.5 * (total.pow(2) - emb.pow(2).sum(1))


class NFMModule(FieldModule):
    """NFM halves: user (S_u, P_u, w_u + b), item (S_i, P_i, w_i)."""

    def __init__(self, layers: tuple[int, ...], dropout: float, **sizes: Any) -> None:
        super().__init__(**sizes)
        k = self.width
        self.deep = mlp((k, *layers), dropout)
        self.out = linear(layers[-1], 1, bias=False)

    def user_half(self, emb: torch.Tensor, lin: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (*_fm_parts(emb), lin + self.bias)

    def item_half(self, emb: torch.Tensor, lin: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (*_fm_parts(emb), lin)

    def combine(self, user: tuple[torch.Tensor, ...], item: tuple[torch.Tensor, ...]
                ) -> torch.Tensor:
        (s_u, p_u, c_u), (s_i, p_i, c_i) = user, item
        pooled = s_u.unsqueeze(1) * s_i + p_u.unsqueeze(1) + p_i
        return self.out(self.deep(pooled))[..., 0] + c_u.unsqueeze(1) + c_i


class DeepModule(FieldModule):
    """DeepFM (``fm_term``) or Wide&Deep halves: the first MLP layer split by side."""

    def __init__(self, layers: tuple[int, ...], dropout: float, fm_term: bool,
                 **sizes: Any) -> None:
        super().__init__(**sizes)
        k = self.width
        self.fm_term, self.user_width = fm_term, (self.n_user_fields + self.ids[0]) * k
        self.low_precision = False  # bfloat16 first-layer products while training
        self.drop = Dropout16(dropout)
        self.first = linear(self.n_fields * k, layers[0])
        self.deep = mlp(layers, dropout)
        self.out = linear(layers[-1], 1)

    def _fm(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.fm_term:
            zero = emb.new_zeros(len(emb))
            return emb.new_zeros(len(emb), 0), zero
        total, half = _fm_parts(emb)
        return total, half.sum(-1)

    def user_half(self, emb: torch.Tensor, lin: torch.Tensor, *cross: torch.Tensor
                  ) -> tuple[torch.Tensor, ...]:
        total, own = self._fm(emb)
        weight = self.first.weight[:, :self.user_width]
        hidden = product(self.drop(emb.reshape(len(emb), -1)), weight,
                         self.training and self.low_precision)
        return hidden, total, lin + own + self.bias + self.out.bias, *cross

    def item_half(self, emb: torch.Tensor, lin: torch.Tensor, *cross: torch.Tensor
                  ) -> tuple[torch.Tensor, ...]:
        total, own = self._fm(emb)
        weight = self.first.weight[:, self.user_width:]
        hidden = product(self.drop(emb.reshape(len(emb), -1)), weight,
                         self.training and self.low_precision) + self.first.bias
        return hidden, total, lin + own, *cross

    def combine(self, user: tuple[torch.Tensor, ...], item: tuple[torch.Tensor, ...]
                ) -> torch.Tensor:
        (h_u, s_u, c_u, *x_u), (h_i, s_i, c_i, *x_i) = user, item
        hidden = self.deep(torch.relu(h_u.unsqueeze(1) + h_i))
        out = hidden @ self.out.weight[0] + c_u.unsqueeze(1) + c_i
        if self.fm_term:
            out = out + (s_u.unsqueeze(1) * s_i).sum(-1)
        if x_u:  # wide crosses: x_u^T (W * M) x_i
            out = out + (x_u[0].unsqueeze(1) * x_i[0]).sum(-1)
        return out


class _Deep(FieldRecommender):
    fm_term: ClassVar[bool] = False

    def _make_module(self, sizes: dict[str, Any]) -> FieldModule:
        cfg = self.config
        crosses = cross_layout(getattr(cfg, "crosses", ""), list(self.field_names_),
                               self.user_field_starts_, self.user_feature_matrix_.shape[1],
                               self.item_field_starts_, self.item_feature_matrix_.shape[1])
        module = DeepModule(parse_layers(cfg.layers), cfg.dropout, self.fm_term,
                            crosses=crosses, **sizes)
        return set_training_precision(module, cfg.training_precision)


@register
class NFM(FieldRecommender):
    """Neural factorisation machine: bi-interaction pooling, then an MLP (see module)."""

    name = "nfm"
    Config = NFMConfig

    def _make_module(self, sizes: dict[str, Any]) -> FieldModule:
        cfg = self.config
        module = NFMModule(parse_layers(cfg.layers), cfg.dropout, **sizes)
        return set_training_precision(module, cfg.training_precision)


@register
class DeepFM(_Deep):
    """FM and an MLP over the same field embeddings, summed (see module)."""

    name = "deepfm"
    Config = DeepFMConfig
    fm_term = True


@register
class WideDeep(_Deep):
    """A linear model over the fields plus an MLP over their embeddings (see module)."""

    name = "wide_deep"
    Config = WideDeepConfig
