"""The one training loop of the neural models.

:class:`Trainer` runs mini-batch gradient descent on any module that defines
``calculate_loss(batch) -> scalar tensor`` over a batch source (see :mod:`.batches`):

- optimisers by name: ``adam``, ``adamw``, ``adagrad``, ``sgd`` (with ``weight_decay``),
  torch's fused kernels when the parameters allow (same update rule, one kernel per step);
- learning-rate schedules by name, stepped once per epoch: ``none``, ``step`` (times
  ``lr_gamma`` every ``lr_step`` epochs), ``cosine`` (to 0 over the epochs),
  ``exponential`` (times ``lr_gamma`` each epoch);
- validation through a callback the caller passes (``validate() -> float``, higher is
  better, run after each epoch with the module in eval mode): early stopping after
  ``patience`` epochs without improvement (0: never), and the best epoch's parameters
  restored at the end (a copy of the state dict is kept: memory x2 on the device);
- the loss history (mean batch loss per epoch, weighted by batch size), a progress hook
  ``progress(epoch, n_epochs, loss, metric)`` and a DEBUG log line per epoch;
- hooks a module may define: ``on_epoch_start(epoch, n_epochs)`` (e.g. alternating
  updates: parameters with ``requires_grad = False`` get no gradient and no step).

A NaN or infinite loss stops training with a ConfigError (lower the learning rate).
Models never import :mod:`recoforge.evaluation`: the metric comes in the callback.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from recoforge.errors import ConfigError
from recoforge.models.neural.batches import BatchSource

OPTIMIZERS = ("adam", "adamw", "adagrad", "sgd")
SCHEDULES = ("none", "step", "cosine", "exponential")
Progress = Callable[[int, int, float, "float | None"], None]
_log = logging.getLogger(__name__)


@dataclass
class TrainingResult:
    """What a training run leaves: per-epoch loss and metric (NaN without validation),
    the best epoch (0-based; the last one without validation) and whether it stopped
    early."""

    loss_history: np.ndarray
    metric_history: np.ndarray
    best_epoch: int
    stopped_early: bool


def make_optimizer(name: str, parameters: list[nn.Parameter], learning_rate: float,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """An optimiser by name over ``parameters``."""
    classes: dict[str, Any] = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
                               "adagrad": torch.optim.Adagrad, "sgd": torch.optim.SGD}
    if name not in classes:
        raise ConfigError(f"optimizer must be one of {list(OPTIMIZERS)}, got {name!r}")
    if not parameters:
        raise ConfigError("the module has no trainable parameters")
    fused = _can_fuse(parameters)
    return classes[name](parameters, lr=learning_rate, weight_decay=weight_decay,
                         **({"fused": True} if fused else {}))


def _can_fuse(parameters: list[nn.Parameter]) -> bool:
    """Whether torch's fused optimiser kernels apply: dense floating-point parameters on
    one CPU or CUDA device (one kernel per step instead of a loop of small ops)."""
    devices = {p.device.type for p in parameters}
    return (len(devices) == 1 and devices <= {"cpu", "cuda"}
            and all(p.is_floating_point() and not p.is_sparse for p in parameters))


def make_schedule(name: str, optimizer: torch.optim.Optimizer, epochs: int,
                  lr_step: int = 10, lr_gamma: float = 0.5) -> Any:
    """A learning-rate schedule by name (None for ``"none"``), stepped once per epoch."""
    sched = torch.optim.lr_scheduler
    if name == "none":
        return None
    if name == "step":
        return sched.StepLR(optimizer, step_size=lr_step, gamma=lr_gamma)
    if name == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    if name == "exponential":
        return sched.ExponentialLR(optimizer, gamma=lr_gamma)
    raise ConfigError(f"lr_schedule must be one of {list(SCHEDULES)}, got {name!r}")


class Trainer:
    """Mini-batch training of a module with ``calculate_loss`` (see the module docstring).

    Parameters
    ----------
    epochs : int
    learning_rate : float
    optimizer : {"adam", "adamw", "adagrad", "sgd"}
    weight_decay : float
        The optimiser's weight decay (L2 on every parameter; models usually put their
        own L2 in the loss instead).
    lr_schedule : {"none", "step", "cosine", "exponential"}
    lr_step : int
        Epochs per step of the "step" schedule.
    lr_gamma : float
        Factor of the "step" and "exponential" schedules.
    patience : int
        Epochs without a better validation metric before stopping (0: never stop).
    """

    def __init__(self, epochs: int, learning_rate: float, optimizer: str = "adam",
                 weight_decay: float = 0.0, lr_schedule: str = "none", lr_step: int = 10,
                 lr_gamma: float = 0.5, patience: int = 0) -> None:
        checks = [(isinstance(epochs, int) and epochs >= 1, "epochs must be >= 1"),
                  (learning_rate > 0 and math.isfinite(learning_rate),
                   "learning_rate must be a positive number"),
                  (weight_decay >= 0, "weight_decay must be >= 0"),
                  (lr_step >= 1, "lr_step must be >= 1"),
                  (0 < lr_gamma <= 1, "lr_gamma must be in (0, 1]"),
                  (patience >= 0, "patience must be >= 0"),
                  (optimizer in OPTIMIZERS, f"optimizer must be one of {list(OPTIMIZERS)}"),
                  (lr_schedule in SCHEDULES, f"lr_schedule must be one of {list(SCHEDULES)}")]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        self.epochs, self.learning_rate, self.optimizer = epochs, learning_rate, optimizer
        self.weight_decay, self.lr_schedule = weight_decay, lr_schedule
        self.lr_step, self.lr_gamma, self.patience = lr_step, lr_gamma, patience

    @classmethod
    def from_config(cls, config: Any) -> Trainer:
        """A trainer from a :class:`~.engine.NeuralConfig` (or anything with its fields)."""
        names = ("epochs", "learning_rate", "optimizer", "weight_decay", "lr_schedule",
                 "lr_step", "lr_gamma", "patience")
        return cls(**{name: getattr(config, name) for name in names})

    def train(self, module: nn.Module, batches: BatchSource,
              validate: Callable[[], float] | None = None,
              progress: Progress | None = None) -> TrainingResult:
        """Train ``module`` in place; returns the histories (see :class:`TrainingResult`)."""
        params = [p for p in module.parameters() if p.requires_grad]
        opt = make_optimizer(self.optimizer, params, self.learning_rate, self.weight_decay)
        schedule = make_schedule(self.lr_schedule, opt, self.epochs, self.lr_step,
                                 self.lr_gamma)
        losses: list[float] = []
        metrics: list[float] = []
        best: tuple[float, int, dict[str, torch.Tensor] | None] = (-math.inf, -1, None)
        stopped = False
        for epoch in range(self.epochs):
            losses.append(self._epoch(module, batches, opt, epoch))
            if schedule is not None:
                schedule.step()
            metric = self._validate(module, validate) if validate is not None else math.nan
            metrics.append(metric)
            _log.debug("epoch %d/%d: loss %.6g, metric %.6g, lr %.3g", epoch + 1,
                       self.epochs, losses[-1], metric, opt.param_groups[0]["lr"])
            if progress is not None:
                progress(epoch + 1, self.epochs, losses[-1],
                         None if validate is None else metric)
            if validate is None:
                continue
            if metric > best[0]:
                best = (metric, epoch, _copy_state(module))
            elif self.patience and epoch - best[1] >= self.patience:
                stopped = True
                break
        best_epoch = len(losses) - 1
        if best[2] is not None:
            best_epoch = best[1]
            if best_epoch != len(losses) - 1:
                module.load_state_dict(best[2])
        module.eval()
        return TrainingResult(np.asarray(losses), np.asarray(metrics), best_epoch, stopped)

    def _epoch(self, module: nn.Module, batches: BatchSource,
               opt: torch.optim.Optimizer, epoch: int) -> float:
        module.train()
        hook = getattr(module, "on_epoch_start", None)
        if callable(hook):
            hook(epoch, self.epochs)
        total: torch.Tensor | float = 0.0
        count = 0
        for batch in batches:
            opt.zero_grad(set_to_none=True)
            loss = module.calculate_loss(batch)  # type: ignore[operator]
            loss.backward()
            opt.step()
            size = len(next(iter(batch.values())))
            total = total + loss.detach() * size
            count += size
        mean = float(total) / max(count, 1)
        if not math.isfinite(mean):
            raise ConfigError(f"training diverged (loss {mean} in epoch {epoch + 1}); lower "
                              f"the learning rate or raise the regularisation")
        return mean

    @staticmethod
    def _validate(module: nn.Module, validate: Callable[[], float]) -> float:
        module.eval()
        value = validate()
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                or not math.isfinite(float(value)):
            raise ConfigError(f"the validation callback must return a finite number "
                              f"(higher is better), got {value!r}")
        return float(value)


def _copy_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: t.detach().clone() for name, t in module.state_dict().items()}
