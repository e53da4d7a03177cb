"""Losses of the neural models (plain functions on tensors) and the KL annealing helper.

Every function returns a scalar tensor, the mean over the batch (or over users for the
row-wise losses), so the learning rate does not depend on the batch size.

- :func:`mse`: mean (prediction - target)^2 (explicit ratings);
- :func:`bce_with_logits`: binary cross-entropy of sigma(logit) against 0/1 labels;
- :func:`bpr`: -mean ln sigma(s_pos - s_neg) (Rendle et al. 2009), over each negative;
- :func:`sampled_softmax`: cross-entropy of the positive against sampled negatives,
  softmax over [s_pos, s_neg_1 .. s_neg_n] / temperature (in-batch negatives included);
- :func:`multinomial_nll`: -mean_u sum_i x_ui log softmax(logits_u)_i (Mult-VAE, Liang et
  al. 2018); :func:`kl_normal`: KL(N(mu, sigma^2) || N(0, 1)) per user, averaged;
- :class:`KLAnnealing`: beta rising linearly from 0 to ``cap`` over ``total_steps``
  training steps (Liang et al.'s annealing);
- :func:`l2`: sum of squares of the given tensors divided by the batch size (the
  "L2 on the embeddings of the batch" regulariser).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error."""
    return torch.mean((prediction - target) ** 2)


def bce_with_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of sigmoid(logits) against labels in [0, 1]."""
    return F.binary_cross_entropy_with_logits(logits, labels)


def bpr(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """-mean ln sigma(positive - negative); ``positive`` (b,), ``negative`` (b,) or (b, n)."""
    if negative.dim() == positive.dim() + 1:
        positive = positive.unsqueeze(-1)
    return -torch.mean(F.logsigmoid(positive - negative))


def sampled_softmax(positive: torch.Tensor, negative: torch.Tensor,
                    temperature: float = 1.0) -> torch.Tensor:
    """Mean cross-entropy of the positive (b,) among itself and its negatives (b, n)."""
    logits = torch.cat([positive.unsqueeze(-1), negative], dim=-1) / temperature
    return -torch.mean(F.log_softmax(logits, dim=-1)[:, 0])


def multinomial_nll(logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """-mean over users of sum_i rows_ui log softmax(logits_u)_i; both (b, n_items)."""
    return -torch.mean(torch.sum(F.log_softmax(logits, dim=-1) * rows, dim=-1))


def kl_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Mean over users of KL(N(mu, exp(logvar)) || N(0, I)); both (b, d)."""
    return torch.mean(-0.5 * torch.sum(1.0 + logvar - mu**2 - logvar.exp(), dim=-1))


def l2(*tensors: torch.Tensor) -> torch.Tensor:
    """Sum of squares of the tensors over the rows of the first (the batch size)."""
    batch = max(int(tensors[0].shape[0]), 1)
    return sum((t**2).sum() for t in tensors) / batch  # type: ignore[return-value]


class KLAnnealing:
    """beta = min(cap, step / total_steps): call :meth:`step` once per training batch.

    Parameters
    ----------
    total_steps : int
        Steps until beta reaches ``cap`` (Liang et al. use 200,000 updates).
    cap : float
        The largest beta (1.0: the full ELBO).
    """

    def __init__(self, total_steps: int, cap: float = 1.0) -> None:
        self.total_steps = max(int(total_steps), 1)
        self.cap = float(cap)
        self.steps = 0

    @property
    def beta(self) -> float:
        return min(self.cap, self.steps / self.total_steps)

    def step(self) -> float:
        """The beta of this step, then advance the counter."""
        beta = self.beta
        self.steps += 1
        return beta
