"""HumanML3D compatibility: its equal-length folder layout loads, and the `humanml3d` feature
convention computes the root rotation, facing and 6D rotations as its `process_file` does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from l2emg.data.reader import load_dataset, read_split_file
from l2emg.data.validate import check_dataset, errors_only
from l2emg.motion import rotations as rot
from l2emg.motion.features import (
    canonicalize_joints,
    extract_features,
    facing_heading,
    humanml3d_heading,
    humanml3d_root_rot_vel,
    local_rotations_humanml3d,
    recover_joints,
)
from l2emg.motion.skeleton import KINEMATIC_CHAIN, RAW_OFFSETS
from test_formats import make_toy_dataset, toy_motion


@pytest.fixture(scope="module")
def humanml3d_folder(tmp_path_factory) -> Path:
    """A toy dataset rewritten as HumanML3D stores it: new_joints recovered from the features (as
    many frames as feature rows), no dataset.json, no labels.json."""
    root = tmp_path_factory.mktemp("hml") / "HumanML3D"
    make_toy_dataset(root, per_cell=1, scenarios=("Daily Life", "Sports"))
    for path in sorted((root / "new_joint_vecs").glob("*.npy")):
        features = np.load(path)
        np.save(root / "new_joints" / path.name, recover_joints(features).astype(np.float32))
    (root / "dataset.json").unlink()
    (root / "labels.json").unlink()
    return root


def test_humanml3d_layout_passes_check_and_loads(humanml3d_folder: Path):
    motion_id = read_split_file(humanml3d_folder / "train.txt")[0]
    joints = np.load(humanml3d_folder / "new_joints" / f"{motion_id}.npy")
    features = np.load(humanml3d_folder / "new_joint_vecs" / f"{motion_id}.npy")
    assert joints.shape[0] == features.shape[0]  # the layout under test
    assert errors_only(check_dataset(humanml3d_folder)) == []
    dataset = load_dataset(humanml3d_folder)
    record = dataset.by_id(motion_id)
    assert record.num_frames == features.shape[0] + 1
    assert dataset.features(motion_id).shape == features.shape
    assert dataset.joints(motion_id).shape == joints.shape
    assert dataset.feature_convention == "humanml3d"  # no dataset.json: HumanML3D's own folder


def test_ours_and_mismatched_layouts(tmp_path: Path, humanml3d_folder: Path):
    ours = tmp_path / "ours"
    make_toy_dataset(ours, per_cell=1, scenarios=("Daily Life",))
    assert errors_only(check_dataset(ours)) == []
    assert load_dataset(ours).feature_convention == "l2emg"  # dataset.json without the field
    broken = tmp_path / "broken"
    shutil.copytree(humanml3d_folder, broken)
    motion_id = read_split_file(broken / "train.txt")[0]
    path = broken / "new_joints" / f"{motion_id}.npy"
    np.save(path, np.load(path)[:-2])  # neither T nor T-1 frames
    errors = errors_only(check_dataset(broken))
    assert any("feature rows" in p.message and motion_id in p.path for p in errors), [str(p) for p in errors]


def test_humanml3d_facing_formula_on_a_hand_made_pose():
    """Hips facing +Z, shoulders turned a quarter to the left: HumanML3D's IK takes the hips in swapped
    order, across = (j1 − j2) + (j17 − j16), so its facing differs from the correct one."""
    pose = np.zeros((1, 22, 3))
    pose[0, 1] = (0.1, 0.9, 0.0)    # left hip (SMPL: +X is the body's left when facing +Z)
    pose[0, 2] = (-0.1, 0.9, 0.0)   # right hip
    pose[0, 16] = (0.0, 1.4, -0.2)  # left shoulder
    pose[0, 17] = (0.0, 1.4, 0.2)   # right shoulder
    # By hand: HumanML3D across = (0.2, 0, 0) + (0, 0, 0.4); forward = up x across = (a_z, 0, -a_x).
    forward = np.array([0.4, 0.0, -0.2])
    expected = np.arctan2(forward[0], forward[2])  # 116.6 degrees
    assert humanml3d_heading(pose, sigma=0)[0] == pytest.approx(expected)
    # The correct formula: across = (-0.2, 0, 0) + (0, 0, 0.4) -> forward (0.4, 0, 0.2): 63.4 degrees.
    assert facing_heading(pose)[0] == pytest.approx(np.arctan2(0.4, 0.2))


def _quat_between(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """HumanML3D's qbetween: w = |u||v| + u.v, xyz = u x v, normalised (w >= 0)."""
    q = np.concatenate([[np.linalg.norm(u) * np.linalg.norm(v) + u @ v], np.cross(u, v)])
    return q / np.linalg.norm(q)


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])


def test_humanml3d_root_rotation_velocity_flips_sign_across_180_degrees():
    """dim 0 as HumanML3D: arcsin(y of qbetween(f[t+1], +Z) · qbetween(f[t], +Z)^-1), quaternion by quaternion."""
    heading = np.deg2rad([170.0, 176.0, 179.0, -179.0, -175.0, -170.0])
    expected = []
    for h0, h1 in zip(heading[:-1], heading[1:]):
        q0 = _quat_between(np.array([np.sin(h0), 0, np.cos(h0)]), np.array([0.0, 0, 1]))
        q1 = _quat_between(np.array([np.sin(h1), 0, np.cos(h1)]), np.array([0.0, 0, 1]))
        q0_inv = q0 * np.array([1, -1, -1, -1])
        expected.append(np.arcsin(_quat_mul(q1, q0_inv)[2]))
    ours = humanml3d_root_rot_vel(heading)
    np.testing.assert_allclose(ours, expected, atol=1e-12)
    # The flip: a +2 degree turn across 180 degrees gives +1 degree instead of the -1 of its neighbours.
    assert ours[2] == pytest.approx(np.deg2rad(1.0)) and ours[1] == pytest.approx(np.deg2rad(-1.5))


def test_humanml3d_ik_chains_start_at_the_root_rotation():
    """local_k = R^-1 · S_k along each chain, R starting at rot_y(-heading): forward kinematics with
    HumanML3D's composition gives back every bone direction."""
    joints = toy_motion(3, 12)
    heading = humanml3d_heading(joints)
    local = local_rotations_humanml3d(joints, heading)
    for chain in KINEMATIC_CHAIN:
        accumulated = rot.rot_y(-heading)
        for parent, joint in zip(chain[:-1], chain[1:]):
            accumulated = accumulated @ local[:, joint - 1]
            bone = joints[:, joint] - joints[:, parent]
            direction = (accumulated @ RAW_OFFSETS[joint])
            np.testing.assert_allclose(direction, bone / np.linalg.norm(bone, axis=-1, keepdims=True), atol=1e-9)
    # Collars are relative to the root rotation, not to spine3 (HumanML3D issue #119).
    collar_swing = rot.matrix_between(RAW_OFFSETS[13], joints[:, 13] - joints[:, 9])
    np.testing.assert_allclose(local[:, 12], np.swapaxes(rot.rot_y(-heading), -1, -2) @ collar_swing, atol=1e-9)


def test_conventions_share_the_rest_and_recover():
    joints = toy_motion(5, 60)
    # Twist the upper body about the pelvis so that the two facing formulas disagree.
    upper = [3, 6, 9, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]
    pelvis = joints[:, :1]
    joints[:, upper] = pelvis + rot.rotate_y(joints[:, upper] - pelvis, 0.5)
    ours = extract_features(joints)
    theirs = extract_features(joints, convention="humanml3d")
    np.testing.assert_array_equal(ours[:, 3], theirs[:, 3])          # root height
    np.testing.assert_array_equal(ours[:, 259:], theirs[:, 259:])    # foot contacts
    assert not np.allclose(ours[:, 67:193], theirs[:, 67:193])       # 6D rotations differ
    # Recovered joints agree up to one rotation about Y (HumanML3D's frame-0 heading is not reset).
    a, b = recover_joints(ours), recover_joints(theirs)
    h0 = humanml3d_heading(canonicalize_joints(joints))[0]
    assert abs(h0) > 1e-3
    np.testing.assert_allclose(rot.rotate_y(b, h0), a, atol=1e-4)
    with pytest.raises(ValueError, match="convention"):
        extract_features(joints, convention="amass")


def test_dataset_json_records_the_convention(tmp_path: Path):
    root = tmp_path / "ds"
    make_toy_dataset(root, per_cell=1, scenarios=("Daily Life",))
    meta = json.loads((root / "dataset.json").read_text())
    meta["feature_convention"] = "humanml3d"
    (root / "dataset.json").write_text(json.dumps(meta))
    assert load_dataset(root).feature_convention == "humanml3d"
