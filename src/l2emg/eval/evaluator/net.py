"""The evaluator's network, its feature statistics and the input check on them.

- a text side: a trained projection (384 -> text_hidden -> embed_dim) of the frozen pretrained
  all-MiniLM-L6-v2 sentence embeddings (see `l2emg.eval.text_encoder` for why);
- a motion side: the 263-d features without the 4 foot contacts (as Guo et al.), normalised with
  the evaluator's *own* statistics, plus their frame-to-frame differences, cut into 4-frame patches
  by a stride-4 convolution, a k=3 convolution and a small transformer, mean-pooled over the valid
  steps, projected to embed_dim;
- an emotion classifier (7 classes) on the pooled motion features (multi-task: it shares the
  motion encoder, which the contrastive loss already pushes to notice emotion words' body language).

Statistics: HumanML3D group-averaged mean/std of the train split, with the root features' std
divided by 5 as Guo et al.'s evaluator does (their meta/std.npy), so the root trajectory weighs more.
They are buffers of `EvaluatorNet` and always applied; the raw per-channel statistics beside them
let `offset_deviation` tell raw features from features that were normalised already.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from l2emg.config import EvaluatorConfig
from l2emg.motion.features import FEATURE_DIM, FOOT_CONTACT, ROOT_LIN_VEL, ROOT_ROT_VEL, ROOT_Y, compute_feature_stats

MOTION_DIMS = FOOT_CONTACT.start  # 259: the features the motion encoder reads (no foot contacts)
MIN_FRAMES = 4  # one 4-frame patch at least; shorter input is edge-padded
# A channel whose train mean lies this many (per-channel) stds away from 0 is an "offset channel"
# (root height, joint heights, rotation entries near 1): raw motions keep it there, normalised
# features move it to 0. Used to refuse features that were normalised already.
OFFSET_CHANNEL_Z = 5.0


# --------------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------------


def _sinusoids(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """(length, dim) fixed sinusoidal positions."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


class MotionEncoder(nn.Module):
    """(B, T, 2·259) normalised features and their differences + lengths (B,) -> pooled (B, width)."""

    def __init__(self, cfg: EvaluatorConfig):
        super().__init__()
        w = cfg.width
        # Patches of 4 frames (0.2 s, one VQ code's span), then a local k=3 convolution: ×4 fewer
        # positions before the transformer, at half the cost of two overlapping stride-2 layers.
        # Input: the normalised features and their frame-to-frame differences (2 × 259 channels):
        # smooth motion has tiny differences, jitter has large ones, so the encoder can see it.
        self.conv = nn.Sequential(
            nn.Conv1d(2 * MOTION_DIMS, w, kernel_size=4, stride=4), nn.GELU(),
            nn.Conv1d(w, w, kernel_size=3, padding=1), nn.GELU(),
        )
        layer = nn.TransformerEncoderLayer(w, cfg.heads, 2 * w, cfg.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False) if cfg.layers else None
        self.norm = nn.LayerNorm(w)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, T//4, W)
        steps = torch.clamp(lengths // 4, min=1, max=h.shape[1])  # (B,)
        valid = torch.arange(h.shape[1], device=h.device)[None, :] < steps[:, None]  # (B, T')
        if self.transformer is not None:
            h = h + _sinusoids(h.shape[1], h.shape[2], h.device)[None]
            h = self.transformer(h, src_key_padding_mask=~valid)
        h = self.norm(h) * valid[..., None]
        return h.sum(1) / steps[:, None].to(h.dtype)


class EvaluatorNet(nn.Module):
    """All trained parts of the evaluator, plus its feature statistics as buffers."""

    def __init__(self, cfg: EvaluatorConfig, text_dim: int, num_emotions: int):
        super().__init__()
        self.motion_encoder = MotionEncoder(cfg)
        self.motion_head = nn.Sequential(nn.Linear(cfg.width, cfg.width), nn.GELU(), nn.Linear(cfg.width, cfg.embed_dim))
        self.emotion_head = nn.Sequential(nn.Linear(cfg.width, cfg.classifier_hidden), nn.GELU(),
                                          nn.Dropout(cfg.dropout), nn.Linear(cfg.classifier_hidden, num_emotions))
        self.text_head = nn.Sequential(nn.Linear(text_dim, cfg.text_hidden), nn.GELU(), nn.Dropout(cfg.dropout),
                                       nn.Linear(cfg.text_hidden, cfg.embed_dim))
        # Normalisation applied to every motion input; raw per-channel stats for the input check.
        self.register_buffer("mean", torch.zeros(FEATURE_DIM))
        self.register_buffer("std", torch.ones(FEATURE_DIM))
        self.register_buffer("raw_mean", torch.zeros(FEATURE_DIM))
        self.register_buffer("raw_std", torch.ones(FEATURE_DIM))

    def motion_features(self, raw: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, 263) raw padded features -> pooled (B, width). Normalises with the own stats."""
        x = ((raw - self.mean) / self.std)[..., :MOTION_DIMS]
        frame = torch.arange(x.shape[1], device=x.device)[None, :]
        x = x * (frame < lengths[:, None])[..., None]  # (B, T, 259), zero after each motion's end
        diff = torch.zeros_like(x)
        diff[:, :-1] = (x[:, 1:] - x[:, :-1]) * (frame[:, 1:] < lengths[:, None])[..., None]
        return self.motion_encoder(torch.cat([x, diff], dim=-1), lengths)  # (B, T, 518) -> (B, W)

    def embed_motion(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.motion_head(pooled), dim=-1)

    def embed_text(self, sentence_embeddings: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_head(sentence_embeddings), dim=-1)



# --------------------------------------------------------------------------------------------------
# Statistics and the input check
# --------------------------------------------------------------------------------------------------


def evaluator_statistics(features: Sequence[np.ndarray], root_std_divisor: float) -> dict[str, np.ndarray]:
    """Normalisation (HumanML3D group std; root and contact std / divisor) and raw per-channel stats."""
    mean, std = compute_feature_stats(features)
    std = std.astype(np.float64)
    for group in (ROOT_ROT_VEL, ROOT_LIN_VEL, ROOT_Y, FOOT_CONTACT):
        std[group] /= root_std_divisor
    total = np.zeros(FEATURE_DIM)
    total_sq = np.zeros(FEATURE_DIM)
    count = 0
    for f in features:
        f = np.asarray(f, dtype=np.float64)
        total += f.sum(0)
        total_sq += (f * f).sum(0)
        count += len(f)
    raw_mean = total / count
    raw_std = np.sqrt(np.maximum(total_sq / count - raw_mean**2, 0.0)) + 1e-4
    return {"mean": mean.astype(np.float32), "std": std.astype(np.float32),
            "raw_mean": raw_mean.astype(np.float32), "raw_std": raw_std.astype(np.float32)}


def offset_deviation(features: Sequence[np.ndarray], raw_mean: np.ndarray, raw_std: np.ndarray) -> tuple[float, float]:
    """How far the input's channel means lie from the evaluator's, in per-channel stds, over the
    offset channels (median): (deviation from the raw means, deviation from 0).

    Raw motions give a small first number; features normalised with any statistics have channel
    means near 0, so the first number is large and the second small."""
    channels = np.abs(raw_mean) > OFFSET_CHANNEL_Z * raw_std
    channels[FOOT_CONTACT] = False
    if not channels.any():
        return 0.0, math.inf
    frames = np.concatenate([np.asarray(f, dtype=np.float64)[:, channels] for f in features], axis=0)
    m = frames.mean(0)
    s = raw_std[channels].astype(np.float64)
    return float(np.median(np.abs(m - raw_mean[channels]) / s)), float(np.median(np.abs(m) / s))



# --------------------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------------------


def pad_motions(motions: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (T_i, 263) -> padded (B, max(T, 4), 263) float32 and lengths (B,). Motions shorter than
    4 frames are edge-padded to 4 (the encoder's down-sampling needs them)."""
    lengths = [max(len(m), MIN_FRAMES) for m in motions]
    batch = np.zeros((len(motions), max(lengths), FEATURE_DIM), dtype=np.float32)
    for i, m in enumerate(motions):
        batch[i, : len(m)] = m
        if len(m) < MIN_FRAMES:
            batch[i, len(m): MIN_FRAMES] = m[-1]
    return torch.from_numpy(batch), torch.as_tensor(lengths)
