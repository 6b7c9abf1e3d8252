"""LwF-LoRA: one LoRA learns the whole stream, distilled from its own state after the previous scenario.

Learning without Forgetting (Li & Hoiem 2016) on a LoRA, as the continual-instruction-tuning
baselines run it (REFERENCES.md, "Continual-learning baselines"): the model as it was after scenario
i − 1 is the teacher on scenario i's training prompts, and

    L = L_lm + λ · T² · KL( softmax(z_teacher / T) ‖ softmax(z_student / T) )

averaged over the motion-token positions: the positions whose next token is a target token
(labels != -100 after the causal shift, i.e. exactly where L_lm is taken), over the full vocabulary.
Scenario 0 has no teacher (L = L_lm).

Settings taken from the official runs: T = 2 (`lwf.temperature`), λ = 1 (`lwf.weight`), one adapter
trained straight through the stream (as SeqLoRA) with the profile's LoRA budget (`config.lora`).

Memory: the teacher is not a second backbone but a frozen copy of the adapter — a second expert in the
same `ExpertBank`, never trained and never routed for the student. Layout: before scenario 1 the bank
gets expert 1 = a copy of expert 0; from then on expert 0 is the teacher (overwritten with the student
at the start of every later scenario) and expert 1 (the newest) is the student, which keeps training
from where it stopped. Teacher logits are computed under `no_grad` by routing the bank to expert 0, with
dropout off (the teacher is a fixed function); the student routes to itself only. Memory grows by
exactly one LoRA.

Deviations, with the reason:
- the KL is scaled by T² (Hinton et al. 2015), as usual in distillation, so that its gradient keeps
  the same size as T changes; the official λ = 1 is applied on top of it;
- the teacher reads the same (code-corrupted) inputs as the student, because the trainer corrupts the
  batch before the method sees it; the teacher is the previous model on the current inputs either way;
- no merged single-prompt fast path (optional; routing to one expert already costs one LoRA).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from l2emg.config import LwFConfig
from l2emg.continual.lora import inject_experts_from_config
from l2emg.continual.methods.base import ContinualMethod, ScenarioContext
from l2emg.lm.prompts import IGNORE_INDEX
from l2emg.utils.seeding import seeded_generator

__all__ = ["LwFLoRA", "distillation_kl"]

TEACHER = 0  # the frozen copy, once a second expert exists


def distillation_kl(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """T² · mean over motion-token positions of KL(softmax(teacher / T) ‖ softmax(student / T)).

    logits (B, L, V), labels (B, L): position t predicts token t + 1, so the positions read are those
    with labels[:, 1:] != -100 (where the LM loss is taken). A batch without any such position gives 0."""
    mask = labels[:, 1:] != IGNORE_INDEX  # (B, L-1)
    if not bool(mask.any()):
        return student_logits.sum() * 0.0
    student = student_logits[:, :-1][mask].float() / temperature  # (N, V)
    teacher = teacher_logits[:, :-1][mask].float() / temperature  # (N, V)
    log_p_teacher = F.log_softmax(teacher, dim=-1)
    log_p_student = F.log_softmax(student, dim=-1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1)  # (N,)
    return kl.mean() * temperature**2


class LwFLoRA(ContinualMethod):
    name = "lwf"
    label = "LwF-LoRA"
    paper_row = "lwf"
    options = LwFConfig

    # -- set-up / lifecycle -------------------------------------------------------------------------
    def setup(self) -> None:
        self.bank = inject_experts_from_config(self.model, self.config.lora)
        self.freeze_backbone()
        self.bank.add_expert(trainable=True, generator=seeded_generator(self.config.train.seed))

    @property
    def student(self) -> int:
        """The expert being trained (the newest)."""
        return self.bank.num_experts - 1

    @property
    def has_teacher(self) -> bool:
        return self.bank.num_experts > 1

    def begin_scenario(self, step: int, ctx: ScenarioContext) -> None:
        if step > 0:
            if not self.has_teacher:  # the second expert: the student continues in it, expert 0 stays put
                self.bank.add_expert(trainable=False)
                self.bank.copy_expert(TEACHER, self.student)
            else:  # the teacher becomes the model after the previous scenario
                self.bank.copy_expert(self.student, TEACHER)
        self.bank.set_trainable([self.student])

    def end_scenario(self, step: int, ctx: ScenarioContext) -> None:
        self.bank.set_trainable([])

    def trainable_parameters(self) -> list[nn.Parameter]:
        return self.bank.expert_parameters(self.student) + list(self.motion_embedding_params)

    def _one_hot(self, expert: int, device: torch.device) -> Tensor:
        weights = torch.zeros(self.bank.num_experts, device=device)
        weights[expert] = 1.0
        return weights

    # -- training -----------------------------------------------------------------------------------
    @torch.no_grad()
    def teacher_logits(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """(B, L, V) logits of the model after the previous scenario (the frozen copy), dropout off."""
        if not self.has_teacher:
            raise RuntimeError("LwF has no teacher before the second scenario")
        was_training = self.model.training
        self.model.eval()
        try:
            with self.bank.routing(self._one_hot(TEACHER, input_ids.device)):
                return self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        finally:
            self.model.train(was_training)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        teacher = None
        if self.has_teacher and self.options.weight > 0 and self.training:
            teacher = self.teacher_logits(batch["input_ids"], batch["attention_mask"])
        with self.bank.routing(self._one_hot(self.student, batch["input_ids"].device)):
            out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                             labels=batch["labels"])
        loss = out.loss
        logs = {"lm_loss": out.loss.detach()}
        if teacher is not None:
            kd = distillation_kl(out.logits, teacher, batch["labels"], self.options.temperature)
            loss = loss + self.options.weight * kd
            logs["kd_loss"] = kd.detach()
        return {"loss": loss, **logs}

    # -- generation ---------------------------------------------------------------------------------
    @torch.no_grad()
    def prepare_generation(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor | None:
        """Route every sample to the student expert only (the teacher is a training-time copy)."""
        self.bank.set_routing(self._one_hot(self.student, input_ids.device))
        return None

    # -- state --------------------------------------------------------------------------------------
    def structure(self) -> dict[str, Any]:
        return {"variant": self.name, "num_experts": self.bank.num_experts}

    def restore_structure(self, structure: dict[str, Any]) -> None:
        self.restore_experts(structure, most=2)  # the student and, from the second scenario on, its teacher
