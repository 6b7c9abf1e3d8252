"""Optimiser and learning-rate schedules of every training loop of the project.

`make_optimizer` (torch's AdamW) and `make_scheduler` (torch's `LambdaLR` over one of two schedule
functions) are what the four training loops use:

- the stream trainer (`continual/trainer.py`): `warmup_cosine` to `train.min_lr_ratio`, "factor" form;
- the evaluator (`eval/evaluator/train.py`): `warmup_cosine` to 0, "factor" form;
- the tiny backbone's warm-up (`lm/backbone.py`): `warmup_cosine` over 10 % warm-up to 0.1, "peak" form;
- the tokenizer (`tokenizer/train.py`): T2M-GPT's `step_decay`, "peak" form, rebuilt at the
  checkpoint's step when a training resumes.

The two forms give the same schedule but round differently in the last bit: "factor" is
`LambdaLR`'s own `base_lr * fn(step, peak=1)`, "peak" is `fn(step, peak=base_lr)`. Each loop keeps
the form it always had, so its learning rates (and weights) are bit-identical to earlier versions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

SCHEDULES = ("warmup_cosine", "step")
FORMS = ("factor", "peak")


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float = 0.0, peak: float = 1.0) -> float:
    """Learning rate (or, with peak=1, the factor for `LambdaLR`) at optimizer step `step` of `total`.

    Linear warm-up from peak/warmup to peak over the first `warmup` steps, then cosine decay to
    `min_ratio * peak` at step `total` (and constant after it).
    """
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def step_decay(step: int, warmup: int, milestones: Sequence[int], gamma: float, peak: float = 1.0) -> float:
    """T2M-GPT's schedule at optimizer step `step` (0-based): linear warm-up to `peak` over the first
    `warmup` steps, then × `gamma` at each milestone reached (`step >= milestone`)."""
    lr = peak * min(1.0, (step + 1) / warmup) if warmup else peak
    return lr * gamma ** sum(step >= s for s in milestones)


def make_optimizer(
    params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
    lr: float,
    *,
    weight_decay: float = 0.01,
    betas: tuple[float, float] | Sequence[float] = (0.9, 0.999),
) -> torch.optim.AdamW:
    """torch's AdamW (its own eps and implementation choice); the defaults are AdamW's."""
    return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)


class _PeakLambdaLR(LambdaLR):
    """`LambdaLR` whose function gets the base lr as `peak` and returns the lr itself, not a factor."""

    def __init__(self, optimizer: torch.optim.Optimizer, lr_at: Callable[[int, float], float],
                 last_epoch: int = -1) -> None:
        self.lr_at = lr_at
        super().__init__(optimizer, lambda step: 1.0, last_epoch)

    def get_lr(self) -> list[float]:
        return [self.lr_at(self.last_epoch, base_lr) for base_lr in self.base_lrs]


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    kind: str = "warmup_cosine",
    *,
    total: int = 0,
    warmup: int = 0,
    min_lr_ratio: float = 0.0,
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
    form: str = "factor",
    start: int = 0,
) -> LambdaLR:
    """A `LambdaLR` on `optimizer`: call its `step()` after each `optimizer.step()`.

    kind "warmup_cosine": `warmup_cosine(step, total, warmup, min_lr_ratio)`; kind "step":
    `step_decay(step, warmup, milestones, gamma)`. form "factor": lr = base lr × the schedule's
    factor; form "peak": lr = the schedule computed with peak = base lr (see the module docstring).
    The base lr is each param group's lr when the scheduler is made. As `LambdaLR` does, the lr of
    step `start` is set at once; `start > 0` resumes a training at that step (the optimizer's lr
    must still be the base lr, i.e. no scheduler made on it before, or one whose `initial_lr` it kept).
    """
    if kind == "warmup_cosine":
        def lr_at(step: int, peak: float) -> float:
            return warmup_cosine(step, total, warmup, min_lr_ratio, peak)
    elif kind == "step":
        def lr_at(step: int, peak: float) -> float:
            return step_decay(step, warmup, milestones, gamma, peak)
    else:
        raise ValueError(f"unknown learning-rate schedule {kind!r}; one of {', '.join(SCHEDULES)}")
    if start < 0:
        raise ValueError(f"start must be >= 0, not {start}")
    if start:
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
    if form == "factor":
        return LambdaLR(optimizer, lambda step: lr_at(step, 1.0), last_epoch=start - 1)
    if form == "peak":
        return _PeakLambdaLR(optimizer, lr_at, last_epoch=start - 1)
    raise ValueError(f"unknown schedule form {form!r}; one of {', '.join(FORMS)}")
