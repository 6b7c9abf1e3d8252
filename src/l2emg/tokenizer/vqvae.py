"""The VQ-VAE: a 1-D convolutional encoder/decoder around the EMA quantiser (T2M-GPT layout).

Encoder: Conv1d(F→W, k3) + ReLU, then `down_t` times [Conv1d(W→W, k4, stride 2) + `depth`
dilated residual blocks], then Conv1d(W→D, k3). Decoder mirrors it: Conv1d(D→W, k3) + ReLU, then
`down_t` times [residual blocks + nearest ×2 up-sampling + Conv1d(k3)], then Conv1d(k3) + ReLU +
Conv1d(W→F, k3). Residual block: ReLU → Conv(k3, dilation d) → ReLU → Conv(k1) → + skip, with
dilations growth**(depth-1), …, growth, 1 (9, 3, 1 for T2M-GPT).

Variable lengths: every layer takes a mask (B, 1, T) of valid time steps and zeroes what lies
beyond each sequence's end. Each convolution therefore sees exactly the zero padding it would see
if the sequence were alone, so a padded batch gives the same codes and features as encoding the
sequences one by one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from l2emg.config import TokenizerConfig
from l2emg.motion.features import FEATURE_DIM
from l2emg.tokenizer.quantizer import EMAQuantizer


def _masked(x: Tensor, mask: Tensor | None) -> Tensor:
    """x (B, C, T) with mask (B, 1, T) float -> x with invalid steps zeroed."""
    return x if mask is None else x * mask


class ResidualBlock(nn.Module):
    """ReLU → dilated Conv(k3) → ReLU → Conv(k1) → + skip; length preserving."""

    def __init__(self, width: int, dilation: int):
        super().__init__()
        self.conv_dilated = nn.Conv1d(width, width, kernel_size=3, padding=dilation, dilation=dilation)
        self.conv_pointwise = nn.Conv1d(width, width, kernel_size=1)
        self.act = nn.ReLU()

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:  # (B, W, T) -> (B, W, T)
        h = self.conv_dilated(self.act(x))
        h = self.conv_pointwise(self.act(h))
        return _masked(x + h, mask)


class ResidualStack(nn.Module):
    def __init__(self, width: int, depth: int, growth: int):
        super().__init__()
        dilations = [growth**i for i in reversed(range(depth))]  # e.g. 9, 3, 1
        self.blocks = nn.ModuleList(ResidualBlock(width, d) for d in dilations)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        for block in self.blocks:
            x = block(x, mask)
        return x


class Encoder(nn.Module):
    """(B, F, T) features -> (B, D, T / 2**down_t) latents."""

    def __init__(self, cfg: TokenizerConfig, feature_dim: int = FEATURE_DIM):
        super().__init__()
        self.conv_in = nn.Conv1d(feature_dim, cfg.width, kernel_size=3, padding=1)
        self.downs = nn.ModuleList(
            nn.Conv1d(cfg.width, cfg.width, kernel_size=4, stride=2, padding=1) for _ in range(cfg.down_t)
        )
        self.stacks = nn.ModuleList(
            ResidualStack(cfg.width, cfg.depth, cfg.dilation_growth) for _ in range(cfg.down_t)
        )
        self.conv_out = nn.Conv1d(cfg.width, cfg.code_dim, kernel_size=3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        x = _masked(self.act(self.conv_in(_masked(x, mask))), mask)
        for down, stack in zip(self.downs, self.stacks):
            mask = None if mask is None else mask[..., ::2]  # valid length halves
            x = _masked(down(x), mask)
            x = stack(x, mask)
        return _masked(self.conv_out(x), mask)


class Decoder(nn.Module):
    """(B, D, N) code vectors -> (B, F, N * 2**down_t) features."""

    def __init__(self, cfg: TokenizerConfig, feature_dim: int = FEATURE_DIM):
        super().__init__()
        self.conv_in = nn.Conv1d(cfg.code_dim, cfg.width, kernel_size=3, padding=1)
        self.stacks = nn.ModuleList(
            ResidualStack(cfg.width, cfg.depth, cfg.dilation_growth) for _ in range(cfg.down_t)
        )
        self.ups = nn.ModuleList(
            nn.Conv1d(cfg.width, cfg.width, kernel_size=3, padding=1) for _ in range(cfg.down_t)
        )
        self.conv_mid = nn.Conv1d(cfg.width, cfg.width, kernel_size=3, padding=1)
        self.conv_out = nn.Conv1d(cfg.width, feature_dim, kernel_size=3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        x = _masked(self.act(self.conv_in(_masked(x, mask))), mask)
        for stack, up in zip(self.stacks, self.ups):
            x = stack(x, mask)
            x = torch.repeat_interleave(x, 2, dim=-1)  # nearest-neighbour ×2
            mask = None if mask is None else torch.repeat_interleave(mask, 2, dim=-1)
            x = _masked(up(x), mask)
        x = _masked(self.act(self.conv_mid(x)), mask)
        return _masked(self.conv_out(x), mask)


@dataclass
class VQVAEOutput:
    reconstruction: Tensor  # (B, T, F)
    codes: Tensor  # (B, N) int64; 0 at padded positions
    commit_loss: Tensor  # ()
    perplexity: Tensor  # () of this batch's codes
    num_reset: int  # dead codes reset in this step


class VQVAE(nn.Module):
    """Features (B, T, F) ↔ codes (B, T / 2**down_t). Masks are (B, T) / (B, N) bool, True = valid."""

    def __init__(self, cfg: TokenizerConfig, feature_dim: int = FEATURE_DIM):
        super().__init__()
        self.cfg = cfg
        self.feature_dim = feature_dim
        self.downsample = cfg.downsample
        self.encoder = Encoder(cfg, feature_dim)
        self.quantizer = EMAQuantizer(cfg.codebook_size, cfg.code_dim, cfg.mu, cfg.reset_threshold)
        self.decoder = Decoder(cfg, feature_dim)

    def _check_length(self, x: Tensor) -> None:
        if x.ndim != 3 or x.shape[-1] != self.feature_dim:
            raise ValueError(f"expected features (B, T, {self.feature_dim}), got {tuple(x.shape)}")
        if x.shape[1] % self.downsample:
            raise ValueError(f"frame count {x.shape[1]} must be a multiple of {self.downsample}")

    def code_mask(self, frame_mask: Tensor) -> Tensor:
        """(B, T) frame mask -> (B, T / downsample) code mask (valid lengths are multiples of it)."""
        return frame_mask[:, :: self.downsample]

    def encode_latents(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (B, T, F), mask (B, T) -> continuous latents (B, N, D)."""
        self._check_length(x)
        m = None if mask is None else mask[:, None, :].to(x.dtype)
        z = self.encoder(x.transpose(1, 2), m)  # (B, D, N)
        return z.transpose(1, 2)

    def decode_latents(self, q: Tensor, code_mask: Tensor | None = None) -> Tensor:
        """q (B, N, D), code_mask (B, N) -> features (B, N * downsample, F)."""
        m = None if code_mask is None else code_mask[:, None, :].to(q.dtype)
        return self.decoder(q.transpose(1, 2), m).transpose(1, 2)

    @torch.no_grad()
    def encode(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (B, T, F) -> codes (B, N) int64 (0 at padded positions)."""
        z = self.encode_latents(x, mask)
        codes = self.quantizer.nearest(z.reshape(-1, z.shape[-1])).reshape(z.shape[:2])
        if mask is not None:
            codes = codes.masked_fill(~self.code_mask(mask), 0)
        return codes

    @torch.no_grad()
    def decode(self, codes: Tensor, code_mask: Tensor | None = None) -> Tensor:
        """codes (B, N) -> features (B, N * downsample, F) (zero beyond each sequence's end)."""
        if codes.ndim != 2:
            raise ValueError(f"expected codes (B, N), got {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.cfg.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.cfg.codebook_size}), got {int(codes.min())}..{int(codes.max())}")
        return self.decode_latents(self.quantizer.lookup(codes), code_mask)

    def forward(self, x: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None) -> VQVAEOutput:
        """Reconstruct x (B, T, F); in training mode this also updates the codebook."""
        z = self.encode_latents(x, mask)  # (B, N, D)
        cmask = None if mask is None else self.code_mask(mask)
        flat = z.reshape(-1, z.shape[-1]) if cmask is None else z[cmask]  # (N_valid, D)
        out = self.quantizer(flat, generator)
        if cmask is None:
            q = out.quantized.reshape(z.shape)
            codes = out.codes.reshape(z.shape[:2])
        else:
            q = torch.zeros_like(z)
            q[cmask] = out.quantized
            codes = torch.zeros(z.shape[:2], dtype=torch.long, device=z.device)
            codes[cmask] = out.codes
        recon = self.decode_latents(q, cmask)
        return VQVAEOutput(recon, codes, out.commit_loss, out.perplexity, out.num_reset)
