"""Check a HumanML3D-layout dataset folder file by file, and say exactly what is wrong where.

`check_dataset(root)` returns a list of `Problem`s (file, message, severity) instead of stopping at
the first one, so a user fixing a converted dataset sees everything at once. `require_valid` raises
a `DataError` listing them. Errors make a dataset unusable; warnings (e.g. Mean/Std missing, which the
loader recomputes) do not.

Checked: split files present, no motion in two splits, every listed motion has its three files;
`.npy` files readable without pickle, numeric, finite, joints (T, 22, 3), features (T-1, 263);
T within [min_frames, max_frames] (turn off with check_lengths=False for real data, whose loaders
filter instead); caption files present, non-empty, every line `caption#word/POS ...#start#end`;
labels known (after the label map); Mean/Std (263,), finite, std > 0; dataset.json readable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

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
    STD_FILE,
    TEXTS_DIR,
)
from l2emg.data.reader import read_split_file, read_split_files
from l2emg.data.records import Caption
from l2emg.errors import DataError
from l2emg.utils.io import load_npy


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" + (" (warning)" if self.severity == "warning" else "")


def _load_array(path: Path, problems: list[Problem]) -> np.ndarray | None:
    if not path.exists():
        problems.append(Problem(str(path), "file missing"))
        return None
    try:
        array = load_npy(path)
    except (ValueError, OSError, EOFError) as err:
        problems.append(Problem(str(path), f"unreadable or corrupt .npy file ({err})"))
        return None
    if not np.issubdtype(array.dtype, np.number):
        problems.append(Problem(str(path), f"expected a numeric array, got dtype {array.dtype}"))
        return None
    bad = ~np.isfinite(array)
    if bad.any():
        problems.append(Problem(str(path), f"{int(bad.sum())} NaN/inf value(s)"))
    return array


def _check_captions(path: Path, problems: list[Problem]) -> None:
    if not path.exists():
        problems.append(Problem(str(path), "caption file missing"))
        return
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (UnicodeDecodeError, OSError) as err:
        problems.append(Problem(str(path), f"unreadable caption file ({err})"))
        return
    if not any(line.strip() for line in lines):
        problems.append(Problem(str(path), "caption file is empty"))
        return
    for number, line in enumerate(lines, 1):
        if not line.strip():
            problems.append(Problem(f"{path}:{number}", "empty caption line"))
            continue
        try:
            Caption.from_line(line)
        except ValueError as err:
            problems.append(Problem(f"{path}:{number}", f"malformed caption line ({err})"))


def _check_motion(root: Path, motion_id: str, problems: list[Problem], min_frames: int, max_frames: int,
                  check_lengths: bool, joints_optional: bool) -> None:
    joints_path = root / JOINTS_DIR / f"{motion_id}.npy"
    features_path = root / FEATURES_DIR / f"{motion_id}.npy"
    joints = None
    if joints_path.exists() or not joints_optional:
        joints = _load_array(joints_path, problems)
        if joints is not None and (joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3)):
            problems.append(Problem(str(joints_path), f"expected joints of shape (T, {NUM_JOINTS}, 3), "
                                                      f"got {joints.shape}"))
            joints = None
    features = _load_array(features_path, problems)
    if features is not None and (features.ndim != 2 or features.shape[1] != FEATURE_DIM):
        problems.append(Problem(str(features_path), f"expected features of shape (T-1, {FEATURE_DIM}), "
                                                    f"got {features.shape}"))
        features = None
    # Two layouts: ours (T joint frames, T-1 feature rows) and HumanML3D's (its new_joints are
    # recovered from the features: as many frames as feature rows).
    if joints is not None and features is not None and features.shape[0] not in (joints.shape[0] - 1,
                                                                                   joints.shape[0]):
        problems.append(Problem(str(features_path), f"{features.shape[0]} feature rows but {joints.shape[0]} "
                                                    f"joint frames in {joints_path.name} (expected T-1 rows "
                                                    f"for T frames, or as many as HumanML3D stores)"))
    num_frames = features.shape[0] + 1 if features is not None else (joints.shape[0] if joints is not None else None)
    if check_lengths and num_frames is not None and not min_frames <= num_frames <= max_frames:
        kind = "too short" if num_frames < min_frames else "too long"
        problems.append(Problem(str(joints_path if joints is not None else features_path),
                                f"motion {kind}: {num_frames} frames, allowed {min_frames}..{max_frames}"))
    _check_captions(root / TEXTS_DIR / f"{motion_id}.txt", problems)


def _check_stats(root: Path, problems: list[Problem]) -> None:
    mean_path, std_path = root / MEAN_FILE, root / STD_FILE
    if not mean_path.exists() or not std_path.exists():
        problems.append(Problem(str(root), f"{MEAN_FILE}/{STD_FILE} missing; the loader will compute them from "
                                           f"the train split", "warning"))
        return
    for path in (mean_path, std_path):
        array = _load_array(path, problems)
        if array is None:
            continue
        if array.shape != (FEATURE_DIM,):
            problems.append(Problem(str(path), f"expected shape ({FEATURE_DIM},), got {array.shape}"))
        elif path == std_path and np.isfinite(array).all() and (array <= 0).any():
            problems.append(Problem(str(path), f"{int((array <= 0).sum())} zero or negative std entries"))


def _check_labels(root: Path, ids: set[str], label_map: LabelMap, problems: list[Problem],
                  labels_required: bool) -> None:
    path = root / LABELS_FILE
    if not path.exists():
        if labels_required:
            problems.append(Problem(str(path), "labels file missing (this folder's dataset.json says it has labels)"))
        return
    try:
        labels = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        problems.append(Problem(str(path), f"not valid JSON ({err})"))
        return
    if not isinstance(labels, dict):
        problems.append(Problem(str(path), "expected {id: {emotion, scenario, action, intensity}}"))
        return
    for motion_id, entry in labels.items():
        if not isinstance(entry, dict):
            problems.append(Problem(str(path), f"entry for {motion_id!r} is not an object"))
            continue
        for kind in ("emotion", "scenario"):
            value, ok = label_map.map(kind, entry.get(kind))
            if not ok:
                problems.append(Problem(str(path), f"motion {motion_id!r}: unknown {kind} {value!r}"))
        intensity = entry.get("intensity")
        if intensity is not None and (not isinstance(intensity, (int, float)) or not np.isfinite(intensity)):
            problems.append(Problem(str(path), f"motion {motion_id!r}: intensity {intensity!r} is not a number"))
    if labels_required:
        missing = sorted(ids - set(labels))
        if missing:
            problems.append(Problem(str(path), f"{len(missing)} motion(s) without labels, e.g. {missing[0]!r}"))


def check_dataset(root: str | Path, label_map: LabelMap | Mapping[str, Any] | str | Path | None = None,
                  min_frames: int = HUMANML3D_MIN_FRAMES, max_frames: int = HUMANML3D_MAX_FRAMES,
                  check_lengths: bool = True) -> list[Problem]:
    """Every problem found in the dataset folder `root` (empty list = valid)."""
    root = Path(root)
    if not root.is_dir():
        return [Problem(str(root), "dataset folder not found")]
    problems: list[Problem] = []
    label_map = LabelMap.from_any(label_map)

    metadata: dict[str, Any] = {}
    meta_path = root / META_FILE
    if meta_path.exists():
        try:
            metadata = json.loads(meta_path.read_text(encoding="utf-8"))
            if not isinstance(metadata, dict):
                raise ValueError("expected a JSON object")
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as err:
            problems.append(Problem(str(meta_path), f"not valid JSON metadata ({err})"))
            metadata = {}

    def listed_twice(path: Path, split: str, motion_id: str, first_split: str) -> None:
        problems.append(Problem(str(path), f"motion {motion_id!r} is also listed in {first_split}.txt"))

    split_of = read_split_files(root, listed_twice)
    if split_of is None:
        problems.append(Problem(str(root), "no split files (train.txt / val.txt / test.txt)"))
        split_of = {}
    elif not split_of:
        problems.append(Problem(str(root), "split files list no motions"))
    all_path = root / "all.txt"
    if all_path.exists():
        missing = sorted(set(split_of) - set(read_split_file(all_path)))
        if missing:
            problems.append(Problem(str(all_path), f"{len(missing)} motion(s) in split files but not here, "
                                                   f"e.g. {missing[0]!r}"))

    if metadata.get("num_motions") is not None and split_of and metadata["num_motions"] != len(split_of):
        problems.append(Problem(str(meta_path), f"num_motions is {metadata['num_motions']} but the split files "
                                                f"list {len(split_of)}"))
    joints_optional = not (root / JOINTS_DIR).is_dir()  # features-only datasets are allowed
    for motion_id in sorted(split_of):
        _check_motion(root, motion_id, problems, min_frames, max_frames, check_lengths, joints_optional)
    _check_stats(root, problems)
    _check_labels(root, set(split_of), label_map, problems, labels_required="generator" in metadata)
    return problems


def errors_only(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def require_valid(root: str | Path, label_map: LabelMap | Mapping[str, Any] | str | Path | None = None,
                  max_listed: int = 20, **kwargs: Any) -> list[Problem]:
    """Raise DataError listing the errors found in `root`; return the warnings otherwise."""
    problems = check_dataset(root, label_map, **kwargs)
    errors = errors_only(problems)
    if errors:
        listed = "\n  ".join(str(p) for p in errors[:max_listed])
        more = f"\n  … and {len(errors) - max_listed} more" if len(errors) > max_listed else ""
        raise DataError(f"{root}: {len(errors)} problem(s) found:\n  {listed}{more}")
    return [p for p in problems if p.severity == "warning"]
