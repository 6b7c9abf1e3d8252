"""HumanML3D's 263-d motion representation: canonicalise, extract, recover, normalise.

Layout of one feature row (frame t, computed from frames t and t+1; T frames give T-1 rows):

====  ===========  =====================================================================
dims  name         meaning
====  ===========  =====================================================================
0     root_rot_vel half the heading change from frame t to t+1, *negated* (HumanML3D's
                   ``arcsin`` of the y component of ``r_rot[t+1] * r_rot[t]^-1``, where
                   ``r_rot`` turns the world into the body's facing frame)
1:3   root_lin_vel root XZ displacement t -> t+1 in the facing frame of frame t+1
3     root_y       root height at frame t
4:67  ric          joints 1..21 at frame t relative to the root's XZ, in the facing frame
67:193 rot6d       joints 1..21 local rotations (continuous 6D) from inverse kinematics
193:259 local_vel  displacement t -> t+1 of all 22 joints in the facing frame of frame t
259:263 contact    foot contacts: left ankle, left foot, right ankle, right foot (0/1)
====  ===========  =====================================================================

Conventions (as HumanML3D's ``motion_process.py``): Y up, the canonical body faces +Z at frame 0,
the facing direction is ``up x ((r_hip - l_hip) + (r_shoulder - l_shoulder))``, recovery integrates
the heading from 0 and the root XZ from the origin, and the root height is read from dim 3.

Documented choices where HumanML3D is ambiguous or buggy:
- Foot contact is velocity-only: squared displacement between consecutive frames < 0.002 m²
  (HumanML3D's released ``foot_detect`` computes a height factor but never uses it).
- The facing direction is used per frame, unsmoothed by default (HumanML3D smooths it with a
  Gaussian of sigma 20 frames and then forces frame 0 to identity, a jump at frame 0);
  ``facing_smooth_sigma`` re-enables smoothing, anchored so the heading at frame 0 stays 0.
- Inverse kinematics follows HumanML3D's chains: each bone's rotation is the minimal rotation
  from its ``RAW_OFFSETS`` direction to its current direction, stored relative to the previous
  bone of its chain. Two deliberate fixes: (a) the swings are computed in each frame's facing
  frame, so the 6D features do not depend on the heading (HumanML3D computes them in world
  coordinates and composes the first bone of each chain with the inverse root rotation, so its
  6D values change when the same pose faces another way); (b) the collars are relative to the
  spine3 bone, not to the root (HumanML3D issue #119, "incorrect starting rotation for arm
  chains").
- No retargeting to a reference skeleton (HumanML3D's ``uniform_skeleton``): features keep the
  motion's own bone lengths.

Two conventions (``extract_features(..., convention=...)``; docs/design.md, "Feature conventions",
lists every difference from HumanML3D's ``process_file``):
- ``"l2emg"`` (the default, used by the embedded benchmark): the choices above.
- ``"humanml3d"``: the per-frame root rotation exactly as ``process_file`` computes it, for motions
  that are mixed with HumanML3D's released features: the facing vector comes from the hips taken
  in swapped order (its ``inverse_kinematics_np`` unpacks ``l_hip, r_hip = 2, 1``, so the across
  vector is (left hip − right hip) + (right shoulder − left shoulder)), it is Gaussian-smoothed
  (σ = 20 frames, on the direction vectors) and *not* reset to 0 at frame 0, the rotation
  velocity is ``arcsin`` of the relative root quaternion (its sign flips where the heading crosses
  ±180°), and the 6D rotations are HumanML3D's world-space swings composed with the inverse root
  rotation, collars relative to the root. Still not reproduced: ``uniform_skeleton`` (it needs
  HumanML3D's reference skeleton, taken from its motion 000021) and the NaN of a body facing
  exactly −Z (here: that frame's heading is ±180° like any other).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from l2emg.motion import rotations as rot
from l2emg.motion.skeleton import (
    FACE_JOINTS,
    FOOT_JOINTS_LEFT,
    FOOT_JOINTS_RIGHT,
    KINEMATIC_CHAIN,
    NUM_JOINTS,
    PARENTS,
    RAW_OFFSETS,
)

Array = Any  # np.ndarray or torch.Tensor

FEATURE_DIM = 263
ROOT_ROT_VEL = slice(0, 1)
ROOT_LIN_VEL = slice(1, 3)
ROOT_Y = slice(3, 4)
ROOT = slice(0, 4)  # all root dims: rotation velocity, xz velocity, height
RIC = slice(4, 67)
ROT6D = slice(67, 193)
LOCAL_VEL = slice(193, 259)
FOOT_CONTACT = slice(259, 263)

FEATURE_GROUPS: dict[str, slice] = {
    "root_rot_vel": ROOT_ROT_VEL,
    "root_lin_vel": ROOT_LIN_VEL,
    "root_y": ROOT_Y,
    "ric": RIC,
    "rot6d": ROT6D,
    "local_vel": LOCAL_VEL,
    "foot_contact": FOOT_CONTACT,
}

CONTACT_THRESHOLD = 0.002  # m² per frame (HumanML3D's feet_thre)
STD_FLOOR = 1e-3  # smallest std after group averaging, so normalising never divides by ~0

_FOOT_JOINTS = np.array(FOOT_JOINTS_LEFT + FOOT_JOINTS_RIGHT)


def _ik_frame_parents() -> np.ndarray:
    """For bones 1..21: index into [root frame, bone 1, ..., bone 21] of the frame each is relative to."""
    frame_parent = np.zeros(NUM_JOINTS - 1, dtype=np.int64)
    for chain in KINEMATIC_CHAIN:
        for prev, bone in zip(chain[1:-1], chain[2:]):
            frame_parent[bone - 1] = prev  # bone k sits at position k in the stacked frames
        # First bone of a chain: the root's facing frame (legs, spine) or the bone ending at the
        # chain's first joint (arms: collars follow spine3, the fix of HumanML3D issue #119).
        frame_parent[chain[1] - 1] = chain[0]
    return frame_parent


_IK_FRAME_PARENT = _ik_frame_parents()
_BONE_PARENTS = np.array(PARENTS[1:])


def _check_joints(joints: np.ndarray, min_frames: int = 1) -> np.ndarray:
    joints = np.asarray(joints)
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"joints must be (T, {NUM_JOINTS}, 3), got {joints.shape}")
    if joints.shape[0] < min_frames:
        raise ValueError(f"need at least {min_frames} frames, got {joints.shape[0]}")
    if not np.all(np.isfinite(joints)):
        raise ValueError("joints contain NaN or inf")
    return joints


def facing_heading(joints: np.ndarray) -> np.ndarray:
    """(T,) heading angle (radians) of the body: rot_y(angle) @ +Z is the facing direction.

    Facing = up x across, across = (right hip - left hip) + (right shoulder - left shoulder).
    Frames where the across vector is (nearly) vertical, e.g. lying on the side, reuse the
    previous well-defined frame's heading (0 if none).
    """
    r_hip, l_hip, r_sdr, l_sdr = FACE_JOINTS
    across = (joints[:, r_hip] - joints[:, l_hip]) + (joints[:, r_sdr] - joints[:, l_sdr])
    # up x across = (across_z, 0, -across_x)
    fx, fz = across[:, 2], -across[:, 0]
    valid = np.hypot(fx, fz) > 1e-6
    heading = np.arctan2(fx, fz)
    if not np.all(valid):
        idx = np.where(valid, np.arange(len(heading)), -1)
        idx = np.maximum.accumulate(idx)
        heading = np.where(idx >= 0, heading[np.maximum(idx, 0)], 0.0)
    return heading


def canonicalize_joints(joints: np.ndarray) -> np.ndarray:
    """Put a motion (T, 22, 3) in HumanML3D's canonical placement.

    The lowest joint over the whole clip touches y = 0, the root's XZ at frame 0 is the origin, and
    the body faces +Z at frame 0. Returns the same float dtype as the input (float64 for ints).
    """
    joints = _check_joints(joints)
    out_dtype = joints.dtype if np.issubdtype(joints.dtype, np.floating) else np.float64
    j = joints.astype(np.float64, copy=True)
    j[..., 1] -= j[..., 1].min()
    j[..., 0] -= j[0, 0, 0]
    j[..., 2] -= j[0, 0, 2]
    heading0 = facing_heading(j[:1])[0]
    j = rot.rotate_y(j, -heading0)
    return j.astype(out_dtype, copy=False)


def local_rotations_ik(joints: np.ndarray, heading: np.ndarray) -> np.ndarray:
    """HumanML3D-style IK: (T, 21, 3, 3) local rotations of joints 1..21.

    joints: (T, 22, 3); heading: (T,) root heading. Each bone (parent -> joint k), seen in its
    frame's facing frame, gets the minimal rotation from RAW_OFFSETS[k] to its direction; it is
    expressed relative to the previous bone of its kinematic chain; the first bone of a chain
    starting at the pelvis is relative to the facing frame, the collars to the spine3 bone.
    Chaining rot_y(heading) @ local[...] along a chain maps RAW_OFFSETS[k] onto the world bone.
    """
    # Bones in each frame's facing frame, so the swings (and the features) ignore the heading.
    bones = rot.rotate_y(joints[:, 1:] - joints[:, _BONE_PARENTS], -heading[:, None])  # (T, 21, 3)
    facing_bone = rot.matrix_between(np.broadcast_to(RAW_OFFSETS[1:], bones.shape), bones)
    root_frame = np.broadcast_to(np.eye(3), (len(bones), 1, 3, 3))  # the facing frame itself
    frames = np.concatenate([root_frame, facing_bone], axis=1)  # (T, 22, 3, 3)
    parent_frame = frames[:, _IK_FRAME_PARENT]  # (T, 21, 3, 3)
    return np.swapaxes(parent_frame, -1, -2) @ facing_bone


HUMANML3D_FACING_SIGMA = 20.0  # frames (process_file: inverse_kinematics_np(..., smooth_forward=True))
FEATURE_CONVENTIONS: tuple[str, ...] = ("l2emg", "humanml3d")


def humanml3d_heading(joints: np.ndarray, sigma: float = HUMANML3D_FACING_SIGMA) -> np.ndarray:
    """(T,) root heading as HumanML3D's ``process_file`` derives it, in (−π, π].

    ``inverse_kinematics_np`` unpacks ``l_hip, r_hip, sdr_r, sdr_l`` from ``face_joint_indx =
    [2, 1, 17, 16]``, so its across vector is (joint 1 − joint 2) + (joint 17 − joint 16): the hips
    enter with the opposite sign of the shoulders. The unit across vector gives forward = up ×
    across, which is Gaussian-smoothed over frames (``sigma``, mode "nearest") and normalised.
    Frames with a vertical across vector reuse the previous well-defined one (HumanML3D: NaN).
    """
    r_hip, l_hip, r_sdr, l_sdr = FACE_JOINTS
    across = (joints[:, l_hip] - joints[:, r_hip]) + (joints[:, r_sdr] - joints[:, l_sdr])
    length = np.linalg.norm(across, axis=-1)
    valid = np.hypot(across[:, 0], across[:, 2]) > 1e-6
    if not np.any(valid):
        return np.zeros(len(joints))
    idx = np.maximum.accumulate(np.where(valid, np.arange(len(joints)), -1))
    idx = np.where(idx >= 0, idx, int(np.argmax(valid)))
    across = across[idx] / length[idx, None]
    forward = np.stack([across[:, 2], np.zeros(len(across)), -across[:, 0]], axis=-1)  # up x across
    if sigma > 0:
        forward = gaussian_filter1d(forward, sigma, axis=0, mode="nearest")
    return np.arctan2(forward[:, 0], forward[:, 2])


def humanml3d_root_rot_vel(heading: np.ndarray) -> np.ndarray:
    """(T-1,) HumanML3D's dim 0: ``arcsin`` of the y part of r_rot[t+1] · r_rot[t]⁻¹.

    r_rot[t] is the root quaternion (cos(h/2), 0, −sin(h/2), 0) with h wrapped to (−π, π] (its
    ``qbetween`` keeps w ≥ 0), so the value is arcsin(−sin(Δ/2)) with Δ the *wrapped* difference:
    −Δ/2 except where the heading crosses ±180°, where the sign flips.
    """
    wrapped = np.angle(np.exp(1j * heading))  # (−π, π]
    return np.arcsin(np.clip(-np.sin(0.5 * np.diff(wrapped)), -1.0, 1.0))


def local_rotations_humanml3d(joints: np.ndarray, heading: np.ndarray) -> np.ndarray:
    """HumanML3D's IK: (T, 21, 3, 3) local rotations of joints 1..21 as ``inverse_kinematics_np``.

    Each bone's world swing S_k (minimal rotation from RAW_OFFSETS[k] to its world direction) is
    stored relative to the accumulated rotation of its chain, which starts at the root rotation
    r_rot = rot_y(−heading) for every chain (the arm chains too: collars relative to the root):
    local_k = R⁻¹ S_k, then R = S_k.
    """
    bones = joints[:, 1:] - joints[:, _BONE_PARENTS]
    swings = rot.matrix_between(np.broadcast_to(RAW_OFFSETS[1:], bones.shape), bones)  # (T, 21, 3, 3)
    root = rot.rot_y(-heading)  # (T, 3, 3)
    local = np.empty_like(swings)
    for chain in KINEMATIC_CHAIN:
        accumulated = root
        for joint in chain[1:]:
            local[:, joint - 1] = np.swapaxes(accumulated, -1, -2) @ swings[:, joint - 1]
            accumulated = swings[:, joint - 1]
    return local


def _smooth_heading(heading: np.ndarray, sigma: float) -> np.ndarray:
    """Unwrapped heading, optionally Gaussian-smoothed, shifted so frame 0 is exactly 0."""
    heading = np.unwrap(heading)
    if sigma > 0:
        heading = gaussian_filter1d(heading, sigma, mode="nearest")
    return heading - heading[0]


def extract_features(
    joints: np.ndarray,
    contact_threshold: float = CONTACT_THRESHOLD,
    facing_smooth_sigma: float = 0.0,
    convention: str = "l2emg",
) -> np.ndarray:
    """Joint positions (T, 22, 3) in any placement -> (T-1, 263) float32 features.

    The motion is canonicalised first (canonicalize_joints), so with the default convention
    ``recover_joints(extract_features(j)) ≈ canonicalize_joints(j)[:-1]``. With
    ``convention="humanml3d"`` the features are HumanML3D's (module docstring; facing_smooth_sigma
    is then HumanML3D's 20) and the recovered motion is turned by that convention's frame-0 heading,
    as HumanML3D's own ``new_joints`` are.
    """
    if convention not in FEATURE_CONVENTIONS:
        raise ValueError(f"convention must be one of {FEATURE_CONVENTIONS}, got {convention!r}")
    j = canonicalize_joints(_check_joints(joints, min_frames=2)).astype(np.float64)
    num_frames = j.shape[0]
    root = j[:, 0]  # (T, 3)
    if convention == "humanml3d":
        heading = humanml3d_heading(j)  # (T,)
        root_rot_vel = humanml3d_root_rot_vel(heading)
        local = local_rotations_humanml3d(j, heading)
    else:
        heading = _smooth_heading(facing_heading(j), facing_smooth_sigma)  # (T,)
        # Half the heading change, negated (HumanML3D's sign), without its wrap-around flip.
        root_rot_vel = -0.5 * np.diff(heading)  # (T-1,)
        local = local_rotations_ik(j, heading)  # (T, 21, 3, 3)

    # Root XZ velocity in the next facing frame.
    root_vel = rot.rotate_y(root[1:] - root[:-1], -heading[1:])  # (T-1, 3)
    root_y = root[:-1, 1]

    # ric: joints relative to the root's XZ, rotated into the facing frame.
    rel = j[:, 1:].copy()
    rel[..., 0] -= root[:, None, 0]
    rel[..., 2] -= root[:, None, 2]
    ric = rot.rotate_y(rel, -heading[:, None])  # (T, 21, 3)

    rot6d = rot.matrix_to_cont6d(local)  # (T, 21, 6)

    local_vel = rot.rotate_y(j[1:] - j[:-1], -heading[:-1, None])  # (T-1, 22, 3)

    foot = j[:, _FOOT_JOINTS]  # (T, 4, 3)
    contact = (((foot[1:] - foot[:-1]) ** 2).sum(-1) < contact_threshold).astype(np.float64)

    n = num_frames - 1
    features = np.concatenate(
        [
            root_rot_vel[:, None],
            root_vel[:, [0, 2]],
            root_y[:, None],
            ric[:-1].reshape(n, -1),
            rot6d[:-1].reshape(n, -1),
            local_vel.reshape(n, -1),
            contact,
        ],
        axis=-1,
    )
    assert features.shape[1] == FEATURE_DIM
    return features.astype(np.float32)


def _cumsum(x: Array, axis: int = -1) -> Array:
    return torch.cumsum(x, dim=axis) if isinstance(x, torch.Tensor) else np.cumsum(x, axis=axis)


def _zeros_front(x: Array) -> Array:
    """Prepend one zero along the last axis: (..., n) -> (..., n+1)."""
    if isinstance(x, torch.Tensor):
        return torch.cat([torch.zeros_like(x[..., :1]), x], dim=-1)
    return np.concatenate([np.zeros_like(x[..., :1]), x], axis=-1)


def _check_features(features: Array) -> None:
    if features.ndim < 2 or features.shape[-1] != FEATURE_DIM:
        raise ValueError(f"features must be (..., T, {FEATURE_DIM}), got {tuple(features.shape)}")


def recover_root(features: Array) -> tuple[Array, Array]:
    """Integrate the root: (..., T, 263) -> heading (..., T) radians and root positions (..., T, 3).

    Frame 0 has heading 0 and root XZ at the origin (the canonical placement). numpy or torch in,
    same type out (numpy computed in float64 and cast back to the input's dtype).
    """
    _check_features(features)
    if isinstance(features, torch.Tensor):
        return _integrate_root(features)
    heading, root = _integrate_root(np.asarray(features, dtype=np.float64))
    out_dtype = _out_dtype(features)
    return heading.astype(out_dtype), root.astype(out_dtype)


def _integrate_root(f: Array) -> tuple[Array, Array]:
    """recover_root without checks or casts (float64 numpy or any torch tensor)."""
    half = f[..., 0]
    heading = -2.0 * (_cumsum(half) - half)  # exclusive cumulative sum: heading[0] = 0
    nxt = heading[..., 1:]
    step = _stack_last([f[..., :-1, 1], f[..., :-1, 1] * 0.0, f[..., :-1, 2]])  # (..., T-1, 3)
    disp = rot.rotate_y(step, nxt)  # world displacement t -> t+1
    root_x = _zeros_front(_cumsum(disp[..., 0]))
    root_z = _zeros_front(_cumsum(disp[..., 2]))
    root = _stack_last([root_x, f[..., 3], root_z])
    return heading, root


def _stack_last(parts: list[Array]) -> Array:
    if isinstance(parts[0], torch.Tensor):
        return torch.stack(parts, dim=-1)
    return np.stack(parts, axis=-1)


def _out_dtype(features: Array) -> np.dtype:
    dtype = np.asarray(features).dtype
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


def recover_joints(features: Array) -> Array:
    """Features (..., T, 263) -> joint positions (..., T, 22, 3) from the root and ric dims.

    numpy in -> numpy out (input dtype); torch in -> torch out (same dtype/device, differentiable,
    any leading batch axes).
    """
    _check_features(features)
    is_torch = isinstance(features, torch.Tensor)
    f = features if is_torch else np.asarray(features, dtype=np.float64)
    heading, root = _integrate_root(f)
    ric = f[..., RIC].reshape(*f.shape[:-1], NUM_JOINTS - 1, 3)  # (..., T, 21, 3)
    world = rot.rotate_y(ric, heading[..., None])
    offset = _stack_last([root[..., 0], root[..., 0] * 0.0, root[..., 2]])[..., None, :]
    world = world + offset
    if is_torch:
        joints = torch.cat([root[..., None, :], world], dim=-2)
        return joints
    joints = np.concatenate([root[..., None, :], world], axis=-2)
    return joints.astype(_out_dtype(features))


def feature_roundtrip_error(joints: np.ndarray) -> float:
    """Max distance (metres) between recover_joints(extract_features(j)) and canonicalize_joints(j)[:-1]."""
    joints = _check_joints(joints, min_frames=2)
    recovered = recover_joints(extract_features(joints)).astype(np.float64)
    target = canonicalize_joints(joints.astype(np.float64))[:-1]
    return float(np.linalg.norm(recovered - target, axis=-1).max())


def compute_feature_stats(
    features: Sequence[np.ndarray], std_floor: float = STD_FLOOR
) -> tuple[np.ndarray, np.ndarray]:
    """HumanML3D-style statistics over a list of (T_i, 263) arrays -> mean (263,), std (263,) float32.

    The std of each feature group (FEATURE_GROUPS) is replaced by its mean over the group, so the
    relative scale inside a group survives normalisation; every std is at least std_floor.
    """
    if len(features) == 0:
        raise ValueError("compute_feature_stats needs at least one feature array")
    for i, f in enumerate(features):
        if np.ndim(f) != 2 or np.shape(f)[1] != FEATURE_DIM:
            raise ValueError(f"features[{i}] must be (T, {FEATURE_DIM}), got {np.shape(f)}")
    data = np.concatenate([np.asarray(f, dtype=np.float64) for f in features], axis=0)
    mean = data.mean(axis=0)
    std = data.std(axis=0)
    for group in FEATURE_GROUPS.values():
        std[group] = std[group].mean()
    std = np.maximum(std, std_floor)
    return mean.astype(np.float32), std.astype(np.float32)


def _like(stat: Array, features: Array) -> Array:
    if isinstance(features, torch.Tensor):
        return torch.as_tensor(np.asarray(stat) if not isinstance(stat, torch.Tensor) else stat).to(
            device=features.device, dtype=features.dtype
        )
    return np.asarray(stat)


def normalize(features: Array, mean: Array, std: Array) -> Array:
    """(features - mean) / std, numpy or torch (stats are moved to the features' dtype/device)."""
    out = (features - _like(mean, features)) / _like(std, features)
    if isinstance(features, np.ndarray):
        return out.astype(features.dtype, copy=False)
    return out


def denormalize(features: Array, mean: Array, std: Array) -> Array:
    """features * std + mean, numpy or torch (inverse of normalize)."""
    out = features * _like(std, features) + _like(mean, features)
    if isinstance(features, np.ndarray):
        return out.astype(features.dtype, copy=False)
    return out
