"""Shared helpers for driving a continual method on a tiny language model, for tests/test_esmoe.py,
tests/test_baselines_lora.py and tests/test_baselines_prompts.py: two caption scenarios, the tokenizer, the
tiny LM, instruction examples and batches, and a begin_scenario -> AdamW updates -> end_scenario loop; and
`strip_timing`, for comparing a resumed stream's results with an uninterrupted one's."""

from __future__ import annotations

import itertools
import os

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from l2emg.continual.examples import build_examples, collate_examples  # noqa: E402
from l2emg.continual.methods import METHODS, ScenarioContext  # noqa: E402
from l2emg.data.stream import INSTRUCTION, InstructionSample  # noqa: E402
from l2emg.lm.backbone import tiny_llama_config  # noqa: E402
from l2emg.lm.motion_lm import MotionLM  # noqa: E402
from l2emg.lm.prompts import encode_prompts  # noqa: E402
from l2emg.lm.text_tokenizer import build_text_tokenizer  # noqa: E402
from l2emg.lm.vocab import add_motion_tokens  # noqa: E402
from lm_fixtures import CAPTIONS, roughen, tiny_lm_config  # noqa: E402

MOODS = {"happily": "happy", "sadly": "sad", "angrily": "angry", "with fear": "fearful",
         "in surprise": "surprised", "with disgust": "disgusted", "calmly": "neutral"}
# Two scenarios with clearly different captions (different verbs and words).
SCENARIO_A = [(f"a person {v} {w}, {m}", MOODS[m]) for v, w, m in
              itertools.product(["walks", "runs"], ["forward", "slowly"], MOODS)]
SCENARIO_B = [(f"someone {v} on the stage {w}, {m}", MOODS[m]) for v, w, m in
              itertools.product(["spins", "kicks"], ["in a circle", "backwards"], MOODS)]
CODEBOOK = 16
# LoRA (or experts) on the input embeddings and lm_head as well as on the attention projections.
EMBEDDING_LORA = ["lora.target_modules=[q_proj, k_proj, v_proj, o_proj, embed_tokens, lm_head]",
                  "lora.rank_pattern={embed_tokens: 8, lm_head: 6}"]


def build_tokenizer():
    """The text tokenizer of the tiny LM, fitted on the shared captions and both scenarios (wrap it in a
    module-scoped `tokenizer` fixture)."""
    texts = CAPTIONS + [c for c, _ in SCENARIO_A + SCENARIO_B] + [INSTRUCTION] * 3
    return build_text_tokenizer(texts, vocab_size=400)


def make_lm(tokenizer, seed: int = 0, rough: bool = False, **llama) -> MotionLM:
    """A seeded tiny Llama with the motion codebook tokens added. `llama`: LlamaConfig attributes to change;
    `rough`: add seeded noise to the weights first (`lm_fixtures.roughen`, scale 2)."""
    from copy import deepcopy

    from transformers import LlamaForCausalLM

    tok = deepcopy(tokenizer)
    torch.manual_seed(seed)
    config = tiny_llama_config(tiny_lm_config(), len(tok), tok)
    for name, value in llama.items():
        setattr(config, name, value)
    model = LlamaForCausalLM(config)
    if rough:
        roughen(model, seed=seed + 1, scale=2.0)
    codebook = torch.randn(CODEBOOK, 8, generator=torch.Generator().manual_seed(1))
    vocab = add_motion_tokens(model, tok, codebook, seed=0)
    return MotionLM(model, tok, vocab)


def setup_method(name: str, config, lm: MotionLM):
    """METHODS[name] on `lm` with `config`, set up."""
    method = METHODS[name](config, lm)
    method.setup()
    return method


def examples_for(method, captions, scenario: str, seed: int = 0, codes_from: int = 0, codes_to: int = CODEBOOK):
    """Instruction examples with random motion codes in [codes_from, codes_to)."""
    rng = np.random.default_rng(seed)
    samples, codes = [], {}
    for k, (caption, emotion) in enumerate(captions):
        motion_id = f"{scenario}_{k:03d}"
        codes[motion_id] = rng.integers(codes_from, codes_to, size=int(rng.integers(3, 7))).tolist()
        samples.append(InstructionSample(INSTRUCTION, caption, emotion, scenario, motion_id, scenario))
    return build_examples(samples, codes, method.lm.tokenizer, method.lm.vocab, max_length=128)


def batch_of(method, examples):
    return collate_examples(examples, method.lm.tokenizer.pad_token_id)


def prompts(method, captions):
    return encode_prompts(method.lm.tokenizer, method.lm.vocab, captions)


def steps(method, examples, updates: int, lr: float = 1e-2, batch_size: int = 8, weight_decay: float = 0.0,
          every_requires_grad: bool = False) -> list[dict]:
    """A few AdamW updates on consecutive batches of `examples`; returns the (detached) outputs.

    The optimizer holds `trainable_parameters()`; with `every_requires_grad` it holds every parameter that
    requires a gradient instead, and asserts that this is exactly `trainable_parameters()` — with weight
    decay, a parameter that should be frozen but is not would then move even without a gradient."""
    if every_requires_grad:
        params = [p for p in method.parameters() if p.requires_grad]
        assert {id(p) for p in params} == {id(p) for p in method.trainable_parameters()}
    else:
        params = method.trainable_parameters()
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    outs = []
    for u in range(updates):
        start = (u * batch_size) % len(examples)
        out = method(batch_of(method, examples[start:start + batch_size]))
        out["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        outs.append({k: v.detach() for k, v in out.items()})
    return outs


def train(method, step: int, examples, updates: int = 4, lr: float = 1e-2, **kwargs) -> list[dict]:
    """begin_scenario -> `steps` (a few AdamW updates) -> end_scenario; returns the outputs."""
    ctx = ScenarioContext(step, f"s{step}", examples)
    method.train()
    method.begin_scenario(step, ctx)
    outs = steps(method, examples, updates, lr=lr, **kwargs)
    method.end_scenario(step, ctx)
    return outs


def strip_timing(results: dict) -> dict:
    """results.json without its timing fields (each step's training and evaluation seconds, wall and CPU)."""
    for step in results["steps"]:
        step["train"].pop("seconds", None)
        step["train"].pop("cpu_seconds", None)
        step.pop("eval_seconds", None)
        step.pop("eval_cpu_seconds", None)
    return results
