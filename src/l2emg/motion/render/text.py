"""Text on the pictures: fonts, word-wrapped captions, cached-glyph frame counters and the colour legend."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from l2emg.motion.render.style import LEFT_LEG, RIGHT_LEG, SPINE, TEXT_DIM, TRAJECTORY

MAX_CAPTION_LINES = 4


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

