"""The routing state: the gate shared by every expert layer of one model.

`RoutingState` holds one weight vector per sample (as SAPT does), set once before the forward and read
by all layers: the weights, the experts some sample uses (`used`), and each sample's own experts for
per-sample top-k routing (`row_selection`, computed once per routing and shared by every layer).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["RoutingState"]


class RoutingState:
    """The expert weights of the current batch, shared by every `ExpertLayer` of one bank.

    `weights` is None (no routing: all weight on the newest expert — plain LoRA), a (E,) vector used
    for every sample, or a (B, E) matrix with one gate vector per sample. The weights stay fixed
    for as long as they are set, e.g. across all decoding steps of a batch with a KV cache.
    """

    def __init__(self) -> None:
        self.weights: Tensor | None = None  # None | (E,) | (B, E)
        self.used: tuple[int, ...] = ()  # experts with a non-zero weight for some sample
        self._rows: dict[tuple[int, ...], tuple[Tensor, Tensor]] = {}  # `row_selection` results

    def set(self, weights: Tensor | None) -> None:
        self._rows = {}
        if weights is None:
            self.weights, self.used = None, ()
            return
        if weights.dim() not in (1, 2):
            raise ValueError(f"routing weights must have shape (E,) or (B, E), got {tuple(weights.shape)}")
        nonzero = (weights.detach() != 0).reshape(-1, weights.shape[-1]).any(dim=0)  # (E,)
        self.weights = weights
        self.used = tuple(int(i) for i in torch.nonzero(nonzero).flatten().tolist())  # one host sync

    def select_rows(self, index: Tensor) -> None:
        """Keep only the samples `index` (K,) of per-sample (B, E) weights, and of the `row_selection`s
        computed from them: a generation batch that drops its finished rows. (E,) weights or no routing
        stay as they are; `used` stays the batch's (a superset for the rows kept)."""
        if self.weights is None or self.weights.dim() != 2:
            return
        self.weights = self.weights.index_select(0, index)
        self._rows = {key: (positions.index_select(0, index), weights.index_select(0, index))
                      for key, (positions, weights) in self._rows.items()}

    def row_selection(self, experts: tuple[int, ...]) -> tuple[Tensor, Tensor]:
        """For per-sample (B, E) weights: each sample's experts among `experts` that carry weight, as
        positions into `experts` (B, k) and their weights (B, k), k = the most any one sample uses
        (a sample with fewer is padded with zero-weight picks). Computed once per routing (one host
        sync) and shared by every layer of the bank."""
        if experts not in self._rows:
            assert self.weights is not None and self.weights.dim() == 2
            index = torch.tensor(experts, device=self.weights.device, dtype=torch.long)
            sub = self.weights.index_select(1, index)  # (B, K)
            k = max(int((sub.detach() != 0).sum(-1).max()), 1)
            positions = sub.detach().abs().topk(k, dim=-1).indices  # (B, k)
            self._rows[experts] = (positions, sub.gather(1, positions))
        return self._rows[experts]
