"""Hugging Face libraries, offline and quiet: nothing is downloaded at run time, and their own
per-file progress bars stay off (l2emg shows its own progress, `l2emg.utils.progress`)."""

from __future__ import annotations

import os


def quiet_transformers() -> None:
    """Offline mode and no transformers progress bars; call before loading any HF model."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
