"""EPI (Wang et al., ACL 2023, "Rehearsal-free Continual Language Learning via Efficient Parameter
Isolation"; official code Dicer-Zz/EPI) behind the `ContinualMethod` interface.

    scenario t (training):  prefix_t (P, layers · 2 · kv_heads · head_dim)  ──view──> per layer (key, value),
        each (B, kv_heads, P, head_dim), pre-filled into a `DynamicCache`; attention mask = [1]*P ⊕ mask,
        positions start at P; the backbone is frozen, only prefix_t trains (and expert_t
        with output adapters, below; no other module).
    end of scenario t:  frozen features f(x) = mean over the non-padding prompt tokens of the FROZEN
        backbone's hidden states (`epi.feature_layer`; default −1, the last hidden state after the final
        norm — the official `last_hidden_state`), run WITHOUT any prefix, on the scenario's training
        prompts; stored: per emotion label c the mean μ_{t,c} and the scenario covariance Σ_t = mean over
        its emotions of their within-emotion covariances; Σ = (Σ_1 + … + Σ_t) / t is shared.
    generation / routing:  scenario(x) = argmin_s  min_c (f(x) − μ_{s,c})ᵀ pinv(Σ) (f(x) − μ_{s,c})
        (squared Mahalanobis, as the official `mahalanobis(norm=2)`), then the prompt decodes with
        prefix_{scenario(x)} (per sample, through `GenerationInputs.prefix`).

Output adapters (`epi.output_adapters`, off by default = the official method; on in the default
profile): scenario t also gets LoRA expert t on those `lora.target_modules` that are `embed_tokens` /
`lm_head` (their `rank_pattern` / `alpha_pattern`: the budget every other method has there), in one
`ExpertBank`. Expert t trains with prefix t at step t (older experts frozen, bit-identical), starts as
PEFT's (B A = 0; a fresh prefix is random, so there is no previous pair to copy), and is used one-hot:
in training every sample uses the current scenario's expert, at generation the expert of the scenario
EPI's route picks for that sample — the same index that selects its prefix. The routing features stay
the frozen backbone's (every expert is off while they are computed).

Kept state (`adapter_state`): the prefixes, the emotion means (≤ 7 per scenario) with their emotion
ids, the covariance sum and its count — no feature or prompt of any training sample — and, with output
adapters, the experts.
`evaluation_extras` reports the routing accuracy (the share of a scenario's test prompts routed to
that scenario's prefix) for every scenario learned so far.

Settings taken from the official code (`utils/assets.py` defaults, `scripts/5ds.sh`): prompt_mode
"prefix" (deep prompt), pre_seq_len 16, prefix initialised `torch.randn` (std 1) and trained directly
(no reparameterisation), frozen backbone, rep_mode "avg" (mean pooling over the attention mask of
the backbone's last hidden state), query_mode "mahalanobis" with the per-class means, the task
covariance = mean of its per-class covariances, the shared covariance = their running sum / tasks
and `pinv(…, hermitian=True)`, the task known while training (the newest prefix is used).

Deviations, with the reason:
* Generation instead of classification: no per-task classifier head (the frozen LM head writes the
  motion tokens); the statistics are grouped by emotion label (the official groups by class label,
  our scenarios have no classes). Prompts without an emotion label form one group.
* The official adds the backbone's hidden dropout (BERT: 0.1) to the prefix in training; LLaMA has
  no hidden dropout (attention_dropout 0), so `epi.dropout` defaults to 0.
* Positions: BERT's absolute positions ignore the prefix; in a LLaMA the prompt after a P-long prefix
  takes positions P, P + 1, … (what Hugging Face / PEFT prefix tuning does), in training and
  generation alike.
* The covariance sum is kept in float32 as the official's; its pseudo-inverse runs in float64 with
  the relative cut-off the official float32 `pinv` has (float32 eps · d), so nearly-null directions
  of a rank-deficient covariance are ignored the same way, without float32 rounding in the inverse. An emotion with a single training prompt
  has no covariance (the official one would be NaN): it keeps its mean but is left out of Σ_t.
* No per-epoch validation / best-epoch selection and the optimiser, learning rate and epochs are
  the trainer's, shared by every method (the official tunes lr ∈ {0.005 … 0.05} and keeps the best
  epoch on a validation split).
* Classifier-free guidance (off by default): the unconditional half of a batch is routed on its
  own (caption-less) prompt.
* With `lm.train_motion_embeddings` the `<som>` row of the prompt trains too, so the "frozen"
  features of later prompts drift slightly (off by default).
* Output adapters (above; default profile only): a prefix cannot reach the input embeddings or
  `lm_head`, and a 4 M-parameter backbone's frozen embeddings do not carry the new motion-token rows
  the task needs (docs/experiments/conditioning.md): with prefixes only, EPI generates at chance on
  that profile while every LoRA method reaches the embeddings. Pairing one expert with each prefix
  keeps EPI's parameter isolation and routing; the paper profile (LLaMA-2-7B, attention-only LoRA)
  keeps the official prefixes-only method.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from l2emg.config import Config, EPIConfig
from l2emg.continual.examples import UNLABELLED
from l2emg.continual.methods.base import ContinualMethod, ScenarioContext
from l2emg.errors import CheckpointError, ConfigError
from l2emg.lm.generate import GenerationInputs, cache_kwarg, new_cache
from l2emg.lm.motion_lm import MotionLM
from l2emg.lm.prompts import encode_prompts, position_ids
from l2emg.utils.seeding import seeded_generator

if TYPE_CHECKING:
    from l2emg.continual.lora import ExpertBank

__all__ = ["EPI", "squared_mahalanobis", "pinv_shared"]


def pinv_shared(covariance: Tensor) -> Tensor:
    """pinv of a symmetric (d, d) covariance in float64, with the cut-off of a float32 `pinv`
    (eigenvalues below float32 eps · d · the largest one count as zero), as the official code."""
    d = covariance.shape[-1]
    rtol = torch.finfo(torch.float32).eps * d
    return torch.linalg.pinv(covariance.double(), rtol=rtol, hermitian=True)


def squared_mahalanobis(features: Tensor, means: Tensor, precision: Tensor) -> Tensor:
    """(B, d) features, (M, d) means, (d, d) precision -> (B, M) squared Mahalanobis distances (float64)."""
    diff = features.double()[:, None, :] - means.double()[None, :, :]  # (B, M, d)
    return ((diff @ precision.double()) * diff).sum(-1)


class _ScenarioStats(nn.Module):
    """One scenario's statistics: emotion means (K, d) and their emotion ids (K,)."""

    def __init__(self, means: Tensor, emotions: Tensor):
        super().__init__()
        self.register_buffer("means", means.float())
        self.register_buffer("emotions", emotions.long())


class EPI(ContinualMethod):
    name = "epi"
    label = "EPI"
    paper_row = "epi"
    options = EPIConfig

    def __init__(self, config: Config, lm: MotionLM):
        super().__init__(config, lm)
        text = self.model.config.get_text_config() if hasattr(self.model.config, "get_text_config") \
            else self.model.config
        self.layers = int(text.num_hidden_layers)
        heads = int(text.num_attention_heads)
        self.kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
        self.head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // heads)
        self.hidden = int(self.model.get_input_embeddings().weight.shape[1])
        self.prefixes = nn.ParameterList()  # one (P, layers · 2 · kv_heads · head_dim) per scenario
        self.stats = nn.ModuleList()  # one _ScenarioStats per finished scenario
        self.register_buffer("covariance_sum", torch.zeros(self.hidden, self.hidden))
        self.register_buffer("covariance_count", torch.zeros((), dtype=torch.long))
        self.current = 0
        self._precision: Tensor | None = None  # cached pinv of the shared covariance
        self.last_routing: Tensor | None = None  # scenario index per sample of the last generation batch
        self.bank: ExpertBank | None = None  # with epi.output_adapters: expert i on the embeddings, paired with prefix i

    # -- set-up / lifecycle -----------------------------------------------------------------------------
    def setup(self) -> None:
        if self.options.output_adapters:
            self.bank = self.inject_embedding_experts()
        self.freeze_backbone()
        layer = int(self.options.feature_layer)
        if not -(self.layers + 1) <= layer <= self.layers:
            raise ConfigError(f"epi.feature_layer {layer}: the backbone has hidden states 0 … {self.layers} "
                              f"(or -1 … -{self.layers + 1})")

    @property
    def prefix_width(self) -> int:
        return self.layers * 2 * self.kv_heads * self.head_dim

    def _new_prefix(self, index: int) -> nn.Parameter:
        generator = seeded_generator(self.config.train.seed * 1000 + index)
        data = torch.randn(self.options.prefix_length, self.prefix_width, generator=generator) * self.options.init_std
        device = self.model.get_input_embeddings().weight.device
        return nn.Parameter(data.to(device), requires_grad=False)

    def begin_scenario(self, step: int, ctx: ScenarioContext) -> None:
        while len(self.prefixes) <= step:
            self.prefixes.append(self._new_prefix(len(self.prefixes)))
        for index, prefix in enumerate(self.prefixes):
            prefix.requires_grad_(index == step)
        if self.bank is not None:
            while self.bank.num_experts <= step:  # fresh as PEFT (B A = 0), seeded
                self.bank.add_expert(trainable=False, generator=seeded_generator(
                    self.config.train.seed * 1000 + 500 + self.bank.num_experts))
            self.bank.set_trainable([step])
        self.current = step

    def end_scenario(self, step: int, ctx: ScenarioContext) -> None:
        for prefix in self.prefixes:
            prefix.requires_grad_(False)
        if self.bank is not None:
            self.bank.set_trainable([])
        if len(self.stats) == step:  # (not twice for the same step)
            means, emotions, covariance = self.scenario_statistics(ctx.examples if ctx is not None else [])
            self.stats.append(_ScenarioStats(means, emotions).to(self.covariance_sum.device))
            if covariance is not None:
                self.covariance_sum += covariance.to(self.covariance_sum)
                self.covariance_count += 1
            self._precision = None

    def trainable_parameters(self) -> list[nn.Parameter]:
        experts = self.bank.expert_parameters(self.current) if self.bank is not None else []
        return [self.prefixes[self.current]] + experts + list(self.motion_embedding_params)

    # -- the output adapters (epi.output_adapters) ------------------------------------------------------
    def expert_weights(self, indices: Tensor, device: torch.device) -> Tensor:
        """Scenario index per sample (B,) -> the one-hot expert weights: (E,) when every sample uses the
        same expert, else (B, E)."""
        weights = F.one_hot(indices.to(device), self.bank.num_experts).float()
        return weights[0] if bool((indices == indices[0]).all()) else weights

    def experts_of(self, indices: Tensor, device: torch.device):
        """A context in which sample b uses expert indices[b] only (nothing without output adapters)."""
        if self.bank is None or not self.bank.num_experts:
            return contextlib.nullcontext()
        return self.bank.routing(self.expert_weights(indices, device))

    @contextlib.contextmanager
    def experts_off(self):
        """A context in which no expert acts (the frozen backbone), restoring the routing set before."""
        if self.bank is None or not self.bank.num_experts:
            yield
            return
        before = self.bank.routing_state.weights
        self.bank.set_routing(torch.zeros(self.bank.num_experts, device=self.model.get_input_embeddings().weight.device))
        try:
            yield
        finally:
            self.bank.set_routing(before)

    # -- the prefix -------------------------------------------------------------------------------------
    def prefix_key_values(self, indices: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Scenario index per sample (B,) -> per layer (key, value), each (B, kv_heads, P, head_dim),
        in the backbone's dtype (the official `.view(bs, psl, 2·layers, heads, head_dim)` layout)."""
        chosen = indices.tolist()
        if len(set(chosen)) == 1:
            stacked = self.prefixes[chosen[0]].unsqueeze(0).expand(len(chosen), -1, -1)
        else:
            stacked = torch.stack([self.prefixes[i] for i in chosen])
        dtype = self.model.get_input_embeddings().weight.dtype
        x = stacked.to(dtype)
        if self.training and self.options.dropout > 0:
            x = F.dropout(x, self.options.dropout, training=True)
        batch, length = x.shape[:2]
        x = x.reshape(batch, length, self.layers * 2, self.kv_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return [(x[2 * i].contiguous(), x[2 * i + 1].contiguous()) for i in range(self.layers)]

    def _prefixed_forward(self, input_ids: Tensor, attention_mask: Tensor, indices: Tensor,
                          labels: Tensor | None = None):
        prefix = self.prefix_key_values(indices)
        length = self.options.prefix_length
        mask = torch.cat([torch.ones(input_ids.shape[0], length, dtype=attention_mask.dtype,
                                     device=attention_mask.device), attention_mask], dim=1)
        with self.experts_of(indices, input_ids.device):
            return self.model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids(mask)[:, length:],
                              labels=labels, **cache_kwarg(self.model, new_cache(self.model, prefix)), use_cache=True)

    # -- training ---------------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The current scenario's prefix (and expert) for every sample (the task is known while training)."""
        ids = batch["input_ids"]
        indices = torch.full((ids.shape[0],), self.current, dtype=torch.long)
        out = self._prefixed_forward(ids, batch["attention_mask"], indices, labels=batch["labels"])
        return {"loss": out.loss, "lm_loss": out.loss.detach()}

    def logits(self, batch: dict[str, Tensor], scenario: int | None = None) -> Tensor:
        """(B, L, V) logits of a batch with the prefix (and expert) of `scenario` (default: the current one)."""
        ids = batch["input_ids"]
        indices = torch.full((ids.shape[0],), self.current if scenario is None else scenario, dtype=torch.long)
        return self._prefixed_forward(ids, batch["attention_mask"], indices).logits

    # -- frozen features and statistics -----------------------------------------------------------------
    @torch.no_grad()
    def prompt_features(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Prompts (B, L) with their mask (left- or right-padded) -> (B, d) float32: the frozen backbone's
        hidden states at `epi.feature_layer`, without any prefix or expert, mean-pooled over the real tokens."""
        was_training = self.model.training
        self.model.eval()
        try:
            with self.experts_off():
                out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                                 position_ids=position_ids(attention_mask), output_hidden_states=True,
                                 use_cache=False, logits_to_keep=1)
        finally:
            self.model.train(was_training)
        hidden = out.hidden_states[self.options.feature_layer].float()  # (B, L, d)
        weight = attention_mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weight).sum(1) / weight.sum(1).clamp(min=1.0)

    @torch.no_grad()
    def example_features(self, examples: list[dict[str, Any]], batch_size: int = 64) -> Tensor:
        """The prompts of training examples (their first prompt_length tokens) -> (N, d) features."""
        device = self.model.get_input_embeddings().weight.device
        parts = []
        for start in range(0, len(examples), batch_size):
            chunk = examples[start:start + batch_size]
            length = max(int(e["prompt_length"]) for e in chunk)
            ids = torch.zeros(len(chunk), length, dtype=torch.long)
            mask = torch.zeros(len(chunk), length, dtype=torch.long)
            for row, e in enumerate(chunk):
                n = int(e["prompt_length"])
                ids[row, :n] = torch.as_tensor(e["input_ids"][:n])
                mask[row, :n] = 1
            parts.append(self.prompt_features(ids.to(device), mask.to(device)).cpu())
        return torch.cat(parts) if parts else torch.zeros(0, self.hidden)

    @torch.no_grad()
    def scenario_statistics(self, examples: list[dict[str, Any]]) -> tuple[Tensor, Tensor, Tensor | None]:
        """Training examples of one scenario -> emotion means (K, d), emotion ids (K,), and the scenario
        covariance (d, d) = the mean of the within-emotion covariances (None without any)."""
        features = self.example_features(examples).double()  # (N, d): used here, never stored
        if not len(features):
            return torch.zeros(0, self.hidden), torch.zeros(0, dtype=torch.long), None
        labels = torch.tensor([int(e.get("emotion", UNLABELLED)) for e in examples])
        emotions = torch.unique(labels)  # sorted
        means, covariances = [], []
        for emotion in emotions.tolist():
            rows = features[labels == emotion]
            means.append(rows.mean(0))
            if len(rows) >= 2:
                covariances.append(torch.cov(rows.T))
        if covariances:
            covariance = torch.stack(covariances).mean(0)
        elif len(features) >= 2:
            covariance = torch.cov(features.T)
        else:
            covariance = None
        return torch.stack(means).float(), emotions, covariance.float() if covariance is not None else None

    def shared_covariance(self) -> Tensor:
        """The average of the stored scenario covariances (d, d)."""
        return self.covariance_sum / self.covariance_count.clamp(min=1)

    def precision(self) -> Tensor:
        """pinv of the shared covariance (float64), cached until the statistics change."""
        if self._precision is None or self._precision.device != self.covariance_sum.device:
            self._precision = pinv_shared(self.shared_covariance())
        return self._precision

    # -- routing ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def scenario_scores(self, features: Tensor) -> Tensor:
        """(B, d) features -> (B, S) per scenario the squared Mahalanobis distance to its nearest emotion
        mean (inf for a scenario without statistics)."""
        precision = self.precision().to(features.device)
        scores = torch.full((features.shape[0], len(self.stats)), float("inf"), dtype=torch.float64,
                            device=features.device)
        for s, stats in enumerate(self.stats):
            if len(stats.means):
                scores[:, s] = squared_mahalanobis(features, stats.means.to(features.device), precision).min(1).values
        return scores

    @torch.no_grad()
    def route(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Prompts -> (B,) scenario index; before any statistics exist, the current scenario."""
        if not len(self.stats):
            return torch.full((input_ids.shape[0],), self.current, dtype=torch.long, device=input_ids.device)
        return self.scenario_scores(self.prompt_features(input_ids, attention_mask)).argmin(1)

    # -- generation -------------------------------------------------------------------------------------
    @torch.no_grad()
    def prepare_generation(self, input_ids: Tensor, attention_mask: Tensor) -> GenerationInputs | None:
        if not len(self.prefixes):
            return None
        indices = self.route(input_ids, attention_mask)
        self.last_routing = indices.cpu()
        if self.bank is not None and self.bank.num_experts:  # the routed scenario's expert, for the whole generation
            self.bank.set_routing(self.expert_weights(indices, input_ids.device))
        return GenerationInputs(prefix=self.prefix_key_values(indices))

    @torch.no_grad()
    def explain(self, input_ids: Tensor, attention_mask: Tensor) -> list[dict[str, Any]]:
        """Per left-padded prompt: "route" — the scenario whose prefix generation uses (as `route`),
        and "route_distances" — the squared Mahalanobis distance of the prompt to each learned
        scenario's nearest emotion mean (the route is their argmin; None for a scenario without
        statistics, [] before any)."""
        if not len(self.stats):
            return [{"route": self.current, "route_distances": []} for _ in range(input_ids.shape[0])]
        scores = self.scenario_scores(self.prompt_features(input_ids, attention_mask)).cpu()  # (B, S)
        return [{"route": int(row.argmin()),
                 "route_distances": [float(d) if torch.isfinite(d) else None for d in row]} for row in scores]

    @torch.no_grad()
    def extra_positions(self, num_scenarios: int) -> int:
        return self.options.prefix_length  # one scenario's prefix at a time

    def evaluation_extras(self, captions: list[str], scenario_index: int) -> dict[str, float]:
        """{"routing_accuracy": share of the captions routed to scenario `scenario_index`}, for a scenario
        learned so far (nothing for a later one: it has no prefix yet)."""
        if not captions or scenario_index >= len(self.stats):
            return {}
        device = self.model.get_input_embeddings().weight.device
        hits = 0
        batch = int(self.config.train.eval_batch_size)
        for start in range(0, len(captions), batch):
            prompts = encode_prompts(self.lm.tokenizer, self.lm.vocab, captions[start:start + batch])
            routed = self.route(prompts["input_ids"].to(device), prompts["attention_mask"].to(device))
            hits += int((routed == scenario_index).sum())
        return {"routing_accuracy": hits / len(captions)}

    # -- state ------------------------------------------------------------------------------------------
    def structure(self) -> dict[str, Any]:
        structure = {"prefixes": len(self.prefixes), "current": self.current,
                     "emotions": [s.emotions.tolist() for s in self.stats]}
        if self.bank is not None:
            structure["experts"] = self.bank.num_experts
        return structure

    def restore_structure(self, structure: dict[str, Any]) -> None:
        count = int(structure.get("prefixes", 0))
        emotions = [list(e) for e in structure.get("emotions", [])]
        if count < len(self.prefixes) or len(emotions) < len(self.stats):
            raise CheckpointError(f"checkpoint has {count} prefixes and {len(emotions)} statistics, but the "
                                  f"method already has {len(self.prefixes)} and {len(self.stats)}")
        while len(self.prefixes) < count:
            self.prefixes.append(self._new_prefix(len(self.prefixes)))
        for prefix in self.prefixes:
            prefix.requires_grad_(False)
        if self.bank is not None:
            self.restore_experts({"num_experts": int(structure.get("experts", 0))})
        device = self.covariance_sum.device
        for ids in emotions[len(self.stats):]:
            self.stats.append(_ScenarioStats(torch.zeros(len(ids), self.hidden, device=device),
                                             torch.tensor(ids, dtype=torch.long, device=device)))
        self.current = int(structure.get("current", max(count - 1, 0)))
        self._precision = None

    def load_adapter_state(self, state: dict[str, Tensor], source: str = "adapter state") -> None:
        super().load_adapter_state(state, source)
        self._precision = None
