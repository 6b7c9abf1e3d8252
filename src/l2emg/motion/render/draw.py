"""Drawing one motion: the floor, the root's path, the shadow and the stick figure, panel by panel.

The picture: a checkered floor in perspective, the root's past path on the floor, the body's shadow,
bones thick and coloured by kinematic chain with a head disc and a nose dot that shows where the body
faces. Everything is drawn with Pillow's ImageDraw at `SUPERSAMPLE` × the output size, then
box-downsampled (anti-aliasing); `_Panel` renders the frames of one motion, redrawing only the box
around the body when the camera is fixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from l2emg.motion.render.camera import FOLLOW_RADIUS, Camera, frame_motion
from l2emg.motion.render.style import (
    _BONE_COLOURS,
    _BONES,
    BACKGROUND,
    BONE_RADIUS,
    FLOOR_DARK,
    FLOOR_LIGHT,
    HEAD,
    HEAD_RADIUS,
    LEFT_HIP,
    LEFT_SHOULDER,
    NOSE,
    RIGHT_HIP,
    RIGHT_SHOULDER,
    SHADOW,
    SPINE,
    SUPERSAMPLE,
    TILE,
    TRAJECTORY,
)
from l2emg.motion.skeleton import NUM_JOINTS, PARENTS


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

