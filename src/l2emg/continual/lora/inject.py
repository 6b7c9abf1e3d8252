"""Injection: swap a model's targeted layers for expert layers and return their bank.

`inject_experts(model, targets, …)` swaps the targeted `nn.Linear`s / `nn.Embedding`s of a model
for `ExpertLinear`s / `ExpertEmbedding`s (with per-layer-kind ranks, PEFT's `rank_pattern` /
`alpha_pattern`), freezes the model, and returns an `ExpertBank`; `inject_experts_from_config` does
the same with the fields of a `LoRAConfig`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from l2emg.continual.lora.bank import ExpertBank, _matches
from l2emg.continual.lora.layers import ExpertEmbedding, ExpertLayer, ExpertLinear
from l2emg.continual.lora.routing import RoutingState
from l2emg.errors import ConfigError

__all__ = ["inject_experts", "inject_experts_from_config"]


def _pattern_value(name: str, pattern: Mapping[str, float], default: float) -> float:
    matches = [t for t in pattern if _matches(name, t)]
    return pattern[max(matches, key=len)] if matches else default


def inject_experts(
    model: nn.Module,
    target_modules: Sequence[str],
    rank: int,
    alpha: float,
    dropout: float = 0.0,
    init: str = "kaiming",
    rank_pattern: Mapping[str, int] | None = None,
    alpha_pattern: Mapping[str, float] | None = None,
) -> ExpertBank:
    """Wrap every `nn.Linear` or `nn.Embedding` whose qualified name ends with a target (e.g. `q_proj`
    matches `model.layers.0.self_attn.q_proj`; `embed_tokens` and `lm_head` are the input and output
    embeddings of a LLaMA) in an `ExpertLinear` / `ExpertEmbedding`, freeze every parameter of the
    model, and return the bank. A layer matching a key of `rank_pattern` / `alpha_pattern` takes that
    rank / alpha (PEFT's convention). The bank starts with no experts, so the model computes exactly
    what it did.
    """
    if any(isinstance(m, ExpertLayer) for m in model.modules()):
        raise ValueError(f"{type(model).__name__} already has injected experts")
    targets = [t.strip().strip(".") for t in target_modules]
    if not targets or any(not t for t in targets):
        raise ConfigError(f"lora.target_modules: expected non-empty module names, got {list(target_modules)}")
    layer_names = [name for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Embedding))]
    unmatched = [t for t in targets if not any(_matches(n, t) for n in layer_names)]
    if unmatched:
        leaves = list(dict.fromkeys(n.rsplit(".", 1)[-1] for n in layer_names))
        raise ConfigError(
            f"lora.target_modules: no nn.Linear or nn.Embedding of {type(model).__name__} is named like "
            f"{unmatched}; its layer names end with {leaves[:12]} (e.g. {layer_names[:3]})")
    chosen = [n for n in layer_names if any(_matches(n, t) for t in targets)]
    for field, pattern in (("rank_pattern", rank_pattern or {}), ("alpha_pattern", alpha_pattern or {})):
        stray = [k for k in pattern if not any(_matches(n, k) for n in chosen)]
        if stray:
            raise ConfigError(f"lora.{field}: {stray} match no targeted layer (targets: {targets})")
    owners: dict[int, str] = {}
    for name in chosen:  # tied weights (e.g. tie_word_embeddings): merging one would change the other
        weight = model.get_submodule(name).weight
        if id(weight) in owners:
            raise ConfigError(f"lora.target_modules: {owners[id(weight)]} and {name} share one weight (tied "
                              f"embeddings); target only one of them")
        owners[id(weight)] = name
    model.requires_grad_(False)
    routing = RoutingState()
    layers: dict[str, ExpertLayer] = {}
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        base = getattr(parent, child)
        kind = ExpertEmbedding if isinstance(base, nn.Embedding) else ExpertLinear
        layer_rank = int(_pattern_value(name, rank_pattern or {}, rank))
        layer_alpha = _pattern_value(name, alpha_pattern or {}, alpha)
        wrapped = kind(base, layer_rank, layer_alpha, dropout, init, routing)
        setattr(parent, child, wrapped)
        layers[name] = wrapped
    return ExpertBank(layers, routing, targets, rank_pattern, alpha_pattern)


def inject_experts_from_config(model: nn.Module, config) -> ExpertBank:
    """`inject_experts` with the fields of a `LoRAConfig`."""
    return inject_experts(model, config.target_modules, config.rank, config.alpha, config.dropout, config.init,
                          config.rank_pattern, config.alpha_pattern)
