"""Pictures of motions: animated stick figures (GIF or MP4), grids of them, and keyframe strips (PNG).

Why a renderer of our own: matplotlib's 3D axes need tens of milliseconds a frame, and the data preview
draws ~15 grids of 8 panels × ~200 frames. Here joints are projected with numpy through a pinhole camera
and drawn with Pillow's ImageDraw at twice the output size, then box-downsampled (anti-aliasing):
about 0.4 ms per panel and frame with a fixed camera (only the box around the body is redrawn) and
about 1.2 ms with a following one (the floor moves), on one core.

Conventions (HumanML3D): Y is up, metres, the body faces +Z at frame 0, the character's left is +X.

One module per concept, bottom-up:

- `style.py`: the look (colours, the bones and their colours, sizes, supersampling);
- `camera.py`: the pinhole `Camera`, `fit_camera`, and `frame_motion` (a fixed or a following camera);
- `draw.py`: the floor, the root's path, the shadow and the figure; `_Panel`, one motion's frames;
- `text.py`: fonts, caption wrapping, frame counters, the colour legend;
- `layout.py`: the grid of panels with titles and captions on one canvas;
- `video.py`: encoding a grid's frames as GIF or MP4;
- `api.py`: `render_grid`, `render_motion`, `render_frames`, `render_keyframes` and their argument checks.

This package re-exports the public names, so `from l2emg.motion.render import render_grid` works as
before the split.
"""

from l2emg.motion.render.api import render_frames, render_grid, render_keyframes, render_motion
from l2emg.motion.render.camera import (
    AZIMUTH,
    CAMERAS,
    ELEVATION,
    FLOOR_MARGIN,
    FOLLOW_RADIUS,
    FOLLOW_SPAN,
    FOV,
    MARGIN,
    MIN_DISTANCE,
    Camera,
    fit_camera,
    frame_motion,
)
from l2emg.motion.render.layout import _layout as _layout  # private helpers read by tests/test_render.py
from l2emg.motion.render.style import (
    BACKGROUND,
    BONE_RADIUS,
    FLOOR_DARK,
    FLOOR_LIGHT,
    HEAD,
    HEAD_RADIUS,
    LEFT_ARM,
    LEFT_HIP,
    LEFT_LEG,
    LEFT_SHOULDER,
    NOSE,
    RIGHT_ARM,
    RIGHT_HIP,
    RIGHT_LEG,
    RIGHT_SHOULDER,
    SHADOW,
    SPINE,
    SUPERSAMPLE,
    TEXT,
    TEXT_DIM,
    TILE,
    TRAJECTORY,
)
from l2emg.motion.render.text import MAX_CAPTION_LINES
from l2emg.motion.render.text import _font as _font
from l2emg.motion.render.text import _wrap as _wrap

__all__ = [
    "AZIMUTH",
    "BACKGROUND",
    "BONE_RADIUS",
    "CAMERAS",
    "ELEVATION",
    "FLOOR_DARK",
    "FLOOR_LIGHT",
    "FLOOR_MARGIN",
    "FOLLOW_RADIUS",
    "FOLLOW_SPAN",
    "FOV",
    "HEAD",
    "HEAD_RADIUS",
    "LEFT_ARM",
    "LEFT_HIP",
    "LEFT_LEG",
    "LEFT_SHOULDER",
    "MARGIN",
    "MAX_CAPTION_LINES",
    "MIN_DISTANCE",
    "NOSE",
    "RIGHT_ARM",
    "RIGHT_HIP",
    "RIGHT_LEG",
    "RIGHT_SHOULDER",
    "SHADOW",
    "SPINE",
    "SUPERSAMPLE",
    "TEXT",
    "TEXT_DIM",
    "TILE",
    "TRAJECTORY",
    "Camera",
    "fit_camera",
    "frame_motion",
    "render_frames",
    "render_grid",
    "render_keyframes",
    "render_motion",
]
