"""utils/schedule.py: the one optimiser + LR-schedule helper of the four training loops.

Each loop's learning rates, step for step, must be exactly (==, not approx) what the loop's own code
set before the helper existed; the old formulas are copied here, verbatim, as the reference.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from l2emg.config import TokenizerConfig, load_config
from l2emg.tokenizer.train import learning_rate
from l2emg.utils.schedule import make_optimizer, make_scheduler

PROFILES = ("tiny", "default", "gpu", "paper")


# ---- the old code, verbatim ---------------------------------------------------------------------
def old_warmup_cosine(step: int, total: int, warmup: int, min_ratio: float = 0.0, peak: float = 1.0) -> float:
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def old_lambda_lrs(base_lr: float, factor, steps: int) -> list[float]:
    """What `LambdaLR(AdamW(lr=base_lr), factor)` set before each optimizer step (stream trainer, evaluator)."""
    return [base_lr * factor(s) for s in range(steps)]


def old_backbone_lrs(warmup_steps: int, warmup_lr: float) -> list[float]:
    ramp = max(1, warmup_steps // 10)
    return [old_warmup_cosine(step, warmup_steps, ramp, min_ratio=0.1, peak=warmup_lr) for step in range(warmup_steps)]


def old_tokenizer_lr(cfg: TokenizerConfig, step: int) -> float:
    lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else cfg.lr
    return lr * cfg.lr_decay_gamma ** sum(step >= s for s in cfg.lr_decay_steps)


# ---- the helper, driven as the loops drive it ---------------------------------------------------
def _params() -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))]


def applied_lrs(optimizer: torch.optim.Optimizer, scheduler, steps: int) -> list[float]:
    """The lr each optimizer step uses: read before `optimizer.step()`, `scheduler.step()` after it."""
    lrs = []
    for _ in range(steps):
        group_lrs = {group["lr"] for group in optimizer.param_groups}
        assert len(group_lrs) == 1
        lrs.append(group_lrs.pop())
        optimizer.step()  # no gradients: a no-op, but the order LambdaLR expects
        scheduler.step()
    return lrs


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("micro", [1, 3, 7, 40])
def test_stream_trainer_lrs_unchanged(profile, micro):
    cfg = load_config(profile).train
    total = cfg.epochs * math.ceil(micro / cfg.grad_accum)
    optimizer = make_optimizer(_params(), cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(optimizer, "warmup_cosine", total=total, warmup=cfg.warmup_steps,
                               min_lr_ratio=cfg.min_lr_ratio)
    expected = old_lambda_lrs(cfg.lr, lambda s: old_warmup_cosine(s, total, cfg.warmup_steps, cfg.min_lr_ratio), total)
    assert applied_lrs(optimizer, scheduler, total) == expected
    assert expected[0] == cfg.lr * old_warmup_cosine(0, total, cfg.warmup_steps, cfg.min_lr_ratio)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("train_motions", [5, 64, 1000])
def test_evaluator_lrs_unchanged(profile, train_motions):
    cfg = load_config(profile).evaluator
    batch_size = min(cfg.batch_size, train_motions)
    total_steps = cfg.epochs * max(1, train_motions // batch_size)
    optimizer = make_optimizer(_params(), cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(optimizer, "warmup_cosine", total=total_steps, warmup=cfg.warmup_steps)
    expected = old_lambda_lrs(cfg.lr, lambda s: old_warmup_cosine(s, total_steps, cfg.warmup_steps), total_steps)
    assert applied_lrs(optimizer, scheduler, total_steps) == expected


@pytest.mark.parametrize("profile", PROFILES)
def test_backbone_warm_up_lrs_unchanged(profile):
    lm = load_config(profile).lm
    optimizer = make_optimizer(_params(), lm.warmup_lr, betas=(0.9, 0.95), weight_decay=0.01)
    scheduler = make_scheduler(optimizer, "warmup_cosine", total=lm.warmup_steps,
                               warmup=max(1, lm.warmup_steps // 10), min_lr_ratio=0.1, form="peak")
    assert applied_lrs(optimizer, scheduler, lm.warmup_steps) == old_backbone_lrs(lm.warmup_steps, lm.warmup_lr)


def test_backbone_needs_the_peak_form():
    """base_lr × factor rounds differently from the backbone's peak × (step + 1) / warmup (tiny: step 2)."""
    lm = load_config("tiny").lm
    optimizer = make_optimizer(_params(), lm.warmup_lr)
    factor = make_scheduler(optimizer, "warmup_cosine", total=lm.warmup_steps, warmup=max(1, lm.warmup_steps // 10),
                            min_lr_ratio=0.1)
    assert applied_lrs(optimizer, factor, lm.warmup_steps) != old_backbone_lrs(lm.warmup_steps, lm.warmup_lr)


def _tokenizer_configs() -> list[tuple[str, TokenizerConfig]]:
    configs = [(profile, load_config(profile).tokenizer) for profile in PROFILES]
    configs.append(("test_tokenizer TINY", TokenizerConfig(lr=2e-3, warmup_steps=2, iterations=8, lr_decay_steps=[6])))
    # a milestone inside the warm-up and two milestones: the old formula's own rounding is kept
    configs.append(("milestone in warm-up", TokenizerConfig(lr=3e-4, warmup_steps=30, iterations=90,
                                                            lr_decay_steps=[7, 50], lr_decay_gamma=0.3)))
    configs.append(("no warm-up", TokenizerConfig(lr=1e-3, warmup_steps=0, iterations=40, lr_decay_steps=[10, 20])))
    return configs


def _tokenizer_scheduler(cfg: TokenizerConfig, start: int = 0):
    """As tokenizer/train.py builds it: a fresh AdamW, (when resuming) its state loaded, then the scheduler."""
    optimizer = make_optimizer(_params(), cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    if start:
        optimizer.load_state_dict(optimizer.state_dict())  # `_load_optimizer`: the optimizer's own param groups
    scheduler = make_scheduler(optimizer, "step", warmup=cfg.warmup_steps, milestones=cfg.lr_decay_steps,
                               gamma=cfg.lr_decay_gamma, form="peak", start=start)
    return optimizer, scheduler


def _windows(cfg: TokenizerConfig) -> list[tuple[int, int]]:
    """(start, stop) step ranges covering the whole run, or, for long runs, every point where the lr changes."""
    if cfg.iterations <= 10_000:
        return [(0, cfg.iterations)]
    edges = [0, cfg.warmup_steps, *cfg.lr_decay_steps, cfg.iterations - 5]
    return [(max(0, e - 5), min(cfg.iterations, e + 5)) for e in edges]


@pytest.mark.parametrize("name,cfg", _tokenizer_configs(), ids=[name for name, _ in _tokenizer_configs()])
def test_tokenizer_lrs_unchanged_also_when_resumed(name, cfg):
    for start, stop in _windows(cfg):
        expected = [old_tokenizer_lr(cfg, step) for step in range(start, stop)]
        assert [learning_rate(cfg, step) for step in range(start, stop)] == expected  # the logged lr
        optimizer, scheduler = _tokenizer_scheduler(cfg, start)
        assert applied_lrs(optimizer, scheduler, stop - start) == expected
    # resumed at every step of a short run (the checkpoint's step): the rest of the run is unchanged
    if cfg.iterations <= 100:
        full = [old_tokenizer_lr(cfg, step) for step in range(cfg.iterations)]
        for start in range(1, cfg.iterations):
            optimizer, scheduler = _tokenizer_scheduler(cfg, start)
            assert applied_lrs(optimizer, scheduler, cfg.iterations - start) == full[start:]


def test_make_optimizer_is_adamw_with_its_settings():
    params = _params()
    optimizer = make_optimizer(params, 1e-3, weight_decay=0.0, betas=(0.9, 0.99))
    assert isinstance(optimizer, torch.optim.AdamW)
    reference = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.0)
    assert optimizer.state_dict()["param_groups"] == reference.state_dict()["param_groups"]
    default = make_optimizer(params, 1e-3)
    assert default.state_dict()["param_groups"] == torch.optim.AdamW(params, lr=1e-3).state_dict()["param_groups"]


def test_refuses_unknown_schedules_and_warns_nothing():
    optimizer = make_optimizer(_params(), 1e-3)
    with pytest.raises(ValueError, match="schedule"):
        make_scheduler(optimizer, "linear")
    with pytest.raises(ValueError, match="form"):
        make_scheduler(optimizer, form="both")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scheduler = make_scheduler(make_optimizer(_params(), 1e-3), total=5, warmup=2)
        applied_lrs(scheduler.optimizer, scheduler, 5)
