"""Tests for dataset validation: a valid toy dataset passes; each way of breaking it is named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from l2emg.data.reader import read_split_file
from l2emg.data.validate import check_dataset, errors_only, require_valid
from l2emg.errors import DataError
from test_formats import make_toy_dataset


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("valid") / "ds"
    make_toy_dataset(root, per_cell=1, scenarios=("Daily Life", "Sports"))
    return root


@pytest.fixture
def ds(pristine: Path, tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    shutil.copytree(pristine, root)
    return root


def first_id(root: Path) -> str:
    return read_split_file(root / "train.txt")[0]


def only_error(root: Path, needle: str, where: str, **kwargs) -> None:
    """The expected problem is reported, naming the file."""
    errors = errors_only(check_dataset(root, **kwargs))
    assert errors, "the broken dataset passed the check"
    assert any(needle in p.message and where in p.path for p in errors), [str(p) for p in errors]


def test_valid_dataset_passes(ds: Path):
    assert check_dataset(ds) == []
    assert require_valid(ds) == []


def test_nan_in_features(ds: Path):
    path = ds / "new_joint_vecs" / f"{first_id(ds)}.npy"
    array = np.load(path)
    array[3, 10] = np.nan
    np.save(path, array)
    only_error(ds, "NaN/inf", path.name)


def test_inf_in_joints(ds: Path):
    path = ds / "new_joints" / f"{first_id(ds)}.npy"
    array = np.load(path)
    array[0, 0, 0] = np.inf
    np.save(path, array)
    only_error(ds, "NaN/inf", f"new_joints/{path.name}")


def test_features_not_263_wide(ds: Path):
    path = ds / "new_joint_vecs" / f"{first_id(ds)}.npy"
    np.save(path, np.load(path)[:, :251])
    only_error(ds, "(T-1, 263)", path.name)


def test_wrong_joint_count(ds: Path):
    path = ds / "new_joints" / f"{first_id(ds)}.npy"
    np.save(path, np.load(path)[:, :21])
    only_error(ds, "(T, 22, 3)", path.name)


def test_frame_count_mismatch(ds: Path):
    path = ds / "new_joint_vecs" / f"{first_id(ds)}.npy"
    np.save(path, np.load(path)[:-3])
    only_error(ds, "expected T-1", path.name)


def test_too_short_and_too_long(ds: Path):
    motion_id = first_id(ds)
    joints = np.load(ds / "new_joints" / f"{motion_id}.npy")
    feats = np.load(ds / "new_joint_vecs" / f"{motion_id}.npy")
    np.save(ds / "new_joints" / f"{motion_id}.npy", joints[:30])
    np.save(ds / "new_joint_vecs" / f"{motion_id}.npy", feats[:29])
    only_error(ds, "too short: 30 frames", motion_id)
    assert errors_only(check_dataset(ds, check_lengths=False)) == []  # real-data flag
    only_error(ds, "too long:", "new_joints", min_frames=10, max_frames=35)


def test_missing_caption_file(ds: Path):
    motion_id = first_id(ds)
    (ds / "texts" / f"{motion_id}.txt").unlink()
    only_error(ds, "caption file missing", f"{motion_id}.txt")


def test_empty_caption_file(ds: Path):
    motion_id = first_id(ds)
    (ds / "texts" / f"{motion_id}.txt").write_text("\n")
    only_error(ds, "caption file is empty", f"{motion_id}.txt")


def test_malformed_caption_line(ds: Path):
    motion_id = first_id(ds)
    path = ds / "texts" / f"{motion_id}.txt"
    path.write_text(path.read_text() + "a person waves#wave/VERB\n")
    only_error(ds, "malformed caption line", f"{motion_id}.txt:3")


def test_empty_caption_line(ds: Path):
    path = ds / "texts" / f"{first_id(ds)}.txt"
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n\n" + lines[1] + "\n")
    only_error(ds, "empty caption line", ":2")


def test_unknown_labels_and_label_map(ds: Path):
    labels = json.loads((ds / "labels.json").read_text())
    labels[first_id(ds)]["emotion"] = "melancholy"
    (ds / "labels.json").write_text(json.dumps(labels))
    only_error(ds, "unknown emotion 'melancholy'", "labels.json")
    assert errors_only(check_dataset(ds, label_map={"melancholy": "sad"})) == []


def test_unknown_scenario(ds: Path):
    labels = json.loads((ds / "labels.json").read_text())
    labels[first_id(ds)]["scenario"] = "Cooking"
    (ds / "labels.json").write_text(json.dumps(labels))
    only_error(ds, "unknown scenario 'Cooking'", "labels.json")


def test_split_entry_without_files(ds: Path):
    (ds / "val.txt").write_text((ds / "val.txt").read_text() + "ghost\n")
    only_error(ds, "file missing", "ghost.npy")
    only_error(ds, "caption file missing", "ghost.txt")


def test_motion_in_two_splits(ds: Path):
    (ds / "test.txt").write_text((ds / "test.txt").read_text() + first_id(ds) + "\n")
    only_error(ds, "also listed in train.txt", "test.txt")


def test_corrupt_npy(ds: Path):
    path = ds / "new_joint_vecs" / f"{first_id(ds)}.npy"
    path.write_bytes(b"\x93NUMPY garbage")
    only_error(ds, "unreadable or corrupt", path.name)


def test_pickled_npy_refused(ds: Path):
    path = ds / "new_joint_vecs" / f"{first_id(ds)}.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    only_error(ds, "unreadable or corrupt", path.name)


def test_std_wrong_shape_zero_or_nan(ds: Path):
    std = np.load(ds / "Std.npy")
    np.save(ds / "Std.npy", std[:200])
    only_error(ds, "expected shape (263,)", "Std.npy")
    zero = std.copy()
    zero[5] = 0.0
    np.save(ds / "Std.npy", zero)
    only_error(ds, "zero or negative std", "Std.npy")
    nan = std.copy()
    nan[7] = np.nan
    np.save(ds / "Std.npy", nan)
    only_error(ds, "NaN/inf", "Std.npy")


def test_missing_stats_is_only_a_warning(ds: Path):
    (ds / "Mean.npy").unlink()
    problems = check_dataset(ds)
    assert problems and all(p.severity == "warning" for p in problems)


def test_no_split_files_and_missing_folder(ds: Path, tmp_path: Path):
    for split in ("train", "val", "test"):
        (ds / f"{split}.txt").unlink()
    only_error(ds, "no split files", "ds")
    assert check_dataset(tmp_path / "absent")[0].message == "dataset folder not found"


def test_require_valid_raises_with_the_list(ds: Path):
    motion_id = first_id(ds)
    (ds / "texts" / f"{motion_id}.txt").unlink()
    with pytest.raises(DataError, match=rf"1 problem\(s\) found:\n .*{motion_id}.txt: caption file missing"):
        require_valid(ds)
