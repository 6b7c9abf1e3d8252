"""The procedural body: a few readable pose channels plus foot targets, turned into 22 joint positions.

A motion is authored as a `BodyTrack`:
- `channels` (T, C), degrees: pelvis tilt, spine, neck, collars, shoulders and elbows, named in
  CHANNELS. Side channels are symmetric: the same value means the mirrored pose on the other side
  (e.g. `l_sh_abd` and `r_sh_abd` > 0 both lift the arm out to its own side).
- `pelvis` (T, 3) desired pelvis position and `heading` (T,) facing angle (radians about +Y, 0 = +Z).
- `left` / `right` feet as `FootTrack`s: ball-of-foot position (the skeleton's foot joint) and foot
  pitch/yaw in world space. A planted foot simply keeps its ball position, so it cannot slide.

`pose_joints` turns a track into joints: the legs are solved with analytic two-bone IK so the feet
hit their targets exactly; the pelvis is lowered (smoothly, never raised) where a foot would be out
of reach. The upper body is forward kinematics of the channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import minimum_filter1d, uniform_filter1d

from l2emg.data.synth.curves import smoothstep, soft_min
from l2emg.data.synth.rotations import (
    frame_from_axes,
    matvec,
    mirror_rotation,
    normalize,
    rot_x,
    rot_y,
    rot_z,
)
from l2emg.motion.skeleton import (
    ANKLE_HEIGHT,
    BONE_OFFSETS,
    JOINT_INDEX,
    NUM_JOINTS,
    REST_PELVIS_HEIGHT,
    forward_kinematics,
)

SIDES = ("l", "r")
ARM_CHANNELS = ("collar_elev", "collar_prot", "sh_flex", "sh_abd", "sh_twist", "elbow")
CHANNELS: tuple[str, ...] = (
    "root_pitch", "root_roll", "root_yaw",      # pelvis: forward tilt, lean to the left, turn to the left
    "spine_flex", "spine_lat", "spine_twist",   # spread over spine1..3: bend forward, lean left, turn left
    "neck_flex", "neck_lat", "neck_turn",       # head down, tilt left, look left
) + tuple(f"{s}_{c}" for s in SIDES for c in ARM_CHANNELS)
CH = {name: i for i, name in enumerate(CHANNELS)}
# Channels whose sign flips in the left-right mirror (the side channels swap instead).
MIRROR_NEGATED = ("root_roll", "root_yaw", "spine_lat", "spine_twist", "neck_lat", "neck_turn")

THIGH = float(-BONE_OFFSETS[4, 1])
SHIN = float(-BONE_OFFSETS[7, 1])
UPPER_ARM = float(BONE_OFFSETS[16 + 2, 0])
FOREARM = float(BONE_OFFSETS[20, 0])
FOOT_OFFSET = BONE_OFFSETS[10].copy()          # ankle -> ball of the foot, rest
BALL_HEIGHT = ANKLE_HEIGHT + FOOT_OFFSET[1]     # height of the foot joint when the sole is flat (0.03 m)
MIN_KNEE_DEG = 6.0                              # the IK never straightens a knee beyond this
MIN_ANKLE_DEG = 84.0                            # smallest shin-foot angle (rest 113°): ~29° dorsiflexion
MAX_ANKLE_DEG = 158.0                           # largest: ~45° plantarflexion
ELBOW_RANGE = (2.0, 150.0)                      # elbow flexion is clamped to this (degrees)
MAX_LEG_REACH = float(np.sqrt(THIGH**2 + SHIN**2 + 2 * THIGH * SHIN * np.cos(np.radians(MIN_KNEE_DEG))))
MAX_ARM_REACH = float(np.sqrt(UPPER_ARM**2 + FOREARM**2 + 2 * UPPER_ARM * FOREARM * np.cos(np.radians(8.0))))

# A relaxed standing pose: arms hanging a little away from the body, elbows soft.
REST_CHANNELS = {
    "l_sh_abd": 8.0, "r_sh_abd": 8.0, "l_elbow": 12.0, "r_elbow": 12.0, "l_sh_flex": 2.0, "r_sh_flex": 2.0,
}

# Left-right joint permutation of the skeleton (used to mirror finished joints).
MIRROR_JOINTS = np.array([
    JOINT_INDEX[n.replace("left", "TMP").replace("right", "left").replace("TMP", "right")]
    for n in (
        "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
        "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    )
])


@dataclass
class FootTrack:
    ball: np.ndarray   # (T, 3) world position of the ball of the foot (the skeleton's foot joint)
    pitch: np.ndarray  # (T,) degrees; > 0 lifts the heel (toes down), < 0 lifts the toes; on the
                       # ground it is the world pitch, in the air the ankle's flexion from rest
    yaw: np.ndarray    # (T,) radians, direction the foot points (0 = +Z)

    def ankle(self) -> np.ndarray:
        """(T, 3) ankle position implied by the ball position and the foot orientation."""
        return self.ball - matvec(foot_rotation(self.pitch, self.yaw), FOOT_OFFSET)


@dataclass
class BodyTrack:
    channels: np.ndarray  # (T, C) degrees
    pelvis: np.ndarray    # (T, 3) desired pelvis position (its height may be lowered to reach the feet)
    heading: np.ndarray   # (T,) radians
    left: FootTrack
    right: FootTrack

    @property
    def num_frames(self) -> int:
        return self.channels.shape[0]

    def get(self, name: str) -> np.ndarray:
        return self.channels[:, CH[name]]

    def set(self, name: str, value) -> None:
        self.channels[:, CH[name]] = value

    def add(self, name: str, value) -> None:
        self.channels[:, CH[name]] += value


def rest_channels(num_frames: int) -> np.ndarray:
    """(T, C) channels of the relaxed standing pose."""
    out = np.zeros((num_frames, len(CHANNELS)))
    for name, value in REST_CHANNELS.items():
        out[:, CH[name]] = value
    return out


def foot_rotation(pitch_deg: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """(T,) pitch in degrees, yaw in radians -> (T, 3, 3) world orientation of a foot."""
    return rot_y(yaw) @ rot_x(np.radians(pitch_deg))


def planted_foot(num_frames: int, position_xz, yaw: float, pitch: float = 0.0) -> FootTrack:
    """A flat foot standing still at (x, z) and pointing along `yaw`."""
    ball = np.empty((num_frames, 3))
    ball[:, 0], ball[:, 1], ball[:, 2] = position_xz[0], BALL_HEIGHT, position_xz[1]
    return FootTrack(ball, np.full(num_frames, float(pitch)), np.full(num_frames, float(yaw)))


def stance_feet(num_frames: int, width: float = 0.18, toe_out_deg: float = 8.0,
                left_forward: float = 0.0, right_forward: float = 0.0) -> tuple[FootTrack, FootTrack]:
    """Both feet planted around the origin, facing +Z, ankles `width` apart (balls toed out a little)."""
    toe = np.radians(toe_out_deg)
    reach = FOOT_OFFSET[2]  # ball this far ahead of the ankle, so the ankles sit under the hips
    left = planted_foot(num_frames, (width / 2 + reach * np.sin(toe), reach * np.cos(toe) + left_forward), toe)
    right = planted_foot(num_frames, (-width / 2 - reach * np.sin(toe), reach * np.cos(toe) + right_forward), -toe)
    return left, right


def standing_track(num_frames: int, width: float = 0.18) -> BodyTrack:
    """A person standing still, facing +Z, pelvis over the origin."""
    left, right = stance_feet(num_frames, width)
    pelvis = np.zeros((num_frames, 3))
    pelvis[:, 1] = REST_PELVIS_HEIGHT
    return BodyTrack(rest_channels(num_frames), pelvis, np.zeros(num_frames), left, right)


# ---------------------------------------------------------------------------------------------
# Arms: channel values from hand targets (used by gestures that place the hands somewhere).
# ---------------------------------------------------------------------------------------------

def collar_rotation(elev_deg: np.ndarray, prot_deg: np.ndarray) -> np.ndarray:
    """Left collar local rotation: protraction (shoulder forward) then elevation (shrug)."""
    return rot_y(-np.radians(prot_deg)) @ rot_z(np.radians(elev_deg))


def shoulder_rotation(flex_deg, abd_deg, twist_deg) -> np.ndarray:
    """Left shoulder local rotation. abd 0 = arm hanging, 90 = out sideways; flex 90 = arm forward,
    180 = overhead; twist > 0 = external rotation (a bent forearm turns up/out)."""
    return rot_x(-np.radians(flex_deg)) @ rot_z(np.radians(np.asarray(abd_deg) - 90.0)) @ rot_x(-np.radians(twist_deg))


def elbow_rotation(flex_deg) -> np.ndarray:
    """Left elbow local rotation; flexion bends the forearm towards the upper arm's local +Z."""
    return rot_y(-np.radians(flex_deg))


_SPINE3_TO_COLLAR = BONE_OFFSETS[13]
_COLLAR_TO_SHOULDER = BONE_OFFSETS[16]


def arm_channels_for_target(side: str, wrist: np.ndarray, elbow_hint: np.ndarray,
                            collar_elev: np.ndarray | float = 0.0,
                            collar_prot: np.ndarray | float = 0.0) -> dict[str, np.ndarray]:
    """Shoulder and elbow channels that put a wrist at a target (two-bone analytic IK).

    wrist: (T, 3) target in the chest (spine3) frame: +X left, +Y up, +Z forward, origin at spine3.
    elbow_hint: (T, 3) direction (chest frame) the elbow should point to (e.g. down and out).
    Returns {"<side>_sh_flex", "<side>_sh_abd", "<side>_sh_twist", "<side>_elbow"} in degrees.
    The right arm is solved as the mirror image of the left.
    """
    wrist = np.asarray(wrist, dtype=np.float64)
    hint = np.broadcast_to(np.asarray(elbow_hint, dtype=np.float64), wrist.shape)
    if side == "r":
        wrist = wrist * np.array([-1.0, 1.0, 1.0])
        hint = hint * np.array([-1.0, 1.0, 1.0])
    num = wrist.shape[0]
    elev = np.broadcast_to(np.asarray(collar_elev, dtype=np.float64), (num,))
    prot = np.broadcast_to(np.asarray(collar_prot, dtype=np.float64), (num,))
    r_collar = collar_rotation(elev, prot)                                   # (T, 3, 3)
    shoulder = _SPINE3_TO_COLLAR + matvec(r_collar, _COLLAR_TO_SHOULDER)     # (T, 3) chest frame
    # Work in the collar frame, where the shoulder channels are defined.
    target = np.einsum("tji,tj->ti", r_collar, wrist - shoulder)
    hint_c = np.einsum("tji,tj->ti", r_collar, hint)
    dist = np.clip(np.linalg.norm(target, axis=-1), 0.05, MAX_ARM_REACH)
    to_wrist = normalize(target)
    along = (UPPER_ARM**2 - FOREARM**2 + dist**2) / (2 * dist)
    across = np.sqrt(np.maximum(UPPER_ARM**2 - along**2, 0.0))
    side_dir = hint_c - np.sum(hint_c * to_wrist, axis=-1, keepdims=True) * to_wrist
    side_dir = normalize(side_dir)
    elbow = along[:, None] * to_wrist + across[:, None] * side_dir
    upper = normalize(elbow)
    fore = normalize(target - elbow)
    cos_e = np.clip(np.sum(upper * fore, axis=-1), -1.0, 1.0)
    elbow_flex = np.degrees(np.arccos(cos_e))
    abd = np.arcsin(np.clip(upper[:, 0], -1.0, 1.0))
    flex = np.arctan2(upper[:, 2], -upper[:, 1])
    # Direction the forearm bends to, perpendicular to the upper arm; solve the twist that gives it.
    bend = fore - np.sum(fore * upper, axis=-1, keepdims=True) * upper
    bend = np.where(np.linalg.norm(bend, axis=-1, keepdims=True) > 1e-6, bend, side_dir)
    n0 = np.stack([np.zeros(num), np.sin(flex), np.cos(flex)], axis=-1)
    n1 = np.stack([np.cos(abd), np.cos(flex) * np.sin(abd), -np.sin(flex) * np.sin(abd)], axis=-1)
    twist = np.arctan2(np.sum(bend * n1, axis=-1), np.sum(bend * n0, axis=-1))
    return {
        f"{side}_sh_flex": np.degrees(np.unwrap(flex)),
        f"{side}_sh_abd": np.degrees(abd),
        f"{side}_sh_twist": np.degrees(np.unwrap(twist)),
        f"{side}_elbow": elbow_flex,
    }


def set_arm_target(track: BodyTrack, side: str, wrist: np.ndarray, elbow_hint, weight=1.0) -> None:
    """Blend a side's arm channels towards the pose that puts its wrist at `wrist` (chest frame)."""
    solved = arm_channels_for_target(
        side, wrist, elbow_hint, track.get(f"{side}_collar_elev"), track.get(f"{side}_collar_prot")
    )
    w = np.broadcast_to(np.asarray(weight, dtype=np.float64), (track.num_frames,))
    for name, value in solved.items():
        track.set(name, (1 - w) * track.get(name) + w * value)


# ---------------------------------------------------------------------------------------------
# Posing: channels + feet -> joints.
# ---------------------------------------------------------------------------------------------

def pelvis_rotation(track: BodyTrack) -> np.ndarray:
    """(T, 3, 3) global pelvis orientation: heading and root_yaw, then forward tilt, then side lean."""
    c = np.radians(track.channels)
    return (rot_y(track.heading + c[:, CH["root_yaw"]]) @ rot_x(c[:, CH["root_pitch"]])
            @ rot_z(-c[:, CH["root_roll"]]))


def _hip_positions(pelvis: np.ndarray, r_pelvis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return pelvis + matvec(r_pelvis, BONE_OFFSETS[1]), pelvis + matvec(r_pelvis, BONE_OFFSETS[2])


def reachable_pelvis(track: BodyTrack, r_pelvis: np.ndarray, softness: float = 0.01) -> np.ndarray:
    """(T, 3) pelvis positions lowered (smoothly) where a foot target would be out of the leg's reach."""
    pelvis = track.pelvis.copy()
    hips = _hip_positions(pelvis, r_pelvis)
    limit = np.full(track.num_frames, np.inf)
    for hip, foot in zip(hips, (track.left, track.right)):
        ankle = foot.ankle()
        horizontal = np.linalg.norm((hip - ankle)[:, [0, 2]], axis=-1)
        horizontal = np.minimum(horizontal, 0.97 * MAX_LEG_REACH)
        max_hip_y = ankle[:, 1] + np.sqrt(MAX_LEG_REACH**2 - horizontal**2)
        # Only a foot on (or just above) the ground holds the pelvis down; a swinging foot out of
        # reach is simply not reached. The release is gradual so the pelvis never pops up.
        release = 15.0 * np.maximum(foot.ball[:, 1] - BALL_HEIGHT - 0.002, 0.0)
        limit = np.minimum(limit, pelvis[:, 1] + (max_hip_y - hip[:, 1]) + release)
    # Smooth the limit in time without ever raising it (erode, then average over the same radius),
    # so a foot reaching its limit lowers the pelvis gradually instead of in a one-frame dip.
    radius = 3
    if len(limit) > 1:
        eroded = minimum_filter1d(limit, 2 * radius + 1, mode="nearest")
        limit = uniform_filter1d(eroded, 2 * radius + 1, mode="nearest")
    pelvis[:, 1] = soft_min(pelvis[:, 1], limit - 1e-4, softness)
    return pelvis


def _leg_ik(hip: np.ndarray, ankle: np.ndarray, hinge_hint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Global thigh and shin orientations (T, 3, 3) putting the ankle at its target, knee bending
    forward about `hinge_hint` (the knee's left-pointing hinge axis)."""
    v = ankle - hip
    dist = np.clip(np.linalg.norm(v, axis=-1), 0.2, MAX_LEG_REACH)
    u = normalize(v)
    forward = normalize(np.cross(u, hinge_hint))             # where the knee goes
    along = (THIGH**2 - SHIN**2 + dist**2) / (2 * dist)
    across = np.sqrt(np.maximum(THIGH**2 - along**2, 0.0))
    knee = hip + along[:, None] * u + across[:, None] * forward
    target = hip + dist[:, None] * u
    hinge = np.cross(forward, u)
    thigh = frame_from_axes(hinge, hip - knee)                 # rest thigh points along -Y
    shin = frame_from_axes(hinge, knee - target)
    return thigh, shin


def pose_joints(track: BodyTrack) -> np.ndarray:
    """(T, 22, 3) world joint positions of a body track."""
    num = track.num_frames
    c = np.radians(track.channels)
    local = np.empty((num, NUM_JOINTS, 3, 3))
    local[:] = np.eye(3)
    r_pelvis = pelvis_rotation(track)
    local[:, 0] = r_pelvis
    spine = (rot_y(c[:, CH["spine_twist"]] / 3) @ rot_x(c[:, CH["spine_flex"]] / 3)
             @ rot_z(-c[:, CH["spine_lat"]] / 3))
    for j in (JOINT_INDEX["spine1"], JOINT_INDEX["spine2"], JOINT_INDEX["spine3"]):
        local[:, j] = spine
    local[:, JOINT_INDEX["neck"]] = (rot_y(c[:, CH["neck_turn"]]) @ rot_x(c[:, CH["neck_flex"]])
                                     @ rot_z(-c[:, CH["neck_lat"]]))
    ch = track.channels
    for side, name in (("l", "left"), ("r", "right")):
        collar = collar_rotation(ch[:, CH[f"{side}_collar_elev"]], ch[:, CH[f"{side}_collar_prot"]])
        shoulder = shoulder_rotation(ch[:, CH[f"{side}_sh_flex"]], ch[:, CH[f"{side}_sh_abd"]],
                                     ch[:, CH[f"{side}_sh_twist"]])
        elbow = elbow_rotation(np.clip(ch[:, CH[f"{side}_elbow"]], *ELBOW_RANGE))
        if side == "r":
            collar, shoulder, elbow = mirror_rotation(collar), mirror_rotation(shoulder), mirror_rotation(elbow)
        local[:, JOINT_INDEX[f"{name}_collar"]] = collar
        local[:, JOINT_INDEX[f"{name}_shoulder"]] = shoulder
        local[:, JOINT_INDEX[f"{name}_elbow"]] = elbow

    pelvis = reachable_pelvis(track, r_pelvis)
    hips = _hip_positions(pelvis, r_pelvis)
    pelvis_left = r_pelvis[:, :, 0] * np.array([1.0, 0.0, 1.0])
    for foot, hip, name in ((track.left, hips[0], "left"), (track.right, hips[1], "right")):
        r_foot = foot_rotation(foot.pitch, foot.yaw)
        ankle = foot.ball - matvec(r_foot, FOOT_OFFSET)
        hinge = normalize(normalize(pelvis_left) + r_foot[:, :, 0] * np.array([1.0, 0.0, 1.0]))
        thigh, shin = _leg_ik(hip, ankle, hinge)
        # A foot off the ground hangs from the shin: its pitch is taken relative to the shin there
        # (0 = the rest angle), so a swinging or tucked leg never forces the ankle to its limits.
        free = smoothstep((foot.ball[:, 1] - BALL_HEIGHT - 0.01) / 0.06)
        if free.max() > 0:
            hanging = shin @ rot_x(np.radians(foot.pitch))
            mixed = (1 - free)[:, None, None] * r_foot + free[:, None, None] * hanging
            r_foot = frame_from_axes(mixed[:, :, 0], mixed[:, :, 1])
            ankle = foot.ball - matvec(r_foot, FOOT_OFFSET)
            thigh, shin = _leg_ik(hip, ankle, hinge)
        # Keep the ankle in its range by turning the foot about the ball, which stays put: in a
        # deep crouch the heel comes up instead of the ankle over-bending, and a pointed foot
        # never goes past full plantarflexion.
        for _ in range(2):
            foot_dir = matvec(r_foot, FOOT_OFFSET)
            up_shin = shin[:, :, 1]
            cos_a = np.sum(up_shin * foot_dir, axis=-1) / np.linalg.norm(foot_dir, axis=-1)
            angle = np.degrees(np.arccos(np.clip(cos_a, -1.0, 1.0)))
            delta = np.clip(angle, MIN_ANKLE_DEG, MAX_ANKLE_DEG) - angle
            if np.abs(delta).max() <= 1e-6:
                break
            r_foot = r_foot @ rot_x(np.radians(delta))
            ankle = foot.ball - matvec(r_foot, FOOT_OFFSET)
            thigh, shin = _leg_ik(hip, ankle, hinge)
        local[:, JOINT_INDEX[f"{name}_hip"]] = np.swapaxes(r_pelvis, -1, -2) @ thigh
        local[:, JOINT_INDEX[f"{name}_knee"]] = np.swapaxes(thigh, -1, -2) @ shin
        local[:, JOINT_INDEX[f"{name}_ankle"]] = np.swapaxes(shin, -1, -2) @ r_foot
    return forward_kinematics(local, pelvis)


def mirror_joints(joints: np.ndarray) -> np.ndarray:
    """(T, 22, 3) left-right mirror image of a motion (x -> -x, left and right joints swapped)."""
    return joints[:, MIRROR_JOINTS] * np.array([-1.0, 1.0, 1.0])
