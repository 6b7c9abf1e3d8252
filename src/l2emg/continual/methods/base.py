"""The interface every continual-learning method implements.

A method is a small `nn.Module` with a lifecycle; the trainer (`l2emg.continual.trainer`) owns the
loop, the data, checkpoints and evaluation:

    method.setup()                       once, before the stream: inject adapters into the backbone
    for step i, scenario D_i:
        method.begin_scenario(i, ctx)    add / unfreeze what step i trains
        loss = method(batch)["loss"]     every training batch (also through DDP/Accelerate)
        method.end_scenario(i, ctx)      freeze, consolidate
        method.prepare_generation(...)   before generating for evaluation (routing, input embeddings)
        method.evaluation_extras(...)    optional measurements per test set (e.g. EPI's routing accuracy)
    method.explain(ids, mask)            what it decides per prompt, for people (a gate, a route)

`adapter_state()` / `load_adapter_state()` save and restore everything the method trained (safetensors
tensors), `structure()` / `restore_structure()` the JSON needed to rebuild the modules before loading
(e.g. how many experts exist).

A method's identity is declared on its class and nowhere else: `name` (what `--method` takes), `label`
(tables and reports), `paper_row` (the row of the paper's Table 2 it reproduces) and `options` (its
Config section's model). The registry (`l2emg.continual.methods`, `register_method`) derives the
labels, the paper table by method and the Config sections from them; see its docstring for the steps
of adding a method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from l2emg.config import Config, MethodOptions
from l2emg.errors import ConfigError
from l2emg.lm.generate import GenerationInputs
from l2emg.lm.motion_lm import MotionLM

if TYPE_CHECKING:
    from l2emg.continual.lora import ExpertBank

# The layer names (last component) of the input and output embeddings of a LLaMA-style causal LM.
EMBEDDING_TARGETS = ("embed_tokens", "lm_head")


@dataclass
class ScenarioContext:
    """What a method may know about the scenario being learned: its index, name and the training
    examples of D_i only (each a dict with input_ids, labels, prompt_length, emotion label)."""

    step: int
    name: str
    examples: list[dict[str, Any]] = field(default_factory=list)


class ContinualMethod(nn.Module):
    # -- identity: each registered class declares name, label and paper_row itself (not inherited) ---
    name: str = "base"  # the registry name: `l2emg train --method NAME`, run folders, checkpoints
    label: str = ""  # the name tables and reports print ("ES-MoE")
    # The row of the paper's Table 2 this method reproduces: a row key of `l2emg.eval.paper_table2`;
    # None: the paper has no row for it.
    paper_row: str | None = None
    # Its options model: the Config section it reads (`MethodOptions.section`), or None. On an instance,
    # `self.options` is that section's values in the method's config.
    options: type[MethodOptions] | None = None
    # Non-continual upper bound: trained once on the union of every scenario's training data.
    joint_training: bool = False

    def __init__(self, config: Config, lm: MotionLM):
        super().__init__()
        self.config = config
        model = type(self).options
        if model is not None and not isinstance(getattr(config, model.section, None), model):
            raise ConfigError(f"method {self.name!r} reads the config section {model.section!r}, which this "
                              f"config lacks (it was loaded before the method was registered)")
        self.options = None if model is None else getattr(config, model.section)
        self.lm = lm
        self.model = lm.model  # the HF causal LM (frozen backbone + whatever the method injects)
        # Tensors of the pretrained backbone: never part of a method's saved state (the motion
        # embedding rows are, when lm.train_motion_embeddings lets them learn).
        self._backbone_tensors = {id(t) for t in self.model.state_dict(keep_vars=True).values()}

    def freeze_backbone(self) -> list[nn.Parameter]:
        """Freeze the whole backbone; with lm.train_motion_embeddings only the motion-token rows of the
        embedding matrices learn (the text rows stay frozen). Returns those embedding parameters.
        Called by every method after its experts are injected: with lora.embedding_rows `new`, the
        experts on the input embedding update only the motion-token rows as well."""
        from l2emg.continual.lora import ExpertEmbedding
        from l2emg.lm.vocab import configure_motion_embeddings

        for layer in self.model.modules():
            if isinstance(layer, ExpertEmbedding):
                layer.limit_rows(self.lm.vocab.token_ids() if self.config.lora.embedding_rows == "new" else None)
        self.model.requires_grad_(False)
        self.motion_embedding_params = configure_motion_embeddings(
            self.model, self.lm.vocab, self.config.lm.train_motion_embeddings)
        return self.motion_embedding_params

    # -- lifecycle ---------------------------------------------------------------------------------
    def setup(self) -> None:
        """Inject adapters into the backbone; called once, before the first scenario."""

    def begin_scenario(self, step: int, ctx: ScenarioContext) -> None:
        """Prepare to learn scenario `step` (add or unfreeze parameters)."""

    def end_scenario(self, step: int, ctx: ScenarioContext) -> None:
        """Finish scenario `step` (freeze, consolidate)."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def parameter_groups(self, lr: float) -> list[dict[str, Any]]:
        """The optimiser's parameter groups for this step (called after `begin_scenario`): dicts as
        `torch.optim` takes them, each with its "params" and optionally its own peak "lr" (the
        scheduler scales every group's own lr); a group without "lr" trains at `lr` (train.lr). By
        default one group of `trainable_parameters()`; Progressive Prompts gives its prompts their lr."""
        return [{"params": self.trainable_parameters()}]

    # -- training ----------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """batch: input_ids, attention_mask, labels, prompt_mask (B, L), emotion (B,) -> {"loss", ...}."""
        out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        return {"loss": out.loss, "lm_loss": out.loss.detach()}

    # -- generation --------------------------------------------------------------------------------
    def prepare_generation(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor | GenerationInputs | None:
        """Called with the left-padded prompts before the first forward of a generation batch: set
        per-sample state (e.g. expert routing) and optionally return replacement input embeddings, or
        a `GenerationInputs` (longer embeddings with their mask, a key/value prefix)."""
        return None

    def extra_positions(self, num_scenarios: int) -> int:
        """Context positions the method adds in front of a prompt after `num_scenarios` scenarios
        (a KV prefix, soft prompts); counted when prompts and codes are checked against the context."""
        return 0

    def evaluation_extras(self, captions: list[str], scenario_index: int) -> dict[str, float]:
        """Method-specific measurements on the test captions of scenario `scenario_index` (the index
        in the stream, i.e. the step that learns it), stored next to that scenario's metrics; e.g.
        EPI's routing accuracy. Called in eval mode after the generations. None by default."""
        return {}

    def explain(self, input_ids: Tensor, attention_mask: Tensor) -> list[dict[str, Any]]:
        """What the method decides from left-padded prompts (B, L) before any code is generated, one
        dict of plain values (floats, lists, labels) per prompt, for people to read (`l2emg studio`'s
        "Why this motion"); e.g. a gate's expert weights or a routed scenario. Changes no state (no
        routing, no merge). Nothing by default: the method decides nothing per prompt."""
        return [{} for _ in range(input_ids.shape[0])]

    # -- state -------------------------------------------------------------------------------------
    def structure(self) -> dict[str, Any]:
        """JSON describing modules created during the stream (restored before loading tensors)."""
        return {}

    def restore_structure(self, structure: dict[str, Any]) -> None:
        """Recreate the modules described by `structure()` (on a freshly set-up method)."""

    def inject_embedding_experts(self) -> "ExpertBank":
        """Inject an expert bank on the input / output embeddings only: the `config.lora.target_modules`
        that are `embed_tokens` / `lm_head`, with their `rank_pattern` / `alpha_pattern` (the LoRA
        budget every other method has on those layers), for a method whose own parameters (a prefix, a
        soft prompt) do not reach the vocabulary rows. Raises ConfigError when the profile targets neither."""
        from l2emg.continual.lora import inject_experts_from_config

        targets = [t for t in self.config.lora.target_modules if t.rsplit(".", 1)[-1] in EMBEDDING_TARGETS]
        if not targets:
            raise ConfigError(f"{self.options.section}.output_adapters: lora.target_modules "
                              f"{self.config.lora.target_modules} names neither of {list(EMBEDDING_TARGETS)}")
        lora = self.config.lora
        patterns = {field: {k: v for k, v in getattr(lora, field).items() if k.rsplit(".", 1)[-1] in EMBEDDING_TARGETS}
                    for field in ("rank_pattern", "alpha_pattern")}
        lora = lora.model_copy(update={"target_modules": targets, **patterns})
        return inject_experts_from_config(self.model, lora)

    def restore_experts(self, structure: dict[str, Any], most: int | None = None) -> int:
        """For a method with an expert bank (`self.bank`): check the checkpoint is of this variant, add
        its experts (frozen) and return their count (at most `most`)."""
        from l2emg.errors import CheckpointError

        if structure.get("variant", self.name) != self.name:
            raise CheckpointError(f"checkpoint structure is for {structure.get('variant')!r}, not {self.name!r}")
        count = int(structure.get("num_experts", self.bank.num_experts))
        if count < self.bank.num_experts or (most is not None and count > most):
            raise CheckpointError(f"checkpoint has {count} experts; this {self.name} method has "
                                  f"{self.bank.num_experts}" + (f" and holds at most {most}" if most else ""))
        while self.bank.num_experts < count:
            self.bank.add_expert(trainable=False)
        self.bank.set_trainable([])
        return count

    def adapter_state(self) -> dict[str, Tensor]:
        """Every tensor the method trains or keeps (not the frozen backbone), by state-dict name."""
        state = {}
        for name, tensor in self.state_dict(keep_vars=True).items():
            if id(tensor) not in self._backbone_tensors:
                state[name] = tensor.detach().clone().contiguous()
        if self.config.lm.train_motion_embeddings:
            rows = torch.tensor(self.lm.vocab.token_ids())
            state["motion_rows.input"] = self.model.get_input_embeddings().weight.detach()[rows].clone()
            output = self.model.get_output_embeddings()
            if output is not None:
                state["motion_rows.output"] = output.weight.detach()[rows].clone()
        return state

    def load_adapter_state(self, state: dict[str, Tensor], source: str = "adapter state") -> None:
        from l2emg.errors import CheckpointError

        expected = self.adapter_state()
        missing, unexpected = set(expected) - set(state), set(state) - set(expected)
        if missing or unexpected:
            raise CheckpointError(f"{source}: tensors do not match this method ({self.name}): "
                                  f"missing {sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]}")
        for name, tensor in state.items():
            if tensor.shape != expected[name].shape:
                raise CheckpointError(f"{source}: {name} has shape {tuple(tensor.shape)}, "
                                      f"this method expects {tuple(expected[name].shape)}")
        current = self.state_dict(keep_vars=True)
        rows = torch.tensor(self.lm.vocab.token_ids())
        with torch.no_grad():
            for name, tensor in state.items():
                if name == "motion_rows.input":
                    self.model.get_input_embeddings().weight[rows] = tensor
                elif name == "motion_rows.output":
                    self.model.get_output_embeddings().weight[rows] = tensor
                else:
                    current[name].copy_(tensor)
