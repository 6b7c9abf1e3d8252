"""LoRA experts on the linear and embedding layers of any Hugging Face causal LM, one fused product.

Four parts, one module each, kept apart as in PEFT:

- `routing.py`: `RoutingState`, the gate shared by every wrapped layer of a model: one weight vector
  per sample (as SAPT does), set once before the forward, read by all layers.
- `layers.py`: `ExpertLayer` and its two kinds, `ExpertLinear` (a frozen `nn.Linear`) and
  `ExpertEmbedding` (a frozen `nn.Embedding`): the bank of LoRA experts of one layer, mixed in one
  fused low-rank product (or gathered per sample where that pays: `layers.GATHER_COST`, which is read
  there, so a benchmark or test that changes it sets `l2emg.continual.lora.layers.GATHER_COST`).
- `bank.py`: `ExpertBank`, the handle through which methods add, freeze, route and merge the experts
  of every layer at once.
- `inject.py`: `inject_experts` / `inject_experts_from_config`, which wrap a model's targeted layers
  and return their bank.

This package re-exports the public names, so `from l2emg.continual.lora import ExpertBank` works as
before the split.
"""

from l2emg.continual.lora.bank import ExpertBank
from l2emg.continual.lora.inject import inject_experts, inject_experts_from_config
from l2emg.continual.lora.layers import ExpertEmbedding, ExpertLayer, ExpertLinear
from l2emg.continual.lora.routing import RoutingState

__all__ = [
    "ExpertBank",
    "ExpertEmbedding",
    "ExpertLayer",
    "ExpertLinear",
    "RoutingState",
    "inject_experts",
    "inject_experts_from_config",
]
