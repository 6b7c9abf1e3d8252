"""Writing animations: a grid's frames encoded as an animated GIF (one shared palette) or an H.264 MP4."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
from PIL import Image

from l2emg.errors import DataError
from l2emg.utils.io import atomic_write_bytes, publish_temp_file

if TYPE_CHECKING:
    from l2emg.motion.render.layout import _Grid


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

