"""SeqLoRA: one LoRA adapter fine-tuned straight through the scenarios in order (the lower bound
of continual learning: it forgets)."""

from __future__ import annotations

from torch import nn

from l2emg.continual.lora import inject_experts_from_config
from l2emg.continual.methods.base import ContinualMethod, ScenarioContext
from l2emg.utils.seeding import seeded_generator


class SeqLoRA(ContinualMethod):
    name = "seqlora"
    label = "SeqLoRA"
    paper_row = "seqlora"

    def setup(self) -> None:
        self.bank = inject_experts_from_config(self.model, self.config.lora)
        self.freeze_backbone()
        self.bank.add_expert(trainable=True, generator=seeded_generator(self.config.train.seed))

    def begin_scenario(self, step: int, ctx: ScenarioContext) -> None:
        self.bank.set_trainable([0])

    def end_scenario(self, step: int, ctx: ScenarioContext) -> None:
        self.bank.set_trainable([])

    def trainable_parameters(self) -> list[nn.Parameter]:
        return self.bank.expert_parameters(0) + list(self.motion_embedding_params)
