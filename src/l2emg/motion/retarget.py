"""Motions of other rigs onto the 22-joint skeleton: joint maps, units, up axis, frame rate, clips.

A BVH file of any rig (`bvh.read_any_bvh`) becomes joints (T, 22, 3) in our convention — metres,
Y up, 20 fps — by position retargeting: each of our joints takes the global position of one joint
of the file, so no rotation has to be re-expressed; `features.extract_features` then puts the body
on the floor and turns it to face +Z, whatever the file's facing.

Joint maps (our joint -> their joint):
- presets: ``lafan1`` (LAFAN1 / Ubisoft names: Hips, LeftUpLeg, LeftLeg, LeftFoot, LeftToe, Spine,
  Spine1, Spine2, Neck, Head, LeftShoulder, LeftArm, LeftForeArm, LeftHand, …), ``mixamo`` (the same
  names with LeftToeBase for the toe, as Mixamo exports them: ``mixamorig:Hips``, ``mixamorig1:Hips``
  or plain ``Hips``) and ``smpl`` (our own names). Names are compared first exactly, then without a
  namespace prefix (anything up to the last ``:`` or ``|``, and ``mixamorig<N>_``) and ignoring case.
- ``auto`` picks the first preset whose joints are all in the file (mixamo first when a name carries
  a ``mixamorig`` prefix, else smpl, lafan1, mixamo).
- a YAML file: a flat mapping ``our_joint: their_joint`` (e.g. ``left_foot: L_Toe``) naming every
  joint of skeleton.JOINT_NAMES except, optionally, spine1/spine2/spine3.
Joints of the file that no entry names (fingers, toe ends, twist bones, props) are ignored.

Fewer spine joints: SMPL has three (spine1, spine2, spine3) between the pelvis and the neck. A
spine joint the rig does not have (left out of a YAML map, or absent from the file for a preset) is
placed on the straight line between its nearest mapped neighbours along pelvis-spine1-spine2-
spine3-neck, at the fraction of the way given by our canonical bone lengths (skeleton.BONE_OFFSETS).
This is an approximation of where SMPL's joint would be (about 1.5 cm off on a bent chest).

Units: the length of the ankle-knee-hip-pelvis-spine-neck-head chain (frame 0 on, the median over
frames, both legs averaged) does not depend on the pose; the unit (m, cm, mm or inch) that brings it
closest to our canonical body's (about 1.5 m) wins, and a result outside 0.3..3 m is refused. Up
axis: the median over frames of the head's offset from the middle of the ankles points up (Y or Z).
The rest pose is not used for either: LAFAN1-style rigs lay every bone along its local X axis, so
their rest pose is not a standing body. Both can be given instead (``scale``: metres per file unit;
``up``: "y" or "z"). Z-up files turn to Y-up by the proper rotation (x, y, z) -> (x, z, -y), which
keeps left and right.

Frame rate: positions are resampled to 20 fps by linear interpolation between the two nearest source
frames (exact at integer ratios such as 60 -> 20, where every third frame is kept); a Frame Time
written with few decimals (0.0333333) is read as the nearest whole rate when within 0.05 %.

Clips: a take longer than 196 frames (HumanML3D's longest) is cut into ceil(T / 196) consecutive
clips of equal length (±1 frame), each therefore at least 99 frames long: no short remainder is ever
left over. A take shorter than 40 frames (HumanML3D's shortest) gives no clip.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import yaml

from l2emg.errors import DataError
from l2emg.motion.bvh import BvhData, read_any_bvh
from l2emg.motion.skeleton import BONE_OFFSETS, FPS, JOINT_INDEX, JOINT_NAMES, NUM_JOINTS, rest_pose

MIN_CLIP_FRAMES = 40   # HumanML3D's shortest motion
MAX_CLIP_FRAMES = 196  # HumanML3D's longest motion
SPINE_JOINTS: tuple[str, ...] = ("spine1", "spine2", "spine3")
RIGS: tuple[str, ...] = ("auto", "lafan1", "mixamo", "smpl")
UNITS: dict[str, float] = {"m": 1.0, "cm": 0.01, "mm": 0.001, "in": 0.0254}  # metres per unit

_LAFAN1: dict[str, str] = {
    "pelvis": "Hips",
    "left_hip": "LeftUpLeg", "left_knee": "LeftLeg", "left_ankle": "LeftFoot", "left_foot": "LeftToe",
    "right_hip": "RightUpLeg", "right_knee": "RightLeg", "right_ankle": "RightFoot", "right_foot": "RightToe",
    "spine1": "Spine", "spine2": "Spine1", "spine3": "Spine2", "neck": "Neck", "head": "Head",
    "left_collar": "LeftShoulder", "left_shoulder": "LeftArm", "left_elbow": "LeftForeArm", "left_wrist": "LeftHand",
    "right_collar": "RightShoulder", "right_shoulder": "RightArm", "right_elbow": "RightForeArm",
    "right_wrist": "RightHand",
}
# Mixamo uses LAFAN1's names (under a "mixamorig:" namespace) except for the toe joint.
_MIXAMO: dict[str, str] = {**_LAFAN1, "left_foot": "LeftToeBase", "right_foot": "RightToeBase"}
_SMPL: dict[str, str] = {name: name for name in JOINT_NAMES}
PRESETS: dict[str, dict[str, str]] = {"lafan1": _LAFAN1, "mixamo": _MIXAMO, "smpl": _SMPL}

# The pelvis-to-neck chain and each joint's distance along it in our canonical body.
_SPINE_CHAIN: tuple[str, ...] = ("pelvis", "spine1", "spine2", "spine3", "neck")
_SPINE_ARC = np.concatenate([[0.0], np.cumsum([np.linalg.norm(BONE_OFFSETS[JOINT_INDEX[n]]) for n in _SPINE_CHAIN[1:]])])
_HEIGHT_CHAINS: tuple[tuple[str, ...], ...] = tuple(
    (f"{side}_ankle", f"{side}_knee", f"{side}_hip", "pelvis", "spine1", "spine2", "spine3", "neck", "head")
    for side in ("left", "right")
)
_NAMESPACE = re.compile(r"^mixamorig\d*_", flags=re.IGNORECASE)


def bare_name(name: str) -> str:
    """A joint name without its namespace, lower-cased: 'mixamorig1:LeftArm' -> 'leftarm'."""
    name = re.split(r"[:|]", name)[-1]
    return _NAMESPACE.sub("", name).lower()


@dataclass(frozen=True)
class JointMap:
    """Which joint of a rig stands for each of ours.

    joints: our joint name -> their joint name; spine1/spine2/spine3 may be absent (interpolated).
    name: the preset ("lafan1", "mixamo", "smpl") or the YAML file it was read from.
    preset: True for the built-in maps, whose spine joints are used only when the file has them.
    """

    name: str
    joints: Mapping[str, str]
    preset: bool


def preset_map(name: str) -> JointMap:
    """The built-in joint map `name` (lafan1, mixamo or smpl)."""
    if name not in PRESETS:
        raise DataError(f"rig: unknown preset {name!r} (presets: {', '.join(PRESETS)})")
    return JointMap(name=name, joints=dict(PRESETS[name]), preset=True)


def load_joint_map(path: str | os.PathLike) -> JointMap:
    """A user's YAML joint map: a flat mapping ``our_joint: their_joint``.

    Every joint of skeleton.JOINT_NAMES needs an entry, except spine1/spine2/spine3, which may be
    left out (or null) when the rig has fewer spine joints. DataError naming the file and the joint
    for anything else.
    """
    from l2emg.utils.io import read_text

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: joint map file not found")
    try:
        spec = yaml.safe_load(read_text(path, "a YAML joint map (our_joint: their_joint)"))
    except yaml.YAMLError as err:
        raise DataError(f"{path}: joint map is not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(spec, dict):
        raise DataError(f"{path}: joint map must be a mapping 'our_joint: their_joint' (e.g. 'pelvis: Hips')")
    joints: dict[str, str] = {}
    for ours, theirs in spec.items():
        if ours not in JOINT_INDEX:
            raise DataError(f"{path}: {ours!r} is not one of our joints ({', '.join(JOINT_NAMES)})")
        if theirs is None:
            continue
        if not isinstance(theirs, str) or not theirs.strip():
            raise DataError(f"{path}: {ours}: expected the name of a joint of the rig, got {theirs!r}")
        joints[ours] = theirs.strip()
    missing = [n for n in JOINT_NAMES if n not in joints and n not in SPINE_JOINTS]
    if missing:
        raise DataError(f"{path}: no entry for our joint(s) {', '.join(missing)} (only spine1/spine2/spine3 "
                        f"may be left out: they are interpolated along the spine)")
    return JointMap(name=str(path), joints=joints, preset=False)


def _locate(wanted: str, names: tuple[str, ...], path: Path) -> int | None:
    """Index of the file's joint `wanted`: an exact match, else the one with the same bare name."""
    if wanted in names:
        return names.index(wanted)
    matches = [i for i, n in enumerate(names) if bare_name(n) == bare_name(wanted)]
    if len(matches) > 1:
        raise DataError(f"{path}: joint {wanted!r} matches several joints of the file: "
                        f"{', '.join(names[i] for i in matches)}; name one exactly in a YAML joint map")
    return matches[0] if matches else None


def _preset_missing(preset: str, names: tuple[str, ...], path: Path) -> list[str]:
    """Our required joints (not spine1/2/3) that preset `preset` cannot find in `names`."""
    return [ours for ours, theirs in PRESETS[preset].items()
            if ours not in SPINE_JOINTS and _locate(theirs, names, path) is None]


def detect_rig(names: tuple[str, ...], path: str | os.PathLike = "(joints)") -> str:
    """The preset whose joints are all among `names` (mixamo first when a name has its prefix)."""
    path = Path(path)
    order = ["smpl", "lafan1", "mixamo"]
    if any(n.lower().startswith("mixamorig") for n in names):
        order = ["mixamo", "lafan1", "smpl"]
    missing = {preset: _preset_missing(preset, names, path) for preset in order}
    for preset in order:
        if not missing[preset]:
            return preset
    best = min(order, key=lambda p: len(missing[p]))
    lacking = ", ".join(ours if PRESETS[best][ours] == ours else f"{PRESETS[best][ours]} ({ours})"
                        for ours in missing[best])
    raise DataError(f"{path}: cannot tell the rig from its joint names: the closest preset, {best}, lacks "
                    f"{lacking}; pass a YAML joint map (our_joint: their_joint) as the rig. The file's joints: "
                    f"{_listing(names)}")


def resolve_rig(rig: str | os.PathLike | JointMap, names: tuple[str, ...], path: str | os.PathLike) -> JointMap:
    """The joint map for `rig`: "auto" (detected from `names`), a preset name, a YAML file or a JointMap."""
    if isinstance(rig, JointMap):
        return rig
    text = str(rig)
    if text.lower() == "auto":
        return preset_map(detect_rig(names, path))
    if text.lower() in PRESETS:
        return preset_map(text.lower())
    if not Path(text).is_file():
        raise DataError(f"rig: {text!r} is neither a preset ({', '.join(RIGS)}) nor an existing YAML joint map file")
    return load_joint_map(text)


def _listing(names: tuple[str, ...], limit: int = 40) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


def map_joints(data: BvhData, joint_map: JointMap) -> np.ndarray:
    """The file's joint positions (T, J, 3) -> ours (T, 22, 3), same units and axes.

    Missing spine joints are interpolated along the spine (see the module docstring); any other
    missing joint is a DataError naming the file, the map and every missing joint.
    """
    index: dict[str, int] = {}
    missing: list[str] = []
    for ours in JOINT_NAMES:
        theirs = joint_map.joints.get(ours)
        if theirs is None:
            continue  # a spine joint the map leaves out
        k = _locate(theirs, data.names, data.path)
        if k is not None:
            index[ours] = k
        elif not (joint_map.preset and ours in SPINE_JOINTS):
            missing.append(f"{theirs} (for our {ours})")
    if missing:
        where = f"rig {joint_map.name}" if joint_map.preset else f"joint map {joint_map.name}"
        raise DataError(f"{data.path}: {where}: joint(s) not in the file: {', '.join(missing)}. "
                        f"The file's joints: {_listing(data.names)}")
    joints = np.full((data.positions.shape[0], NUM_JOINTS, 3), np.nan)
    for ours, k in index.items():
        joints[:, JOINT_INDEX[ours]] = data.positions[:, k]
    _interpolate_spine(joints, set(index))
    return joints


def _interpolate_spine(joints: np.ndarray, present: set[str]) -> None:
    """Place each spine joint not in `present` between its nearest present chain neighbours (in place)."""
    for k, name in enumerate(_SPINE_CHAIN):
        if name in present:
            continue
        below = max(i for i in range(k) if _SPINE_CHAIN[i] in present)
        above = min(i for i in range(k + 1, len(_SPINE_CHAIN)) if _SPINE_CHAIN[i] in present)
        fraction = (_SPINE_ARC[k] - _SPINE_ARC[below]) / (_SPINE_ARC[above] - _SPINE_ARC[below])
        lo, hi = joints[:, JOINT_INDEX[_SPINE_CHAIN[below]]], joints[:, JOINT_INDEX[_SPINE_CHAIN[above]]]
        joints[:, JOINT_INDEX[name]] = lo + fraction * (hi - lo)


def chain_length(joints: np.ndarray) -> float:
    """Median over frames of the ankle-to-head chain length (both legs averaged) of joints (T, 22, 3)."""
    per_side = []
    for chain in _HEIGHT_CHAINS:
        idx = [JOINT_INDEX[n] for n in chain]
        per_side.append(np.linalg.norm(np.diff(joints[:, idx], axis=1), axis=-1).sum(axis=1))
    return float(np.median(np.mean(per_side, axis=0)))


REFERENCE_CHAIN_M = chain_length(rest_pose()[None])  # our canonical body, about 1.5 m


def detect_units(joints: np.ndarray, path: str | os.PathLike = "(joints)") -> tuple[str, float]:
    """(unit name, metres per unit) of joints (T, 22, 3) from the ankle-to-head chain length."""
    length = chain_length(joints)
    if not length > 0:
        raise DataError(f"{path}: cannot tell the units: the skeleton has no length; pass a scale")
    unit = min(UNITS, key=lambda u: abs(math.log(length * UNITS[u] / REFERENCE_CHAIN_M)))
    metres = length * UNITS[unit]
    if not 0.3 <= metres <= 3.0:
        raise DataError(f"{path}: cannot tell the units: the ankle-to-head chain is {length:.4g} file units "
                        f"long, no unit of {', '.join(UNITS)} makes it a human size; pass a scale "
                        f"(metres per file unit)")
    return unit, UNITS[unit]


def detect_up(joints: np.ndarray, path: str | os.PathLike = "(joints)") -> str:
    """"y" or "z": the axis the head is along from the middle of the ankles (median over frames)."""
    feet = 0.5 * (joints[:, JOINT_INDEX["left_ankle"]] + joints[:, JOINT_INDEX["right_ankle"]])
    direction = np.median(joints[:, JOINT_INDEX["head"]] - feet, axis=0)
    axis = int(np.argmax(np.abs(direction)))
    if axis == 1 and direction[1] > 0:
        return "y"
    if axis == 2 and direction[2] > 0:
        return "z"
    sign = "-" if direction[axis] < 0 else "+"
    raise DataError(f"{path}: cannot tell the up axis: the head is mostly along {sign}{'XYZ'[axis]} from the "
                    f"feet; pass up='y' or 'z'")


def parse_scale(text: str | float) -> float:
    """A scale given as a unit name (m, cm, mm, in) or as metres per file unit ("0.01")."""
    key = str(text).strip().lower()
    if key in UNITS:
        return UNITS[key]
    try:
        value = float(key)
    except ValueError:
        raise DataError(f"--scale: {text!r} is neither a unit ({', '.join(UNITS)}) nor a number of metres per "
                        f"file unit") from None
    if not (math.isfinite(value) and value > 0):
        raise DataError(f"--scale: must be a positive number of metres per file unit, got {text!r}")
    return value


def to_metres_y_up(joints: np.ndarray, scale: float, up: str) -> np.ndarray:
    """Joints in file units with `up` the vertical axis -> metres, Y up ((x, y, z) -> (x, z, -y) for Z up)."""
    if not scale > 0:
        raise DataError(f"scale must be a positive number of metres per file unit, got {scale}")
    if up not in ("y", "z"):
        raise DataError(f"up must be 'y' or 'z', got {up!r}")
    out = np.asarray(joints, dtype=np.float64) * scale
    if up == "z":
        out = np.stack([out[..., 0], out[..., 2], -out[..., 1]], axis=-1)
    return out


def snap_fps(fps: float) -> float:
    """The nearest whole frame rate when within 0.05 % (Frame Time 0.0333333 -> 30), else `fps`."""
    whole = round(fps)
    return float(whole) if whole > 0 and abs(fps - whole) <= 5e-4 * fps else float(fps)


def resample(joints: np.ndarray, source_fps: float, target_fps: float = FPS) -> np.ndarray:
    """Positions (T, ...) at `source_fps` -> at `target_fps` by linear interpolation, same start and span.

    Output frame k is at time k / target_fps; the last one is the latest not after the source's end.
    """
    joints = np.asarray(joints, dtype=np.float64)
    if not (source_fps > 0 and target_fps > 0):
        raise DataError(f"frame rates must be positive, got {source_fps} -> {target_fps}")
    if source_fps == target_fps:
        return joints.copy()
    last = len(joints) - 1
    count = int(math.floor(last * target_fps / source_fps + 1e-6)) + 1
    position = np.minimum(np.arange(count) * (source_fps / target_fps), last)  # fractional source frame
    lo = np.floor(position).astype(int)
    hi = np.minimum(lo + 1, last)
    weight = (position - lo).reshape(-1, *([1] * (joints.ndim - 1)))
    return (1.0 - weight) * joints[lo] + weight * joints[hi]


def cut_clips(joints: np.ndarray, max_frames: int = MAX_CLIP_FRAMES,
              min_frames: int = MIN_CLIP_FRAMES) -> list[np.ndarray]:
    """A take (T, ...) -> consecutive clips of min_frames..max_frames frames (see the module docstring).

    T < min_frames gives no clip; T <= max_frames one; longer takes ceil(T / max_frames) clips of
    equal length (±1), each at least max_frames / 2 long.
    """
    total = len(joints)
    if total < min_frames:
        return []
    count = math.ceil(total / max_frames)
    bounds = [round(i * total / count) for i in range(count + 1)]
    return [joints[bounds[i]:bounds[i + 1]] for i in range(count)]


@dataclass(frozen=True)
class RetargetedMotion:
    """A BVH take on the 22-joint skeleton: joints (T, 22, 3), metres, Y up, at `fps`, and how it was read."""

    joints: np.ndarray
    fps: float
    rig: str            # the preset or YAML file used
    unit: str           # "m", "cm", "mm", "in", or "scale" when given
    scale: float        # metres per file unit
    up: str             # the file's up axis, "y" or "z"
    source_fps: float
    source_frames: int


def retarget_bvh(path: str | os.PathLike, rig: str | os.PathLike | JointMap = "auto", scale: float | None = None,
                 up: str | None = None, fps: float = FPS) -> RetargetedMotion:
    """Read a BVH file of any rig and bring it onto our skeleton and convention at `fps`.

    rig: "auto", "lafan1", "mixamo", "smpl", a YAML joint map file or a JointMap; scale: metres per file unit
    (default: detected); up: the file's up axis "y" or "z" (default: detected).
    """
    data = read_any_bvh(path)
    joint_map = resolve_rig(rig, data.names, data.path)
    joints = map_joints(data, joint_map)
    unit = "scale"
    if scale is None:
        unit, scale = detect_units(joints, data.path)
    if up is None:
        up = detect_up(joints, data.path)
    joints = to_metres_y_up(joints, scale, up)
    source_fps = snap_fps(data.fps)
    return RetargetedMotion(joints=resample(joints, source_fps, fps), fps=float(fps), rig=joint_map.name,
                            unit=unit, scale=float(scale), up=up, source_fps=source_fps,
                            source_frames=int(data.positions.shape[0]))
