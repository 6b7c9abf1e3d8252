"""Plausibility measures: clean motions pass, deliberately broken ones are caught."""

from __future__ import annotations

import numpy as np
import pytest

from l2emg.data.synth.body import pose_joints, standing_track
from l2emg.data.synth.rotations import rot_x
from l2emg.motion.quality import SKATE_SPEED, joint_angles, motion_quality, summarize_quality
from l2emg.motion.skeleton import JOINT_INDEX as J
from l2emg.motion.skeleton import NUM_JOINTS, REST_PELVIS_HEIGHT, forward_kinematics


@pytest.fixture()
def standing() -> np.ndarray:
    return pose_joints(standing_track(40))


def test_clean_standing_motion_passes(standing):
    q = motion_quality(standing)
    assert q.contact_fraction == 1.0
    assert q.skate_speed_cm_s == pytest.approx(0.0, abs=1e-6) and q.skate_fraction == 0.0
    assert q.penetration_cm == 0.0 and q.min_height_cm == pytest.approx(3.0, abs=0.01)
    assert q.limit_violation_deg == 0.0 and q.worst_limit == ""
    assert q.max_jump_m < 1e-9


def test_sliding_feet_are_detected(standing):
    sliding = standing.copy()
    sliding[:, :, 2] += np.arange(40)[:, None] * (1.0 / 20)     # the whole body glides at 1 m/s
    q = motion_quality(sliding)
    assert q.skate_speed_cm_s == pytest.approx(100.0, rel=1e-6)
    assert q.skate_fraction == 1.0 and 1.0 > SKATE_SPEED
    slow = standing.copy()
    slow[:, :, 2] += np.arange(40)[:, None] * (0.2 / 20)        # 20 cm/s: measured, below the threshold
    q = motion_quality(slow)
    assert q.skate_speed_cm_s == pytest.approx(20.0, rel=1e-6) and q.skate_fraction == 0.0


def test_floor_penetration_is_detected(standing):
    sunk = standing.copy()
    sunk[:, :, 1] -= 0.05
    q = motion_quality(sunk)
    assert q.penetration_cm == pytest.approx(2.0, abs=0.01)     # the ball of the foot rests 3 cm up
    # With the floor estimated from the data the same motion is on the floor.
    assert motion_quality(sunk, floor_height=None).penetration_cm == pytest.approx(0.0, abs=1e-9)


def _bent_knees(angle_deg: float) -> np.ndarray:
    local = np.broadcast_to(np.eye(3), (10, NUM_JOINTS, 3, 3)).copy()
    local[:, J["left_knee"]] = rot_x(np.radians(np.full(10, angle_deg)))
    root = np.tile([0.0, REST_PELVIS_HEIGHT, 0.0], (10, 1))
    return forward_kinematics(local, root)


def test_knee_flexion_is_signed_and_hyperextension_is_caught():
    bent = _bent_knees(40.0)
    assert joint_angles(bent)["knee"][:, 0] == pytest.approx(np.full(10, 40.0), abs=1e-6)
    assert motion_quality(bent).limit_violation_deg == 0.0
    hyper = _bent_knees(-25.0)
    assert joint_angles(hyper)["knee"][:, 0] == pytest.approx(np.full(10, -25.0), abs=1e-6)
    q = motion_quality(hyper)
    assert q.worst_limit == "knee" and q.limit_violation_deg == pytest.approx(20.0, abs=1e-6)
    assert q.limit_violation_fraction == 1.0


def test_overbent_elbow_and_frame_jump_are_caught(standing):
    local = np.broadcast_to(np.eye(3), (10, NUM_JOINTS, 3, 3)).copy()
    from l2emg.data.synth.rotations import rot_y
    local[:, J["left_elbow"]] = rot_y(np.radians(np.full(10, -175.0)))
    q = motion_quality(forward_kinematics(local, np.tile([0.0, REST_PELVIS_HEIGHT, 0.0], (10, 1))))
    assert q.worst_limit == "elbow" and q.limit_violation_deg == pytest.approx(15.0, abs=1e-6)
    popped = standing.copy()
    popped[20:, J["left_wrist"]] += np.array([0.0, 0.5, 0.0])
    assert motion_quality(popped).max_jump_m == pytest.approx(0.5, abs=1e-9)


def test_summary_and_bad_input(standing):
    sliding = standing.copy()
    sliding[:, :, 0] += np.arange(40)[:, None] * 0.05
    summary = summarize_quality([standing, sliding])
    assert summary["num_motions"] == 2
    assert summary["skate_speed_cm_s"] == pytest.approx(50.0, rel=1e-6)   # pooled over equal contact counts
    assert summary["skate_speed_cm_s_max"] == pytest.approx(100.0, rel=1e-6)
    assert summary["penetration_cm_max"] == 0.0
    with pytest.raises(ValueError):
        motion_quality(np.zeros((10, 21, 3)))
    with pytest.raises(ValueError):
        summarize_quality([])
