"""Tests for BVH export/import of the 22-joint skeleton."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from l2emg.errors import DataError
from l2emg.motion import bvh
from l2emg.motion.skeleton import (
    BONE_OFFSETS,
    JOINT_NAMES,
    NUM_JOINTS,
    REST_PELVIS_HEIGHT,
    bone_lengths,
    forward_kinematics,
    rest_pose,
)


def rigid_motion(seed: int, num_frames: int = 60, scale: float = 1.0) -> np.ndarray:
    """(T, 22, 3) motion of a rigid skeleton (BONE_OFFSETS times `scale`): smooth random local
    rotations up to ~1 rad (sums of sinusoids of random rotation vectors), full-turn root heading,
    and a wandering root."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, num_frames)[:, None, None]
    a, b = rng.normal(scale=0.5, size=(2, NUM_JOINTS, 3))
    freq = rng.uniform(0.5, 3.0, size=(NUM_JOINTS, 1))
    rotvec = a * np.sin(2 * np.pi * freq * t) + b * np.cos(2 * np.pi * 0.5 * freq * t)
    rotvec[:, 0, 1] += 2 * np.pi * rng.uniform(-1, 1) * t[:, 0, 0]  # root turns around
    local = Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_matrix().reshape(num_frames, NUM_JOINTS, 3, 3)
    root = np.cumsum(rng.normal(scale=0.05, size=(num_frames, 3)), axis=0)
    root[:, 1] = REST_PELVIS_HEIGHT * scale + 0.05 * np.sin(6 * t[:, 0, 0])
    return forward_kinematics(local, root, BONE_OFFSETS * scale)


@pytest.mark.parametrize("seed,scale", [(0, 1.0), (1, 0.8), (2, 1.15)])
def test_ik_reproduces_joints_exactly(seed, scale):
    joints = rigid_motion(seed, scale=scale)
    offsets, root, local = bvh.joints_to_local_rotations(joints)
    assert offsets.shape == (22, 3) and root.shape == (len(joints), 3) and local.shape == (len(joints), 22, 3, 3)
    err = np.linalg.norm(forward_kinematics(local, root, offsets) - joints, axis=-1).max()
    assert err < 1e-9, f"IK max error {err}"
    # proper rotations, leaves are identity, rest offsets have the motion's bone lengths
    np.testing.assert_allclose(np.linalg.det(local), 1.0, atol=1e-9)
    for leaf in (10, 11, 15, 20, 21):
        np.testing.assert_allclose(local[:, leaf], np.broadcast_to(np.eye(3), (len(joints), 3, 3)))
    np.testing.assert_allclose(np.linalg.norm(offsets[1:], axis=-1), bone_lengths(joints[0]), atol=1e-9)
    # the rest pose stays the canonical T-pose directions
    cos = (offsets[1:] * BONE_OFFSETS[1:]).sum(-1) / (
        np.linalg.norm(offsets[1:], axis=-1) * np.linalg.norm(BONE_OFFSETS[1:], axis=-1))
    assert cos.min() > 0.999


def test_ik_of_the_rest_pose_is_identity():
    joints = rest_pose()[None].repeat(3, axis=0)
    offsets, _, local = bvh.joints_to_local_rotations(joints)
    np.testing.assert_allclose(local, np.broadcast_to(np.eye(3), local.shape), atol=1e-9)
    np.testing.assert_allclose(offsets, BONE_OFFSETS, atol=1e-9)


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_bvh_round_trip_within_1mm(tmp_path, seed):
    joints = rigid_motion(seed, num_frames=40 + 20 * seed)
    path = tmp_path / "m.bvh"
    bvh.write_bvh(path, joints, fps=20)
    back, fps = bvh.read_bvh(path)
    assert fps == 20.0 and back.shape == joints.shape
    err = np.linalg.norm(back - joints, axis=-1).max()
    assert err < 1e-3, f"BVH round trip max error {err * 1000:.4f} mm"
    assert bvh.bvh_roundtrip_error(joints) == pytest.approx(err, abs=1e-9)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write leaves no temporary file


def test_bvh_header_layout(tmp_path):
    text = bvh.bvh_text(rigid_motion(6, num_frames=5), fps=30)
    names = re.findall(r"^\s*(?:ROOT|JOINT) (\S+)", text, flags=re.M)
    assert sorted(names) == sorted(JOINT_NAMES) and names[0] == "pelvis"
    channels = re.findall(r"CHANNELS (\d+) (.*)", text)
    assert channels[0] == ("6", "Xposition Yposition Zposition Zrotation Yrotation Xrotation")
    assert all(c == ("3", "Zrotation Yrotation Xrotation") for c in channels[1:]) and len(channels) == 22
    assert text.count("End Site") == 5
    assert "Frames: 5" in text and "Frame Time: 0.03333333" in text
    frame_lines = text.split("Frame Time:")[1].strip().splitlines()[1:]
    assert len(frame_lines) == 5 and all(len(line.split()) == 6 + 21 * 3 for line in frame_lines)


def test_read_accepts_other_channel_orders(tmp_path):
    """A file written with XYZ rotation channels (another tool's choice) reads back correctly."""
    joints = rigid_motion(7, num_frames=10)
    offsets, root, local = bvh.joints_to_local_rotations(joints)
    text = bvh.bvh_text(joints)
    order = bvh._depth_first_order()
    angles = bvh.rot.matrix_to_euler(local[:, order], "XYZ").reshape(len(joints), -1)
    head = text.split("MOTION")[0].replace("Zrotation Yrotation Xrotation", "Xrotation Yrotation Zrotation")
    rows = [" ".join(f"{v:.8f}" for v in np.concatenate([r, a])) for r, a in zip(root, angles)]
    path = tmp_path / "xyz.bvh"
    path.write_text(head + f"MOTION\nFrames: {len(joints)}\nFrame Time: 0.05\n" + "\n".join(rows) + "\n")
    back, _ = bvh.read_bvh(path)
    assert np.linalg.norm(back - joints, axis=-1).max() < 1e-3


# ---------------------------------------------------------------------------------------------
# malformed files
# ---------------------------------------------------------------------------------------------


@pytest.fixture()
def good_text() -> str:
    return bvh.bvh_text(rigid_motion(8, num_frames=4))


def _write(tmp_path, text: str):
    path = tmp_path / "bad.bvh"
    path.write_text(text)
    return path


def test_missing_hierarchy_is_refused(tmp_path, good_text):
    path = _write(tmp_path, good_text.replace("HIERARCHY", "HIERARCHIE", 1))
    with pytest.raises(DataError, match=r"bad\.bvh: line 1: expected 'HIERARCHY'"):
        bvh.read_bvh(path)


def test_missing_motion_is_refused(tmp_path, good_text):
    path = _write(tmp_path, good_text.split("MOTION")[0])
    with pytest.raises(DataError, match=r"bad\.bvh: no MOTION section"):
        bvh.read_bvh(path)


def test_wrong_joint_count_is_refused(tmp_path, good_text):
    # Drop the right wrist joint (a leaf block with its End Site) and its 3 channels per frame.
    lines = good_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "JOINT right_wrist")
    depth = 0
    for end in range(start + 1, len(lines)):
        depth += lines[end].count("{") - lines[end].count("}")
        if depth == 0:
            break
    kept = lines[:start] + lines[end + 1:]
    path = _write(tmp_path, "\n".join(kept) + "\n")
    with pytest.raises(DataError, match=r"bad\.bvh: HIERARCHY has 21 joints, expected 22"):
        bvh.read_bvh(path)


def test_wrong_channel_count_in_a_frame_line_is_refused(tmp_path, good_text):
    lines = good_text.splitlines()
    lines[-2] = " ".join(lines[-2].split()[:-1])  # the third of four frames loses a value
    path = _write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"bad\.bvh: line {len(lines) - 1}: frame has 68 values, expected 69"):
        bvh.read_bvh(path)


def test_non_numeric_value_is_refused(tmp_path, good_text):
    lines = good_text.splitlines()
    values = lines[-1].split()
    values[4] = "abc"
    lines[-1] = " ".join(values)
    path = _write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"bad\.bvh: line {len(lines)}: frame field 5 is not a number: 'abc'"):
        bvh.read_bvh(path)


def test_non_numeric_offset_is_refused(tmp_path, good_text):
    path = _write(tmp_path, good_text.replace("OFFSET 0.000000 0.000000 0.000000", "OFFSET 0.0 zero 0.0", 1))
    with pytest.raises(DataError, match=r"bad\.bvh: line 4: OFFSET field 2 is not a number"):
        bvh.read_bvh(path)


def test_frame_count_mismatch_and_missing_file_are_refused(tmp_path, good_text):
    path = _write(tmp_path, good_text.replace("Frames: 4", "Frames: 5"))
    with pytest.raises(DataError, match=r"Frames says 5 but the file has 4 frame lines"):
        bvh.read_bvh(path)
    with pytest.raises(DataError, match=r"nope\.bvh: BVH file not found"):
        bvh.read_bvh(tmp_path / "nope.bvh")
