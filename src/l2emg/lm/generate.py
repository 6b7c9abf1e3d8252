"""Text -> motion codes -> motion: constrained, batched decoding with a KV cache.

    codes = generate_codes(model, tokenizer, vocab, ["a person jogs in a circle, sadly"])
    features, joints = codes_to_motion(motion_tokenizer, codes)     # (4N, 263) and (4N, 22, 3) each

Decoding (our own loop, not `model.generate`, so every continual method can hook into it):

* prompts are left-padded (`encode_prompts`), positions count real tokens only, padding is masked;
* the prompt runs once, then one token per step through the KV cache (`past_key_values`);
* only motion-code tokens and `<eom>` can be produced (`<eom>` not at the first step), so every
  generation parses into 1 … `max_codes` codes; a sample stops at `<eom>` or after `max_codes` codes.
  The output layer computes just those K + 1 rows (`l2emg.lm.motion_head`): a pretrained LLM's 49 k-word softmax
  is never formed while decoding motion;
* finished rows leave the batch: once an eighth of the running rows (at least `COMPACT_MIN`) have
  ended, the rest continue alone (their KV cache rows, mask, positions, and the per-sample routing of
  the model's expert layers selected, `_row_states`); samples are still drawn for every row of the
  batch, so a seeded sampling run picks the same codes as without compaction;
* greedy, or sampling with temperature and top-k from a seeded `torch.Generator`;
* classifier-free guidance (`guidance_scale` s ≠ 1): every prompt is paired with the same prompt
  without its caption (the model learns both through `train.caption_dropout`); the two halves run as
  one batch of 2B and the picked token comes from  u + s · (c − u)  (c, u: conditional and
  unconditional logits), which pushes the motion towards what this caption, more than any caption,
  makes likely. Both halves are fed the same token.

`prepare(input_ids, attention_mask) -> inputs_embeds | GenerationInputs | None` is called once per
batch before the first forward: a continual method sets its per-sample state there (e.g. ES-MoE's
expert gate from the prompt) and may return replacement prompt embeddings (B, L, hidden) (ES-MoE adds
its emotion vector); the prompt forward then uses `inputs_embeds`. A `GenerationInputs` may further
lengthen the prompt (embeddings (B, L', hidden) with their attention mask (B, L'): Progressive
Prompts' soft prompts) or give a per-layer key/value prefix (EPI's deep prompt), which pre-fills the
KV cache: the attention mask then gets P ones on the left and positions start at P.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from l2emg.lm.motion_head import decoding_ids, restricted_head
from l2emg.lm.prompts import INSTRUCTION, encode_prompts, position_ids
from l2emg.lm.vocab import MotionVocab
from l2emg.utils.precision import autocast


@dataclass
class GenerationInputs:
    """What a `prepare` hook may return instead of plain embeddings (every field optional).

    embeds: (B, L', hidden) input embeddings of the prompt; L' may exceed L when `attention_mask`
        (B, L') is given too (e.g. soft prompts in front of the left-padded prompt).
    prefix: per decoder layer a (key, value) pair, each (B, kv_heads, P, head_dim): past key/values
        every position attends to (a deep prompt / prefix); positions of the prompt start at P.
    """

    embeds: Tensor | None = None
    attention_mask: Tensor | None = None
    prefix: Sequence[tuple[Tensor, Tensor]] | None = None

    @property
    def prefix_length(self) -> int:
        return int(self.prefix[0][0].shape[-2]) if self.prefix else 0


PrepareHook = Callable[[Tensor, Tensor], "Tensor | GenerationInputs | None"]


def _pick(logits: Tensor, greedy: bool, temperature: float, top_k: int | None,
          generator: torch.Generator | None) -> Tensor:
    """(B, V) masked float logits -> (B,) chosen ids."""
    if greedy:
        return logits.argmax(-1)
    scaled = logits / temperature
    if top_k is not None and top_k < scaled.shape[-1]:
        kth = torch.topk(scaled, top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


COMPACT_MIN = 8  # finished rows that make dropping them from the decoding batch worth a cache copy


def _row_states(model: nn.Module) -> list:
    """Per-sample state the model's layers keep across the decoding steps of one batch: a layer's
    `routing` object (the experts' gate, `l2emg.continual.lora.routing.RoutingState`) with
    `select_rows(index)`, each object once (every expert layer shares one)."""
    states = {}
    for module in model.modules():
        state = vars(module).get("routing")
        if state is not None and hasattr(state, "select_rows"):
            states[id(state)] = state
    return list(states.values())


def cache_kwarg(model: nn.Module, cache) -> dict:
    """The KV cache as the model's forward names it: `cache` (transformers ≥ 5.2x, where
    `past_key_values` is deprecated) or `past_key_values`."""
    import inspect

    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    return {name: cache}


@lru_cache(maxsize=1)
def _reserved_layer_class():
    """A `DynamicLayer` that writes new keys/values into storage reserved for `capacity` positions and
    returns views of the filled part, instead of concatenating the whole cache at every step (on the
    default profile the concatenations were a quarter of decoding time at batch 256)."""
    from transformers.cache_utils import DynamicLayer

    class ReservedLayer(DynamicLayer):
        def __init__(self, capacity: int, **kwargs):
            super().__init__(**kwargs)
            self.capacity = capacity
            self._storage: tuple[Tensor, Tensor] | None = None

        def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs) -> tuple[Tensor, Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            start = self.get_seq_length()
            end = start + key_states.shape[-2]
            if self._storage is None or end > self._storage[0].shape[-2]:
                size = max(end, self.capacity)
                shape = (*key_states.shape[:-2], size, key_states.shape[-1])
                keys, values = key_states.new_empty(shape), value_states.new_empty(shape)
                if start:
                    keys[..., :start, :], values[..., :start, :] = self.keys, self.values
                self._storage = (keys, values)
            keys, values = self._storage
            keys[..., start:end, :], values[..., start:end, :] = key_states, value_states
            self.keys, self.values = keys[..., :end, :], values[..., :end, :]
            return self.keys, self.values

        def _drop_storage(self) -> None:
            self._storage = None  # the next update copies the (changed) keys/values into new storage

        def reset(self) -> None:
            super().reset()
            self._drop_storage()

        def crop(self, tokens_to_remove: int) -> None:
            super().crop(tokens_to_remove)
            self._drop_storage()

        def batch_repeat_interleave(self, repeats: int) -> None:
            super().batch_repeat_interleave(repeats)
            self._drop_storage()

        def batch_select_indices(self, indices: Tensor) -> None:
            super().batch_select_indices(indices)
            self._drop_storage()

    return DynamicLayer, ReservedLayer


def reserve_cache(cache, capacity: int):
    """Give each plain `DynamicLayer` of a `DynamicCache` storage for `capacity` positions (no-grad
    decoding: the stored keys/values are written in place). Older caches are returned unchanged."""
    try:
        dynamic, reserved = _reserved_layer_class()
    except ImportError:  # transformers < 4.56: no cache layers
        return cache
    for i, layer in enumerate(getattr(cache, "layers", [])):
        if type(layer) is dynamic:
            fresh = reserved(capacity)
            if layer.is_initialized and layer.get_seq_length():
                fresh.update(layer.keys, layer.values)
            cache.layers[i] = fresh
    return cache


def new_cache(model: nn.Module, prefix: Sequence[tuple[Tensor, Tensor]] | None = None):
    """An empty `DynamicCache`, or one pre-filled with a per-layer (key, value) prefix, each
    (B, kv_heads, P, head_dim). Gradients flow into the prefix tensors through the cache."""
    from transformers import DynamicCache

    pairs = [(k, v) for k, v in prefix] if prefix else None
    try:
        return DynamicCache(pairs, config=model.config) if pairs else DynamicCache(config=model.config)
    except TypeError:  # transformers < 4.56
        return DynamicCache.from_legacy_cache(tuple(pairs)) if pairs else DynamicCache()


@torch.no_grad()
def _generate_batch(
    model: nn.Module, vocab: MotionVocab, input_ids: Tensor, attention_mask: Tensor, *, max_codes: int,
    greedy: bool, temperature: float, top_k: int | None, generator: torch.Generator | None,
    prepare: PrepareHook | None, use_cache: bool, guidance_scale: float = 1.0,
) -> list[np.ndarray]:
    """input_ids / attention_mask (B, L); with guidance ≠ 1 they are (2B, L): B conditional rows, then
    the same B prompts without their captions."""
    device = input_ids.device
    guided = guidance_scale != 1.0
    batch = input_ids.shape[0] // 2 if guided else input_ids.shape[0]
    prepared = prepare(input_ids, attention_mask) if prepare is not None else None
    if not isinstance(prepared, GenerationInputs):
        prepared = GenerationInputs(embeds=prepared)
    embeds, prefix, skip = prepared.embeds, prepared.prefix, prepared.prefix_length
    if prepared.attention_mask is not None:
        if embeds is None or embeds.shape[:2] != prepared.attention_mask.shape:
            raise ValueError("prepare: an attention_mask needs embeds of the same (batch, length)")
        attention_mask = prepared.attention_mask.to(attention_mask.dtype)
    vocab.motion_token_mask(model.get_output_embeddings().weight.shape[0])  # the vocabulary holds them
    allowed = decoding_ids(vocab, device)  # (R,): the logits computed
    first_bias = torch.zeros(len(allowed), device=device)
    first_bias[-1] = float("-inf")  # at least one code
    with restricted_head(model, allowed):  # logits over `allowed` (R,) ids only
        rows = input_ids.shape[0]
        mask = attention_mask
        if skip:  # the prefix takes positions 0 … P-1 of every row
            mask = torch.cat([torch.ones((rows, skip), dtype=mask.dtype, device=device), mask], dim=1)
        generated = torch.empty((rows, 0), dtype=torch.long, device=device)
        finished = torch.zeros(batch, dtype=torch.bool, device=device)
        lengths = torch.full((batch,), max_codes, dtype=torch.long, device=device)
        cache = new_cache(model, prefix) if use_cache or prefix else None
        if use_cache:
            cache = reserve_cache(cache, mask.shape[1] + max_codes)
        cache_arg = cache_kwarg(model, cache)  # looked up once per batch, not per decoding step
        positions = position_ids(mask)[:, skip:]
        live = torch.arange(batch, device=device)  # the samples still decoding (rows of the running batch)
        states = _row_states(model) if use_cache else []
        if embeds is not None:
            out = model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, **cache_arg,
                        use_cache=use_cache or bool(prefix), logits_to_keep=1)
        else:
            out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, **cache_arg,
                        use_cache=use_cache or bool(prefix), logits_to_keep=1)
        for step in range(max_codes):
            logits = out.logits[:, -1].float()  # (running rows, R)
            if guided:
                cond, uncond = logits[:len(live)], logits[len(live):]
                logits = uncond + guidance_scale * (cond - uncond)
            if len(live) < batch:  # rows that left the batch get a uniform row: drawn, then replaced by <eom>
                logits = logits.new_zeros((batch, logits.shape[-1])).index_copy_(0, live, logits)
            if step == 0:
                logits = logits + first_bias
            token = allowed[_pick(logits, greedy, temperature, top_k, generator)]  # (B,) token ids
            token = torch.where(finished, torch.full_like(token, vocab.eom_id), token)
            ended = (token == vocab.eom_id) & ~finished
            lengths = torch.where(ended, torch.full_like(lengths, step), lengths)
            finished |= ended
            if guided:
                token = torch.cat([token, token])  # (2B,): both halves continue with the picked token
            generated = torch.cat([generated, token[:, None]], dim=1)
            if bool(finished.all()) or step == max_codes - 1:
                break
            if use_cache:
                ended_live = finished.index_select(0, live)
                if int(ended_live.sum()) >= max(COMPACT_MIN, len(live) // 8):
                    keep = torch.nonzero(~ended_live).squeeze(1)  # positions in the running batch
                    running = torch.cat([keep, keep + len(live)]) if guided else keep
                    cache.batch_select_indices(running)
                    for state in states:
                        state.select_rows(running)
                    mask, positions, live = mask[running], positions[running], live[keep]
                fed = token[:batch].index_select(0, live)
                fed = torch.cat([fed, fed]) if guided else fed
                mask = torch.cat([mask, torch.ones((mask.shape[0], 1), dtype=mask.dtype, device=device)], dim=1)
                step_positions = positions[:, -1:] + 1
                positions = torch.cat([positions, step_positions], dim=1)
                out = model(input_ids=fed[:, None], attention_mask=mask, position_ids=step_positions,
                            **cache_arg, use_cache=True)
            else:  # recompute the whole sequence (reference path for tests)
                mask = torch.cat([mask, torch.ones((rows, 1), dtype=mask.dtype, device=device)], dim=1)
                positions = position_ids(mask)[:, skip:]
                fresh = cache_kwarg(model, new_cache(model, prefix)) if prefix else {}
                if embeds is not None:
                    full = torch.cat([embeds, model.get_input_embeddings()(generated)], dim=1)
                    out = model(inputs_embeds=full, attention_mask=mask, position_ids=positions, **fresh,
                                use_cache=bool(prefix))
                else:
                    full_ids = torch.cat([input_ids, generated], dim=1)
                    out = model(input_ids=full_ids, attention_mask=mask, position_ids=positions, **fresh,
                                use_cache=bool(prefix))
        return [vocab.ids_to_codes(generated[row, : int(lengths[row])]) for row in range(batch)]


def generate_codes(
    model: nn.Module,
    tokenizer,
    vocab: MotionVocab,
    captions: Sequence[str],
    *,
    max_codes: int = 49,
    greedy: bool = True,
    temperature: float = 1.0,
    top_k: int | None = None,
    batch_size: int = 16,
    seed: int | None = None,
    prepare: PrepareHook | None = None,
    instruction: str = INSTRUCTION,
    use_cache: bool = True,
    guidance_scale: float = 1.0,
    precision: str = "fp32",
) -> list[np.ndarray]:
    """Captions -> one (N_i,) int64 code array each, 1 ≤ N_i ≤ max_codes (see the module docstring).

    Captions are processed in chunks of `batch_size`, in the given order. `seed` fixes sampling
    (a fresh generator per call); `use_cache=False` recomputes the full sequence at every step;
    `precision` (auto / bf16 / fp32, `l2emg.utils.precision`) runs the model under bf16 autocast.
    """
    if max_codes < 1:
        raise ValueError("max_codes must be ≥ 1")
    if guidance_scale <= 0:
        raise ValueError("guidance_scale must be > 0 (1 = no guidance)")
    if not greedy and temperature <= 0:
        raise ValueError("temperature must be > 0 when sampling")
    captions = list(captions)
    if not captions:
        return []
    device = model.get_input_embeddings().weight.device
    generator = None
    if not greedy:
        generator = torch.Generator(device=device)
        generator.manual_seed(int(seed) if seed is not None else secrets.randbits(63))
    was_training = model.training
    model.eval()
    out: list[np.ndarray] = []
    try:
        with autocast(precision, device):
            for start in range(0, len(captions), batch_size):
                chunk = captions[start : start + batch_size]
                if guidance_scale != 1.0:
                    chunk = chunk + [""] * len(chunk)  # the unconditional half: the same prompt, no caption
                prompts = encode_prompts(tokenizer, vocab, chunk, instruction)
                out += _generate_batch(
                    model, vocab, prompts["input_ids"].to(device), prompts["attention_mask"].to(device),
                    max_codes=max_codes, greedy=greedy, temperature=temperature, top_k=top_k, generator=generator,
                    prepare=prepare, use_cache=use_cache, guidance_scale=guidance_scale,
                )
    finally:
        model.train(was_training)
    return out


def codes_to_motion(motion_tokenizer, codes_list: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Code sequences -> (raw features (4 N_i, 263) list, joints (4 N_i, 22, 3) list) via the decoder."""
    from l2emg.motion.features import recover_joints

    features = motion_tokenizer.decode_codes(list(codes_list))
    joints = [np.asarray(recover_joints(f), dtype=np.float32) for f in features]
    return features, joints
