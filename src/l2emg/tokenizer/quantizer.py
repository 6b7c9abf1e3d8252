"""Vector quantiser with an EMA-updated codebook and dead-code reset (the T2M-GPT quantiser).

The codebook is not trained by gradients: after every training step each code moves towards the
mean of the encoder outputs assigned to it, through exponential moving averages of the assignment
counts and of the assigned vectors (van den Oord et al. 2017, appendix; T2M-GPT's
`QuantizeEMAReset`). A code whose average count falls below `reset_threshold` is "dead": it is
replaced by a random encoder output of the current batch, so the whole codebook stays in use.
The codebook is initialised from the first batch's encoder outputs rather than at random, so no
code starts far from the data.

All randomness (initialisation and resets) comes from a `torch.Generator` passed in by the caller,
so a training run that is checkpointed and resumed draws exactly the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class QuantizerOutput:
    quantized: Tensor  # (N, D) straight-through: forward value = codebook rows, gradient -> inputs
    codes: Tensor  # (N,) int64 code index of every input vector
    commit_loss: Tensor  # () mean squared distance between inputs and their (detached) codes
    perplexity: Tensor  # () exp(entropy) of the code histogram of this batch
    num_reset: int  # codes reset to encoder outputs in this step (training only)


class EMAQuantizer(nn.Module):
    """Nearest-neighbour (L2) codebook lookup with EMA codebook updates.

    Buffers (all part of `state_dict`, so checkpoints carry them): `codebook` (K, D),
    `ema_count` (K,), `ema_sum` (K, D), `initialized` (1,) bool.
    """

    def __init__(self, codebook_size: int, code_dim: int, mu: float = 0.99, reset_threshold: float = 1.0):
        super().__init__()
        self.codebook_size = codebook_size
        self.code_dim = code_dim
        self.mu = mu
        self.reset_threshold = reset_threshold
        self.register_buffer("codebook", torch.zeros(codebook_size, code_dim))
        self.register_buffer("ema_count", torch.zeros(codebook_size))
        self.register_buffer("ema_sum", torch.zeros(codebook_size, code_dim))
        self.register_buffer("initialized", torch.zeros(1, dtype=torch.bool))

    # ---- lookup -------------------------------------------------------------------------------

    def nearest(self, x: Tensor) -> Tensor:
        """x (N, D) -> code indices (N,) of the nearest codebook rows in L2."""
        # ||x - c||^2 = ||x||^2 - 2 x·c + ||c||^2; ||x||^2 does not change the argmin.
        distances = self.codebook.pow(2).sum(1)[None, :] - 2.0 * x @ self.codebook.t()  # (N, K)
        return distances.argmin(dim=1)

    def lookup(self, codes: Tensor) -> Tensor:
        """codes (...) int -> code vectors (..., D)."""
        return self.codebook[codes]

    # ---- training-time codebook maintenance --------------------------------------------------

    @torch.no_grad()
    def _random_rows(self, x: Tensor, count: int, generator: torch.Generator | None) -> Tensor:
        """`count` random rows of x (N, D); with replacement and a little noise when N < count."""
        n = x.shape[0]
        if n >= count:
            index = torch.randperm(n, generator=generator)[:count]
            return x[index].clone()
        index = torch.randint(0, n, (count,), generator=generator)
        noise = torch.randn(count, x.shape[1], generator=generator) * (0.01 / max(x.shape[1], 1) ** 0.5)
        return x[index] + noise

    @torch.no_grad()
    def initialize(self, x: Tensor, generator: torch.Generator | None = None) -> None:
        """Set the codebook to random encoder outputs x (N, D) (done once, on the first batch)."""
        rows = self._random_rows(x, self.codebook_size, generator)
        self.codebook.copy_(rows)
        # Every code starts at the reset threshold, as a freshly reset code does: a code that the
        # next batch does not use is reset straight away (T2M-GPT starts counts at its threshold, 1).
        self.ema_count.fill_(self.reset_threshold)
        self.ema_sum.copy_(rows * self.reset_threshold)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, x: Tensor, codes: Tensor, generator: torch.Generator | None) -> int:
        onehot = torch.zeros(x.shape[0], self.codebook_size, dtype=x.dtype, device=x.device)
        onehot.scatter_(1, codes[:, None], 1.0)  # (N, K)
        counts = onehot.sum(0)  # (K,)
        sums = onehot.t() @ x  # (K, D)
        self.ema_count.mul_(self.mu).add_(counts, alpha=1.0 - self.mu)
        self.ema_sum.mul_(self.mu).add_(sums, alpha=1.0 - self.mu)
        alive = self.ema_count >= self.reset_threshold  # (K,)
        updated = self.ema_sum / self.ema_count.clamp(min=1e-6)[:, None]
        num_dead = int((~alive).sum())
        if num_dead:
            fresh = self._random_rows(x, num_dead, generator)
            updated[~alive] = fresh
            # A reset code restarts as if it had been chosen once for that vector, so it is given
            # a few steps to attract assignments before it can be reset again.
            self.ema_sum[~alive] = fresh * self.reset_threshold
            self.ema_count[~alive] = self.reset_threshold
        self.codebook.copy_(updated)
        return num_dead

    # ---- forward ------------------------------------------------------------------------------

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> QuantizerOutput:
        """x (N, D) encoder outputs of the valid positions only -> quantised vectors and codes.

        In training mode the codebook is initialised on the first call, then EMA-updated (with
        dead-code reset) after the lookup; in eval mode it is left untouched.
        """
        if x.ndim != 2 or x.shape[1] != self.code_dim:
            raise ValueError(f"quantizer expects (N, {self.code_dim}) inputs, got {tuple(x.shape)}")
        flat = x.detach().float()
        if self.training and not bool(self.initialized):
            self.initialize(flat, generator)
        codes = self.nearest(flat)  # (N,)
        code_vectors = self.codebook[codes]  # (N, D) looked up before the update, as T2M-GPT does
        num_reset = 0
        if self.training:
            num_reset = self._ema_update(flat, codes, generator)
        commit_loss = torch.mean((x - code_vectors.detach()) ** 2)
        quantized = x + (code_vectors - x).detach()  # straight-through estimator
        histogram = torch.bincount(codes, minlength=self.codebook_size).float()
        probs = histogram / histogram.sum().clamp(min=1.0)
        perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
        return QuantizerOutput(quantized, codes, commit_loss, perplexity, num_reset)
