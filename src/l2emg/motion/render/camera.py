"""The camera: a pinhole camera and how each motion is framed by it.

Joints are projected with numpy through a pinhole camera, seen from a fixed 3/4 front view. Each
panel frames its whole motion with a fixed camera when the root travels at most `FOLLOW_SPAN` metres
(in-place motions, walking in circles), so travel reads as travel; a motion that travels further gets
a camera that follows the smoothed root at a fixed distance, so the body stays big (`frame_motion`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from l2emg.errors import DataError
from l2emg.motion.render.style import HEAD, HEAD_RADIUS
from l2emg.motion.skeleton import FPS

FLOOR_MARGIN = 1.5      # metres of floor shown around the root's path (fixed camera)
FOLLOW_SPAN = 4.0       # metres of root travel beyond which the camera follows the root
FOLLOW_RADIUS = 1.2     # metres around the root kept in view by a following camera
AZIMUTH = math.radians(35.0)     # camera direction around +Y, from +Z (the front) towards +X (the left)
ELEVATION = math.radians(22.0)   # camera looks down by this much
FOV = math.radians(40.0)         # vertical and horizontal field of view used to choose the distance
MIN_DISTANCE = 4.0               # metres: keeps the perspective mild for small motions
MARGIN = 0.88                    # fraction of the panel the framed points may fill

CAMERAS = ("auto", "fixed", "follow")


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

