"""Continual-learning methods, by the name `l2emg train --method NAME` uses."""

from __future__ import annotations

from l2emg.continual.methods.base import ContinualMethod, ScenarioContext
from l2emg.continual.methods.epi import EPI
from l2emg.continual.methods.esmoe import ESMoE, ESMoEWithoutCGED, ESMoEWithoutLemo, ESMoEWithoutSAMoE
from l2emg.continual.methods.lwf import LwFLoRA
from l2emg.continual.methods.mtl import MTL
from l2emg.continual.methods.olora import OLoRA
from l2emg.continual.methods.progprompt import ProgressivePrompts
from l2emg.continual.methods.sapt import SAPT
from l2emg.continual.methods.seqlora import SeqLoRA
from l2emg.errors import ConfigError

METHODS: dict[str, type[ContinualMethod]] = {
    "mtl": MTL,
    "seqlora": SeqLoRA,
    "esmoe": ESMoE,
    "esmoe_wo_cged": ESMoEWithoutCGED,
    "esmoe_wo_samoe": ESMoEWithoutSAMoE,
    "esmoe_wo_lemo": ESMoEWithoutLemo,
    "lwf": LwFLoRA,
    "olora": OLoRA,
    "sapt": SAPT,
    "epi": EPI,
    "progprompt": ProgressivePrompts,
}


def method_class(name: str) -> type[ContinualMethod]:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; available: {', '.join(sorted(METHODS))}")
    return METHODS[name]


__all__ = ["ContinualMethod", "ScenarioContext", "METHODS", "method_class"]
