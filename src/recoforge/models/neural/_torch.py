"""Torch plumbing shared by the neural models: devices, seeds and threads.

- Devices: ``"auto"`` is CUDA when a GPU is visible, else the CPU; ``"cuda"`` without a
  GPU is a :class:`ConfigError`. Models run one code path on either.
- Seeds: :class:`Seeds` turns a model's ``seed`` into a ``torch.Generator`` (shuffling),
  a NumPy generator (negative sampling) and an integer that seeds torch's global
  generator inside :func:`seeded_torch` (weight initialisation, dropout), which restores
  the caller's global state afterwards. On the CPU two fits with one seed are identical.
- Precision: :class:`MixedPrecisionLinear` and :func:`product` run a layer's products in
  bfloat16 while training when a model's ``training_precision`` asks for it (parameters,
  optimiser, losses and scoring stay float32).
- Threads: torch's intra-op pool follows :func:`recoforge.threads.get_num_threads`, set
  once when this module is imported (and again by ``recoforge.threads.set_num_threads``),
  never per call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recoforge.errors import ConfigError
from recoforge.threads import get_num_threads

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("float32", "bfloat16")
ModuleT = TypeVar("ModuleT", bound=nn.Module)
PRECISION_DOC = ("dense products while training: float32, or bfloat16 (faster on GPUs and "
                 "CPUs with bfloat16 units, slower elsewhere; parameters and scores stay "
                 "float32)")
torch.set_num_threads(get_num_threads())


def resolve_device(name: str) -> torch.device:
    """The torch device for a ``device`` parameter ("auto", "cpu" or "cuda")."""
    if name not in DEVICES:
        raise ConfigError(f"device must be one of {list(DEVICES)}, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but no CUDA GPU is visible to torch; use "
                          "device='auto' or 'cpu'")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


@dataclass
class Seeds:
    """The random sources of one fit (or one fold-in), all derived from one integer.

    Attributes
    ----------
    seed : int
        The integer (drawn from fresh entropy when the model's seed is None).
    torch : torch.Generator
        CPU generator for shuffles (``torch.randperm(..., generator=...)``).
    numpy : numpy.random.Generator
        For the compiled negative samplers' stream seeds.
    """

    seed: int
    torch: torch.Generator
    numpy: np.random.Generator

    @classmethod
    def from_seed(cls, seed: int | None) -> Seeds:
        if seed is None:
            seed = int(np.random.default_rng().integers(2**32))
        generator = torch.Generator(device="cpu")
        generator.manual_seed(int(seed))
        return cls(int(seed), generator, np.random.default_rng(int(seed)))


@contextlib.contextmanager
def seeded_torch(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global generators (CPU, and ``device`` when CUDA) in this block and
    restore the caller's state afterwards: initialisers and dropout become reproducible
    without changing the global random state of the process."""
    devices = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A detached CPU NumPy copy of a tensor."""
    return tensor.detach().to("cpu").numpy().copy()


def product(x: torch.Tensor, weight: torch.Tensor, low: bool) -> torch.Tensor:
    """x @ weight.T, with both rounded to bfloat16 for the product when ``low`` (the
    result, and so the gradients' accumulation targets, float32)."""
    if not low:
        return F.linear(x, weight)
    return F.linear(x.to(torch.bfloat16), weight.to(torch.bfloat16)).float()


class MixedPrecisionLinear(nn.Linear):
    """A dense layer (an ``nn.Linear``, same state dict) whose product runs in bfloat16
    while training when ``low_precision`` is set: the input and weight are rounded to
    bfloat16 for the forward product (and so for both products of the backward), the
    float32 bias is added to the float32 result. Parameters stay float32 (the optimiser
    updates them in full precision); in eval mode the layer is exact float32."""

    def __init__(self, in_features: int, out_features: int, low_precision: bool = False,
                 bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.low_precision = low_precision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.low_precision):
            return F.linear(x, self.weight, self.bias)
        out = product(x, self.weight, True)
        return out if self.bias is None else out + self.bias


def set_training_precision(module: ModuleT, precision: str) -> ModuleT:
    """Switch every :class:`MixedPrecisionLinear` of ``module`` (and the module itself,
    when it reads ``low_precision``) to ``precision``; returns the module."""
    if precision not in PRECISIONS:
        raise ConfigError(f"training_precision must be one of {list(PRECISIONS)}, got "
                          f"{precision!r}")
    low = precision == "bfloat16"
    for part in module.modules():
        if isinstance(part, MixedPrecisionLinear) or hasattr(part, "low_precision"):
            part.low_precision = low  # type: ignore[assignment]
    return module
