"""Reading a HumanML3D-layout dataset folder: `load_dataset` and the lazily loading `MotionDataset`.

`load_dataset` reads the split files, captions, labels (through an optional `LabelMap`) and each
motion's frame count; arrays are loaded lazily (on first use, then kept in a byte-bounded LRU
cache), so a 29k-motion HumanML3D folder opens in seconds. Also the file-level readers the
validator shares: split files (`read_split_file`, `read_split_files`), caption files and .npy headers.
The layout itself is described in `l2emg.data.layout`.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from l2emg.data.labelmap import LabelMap
from l2emg.data.layout import (
    FEATURE_DIM,
    FEATURES_DIR,
    HUMANML3D_MAX_FRAMES,
    HUMANML3D_MIN_FRAMES,
    JOINTS_DIR,
    LABELS_FILE,
    MEAN_FILE,
    META_FILE,
    NUM_JOINTS,
    SPLITS,
    STD_FILE,
    TEXTS_DIR,
)
from l2emg.data.records import Caption, MotionRecord, filter_by_length
from l2emg.errors import DataError
from l2emg.labels import EMOTIONS, SCENARIOS
from l2emg.utils.io import load_npy, read_text


def read_split_file(path: Path) -> list[str]:
    """The motion ids of one split file (train.txt, all.txt, …): one per line, blank lines skipped."""
    return [line.strip() for line in read_text(path, "a split file (one motion id per line)").splitlines()
            if line.strip()]


def read_split_files(root: Path, on_duplicate: Callable[[Path, str, str, str], None]) -> dict[str, str] | None:
    """{motion_id: split} from the split files of `root` (train.txt, val.txt, test.txt; those present).

    Returns None when `root` has none of them. A motion listed again (in the same or a later split
    file) keeps its first split; `on_duplicate(path, split, motion_id, first_split)` is called for
    it first, in file order, and may raise (the loader) or record a problem (the validator).
    """
    split_of: dict[str, str] = {}
    found = False
    for split in SPLITS:
        path = root / f"{split}.txt"
        if not path.exists():
            continue
        found = True
        for motion_id in read_split_file(path):
            if motion_id in split_of:
                on_duplicate(path, split, motion_id, split_of[motion_id])
                continue
            split_of[motion_id] = split
    return split_of if found else None


def read_captions(path: Path) -> list[Caption]:
    """All captions of `texts/ID.txt`; DataError naming the file and line when one is malformed."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: caption file missing") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: caption file is not UTF-8 text ({err})") from err
    captions = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            captions.append(Caption.from_line(line))
        except ValueError as err:
            raise DataError(f"{path}:{number}: malformed caption line ({err})") from None
    if not captions:
        raise DataError(f"{path}: caption file has no captions")
    return captions


_SHAPE_RE = re.compile(rb"['\"]shape['\"]\s*:\s*\(([^)]*)\)")


def npy_shape(path: str | Path) -> tuple[int, ...]:
    """Shape of a .npy array from its header only (no data read); ValueError when it is not a .npy."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 10 or head[:6] != b"\x93NUMPY":
            raise ValueError("not a .npy file (bad magic)")
        if head[6] == 1:
            length, start = int.from_bytes(head[8:10], "little"), 10
        else:
            length, start = int.from_bytes(head[8:12], "little"), 12
        header = head[start:] + f.read(length - (len(head) - start))
    match = _SHAPE_RE.search(header)
    if match is None:
        raise ValueError("no shape in the .npy header")
    return tuple(int(x) for x in match.group(1).replace(b" ", b"").split(b",") if x)



class MotionDataset:
    """A HumanML3D-layout dataset: records in memory, arrays read on demand and cached.

    `mean`/`std` (263,) float32 are the feature statistics the dataset ships (or, when Mean.npy /
    Std.npy are missing, computed from its train split; `stats_note` says which).
    """

    def __init__(self, root: Path, records: list[MotionRecord], mean: np.ndarray, std: np.ndarray,
                 metadata: dict[str, Any] | None = None, stats_note: str = "Mean.npy/Std.npy",
                 cache_bytes: int = 1 << 30):
        self.root = Path(root)
        self.records = sorted(records, key=lambda r: r.motion_id)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.metadata = dict(metadata or {})
        self.stats_note = stats_note
        self._index = {r.motion_id: r for r in self.records}
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._cache_bytes = 0
        self._cache_limit = cache_bytes

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", self.root.name))

    @property
    def feature_convention(self) -> str:
        """How the features were computed: "l2emg" or "humanml3d" (motion/features.py).

        From dataset.json; a folder without one (HumanML3D's own) is taken for "humanml3d", an l2emg
        dataset written before the field existed for "l2emg".
        """
        return str(self.metadata.get("feature_convention", "l2emg" if self.metadata else "humanml3d"))

    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, motion_id: str) -> bool:
        return motion_id in self._index

    def __repr__(self) -> str:
        counts = ", ".join(f"{s}={len(self.split(s))}" for s in SPLITS)
        return f"MotionDataset({str(self.root)!r}, {len(self)} motions: {counts})"

    def by_id(self, motion_id: str) -> MotionRecord:
        try:
            return self._index[motion_id]
        except KeyError:
            raise KeyError(f"{self.root}: no motion {motion_id!r}") from None

    def split(self, name: str) -> list[MotionRecord]:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return [r for r in self.records if r.split == name]

    def ids(self, split: str | None = None) -> list[str]:
        records = self.records if split is None else self.split(split)
        return [r.motion_id for r in records]

    def features(self, motion_id: str) -> np.ndarray:
        """(T-1, 263) float32 raw features (read-only view of the cached array)."""
        record = self.by_id(motion_id)
        array = self._load(FEATURES_DIR, motion_id)
        if array.ndim != 2 or array.shape[1] != FEATURE_DIM:
            raise DataError(f"{self.root / FEATURES_DIR / (motion_id + '.npy')}: expected (T-1, {FEATURE_DIM}) "
                            f"features, got shape {array.shape}")
        if array.shape[0] != record.num_frames - 1:
            raise DataError(f"{self.root / FEATURES_DIR / (motion_id + '.npy')}: {array.shape[0]} feature rows "
                            f"but the motion has {record.num_frames} frames (expected T-1)")
        return array

    def joints(self, motion_id: str) -> np.ndarray:
        """(T, 22, 3) float32 joint positions (read-only view of the cached array).

        A HumanML3D folder stores T-1 frames here (recovered from the features); both are accepted.
        """
        self.by_id(motion_id)
        array = self._load(JOINTS_DIR, motion_id)
        if array.ndim != 3 or array.shape[1:] != (NUM_JOINTS, 3):
            raise DataError(f"{self.root / JOINTS_DIR / (motion_id + '.npy')}: expected (T, {NUM_JOINTS}, 3) "
                            f"joints, got shape {array.shape}")
        return array

    def normalized_features(self, motion_id: str) -> np.ndarray:
        return (self.features(motion_id) - self.mean) / self.std

    def filter_by_length(self, min_frames: int = HUMANML3D_MIN_FRAMES,
                         max_frames: int = HUMANML3D_MAX_FRAMES, split: str | None = None) -> list[MotionRecord]:
        return filter_by_length(self.records if split is None else self.split(split), min_frames, max_frames)

    def clear_cache(self) -> None:
        self._cache.clear()
        self._cache_bytes = 0

    def _load(self, folder: str, motion_id: str) -> np.ndarray:
        key = (folder, motion_id)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        path = self.root / folder / f"{motion_id}.npy"
        try:
            array = load_npy(path)
        except FileNotFoundError:
            raise DataError(f"{path}: file missing") from None
        except (ValueError, OSError, EOFError) as err:
            raise DataError(f"{path}: unreadable .npy file ({err})") from err
        if not np.issubdtype(array.dtype, np.number):
            raise DataError(f"{path}: expected a numeric array, got dtype {array.dtype}")
        array = np.ascontiguousarray(array, dtype=np.float32)
        array.flags.writeable = False
        self._cache[key] = array
        self._cache_bytes += array.nbytes
        while self._cache_bytes > self._cache_limit and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= old.nbytes
        return array


def _frame_count(root: Path, motion_id: str) -> int:
    """T from new_joint_vecs/ID.npy's header (rows + 1), else from new_joints (its frame count).

    The feature file decides because the two layouts agree on it: ours stores T joint frames,
    HumanML3D stores the T-1 joint frames recovered from the features (layout.py).
    """
    base = str(root)
    joints_path = os.path.join(base, JOINTS_DIR, motion_id + ".npy")
    features_path = os.path.join(base, FEATURES_DIR, motion_id + ".npy")
    for path, extra in ((features_path, 1), (joints_path, 0)):
        try:
            shape = npy_shape(path)
        except FileNotFoundError:
            continue
        except (ValueError, OSError) as err:
            raise DataError(f"{path}: unreadable .npy header ({err})") from err
        if not shape:
            raise DataError(f"{path}: expected an array with a frame axis, got a scalar")
        return int(shape[0]) + extra
    raise DataError(f"{features_path}: file missing (motion {motion_id!r} is listed in a split file)")


def _load_stats(root: Path) -> tuple[np.ndarray, np.ndarray] | None:
    mean_path, std_path = root / MEAN_FILE, root / STD_FILE
    if not (mean_path.exists() and std_path.exists()):
        return None
    arrays = []
    for path in (mean_path, std_path):
        try:
            array = load_npy(path)
        except (ValueError, OSError, EOFError) as err:
            raise DataError(f"{path}: unreadable .npy file ({err})") from err
        if array.shape != (FEATURE_DIM,):
            raise DataError(f"{path}: expected shape ({FEATURE_DIM},), got {array.shape}")
        if not np.all(np.isfinite(array)):
            raise DataError(f"{path}: contains NaN or inf")
        arrays.append(array.astype(np.float32))
    if np.any(arrays[1] <= 0):
        raise DataError(f"{std_path}: {int(np.sum(arrays[1] <= 0))} entries are zero or negative")
    return arrays[0], arrays[1]


def _read_json_object(path: Path, expected: str) -> dict[str, Any]:
    """A JSON file that must hold an object; DataError naming the file otherwise."""
    try:
        value = json.loads(read_text(path, "a JSON file"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected {expected}")
    return value


def load_dataset(root: str | Path, label_map: LabelMap | Mapping[str, Any] | str | Path | None = None,
                 cache_bytes: int = 1 << 30) -> MotionDataset:
    """Open a HumanML3D-layout dataset folder (ours, HumanML3D, EmotionalT2M-style, …).

    Reads split files, captions, labels (optional; `label_map` maps foreign names to ours) and the
    frame count of every motion; arrays are read later, on demand. When Mean.npy/Std.npy are missing
    they are computed from the train split (HumanML3D-style) and a warning says so.
    Raises DataError naming the file for anything missing or inconsistent.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    labels_map = LabelMap.from_any(label_map)
    metadata: dict[str, Any] = {}
    meta_path = root / META_FILE
    if meta_path.exists():
        metadata = _read_json_object(meta_path, "a JSON object")
        if metadata.get("feature_dim", FEATURE_DIM) != FEATURE_DIM:
            raise DataError(f"{meta_path}: feature_dim {metadata.get('feature_dim')} is not {FEATURE_DIM}")

    # One global split per motion (a motion listed twice in the same split file is harmless).
    def in_two_splits(path: Path, split: str, motion_id: str, first_split: str) -> None:
        if first_split != split:
            raise DataError(f"{path}: motion {motion_id!r} is also in {first_split}.txt "
                            f"(each motion must be in exactly one split)")

    split_of = read_split_files(root, in_two_splits)
    if split_of is None:
        raise DataError(f"{root}: no split files (train.txt / val.txt / test.txt)")

    labels: dict[str, Any] = {}
    labels_path = root / LABELS_FILE
    if labels_path.exists():
        labels = _read_json_object(labels_path, "{id: {emotion, scenario, ...}}")

    frames_index = metadata.get("num_frames") if isinstance(metadata.get("num_frames"), dict) else {}
    records = []
    for motion_id, split in split_of.items():
        entry = labels.get(motion_id) or {}
        if not isinstance(entry, dict):
            raise DataError(f"{labels_path}: entry for {motion_id!r} must be an object")
        emotion, ok_e = labels_map.map("emotion", entry.get("emotion"))
        scenario, ok_s = labels_map.map("scenario", entry.get("scenario"))
        if not ok_e:
            raise DataError(f"{labels_path}: motion {motion_id!r} has unknown emotion {emotion!r} "
                            f"(known: {', '.join(EMOTIONS)}; pass a label map to translate it)")
        if not ok_s:
            raise DataError(f"{labels_path}: motion {motion_id!r} has unknown scenario {scenario!r} "
                            f"(known: {', '.join(SCENARIOS)}; pass a label map to translate it)")
        intensity = entry.get("intensity")
        if intensity is not None and not isinstance(intensity, (int, float)):
            raise DataError(f"{labels_path}: motion {motion_id!r} intensity {intensity!r} is not a number")
        num_frames = frames_index.get(motion_id)
        if num_frames is None:
            num_frames = _frame_count(root, motion_id)
        records.append(MotionRecord(
            motion_id=motion_id, split=split, captions=read_captions(root / TEXTS_DIR / f"{motion_id}.txt"),
            num_frames=int(num_frames), emotion=emotion, scenario=scenario,
            action=entry.get("action"), intensity=None if intensity is None else float(intensity),
        ))

    stats = _load_stats(root)
    dataset = MotionDataset(root, records, np.zeros(FEATURE_DIM, np.float32), np.ones(FEATURE_DIM, np.float32),
                            metadata, cache_bytes=cache_bytes)
    if stats is None:
        source = dataset.split("train") or dataset.records
        if not source:
            raise DataError(f"{root}: no motions listed in the split files")
        from l2emg.motion.features import compute_feature_stats

        mean, std = compute_feature_stats([dataset.features(r.motion_id) for r in source])
        dataset.mean, dataset.std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        which = "train split" if dataset.split("train") else "all motions"
        dataset.stats_note = f"computed from the {which} ({len(source)} motions): Mean.npy/Std.npy missing"
        warnings.warn(f"{root}: Mean.npy/Std.npy missing; feature statistics computed from the {which}",
                      stacklevel=2)
    else:
        dataset.mean, dataset.std = stats
    return dataset

