"""Variational autoencoders of user histories: Mult-VAE and RecVAE.

Both read a user's history row x (binary: every stored event with a positive value is 1,
as in both papers; rating values are not used), encode ``normalize(x)`` (L2, with dropout
``dropout`` on the input while training) to a Gaussian q(z|x) = N(mu, diag(exp(logvar))),
decode a sample z = mu + eps * sigma (eps ~ N(0, noise_scale^2 I); noise_scale 1 as in
the papers, RecBole uses 0.01) to logits over the catalogue and minimise the negative
ELBO with a multinomial likelihood ``-sum_i x_i log softmax(logits)_i``
(:func:`.losses.multinomial_nll`).

- ``mult_vae`` (Liang et al. 2018): encoder ``n_items -> hidden_dim -> 2 latent_dim``
  and decoder ``latent_dim -> hidden_dim -> n_items`` (tanh), prior N(0, I), KL weight
  beta annealed linearly from 0 to ``anneal_cap`` over ``total_anneal_steps`` optimiser
  steps (:class:`.losses.KLAnnealing`; 0 steps: ``anneal_cap`` from the start). The beta
  reached at the end of training is ``kl_beta_``.
- ``recvae`` (Shenbin et al. 2020): the residual encoder of the paper (five dense layers
  of ``hidden_dim``, swish, layer norm, dense skip connections), a linear decoder, the
  composite prior ``w_0 N(0, I) + w_1 q_old(z|x) + w_2 N(0, e^10 I)`` where q_old is a
  frozen copy of the encoder taken after each epoch's encoder passes (the initial encoder
  in the first epoch), and a user-specific KL weight ``gamma * |x|`` (``beta`` when
  ``gamma`` is 0). An epoch is ``n_enc_epochs`` passes updating the encoder only (with
  input dropout) then ``n_dec_epochs`` passes updating the decoder only (no dropout; these
  steps compute the likelihood alone, the KL term having no gradient there).

Training batches are mini-batches of users (those with an event), their histories
straight from the CSR as bags of items, shuffled under the seed (:class:`HistoryBatches`,
the engine's :class:`~.batches.UserBatches` without the dense input); the encoder's first
layer reads the bags (:class:`SparseInput`: one ``embedding_bag``, O(nnz hidden_dim)
instead of O(batch_size n_items hidden_dim)). An epoch visits every user once, as
RecBole's VAE epochs do (see benchmarks/results/neural_vae.md). Scores are the decoder's
logits at z = mu (the mean of q(z|x)), computed from the query's history rows only: new
users and known users with new events need no fold-in (``user_state = "history"``), and a
stored user's history scores exactly as that user.

The likelihood reads the rows as bags too (:func:`bag_multinomial_nll`: a logsumexp per
row and a gather of the events' logits; its gradient ``(|x| softmax - x) / b`` is
written into one block), so no dense history row is ever built. The dense layers (the
decoder's ``-> n_items`` output layer, whose forward and two backward products are the
bulk of a Mult-VAE step, and RecVAE's hidden layers) are float32, or bfloat16 while
training with ``training_precision="bfloat16"`` (:class:`MixedPrecisionLinear`: float32
parameters, biases, likelihood and scores, bfloat16-rounded products; several times
faster where the hardware has bfloat16 units, slower where it has none).

Memory: a training batch is dense on the output side, ``batch_size x n_items`` float32
for the logits, the logsumexp's temporary and the logits' gradient (about 3 such blocks);
the input is O(nnz of the batch). Scoring holds blocks of at most
:data:`.engine.SCORE_BLOCK_FLOATS` scores. Parameters: ``2 n_items hidden_dim``
(Mult-VAE), ``n_items (hidden_dim + latent_dim)`` (RecVAE; twice the encoder's share
while training, for the old encoder). Time per epoch: O(nnz hidden_dim + n_users n_items
hidden_dim) (Mult-VAE), O(nnz hidden_dim + n_users (hidden_dim^2 + n_items latent_dim))
per pass (RecVAE).

References
----------
Liang, Krishnan, Hoffman, Jebara (2018), "Variational autoencoders for collaborative
filtering", WWW. Shenbin, Alekseev, Tutubalina, Malykh, Nikolenko (2020), "RecVAE: a new
variational autoencoder for top-N recommendations with implicit feedback", WSDM.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recoforge.data.dataset import Dataset
from recoforge.errors import ConfigError
from recoforge.models.neural import losses
from recoforge.models.neural._torch import (
    PRECISIONS,
    MixedPrecisionLinear,
    Seeds,
    set_training_precision,
)
from recoforge.models.neural.batches import Batch, BatchSource, UserBatches
from recoforge.models.neural.engine import NeuralConfig, TorchRecommender
from recoforge.models.params import param
from recoforge.models.registry import register

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class _AutoencoderConfig(NeuralConfig):
    epochs: int = param(50, ge=1, le=100_000, doc="passes over the users")
    batch_size: int = param(500, ge=1, le=1 << 20,
                            doc="users per mini-batch (a dense batch_size x n_items block)")
    hidden_dim: int = param(600, ge=1, le=65_536, doc="width of the hidden layers")
    latent_dim: int = param(200, ge=1, le=65_536, doc="dimension of z")
    dropout: float = param(0.5, ge=0.0, lt=1.0, doc="dropout on the normalised input")
    noise_scale: float = param(1.0, ge=0.0, le=100.0,
                               doc="std of the reparameterisation noise eps (1: the "
                                   "papers; RecBole uses 0.01)")
    training_precision: str = param("float32", choices=PRECISIONS,
                                    doc="the dense layers' products while training: "
                                        "float32, or bfloat16 (faster on GPUs and CPUs "
                                        "with AVX512-BF16/AMX, slower on older CPUs); "
                                        "parameters, loss and scores stay float32")


@dataclass(frozen=True)
class MultVAEConfig(_AutoencoderConfig):
    anneal_cap: float = param(0.2, ge=0.0, le=100.0, doc="largest KL weight beta")
    total_anneal_steps: int = param(200_000, ge=0, le=1 << 40,
                                    doc="optimiser steps over which beta rises from 0 to "
                                        "anneal_cap (0: anneal_cap throughout)")


@dataclass(frozen=True)
class RecVAEConfig(_AutoencoderConfig):
    gamma: float = param(0.005, ge=0.0, le=100.0,
                         doc="KL weight per event of the user (0: use beta)")
    beta: float = param(0.2, ge=0.0, le=100.0, doc="KL weight when gamma is 0")
    prior_standard_weight: float = param(0.15, ge=0.0, le=1.0,
                                         doc="weight of N(0, I) in the composite prior")
    prior_posterior_weight: float = param(0.75, ge=0.0, le=1.0,
                                          doc="weight of the old encoder's posterior")
    prior_wide_weight: float = param(0.1, ge=0.0, le=1.0,
                                     doc="weight of N(0, e^10 I) in the composite prior")
    n_enc_epochs: int = param(3, ge=1, le=10_000, doc="encoder passes per epoch")
    n_dec_epochs: int = param(1, ge=1, le=10_000, doc="decoder passes per epoch")

    def __post_init__(self) -> None:
        super().__post_init__()
        total = self.prior_standard_weight + self.prior_posterior_weight \
            + self.prior_wide_weight
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(f"prior_standard_weight + prior_posterior_weight + "
                              f"prior_wide_weight must be 1, got {total:g}")


# ---------------------------------------------------------------------------- helpers
def binary_matrix(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """The CSR with every positive stored value 1 and the others dropped."""
    out = (sp.csr_matrix(matrix) > 0).astype(np.float32)
    out.eliminate_zeros()
    out.sort_indices()
    return cast(sp.csr_matrix, out)


def bags(matrix: sp.csr_matrix, device: torch.device) -> Batch:
    """A CSR block's events as bags: ``items`` (nnz,) and ``offsets`` (n,) int64, with
    ``event_rows`` (nnz,) int64 (each event's row) and ``n_events`` (n,) float32 (events
    per row), read by the first layer and the likelihood."""
    counts = np.diff(matrix.indptr)
    rows = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    return {"items": torch.as_tensor(matrix.indices.astype(np.int64), device=device),
            "offsets": torch.as_tensor(matrix.indptr[:-1].astype(np.int64), device=device),
            "event_rows": torch.as_tensor(rows, device=device),
            "n_events": torch.as_tensor(counts.astype(np.float32), device=device)}


def bag_rows(offsets: torch.Tensor, n_events: int) -> torch.Tensor:
    """The row of each event of the bags starting at ``offsets``."""
    counts = torch.diff(offsets, append=offsets.new_tensor([n_events]))
    return torch.repeat_interleave(torch.arange(len(offsets), device=offsets.device), counts)


def dense_rows(batch: Batch, n_items: int) -> torch.Tensor:
    """The batch's binary history rows, dense (b, n_items) float32."""
    items, offsets = batch["items"], batch["offsets"]
    rows = torch.zeros(len(offsets), n_items, device=items.device)
    rows[bag_rows(offsets, len(items)), items] = 1.0
    return rows


class _BagMultinomialNLL(torch.autograd.Function):
    """-mean_u (sum_{i in x_u} l_ui - |x_u| logsumexp_j l_uj) with the rows x as bags.

    Forward: one logsumexp over the logits and a gather of the nnz event logits; backward:
    ``(|x_u| softmax(l_u) - x_u) / b`` written into one block (the softmax, then the
    events subtracted in place). Saves the logits (b, n_items), as log_softmax would."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, logits: torch.Tensor,
                flat_events: torch.Tensor, n_events: torch.Tensor) -> torch.Tensor:
        lse = torch.logsumexp(logits, dim=-1)
        picked = logits.reshape(-1).index_select(0, flat_events).sum()
        ctx.save_for_backward(logits, lse, flat_events, n_events)
        return (torch.dot(n_events.to(lse.dtype), lse) - picked) / logits.shape[0]

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
                 ) -> tuple[torch.Tensor, None, None]:
        logits, lse, flat_events, n_events = ctx.saved_tensors  # type: ignore[attr-defined]
        scale = grad / logits.shape[0]
        out = torch.exp(logits - lse.unsqueeze(-1))
        out.mul_((n_events.to(out.dtype) * scale).unsqueeze(-1))
        flat = out.view(-1)
        flat.index_put_((flat_events,), -scale.expand(len(flat_events)), accumulate=True)
        return out, None, None


def bag_multinomial_nll(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """:func:`.losses.multinomial_nll` of ``logits`` (b, n_items) against the batch's
    binary rows given as bags (``items``, ``event_rows``, ``n_events``), never building
    the dense rows: O(b n_items) for the logsumexp and the gradient, O(nnz) for the rest."""
    flat = batch["event_rows"] * logits.shape[-1] + batch["items"]
    return cast(torch.Tensor, _BagMultinomialNLL.apply(logits.contiguous(), flat,
                                                       batch["n_events"]))


class SparseInput(nn.Module):
    """The encoder's first layer on L2-normalised binary rows given as bags of items:
    ``normalize(x) @ weight + bias`` (with dropout on the input's events while training)
    as one ``embedding_bag``: O(nnz hidden) instead of O(b n_items hidden)."""

    def __init__(self, n_items: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_items, out_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        nn.init.xavier_normal_(self.weight)

    def forward(self, items: torch.Tensor, offsets: torch.Tensor, dropout: float = 0.0,
                event_rows: torch.Tensor | None = None, n_events: torch.Tensor | None = None
                ) -> torch.Tensor:
        if event_rows is None or n_events is None:
            event_rows = bag_rows(offsets, len(items))
            n_events = torch.bincount(event_rows, minlength=len(offsets)).to(self.weight.dtype)
        weights = torch.rsqrt(n_events.clamp_min(1.0).to(self.weight.dtype))[event_rows]
        weights = F.dropout(weights, dropout, training=self.training and dropout > 0)
        summed = F.embedding_bag(items, self.weight, offsets, mode="sum",
                                 per_sample_weights=weights)
        return summed + self.bias


def sample(mu: torch.Tensor, logvar: torch.Tensor, training: bool,
           scale: float = 1.0) -> torch.Tensor:
    """z = mu + eps * exp(logvar / 2), eps ~ N(0, scale^2), while training; mu otherwise."""
    if not training:
        return mu
    return mu + scale * torch.randn_like(mu) * torch.exp(0.5 * logvar)


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(z; mu, exp(logvar))."""
    return -0.5 * (logvar + _LOG_2PI + (z - mu) ** 2 / logvar.exp())


def _xavier(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_normal_(module.weight)
        nn.init.zeros_(module.bias)


# ---------------------------------------------------------------------------- modules
class MultVAEModule(nn.Module):
    """Mult-VAE (see the module docstring); ``calculate_loss`` reads ``items`` and
    ``offsets`` (the batch's histories as bags, see :class:`HistoryBatches`)."""

    def __init__(self, n_items: int, hidden_dim: int, latent_dim: int, dropout: float,
                 anneal_cap: float, total_anneal_steps: int, noise_scale: float = 1.0
                 ) -> None:
        super().__init__()
        self.encoder_input = SparseInput(n_items, hidden_dim)
        self.encoder = nn.Sequential(nn.Tanh(),
                                     MixedPrecisionLinear(hidden_dim, 2 * latent_dim))
        self.decoder = nn.Sequential(MixedPrecisionLinear(latent_dim, hidden_dim),
                                     nn.Tanh(), MixedPrecisionLinear(hidden_dim, n_items))
        self.apply(_xavier)
        self.n_items, self.latent_dim, self.dropout = n_items, latent_dim, dropout
        self.noise_scale = noise_scale
        self.annealing = losses.KLAnnealing(total_anneal_steps, anneal_cap) \
            if total_anneal_steps > 0 else None
        self.constant_beta = float(anneal_cap)

    @property
    def beta(self) -> float:
        """The KL weight of the next training step: min(cap, steps / total)."""
        return self.constant_beta if self.annealing is None else self.annealing.beta

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder_input(batch["items"], batch["offsets"], self.dropout,
                                    batch.get("event_rows"), batch.get("n_events"))
        out = self.encoder(hidden)
        return out[:, :self.latent_dim], out[:, self.latent_dim:]

    def history_scores(self, batch: Batch) -> torch.Tensor:
        """Logits (b, n_items) of the decoder at the posterior mean."""
        return cast(torch.Tensor, self.decoder(self.encode(batch)[0]))

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        beta = self.constant_beta if self.annealing is None else self.annealing.step()
        mu, logvar = self.encode(batch)
        logits = self.decoder(sample(mu, logvar, self.training, self.noise_scale))
        nll = bag_multinomial_nll(logits, batch)
        return nll + beta * losses.kl_normal(mu, logvar)


class ResidualEncoder(nn.Module):
    """RecVAE's encoder: five dense layers (swish, layer norm eps 0.1), each fed the sum
    of all earlier layers' outputs; then linear heads for mu and logvar."""

    def __init__(self, n_items: int, hidden_dim: int, latent_dim: int) -> None:
        super().__init__()
        self.first = SparseInput(n_items, hidden_dim)
        self.layers = nn.ModuleList([MixedPrecisionLinear(hidden_dim, hidden_dim)
                                     for _ in range(4)])
        self.norms = nn.ModuleList([nn.LayerNorm(hidden_dim, eps=0.1) for _ in range(5)])
        self.mu = MixedPrecisionLinear(hidden_dim, latent_dim)
        self.logvar = MixedPrecisionLinear(hidden_dim, latent_dim)

    def forward(self, batch: Batch, dropout: float = 0.0
                ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.norms[0](F.silu(self.first(batch["items"], batch["offsets"], dropout,
                                            batch.get("event_rows"), batch.get("n_events"))))
        skip = h
        for layer, norm in zip(self.layers, self.norms[1:], strict=True):
            h = norm(F.silu(layer(h) + skip))
            skip = skip + h
        return self.mu(h), self.logvar(h)


class RecVAEModule(nn.Module):
    """RecVAE (see the module docstring). ``calculate_loss`` reads ``items``, ``offsets``
    and ``decoder_phase``; the first batch of a phase switches which half is trained (the
    other's parameters get no gradient, so one Adam over both halves steps exactly as the
    paper's two optimisers) and, from encoder to decoder, refreshes the old encoder."""

    def __init__(self, n_items: int, hidden_dim: int, latent_dim: int, dropout: float,
                 gamma: float, beta: float, prior_weights: tuple[float, float, float],
                 noise_scale: float = 1.0) -> None:
        super().__init__()
        self.encoder = ResidualEncoder(n_items, hidden_dim, latent_dim)
        self.decoder = MixedPrecisionLinear(latent_dim, n_items)
        self.apply(_xavier)
        self.n_items, self.dropout, self.gamma, self.beta = n_items, dropout, gamma, beta
        self.noise_scale = noise_scale
        self.log_weights = [math.log(w) if w > 0 else -math.inf for w in prior_weights]
        self.phase: str | None = None
        #: frozen copy of the encoder (training only; not a submodule: never saved)
        self.old_encoder: list[ResidualEncoder] = []

    def history_scores(self, batch: Batch) -> torch.Tensor:
        """Logits (b, n_items) of the decoder at the posterior mean."""
        return cast(torch.Tensor, self.decoder(self.encoder(batch)[0]))

    def set_phase(self, phase: str) -> None:
        """"encoder" or "decoder": which half trains; entering "decoder" (or starting)
        copies the encoder into the old encoder of the prior."""
        if phase == self.phase:
            return
        if phase == "decoder" or not self.old_encoder:
            old = copy.deepcopy(self.encoder).requires_grad_(False)
            self.old_encoder[:] = [old.eval()]
        self.encoder.requires_grad_(phase == "encoder")
        self.decoder.requires_grad_(phase == "decoder")
        self.phase = phase

    def composite_prior(self, batch: Batch, z: torch.Tensor) -> torch.Tensor:
        """log p(z) elementwise under the three-component prior."""
        with torch.no_grad():
            old_mu, old_logvar = self.old_encoder[0](batch)
        zero = torch.zeros_like(z)
        parts = [log_normal(z, zero, zero), log_normal(z, old_mu, old_logvar),
                 log_normal(z, zero, zero + 10.0)]
        stacked = torch.stack([p + w for p, w in zip(parts, self.log_weights, strict=True)])
        return torch.logsumexp(stacked, dim=0)

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        decoding = bool(batch["decoder_phase"])
        self.set_phase("decoder" if decoding else "encoder")
        if decoding:
            with torch.no_grad():
                mu, logvar = self.encoder(batch)
                z = sample(mu, logvar, self.training, self.noise_scale)
            return bag_multinomial_nll(self.decoder(z), batch)
        mu, logvar = self.encoder(batch, self.dropout)
        z = sample(mu, logvar, self.training, self.noise_scale)
        weight = self.gamma * batch["n_events"] if self.gamma > 0 else self.beta
        kl = (log_normal(z, mu, logvar) - self.composite_prior(batch, z)).sum(dim=-1)
        return bag_multinomial_nll(self.decoder(z), batch) + torch.mean(kl * weight)


# ---------------------------------------------------------------------------- batches
class HistoryBatches(BatchSource):
    """Shuffled users with at least one event, their binary histories as bags: keys
    ``users`` (b,), ``items`` (nnz,) and ``offsets`` (b,) int64, ``event_rows`` and
    ``n_events`` (see :func:`bags`): the engine's :class:`~.batches.UserBatches` with
    sparse rows, no dense block."""

    def __init__(self, matrix: sp.csr_matrix, batch_size: int, generator: torch.Generator,
                 device: torch.device) -> None:
        self.inner = UserBatches(binary_matrix(matrix), batch_size, generator, device)
        self.batch_size, self.n_rows = self.inner.batch_size, self.inner.n_rows

    def __iter__(self) -> Iterator[Batch]:
        inner = self.inner
        order = torch.randperm(self.n_rows, generator=inner.generator).numpy()
        for start in range(0, self.n_rows, self.batch_size):
            users = inner.active[order[start:start + self.batch_size]]
            yield {"users": torch.as_tensor(users, device=inner.device),
                   **bags(inner.matrix[users], inner.device)}


class AlternatingBatches(BatchSource):
    """One RecVAE epoch: ``n_enc`` passes of the user batches tagged for the encoder,
    then ``n_dec`` passes tagged for the decoder (key ``decoder_phase``, a 0-d bool)."""

    def __init__(self, users: BatchSource, n_enc: int, n_dec: int) -> None:
        self.users, self.n_enc, self.n_dec = users, n_enc, n_dec
        self.batch_size, self.n_rows = users.batch_size, users.n_rows

    def __len__(self) -> int:
        return len(self.users) * (self.n_enc + self.n_dec)

    def __iter__(self) -> Iterator[Batch]:
        for decoding, passes in ((False, self.n_enc), (True, self.n_dec)):
            flag = torch.tensor(decoding)
            for _ in range(passes):
                for batch in self.users:
                    yield {**batch, "decoder_phase": flag}


# ---------------------------------------------------------------------------- models
class _HistoryAutoencoder(TorchRecommender):
    """Shared engine hooks: user batches of binary histories, scores from histories."""

    user_state = "history"

    def _batches(self, module: nn.Module, matrix: sp.csr_matrix, *, seeds: Seeds,
                 device: torch.device, batch_size: int) -> BatchSource:
        return HistoryBatches(matrix, batch_size, seeds.torch, device)

    def _score_module(self, module: nn.Module, users: torch.Tensor,
                      history: sp.csr_matrix) -> torch.Tensor:
        batch = bags(binary_matrix(history), users.device)
        return cast(torch.Tensor, module.history_scores(batch))  # type: ignore[operator]


@register
class MultVAE(_HistoryAutoencoder):
    """Mult-VAE: multinomial likelihood, input dropout, annealed KL (Liang et al. 2018)."""

    name = "mult_vae"
    Config = MultVAEConfig
    state_spec = {"kl_beta_": "float"}
    kl_beta_: float

    def _build_module(self, n_users: int, n_items: int) -> nn.Module:
        cfg = self.config
        module = MultVAEModule(n_items, cfg.hidden_dim, cfg.latent_dim, cfg.dropout,
                               cfg.anneal_cap, cfg.total_anneal_steps, cfg.noise_scale)
        return set_training_precision(module, cfg.training_precision)

    def _fit(self, data: Dataset) -> None:
        super()._fit(data)
        self.kl_beta_ = float(cast(MultVAEModule, self.module_state_.module).beta)


@register
class RecVAE(_HistoryAutoencoder):
    """RecVAE: composite prior, user-specific beta, alternating updates (Shenbin et al.
    2020)."""

    name = "recvae"
    Config = RecVAEConfig

    def _build_module(self, n_users: int, n_items: int) -> nn.Module:
        cfg = self.config
        weights = (cfg.prior_standard_weight, cfg.prior_posterior_weight,
                   cfg.prior_wide_weight)
        module = RecVAEModule(n_items, cfg.hidden_dim, cfg.latent_dim, cfg.dropout,
                              cfg.gamma, cfg.beta, weights, cfg.noise_scale)
        return set_training_precision(module, cfg.training_precision)

    def _batches(self, module: nn.Module, matrix: sp.csr_matrix, *, seeds: Seeds,
                 device: torch.device, batch_size: int) -> BatchSource:
        users = HistoryBatches(matrix, batch_size, seeds.torch, device)
        return AlternatingBatches(users, self.config.n_enc_epochs, self.config.n_dec_epochs)
