"""BVH export and import for the 22-joint skeleton, so motions open in Blender and other tools.

File conventions (written by write_bvh, accepted by read_bvh):
- units are metres, Y up, the rest pose is the T-pose of skeleton.BONE_OFFSETS (facing +Z) scaled
  to the motion's own frame-0 bone lengths (Blender's importer keeps Y-up files upright);
- the root (pelvis) has 6 channels ``Xposition Yposition Zposition Zrotation Yrotation Xrotation``,
  every other joint 3 channels ``Zrotation Yrotation Xrotation``; angles are degrees and, as BVH
  defines, the local rotation is ``Rz @ Ry @ Rx`` (rotations.euler_to_matrix(..., "ZYX"));
- leaf joints (feet, head, wrists) carry an ``End Site`` a few centimetres along their bone so
  viewers can draw them.
read_bvh accepts any channel order per joint and any hierarchy order, as long as the 22 joints of
skeleton.JOINT_NAMES are present.

read_any_bvh reads files of any rig (LAFAN1, Mixamo, CMU, …) with the same parser: any joint names,
End Sites, extra joints, position channels on any joint. It returns every joint's global position
in the file's units and axes; `l2emg.motion.retarget` maps those onto the 22 joints. Position
channels *replace* the joint's OFFSET on their axes (Blender's and the LAFAN1 tools' reading; for
our own files, whose root OFFSET is zero, this is the same as adding them).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from l2emg.errors import DataError
from l2emg.motion import rotations as rot
from l2emg.motion.skeleton import (
    BONE_OFFSETS,
    FPS,
    JOINT_INDEX,
    JOINT_NAMES,
    NUM_JOINTS,
    PARENTS,
    children,
)

EULER_ORDER = "ZYX"
_ROOT_CHANNELS = ("Xposition", "Yposition", "Zposition", "Zrotation", "Yrotation", "Xrotation")
_JOINT_CHANNELS = ("Zrotation", "Yrotation", "Xrotation")
_VALID_CHANNELS = {"Xposition", "Yposition", "Zposition", "Xrotation", "Yrotation", "Zrotation"}
_END_SITE_LENGTH = 0.05  # metres
_CHILDREN = [children(j) for j in range(NUM_JOINTS)]


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-12)


def joints_to_local_rotations(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse kinematics for the BVH skeleton.

    joints: (T, 22, 3) positions. Returns offsets (22, 3), root_positions (T, 3) and
    local_rotations (T, 22, 3, 3) such that ``skeleton.forward_kinematics(local_rotations,
    root_positions, offsets)`` reproduces the joints exactly when the bone lengths are constant.

    Rest offsets follow BONE_OFFSETS' directions with the motion's frame-0 bone lengths; for the
    two joints with several children (pelvis, spine3) the children's rest offsets are the frame-0
    offsets brought into the joint's best-fit frame, so their relative geometry matches the motion.
    Rotations: a joint with one child gets the minimal swing (in its parent's frame) that points
    the child's bone; a joint with several children the best-fit (Kabsch) rotation over all of
    them; leaves get identity.
    """
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"joints must be (T, {NUM_JOINTS}, 3), got {joints.shape}")
    if not np.all(np.isfinite(joints)):
        raise ValueError("joints contain NaN or inf")
    num_frames = joints.shape[0]
    parents = np.array(PARENTS)
    bones = joints[:, 1:] - joints[:, parents[1:]]  # (T, 21, 3)

    offsets = np.zeros((NUM_JOINTS, 3))
    lengths0 = np.linalg.norm(bones[0], axis=-1)  # (21,)
    offsets[1:] = _unit(BONE_OFFSETS[1:]) * lengths0[:, None]

    global_rot = np.empty((num_frames, NUM_JOINTS, 3, 3))
    local_rot = np.empty((num_frames, NUM_JOINTS, 3, 3))
    identity = np.broadcast_to(np.eye(3), (num_frames, 3, 3))
    for j in range(NUM_JOINTS):
        kids = _CHILDREN[j]
        parent_rot = global_rot[:, PARENTS[j]] if j > 0 else identity
        if not kids:
            local_rot[:, j] = identity
        elif len(kids) == 1:
            c = kids[0]
            target_local = np.einsum("tji,tj->ti", parent_rot, bones[:, c - 1])  # R_p^T @ bone
            local_rot[:, j] = rot.matrix_between(np.broadcast_to(offsets[c], target_local.shape), target_local)
        else:
            kid_idx = np.array(kids)
            actual = bones[:, kid_idx - 1]  # (T, K, 3)
            rest_dirs = offsets[kid_idx]  # canonical directions, frame-0 lengths
            frame0 = rot.best_fit_rotation(rest_dirs, actual[0])  # (3, 3)
            offsets[kid_idx] = actual[0] @ frame0  # R0^T @ actual offsets (row vectors)
            glob = rot.best_fit_rotation(np.broadcast_to(offsets[kid_idx], actual.shape), actual)
            local_rot[:, j] = np.swapaxes(parent_rot, -1, -2) @ glob
        global_rot[:, j] = parent_rot @ local_rot[:, j]
    return offsets, joints[:, 0].copy(), local_rot


def _fmt(values: np.ndarray, decimals: int) -> list[str]:
    return [" ".join(f"{v:.{decimals}f}" for v in row) for row in values]


def bvh_text(joints: np.ndarray, fps: float = FPS) -> str:
    """The BVH file contents for a motion (T, 22, 3) in metres."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    offsets, root_pos, local_rot = joints_to_local_rotations(joints)
    num_frames = root_pos.shape[0]
    lines = ["HIERARCHY"]

    def emit(j: int, depth: int) -> None:
        pad = "  " * depth
        kind = "ROOT" if j == 0 else "JOINT"
        lines.append(f"{pad}{kind} {JOINT_NAMES[j]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {offsets[j, 0]:.6f} {offsets[j, 1]:.6f} {offsets[j, 2]:.6f}")
        channels = _ROOT_CHANNELS if j == 0 else _JOINT_CHANNELS
        lines.append(f"{pad}  CHANNELS {len(channels)} {' '.join(channels)}")
        if _CHILDREN[j]:
            for c in _CHILDREN[j]:
                emit(c, depth + 1)
        else:
            end = _unit(BONE_OFFSETS[j]) * _END_SITE_LENGTH
            lines.append(f"{pad}  End Site")
            lines.append(f"{pad}  {{")
            lines.append(f"{pad}    OFFSET {end[0]:.6f} {end[1]:.6f} {end[2]:.6f}")
            lines.append(f"{pad}  }}")
        lines.append(f"{pad}}}")

    emit(0, 0)
    lines.append("MOTION")
    lines.append(f"Frames: {num_frames}")
    lines.append(f"Frame Time: {1.0 / fps:.8f}")
    # Channel values in hierarchy (depth-first) order, as the channels were declared.
    order = _depth_first_order()
    angles = rot.matrix_to_euler(local_rot[:, order], EULER_ORDER)  # (T, 22, 3) degrees
    pos_txt = _fmt(root_pos, 6)
    ang_txt = _fmt(angles.reshape(num_frames, -1), 6)
    lines.extend(f"{p} {a}" for p, a in zip(pos_txt, ang_txt))
    return "\n".join(lines) + "\n"


def _depth_first_order() -> list[int]:
    order: list[int] = []

    def visit(j: int) -> None:
        order.append(j)
        for c in _CHILDREN[j]:
            visit(c)

    visit(0)
    return order


def write_bvh(path: str | os.PathLike, joints: np.ndarray, fps: float = FPS) -> None:
    """Write a motion (T, 22, 3) in metres as a BVH file (atomic write)."""
    from l2emg.utils.io import atomic_write_text

    atomic_write_text(path, bvh_text(joints, fps))


@dataclass
class _Joint:
    """One ROOT/JOINT block while parsing: its name, parent index, OFFSET and CHANNELS."""

    name: str
    parent: int
    line: int
    offset: np.ndarray | None = None
    channels: list[str] = field(default_factory=list)
    first_channel: int = 0


@dataclass(frozen=True)
class BvhData:
    """Any BVH file's skeleton and motion, in the file's own units and axes.

    Joints are in the file's hierarchy (depth-first) order; End Sites are not joints and are left
    out. ``positions`` are global joint positions from forward kinematics over the file's own
    hierarchy, channel orders and offsets.
    """

    path: Path
    names: tuple[str, ...]
    parents: tuple[int, ...]  # -1 for the root
    offsets: np.ndarray       # (J, 3) rest offset of each joint from its parent
    positions: np.ndarray     # (T, J, 3) global joint positions
    fps: float


def _floats(path: Path, lineno: int, tokens: list[str], what: str) -> list[float]:
    out = []
    for k, tok in enumerate(tokens):
        try:
            value = float(tok)
        except ValueError:
            raise DataError(f"{path}: line {lineno}: {what} field {k + 1} is not a number: {tok!r}") from None
        if not np.isfinite(value):
            raise DataError(f"{path}: line {lineno}: {what} field {k + 1} is not finite: {tok!r}")
        out.append(value)
    return out


def _parse_hierarchy(path: Path, lines: list[str], start: int) -> tuple[list[_Joint], int]:
    """Parse from the line after HIERARCHY up to MOTION; returns joints and MOTION's line index."""
    joints: list[_Joint] = []
    stack: list[int | None] = []  # open blocks: joint index, or None for an End Site
    pending: int | None = None  # what the next "{" opens (when expecting_brace)
    expecting_brace = False
    for i in range(start, len(lines)):
        lineno = i + 1
        tokens = lines[i].split()
        if not tokens:
            continue
        head = tokens[0]
        if head == "MOTION":
            if stack:
                raise DataError(f"{path}: line {lineno}: MOTION before the hierarchy's braces are closed")
            return joints, i
        if expecting_brace and head != "{":
            raise DataError(f"{path}: line {lineno}: expected '{{' after line {lineno - 1}, got {head!r}")
        if head in ("ROOT", "JOINT"):
            if len(tokens) != 2:
                raise DataError(f"{path}: line {lineno}: {head} needs exactly one name")
            if (head == "ROOT") != (not stack):
                raise DataError(f"{path}: line {lineno}: {head} in the wrong place (one ROOT, then JOINTs inside it)")
            if stack and stack[-1] is None:
                raise DataError(f"{path}: line {lineno}: JOINT inside an End Site")
            parent = stack[-1] if stack else -1
            joints.append(_Joint(tokens[1], parent, lineno))
            pending, expecting_brace = len(joints) - 1, True
        elif head == "End" and [t.lower() for t in tokens[1:]] == ["site"]:
            if not stack:
                raise DataError(f"{path}: line {lineno}: End Site outside any joint")
            pending, expecting_brace = None, True
        elif head == "{":
            if not expecting_brace:
                raise DataError(f"{path}: line {lineno}: '{{' without a ROOT, JOINT or End Site")
            stack.append(pending)
            expecting_brace = False
        elif head == "}":
            if not stack:
                raise DataError(f"{path}: line {lineno}: unmatched '}}'")
            stack.pop()
        elif head == "OFFSET":
            if not stack:
                raise DataError(f"{path}: line {lineno}: OFFSET outside any joint")
            if len(tokens) != 4:
                raise DataError(f"{path}: line {lineno}: OFFSET needs 3 numbers, got {len(tokens) - 1}")
            values = np.array(_floats(path, lineno, tokens[1:], "OFFSET"))
            if stack[-1] is not None:
                joints[stack[-1]].offset = values
        elif head == "CHANNELS":
            if not stack or stack[-1] is None:
                raise DataError(f"{path}: line {lineno}: CHANNELS outside a joint")
            try:
                count = int(tokens[1])
            except (IndexError, ValueError):
                raise DataError(f"{path}: line {lineno}: CHANNELS count is not an integer") from None
            names = tokens[2:]
            if count != len(names):
                raise DataError(f"{path}: line {lineno}: CHANNELS declares {count} channels but names {len(names)}")
            bad = [n for n in names if n not in _VALID_CHANNELS]
            if bad:
                raise DataError(f"{path}: line {lineno}: unknown channel {bad[0]!r}")
            if sorted(n for n in names if n.endswith("rotation")) not in ([], ["Xrotation", "Yrotation", "Zrotation"]):
                raise DataError(f"{path}: line {lineno}: a joint needs all three rotation channels or none")
            if len(set(names)) != len(names):
                raise DataError(f"{path}: line {lineno}: a channel is named twice")
            joints[stack[-1]].channels = names
        else:
            raise DataError(f"{path}: line {lineno}: unexpected {head!r} in HIERARCHY")
    raise DataError(f"{path}: no MOTION section")


def _read_hierarchy(path: Path) -> tuple[list[str], list[_Joint], int]:
    """The file's lines, its joints and the index of its MOTION line (DataError for a bad HIERARCHY)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: BVH file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read BVH file ({err})") from None

    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None or lines[first].strip() != "HIERARCHY":
        where = f"line {first + 1}" if first is not None else "empty file"
        raise DataError(f"{path}: {where}: expected 'HIERARCHY' at the start of a BVH file")
    hierarchy, motion_line = _parse_hierarchy(path, lines, first + 1)
    if not hierarchy:
        raise DataError(f"{path}: HIERARCHY has no ROOT joint")
    return lines, hierarchy, motion_line


def _number_channels(path: Path, hierarchy: list[_Joint]) -> int:
    """Give each joint the index of its first channel in a frame line; returns the channel count."""
    total_channels = 0
    for joint in hierarchy:
        if joint.offset is None:
            raise DataError(f"{path}: line {joint.line}: joint {joint.name!r} has no OFFSET")
        joint.first_channel = total_channels
        total_channels += len(joint.channels)
    return total_channels


def _read_motion(path: Path, lines: list[str], motion_line: int, total_channels: int) -> tuple[np.ndarray, float]:
    """The MOTION section -> channel values (T, channels) and the frame rate."""
    header: dict[str, str] = {}
    i = motion_line + 1
    for key in ("Frames:", "Frame Time:"):
        while i < len(lines) and not lines[i].strip():
            i += 1
        if i >= len(lines) or not lines[i].strip().startswith(key):
            raise DataError(f"{path}: line {i + 1}: expected '{key}' in the MOTION section")
        header[key] = lines[i].strip()[len(key):].strip()
        i += 1
    try:
        num_frames = int(header["Frames:"])
    except ValueError:
        raise DataError(f"{path}: line {motion_line + 2}: Frames is not an integer: {header['Frames:']!r}") from None
    try:
        frame_time = float(header["Frame Time:"])
    except ValueError:
        raise DataError(f"{path}: MOTION: Frame Time is not a number: {header['Frame Time:']!r}") from None
    if num_frames < 1 or not frame_time > 0:
        raise DataError(f"{path}: MOTION: need Frames >= 1 and Frame Time > 0, got {num_frames}, {frame_time}")

    values = np.empty((num_frames, total_channels))
    row = 0
    for k in range(i, len(lines)):
        tokens = lines[k].split()
        if not tokens:
            continue
        if row >= num_frames:
            raise DataError(f"{path}: line {k + 1}: more frame lines than Frames: {num_frames}")
        if len(tokens) != total_channels:
            raise DataError(f"{path}: line {k + 1}: frame has {len(tokens)} values, expected {total_channels} channels")
        values[row] = _floats(path, k + 1, tokens, "frame")
        row += 1
    if row != num_frames:
        raise DataError(f"{path}: MOTION: Frames says {num_frames} but the file has {row} frame lines")
    return values, round(1.0 / frame_time, 6)


def read_bvh(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Read a BVH file of the 22-joint skeleton -> joints (T, 22, 3) in file units (metres), fps.

    Raises DataError naming the file and the line/field for anything malformed. Files of other
    rigs (other joint names, extra joints) are read by `read_any_bvh` and `l2emg.motion.retarget`.
    """
    path = Path(path)
    lines, hierarchy, motion_line = _read_hierarchy(path)

    # Joint set: exactly the 22 names of the skeleton.
    if len(hierarchy) != NUM_JOINTS:
        raise DataError(f"{path}: HIERARCHY has {len(hierarchy)} joints, expected {NUM_JOINTS} ({', '.join(JOINT_NAMES)})")
    names = [j.name for j in hierarchy]
    unknown = [n for n in names if n not in JOINT_INDEX]
    if unknown or len(set(names)) != NUM_JOINTS:
        problem = f"unknown joint {unknown[0]!r}" if unknown else "duplicate joint names"
        raise DataError(f"{path}: HIERARCHY: {problem}; expected the joints {', '.join(JOINT_NAMES)}")
    total_channels = _number_channels(path, hierarchy)
    values, fps = _read_motion(path, lines, motion_line, total_channels)

    positions = _evaluate(hierarchy, values)
    out = np.empty((values.shape[0], NUM_JOINTS, 3))
    for j, joint in enumerate(hierarchy):
        out[:, JOINT_INDEX[joint.name]] = positions[:, j]
    return out, fps


def read_any_bvh(path: str | os.PathLike) -> BvhData:
    """Read a BVH file of any rig: every joint's global position (T, J, 3), names, parents, fps.

    Any joint names and hierarchy order, any rotation channel order per joint, End Sites, extra
    joints (fingers, toe ends, twist bones) and position channels on any joint. Positions are in the
    file's units and axes; `l2emg.motion.retarget` maps them onto the 22-joint skeleton. Joint names
    must be unique. DataError naming the file and the line/field for anything malformed.
    """
    path = Path(path)
    lines, hierarchy, motion_line = _read_hierarchy(path)
    first_line: dict[str, int] = {}
    for joint in hierarchy:
        if joint.name in first_line:
            raise DataError(f"{path}: line {joint.line}: joint name {joint.name!r} is used twice "
                            f"(first on line {first_line[joint.name]})")
        first_line[joint.name] = joint.line
    total_channels = _number_channels(path, hierarchy)
    values, fps = _read_motion(path, lines, motion_line, total_channels)
    return BvhData(
        path=path,
        names=tuple(j.name for j in hierarchy),
        parents=tuple(j.parent for j in hierarchy),
        offsets=np.array([j.offset for j in hierarchy], dtype=np.float64),
        positions=_evaluate(hierarchy, values),
        fps=fps,
    )


def _evaluate(hierarchy: list[_Joint], values: np.ndarray) -> np.ndarray:
    """Forward kinematics over the file's own hierarchy -> (T, J, 3) in hierarchy order.

    A joint's local translation is its OFFSET, except on the axes it has position channels for:
    there the channel value is the translation (as Blender's importer and the LAFAN1 tools read
    it; files with 6 channels on every joint repeat the OFFSET in them). The local rotation is the
    product of the rotation channels in the order they are declared.
    """
    num_frames = values.shape[0]
    positions = np.zeros((num_frames, len(hierarchy), 3))
    global_rot = np.zeros((num_frames, len(hierarchy), 3, 3))
    for j, joint in enumerate(hierarchy):
        chan = {name: values[:, joint.first_channel + k] for k, name in enumerate(joint.channels)}
        local = np.broadcast_to(np.eye(3), (num_frames, 3, 3))
        rot_names = [n for n in joint.channels if n.endswith("rotation")]
        if rot_names:
            order = "".join(n[0] for n in rot_names)
            angles = np.stack([chan[n] for n in rot_names], axis=-1)
            local = rot.euler_to_matrix(angles, order)
        translation = np.stack(
            [chan.get(f"{axis}position", np.full(num_frames, joint.offset[k])) for k, axis in enumerate("XYZ")],
            axis=-1,
        )
        if joint.parent < 0:
            positions[:, j] = translation
            global_rot[:, j] = local
        else:
            p = joint.parent
            positions[:, j] = positions[:, p] + np.einsum("tij,tj->ti", global_rot[:, p], translation)
            global_rot[:, j] = global_rot[:, p] @ local
    return positions


def bvh_roundtrip_error(joints: np.ndarray, fps: float = FPS) -> float:
    """Max distance (metres) between a motion and its BVH round trip (through a temporary file)."""
    joints = np.asarray(joints, dtype=np.float64)
    with tempfile.TemporaryDirectory(prefix="l2emg_bvh_") as tmp:
        path = Path(tmp) / "motion.bvh"
        write_bvh(path, joints, fps)
        recovered, _ = read_bvh(path)
    return float(np.linalg.norm(recovered - joints, axis=-1).max())

