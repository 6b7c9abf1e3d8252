"""Progressive Prompts (Razdaibiedina et al., ICLR 2023; official code arazd/ProgressivePrompts)
behind the `ContinualMethod` interface.

    scenario t:  input embeddings = [P_t ; P_{t−1} ; … ; P_1 ; embed(x)]      (B, t·n + L, d)
                 attention mask   = [1 … 1 ; mask],  labels = [−100 … −100 ; labels]
        P_t (n, d) = ResMLP_t(θ_t) = θ_t + W2 ReLU(W1 θ_t + b1) + b2   (with `progprompt.residual_mlp`)
        only θ_t and ResMLP_t train (and expert_t with output adapters, below); P_1 … P_{t−1} are frozen
        (bit-identical) and the backbone too.
    end of scenario t:  the MLP is folded in: θ_t ← ResMLP_t(θ_t), the MLP is dropped, P_t freezes.
    generation:  the same [P_T ; … ; P_1] in front of every (left-padded) prompt — no task id: all
        prompts are always used (`GenerationInputs(embeds, attention_mask)`; positions count real
        tokens, so a padded prompt sees the soft prompts at the positions training gave them).

Output adapters (`progprompt.output_adapters`, off by default = the official method; on in the default
profile): scenario t also gets LoRA expert t on those `lora.target_modules` that are `embed_tokens` /
`lm_head` (their `rank_pattern` / `alpha_pattern`), in one `ExpertBank`, treated as the prompts are:
expert t trains at step t, experts 0 … t−1 are frozen (bit-identical) and every expert acts with
weight 1 in training and at generation (no task identity; O-LoRA's sum). A new expert starts as
PEFT's (B A = 0: a no-op); a copy of the previous one would count that one twice in the sum.

Learning rates: θ_t and its ResMLP train at `progprompt.prompt_lr` (official 0.3 with T5), the experts
at the trainer's `train.lr` (`parameter_groups`); both follow the trainer's schedule.

Settings taken from the official code (T5_codebase, `train_t5_cl.py` / `t5_continual.py`): prompt
length 10 per task (`--prefix_len 10`), a new prompt initialised from the embeddings of random
vocabulary tokens (`init_new_prompt`), concatenated in front of the previous prompts
(`torch.concat([prompt, previous_prompts, inputs_embeds])`), frozen backbone, the residual MLP
reparameterisation "MLP1" with bottleneck 800 (`ResMLP`: Linear → ReLU → Linear, plus the input),
its output stored as the task's prompt when the task ends (`progress_previous_prompts`).

Deviations, with the reason:
* Decoder-only LLaMA instead of T5's encoder: the soft prompts go in front of the decoder's input
  (the official prepends them to T5's encoder input); the loss is the LM loss on the motion tokens.
* The random tokens come from the text vocabulary only (not the motion tokens, whose rows are built
  from the motion codebook and are not word embeddings), drawn with a seeded generator.
* ResMLP: the T5 code's MLP1 refers to an undefined `layer_norm` flag; the BERT code's residual MLP1
  (no LayerNorm) is used. The MLP is initialised with PyTorch's default (seeded).
* Same optimiser, schedule and epochs as every method, the prompt at its own peak lr
  (`progprompt.prompt_lr`, default the official 0.3 for T5 prompts; the default profile sets the
  value measured on its first two scenarios, see default.yaml) and no early stopping on a validation
  split (no best-epoch selection).
* Output adapters (above; default profile only): soft prompts cannot reach the input embeddings or
  `lm_head`, and a 4 M-parameter backbone's frozen embeddings do not carry the new motion-token rows
  the task needs (docs/experiments/conditioning.md): with prompts only, ProgPrompt generates at chance
  on that profile while every LoRA method reaches the embeddings. The paper profile (LLaMA-2-7B,
  attention-only LoRA) keeps the official prompts-only method.
* No replay (the official's `memory_perc` / data replay is off in its main results).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from l2emg.config import Config, ProgPromptConfig
from l2emg.continual.methods.base import ContinualMethod, ScenarioContext
from l2emg.errors import CheckpointError
from l2emg.lm.generate import GenerationInputs
from l2emg.lm.motion_lm import MotionLM
from l2emg.lm.prompts import IGNORE_INDEX, position_ids
from l2emg.utils.seeding import seeded_generator

if TYPE_CHECKING:
    from l2emg.continual.lora import ExpertBank

__all__ = ["ProgressivePrompts", "ResidualMLP"]


class ResidualMLP(nn.Module):
    """The official MLP1 reparameterisation: x + W2 ReLU(W1 x + b1) + b2, applied per prompt token."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.module = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, width))

    def forward(self, x: Tensor) -> Tensor:
        return self.module(x) + x


class ProgressivePrompts(ContinualMethod):
    name = "progprompt"
    label = "ProgPrompt"
    paper_row = "progprompt"
    options = ProgPromptConfig

    def __init__(self, config: Config, lm: MotionLM):
        super().__init__(config, lm)
        self.prompts = nn.ParameterList()  # P_1 … P_T, each (n, d); index i = scenario i
        self.mlp: ResidualMLP | None = None  # the current scenario's reparameterisation (until folded)
        self.current = 0
        self.bank: ExpertBank | None = None  # with progprompt.output_adapters: expert i on the embeddings, per scenario

    # -- set-up / lifecycle -----------------------------------------------------------------------------
    def setup(self) -> None:
        if self.options.output_adapters:
            self.bank = self.inject_embedding_experts()
        self.freeze_backbone()

    def _seed(self, index: int) -> int:
        return self.config.train.seed * 1000 + index

    def _new_prompt(self, index: int) -> nn.Parameter:
        """Embeddings of `prompt_length` random text tokens (seeded), as the official `init_new_prompt`."""
        weight = self.model.get_input_embeddings().weight
        text_tokens = min(self.lm.vocab.token_ids())  # the motion tokens follow the text vocabulary
        rows = torch.randint(0, text_tokens, (self.options.prompt_length,), generator=seeded_generator(self._seed(index)))
        data = weight.detach()[rows.to(weight.device)].float().clone()
        return nn.Parameter(data, requires_grad=False)

    def begin_scenario(self, step: int, ctx: ScenarioContext) -> None:
        while len(self.prompts) <= step:
            self.prompts.append(self._new_prompt(len(self.prompts)))
        for index, prompt in enumerate(self.prompts):
            prompt.requires_grad_(index == step)
        self.current = step
        self.mlp = None
        if self.options.residual_mlp:
            with torch.random.fork_rng(devices=[]):  # the MLP's initialisation depends on the seed only
                torch.manual_seed(self._seed(step) + 7)
                mlp = ResidualMLP(self.prompts[step].shape[1], self.options.mlp_hidden)
            self.mlp = mlp.to(self.prompts[step].device)
        if self.bank is not None:
            while self.bank.num_experts <= step:  # fresh as PEFT (B A = 0), seeded
                self.bank.add_expert(trainable=False, generator=seeded_generator(self._seed(self.bank.num_experts) + 11))
            self.bank.set_trainable([step])

    def end_scenario(self, step: int, ctx: ScenarioContext) -> None:
        self.fold()
        for prompt in self.prompts:
            prompt.requires_grad_(False)
        if self.bank is not None:
            self.bank.set_trainable([])

    @torch.no_grad()
    def fold(self) -> None:
        """Replace the current prompt θ by ResMLP(θ) and drop the MLP (no-op without one)."""
        if self.mlp is not None:
            was_training = self.mlp.training
            self.mlp.eval()
            folded = self.mlp(self.prompts[self.current])
            self.mlp.train(was_training)
            self.prompts[self.current].copy_(folded)
            self.mlp = None

    def prompt_parameters(self) -> list[nn.Parameter]:
        """What trains at progprompt.prompt_lr: the current soft prompt θ_t and its residual MLP."""
        params = [self.prompts[self.current]]
        if self.mlp is not None:
            params += list(self.mlp.parameters())
        return params

    def trainable_parameters(self) -> list[nn.Parameter]:
        experts = self.bank.expert_parameters(self.current) if self.bank is not None else []
        return self.prompt_parameters() + experts + list(self.motion_embedding_params)

    def parameter_groups(self, lr: float) -> list[dict[str, Any]]:
        """The prompt and its MLP at progprompt.prompt_lr; the experts (and trained motion rows) at `lr`."""
        prompt = self.prompt_parameters()
        rest = [p for p in self.trainable_parameters() if all(p is not q for q in prompt)]
        return [{"params": prompt, "lr": float(self.options.prompt_lr)}] + ([{"params": rest}] if rest else [])

    def all_experts(self, device: torch.device):
        """A context in which every expert acts with weight 1 (nothing without output adapters)."""
        if self.bank is None or not self.bank.num_experts:
            return contextlib.nullcontext()
        return self.bank.routing(torch.ones(self.bank.num_experts, device=device))

    # -- the inputs -------------------------------------------------------------------------------------
    def prompt_stack(self) -> Tensor:
        """[P_T ; … ; P_1] (T·n, d): the newest prompt first (through the MLP while it is being trained)."""
        parts = []
        for index in reversed(range(len(self.prompts))):
            prompt = self.prompts[index]
            if index == self.current and self.mlp is not None:
                prompt = self.mlp(prompt)
            parts.append(prompt)
        return torch.cat(parts) if parts else torch.zeros(0, self.model.get_input_embeddings().weight.shape[1])

    def build_inputs(self, input_ids: Tensor, attention_mask: Tensor, labels: Tensor | None = None) \
            -> tuple[Tensor, Tensor, Tensor | None]:
        """(B, L) ids / mask / labels -> embeddings (B, N + L, d), mask (B, N + L), labels (B, N + L)
        with the N soft-prompt positions in front (labels −100 there)."""
        embeds = self.model.get_input_embeddings()(input_ids)  # (B, L, d)
        prompt = self.prompt_stack().to(device=embeds.device, dtype=embeds.dtype)  # (N, d)
        batch, count = input_ids.shape[0], prompt.shape[0]
        embeds = torch.cat([prompt.unsqueeze(0).expand(batch, -1, -1), embeds], dim=1)
        mask = torch.cat([torch.ones(batch, count, dtype=attention_mask.dtype, device=attention_mask.device),
                          attention_mask], dim=1)
        if labels is not None:
            labels = torch.cat([torch.full((batch, count), IGNORE_INDEX, dtype=labels.dtype, device=labels.device),
                                labels], dim=1)
        return embeds, mask, labels

    # -- training ---------------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        with self.all_experts(batch["input_ids"].device):
            embeds, mask, labels = self.build_inputs(batch["input_ids"], batch["attention_mask"], batch["labels"])
            out = self.model(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids(mask), labels=labels)
        return {"loss": out.loss, "lm_loss": out.loss.detach()}

    def logits(self, batch: dict[str, Tensor]) -> Tensor:
        """(B, L, V) logits of the batch's own positions (the soft-prompt positions dropped)."""
        with self.all_experts(batch["input_ids"].device):
            embeds, mask, _ = self.build_inputs(batch["input_ids"], batch["attention_mask"])
            out = self.model(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids(mask))
        return out.logits[:, embeds.shape[1] - batch["input_ids"].shape[1]:]

    # -- generation -------------------------------------------------------------------------------------
    @torch.no_grad()
    def extra_positions(self, num_scenarios: int) -> int:
        return self.options.prompt_length * num_scenarios  # every learned prompt, newest first

    def prepare_generation(self, input_ids: Tensor, attention_mask: Tensor) -> GenerationInputs | None:
        if not len(self.prompts):
            return None
        if self.bank is not None and self.bank.num_experts:  # every expert, weight 1, for the whole generation
            self.bank.set_routing(torch.ones(self.bank.num_experts, device=input_ids.device))
        embeds, mask, _ = self.build_inputs(input_ids, attention_mask)
        return GenerationInputs(embeds=embeds, attention_mask=mask)

    # -- state ------------------------------------------------------------------------------------------
    def structure(self) -> dict[str, Any]:
        structure = {"prompts": len(self.prompts), "current": self.current, "mlp": self.mlp is not None}
        if self.bank is not None:
            structure["experts"] = self.bank.num_experts
        return structure

    def restore_structure(self, structure: dict[str, Any]) -> None:
        count = int(structure.get("prompts", 0))
        if count < len(self.prompts):
            raise CheckpointError(f"checkpoint has {count} prompts but the method already has {len(self.prompts)}")
        while len(self.prompts) < count:
            self.prompts.append(self._new_prompt(len(self.prompts)))
        for prompt in self.prompts:
            prompt.requires_grad_(False)
        if self.bank is not None:
            self.restore_experts({"num_experts": int(structure.get("experts", 0))})
        self.current = int(structure.get("current", max(count - 1, 0)))
        self.mlp = None
        if structure.get("mlp"):  # saved in the middle of a scenario (before the fold)
            self.mlp = ResidualMLP(self.prompts[self.current].shape[1], self.options.mlp_hidden).to(
                self.prompts[self.current].device)
