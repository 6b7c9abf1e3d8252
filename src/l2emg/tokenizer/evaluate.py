"""How well the tokenizer reconstructs motions, and how much of its codebook it uses.

Every motion of a split is encoded whole and decoded; joints are recovered (root integration and
root-relative positions, `recover_joints`) from both the original and the reconstructed features,
over the motion's own frames. Reported:

- `mpjpe_mm`: mean per-joint position error in millimetres after moving both poses' pelvis to the
  origin in every frame (the convention of MoMask's `calculate_mpjpe`, the usual number for
  motion-tokenizer reconstruction), averaged over all joints and frames of the split
  (frame-weighted); also per scenario and per emotion. The heading is still integrated from the
  reconstructed root rotation velocity, so a wrongly turning body counts;
- `mpjpe_global_mm`: the same without alignment: the reconstructed root trajectory is integrated
  from its velocities, so trajectory drift over the whole motion counts too;
- `codebook_usage`: fraction of the K codes that occur at least once in the split's codes;
- `perplexity`: exp(entropy) of the split's code histogram (K when every code is equally used);
- `reconstruction_fid` (when an evaluator is given): FID between the evaluator's embeddings of
  the original and of the reconstructed motions (T2M-GPT reports 0.070 on HumanML3D).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import torch

from l2emg.errors import DataError
from l2emg.motion.features import recover_joints
from l2emg.tokenizer.api import MotionTokenizer
from l2emg.utils.progress import progress_bar


def code_statistics(code_lists: list[np.ndarray], codebook_size: int) -> dict[str, float]:
    """Usage (fraction of codes used) and perplexity of a set of code sequences."""
    if not code_lists:
        return {"codebook_usage": 0.0, "codes_used": 0, "perplexity": 0.0, "num_codes": 0}
    all_codes = np.concatenate([np.asarray(c, dtype=np.int64) for c in code_lists])
    histogram = np.bincount(all_codes, minlength=codebook_size).astype(np.float64)
    probs = histogram / max(histogram.sum(), 1.0)
    nonzero = probs[probs > 0]
    return {
        "codebook_usage": float((histogram > 0).mean()),
        "codes_used": int((histogram > 0).sum()),
        "perplexity": float(np.exp(-(nonzero * np.log(nonzero)).sum())),
        "num_codes": int(all_codes.size),
    }


def _mpjpe_sums(reference: np.ndarray, reconstructed: np.ndarray) -> tuple[float, float, int]:
    """Features (T, 263) each -> (sum of pelvis-aligned joint errors, sum of global errors, T·22), metres."""
    ref = recover_joints(torch.from_numpy(reference.astype(np.float64)))  # (T, 22, 3)
    rec = recover_joints(torch.from_numpy(reconstructed.astype(np.float64)))
    global_err = (ref - rec).norm(dim=-1)  # (T, 22)
    aligned_err = ((ref - ref[:, :1]) - (rec - rec[:, :1])).norm(dim=-1)
    return float(aligned_err.sum()), float(global_err.sum()), int(global_err.numel())


def evaluate_tokenizer(
    tokenizer: MotionTokenizer,
    dataset,
    split: str = "test",
    batch_size: int | None = None,
    progress: bool = False,
    evaluator=None,
) -> dict[str, Any]:
    """Reconstruction MPJPE (overall, per scenario, per emotion) and codebook statistics on a split;
    with `evaluator` (an `l2emg.eval.evaluator.Evaluator`) also the reconstruction FID."""
    records = dataset.split(split)
    if not records:
        raise DataError(f"{dataset.root}: the {split} split is empty")
    batch_size = batch_size or tokenizer.config.eval_batch_size
    ids = [r.motion_id for r in records]
    motions = [dataset.features(i) for i in ids]
    codes = tokenizer.encode_motions(motions, batch_size=batch_size, names=ids)
    decoded = tokenizer.decode_codes(codes, batch_size=batch_size)

    # Each bucket sums [pelvis-aligned error, global error, joint-frames, frames].
    per_scenario: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0, 0])
    per_emotion: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0, 0])
    overall = [0.0, 0.0, 0, 0]
    with progress_bar("tokenizer: test split", len(records), enabled=progress) as bar:
        for record, reference, reconstructed in zip(records, motions, decoded):
            sums = (*_mpjpe_sums(reference, reconstructed[: len(reference)]), len(reference))
            for bucket in (overall, per_scenario[record.scenario or "unknown"], per_emotion[record.emotion or "unknown"]):
                for k in range(4):
                    bucket[k] += sums[k]
            bar.advance()

    def summarise(bucket: list[float]) -> dict[str, float]:
        return {
            "mpjpe_mm": round(1000.0 * bucket[0] / bucket[2], 2),
            "mpjpe_global_mm": round(1000.0 * bucket[1] / bucket[2], 2),
            "frames": int(bucket[3]),
        }

    stats = code_statistics(codes, tokenizer.codebook_size)
    extra: dict[str, Any] = {}
    if evaluator is not None:
        from l2emg.eval.metrics import fid

        reconstructed = [r[: len(m)] for m, r in zip(motions, decoded)]
        extra["reconstruction_fid"] = round(
            fid(evaluator.embed_motion(motions, names=ids), evaluator.embed_motion(reconstructed, names=ids)), 4
        )
    return {
        "split": split,
        "dataset": str(dataset.root),
        "num_motions": len(records),
        **summarise(overall),
        "codebook_size": tokenizer.codebook_size,
        **stats,
        **extra,
        "per_scenario": {k: summarise(v) for k, v in sorted(per_scenario.items())},
        "per_emotion": {k: summarise(v) for k, v in sorted(per_emotion.items())},
    }
