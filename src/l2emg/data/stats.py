"""Dataset statistics: label counts, caption diversity, lengths and physical plausibility.

`dataset_stats(dataset)` returns a JSON-ready dict:
  counts        motions per scenario × emotion, per split × scenario, per emotion
  actions       number of distinct actions (overall and per scenario)
  captions      total, mean per motion, unique ratio, vocabulary size (distinct words and lemmas),
                distinct-1 / distinct-2 (unique n-grams / all n-grams over every caption)
  frames        min / mean / median / max / percentiles / histogram of joint frame counts
  quality       `l2emg.motion.quality.summarize_quality` over a seeded sample of motions
  roundtrip     feature round-trip (extract -> recover) and BVH round-trip errors on the sample
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from l2emg.data.layout import JOINTS_DIR, SPLITS
from l2emg.data.reader import MotionDataset
from l2emg.errors import DataError
from l2emg.labels import EMOTIONS, SCENARIOS
from l2emg.utils.io import save_json

UNLABELLED = "(none)"


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def caption_stats(dataset: MotionDataset) -> dict[str, Any]:
    texts = [c.text for r in dataset.records for c in r.captions]
    tokenised = [_words(t) for t in texts]
    unigrams = [w for ws in tokenised for w in ws]
    bigrams = [(a, b) for ws in tokenised for a, b in zip(ws, ws[1:])]
    lemmas = {tok.rpartition("/")[0] for r in dataset.records for c in r.captions for tok in c.tokens}
    return {
        "total": len(texts),
        "mean_per_motion": round(len(texts) / max(len(dataset), 1), 3),
        "unique": len(set(texts)),
        "unique_ratio": round(len(set(texts)) / max(len(texts), 1), 4),
        "vocabulary_words": len(set(unigrams)),
        "vocabulary_lemmas": len(lemmas),
        "mean_words": round(len(unigrams) / max(len(texts), 1), 2),
        "distinct_1": round(len(set(unigrams)) / max(len(unigrams), 1), 4),
        "distinct_2": round(len(set(bigrams)) / max(len(bigrams), 1), 4),
    }


def count_stats(dataset: MotionDataset) -> dict[str, Any]:
    def key(value: str | None) -> str:
        return UNLABELLED if value is None else value

    scenarios = list(SCENARIOS) + ([UNLABELLED] if any(r.scenario is None for r in dataset.records) else [])
    emotions = list(EMOTIONS) + ([UNLABELLED] if any(r.emotion is None for r in dataset.records) else [])
    cells = Counter((key(r.scenario), key(r.emotion)) for r in dataset.records)
    by_split = Counter((r.split, key(r.scenario)) for r in dataset.records)
    return {
        "scenario_emotion": {s: {e: cells[(s, e)] for e in emotions} for s in scenarios},
        "split_scenario": {sp: {s: by_split[(sp, s)] for s in scenarios} for sp in SPLITS},
        "splits": {sp: sum(r.split == sp for r in dataset.records) for sp in SPLITS},
        "scenarios": {s: sum(cells[(s, e)] for e in emotions) for s in scenarios},
        "emotions": {e: sum(cells[(s, e)] for s in scenarios) for e in emotions},
    }


def action_stats(dataset: MotionDataset) -> dict[str, Any]:
    actions = {r.action for r in dataset.records if r.action}
    per_scenario = {s: len({r.action for r in dataset.records if r.scenario == s and r.action}) for s in SCENARIOS}
    return {"distinct": len(actions), "per_scenario": per_scenario,
            "unlabelled": sum(1 for r in dataset.records if not r.action)}


def frame_stats(dataset: MotionDataset, bins: int = 8) -> dict[str, Any]:
    frames = np.array([r.num_frames for r in dataset.records])
    if frames.size == 0:
        return {}
    counts, edges = np.histogram(frames, bins=bins)
    return {
        "min": int(frames.min()), "mean": round(float(frames.mean()), 2), "median": float(np.median(frames)),
        "max": int(frames.max()), "total": int(frames.sum()),
        "seconds_total": round(float(frames.sum()) / 20.0, 1),
        "percentiles": {str(p): float(np.percentile(frames, p)) for p in (5, 25, 75, 95)},
        "histogram": {"edges": [round(float(e), 1) for e in edges], "counts": counts.tolist()},
    }


def sample_ids(dataset: MotionDataset, sample_size: int, seed: int = 0) -> list[str]:
    ids = [r.motion_id for r in dataset.records]
    if len(ids) <= sample_size:
        return ids
    rng = np.random.default_rng(seed)
    return sorted(ids[i] for i in rng.choice(len(ids), sample_size, replace=False))


def finite_joints(dataset: MotionDataset, motion_id: str) -> np.ndarray:
    """(T, 22, 3) float64 joints of a motion; DataError naming its file when they hold NaN or inf."""
    joints = np.asarray(dataset.joints(motion_id), dtype=np.float64)
    bad = ~np.isfinite(joints)
    if bad.any():
        frame = int(np.argwhere(bad)[0][0])
        raise DataError(f"{dataset.root / JOINTS_DIR / (motion_id + '.npy')}: joints contain NaN or inf "
                        f"({int(bad.sum())} value(s), first in frame {frame}); fix or regenerate the motion "
                        f"(`l2emg data check` lists every bad file)")
    return joints


def quality_stats(dataset: MotionDataset, ids: list[str]) -> dict[str, Any]:
    """Physical plausibility aggregates of the sampled motions (generator helper's measures)."""
    from l2emg.motion.quality import summarize_quality

    summary = summarize_quality([finite_joints(dataset, i) for i in ids])
    return _jsonable(summary)


def roundtrip_stats(dataset: MotionDataset, ids: list[str]) -> dict[str, Any]:
    """Feature and BVH round-trip errors (metres) on the sampled motions."""
    from l2emg.motion.bvh import bvh_roundtrip_error
    from l2emg.motion.features import feature_roundtrip_error

    out: dict[str, Any] = {"sample_size": len(ids)}
    for name, fn in (("feature_roundtrip_m", feature_roundtrip_error), ("bvh_roundtrip_m", bvh_roundtrip_error)):
        errors = np.array([float(fn(finite_joints(dataset, i))) for i in ids])
        out[name] = {"mean": float(errors.mean()), "max": float(errors.max())}
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "__dataclass_fields__"):
        return _jsonable(value.__dict__)
    return value


def dataset_stats(dataset: MotionDataset, sample_size: int = 64, seed: int = 0,
                  physical: bool = True) -> dict[str, Any]:
    """All statistics of `dataset`; `physical=False` skips the (slower) quality and round-trip checks."""
    stats: dict[str, Any] = {
        "name": dataset.name,
        "root": str(dataset.root),
        "num_motions": len(dataset),
        "stats_source": dataset.stats_note,
        "counts": count_stats(dataset),
        "actions": action_stats(dataset),
        "captions": caption_stats(dataset),
        "frames": frame_stats(dataset),
    }
    if physical and len(dataset):
        ids = sample_ids(dataset, sample_size, seed)
        stats["quality"] = {"sample_size": len(ids), **quality_stats(dataset, ids)}
        stats["roundtrip"] = roundtrip_stats(dataset, ids)
    return stats


def save_stats(stats: dict[str, Any], path: str | Path) -> None:
    save_json(path, _jsonable(stats))
