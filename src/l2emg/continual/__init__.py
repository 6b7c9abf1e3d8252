"""Continual learning over the scenario stream: LoRA experts, the trainer and the methods."""

from l2emg.continual.lora import ExpertBank, ExpertLinear, RoutingState, inject_experts, inject_experts_from_config

__all__ = ["ExpertBank", "ExpertLinear", "RoutingState", "inject_experts", "inject_experts_from_config"]
