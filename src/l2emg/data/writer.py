"""Writing a HumanML3D-layout dataset folder: each motion's files, then the index (dataset.json last)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from l2emg.data.layout import (
    FEATURE_DIM,
    FEATURES_DIR,
    FORMAT_VERSION,
    FPS,
    JOINTS_DIR,
    LABELS_FILE,
    MEAN_FILE,
    META_FILE,
    NUM_JOINTS,
    SPLITS,
    STD_FILE,
    TEXTS_DIR,
)
from l2emg.data.records import MotionRecord
from l2emg.errors import DataError
from l2emg.utils.io import atomic_write_bytes, atomic_write_text, save_json, save_npy


def _write_plain(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_motion(root: str | Path, record: MotionRecord, joints: np.ndarray | None,
                 features: np.ndarray, atomic: bool = True) -> None:
    """Write one motion's arrays and caption file.

    joints: (T, 22, 3) or None (features-only datasets); features: (T-1, 263).
    atomic=True writes each file through a synced temporary file. The builder passes False: it
    writes into a staging folder that is synced once and renamed as a whole, which is just as safe
    and avoids three fsyncs per motion.
    """
    root = Path(root)
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[1] != FEATURE_DIM:
        raise DataError(f"motion {record.motion_id!r}: features must be (T-1, {FEATURE_DIM}), got {features.shape}")
    if not record.captions:
        raise DataError(f"motion {record.motion_id!r}: no captions")
    files: list[tuple[Path, bytes]] = []
    if joints is not None:
        joints = np.asarray(joints, dtype=np.float32)
        if joints.shape != (features.shape[0] + 1, NUM_JOINTS, 3):
            raise DataError(f"motion {record.motion_id!r}: joints {joints.shape} do not match features "
                            f"{features.shape} (expected ({features.shape[0] + 1}, {NUM_JOINTS}, 3))")
        files.append((root / JOINTS_DIR / f"{record.motion_id}.npy", _npy_bytes(joints)))
    files.append((root / FEATURES_DIR / f"{record.motion_id}.npy", _npy_bytes(features)))
    text = "\n".join(c.to_line() for c in record.captions) + "\n"
    files.append((root / TEXTS_DIR / f"{record.motion_id}.txt", text.encode("utf-8")))
    for path, data in files:
        (atomic_write_bytes if atomic else _write_plain)(path, data)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def write_index(root: str | Path, records: Sequence[MotionRecord], mean: np.ndarray, std: np.ndarray,
                metadata: Mapping[str, Any]) -> None:
    """Write split files, labels.json, Mean/Std and — last — dataset.json, which marks the folder done."""
    root = Path(root)
    records = sorted(records, key=lambda r: r.motion_id)
    for split in SPLITS:
        ids = [r.motion_id for r in records if r.split == split]
        atomic_write_text(root / f"{split}.txt", "".join(f"{i}\n" for i in ids))
    bad = [r.motion_id for r in records if r.split not in SPLITS]
    if bad:
        raise DataError(f"{root}: motions with no valid split: {bad[:5]}")
    atomic_write_text(root / "all.txt", "".join(f"{r.motion_id}\n" for r in records))
    save_json(root / LABELS_FILE, {r.motion_id: r.labels() for r in records})
    save_npy(root / MEAN_FILE, np.asarray(mean, dtype=np.float32))
    save_npy(root / STD_FILE, np.asarray(std, dtype=np.float32))
    meta = {
        "format_version": FORMAT_VERSION, "fps": FPS, "feature_dim": FEATURE_DIM, "num_joints": NUM_JOINTS,
        "num_motions": len(records),
        "splits": {s: sum(r.split == s for r in records) for s in SPLITS},
        **dict(metadata),
        "num_frames": {r.motion_id: int(r.num_frames) for r in records},
    }
    save_json(root / META_FILE, meta)


def write_dataset(root: str | Path, records: Sequence[MotionRecord], features: Mapping[str, np.ndarray],
                  mean: np.ndarray, std: np.ndarray, metadata: Mapping[str, Any] | None = None,
                  joints: Mapping[str, np.ndarray] | None = None, atomic: bool = True) -> None:
    """Write a whole dataset: every motion's files, then the index (dataset.json last, always atomic)."""
    for record in records:
        write_motion(root, record, None if joints is None else joints[record.motion_id],
                     features[record.motion_id], atomic=atomic)
    write_index(root, records, mean, std, metadata or {})
