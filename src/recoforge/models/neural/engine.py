"""The base class of the neural models: build, train, save, load, score, fold in.

A neural model subclasses :class:`TorchRecommender`, declares its hyperparameters in a
``Config`` deriving from :class:`NeuralConfig` (or :class:`UserEmbeddingConfig` when it
has per-user parameters), and implements

- ``_build_module(n_users, n_items) -> nn.Module``: the network, from the config (and
  learned scalars set before training, e.g. ``data_kind_``), never from the training
  data: it is rebuilt this way on load. The module defines
  ``calculate_loss(batch) -> scalar tensor`` (RecBole-style: the model owns its loss;
  helpers in :mod:`.losses`) and, for the default scoring, ``full_scores(users) ->
  (b, n_items)``;
- ``_batches(module, matrix, *, seeds, device, batch_size) -> BatchSource``: the batches
  its loss reads, from a users x items CSR (the training matrix, or a fold-in's
  histories), e.g. :class:`~.batches.InteractionBatches` with a sampler from
  :mod:`.samplers`;
- optionally ``_prepare_fit(data)`` (statistics the module needs, as learned state),
  ``_score_module(module, users, history)`` (scores of a block of rows; override for
  history-based models such as autoencoders), ``_fold_in_closed_form(history, module)``
  and the capabilities / ``state_spec`` of :class:`~recoforge.models.base.Recommender`.

The engine owns the rest: device placement (``device="auto"``: CUDA when present), seeds
(:mod:`._torch`: identical parameters for one seed on the CPU), the one
:class:`~.trainer.Trainer` (``fit(data, validation=callable(model) -> float,
progress=callable(epoch, n_epochs, loss=..., metric=...))``), the learned state
(``module_state_``: a :class:`~.state.TorchState` artifact part, validated on load
against the module rebuilt on torch's meta device; ``loss_history_``,
``validation_history_``, ``best_epoch_``), the lazy rebuild of the module on load, eval
mode and ``torch.no_grad`` for scoring, scoring in row blocks of at most
``SCORE_BLOCK_FLOATS`` scores, and fold-in.

Fold-in (``user_state = "fold_in"``): a model lists its per-user parameters in
``user_parameters`` (state-dict names whose first axis is the user, e.g.
``("user_embedding.weight", "user_bias.weight")``). A query that is not exactly stored
users (``Query.stored_users is None``: new users, or known users with new events) is
scored by a fresh module built for its n rows (on the meta device, so modules must keep
every tensor as a parameter or buffer) whose other parameters and buffers share the
trained tensors (frozen, no copy); its user rows start at the mean trained row and take
``fold_in_steps`` full-batch Adam steps (``fold_in_learning_rate``) on the model's own
loss over the rows' histories, batches from ``_batches`` on the history CSR (so negatives
avoid the history). Same seed, same history: same vector. A model whose loss allows a
closed form returns the user rows from ``_fold_in_closed_form`` instead (e.g. a ridge
solve for dot-product MSE). Memory of fold-in: the n rows' parameters and one batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from recoforge.data.dataset import Dataset
from recoforge.data.interactions import Interactions
from recoforge.errors import ArtifactError
from recoforge.models.base import Recommender
from recoforge.models.neural._torch import DEVICES, Seeds, resolve_device, seeded_torch
from recoforge.models.neural.batches import BatchSource
from recoforge.models.neural.state import TorchState
from recoforge.models.neural.trainer import OPTIMIZERS, SCHEDULES, Trainer, make_optimizer
from recoforge.models.params import ModelConfig, param, seed_param
from recoforge.models.query import Query

#: scores computed on the device at once (64 MiB of float32)
SCORE_BLOCK_FLOATS = 1 << 24
Validation = Callable[[Any], float]
_BUILD_LOCK = threading.Lock()


@dataclass(frozen=True)
class NeuralConfig(ModelConfig):
    """Hyperparameters every neural model shares (subclasses add theirs, and may
    redeclare a field to change its default)."""

    epochs: int = param(20, ge=1, le=100_000, doc="passes over the training data")
    batch_size: int = param(1024, ge=1, le=1 << 24, doc="rows per mini-batch")
    learning_rate: float = param(0.001, gt=0.0, le=10.0, doc="optimiser step size")
    optimizer: str = param("adam", choices=OPTIMIZERS, doc="adam, adamw, adagrad or sgd")
    weight_decay: float = param(0.0, ge=0.0, le=10.0, doc="optimiser weight decay")
    lr_schedule: str = param("none", choices=SCHEDULES,
                             doc="none, step, cosine or exponential (per epoch)")
    lr_step: int = param(10, ge=1, le=100_000, doc="epochs per step of lr_schedule=step")
    lr_gamma: float = param(0.5, gt=0.0, le=1.0, doc="factor of the step/exponential schedule")
    patience: int = param(0, ge=0, le=100_000,
                          doc="epochs without validation improvement before stopping "
                              "(0: never; needs fit(validation=...))")
    device: str = param("auto", choices=DEVICES, doc="auto (CUDA when present), cpu or cuda")
    seed: int | None = seed_param("seed of initialisation, shuffling and sampling")


@dataclass(frozen=True)
class UserEmbeddingConfig(NeuralConfig):
    """For models with per-user parameters: how a history is folded in."""

    fold_in_steps: int = param(50, ge=0, le=100_000,
                               doc="Adam steps that fit a new user's parameters")
    fold_in_learning_rate: float = param(0.05, gt=0.0, le=10.0, doc="fold-in step size")


class TorchRecommender(Recommender):
    """Base of the neural models (not registered itself); see the module docstring."""

    Config: ClassVar[type[ModelConfig]] = NeuralConfig
    scoring_params = frozenset({"device"})
    #: learned state and its axes, checked on load (see recoforge.artifacts.state)
    state_spec = {"module_state_": "any", "loss_history_": "epochs",
                  "validation_history_": "epochs: nonfinite", "best_epoch_": "int"}
    #: state-dict names of per-user parameters (first axis = user): folded in
    user_parameters: ClassVar[tuple[str, ...]] = ()
    module_state_: TorchState
    loss_history_: np.ndarray
    validation_history_: np.ndarray
    best_epoch_: int
    _validation: Validation | None = None

    # ------------------------------------------------------------------ to implement
    def _build_module(self, n_users: int, n_items: int) -> nn.Module:  # pragma: no cover
        raise NotImplementedError

    def _batches(self, module: nn.Module, matrix: sp.csr_matrix, *, seeds: Seeds,
                 device: torch.device, batch_size: int) -> BatchSource:  # pragma: no cover
        raise NotImplementedError

    def _prepare_fit(self, data: Dataset) -> None:
        """Learned statistics the module needs (e.g. the mean rating); default nothing."""

    def _score_module(self, module: nn.Module, users: torch.Tensor,
                      history: sp.csr_matrix) -> torch.Tensor:
        """Scores (b, n_items) of a block of rows; default ``module.full_scores(users)``."""
        return module.full_scores(users)  # type: ignore[operator]

    def _fold_in_closed_form(self, history: sp.csr_matrix, module: nn.Module
                             ) -> dict[str, torch.Tensor] | None:
        """User parameters (name -> (n, ...)) of the history rows in closed form, or None
        to fold in by gradient steps."""
        return None

    # ------------------------------------------------------------------ fitting
    def fit(self, data: Dataset | Interactions, fallback: str | Recommender | None = None,
            progress: Callable[..., None] | None = None, *,
            validation: Validation | None = None) -> TorchRecommender:
        """Train on ``data``; returns ``self``.

        Parameters
        ----------
        data, fallback
            As :meth:`Recommender.fit`.
        progress : callable(epoch, n_epochs, loss=..., metric=...), optional
            Called after each epoch (``metric`` only with validation), as every
            iterative model's progress hook.
        validation : callable(model) -> float, optional
            Scores the model being trained after each epoch (higher is better; e.g. a
            closure over ``recoforge.evaluation.evaluate`` on a validation split). Enables
            early stopping (``patience``) and restores the best epoch's parameters.
        """
        self._validation = validation
        try:
            super().fit(data, fallback, progress)
        finally:
            self._validation = None
        return self

    def _fit(self, data: Dataset) -> None:
        cfg = self.config
        device = resolve_device(cfg.device)
        seeds = Seeds.from_seed(cfg.seed)
        trainer = Trainer.from_config(cfg)
        self._prepare_fit(data)
        with seeded_torch(seeds.seed, device):
            module = self._build_module(len(self.user_index_), len(self.item_index_))
            module.to(device)
            self.module_state_ = TorchState(module=module)
            batches = self._batches(module, data.matrix(), seeds=seeds, device=device,
                                    batch_size=cfg.batch_size)
            validate = None
            if self._validation is not None:
                check = self._validation
                validate = lambda: check(self)  # noqa: E731
            result = trainer.train(module, batches, validate, self._report_epoch)
        self.loss_history_ = result.loss_history
        self.validation_history_ = result.metric_history
        self.best_epoch_ = int(result.best_epoch)

    def _report_epoch(self, epoch: int, n_epochs: int, loss: float,
                      metric: float | None) -> None:
        info = {"loss": loss} if metric is None else {"loss": loss, "metric": metric}
        self._epoch_done(epoch, n_epochs, **info)

    # ------------------------------------------------------------------ the module
    @property
    def module(self) -> nn.Module:
        """The trained module on the configured device, rebuilt from a loaded state on
        first use."""
        self._check_fitted()
        state = self.module_state_
        device = resolve_device(self.config.device)
        with _BUILD_LOCK:
            if state.module is None:
                with torch.device("cpu"):
                    state.attach(self._build_module(len(self.user_index_),
                                                    len(self.item_index_)))
            module = state.module
            assert module is not None
            if _device_of(module) != device:
                module.to(device)
        return module

    def _check_state(self) -> None:
        """On load: the saved tensors match the module rebuilt from params and vocabularies."""
        with torch.device("meta"):
            expected = self._build_module(len(self.user_index_), len(self.item_index_))
        if not isinstance(self.module_state_, TorchState):
            raise ArtifactError(f"module_state_ is a {type(self.module_state_).__name__}, "
                                f"not a torch state")
        self.module_state_.check_against(expected)

    # ------------------------------------------------------------------ scoring
    def _score(self, query: Query) -> np.ndarray:
        module, users = self._module_for(query)
        n_items = len(self.item_index_)
        out = np.empty((len(query), n_items), dtype=np.float32)
        step = max(1, SCORE_BLOCK_FLOATS // max(n_items, 1))
        device = _device_of(module)
        with torch.no_grad():
            for start in range(0, len(query), step):
                rows = slice(start, start + step)
                block = self._score_module(module, users[rows].to(device),
                                           query.history[rows])
                out[rows] = block.float().cpu().numpy()
        return out

    def _module_for(self, query: Query) -> tuple[nn.Module, torch.Tensor]:
        """(module, row users) that score ``query``: the trained module and the users'
        indices for stored users (and for history-based models), else a folded-in module
        with rows 0..n-1. The module is in eval mode."""
        module = self.module
        if self.user_parameters and query.stored_users is None:
            return self._fold_in(query.history), torch.arange(len(query))
        module.eval()
        return module, torch.as_tensor(query.users)

    def _fold_in(self, history: sp.csr_matrix) -> nn.Module:
        """A module for ``history``'s rows: user parameters fitted, the rest shared."""
        trained = self.module
        device = _device_of(trained)
        history = sp.csr_matrix(history, dtype=np.float32)
        seed = 0 if self.config.seed is None else int(self.config.seed)
        with torch.device("meta"):  # every tensor is replaced: shared or the user rows
            folded = self._build_module(history.shape[0], len(self.item_index_))
        own = _share_parameters(folded, trained, self.user_parameters)
        folded.eval()
        closed = self._fold_in_closed_form(history, trained)
        if closed is not None:
            with torch.no_grad():
                for name, value in closed.items():
                    own[name].copy_(value)
            return folded
        steps = int(getattr(self.config, "fold_in_steps", 50))
        if steps == 0 or history.nnz == 0:
            return folded
        with torch.enable_grad(), seeded_torch(seed, device):
            batches = self._batches(folded, history, seeds=Seeds.from_seed(seed),
                                    device=device, batch_size=history.nnz)
            opt = make_optimizer("adam", list(own.values()),
                                 float(getattr(self.config, "fold_in_learning_rate", 0.05)))
            for _ in range(steps):
                for batch in batches:
                    opt.zero_grad(set_to_none=True)
                    folded.calculate_loss(batch).backward()  # type: ignore[operator]
                    opt.step()
        for value in own.values():
            value.requires_grad_(False)
        return folded


def _device_of(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    return torch.device("cpu")


def _share_parameters(folded: nn.Module, trained: nn.Module,
                      user_parameters: tuple[str, ...]) -> dict[str, nn.Parameter]:
    """Point ``folded``'s non-user parameters and buffers at ``trained``'s tensors (frozen,
    no copy); set its user parameters to the mean trained row. Returns the user ones."""
    trained_params = dict(trained.named_parameters())
    own: dict[str, nn.Parameter] = {}
    for name, _ in list(folded.named_parameters()):
        owner_name, _, leaf = name.rpartition(".")
        owner = folded.get_submodule(owner_name)
        source = trained_params[name].detach()
        if name in user_parameters:
            rows = folded.get_parameter(name).shape[0]
            start = source.mean(dim=0, keepdim=True).expand(rows, *source.shape[1:])
            own[name] = nn.Parameter(start.clone())
            setattr(owner, leaf, own[name])
        else:
            setattr(owner, leaf, nn.Parameter(source, requires_grad=False))
    for name, buffer in trained.named_buffers():
        owner_name, _, leaf = name.rpartition(".")
        setattr(folded.get_submodule(owner_name), leaf, buffer)
    return own
