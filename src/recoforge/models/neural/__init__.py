"""Neural models on PyTorch (extra ``deep``): one training engine, then the models.

Importing this package without torch raises :class:`~recoforge.errors.MissingDependencyError`
naming the extra; the model registry then skips the family, and asking for one of its
models by name says which extra to install.

Layout
------
- :mod:`._torch`: device choice ("auto" / "cpu" / "cuda"), seeds (a ``torch.Generator``
  plus a NumPy generator), threads (torch follows :mod:`recoforge.threads`, set once).
- :mod:`.engine`: :class:`~.engine.TorchRecommender` (the base of every neural model) and
  :class:`~.engine.NeuralConfig` (the hyperparameters every neural model shares).
- :mod:`.trainer`: the one :class:`~.trainer.Trainer` loop (optimisers and learning-rate
  schedules by name, early stopping through a caller's validation callback, best-epoch
  restore, loss history, progress hook).
- :mod:`.batches`: mini-batches straight from CSR arrays (interactions or user rows).
- :mod:`.samplers`: negative samplers (uniform, popularity^beta, in-batch, hard).
- :mod:`.losses`: MSE, BCE, BPR, sampled softmax, multinomial likelihood, KL annealing.
- :mod:`.state`: the ``torch_state`` artifact part (a state dict as named arrays).
- :mod:`.embedding_mf`: the first model (embeddings + biases, MSE or BCE).
"""

from recoforge.errors import require

require("torch", "deep")
