"""The ``torch_state`` artifact part: a module's state dict as named arrays, never pickle.

A :class:`TorchState` is a neural model's learned parameters (``module_state_``). After a
fit it wraps the live module (no copy: arrays are taken when the model is saved); after a
load it holds the validated arrays until the model rebuilds its module from them, lazily,
on first use.

On disk the part is one entry per state-dict tensor in the model's ``arrays.npz``
(``t0``, ``t1``, ...) and the tensor names, in order, in the part's metadata. Loading
checks the names (unique, one per array), dtypes (float, or integer/bool buffers) and
finite floats here; :meth:`TorchState.check_against` then compares names, shapes and
dtypes with the module rebuilt from the saved parameters and vocabularies (on torch's
``meta`` device: no memory), so a tampered directory fails with :class:`ArtifactError`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from recoforge.artifacts.parts import register_part
from recoforge.errors import ArtifactError
from recoforge.models.neural._torch import to_numpy

_KINDS = "fiub"
MAX_TENSORS = 10_000


class TorchState:
    """The state dict of a torch module, live or as arrays.

    Parameters
    ----------
    arrays : dict of str to ndarray, optional
        Tensor name -> values (a loaded state).
    module : nn.Module, optional
        The live module (a fitted state); its state dict is read when needed.
    """

    def __init__(self, arrays: dict[str, np.ndarray] | None = None,
                 module: nn.Module | None = None) -> None:
        if (arrays is None) == (module is None):
            raise ValueError("TorchState holds either arrays or a module")
        self._arrays = arrays
        self.module = module

    def arrays(self) -> dict[str, np.ndarray]:
        """Name -> CPU array of every state-dict entry (a copy when the module is live)."""
        if self.module is not None:
            return {name: to_numpy(t) for name, t in self.module.state_dict().items()}
        assert self._arrays is not None
        return dict(self._arrays)

    def attach(self, module: nn.Module) -> nn.Module:
        """Load the arrays into ``module`` (built for them), keep it and drop the arrays."""
        tensors = {name: torch.from_numpy(np.ascontiguousarray(a))
                   for name, a in self.arrays().items()}
        module.load_state_dict(tensors, strict=True)
        self.module, self._arrays = module, None
        return module

    # ------------------------------------------------------------------ validation
    def check_against(self, expected: nn.Module) -> None:
        """Raise ArtifactError unless names, shapes and dtypes equal ``expected``'s."""
        wanted = {name: (tuple(t.shape), str(t.dtype).removeprefix("torch."))
                  for name, t in expected.state_dict().items()}
        have = {name: (tuple(a.shape), str(a.dtype)) for name, a in self.arrays().items()}
        missing, extra = sorted(set(wanted) - set(have)), sorted(set(have) - set(wanted))
        if missing:
            raise ArtifactError(f"torch state lacks {missing[:3]} of the model's module")
        if extra:
            raise ArtifactError(f"torch state holds {extra[:3]}, which the model's module "
                                f"does not have")
        for name, (shape, dtype) in wanted.items():
            if have[name] != (shape, dtype):
                raise ArtifactError(f"torch state {name} has shape {have[name][0]} and dtype "
                                    f"{have[name][1]}; the module needs {shape} {dtype}")

    # ------------------------------------------------------------------ artifact part
    def to_parts(self) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, bytes]]:
        arrays = self.arrays()
        names = list(arrays)
        return ({"names": names},
                {f"t{i}": arrays[name] for i, name in enumerate(names)}, {})

    @classmethod
    def from_parts(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray],
                   blobs: dict[str, bytes]) -> TorchState:
        names = meta.get("names")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) \
                or len(set(names)) != len(names) or len(names) > MAX_TENSORS:
            raise ArtifactError("torch state: tensor names must be a list of unique strings")
        if blobs or set(arrays) != {f"t{i}" for i in range(len(names))}:
            raise ArtifactError(f"torch state: {len(arrays)} arrays (and {len(blobs)} blobs) "
                                f"for {len(names)} tensor names")
        values = {}
        for i, name in enumerate(names):
            array = arrays[f"t{i}"]
            if array.dtype.kind not in _KINDS:
                raise ArtifactError(f"torch state {name}: dtype {array.dtype} is not numeric")
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise ArtifactError(f"torch state {name} holds NaN or infinite values")
            values[name] = array
        return cls(arrays=values)


register_part("torch_state", TorchState)
