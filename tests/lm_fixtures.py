"""Shared tiny language-model fixtures for tests/test_lm.py and tests/test_generate.py."""

from __future__ import annotations

import itertools

import torch

from l2emg.config import LMConfig

VERBS = ["walks", "runs", "jumps", "dances", "waves", "kicks", "spins", "crouches"]
WAYS = ["forward", "in a circle", "slowly", "backwards", "on the spot"]
MOODS = ["happily", "sadly", "angrily", "with fear", "in surprise", "with disgust", "calmly"]
CAPTIONS = [f"a person {v} {w}, {m}" for v, w, m in itertools.product(VERBS, WAYS, MOODS)]


def tiny_lm_config(**changes) -> LMConfig:
    base = dict(text_vocab_size=400, tiny_hidden=64, tiny_layers=2, tiny_heads=4, tiny_intermediate=176,
                max_positions=256, warmup_steps=60, warmup_batch_size=16, warmup_lr=5e-3, max_codes=12)
    return LMConfig(**{**base, **changes})


def roughen(model: torch.nn.Module, seed: int = 0, scale: float = 0.5) -> None:
    """Add seeded noise to every non-embedding weight so an untrained model's generations vary."""
    generator = torch.Generator().manual_seed(seed)
    embeddings = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    with torch.no_grad():
        for p in model.parameters():
            if id(p) not in embeddings and p.ndim == 2:
                p.add_(torch.randn(p.shape, generator=generator) * scale * p.std())
