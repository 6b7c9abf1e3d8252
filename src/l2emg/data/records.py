"""What a dataset knows about each motion besides its arrays: captions, records, length filters.

`Caption` is one line of `texts/ID.txt` (`caption#word/POS ...#start#end`); `MotionRecord` is one
motion's id, split, captions, frame count and labels. The HumanML3D length filter and the caption
sub-span helper work on these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from l2emg.data.layout import FPS, HUMANML3D_MAX_FRAMES, HUMANML3D_MIN_FRAMES
from l2emg.data.postags import tag_caption


@dataclass(frozen=True)
class Caption:
    """One text description of a motion; `start`/`end` (seconds) mark a sub-span, 0/0 = whole motion."""

    text: str
    tokens: tuple[str, ...]
    start: float = 0.0
    end: float = 0.0

    def to_line(self) -> str:
        text = " ".join(self.text.replace("#", " ").split())
        tokens = self.tokens or tag_caption(text)
        return f"{text}#{' '.join(tokens)}#{self.start:.1f}#{self.end:.1f}"

    @classmethod
    def from_line(cls, line: str) -> "Caption":
        """Parse `caption#tokens#start#end`; raises ValueError when the line is malformed."""
        parts = line.rstrip("\n").split("#")
        if len(parts) < 4:
            raise ValueError(f"expected 'caption#tokens#start#end', got {len(parts)} field(s)")
        text = "#".join(parts[:-3]).strip()
        if not text:
            raise ValueError("empty caption text")
        tokens = tuple(parts[-3].split())
        for token in tokens:
            word, sep, pos = token.rpartition("/")
            if not sep or not word or not pos:
                raise ValueError(f"token {token!r} is not 'word/POS'")
        try:
            start, end = float(parts[-2]), float(parts[-1])
        except ValueError:
            raise ValueError(f"start/end {parts[-2]!r}/{parts[-1]!r} are not numbers") from None
        # HumanML3D writes 'nan' for captions that cover the whole motion.
        start = 0.0 if math.isnan(start) else start
        end = 0.0 if math.isnan(end) else end
        return cls(text=text, tokens=tokens, start=start, end=end)

    @classmethod
    def from_text(cls, text: str) -> "Caption":
        """A whole-motion caption, tagged with `tag_caption`."""
        return cls(text=" ".join(text.split()), tokens=tag_caption(text))


@dataclass
class MotionRecord:
    """Everything about one motion except its arrays (see `MotionDataset.features/joints`)."""

    motion_id: str
    split: str
    captions: list[Caption]
    num_frames: int  # T joint frames; the feature array has T-1 rows
    emotion: str | None
    scenario: str | None
    action: str | None = None
    intensity: float | None = None

    def labels(self) -> dict[str, Any]:
        return {"emotion": self.emotion, "scenario": self.scenario, "action": self.action,
                "intensity": self.intensity}



def length_ok(num_frames: int, min_frames: int = HUMANML3D_MIN_FRAMES,
              max_frames: int = HUMANML3D_MAX_FRAMES) -> bool:
    """HumanML3D's length filter: keep motions of min_frames..max_frames joint frames."""
    return min_frames <= num_frames <= max_frames


def filter_by_length(records: Iterable[MotionRecord], min_frames: int = HUMANML3D_MIN_FRAMES,
                     max_frames: int = HUMANML3D_MAX_FRAMES) -> list[MotionRecord]:
    """The records a HumanML3D loader would keep (nothing is cropped on load; this is opt-in)."""
    return [r for r in records if length_ok(r.num_frames, min_frames, max_frames)]


def caption_segment(features: np.ndarray, caption: Caption, fps: int = FPS) -> np.ndarray:
    """The frames a caption describes: all of them for start=end=0, else [start*fps, end*fps)."""
    if caption.start == 0.0 and caption.end == 0.0:
        return features
    return features[int(caption.start * fps): int(caption.end * fps)]

