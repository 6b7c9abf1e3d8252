"""What an action builder gets: frame count, a random generator, the emotion style and timing helpers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from l2emg.data.synth.body import BodyTrack
from l2emg.data.synth.curves import cumulative, smooth_noise, smoothstep
from l2emg.data.synth.emotions import EmotionStyle
from l2emg.motion.skeleton import FPS


@dataclass
class BuildContext:
    num_frames: int
    rng: np.random.Generator
    style: EmotionStyle
    t: np.ndarray = field(init=False)   # (T,) seconds

    def __post_init__(self) -> None:
        self.t = np.arange(self.num_frames) / FPS

    @property
    def duration(self) -> float:
        return self.num_frames / FPS

    @property
    def amp(self) -> float:
        return self.style.amplitude

    @property
    def tempo(self) -> float:
        return self.style.tempo

    def phase(self, hz: float, jitter: float = 0.05) -> np.ndarray:
        """(T,) cycles of a rhythm at `hz` (scaled by the emotion's tempo), with a random start
        and a little natural tempo drift."""
        rate = hz * self.tempo * (1.0 + jitter * smooth_noise(self.rng, self.t, 0.25))
        return self.rng.uniform(0.0, 1.0) + cumulative(rate, 1.0 / FPS)

    def envelope(self, ramp_in: float = 0.5, ramp_out: float | None = None, start: float = 0.0) -> np.ndarray:
        """(T,) 0 -> 1 over `ramp_in` s after `start` (from the rest pose), and back to 0 over the
        last `ramp_out` s when given."""
        env = smoothstep((self.t - start) / ramp_in)
        if ramp_out:
            env = env * smoothstep((self.duration - self.t) / ramp_out)
        return env

    def uniform(self, low: float, high: float) -> float:
        return float(self.rng.uniform(low, high))

    def chance(self, p: float) -> bool:
        return bool(self.rng.uniform() < p)

    def times(self, period: float, start: float = 0.3, end_margin: float = 0.3, jitter: float = 0.15) -> np.ndarray:
        """Event times every ~`period` s (tempo-scaled) inside the clip."""
        period = period / self.tempo
        out, cur = [], start + self.uniform(0.0, 0.3)
        while cur < self.duration - end_margin:
            out.append(cur)
            cur += period * (1.0 + self.uniform(-jitter, jitter))
        return np.array(out if out else [max(self.duration * 0.4, 0.0)])


@dataclass
class Built:
    """A built action: its body track, the arms it leaves free for emotional gestures, and the
    frames where the body is airborne."""

    track: BodyTrack
    free_arms: tuple[str, ...] = ("l", "r")
    airborne: np.ndarray | None = None
    details: dict[str, str] = field(default_factory=dict)   # caption slots, e.g. {"turn": "left"}

