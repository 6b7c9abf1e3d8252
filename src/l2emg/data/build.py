"""Build the embedded benchmark: generator -> canonical joints -> 263-d features -> dataset folder.

`build_dataset(config, out_dir)` runs the procedural generator, canonicalises each motion's joints
(floor at y=0, frame-0 root at the XZ origin, facing +Z), extracts HumanML3D features, tags the
captions, assigns one global split per motion (`l2emg.data.splits`), computes Mean/Std on the train
split only and writes the HumanML3D-layout folder described in `l2emg.data.layout`.

Crash safety: everything is written through `l2emg.utils.io.atomic_save_dir` (a sibling staging
folder, synced and renamed onto `out_dir` only when complete, with `dataset.json` written last
inside it). An interrupted build therefore leaves `out_dir` untouched (absent or empty); a staging
folder left by a killed process is deleted by the next run, which restarts. Re-running on a finished folder built from the same data config
does nothing and returns the recorded summary.

Speed: the generator plans every motion up front (`plan_motions`) and synthesises each from its own
(seed, index) random stream (`synthesize`), so a small process pool (order-preserving) can
synthesise, featurise and write motions in parallel with a result identical to the in-process path.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from l2emg.config import SAVED_BEFORE, Config, DataConfig
from l2emg.data.layout import FEATURE_DIM, FEATURES_DIR, META_FILE, NUM_JOINTS, SPLITS
from l2emg.data.records import Caption, MotionRecord
from l2emg.data.splits import assign_splits
from l2emg.data.writer import write_index, write_motion
from l2emg.errors import DataError
from l2emg.labels import EMOTIONS, SCENARIOS
from l2emg.utils.io import atomic_save_dir, load_json, load_npy
from l2emg.utils.progress import progress_bar

POOL_MIN_MOTIONS = 100  # below this, starting worker processes costs more than it saves


def _check_motion(motion: Any, data: DataConfig) -> None:
    """Refuse a generated motion that the dataset format or the config does not allow."""
    if motion.scenario not in SCENARIOS or motion.emotion not in EMOTIONS:
        raise DataError(f"generator motion {motion.motion_id!r}: unknown labels {motion.scenario!r}/{motion.emotion!r}")
    joints = np.asarray(motion.joints)
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3):
        raise DataError(f"generator motion {motion.motion_id!r}: joints shape {joints.shape}, expected (T, 22, 3)")
    if not data.min_frames <= joints.shape[0] <= data.max_frames:
        raise DataError(f"generator motion {motion.motion_id!r}: {joints.shape[0]} frames, outside "
                        f"data.min_frames..max_frames = {data.min_frames}..{data.max_frames}")
    if not np.all(np.isfinite(joints)):
        raise DataError(f"generator motion {motion.motion_id!r}: joints contain NaN or inf")
    if not motion.captions:
        raise DataError(f"generator motion {motion.motion_id!r}: no captions")


def _process_motion(staging: Path, motion: Any) -> MotionRecord:
    """Canonicalise, extract features, tag captions and write one generated motion (split set later)."""
    from l2emg.motion.features import canonicalize_joints, extract_features

    canonical = canonicalize_joints(np.asarray(motion.joints, dtype=np.float64))  # (T, 22, 3)
    features = np.asarray(extract_features(canonical))                             # (T-1, 263)
    if features.shape != (canonical.shape[0] - 1, FEATURE_DIM) or not np.all(np.isfinite(features)):
        raise DataError(f"generator motion {motion.motion_id!r}: bad features (shape {features.shape}, "
                        f"finite={bool(np.all(np.isfinite(features)))})")
    record = MotionRecord(
        motion_id=motion.motion_id, split="train", captions=[Caption.from_text(t) for t in motion.captions],
        num_frames=int(canonical.shape[0]), emotion=motion.emotion, scenario=motion.scenario, action=motion.action,
        intensity=None if motion.intensity is None else float(motion.intensity),
    )
    write_motion(staging, record, canonical, features, atomic=False)  # the staging folder is synced once
    return record


# Worker-process state for the parallel path (set by _worker_init).
_WORKER: dict[str, Any] = {}


def _worker_init(data: DataConfig, staging: Path) -> None:
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    _WORKER.update(data=data, staging=staging)


def _synthesize_and_process(spec: Any) -> tuple[MotionRecord, float, float]:
    """Worker: synthesise one planned motion and process it -> (record, generate s, features+write s)."""
    from l2emg.data.synth import synthesize

    start = time.perf_counter()
    motion = synthesize(spec, _WORKER["data"])
    generated = time.perf_counter()
    _check_motion(motion, _WORKER["data"])
    record = _process_motion(_WORKER["staging"], motion)
    return record, generated - start, time.perf_counter() - generated


def _sequential(config: Config, staging: Path) -> Iterator[tuple[MotionRecord, float, float]]:
    """In-process path: iterate `generate_motions` and process each motion."""
    from l2emg.data.synth import generate_motions

    iterator = iter(generate_motions(config.data))
    while True:
        start = time.perf_counter()
        try:
            motion = next(iterator)
        except StopIteration:
            return
        generated = time.perf_counter()
        _check_motion(motion, config.data)
        record = _process_motion(staging, motion)
        yield record, generated - start, time.perf_counter() - generated


def _start_pool(workers: int, data: DataConfig, staging: Path) -> Any:
    """A worker pool for the parallel path, started before any progress-bar thread exists.

    fork where the platform has it: workers inherit the imported modules (no multi-second re-import
    of torch per worker) and run numpy code only, which is fork-safe; spawn elsewhere.
    """
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method).Pool(workers, _worker_init, (data, staging))


def _finished_summary(out: Path, data_config: dict[str, Any]) -> dict[str, Any] | None:
    """The recorded summary when `out` is a finished build of the same data config, else None/DataError."""
    meta_path = out / META_FILE
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder; choose another --out")
    if not meta_path.exists():
        if out.exists() and any(out.iterdir()):
            raise DataError(f"{out}: folder exists but holds no finished dataset ({META_FILE} missing); "
                            f"remove it or choose another --out")
        return None
    try:
        meta = load_json(meta_path)
    except ValueError as err:
        raise DataError(str(err)) from err
    built_with = meta.get("generator", {}).get("config")
    if isinstance(built_with, dict):  # fields the build predates: their old behaviour (config.SAVED_BEFORE)
        built_with = {**{key: value for (section, key), value in SAVED_BEFORE.items() if section == "data"},
                      **built_with}
    if built_with != data_config:
        changed = sorted(k for k in set(data_config) | set(built_with or {})
                         if (built_with or {}).get(k) != data_config.get(k))
        raise DataError(f"{meta_path}: this folder was built with another data config "
                        f"(differs in: {', '.join(changed) or 'everything'}); choose another --out")
    return {**meta.get("build", {}), "status": "already built", "out_dir": str(out)}


def build_dataset(config: Config, out_dir: str | Path, progress: bool = True,
                  workers: int | None = None) -> dict[str, Any]:
    """Generate the embedded benchmark into `out_dir` (HumanML3D layout) and return a summary dict.

    workers: processes that synthesise, featurise and write motions (default: min(2, CPU count) from
    POOL_MIN_MOTIONS motions on, else 1); 1 runs everything in this process through
    `generate_motions`. Both give byte-identical folders (only dataset.json's timings differ).
    """
    from l2emg.data import synth

    out = Path(out_dir)
    data_config = config.data.model_dump(mode="json")
    done = _finished_summary(out, data_config)
    if done is not None:
        return done

    if workers is None:  # a pool pays off only when there is enough work to share
        workers = min(2, os.cpu_count() or 1) if config.data.num_motions >= POOL_MIN_MOTIONS else 1

    parallel = workers > 1 and hasattr(synth, "plan_motions") and hasattr(synth, "synthesize")
    summary: dict[str, Any] = {}

    def write(staging: Path) -> None:
        summary.update(_build_into(staging, config, out, parallel, workers, progress))

    atomic_save_dir(out, write)
    return summary


def _build_into(staging: Path, config: Config, out: Path, parallel: bool, workers: int,
                progress: bool) -> dict[str, Any]:
    """Generate, featurise and write every motion into `staging`; `dataset.json` last."""
    from l2emg import __version__ as l2emg_version
    from l2emg.data import synth
    from l2emg.motion.features import compute_feature_stats

    data_config = config.data.model_dump(mode="json")
    timing = {"generate_s": 0.0, "features_and_write_s": 0.0}
    start = time.perf_counter()
    records: list[MotionRecord] = []
    seen: set[str] = set()
    pool = _start_pool(workers, config.data, staging) if parallel else None
    try:
        if pool is not None:
            # Each motion comes from its own (seed, index) random stream, so spreading the plan over
            # workers (results in plan order) writes the same files as the in-process path.
            results = pool.imap(_synthesize_and_process, synth.plan_motions(config.data), chunksize=16)
        else:
            results = _sequential(config, staging)
        with progress_bar("generating motions", config.data.num_motions, enabled=progress) as bar:
            for record, generate_s, process_s in results:
                if record.motion_id in seen:
                    raise DataError(f"generator produced motion id {record.motion_id!r} twice")
                seen.add(record.motion_id)
                records.append(record)
                timing["generate_s"] += generate_s
                timing["features_and_write_s"] += process_s
                bar.advance()
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    if not records:
        raise DataError("the generator produced no motions")
    loop_s = time.perf_counter() - start

    # One global split per motion; Mean/Std from the train split only.
    stats_start = time.perf_counter()
    assignment = assign_splits(((r.motion_id, r.scenario, r.emotion) for r in records),
                               config.data.split_ratios, config.data.holdout_pairs, config.data.seed)
    for record in records:
        record.split = assignment[record.motion_id]
    train = [r for r in records if r.split == "train"]
    if not train:
        raise DataError("no motion landed in the train split; raise data.num_motions")
    mean, std = compute_feature_stats([load_npy(staging / FEATURES_DIR / f"{r.motion_id}.npy") for r in train])
    stats_s = time.perf_counter() - stats_start

    frames = np.array([r.num_frames for r in records])
    summary = {
        "status": "built",
        "out_dir": str(out),
        "num_motions": len(records),
        "splits": {s: sum(r.split == s for r in records) for s in SPLITS},
        "scenarios": {s: sum(r.scenario == s for r in records) for s in SCENARIOS},
        "emotions": {e: sum(r.emotion == e for r in records) for e in EMOTIONS},
        "frames": {"min": int(frames.min()), "mean": round(float(frames.mean()), 1), "max": int(frames.max()),
                   "total": int(frames.sum())},
        "workers": workers if parallel else 1,
        "timing_s": {
            # generate / features_and_write: seconds summed over motions (CPU time over all workers);
            # generate_features_write_wall: the wall-clock time of that loop.
            "generate": round(timing["generate_s"], 2),
            "features_and_write": round(timing["features_and_write_s"], 2),
            "generate_features_write_wall": round(loop_s, 2),
            "split_and_stats": round(stats_s, 2),
        },
    }
    metadata = {
        "name": f"l2emg-embedded-{config.profile}",
        "description": "procedural emotional-motion benchmark (l2emg.data.synth), HumanML3D layout",
        "l2emg_version": l2emg_version,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "generator": {"module": "l2emg.data.synth", "seed": config.data.seed, "config": data_config},
        "holdout_pairs": [list(p) for p in config.data.holdout_pairs],
        "split_ratios": list(config.data.split_ratios),
        "stats": "Mean/Std from the train split (HumanML3D-style grouped std)",
        "feature_convention": "l2emg",
    }
    summary["timing_s"]["total"] = round(time.perf_counter() - start, 2)
    metadata["build"] = summary
    write_index(staging, records, mean, std, metadata)  # dataset.json last
    return summary
