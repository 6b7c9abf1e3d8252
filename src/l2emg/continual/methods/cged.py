"""Causal-guided emotion decoupling (CGED): the block that turns prompt embeddings X into the
emotion-highlighted input h (paper, "Causal-Guided Emotion Decoupling Block"; docs/design.md, "CGED input X").

The front-door adjustment P(Y | do(X)) ≈ Softmax(φ(s_x, s_m)) (Eq. 2, NWGM approximation) is
implemented with two attentions, per prompt token:

    s_x = Softmax(τ Q_m K_mᵀ / √d) V_m   self-sampling: queries f(X), keys/values linear maps of the
                                          sample's own prompt tokens (padding masked)
    s_m = Softmax(τ Q_c K_gᵀ / √d) V_g   cross-sampling: queries g(X), keys/values linear maps of a
                                          global dictionary compressed from the training set by K-means
    h   = LayerNorm(X' + W(FFN1(s_x) ⊕ FFN2(s_m)) + b)       fusion "residual" (the default)
    h   = LayerNorm(W(FFN1(s_x) ⊕ FFN2(s_m)) + b)            fusion "attention" (no path around the
                                                              attentions; L_emo stayed at chance with it)

X' is X projected from the LM width d_model to the block's internal width d (`d_cged`), so a 4096-wide
backbone does not make the block heavy. With the residual fusion the emotion classifier can read the
emotion words straight from X'; the attention fusion has no path around the two attentions, but on
the embedded data L_emo did not learn through it (docs/experiments/cged-paper.md).

The dictionary lives in the LM's embedding space (mean-pooled frozen prompt embeddings of training
samples): K-means centroids computed once per scenario, from that scenario's examples only, and
appended (`add_to_dictionary`); no raw sample is ever stored. Before any scenario the dictionary is
empty and s_m is zero. `learnable_dictionary=True` (the paper: "K-means ... to initialize this global
dictionary") makes each scenario's centroids a Parameter that trains during its own scenario and is
frozen afterwards (`set_dictionary_trainable`), so what older scenarios put there cannot drift;
`dictionary_drift()` measures how far each part moved from its K-means initialisation.

`EmotionClassifier` is the "simple emotion classification network" of L_emo: fully connected layers
with ReLU on the pooled h, then the class logits (the softmax is inside the cross-entropy).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from l2emg.utils.precision import sdpa

__all__ = ["EmotionDecoupler", "EmotionClassifier", "masked_mean", "kmeans_centroids"]


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over the tokens where mask is True: x (B, L, d), mask (B, L) -> (B, d)."""
    weights = mask.to(x.dtype).unsqueeze(-1)  # (B, L, 1)
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def kmeans_centroids(features: np.ndarray, clusters: int, seed: int, n_init: int = 4) -> np.ndarray:
    """K-means (scikit-learn, k-means++) centroids of features (N, d) -> (min(clusters, #distinct), d) float32."""
    from sklearn.cluster import KMeans

    features = np.asarray(features, dtype=np.float64)
    distinct = len(np.unique(features.round(decimals=6), axis=0))
    k = max(1, min(int(clusters), distinct))
    km = KMeans(n_clusters=k, n_init=n_init, random_state=int(seed) % (2**31 - 1))
    km.fit(features)
    return km.cluster_centers_.astype(np.float32)


class _Attention(nn.Module):
    """Multi-head scaled dot-product attention from given queries to given keys/values (no projections)."""

    def __init__(self, heads: int, sharpness: float = 1.0):
        super().__init__()
        self.heads, self.sharpness = heads, float(sharpness)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """q (B, L, d), k/v (B, S, d) or (S, d) shared by the batch, key_mask (B, S) bool -> (B, L, d)."""
        batch, length, d = q.shape
        if k.dim() == 2:
            k, v = k.expand(batch, -1, -1), v.expand(batch, -1, -1)
        split = lambda t: t.reshape(t.shape[0], t.shape[1], self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, S): True = attend
        scale = self.sharpness / math.sqrt(d // self.heads)
        out = sdpa(split(q), split(k), split(v), attn_mask=mask, scale=scale)  # (B, H, L, d/H)
        return out.transpose(1, 2).reshape(batch, length, d)


def _ffn(d: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))


class EmotionDecoupler(nn.Module):
    """X (B, L, d_model) + prompt mask (B, L) -> h (B, L, d_cged), the emotion-highlighted features.

    `to_model(h)` maps h back to the LM width for adding it to the prompt embeddings; `pooled(h, mask)`
    is the per-sample summary read by the emotion classifier and the expert gate.
    """

    def __init__(self, d_model: int, d_cged: int, heads: int = 4, ffn_mult: int = 2, fusion: str = "residual",
                 learnable_dictionary: bool = False, sharpness: float = 1.0):
        super().__init__()
        if fusion not in ("residual", "attention"):
            raise ValueError(f"CGED fusion must be 'residual' or 'attention', got {fusion!r}")
        self.fusion, self.learnable_dictionary = fusion, bool(learnable_dictionary)
        d = min(d_cged, d_model)
        if d % heads:
            raise ValueError(f"CGED width {d} must be divisible by heads ({heads})")
        self.d_model, self.width, self.heads = d_model, d, heads
        # X -> X' (d). Token embeddings of LMs are tiny (std ≈ 0.02 per entry), so they are normalised
        # first; otherwise the projection's bias would swamp the token content.
        self.in_proj = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, d))
        # self-sampling: queries from f(X), keys / values from linear maps of X
        self.f_query = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        self.self_key = nn.Linear(d, d)
        self.self_value = nn.Linear(d, d)
        # cross-sampling: queries from g(X), keys / values from the global dictionary
        self.g_query = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        self.dict_key = nn.Linear(d, d)
        self.dict_value = nn.Linear(d, d)
        # `sharpness` multiplies the attention logits: without the residual, each token's h is what its
        # attentions return, and at 1/√d the self-attention over ~50 prompt tokens starts near uniform
        # (sharper learned faster on a toy, not on the embedded data: docs/experiments/cged-paper.md).
        self.attention = _Attention(heads, sharpness)
        self.ffn_self = _ffn(d, ffn_mult * d)   # FFN1
        self.ffn_cross = _ffn(d, ffn_mult * d)  # FFN2
        self.fuse = nn.Linear(2 * d, d)  # W, b
        self.norm = nn.LayerNorm(d)
        self.out_proj = nn.Linear(d, d_model)  # h -> LM width (emotion-highlighted input)
        self.pool_score = nn.Linear(d, 1)  # attention pooling of h for the classifier and the gate
        # Global dictionary: K-means centroids of mean-pooled frozen prompt embeddings (M, d_model),
        # grown per scenario; `dictionary_sizes` records how many rows each scenario added. Fixed: one
        # buffer. Learnable: one Parameter per scenario, plus the K-means initialisation (a buffer).
        if self.learnable_dictionary:
            self.dictionary_parts = nn.ParameterList()
            self.register_buffer("dictionary_init", torch.zeros(0, d_model))
            self.register_buffer("part_scale", torch.zeros(0))
        else:
            self.register_buffer("dictionary", torch.zeros(0, d_model))
        self.dictionary_sizes: list[int] = []

    # -- dictionary ---------------------------------------------------------------------------------
    def memory(self) -> Tensor:
        """The whole global dictionary (M, d_model)."""
        if self.learnable_dictionary:
            parts = [part * scale for part, scale in zip(self.dictionary_parts, self.part_scale)]
            return torch.cat(parts, dim=0) if parts else self.dictionary_init
        return self.dictionary

    @torch.no_grad()
    def add_to_dictionary(self, centroids: Tensor) -> None:
        """Append one scenario's centroids (K, d_model) (learnable: a new part, frozen until
        `set_dictionary_trainable` names it)."""
        if centroids.dim() != 2 or centroids.shape[1] != self.d_model:
            raise ValueError(f"centroids must have shape (K, {self.d_model}), got {tuple(centroids.shape)}")
        if self.learnable_dictionary:
            new = centroids.to(device=self.dictionary_init.device, dtype=self.dictionary_init.dtype)
            # a part is stored in units of its own RMS (`part_scale`), so that an optimizer step of a given
            # learning rate moves it by a share of its size (embedding entries are ~0.02: a raw Adam step of
            # 5e-3 moved the centroids by several times their norm in one scenario)
            scale = new.float().pow(2).mean().sqrt().clamp(min=1e-12).reshape(1)
            self.dictionary_parts.append(nn.Parameter((new / scale).clone(), requires_grad=False))
            self.part_scale = torch.cat([self.part_scale, scale.to(self.part_scale)])
            self.dictionary_init = torch.cat([self.dictionary_init, new], dim=0)
        else:
            new = centroids.to(device=self.dictionary.device, dtype=self.dictionary.dtype)
            self.dictionary = torch.cat([self.dictionary, new], dim=0)
        self.dictionary_sizes.append(int(centroids.shape[0]))

    def set_dictionary_trainable(self, part: int | None) -> None:
        """Only dictionary part `part` (a scenario's centroids) trains; None: none (learnable only)."""
        if self.learnable_dictionary:
            for j, param in enumerate(self.dictionary_parts):
                param.requires_grad_(j == part)

    @torch.no_grad()
    def dictionary_drift(self) -> list[float]:
        """Per scenario part: ‖part − K-means init‖ / ‖init‖ (zeros for a fixed dictionary)."""
        if not self.learnable_dictionary:
            return [0.0] * len(self.dictionary_sizes)
        out, start = [], 0
        for param, scale, size in zip(self.dictionary_parts, self.part_scale, self.dictionary_sizes):
            init = self.dictionary_init[start:start + size].float()
            out.append(float((param.float() * scale - init).norm() / init.norm().clamp(min=1e-12)))
            start += size
        return out

    def resize_dictionary(self, sizes: list[int]) -> None:
        """Recreate an (uninitialised, zero) dictionary with the given per-scenario sizes, for loading."""
        sizes = [int(s) for s in sizes]
        if self.learnable_dictionary:
            like = self.dictionary_init
            self.dictionary_parts = nn.ParameterList(
                [nn.Parameter(torch.zeros(size, self.d_model, device=like.device, dtype=like.dtype), requires_grad=False)
                 for size in sizes])
            self.dictionary_init = torch.zeros(sum(sizes), self.d_model, device=like.device, dtype=like.dtype)
            self.part_scale = torch.zeros(len(sizes), device=like.device, dtype=like.dtype)
        else:
            self.dictionary = torch.zeros(sum(sizes), self.d_model, device=self.dictionary.device,
                                          dtype=self.dictionary.dtype)
        self.dictionary_sizes = sizes

    # -- forward ------------------------------------------------------------------------------------
    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, L, d_model) prompt embeddings, mask (B, L) bool (True = prompt token) -> h (B, L, d)."""
        xp = self.in_proj(x.to(self.out_proj.weight.dtype))  # (B, L, d)
        s_x = self.attention(self.f_query(xp), self.self_key(xp), self.self_value(xp), key_mask=mask)
        dictionary = self.memory()
        if dictionary.shape[0]:
            memory = self.in_proj(dictionary.to(self.out_proj.weight.dtype))  # (M, d)
            s_m = self.attention(self.g_query(xp), self.dict_key(memory), self.dict_value(memory))
        else:
            s_m = torch.zeros_like(s_x)
        fused = self.fuse(torch.cat([self.ffn_self(s_x), self.ffn_cross(s_m)], dim=-1))  # (B, L, d)
        return self.norm(xp + fused if self.fusion == "residual" else fused)

    def pooled(self, h: Tensor, mask: Tensor) -> Tensor:
        """(B, L, d) -> (B, d): attention pooling over the prompt tokens (a learned score per token,
        softmax over the prompt). The emotion and the scenario live in a few caption words while
        most prompt tokens are the shared instruction, which a plain mean would let dominate."""
        scores = self.pool_score(h).squeeze(-1).masked_fill(~mask, float("-inf"))  # (B, L)
        return torch.einsum("bl,bld->bd", torch.softmax(scores, dim=-1), h)

    def to_model(self, h: Tensor) -> Tensor:
        """(B, L, d) -> (B, L, d_model)."""
        return self.out_proj(h)


class EmotionClassifier(nn.Module):
    """Pooled h (B, d) -> emotion logits (B, C): `layers` × (Linear + ReLU), then Linear."""

    def __init__(self, d_in: int, num_classes: int, hidden: int = 128, layers: int = 2):
        super().__init__()
        blocks: list[nn.Module] = []
        width = d_in
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        blocks.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*blocks)

    def forward(self, pooled: Tensor) -> Tensor:
        return self.net(pooled)
