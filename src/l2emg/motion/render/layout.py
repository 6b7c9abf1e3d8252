"""The grid: panels laid out on one canvas with their titles, captions, frame counters and legend."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw

from l2emg.motion.render.draw import _Panel
from l2emg.motion.render.style import BACKGROUND, TEXT, TEXT_DIM
from l2emg.motion.render.text import _draw_legend, _font, _Stamp, _wrap


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

