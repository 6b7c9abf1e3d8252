"""Reproducible randomness: one seed scheme for the whole project."""

from __future__ import annotations

import random

import numpy as np
import torch


def step_seed(seed: int, step: int, purpose: int = 0) -> int:
    """A distinct, reproducible seed for each step (and purpose within the step)."""
    return (int(seed) * 1_000_003 + step * 7_919 + purpose * 104_729) % (2**31 - 1)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU `torch.Generator` of its own, seeded with `seed` (any non-negative int)."""
    return torch.Generator().manual_seed(int(seed) % (2**63 - 1))
