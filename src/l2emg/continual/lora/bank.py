"""The expert bank: the handle on every expert layer injected into one model.

`ExpertBank` is what `inject_experts` (`l2emg.continual.lora.inject`) returns and what methods hold:
through it they add, freeze, route and merge experts for all layers at once, with expert indices shared
by all layers (a method's checkpoint, `l2emg.continual.checkpoint`, saves them with the rest of its
state).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from l2emg.continual.lora.layers import ExpertEmbedding, ExpertLayer
from l2emg.continual.lora.routing import RoutingState

__all__ = ["ExpertBank"]


class ExpertBank:
    """Handle on every `ExpertLayer` injected into one model: experts are added, frozen, routed,
    merged, saved and loaded for all layers at once. Expert indices are shared by all layers.

    `rank` / `alpha` are the bank's defaults; `rank_pattern` / `alpha_pattern` ({target: value}) the
    layer kinds that differ (e.g. a wider expert on the embeddings)."""

    def __init__(self, layers: Mapping[str, ExpertLayer], routing: RoutingState, target_modules: Sequence[str],
                 rank_pattern: Mapping[str, int] | None = None, alpha_pattern: Mapping[str, float] | None = None
                 ) -> None:
        if not layers:
            raise ValueError("an ExpertBank needs at least one layer")
        self.layers: dict[str, ExpertLayer] = dict(layers)
        self.routing_state = routing
        self.target_modules = list(target_modules)
        self.rank_pattern = {k: int(v) for k, v in (rank_pattern or {}).items()}
        self.alpha_pattern = {k: float(v) for k, v in (alpha_pattern or {}).items()}
        plain = [layer for name, layer in self.layers.items()
                 if not any(_matches(name, t) for t in [*self.rank_pattern, *self.alpha_pattern])]
        first = plain[0] if plain else next(iter(self.layers.values()))
        self.rank, self.alpha, self.scaling = first.rank, first.alpha, first.scaling

    @property
    def input_embedding(self) -> "ExpertEmbedding | None":
        """The bank's layer on the input token embeddings, if it has one."""
        return next((layer for layer in self.layers.values() if isinstance(layer, ExpertEmbedding)), None)

    # -- experts ------------------------------------------------------------------------------------
    @property
    def num_experts(self) -> int:
        return next(iter(self.layers.values())).num_experts

    @property
    def trainable_experts(self) -> tuple[int, ...]:
        return next(iter(self.layers.values())).trainable_experts

    def add_expert(self, trainable: bool = True, generator: torch.Generator | None = None) -> int:
        """Add one expert to every layer (B = 0, so the model output is unchanged); return its index.

        Clears the routing. Other experts keep their trainability; call `set_trainable` to freeze them. Pass a seeded
        `generator` for an initialisation that is identical across processes."""
        self.clear_routing()  # a routing set for E experts is meaningless for E + 1
        indices = {layer.add_expert(trainable, generator) for layer in self.layers.values()}
        assert len(indices) == 1, "layers of one bank disagree on the number of experts"
        return indices.pop()

    @torch.no_grad()
    def copy_expert(self, source: int, target: int) -> None:
        """Make expert `target` a copy of expert `source` (A and B in every layer); trainability unchanged."""
        for layer in self.layers.values():
            for src, dst in zip(layer.expert_parameters(source), layer.expert_parameters(target)):
                dst.copy_(src)

    def set_trainable(self, expert_ids: Iterable[int]) -> None:
        """Exactly the listed experts train (A and B in every layer); every other expert is frozen."""
        ids = list(expert_ids)
        for layer in self.layers.values():
            layer.set_trainable(ids)

    def expert_parameters(self, expert_id: int) -> list[nn.Parameter]:
        """The A and B of one expert in every layer."""
        params: list[nn.Parameter] = []
        for layer in self.layers.values():
            params.extend(layer.expert_parameters(expert_id))
        return params

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for e in self.trainable_experts for p in self.expert_parameters(e)]

    def num_trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    def num_parameters(self, expert_id: int | None = None) -> int:
        """Parameters of one expert (all layers), or of all experts when expert_id is None."""
        ids = range(self.num_experts) if expert_id is None else [expert_id]
        return sum(p.numel() for e in ids for p in self.expert_parameters(e))

    # -- routing ------------------------------------------------------------------------------------
    def set_routing(self, weights: Tensor | None) -> None:
        """Route the next forwards: (B, E) one gate vector per sample, (E,) the same for all, or None
        (all weight on the newest expert). Set once; every layer reads it. Zero weights skip experts."""
        if weights is not None:
            if self.merged:
                raise RuntimeError("experts are merged into the base weights; unmerge() before routing a batch")
            if weights.dim() not in (1, 2) or weights.shape[-1] != self.num_experts:
                raise ValueError(
                    f"routing weights must have shape (E,) or (B, E) with E = {self.num_experts} experts, "
                    f"got {tuple(weights.shape)}")
        self.routing_state.set(weights)

    def clear_routing(self) -> None:
        self.routing_state.set(None)

    @contextmanager
    def routing(self, weights: Tensor | None) -> Iterator[None]:
        """`with bank.routing(w): model(...)` — sets the routing and clears it afterwards."""
        self.set_routing(weights)
        try:
            yield
        finally:
            self.clear_routing()

    # -- merging ------------------------------------------------------------------------------------
    @property
    def merged(self) -> bool:
        return any(layer.merged for layer in self.layers.values())

    def merge(self, weights: Tensor | Sequence[float]) -> None:
        """Fold Σ_e w_e·scaling·B_e A_e into every base weight (single-prompt inference).

        weights: (E,) or (1, E). Merging again replaces the previous merge."""
        w = torch.as_tensor(weights).detach()
        if w.dim() == 2 and w.shape[0] == 1:
            w = w[0]
        if w.shape != (self.num_experts,):
            raise ValueError(f"merge weights must have shape ({self.num_experts},) or (1, {self.num_experts}), "
                             f"got {tuple(w.shape)}")
        self.clear_routing()
        for layer in self.layers.values():
            layer.merge(w)

    def unmerge(self) -> None:
        """Restore every base weight exactly."""
        for layer in self.layers.values():
            layer.unmerge()


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)
