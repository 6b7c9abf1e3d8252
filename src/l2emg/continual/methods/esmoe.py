"""ES-MoE (the paper's method) and its three ablations, behind the `ContinualMethod` interface.

    prompt token ids ──embed (frozen table, no expert)──> X (B, P, d_model)
        CGED (`cged.EmotionDecoupler`): h = LayerNorm(X' + W(FFN1(s_x) ⊕ FFN2(s_m)) + b)   (B, P, d)
        ├─ emotion classifier(attention-pooled h) ──> L_emo (cross-entropy vs the emotion label; -100 ignored)
        ├─ gate (`gate.ExpertGate`, Eq. 4): query(g) · keys ──> weights w (B, E), per sample, where g is
        │    the standardised mean X, as SAPT (`esmoe.gate_input: embeddings`, the default), or
        │    h̄ = CGED(mean X), h of the pooled prompt (`cged`, Eq. 4: routing collapsed, measured)
        └─ emotion-highlighted input: prompt embeddings + scale · rms(E) · out_proj(h)   (live from the first
           step: `esmoe.emotion_init: live`, scale `emotion_scale_init` on a random out_proj; L_llm trains
           out_proj and the scale only, `esmoe.llm_trains_cged: false`); with `esmoe.cged_input: prefix`
           instead `prefix_tokens` embeddings in front of the prompt, projected from the attention-pooled h
           (+ the routed experts' update of the input embeddings, when `embed_tokens` is a LoRA target)
    LLM(inputs_embeds, experts routed by w through the fused `ExpertBank`) ──> L_llm
    L = L_llm + λ · L_emo + μ · L_route + ρ · L_reflect      (λ = esmoe.emotion_weight, μ = route_weight, ρ = reflection_weight)

L_route (ours, off in the `paper` profile): cross-entropy of the gate's logits toward expert i for the
step-i samples (all from scenario i), so the fresh expert i takes the weight of its own scenario.
Alone it teaches the gate to send every prompt to the newest expert; L_reflect (attentive reflection,
after SAPT; ours, off in `paper`) balances it: at the end of step i, K-means centroids of scenario i's
pooled prompt embeddings and its average gate are stored (no raw samples), and later steps pull the
gate on those points back to the stored gate (KL, zeros on newer experts). The points are stored
BEFORE CGED (pooled frozen embeddings never drift) and replayed through the CURRENT CGED and query
network, so the loss also trains against the drift of h that L_emo and L_llm cause in later steps.

Scenario step i (Algorithm 1): `begin_scenario` appends K-means centroids of the CURRENT scenario's
prompt embeddings to CGED's global dictionary (fixed; with `esmoe.dictionary: learnable` a part that
trains in this scenario only and is frozen afterwards), adds LoRA expert i (a no-op, as the paper, or with
`esmoe.expert_init: previous` a copy of expert i − 1: a warm start that moves no old parameter — the
embedded profile uses it, because a fresh expert learns too little in a scenario's 45–171 updates) and
key i; only expert i, key i, the gate's query network, CGED (with its current dictionary part), the
emotion classifier and the scale train. Older experts, keys and dictionary parts are frozen
(`requires_grad=False`: bit-identical by construction). Old experts are masked in training with a
probability that grows with the step (`esmoe.mask_schedule: step`, `gate.ExpertGate`).

Generation (`prepare_generation`): the gate depends only on the prompt, so the routing is fixed for a
whole request. A single prompt merges the selected experts into the base weights once
(`ExpertBank.merge`) and then decodes at plain-backbone speed; a batch routes each sample to its own
top-k experts (the bank computes only those per sample, in training too: the current expert plus one
old one). Any later training forward or `prepare_generation` unmerges first.

Ablations (Table 2): `esmoe_wo_cged` — no CGED: the gate reads the standardised mean-pooled plain
prompt embeddings, no L_emo, nothing added to the input; `esmoe_wo_samoe` — one LoRA trained
sequentially (as SeqLoRA) with CGED and L_emo kept; `esmoe_wo_lemo` — λ = 0 (no classifier).

The CGED of before 2026-12-07 (`emotion_init: scale`, `mask_schedule: constant`,
`llm_trains_cged: true`) stays selectable; docs/experiments/cged-paper.md measures each choice.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from l2emg.config import Config, ESMoEConfig
from l2emg.continual.lora import ExpertEmbedding, inject_experts_from_config
from l2emg.continual.methods.base import ContinualMethod, ScenarioContext
from l2emg.continual.methods.cged import EmotionClassifier, EmotionDecoupler, kmeans_centroids, masked_mean
from l2emg.continual.methods.gate import ExpertGate
from l2emg.labels import EMOTIONS
from l2emg.lm.generate import GenerationInputs
from l2emg.lm.motion_lm import MotionLM
from l2emg.utils.seeding import seeded_generator

__all__ = ["ESMoE", "ESMoEWithoutCGED", "ESMoEWithoutSAMoE", "ESMoEWithoutLemo"]

UNLABELLED = -100


class ESMoE(ContinualMethod):
    name = "esmoe"
    label = "ES-MoE"
    paper_row = "esmoe"
    options = ESMoEConfig
    use_cged: bool = True
    use_samoe: bool = True
    use_emotion_loss: bool = True

    def __init__(self, config: Config, lm: MotionLM):
        super().__init__(config, lm)
        self.emotion_weight = float(self.options.emotion_weight) if self.use_cged and self.use_emotion_loss else 0.0
        self.current = 0  # the expert being trained (the scenario step)
        self._prefix: Tensor | None = None  # CGED's prefix of the last `_front` (cged_input: prefix)

    # -- set-up -------------------------------------------------------------------------------------
    def setup(self) -> None:
        opts, seed = self.options, int(self.config.train.seed)
        self.bank = inject_experts_from_config(self.model, self.config.lora)
        self.freeze_backbone()
        d_model = self.model.get_input_embeddings().weight.shape[1]
        with torch.random.fork_rng(devices=[]):  # the block's initialisation depends on the seed only
            torch.manual_seed(seed + 17)
            gate_input = d_model
            if self.use_cged:
                self.cged = EmotionDecoupler(d_model, opts.d_cged, opts.heads, opts.ffn_mult, fusion=opts.fusion,
                                             learnable_dictionary=opts.dictionary == "learnable",
                                             sharpness=opts.attention_sharpness)
                # h enters the LLM as scale · rms(E) · out_proj(h): live from the first step (a small scale on
                # a random projection, so L_llm's gradient reaches the projection, the fusion, both attentions
                # and the dictionary at once), or a no-op at the start (the two older initialisations)
                projection = opts.emotion_init == "projection"
                if projection:
                    nn.init.zeros_(self.cged.out_proj.weight)
                    nn.init.zeros_(self.cged.out_proj.bias)
                initial = {"live": opts.emotion_scale_init, "projection": 1.0, "scale": 0.0}[opts.emotion_init]
                if opts.cged_input == "prefix":
                    # h reaches the LLM as `prefix_tokens` embeddings of their own in front of the prompt,
                    # projected from the attention-pooled h; live, they start at an embedding's size
                    self.prefix_proj = nn.Linear(self.cged.width, opts.prefix_tokens * d_model)
                    if projection:
                        nn.init.zeros_(self.prefix_proj.weight)
                        nn.init.zeros_(self.prefix_proj.bias)
                    initial = 1.0 if opts.emotion_init == "live" else initial
                self.emotion_scale = nn.Parameter(torch.tensor(float(initial)))
                # ... in units of the backbone's embedding size (RMS of an embedding entry), so that the
                # same scale means the same relative perturbation for a tiny LLaMA and LLaMA-2-7B.
                rms = self.model.get_input_embeddings().weight.detach().float().pow(2).mean().sqrt()
                self.register_buffer("embedding_rms", rms.reshape(()).cpu().clone())
                if self.emotion_weight > 0:
                    self.classifier = EmotionClassifier(self.cged.width, len(EMOTIONS), opts.classifier_hidden,
                                                        opts.classifier_layers)
                if opts.gate_input == "cged":  # Eq. 4: the gate's query reads h
                    gate_input = self.cged.width
            if self.use_samoe:
                self.gate = ExpertGate(gate_input, opts.key_dim, opts.query_rank, opts.max_experts,
                                       opts.temperature, opts.top_k, opts.mask_prob, seed=seed,
                                       mask_schedule=opts.mask_schedule, point_dim=d_model)
        if not self.use_samoe:  # one LoRA for the whole stream (SeqLoRA)
            self.bank.add_expert(trainable=True, generator=seeded_generator(seed))

    # -- lifecycle ----------------------------------------------------------------------------------
    def begin_scenario(self, step: int, ctx: ScenarioContext) -> None:
        self.bank.unmerge()
        if self.use_cged:
            self.cged.add_to_dictionary(self.scenario_centroids(ctx, seed=self.config.train.seed * 1000 + step))
        if self.use_samoe:
            while self.bank.num_experts <= step:
                index = self.bank.add_expert(trainable=False,
                                             generator=seeded_generator(self.config.train.seed * 1000 + self.bank.num_experts))
                if index > 0 and self.options.expert_init == "previous":
                    self.bank.copy_expert(index - 1, index)  # a warm start; expert index - 1 stays frozen
            while self.gate.num_experts < self.bank.num_experts:
                self.gate.add_key()
            self.current = step
            self.bank.set_trainable([step])
            self.gate.set_trainable(step)
        else:
            self.current = 0
            self.bank.set_trainable([0])
        if self.use_cged:
            self.cged.requires_grad_(True)
            self.cged.set_dictionary_trainable(len(self.cged.dictionary_sizes) - 1)  # this scenario's part only
            # attention-pooled h feeds the emotion classifier and the prefix (the gate reads h of the pooled prompt)
            self.cged.pool_score.requires_grad_(self.emotion_weight > 0 or self.prefix_tokens > 0)

    def end_scenario(self, step: int, ctx: ScenarioContext) -> None:
        self.bank.set_trainable([])
        if self.use_cged:
            self.cged.set_dictionary_trainable(None)
        if self.use_samoe:
            self.gate.set_trainable(None)
            if ctx is not None and ctx.examples and len(self.gate.reflection_sizes) == step:
                points, targets = self.reflection_memory(ctx, seed=self.config.train.seed * 1000 + step)
                self.gate.add_reflection(points, targets)

    @torch.no_grad()
    def reflection_memory(self, ctx: ScenarioContext, seed: int) -> tuple[Tensor, Tensor]:
        """Attentive-reflection memory of the scenario just learned: K-means centroids (K, d_model) of
        its training prompts' gate sources (`_front`: pooled frozen prompt embeddings — standardised for
        the `embeddings` gate, raw for the `cged` gate, which replays them through the current CGED) and,
        per centroid, the average full-softmax gate (K, step + 1) over experts 0 … step of the prompts
        nearest to it. No raw sample is kept."""
        was_training = self.training
        self.eval()
        try:
            device = self.model.get_input_embeddings().weight.device
            pooled_parts = []
            for start in range(0, len(ctx.examples), 64):
                chunk = ctx.examples[start:start + 64]
                length = max(int(e["prompt_length"]) for e in chunk)
                ids = torch.zeros(len(chunk), length, dtype=torch.long)
                mask = torch.zeros(len(chunk), length, dtype=torch.bool)
                for row, e in enumerate(chunk):  # prompts right-padded (prompt at the front, as in training)
                    n = int(e["prompt_length"])
                    ids[row, :n] = torch.as_tensor(e["input_ids"][:n])
                    mask[row, :n] = True
                _, pooled, _ = self._front(ids.to(device), mask.to(device))
                pooled_parts.append(pooled.float().cpu())
            pooled = torch.cat(pooled_parts)  # (N, d)
            centroids = torch.from_numpy(kmeans_centroids(pooled.numpy(), self.options.reflection_points, seed,
                                                          self.options.kmeans_n_init))  # (K, d)
            count = self.current + 1  # experts that exist after this step
            gate = torch.softmax(self.gate.logits(self._gate_in(pooled.to(device)))[:, :count].float(),
                                 dim=-1).cpu()  # (N, E)
            nearest = torch.cdist(pooled, centroids).argmin(dim=1)  # (N,)
            targets = torch.zeros(len(centroids), count)
            targets.index_add_(0, nearest, gate)
            members = torch.bincount(nearest, minlength=len(centroids)).clamp(min=1).unsqueeze(1)
            targets = targets / members
            empty = torch.bincount(nearest, minlength=len(centroids)) == 0
            targets[empty] = gate.mean(0)  # (a centroid no prompt is nearest to: the scenario's average)
            return centroids, targets / targets.sum(-1, keepdim=True)
        finally:
            self.train(was_training)

    @torch.no_grad()
    def scenario_centroids(self, ctx: ScenarioContext, seed: int) -> Tensor:
        """K-means centroids (K, d_model) of the mean-pooled frozen prompt embeddings of this scenario's
        training examples — the only data the global dictionary ever sees."""
        weight = self.model.get_input_embeddings().weight  # (V, d_model)
        d_model = weight.shape[1]
        if not ctx.examples:
            return torch.zeros(0, d_model)
        features = torch.stack([
            weight[torch.as_tensor(e["input_ids"][: e["prompt_length"]], device=weight.device)].float().mean(0)
            for e in ctx.examples]).cpu()  # (N, d_model)
        centroids = kmeans_centroids(features.numpy(), self.options.dict_clusters, seed, self.options.kmeans_n_init)
        return torch.from_numpy(centroids)

    def trainable_parameters(self) -> list[nn.Parameter]:
        params = list(self.bank.expert_parameters(self.current))
        if self.use_samoe:
            params += [self.gate.keys[self.current], *self.gate.query.parameters()]
        if self.use_cged:
            params += [p for p in self.cged.parameters() if p.requires_grad] + [self.emotion_scale]
            if self.emotion_weight > 0:
                params += list(self.classifier.parameters())
        return params + list(self.motion_embedding_params)

    @property
    def prefix_tokens(self) -> int:
        """Embeddings CGED puts in front of the prompt (`esmoe.cged_input: prefix`); 0 when h is added."""
        return int(self.options.prefix_tokens) if self.use_cged and self.options.cged_input == "prefix" else 0

    def extra_positions(self, num_scenarios: int) -> int:
        return self.prefix_tokens

    def train(self, mode: bool = True) -> "ESMoE":
        if mode:
            self.bank.unmerge()
        return super().train(mode)

    # -- the shared front: X -> (input embeddings, pooled features, emotion logits) -----------------
    def _front(self, input_ids: Tensor, prompt_mask: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """input_ids (B, L), prompt_mask (B, L) bool -> embeddings (B, L, d_model) with the
        emotion-highlighted prompt, pooled features (B, d) for the gate, emotion logits (B, C) | None.
        With `cged_input: prefix` the embeddings stay plain and `self._prefix` holds what goes in front
        of them, (B, prefix_tokens, d_model) (`_with_prefix`); None otherwise.

        Only the first P = max prompt length columns are read by CGED (right-padded training batches
        keep the prompt at the front; left-padded generation prompts are all prompt)."""
        table = self.model.get_input_embeddings()
        # (B, L, d_model) from the frozen table: the experts on the embeddings (if any) are added once
        # the gate has routed the batch (`_add_embedding_experts`), and a merge never leaks in here.
        embeds = table.frozen(input_ids) if isinstance(table, ExpertEmbedding) else table(input_ids)
        length = embeds.shape[1]
        prompt_len = int(prompt_mask.sum(1).max()) if prompt_mask.shape[1] else 0
        if prompt_len < length:
            first = prompt_mask[:, :prompt_len]
            if bool(prompt_mask[:, prompt_len:].any()):  # a prompt that does not start at column 0
                prompt_len, first = length, prompt_mask
        else:
            first = prompt_mask
        x = embeds[:, :prompt_len]
        self._prefix = None
        if not self.use_cged:  # the gate reads the pooled plain embeddings, standardised (they are tiny)
            pooled = masked_mean(x.float(), first)  # (B, d_model)
            return embeds, F.layer_norm(pooled, pooled.shape[-1:]), None
        h = self.cged(x, first)  # (B, P, d)
        # The gate's source is the mean of the FROZEN prompt embeddings, which never drifts. `embeddings`:
        # the gate reads it standardised (SAPT's query input). `cged` (Eq. 4): the gate reads h of it
        # (`_gate_in`), and the reflection points are stored as such means and replayed through the
        # CURRENT CGED, so the reflection loss trains against h's drift instead of replaying stale h.
        # (Measured before: a gate reading the attention-pooled h of the tokens, with h stored in the
        # reflection memory, sent every scenario to the newest expert — the stored h went stale.)
        plain = masked_mean(x.float(), first)  # (B, d_model)
        gate_input = plain if self.options.gate_input == "cged" else F.layer_norm(plain, plain.shape[-1:])
        # what reaches the LLM: out_proj(h); L_llm trains the block behind h only with `llm_trains_cged`
        # (measured: its gradient, 4× L_emo's in the block, kept the emotion classifier at chance)
        # (without L_emo — the w/o L_emo ablation — L_llm is what trains the block, as in the paper)
        llm_trains_block = self.options.llm_trains_cged or self.emotion_weight == 0
        # attention-pooled h (B, d): read by the classifier and the prefix, pooled once
        pooled_h = self.cged.pooled(h, first) if self.emotion_weight > 0 or self.prefix_tokens else None
        if self.prefix_tokens:
            reach = pooled_h if llm_trains_block else pooled_h.detach()
            prefix = self.prefix_proj(reach).unflatten(-1, (self.prefix_tokens, -1))  # (B, n, d_model)
            self._prefix = (prefix * (self.emotion_scale * self.embedding_rms)).to(embeds.dtype)
            self._emotion_delta = self._prefix.detach().float().pow(2).mean().sqrt() / self.embedding_rms
        else:
            reach = h if llm_trains_block else h.detach()
            delta = self.cged.to_model(reach) * (self.emotion_scale * self.embedding_rms) * first.unsqueeze(-1)  # (B, P, d_model)
            if prompt_len < length:
                delta = F.pad(delta, (0, 0, 0, length - prompt_len))
            embeds = embeds + delta.to(embeds.dtype)
            self._emotion_delta = (delta.detach().float().pow(2).sum() / (first.sum() * delta.shape[-1]).clamp(min=1)
                                   ).sqrt() / self.embedding_rms  # RMS of the added part, in embedding RMS units
        logits = self.classifier(pooled_h) if self.emotion_weight > 0 else None  # (B, C)
        return embeds, gate_input, logits

    def _gate_in(self, source: Tensor) -> Tensor:
        """What the gate's query reads, from `_front`'s gate source (B, d_model): h of the pooled prompt,
        CGED's output on it as a one-token sequence (B, d) (`gate_input: cged`), else the source itself."""
        if not (self.use_cged and self.options.gate_input == "cged"):
            return source
        ones = torch.ones(source.shape[0], 1, dtype=torch.bool, device=source.device)
        return self.cged(source.unsqueeze(1), ones)[:, 0].float()

    def _with_prefix(self, embeds: Tensor, mask: Tensor, labels: Tensor | None = None) \
            -> tuple[Tensor, Tensor, Tensor | None]:
        """(B, L, d) embeddings, (B, L) mask and labels with `_front`'s prefix in front (mask ones, labels
        −100 there); unchanged without one. Training rows are right-padded, so the prefix takes positions
        0 … n − 1 as in generation, where the left pads sit between it and the prompt, masked out."""
        if self._prefix is None:
            return embeds, mask, labels
        rows, count = embeds.shape[0], self._prefix.shape[1]
        embeds = torch.cat([self._prefix.to(embeds.dtype), embeds], dim=1)
        mask = torch.cat([mask.new_ones(rows, count), mask], dim=1)
        if labels is not None:
            labels = torch.cat([labels.new_full((rows, count), UNLABELLED), labels], dim=1)
        return embeds, mask, labels

    def _add_embedding_experts(self, input_ids: Tensor, embeds: Tensor) -> Tensor:
        """embeds plus the routed experts' update of the input embeddings (as routed now), if any."""
        layer = self.bank.input_embedding
        return embeds if layer is None else layer.add_experts(input_ids, embeds)

    # -- training -----------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        self.bank.unmerge()
        embeds, pooled, emo_logits = self._front(batch["input_ids"], batch["prompt_mask"])
        logs: dict[str, Tensor] = {}
        if self.use_samoe:
            query_input = self._gate_in(pooled)
            weights = self.gate(query_input, current=self.current if self.training else None)  # (B, E)
            self.bank.set_routing(weights)
            logs["gate_current"] = weights[:, self.current].detach().mean()
            route_loss = (self.gate.routing_loss(query_input, self.current)
                          if self.options.route_weight > 0 else None)
            reflection = (self.gate.reflection_loss(self.current, encode=self._gate_in)
                          if self.training and self.options.reflection_weight > 0 else None)
        try:
            embeds = self._add_embedding_experts(batch["input_ids"], embeds)
            embeds, mask, labels = self._with_prefix(embeds, batch["attention_mask"], batch["labels"])
            out = self.model(inputs_embeds=embeds, attention_mask=mask, labels=labels)
        finally:
            if self.use_samoe:
                self.bank.clear_routing()
        loss = out.loss
        logs["lm_loss"] = out.loss.detach()
        if self.use_samoe and route_loss is not None:
            loss = loss + self.options.route_weight * route_loss
            logs["route_loss"] = route_loss.detach()
        if self.use_samoe and reflection is not None:
            loss = loss + self.options.reflection_weight * reflection
            logs["reflection_loss"] = reflection.detach()
        if emo_logits is not None:
            labels = batch["emotion"].to(emo_logits.device)
            known = labels != UNLABELLED
            if bool(known.any()):
                emo_loss = F.cross_entropy(emo_logits.float(), labels, ignore_index=UNLABELLED)
                logs["emo_acc"] = (emo_logits.argmax(-1)[known] == labels[known]).float().mean().detach()
            else:  # keep the classifier in the graph (zero gradient) for distributed training
                emo_loss = emo_logits.sum() * 0.0
            loss = loss + self.emotion_weight * emo_loss
            logs["emo_loss"] = emo_loss.detach()
        if self.use_cged:
            logs["emotion_scale"] = self.emotion_scale.detach().clone()
            logs["emotion_delta"] = self._emotion_delta
            if self.cged.learnable_dictionary and self.cged.dictionary_sizes:
                logs["dictionary_drift"] = torch.tensor(self.cged.dictionary_drift()[-1])
        return {"loss": loss, **logs}

    # -- generation ---------------------------------------------------------------------------------
    @torch.no_grad()
    def gate_weights(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Inference gate (top_k of all experts) for left-padded prompts: (B, E)."""
        _, pooled, _ = self._front(input_ids, attention_mask.bool())
        return self.gate(self._gate_in(pooled))

    @torch.no_grad()
    def explain(self, input_ids: Tensor, attention_mask: Tensor) -> list[dict[str, Any]]:
        """Per left-padded prompt: "gate" — the inference weights over the experts (top_k of all,
        renormalised, zeros elsewhere: what generation routes by), "gate_scores" — the softmax over all
        experts before top-k, and "emotion" — the emotion classifier's {label: probability} on pooled
        h (variants with a classifier). Reads the same front as `prepare_generation`; routes nothing."""
        _, pooled, logits = self._front(input_ids, attention_mask.bool())
        rows: list[dict[str, Any]] = [{} for _ in range(input_ids.shape[0])]
        if self.use_samoe:
            query_input = self._gate_in(pooled)
            weights = self.gate(query_input).float().cpu()  # (B, E)
            scores = torch.softmax(self.gate.logits(query_input).float(), dim=-1).cpu()  # (B, E)
            for row, w, s in zip(rows, weights, scores):
                row.update(gate=w.tolist(), gate_scores=s.tolist())
        if logits is not None:
            for row, p in zip(rows, torch.softmax(logits.float(), dim=-1).cpu()):
                row["emotion"] = dict(zip(EMOTIONS, p.tolist()))
        return rows

    @torch.no_grad()
    def prepare_generation(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor | GenerationInputs | None:
        """Route (or merge, for one prompt) the experts for this batch; return the prompt embeddings
        (B, L, d_model) — emotion-highlighted and with the embedding experts' update — or None when
        neither CGED nor embedding experts change them (the model then embeds the ids itself); with
        CGED's prefix, those embeddings behind it with their mask (B, n + L)."""
        embeds, pooled, _ = self._front(input_ids, attention_mask.bool())
        if self.use_samoe:
            weights = self.gate(self._gate_in(pooled))  # (B, E)
        else:
            weights = torch.ones(input_ids.shape[0], 1, device=embeds.device)
        self.bank.unmerge()
        self.bank.set_routing(weights if self.use_samoe else None)
        embeds = self._add_embedding_experts(input_ids, embeds)  # the prompt's embeddings, routed
        if input_ids.shape[0] == 1 and self.options.merge_single_prompt:
            self.bank.merge(weights[0])  # the decoding steps then run at plain-backbone cost
        if self._prefix is not None:
            embeds, mask, _ = self._with_prefix(embeds, attention_mask)
            return GenerationInputs(embeds=embeds, attention_mask=mask)
        if self.use_cged or self.bank.input_embedding is not None:
            return embeds
        return None

    # -- state --------------------------------------------------------------------------------------
    def structure(self) -> dict[str, Any]:
        return {"variant": self.name, "num_experts": self.bank.num_experts, "current": self.current,
                "dictionary_sizes": list(self.cged.dictionary_sizes) if self.use_cged else [],
                "dictionary_drift": self.cged.dictionary_drift() if self.use_cged else [],
                "reflection_sizes": list(self.gate.reflection_sizes) if self.use_samoe else []}

    def restore_structure(self, structure: dict[str, Any]) -> None:
        self.bank.unmerge()
        count = self.restore_experts(structure)
        if self.use_samoe:
            while self.gate.num_experts < count:
                self.gate.add_key()
            self.gate.set_trainable(None)
            self.gate.resize_reflection([int(s) for s in structure.get("reflection_sizes", [])])
        if self.use_cged:
            self.cged.resize_dictionary([int(s) for s in structure.get("dictionary_sizes", [])])
        self.current = int(structure.get("current", max(count - 1, 0)))

    def load_adapter_state(self, state: dict[str, Tensor], source: str = "adapter state") -> None:
        self.bank.unmerge()
        super().load_adapter_state(state, source)


class ESMoEWithoutCGED(ESMoE):
    """Ablation: no emotion decoupling — the gate reads pooled plain prompt embeddings, no L_emo."""

    name = "esmoe_wo_cged"
    label = "w/o CGED"
    paper_row = "esmoe_wo_cged"
    use_cged = False


class ESMoEWithoutSAMoE(ESMoE):
    """Ablation: one LoRA trained sequentially (SeqLoRA) with CGED and L_emo kept."""

    name = "esmoe_wo_samoe"
    label = "w/o SAMoE"
    paper_row = "esmoe_wo_samoe"
    use_samoe = False


class ESMoEWithoutLemo(ESMoE):
    """Ablation: λ = 0 — CGED and the gate without the emotion loss (no classifier)."""

    name = "esmoe_wo_lemo"
    label = "w/o L_emo"
    paper_row = "esmoe_wo_lemo"
    use_emotion_loss = False
