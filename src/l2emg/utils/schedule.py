"""The learning-rate schedule every trainer of the project uses: linear warm-up, then cosine decay."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float = 0.0, peak: float = 1.0) -> float:
    """Learning rate (or, with peak=1, the factor for `LambdaLR`) at optimizer step `step` of `total`.

    Linear warm-up from peak/warmup to peak over the first `warmup` steps, then cosine decay to
    `min_ratio * peak` at step `total` (and constant after it).
    """
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))
