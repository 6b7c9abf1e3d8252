"""Refuse features the tokenizer cannot have been trained on, with a message that says why.

Feeding a model features normalised with other statistics (or raw features where normalised ones
are expected, or the reverse) is the most common cause of bad results with HumanML3D-style models,
and nothing crashes: the codes are simply wrong. So every batch is checked before it is encoded:

1. shape (…, 263) and finite values in the valid frames;
2. the 6D-rotation test: in raw HumanML3D features each joint's 6 rotation numbers are two unit
   vectors, so their squared norm is exactly 2. Raw features pass it (decoded features nearly so);
   normalised features, or features normalised with another dataset's statistics and then
   "un-normalised" with ours, fail it by a wide margin. This tells raw from normalised input
   whatever the motion;
3. the scale test: after normalisation with the tokenizer's own mean/std, the root-mean-square of
   each feature group of each motion must stay within a few times the largest value seen among the
   training motions (`feature_bounds`, saved with the tokenizer). Double normalisation or statistics
   from another dataset blow some group up by an order of magnitude.

These are heuristics with wide margins: they catch clear mistakes, not subtle shifts.
"""

from __future__ import annotations

import torch
from torch import Tensor

from l2emg.errors import DataError
from l2emg.motion.features import FEATURE_DIM, FEATURE_GROUPS, ROT6D

ROT6D_RAW_TOLERANCE = 0.5  # median |‖6D‖² − 2| above this: not raw features
ROT6D_LOOKS_RAW = 0.02  # median |‖6D‖² − 2| below this: certainly raw features
SCALE_FACTOR = 4.0  # allowed group RMS = SCALE_FACTOR × the largest seen in training …
SCALE_FLOOR = 4.0  # … but never less than this


def frame_mask(lengths: Tensor, num_frames: int) -> Tensor:
    """lengths (B,) -> (B, T) bool, True for t < length."""
    return torch.arange(num_frames, device=lengths.device)[None, :] < lengths[:, None]


def check_shape(features: Tensor, source: str) -> None:
    if features.ndim != 3:
        raise DataError(f"{source}: expected a batch of features (B, T, {FEATURE_DIM}), got shape {tuple(features.shape)}")
    if features.shape[-1] != FEATURE_DIM:
        raise DataError(
            f"{source}: features have {features.shape[-1]} dims per frame; the tokenizer expects "
            f"{FEATURE_DIM} (HumanML3D features of the 22-joint skeleton)"
        )


def check_finite(features: Tensor, mask: Tensor, source: str) -> None:
    """features (B, T, F), mask (B, T): refuse NaN/inf inside the valid frames."""
    bad = ~torch.isfinite(features) & mask[..., None]
    if bool(bad.any()):
        b, t, d = (int(v) for v in bad.nonzero()[0])
        raise DataError(
            f"{source}: features contain NaN or inf ({int(bad.sum())} values; first at motion {b}, "
            f"frame {t}, dim {d})"
        )


def rot6d_norm_error(raw: Tensor, mask: Tensor) -> Tensor:
    """raw (B, T, F) features, mask (B, T) -> (B,) median over valid frames/joints of |‖6D‖² − 2|."""
    six = raw[..., ROT6D].reshape(*raw.shape[:2], -1, 6)  # (B, T, 21, 6)
    err = (six.pow(2).sum(-1) - 2.0).abs()  # (B, T, 21)
    out = []
    for b in range(raw.shape[0]):
        valid = err[b][mask[b]]
        out.append(valid.median() if valid.numel() else torch.tensor(0.0))
    return torch.stack(out)


def group_rms(normalized: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """normalized (B, T, F), mask (B, T) -> {group: (B,) RMS over that motion's valid frames}."""
    weights = mask[..., None].to(normalized.dtype)
    frames = weights.sum(dim=(1, 2)).clamp(min=1.0)  # (B,)
    out = {}
    for name, dims in FEATURE_GROUPS.items():
        sq = (normalized[..., dims].pow(2) * weights).sum(dim=(1, 2))  # (B,)
        out[name] = torch.sqrt(sq / (frames * (dims.stop - dims.start)))
    return out


def check_statistics(
    given: Tensor,
    normalized_input: bool,
    mean: Tensor,
    std: Tensor,
    mask: Tensor,
    bounds: dict[str, float] | None,
    source: str,
) -> Tensor:
    """Validate `given` (B, T, F) and return it normalised with the tokenizer's mean/std.

    `normalized_input` says what the caller claims: True = already normalised with the
    tokenizer's statistics, False = raw features.
    """
    if normalized_input:
        if bool((rot6d_norm_error(given, mask) < ROT6D_LOOKS_RAW).any()):
            raise DataError(
                f"{source}: these look like raw (unnormalised) features — every 6D rotation has unit "
                f"columns — but were passed as normalised; pass them as raw features instead "
                f"(normalized=False, the default) and the tokenizer normalises them with its own statistics"
            )
        normalized, raw = given, given * std + mean
    else:
        normalized, raw = (given - mean) / std, given
    err = rot6d_norm_error(raw, mask)
    worst = int(err.argmax())
    if float(err[worst]) > ROT6D_RAW_TOLERANCE:
        what = (
            "after undoing the tokenizer's normalisation they are not HumanML3D features: they were "
            "probably normalised with other statistics"
            if normalized_input
            else "they do not look like raw HumanML3D features (were they already normalised? then "
            "pass normalized=True, but only if they were normalised with this tokenizer's Mean/Std)"
        )
        raise DataError(
            f"{source}: motion {worst}: the 6D rotations are not unit-column rotations "
            f"(median |‖6D‖²−2| = {float(err[worst]):.2f}); {what}"
        )
    for name, rms in group_rms(normalized, mask).items():
        bound = None if bounds is None else bounds.get(name)
        limit = max(SCALE_FACTOR * bound, SCALE_FLOOR) if bound is not None else 10.0 * SCALE_FLOOR
        worst = int(rms.argmax())
        if float(rms[worst]) > limit:
            raise DataError(
                f"{source}: motion {worst}: after normalisation with the tokenizer's Mean/Std the "
                f"'{name}' features have RMS {float(rms[worst]):.1f} (training motions reached at most "
                f"{bound if bound is None else round(bound, 2)}; limit {limit:.1f}); the features were "
                f"probably normalised with other statistics, or normalised twice"
            )
    return normalized
