"""Shared fixtures: one prepared tiny run (dataset, tokenizer, evaluator, language model, codes),
built once per test session and copied by the tests that train on it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

# The tiny profile, made smaller still where only the mechanics are tested.
TINY_RUN_OVERRIDES = [
    "train.epochs=1",
    "train.eval_generations=2",
    "train.eval_repeats=2",
    "train.report_samples=0",
    "stream.max_subsets=3",
]


@pytest.fixture(scope="session")
def tiny_config():
    from l2emg.config import load_config

    return load_config("tiny", TINY_RUN_OVERRIDES)


@pytest.fixture(scope="session")
def prepared_tiny_run(tmp_path_factory, tiny_config) -> Path:
    """A run directory with every shared stage of the tiny profile done (no previews)."""
    from l2emg.pipeline import prepare_run

    path = tmp_path_factory.mktemp("tiny") / "run"
    prepare_run(path, tiny_config, progress=False, previews=False)
    return path


@pytest.fixture
def tiny_run_copy(prepared_tiny_run, tmp_path) -> Path:
    """A private copy of the prepared tiny run (tests may train into it)."""
    target = tmp_path / "run"
    shutil.copytree(prepared_tiny_run, target)
    return target
