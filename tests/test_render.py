"""Rendering motions to GIF / MP4 / PNG: files readable back with the right frames and sizes,
correct handedness on screen, sensible framing, and refusal of bad input."""

from __future__ import annotations

import math
from pathlib import Path

import imageio.v2 as imageio_v2
import imageio.v3 as iio
import numpy as np
import pytest

from l2emg.errors import DataError
from l2emg.motion import render
from l2emg.motion.render import (
    LEFT_LEG,
    RIGHT_LEG,
    fit_camera,
    frame_motion,
    render_frames,
    render_grid,
    render_keyframes,
    render_motion,
)
from l2emg.motion.skeleton import NUM_JOINTS, REST_PELVIS_HEIGHT, forward_kinematics, rest_pose


def _rot(axis: int, angle: np.ndarray) -> np.ndarray:
    """(T, 3, 3) rotations about the x (0), y (1) or z (2) axis."""
    c, s = np.cos(angle), np.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    out = np.zeros(angle.shape + (3, 3))
    out[..., axis, axis] = 1.0
    out[..., i, i] = c
    out[..., j, j] = c
    out[..., i, j] = -s
    out[..., j, i] = s
    return out


def walking(num_frames: int = 40, speed: float = 1.2, turn: float = 0.0, fps: int = 20) -> np.ndarray:
    """A walking-like motion (T, 22, 3): hips, knees and shoulders swing while the root moves forward."""
    t = np.arange(num_frames) / fps
    phase = 2 * np.pi * 0.9 * t
    rot = np.broadcast_to(np.eye(3), (num_frames, NUM_JOINTS, 3, 3)).copy()
    heading = turn * t
    rot[:, 0] = _rot(1, heading)
    rot[:, 1] = _rot(0, -0.45 * np.sin(phase))
    rot[:, 2] = _rot(0, 0.45 * np.sin(phase))
    rot[:, 4] = _rot(0, 0.6 * np.clip(np.sin(phase + 1.2), 0, None))
    rot[:, 5] = _rot(0, 0.6 * np.clip(-np.sin(phase + 1.2), 0, None))
    rot[:, 16] = _rot(0, 0.4 * np.sin(phase)) @ _rot(2, np.full(num_frames, -1.3))
    rot[:, 17] = _rot(0, -0.4 * np.sin(phase)) @ _rot(2, np.full(num_frames, 1.3))
    velocity = speed * np.stack([np.sin(heading), np.zeros(num_frames), np.cos(heading)], axis=1)
    root = np.cumsum(velocity / fps, axis=0) - velocity[0] / fps
    root[:, 1] = REST_PELVIS_HEIGHT - 0.02 + 0.02 * np.cos(2 * phase)
    return forward_kinematics(rot, root)


def standing(num_frames: int = 20) -> np.ndarray:
    return np.repeat(rest_pose()[None], num_frames, axis=0)


def _no_temp_files(folder: Path) -> bool:
    return not any(p.name.startswith(".") for p in folder.iterdir())


def test_render_motion_gif_round_trip(tmp_path: Path) -> None:
    motion = walking(30)
    out = render_motion(motion, tmp_path / "walk.gif", caption="a person walks forward", size=96)
    assert out == tmp_path / "walk.gif"
    frames = iio.imread(out, index=None)
    expected = render_frames(motion, ["a person walks forward"], size=96, legend=False)
    assert frames.shape[0] == 30 == len(expected)
    assert frames.shape[1:3] == expected[0].shape[:2]
    assert frames.shape[1] % 2 == 0 and frames.shape[2] % 2 == 0
    assert not np.array_equal(frames[0], frames[15]), "the figure must move between frames"
    # The palette GIF stays close to the RGB frames it was made from.
    assert np.abs(frames[10][..., :3].astype(int) - expected[10].astype(int)).mean() < 3.0
    assert _no_temp_files(tmp_path)


def test_render_grid_mp4_with_different_lengths(tmp_path: Path) -> None:
    motions = [walking(20), walking(35, turn=0.8)]
    path = render_grid(motions, ["short", "longer, turning"], tmp_path / "grid.mp4", size=80, titles=["a", "b"])
    reader = imageio_v2.get_reader(path, format="FFMPEG")
    try:
        assert reader.count_frames() == 35
        width, height = reader.get_meta_data()["size"]
        first = reader.get_data(0)
    finally:
        reader.close()
    expected = render_frames(motions, ["short", "longer, turning"], size=80, titles=["a", "b"])
    assert (height, width) == expected[0].shape[:2]
    assert width % 2 == 0 and height % 2 == 0
    assert np.abs(first.astype(int) - expected[0].astype(int)).mean() < 8.0  # lossy H.264, same picture
    assert _no_temp_files(tmp_path)


def test_shorter_motion_holds_its_last_frame() -> None:
    frames = render_frames([walking(10), walking(25)], size=64, ncols=2)
    assert len(frames) == 25
    layout = render._layout([None, None], [None, None], 2, 64, legend=False)
    (x0, y0), (x1, y1) = layout.origins
    first_panel = [f[y0 : y0 + 64, x0 : x0 + 64] for f in frames]
    second_panel = [f[y1 : y1 + 64, x1 : x1 + 64] for f in frames]
    assert all(np.array_equal(first_panel[9], p) for p in first_panel[10:])
    assert not np.array_equal(first_panel[5], first_panel[9])
    assert not np.array_equal(second_panel[10], second_panel[24])


def test_keyframes_png(tmp_path: Path) -> None:
    path = render_keyframes(walking(60), tmp_path / "keys.png", n=5, caption="walks " * 40, size=100)
    image = iio.imread(path)
    assert image.ndim == 3 and image.shape[2] == 3
    assert image.shape[1] > 5 * 100 and image.shape[0] > 100
    assert (image < 250).any(axis=-1).mean() > 0.05, "the strip must show floor and figures"
    assert _no_temp_files(tmp_path)


def _colour_mask(image: np.ndarray, colour: tuple[int, int, int], tolerance: int = 12) -> np.ndarray:
    return (np.abs(image.astype(int) - np.array(colour)) <= tolerance).all(axis=-1)


def test_handedness_left_limbs_are_blue_and_on_screen_right_when_facing_camera() -> None:
    # The body faces +Z, towards the front-side camera: its left (+X) must appear on the image's right.
    frame = render_frames(standing(1), size=160, frame_counter=False, legend=False)[0]
    blue = np.argwhere(_colour_mask(frame, LEFT_LEG))
    red = np.argwhere(_colour_mask(frame, RIGHT_LEG))
    assert len(blue) > 30 and len(red) > 30
    assert blue[:, 1].mean() > red[:, 1].mean() + 5


def test_camera_frames_in_place_motion_fixed_and_long_walk_following() -> None:
    in_place = standing(20)
    circle = walking(120, speed=1.0, turn=0.7)   # radius ≈ 1.4 m
    long_walk = walking(120, speed=1.5)          # 9 m straight
    assert not frame_motion(in_place, 200, 200).follows
    assert not frame_motion(circle, 200, 200).follows
    follow = frame_motion(long_walk, 200, 200)
    assert follow.follows
    # A following camera keeps the root near the panel centre all along.
    cam = follow.camera
    xy = np.stack([cam.project(long_walk[t, 0], follow.targets[t])[0] for t in range(len(long_walk))])
    assert np.abs(xy - 100).max() < 60
    # A fixed camera shows every joint of every frame inside the panel.
    fixed = frame_motion(circle, 200, 200)
    xy, depth = fixed.camera.project(circle.reshape(-1, 3), fixed.targets[0])
    assert (depth > 0).all() and (xy >= 0).all() and (xy <= 200).all()


def test_fit_camera_fills_the_panel() -> None:
    points = np.random.default_rng(0).uniform(-1, 1, size=(200, 3)) + np.array([3.0, 1.0, -2.0])
    cam = fit_camera(points, points.mean(axis=0), 300, 200)
    xy, depth = cam.project(points, points.mean(axis=0))
    assert (depth > 0).all()
    assert xy[:, 0].min() >= 0 and xy[:, 0].max() <= 300 and xy[:, 1].min() >= 0 and xy[:, 1].max() <= 200
    spans = xy.max(axis=0) - xy.min(axis=0)
    assert math.isclose(max(spans[0] / 300, spans[1] / 200), render.MARGIN, rel_tol=1e-6)


def test_caption_wrapping_respects_width_and_line_limit() -> None:
    font = render._font(12)
    lines = render._wrap("a person " * 60, font, 150)
    assert 1 < len(lines) <= render.MAX_CAPTION_LINES
    assert all(font.getlength(line) <= 150 for line in lines)
    assert lines[-1].endswith("…")


@pytest.mark.parametrize(
    ("motion", "problem"),
    [
        (np.zeros((10, 21, 3)), "shape"),
        (np.zeros((0, 22, 3)), "empty"),
        (np.full((5, 22, 3), np.nan), "NaN"),
        (np.zeros((22, 3)), "shape"),
        ("not a motion", "numeric"),
    ],
)
def test_bad_motion_refused_naming_path(tmp_path: Path, motion: object, problem: str) -> None:
    path = tmp_path / "bad.gif"
    with pytest.raises(DataError, match=problem) as err:
        render_motion(motion, path)
    assert str(path) in str(err.value)
    assert not path.exists()


def test_bad_arguments_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no motions"):
        render_grid([], [], tmp_path / "g.gif")
    with pytest.raises(DataError, match="2 captions for 1 motions"):
        render_grid([walking(5)], ["a", "b"], tmp_path / "g.gif")
    with pytest.raises(DataError, match=r"\.gif or \.mp4"):
        render_motion(walking(5), tmp_path / "m.avi")
    with pytest.raises(DataError, match=r"motion 1 .*NaN"):
        bad = walking(5)
        bad[3, 7, 1] = np.inf
        render_grid([walking(5), bad], None, tmp_path / "g.mp4")
    with pytest.raises(DataError, match=r"\.png"):
        render_keyframes(walking(5), tmp_path / "k.gif")
    with pytest.raises(DataError, match="camera must be"):
        render_motion(walking(5), tmp_path / "m.gif", camera="orbit")
    with pytest.raises(DataError, match="ncols"):
        render_grid([walking(5)], None, tmp_path / "g.gif", ncols=0)
    with pytest.raises(DataError, match="fps"):
        render_motion(walking(5), tmp_path / "m.gif", fps=0)
    assert list(tmp_path.iterdir()) == []
