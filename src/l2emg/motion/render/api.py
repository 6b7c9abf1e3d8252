"""The public entry points: `render_grid`, `render_motion`, `render_frames`, `render_keyframes`, and the
checks of their arguments (a bad motion, size or camera is a DataError naming the file being written)."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from l2emg.errors import DataError
from l2emg.motion.render.camera import CAMERAS
from l2emg.motion.render.draw import _Panel
from l2emg.motion.render.layout import _Grid
from l2emg.motion.render.style import BACKGROUND, TEXT, TEXT_DIM
from l2emg.motion.render.text import MAX_CAPTION_LINES, _draw_legend, _font, _wrap
from l2emg.motion.render.video import _suffix, _write_animation
from l2emg.motion.skeleton import FPS, NUM_JOINTS
from l2emg.utils.io import atomic_write_bytes


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


# ----------------------------------------------------------------------------------------- public
def _checked_grid(motions, captions, titles, ncols: int | None, size: int, frame_counter: bool, legend: bool,
                  camera: str, path: str | os.PathLike | None, fps: float) -> _Grid:
    """The panels of `render_grid` / `render_frames` after every argument check (errors name `path`)."""
    _check_settings(path, fps, size, camera)
    checked = _check_motions(motions, path)
    caps = _check_labels(captions, len(checked), path, "captions")
    tits = _check_labels(titles, len(checked), path, "titles")
    ncols = _resolve_ncols(ncols, len(checked), path)
    return _Grid(checked, caps, tits, ncols, size, frame_counter, legend, camera)


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
    grid = _checked_grid(motions, captions, titles, ncols, size, frame_counter, legend, camera, path, fps)
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
    grid = _checked_grid(motions, captions, titles, ncols, size, frame_counter, legend, camera, None, FPS)
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
