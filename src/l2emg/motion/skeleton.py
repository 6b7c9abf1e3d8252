"""The 22-joint SMPL skeleton in HumanML3D's joint order, a canonical adult body, and forward kinematics.

Conventions (as HumanML3D): Y is up, the body faces +Z in its rest pose, the character's left is +X,
units are metres, 20 frames per second. The rest pose is a T-pose: arms along ±X, legs straight down.
"""

from __future__ import annotations

import numpy as np

FPS = 20
NUM_JOINTS = 22

JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
JOINT_INDEX = {name: i for i, name in enumerate(JOINT_NAMES)}

# Parent of each joint (-1 for the root); every parent index is smaller than its child's.
PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)

# HumanML3D's kinematic chains: right leg, left leg, spine+head, right arm, left arm.
KINEMATIC_CHAIN: tuple[tuple[int, ...], ...] = (
    (0, 2, 5, 8, 11),
    (0, 1, 4, 7, 10),
    (0, 3, 6, 9, 12, 15),
    (9, 14, 17, 19, 21),
    (9, 13, 16, 18, 20),
)

# HumanML3D's unit rest directions per joint (t2m_raw_offsets), used by inverse kinematics.
RAW_OFFSETS = np.array(
    [
        [0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0], [0, 1, 0],
        [0, -1, 0], [0, -1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0],
        [-1, 0, 0], [0, 0, 1], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0],
        [0, -1, 0],
    ],
    dtype=np.float64,
)

# Canonical adult body: offset of each joint from its parent in the rest pose, metres.
# Stature ≈ 1.72 m, leg 0.89 m (hip to floor), arm span ≈ 1.62 m.
BONE_OFFSETS = np.array(
    [
        [0.000, 0.000, 0.000],    # pelvis (placed by the root trajectory)
        [0.090, -0.080, 0.000],   # left_hip
        [-0.090, -0.080, 0.000],  # right_hip
        [0.000, 0.110, -0.010],   # spine1
        [0.000, -0.400, 0.000],   # left_knee   (thigh)
        [0.000, -0.400, 0.000],   # right_knee
        [0.000, 0.130, 0.000],    # spine2
        [0.000, -0.410, 0.000],   # left_ankle  (shin)
        [0.000, -0.410, 0.000],   # right_ankle
        [0.000, 0.050, 0.020],    # spine3
        [0.000, -0.050, 0.120],   # left_foot   (ankle to ball of the foot)
        [0.000, -0.050, 0.120],   # right_foot
        [0.000, 0.210, -0.020],   # neck
        [0.080, 0.120, -0.010],   # left_collar
        [-0.080, 0.120, -0.010],  # right_collar
        [0.000, 0.090, 0.040],    # head
        [0.110, 0.040, 0.000],    # left_shoulder
        [-0.110, 0.040, 0.000],   # right_shoulder
        [0.270, 0.000, 0.000],    # left_elbow  (upper arm)
        [-0.270, 0.000, 0.000],   # right_elbow
        [0.250, 0.000, 0.000],    # left_wrist  (forearm)
        [-0.250, 0.000, 0.000],   # right_wrist
    ],
    dtype=np.float64,
)

# Height of the ankle joint above the floor when the sole is flat, and the pelvis height at rest.
ANKLE_HEIGHT = 0.08
REST_PELVIS_HEIGHT = -(BONE_OFFSETS[1, 1] + BONE_OFFSETS[4, 1] + BONE_OFFSETS[7, 1]) + ANKLE_HEIGHT

FOOT_JOINTS_LEFT = (7, 10)   # ankle, foot
FOOT_JOINTS_RIGHT = (8, 11)
FACE_JOINTS = (2, 1, 17, 16)  # right hip, left hip, right shoulder, left shoulder (HumanML3D's face_joint_indx)


def children(joint: int) -> list[int]:
    return [j for j, p in enumerate(PARENTS) if p == joint]


def forward_kinematics(
    local_rotations: np.ndarray, root_positions: np.ndarray, offsets: np.ndarray = BONE_OFFSETS
) -> np.ndarray:
    """Joint positions from per-joint local rotations and a root trajectory.

    local_rotations: (T, 22, 3, 3) rotation of each joint relative to its parent's frame
        (the root's is its global orientation).
    root_positions: (T, 3) pelvis position.
    offsets: (22, 3) rest offsets from each joint's parent.
    Returns joints (T, 22, 3).
    """
    local_rotations = np.asarray(local_rotations, dtype=np.float64)
    root_positions = np.asarray(root_positions, dtype=np.float64)
    if local_rotations.shape[1:] != (NUM_JOINTS, 3, 3):
        raise ValueError(f"local_rotations must be (T, {NUM_JOINTS}, 3, 3), got {local_rotations.shape}")
    num_frames = local_rotations.shape[0]
    global_rot = np.empty_like(local_rotations)
    joints = np.empty((num_frames, NUM_JOINTS, 3), dtype=np.float64)
    global_rot[:, 0] = local_rotations[:, 0]
    joints[:, 0] = root_positions
    for j in range(1, NUM_JOINTS):
        p = PARENTS[j]
        global_rot[:, j] = global_rot[:, p] @ local_rotations[:, j]
        joints[:, j] = joints[:, p] + global_rot[:, p] @ offsets[j]
    return joints


def rest_pose(offsets: np.ndarray = BONE_OFFSETS) -> np.ndarray:
    """(22, 3) joint positions of the T-pose with the feet on the floor."""
    eye = np.broadcast_to(np.eye(3), (1, NUM_JOINTS, 3, 3))
    root = np.array([[0.0, REST_PELVIS_HEIGHT, 0.0]])
    return forward_kinematics(eye, root, offsets)[0]


def bone_lengths(joints: np.ndarray) -> np.ndarray:
    """(..., 21) length of each bone (joint 1..21 to its parent) for joints (..., 22, 3)."""
    parents = np.array(PARENTS[1:])
    return np.linalg.norm(joints[..., 1:, :] - joints[..., parents, :], axis=-1)
