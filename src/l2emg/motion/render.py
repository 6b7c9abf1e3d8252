"""Pictures of motions: animated stick figures (GIF or MP4), grids of them, and keyframe strips (PNG).

Why a renderer of our own: matplotlib's 3D axes need tens of milliseconds a frame, and the data preview
draws ~15 grids of 8 panels × ~200 frames. Here joints are projected with numpy through a pinhole camera
and drawn with Pillow's ImageDraw at twice the output size, then box-downsampled (anti-aliasing):
about 0.4 ms per panel and frame with a fixed camera (only the box around the body is redrawn) and
about 1.2 ms with a following one (the floor moves), on one core.

Conventions (HumanML3D): Y is up, metres, the body faces +Z at frame 0, the character's left is +X.
The picture: a checkered floor in perspective, the root's past path on the floor, the body's shadow,
bones thick and coloured by kinematic chain (left limbs blue, right limbs red, spine and head grey)
with a head disc and a nose dot that shows where the body faces, seen from a fixed 3/4 front view.

Camera: each panel frames its whole motion with a fixed camera when the root travels at most
`FOLLOW_SPAN` metres (in-place motions, walking in circles), so travel reads as travel; a motion that
travels further gets a camera that follows the smoothed root at a fixed distance, so the body stays big.
"""

from __future__ import annotations

import importlib.util
import io
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from l2emg.errors import DataError
from l2emg.motion.skeleton import FPS, JOINT_INDEX, KINEMATIC_CHAIN, NUM_JOINTS, PARENTS
from l2emg.utils.io import atomic_write_bytes, publish_temp_file

# ---------------------------------------------------------------------------------------------- look
BACKGROUND = (255, 255, 255)
FLOOR_LIGHT = (226, 228, 232)
FLOOR_DARK = (204, 208, 215)
SHADOW = (150, 152, 158)
TRAJECTORY = (232, 150, 20)
TEXT = (30, 30, 30)
TEXT_DIM = (120, 120, 120)
NOSE = (255, 255, 255)

LEFT_LEG = (31, 100, 200)
LEFT_ARM = (70, 150, 235)
RIGHT_LEG = (200, 35, 40)
RIGHT_ARM = (240, 95, 70)
SPINE = (70, 70, 80)

# KINEMATIC_CHAIN order: right leg, left leg, spine + head, right arm, left arm.
_CHAIN_COLOURS = (RIGHT_LEG, LEFT_LEG, SPINE, RIGHT_ARM, LEFT_ARM)

HEAD = JOINT_INDEX["head"]
LEFT_HIP, RIGHT_HIP = JOINT_INDEX["left_hip"], JOINT_INDEX["right_hip"]
LEFT_SHOULDER, RIGHT_SHOULDER = JOINT_INDEX["left_shoulder"], JOINT_INDEX["right_shoulder"]

BONE_RADIUS = 0.025     # metres: bones are drawn as thick as a forearm
HEAD_RADIUS = 0.10      # metres
TILE = 0.5              # metres: floor checker size
FLOOR_MARGIN = 1.5      # metres of floor shown around the root's path (fixed camera)
FOLLOW_SPAN = 4.0       # metres of root travel beyond which the camera follows the root
FOLLOW_RADIUS = 1.2     # metres around the root kept in view by a following camera
AZIMUTH = math.radians(35.0)     # camera direction around +Y, from +Z (the front) towards +X (the left)
ELEVATION = math.radians(22.0)   # camera looks down by this much
FOV = math.radians(40.0)         # vertical and horizontal field of view used to choose the distance
MIN_DISTANCE = 4.0               # metres: keeps the perspective mild for small motions
MARGIN = 0.88                    # fraction of the panel the framed points may fill
SUPERSAMPLE = 2                  # draw at this multiple of the output size, then downsample (≥ 1)

MAX_CAPTION_LINES = 4
CAMERAS = ("auto", "fixed", "follow")


def _joint_colours() -> tuple[tuple[int, int, int], ...]:
    """Colour of the bone ending at each joint, from the chain that joint belongs to."""
    colours = [SPINE] * NUM_JOINTS
    for chain, colour in zip(KINEMATIC_CHAIN, _CHAIN_COLOURS):
        for joint in chain[1:]:
            colours[joint] = colour
    return tuple(colours)


_BONE_COLOURS = _joint_colours()
_BONES = tuple((child, PARENTS[child]) for child in range(1, NUM_JOINTS))  # (child, parent)


# ------------------------------------------------------------------------------------------- checks
def _where(path: str | os.PathLike | None) -> str:
    return str(path) if path is not None else "render"


def _check_motion(joints: object, path: str | os.PathLike | None, label: str = "motion") -> np.ndarray:
    """(T, 22, 3) float64 joints, or DataError naming the file being written and the problem."""
    where = _where(path)
    if hasattr(joints, "detach"):  # a torch tensor, possibly on a GPU or requiring grad
        joints = joints.detach().cpu().numpy()
    try:
        array = np.asarray(joints, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{where}: {label} is not a numeric array ({err})") from err
    if array.ndim != 3 or array.shape[1:] != (NUM_JOINTS, 3):
        raise DataError(f"{where}: {label} has shape {tuple(array.shape)}, expected (T, {NUM_JOINTS}, 3)")
    if array.shape[0] == 0:
        raise DataError(f"{where}: {label} is empty (0 frames)")
    bad = ~np.isfinite(array)
    if bad.any():
        frame = int(np.argwhere(bad)[0][0])
        raise DataError(f"{where}: {label} has NaN or infinite coordinates (first at frame {frame})")
    return array


def _check_motions(
    motions: Sequence[object] | np.ndarray, path: str | os.PathLike | None
) -> list[np.ndarray]:
    if getattr(motions, "ndim", None) == 3:  # one (T, 22, 3) array or tensor rather than a list
        motions = [motions]
    motions = list(motions)
    if not motions:
        raise DataError(f"{_where(path)}: no motions to render")
    return [_check_motion(m, path, f"motion {i}") for i, m in enumerate(motions)]


def _check_labels(
    labels: Sequence[str | None] | None, count: int, path: str | os.PathLike | None, field: str
) -> list[str | None]:
    if labels is None:
        return [None] * count
    if isinstance(labels, str):
        labels = [labels]
    labels = list(labels)
    if len(labels) != count:
        raise DataError(f"{_where(path)}: {len(labels)} {field} for {count} motions")
    return labels


def _check_settings(path: str | os.PathLike | None, fps: float, size: int, camera: str) -> None:
    if isinstance(fps, bool) or not (isinstance(fps, (int, float, np.number)) and fps > 0):
        raise DataError(f"{_where(path)}: fps must be positive, got {fps!r}")
    if isinstance(size, bool) or not (isinstance(size, (int, np.integer)) and size >= 32):
        raise DataError(f"{_where(path)}: size must be an integer of at least 32 pixels, got {size!r}")
    if camera not in CAMERAS:
        raise DataError(f"{_where(path)}: camera must be one of {', '.join(CAMERAS)}, got {camera!r}")


def _resolve_ncols(ncols: int | None, count: int, path: str | os.PathLike | None) -> int:
    """Columns of a grid of `count` panels: up to 4 by default, never more than the panels."""
    if ncols is None:
        return count if count <= 4 else (4 if count <= 8 else math.ceil(math.sqrt(count)))
    if isinstance(ncols, bool) or not (isinstance(ncols, (int, np.integer)) and ncols >= 1):
        raise DataError(f"{_where(path)}: ncols must be a positive integer, got {ncols!r}")
    return min(int(ncols), count)


# ------------------------------------------------------------------------------------------- camera
@dataclass(frozen=True)
class Camera:
    """A pinhole camera looking at `target` (which may move per frame) from a fixed direction.

    Screen coordinates: x to the right, y down, in pixels of the (supersampled) panel.
    """

    right: np.ndarray      # (3,) world direction of screen +x
    up: np.ndarray         # (3,) world direction of screen -y
    forward: np.ndarray    # (3,) viewing direction
    distance: float        # metres from the camera to the target
    focal: float           # pixels
    center: tuple[float, float]  # pixel position of the optical axis

    def project(self, points: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """points (..., 3), target (3,) -> screen xy (..., 2) and depth (...) in metres."""
        rel = points - target
        depth = self.distance + rel @ self.forward
        safe = np.maximum(depth, 1e-3)
        x = self.center[0] + self.focal * (rel @ self.right) / safe
        y = self.center[1] - self.focal * (rel @ self.up) / safe
        return np.stack([x, y], axis=-1), depth


def _view_basis() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    towards_camera = np.array(
        [math.sin(AZIMUTH) * math.cos(ELEVATION), math.sin(ELEVATION), math.cos(AZIMUTH) * math.cos(ELEVATION)]
    )
    forward = -towards_camera
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return right, up, forward


def fit_camera(points: np.ndarray, target: np.ndarray, width: int, height: int) -> Camera:
    """A camera that shows all `points` (N, 3) inside a width × height panel, looking at `target`.

    The distance is the smallest at which every point is inside the field of view (at least
    MIN_DISTANCE); then focal length and optical centre are set so that the projected points are
    centred and fill MARGIN of the panel.
    """
    right, up, forward = _view_basis()
    rel = points - target
    x, y, s = rel @ right, rel @ up, rel @ forward
    tan_half = math.tan(FOV / 2)
    distance = max(MIN_DISTANCE, float(np.max(np.maximum(np.abs(x), np.abs(y)) / tan_half - s)))
    distance = max(distance, float(np.max(-s)) + 0.5)  # every point at least 0.5 m in front
    depth = distance + s
    u, v = x / depth, y / depth
    du = max(float(u.max() - u.min()), 1e-3)
    dv = max(float(v.max() - v.min()), 1e-3)
    focal = min(MARGIN * width / du, MARGIN * height / dv)
    center = (width / 2 - focal * float(u.max() + u.min()) / 2, height / 2 + focal * float(v.max() + v.min()) / 2)
    return Camera(right, up, forward, distance, focal, center)


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Moving average along axis 0 with edge padding; values (T, D)."""
    if window <= 1 or len(values) < 2:
        return values.copy()
    pad = window // 2
    padded = np.pad(values, ((pad, window - 1 - pad), (0, 0)), mode="edge")
    kernel = np.ones(window) / window
    return np.stack([np.convolve(padded[:, d], kernel, mode="valid") for d in range(values.shape[1])], axis=1)


def _ring(center_xz: np.ndarray, radius: float, count: int = 16) -> np.ndarray:
    angles = np.linspace(0, 2 * np.pi, count, endpoint=False)
    return np.stack(
        [center_xz[0] + radius * np.cos(angles), np.zeros(count), center_xz[1] + radius * np.sin(angles)], axis=1
    )


@dataclass(frozen=True)
class _Framing:
    """How one motion is filmed: a camera and the target it looks at in each frame."""

    camera: Camera
    targets: np.ndarray  # (T, 3)
    follows: bool
    floor_box: tuple[float, float, float, float]  # x0, x1, z0, z1 of the floor drawn (fixed camera)


def frame_motion(joints: np.ndarray, width: int, height: int, camera: str = "auto") -> _Framing:
    """Choose a fixed camera that fits the whole motion, or one that follows the root.

    joints (T, 22, 3); camera "auto" | "fixed" | "follow".
    """
    if camera not in CAMERAS:
        raise DataError(f"render: camera must be one of {', '.join(CAMERAS)}, got {camera!r}")
    num_frames = len(joints)
    root_xz = joints[:, 0, [0, 2]]  # (T, 2)
    span = float(np.max(np.ptp(root_xz, axis=0)))
    follows = camera == "follow" or (camera == "auto" and span > FOLLOW_SPAN)
    head_top = joints[:, HEAD] + np.array([0.0, HEAD_RADIUS, 0.0])  # (T, 3): the head disc's top
    with_head = np.concatenate([joints, head_top[:, None]], axis=1)  # (T, 23, 3)
    flat = with_head.reshape(-1, 3)
    top = max(float(flat[:, 1].max()), 0.5)
    bottom = min(float(flat[:, 1].min()), 0.0)
    if follows:
        # Body relative to its root (XZ only) over all frames plus a disc of floor around the root.
        root_offset = np.stack([root_xz[:, 0], np.zeros(num_frames), root_xz[:, 1]], axis=1)  # (T, 3)
        centred = with_head - root_offset[:, None]
        points = np.concatenate([centred.reshape(-1, 3), _ring(np.zeros(2), FOLLOW_RADIUS)])
        target_y = (top + bottom) / 2
        cam = fit_camera(points, np.array([0.0, target_y, 0.0]), width, height)
        smooth = _smooth(root_xz, window=max(1, int(round(FPS * 1.0))))
        targets = np.stack([smooth[:, 0], np.full(num_frames, target_y), smooth[:, 1]], axis=1)
        return _Framing(cam, targets, True, (0.0, 0.0, 0.0, 0.0))
    lo = flat.min(axis=0)
    hi = flat.max(axis=0)
    target = np.array([(lo[0] + hi[0]) / 2, (top + bottom) / 2, (lo[2] + hi[2]) / 2])
    floor_points = np.stack([flat[:, 0], np.zeros(len(flat)), flat[:, 2]], axis=1)
    points = np.concatenate([flat, floor_points])
    cam = fit_camera(points, target, width, height)
    box = (lo[0] - FLOOR_MARGIN, hi[0] + FLOOR_MARGIN, lo[2] - FLOOR_MARGIN, hi[2] + FLOOR_MARGIN)
    return _Framing(cam, np.broadcast_to(target, (num_frames, 3)).copy(), False, box)


# -------------------------------------------------------------------------------------------- floor
def _draw_floor(
    draw: ImageDraw.ImageDraw,
    cam: Camera,
    target: np.ndarray,
    box: tuple[float, float, float, float],
    panel: tuple[int, int],
) -> None:
    """Checker tiles over `box` (x0, x1, z0, z1), fading into the background over its outer metre.

    Tiles behind the camera, fully faded or outside the panel (width, height) are skipped; all the
    per-tile arithmetic is vectorised because the following camera redraws the floor every frame.
    """
    x0, x1, z0, z1 = box
    ix = np.arange(math.floor(x0 / TILE), math.ceil(x1 / TILE))
    iz = np.arange(math.floor(z0 / TILE), math.ceil(z1 / TILE))
    gx, gz = (g.ravel() for g in np.meshgrid(ix, iz, indexing="ij"))
    tile_centre = np.stack([(gx + 0.5) * TILE, (gz + 0.5) * TILE], axis=1)  # (N, 2)
    centre = np.array([(x0 + x1) / 2, (z0 + z1) / 2])
    half = np.array([(x1 - x0) / 2, (z1 - z0) / 2])
    fade = np.clip(np.max(np.abs(tile_centre - centre) - (half - 1.0), axis=1), 0.0, 1.0)  # (N,)
    corners = np.empty((len(gx), 4, 3))
    corners[:, :, 0] = np.stack([gx, gx + 1, gx + 1, gx], axis=1) * TILE
    corners[:, :, 1] = 0.0
    corners[:, :, 2] = np.stack([gz, gz, gz + 1, gz + 1], axis=1) * TILE
    xy, depth = cam.project(corners, target)  # (N, 4, 2), (N, 4)
    lo, hi = xy.min(axis=1), xy.max(axis=1)
    keep = (
        (depth.min(axis=1) > 0.3) & (fade < 0.999)
        & (hi[:, 0] >= 0) & (hi[:, 1] >= 0) & (lo[:, 0] <= panel[0]) & (lo[:, 1] <= panel[1])
    )
    dark = ((gx + gz) % 2).astype(bool)[:, None]
    base = np.where(dark, np.array(FLOOR_DARK, float), np.array(FLOOR_LIGHT, float))  # (N, 3)
    colours = np.round(base + (np.array(BACKGROUND, float) - base) * fade[:, None]).astype(int)
    for quad, colour in zip(xy[keep].reshape(-1, 8).tolist(), colours[keep].tolist()):
        draw.polygon(quad, fill=tuple(colour))


# ------------------------------------------------------------------------------------------- figure
def _facing(pose: np.ndarray) -> np.ndarray:
    """Unit horizontal direction the body faces, from hips and shoulders; pose (22, 3)."""
    across = (pose[LEFT_HIP] - pose[RIGHT_HIP]) + (pose[LEFT_SHOULDER] - pose[RIGHT_SHOULDER])
    # across × up with up = +Y, i.e. (-across_z, 0, across_x): left = +X gives facing +Z.
    fx, fz = -float(across[2]), float(across[0])
    norm = math.hypot(fx, fz)
    return np.array([fx / norm, 0.0, fz / norm]) if norm > 1e-6 else np.array([0.0, 0.0, 1.0])


def _disc(draw: ImageDraw.ImageDraw, x: float, y: float, radius: float, fill, outline=None, width: int = 0) -> None:
    r = max(radius, 0.5)
    draw.ellipse((x - r, y - r, x + r, y + r), fill=fill, outline=outline, width=width)


@dataclass(frozen=True)
class _Projected:
    """One pose on screen: 22 joints, the nose dot, then the 22 joints' shadows on the floor."""

    xy: np.ndarray     # (45, 2) pixels
    depth: np.ndarray  # (45,) metres
    focal: float

    def visible(self) -> bool:
        return bool(self.depth.min() > 0.1)

    def bbox(self, pad: float) -> tuple[float, float, float, float]:
        lo = self.xy.min(axis=0) - pad
        hi = self.xy.max(axis=0) + pad
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


_NOSE = NUM_JOINTS
_SHADOW = NUM_JOINTS + 1


def _project_pose(cam: Camera, target: np.ndarray, pose: np.ndarray) -> _Projected:
    nose = pose[HEAD] + HEAD_RADIUS * 0.9 * _facing(pose)
    shadow = pose.copy()
    shadow[:, 1] = 0.0
    xy, depth = cam.project(np.concatenate([pose, nose[None], shadow]), target)  # (45, 2), (45,)
    return _Projected(xy, depth, cam.focal)


def _draw_figure(draw: ImageDraw.ImageDraw, proj: _Projected, offset: tuple[int, int] = (0, 0)) -> None:
    """Shadow, then bones and head sorted far to near, shifted by -offset pixels."""
    if not proj.visible():
        return  # part of the body is behind the camera: nothing sensible to draw
    xy = (proj.xy - np.asarray(offset, dtype=np.float64)).tolist()
    depth = proj.depth.tolist()
    focal = proj.focal
    for c, p in _BONES:
        w = max(1, int(focal * BONE_RADIUS * 1.6 / depth[_SHADOW + c] + 0.5))
        draw.line((*xy[_SHADOW + p], *xy[_SHADOW + c]), fill=SHADOW, width=w)

    items = [((depth[c] + depth[p]) * 0.5, c) for c, p in _BONES]
    items.append((depth[HEAD], -1))
    items.append((depth[_NOSE], -2))
    items.sort(reverse=True)
    root_w = max(2, int(2 * focal * BONE_RADIUS / depth[0] + 0.5))
    _disc(draw, *xy[0], root_w / 2, fill=SPINE)
    for _, what in items:
        if what == -1:
            r = focal * HEAD_RADIUS / depth[HEAD]
            _disc(draw, *xy[HEAD], r, fill=SPINE, outline=BACKGROUND, width=max(1, int(r * 0.12)))
        elif what == -2:
            _disc(draw, *xy[_NOSE], focal * HEAD_RADIUS * 0.3 / depth[_NOSE], fill=NOSE)
        else:
            c, p = what, PARENTS[what]
            colour = _BONE_COLOURS[c]
            w = max(2, int(2 * focal * BONE_RADIUS / depth[c] + 0.5))
            draw.line((*xy[p], *xy[c]), fill=colour, width=w, joint=None)
            _disc(draw, *xy[c], w / 2, fill=colour)  # round joint; the parent end is the parent's disc


def _draw_trajectory(draw: ImageDraw.ImageDraw, path_xy: np.ndarray, width: int) -> None:
    """The root's path on the floor; path_xy (t, 2) screen points."""
    if len(path_xy) >= 2:
        draw.line(path_xy.ravel().tolist(), fill=TRAJECTORY, width=width, joint=None)


def _even_box(box: tuple[float, float, float, float], limit: int) -> tuple[int, int, int, int] | None:
    """Pixel box grown to multiples of SUPERSAMPLE and clipped to [0, limit); None when empty."""
    k = SUPERSAMPLE
    x0 = max(0, int(math.floor(box[0] / k)) * k)
    y0 = max(0, int(math.floor(box[1] / k)) * k)
    x1 = min(limit, int(math.ceil(box[2] / k)) * k)
    y1 = min(limit, int(math.ceil(box[3] / k)) * k)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


class _Panel:
    """Renders the frames of one motion into a square panel of `size` pixels.

    Everything is drawn at SUPERSAMPLE × the size and box-downsampled. With a fixed camera the floor
    and the root's path so far live in a persistent background (the path is extended incrementally)
    kept at both resolutions, and each frame only redraws and downsamples the box around the body.
    With a following camera the whole panel is redrawn every frame.
    """

    def __init__(self, joints: np.ndarray, size: int, camera: str = "auto") -> None:
        self.joints = joints
        self.size = size
        self.big = size * SUPERSAMPLE
        self.framing = frame_motion(joints, self.big, self.big, camera)
        cam = self.framing.camera
        floor_path = joints[:, 0].copy()
        floor_path[:, 1] = 0.0
        self.path_world = floor_path  # (T, 3)
        self.path_width = max(2, int(round(cam.focal * 0.03 / cam.distance)))
        self._last: Image.Image | None = None  # the held last frame, drawn once
        if not self.framing.follows:
            target = self.framing.targets[0]
            self._floor_big = Image.new("RGB", (self.big, self.big), BACKGROUND)
            _draw_floor(ImageDraw.Draw(self._floor_big), cam, target, self.framing.floor_box, (self.big, self.big))
            self._floor_small = self._floor_big.reduce(SUPERSAMPLE)
            self.path_xy = cam.project(floor_path, target)[0]  # (T, 2)
            self._reset_background()

    def __len__(self) -> int:
        return len(self.joints)

    def _reset_background(self) -> None:
        self._bg_big = self._floor_big.copy()
        self._bg_small = self._floor_small.copy()
        self._path_upto = 0  # the path is drawn up to this frame

    def _extend_path(self, t: int) -> None:
        """Draw the root path up to frame t into both backgrounds (restarting if t went back)."""
        if t < self._path_upto:
            self._reset_background()
        if t == self._path_upto:
            return
        segment = self.path_xy[self._path_upto : t + 1]
        _draw_trajectory(ImageDraw.Draw(self._bg_big), segment, self.path_width)
        box = _even_box((*segment.min(axis=0) - self.path_width, *segment.max(axis=0) + self.path_width), self.big)
        if box is not None:
            k = SUPERSAMPLE
            self._bg_small.paste(self._bg_big.crop(box).reduce(k), (box[0] // k, box[1] // k))
        self._path_upto = t

    def frame(self, t: int) -> Image.Image:
        """Frame t (frames past the end hold the last pose) as a size × size RGB image."""
        last = len(self.joints) - 1
        if t >= last and self._last is not None:
            return self._last
        t = min(t, last)
        cam = self.framing.camera
        target = self.framing.targets[t]
        proj = _project_pose(cam, target, self.joints[t])
        if not self.framing.follows:
            self._extend_path(t)
            image = self._bg_small.copy()
            pad = cam.focal * HEAD_RADIUS / max(float(proj.depth.min()), 0.1) + 2
            box = _even_box(proj.bbox(pad), self.big)
            if box is not None and proj.visible():
                crop = self._bg_big.crop(box)
                _draw_figure(ImageDraw.Draw(crop), proj, (box[0], box[1]))
                k = SUPERSAMPLE
                image.paste(crop.reduce(k), (box[0] // k, box[1] // k))
        else:
            image = Image.new("RGB", (self.big, self.big), BACKGROUND)
            draw = ImageDraw.Draw(image)
            reach = FOLLOW_RADIUS + 2.5
            floor = (target[0] - reach, target[0] + reach, target[2] - reach, target[2] + reach)
            _draw_floor(draw, cam, target, floor, (self.big, self.big))
            _draw_trajectory(draw, cam.project(self.path_world[: t + 1], target)[0], self.path_width)
            _draw_figure(draw, proj)
            image = image.reduce(SUPERSAMPLE)
        if t == last:
            self._last = image
        return image


# --------------------------------------------------------------------------------------------- text
def _font_path() -> str | None:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    return str(path) if path.exists() else None


_FONTS: dict[int, ImageFont.FreeTypeFont | ImageFont.ImageFont] = {}


def _font(pixels: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if pixels not in _FONTS:
        path = _font_path()
        _FONTS[pixels] = ImageFont.truetype(path, pixels) if path else ImageFont.load_default(size=pixels)
    return _FONTS[pixels]


class _Stamp:
    """Draws short strings from cached glyph masks: far cheaper than FreeType for per-frame counters."""

    def __init__(self, font, colour: tuple[int, int, int]) -> None:
        self.font = font
        self.colour = colour
        self.glyphs: dict[str, tuple[Image.Image, int]] = {}  # char -> (mask, advance in pixels)

    def _glyph(self, char: str) -> tuple[Image.Image, int]:
        if char not in self.glyphs:
            _, _, right, bottom = self.font.getbbox(char)
            advance = max(1, int(round(self.font.getlength(char))))
            mask = Image.new("L", (max(advance, int(right), 1), max(1, int(bottom))), 0)
            ImageDraw.Draw(mask).text((0, 0), char, font=self.font, fill=255)
            self.glyphs[char] = (mask, advance)
        return self.glyphs[char]

    def draw(self, canvas: Image.Image, xy: tuple[int, int], text: str) -> None:
        x, y = xy
        for char in text:
            mask, width = self._glyph(char)
            canvas.paste(self.colour, (x, y, x + mask.width, y + mask.height), mask)
            x += width


def _wrap(text: str, font, width: int, max_lines: int = MAX_CAPTION_LINES) -> list[str]:
    """Greedy word wrap to `width` pixels; the last line ends in an ellipsis when cut."""
    words = " ".join(text.split()).split(" ")
    lines: list[str] = []
    line = ""
    for word in words:
        trial = f"{line} {word}".strip()
        if font.getlength(trial) <= width or not line:
            line = trial
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    for i, ln in enumerate(lines):  # a single word wider than the panel
        while font.getlength(ln) > width and len(ln) > 1:
            ln = ln[:-2] + "…"
        lines[i] = ln
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while font.getlength(last + "…") > width and " " in last:
            last = last.rsplit(" ", 1)[0]
        lines[-1] = last + "…"
    return lines


def _draw_legend(draw: ImageDraw.ImageDraw, x: int, y: int, font, font_px: int, line_h: int, pad: int) -> None:
    """One line of coloured dots naming the colour code."""
    for label, colour in (("left", LEFT_LEG), ("right", RIGHT_LEG), ("spine/head", SPINE), ("root path", TRAJECTORY)):
        r = font_px // 2
        draw.ellipse([x, y + line_h // 2 - r, x + 2 * r, y + line_h // 2 + r], fill=colour)
        x += 2 * r + 4
        draw.text((x, y), label, font=font, fill=TEXT_DIM)
        x += int(font.getlength(label)) + 3 * pad


# --------------------------------------------------------------------------------------------- grid
@dataclass(frozen=True)
class _Layout:
    width: int
    height: int
    origins: list[tuple[int, int]]  # panel top-left corners
    static: Image.Image             # the canvas with captions and titles, panels left blank
    counter: _Stamp                 # draws the per-panel frame counters


def _layout(
    captions: list[str | None], titles: list[str | None], ncols: int, size: int, legend: bool
) -> _Layout:
    count = len(captions)
    nrows = math.ceil(count / ncols)
    font_px = max(9, round(size / 19))
    font = _font(font_px)
    title_font = _font(font_px + 1)
    line_h = int(font_px * 1.25)
    pad = max(3, size // 60)
    wrapped = [_wrap(c, font, size - 2 * pad) if c else [] for c in captions]
    title_lines = [_wrap(t, title_font, size - 2 * pad, 1) if t else [] for t in titles]
    title_h = (line_h + pad) if any(title_lines) else 0
    caption_h = (max(len(w) for w in wrapped) * line_h + 2 * pad) if any(wrapped) else 0
    gutter = pad
    cell_w = size + gutter
    cell_h = title_h + size + caption_h + gutter + (2 * pad if nrows > 1 else 0)  # rows apart
    legend_h = (line_h + pad) if legend else 0
    width = ncols * cell_w + gutter
    height = nrows * cell_h + gutter + legend_h
    width += width % 2  # even dimensions for H.264 / yuv420p
    height += height % 2
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    origins = []
    for i in range(count):
        row, col = divmod(i, ncols)
        x = gutter + col * cell_w
        y = gutter + row * cell_h
        for k, line in enumerate(title_lines[i]):
            draw.text((x + pad, y + k * line_h), line, font=title_font, fill=TEXT)
        origins.append((x, y + title_h))
        for k, line in enumerate(wrapped[i]):
            draw.text((x + pad, y + title_h + size + pad + k * line_h), line, font=font, fill=TEXT)
    if legend:
        _draw_legend(draw, gutter + pad, height - legend_h, font, font_px, line_h, pad)
    return _Layout(width, height, origins, canvas, _Stamp(_font(max(8, font_px - 2)), TEXT_DIM))


class _Grid:
    """Panels laid out on a canvas with their captions; frame(t) draws every panel at time t."""

    def __init__(
        self,
        motions: list[np.ndarray],
        captions: list[str | None],
        titles: list[str | None],
        ncols: int,
        size: int,
        frame_counter: bool,
        legend: bool,
        camera: str,
    ) -> None:
        self.layout = _layout(captions, titles, ncols, size, legend)
        self.panels = [_Panel(m, size, camera) for m in motions]
        self.frame_counter = frame_counter

    def __len__(self) -> int:
        return max(len(p) for p in self.panels)

    def _draw(self, canvas: Image.Image, t: int) -> None:
        for panel, (x, y) in zip(self.panels, self.layout.origins):
            canvas.paste(panel.frame(t), (x, y))
            if self.frame_counter:
                shown = min(t, len(panel) - 1) + 1
                self.layout.counter.draw(canvas, (x + 3, y + 2), f"{shown}/{len(panel)}")

    def frame(self, t: int) -> Image.Image:
        """A new image of frame t."""
        canvas = self.layout.static.copy()
        self._draw(canvas, t)
        return canvas

    def frames(self) -> Iterator[Image.Image]:
        """Every frame in order. To save copying, the SAME image is redrawn and yielded each time:
        consume (encode, convert) it before asking for the next."""
        canvas = self.layout.static.copy()
        for t in range(len(self)):
            self._draw(canvas, t)  # each panel paste overwrites the previous frame's panel and counter
            yield canvas


# ------------------------------------------------------------------------------------------ writing
def _suffix(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise DataError(f"{path}: unsupported picture format {suffix or '(none)'!r}; use .gif or .mp4")
    return suffix


def _write_gif(path: Path, frames: Iterator[Image.Image], samples: list[Image.Image], fps: float) -> None:
    """Quantise every frame to one shared palette (from sample frames) and write an animated GIF."""
    stacked = Image.new("RGB", (samples[0].width, samples[0].height * len(samples)))
    for i, sample in enumerate(samples):
        stacked.paste(sample, (0, i * sample.height))
    palette = stacked.quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    indexed = [frame.quantize(palette=palette, dither=Image.Dither.NONE) for frame in frames]
    buffer = io.BytesIO()
    duration = max(20, int(round(1000 / fps / 10)) * 10)  # GIF timing is in 1/100 s
    indexed[0].save(
        buffer, format="GIF", save_all=True, append_images=indexed[1:], duration=duration, loop=0, optimize=True
    )
    atomic_write_bytes(path, buffer.getvalue())


def _write_mp4(path: Path, frames: Iterator[Image.Image], fps: float) -> None:
    """H.264 in yuv420p (plays everywhere); frames must have even dimensions."""
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".mp4")
    os.close(fd)
    try:
        writer = imageio.get_writer(
            tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264", pixelformat="yuv420p",
            macro_block_size=1, quality=None, ffmpeg_log_level="error",
            output_params=["-crf", "23", "-preset", "veryfast", "-movflags", "+faststart"],
        )
        try:
            for frame in frames:
                writer.append_data(np.asarray(frame))
        finally:
            writer.close()
        publish_temp_file(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_animation(path: str | os.PathLike, grid: _Grid, fps: float) -> Path:
    path = Path(path)
    if _suffix(path) == ".gif":
        total = len(grid)
        samples = [grid.frame(t) for t in sorted({0, total // 2, total - 1})]
        _write_gif(path, grid.frames(), samples, fps)
    else:
        _write_mp4(path, grid.frames(), fps)
    return path


# ----------------------------------------------------------------------------------------- public
def render_grid(
    motions: Sequence[np.ndarray],
    captions: Sequence[str | None] | None,
    path: str | os.PathLike,
    ncols: int | None = None,
    fps: float = FPS,
    size: int = 240,
    titles: Sequence[str | None] | None = None,
    frame_counter: bool = True,
    legend: bool = True,
    camera: str = "auto",
) -> Path:
    """Animate several motions side by side into one .gif or .mp4 (chosen by the suffix of `path`).

    motions: list of (T_i, 22, 3) joint positions (metres, Y up); shorter motions hold their last
    frame. captions: wrapped under each panel; titles: one line over each panel. ncols defaults to
    up to 4 columns. size is the pixel side of one square panel. Returns the path written.
    """
    _suffix(path)
    _check_settings(path, fps, size, camera)
    checked = _check_motions(motions, path)
    caps = _check_labels(captions, len(checked), path, "captions")
    tits = _check_labels(titles, len(checked), path, "titles")
    ncols = _resolve_ncols(ncols, len(checked), path)
    grid = _Grid(checked, caps, tits, ncols, size, frame_counter, legend, camera)
    return _write_animation(path, grid, fps)


def render_motion(
    joints: np.ndarray,
    path: str | os.PathLike,
    caption: str | None = None,
    fps: float = FPS,
    size: int = 320,
    title: str | None = None,
    frame_counter: bool = True,
    camera: str = "auto",
) -> Path:
    """Animate one motion (T, 22, 3) into a .gif or .mp4 with an optional caption under it."""
    return render_grid(
        [_check_motion(joints, path)], [caption], path, ncols=1, fps=fps, size=size,
        titles=[title], frame_counter=frame_counter, legend=False, camera=camera,
    )


def render_frames(
    motions: np.ndarray | Sequence[np.ndarray],
    captions: Sequence[str | None] | str | None = None,
    ncols: int | None = None,
    size: int = 240,
    titles: Sequence[str | None] | str | None = None,
    frame_counter: bool = True,
    legend: bool = True,
    camera: str = "auto",
) -> list[np.ndarray]:
    """The frames render_grid would write, as a list of (H, W, 3) uint8 arrays.

    motions: one (T, 22, 3) array or a list of them.
    """
    _check_settings(None, FPS, size, camera)
    checked = _check_motions(motions, None)
    caps = _check_labels(captions, len(checked), None, "captions")
    tits = _check_labels(titles, len(checked), None, "titles")
    ncols = _resolve_ncols(ncols, len(checked), None)
    grid = _Grid(checked, caps, tits, ncols, size, frame_counter, legend, camera)
    return [np.asarray(frame) for frame in grid.frames()]


def render_keyframes(
    joints: np.ndarray,
    path: str | os.PathLike,
    n: int = 6,
    caption: str | None = None,
    size: int = 240,
    fps: float = FPS,
    camera: str = "auto",
) -> Path:
    """A PNG strip of `n` poses evenly spaced in time, seen by the same camera an animation would use
    (one fixed camera fitted to the whole motion, or one following the root for long walks).

    Each panel shows the pose, the root path so far and its time in seconds; the caption is wrapped
    under the strip. Good for READMEs and for eyeballing a motion without playing it.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise DataError(f"{path}: keyframes are written as .png, got {path.suffix or '(none)'!r}")
    _check_settings(path, fps, size, camera)
    array = _check_motion(joints, path)
    if isinstance(n, bool) or not (isinstance(n, (int, np.integer)) and n >= 1):
        raise DataError(f"{path}: n must be a positive integer, got {n!r}")
    n = min(int(n), len(array))
    times = np.unique(np.round(np.linspace(0, len(array) - 1, n)).astype(int))
    panel = _Panel(array, size, camera)
    font_px = max(9, round(size / 19))
    font = _font(font_px)
    line_h = int(font_px * 1.25)
    pad = max(3, size // 60)
    width = len(times) * (size + pad) + pad
    lines = _wrap(caption, font, width - 2 * pad, MAX_CAPTION_LINES) if caption else []
    legend_h = line_h + pad
    height = pad + size + (len(lines) * line_h + 2 * pad if lines else pad) + legend_h
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for k, t in enumerate(times):
        x = pad + k * (size + pad)
        canvas.paste(panel.frame(int(t)), (x, pad))
        draw.text((x + 3, pad + 2), f"t = {t / fps:.2f} s", font=font, fill=TEXT_DIM)
    y = pad + size + pad
    for k, line in enumerate(lines):
        draw.text((pad, y + k * line_h), line, font=font, fill=TEXT)
    _draw_legend(draw, pad, height - legend_h, font, font_px, line_h, pad)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=True)
    atomic_write_bytes(path, buffer.getvalue())
    return path
