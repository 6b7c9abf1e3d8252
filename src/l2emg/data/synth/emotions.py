"""Emotional body language: one signature per emotion, scaled by intensity, expressed per scenario.

An emotion acts on a motion in two ways:
1. `EmotionStyle` — tempo, amplitude, stride, foot lift, bounce, crouch, sharpness: the action
   builders read these while they build (a sad walk has short slow steps, an angry one stomps).
2. `express` — after building: posture offsets (spine, head, shoulders, arm carriage), arm attitudes
   (fists, arms pulled in, a warding-off hand, arms flung up), and dynamics (tremor, glancing
   around, a startle at an onset, turning away) laid over the action's channels.

Signatures (at intensity 1; intensity k in [0, 1] scales them, neutral is the baseline):
- sad: spine flexed, head down, shoulders rounded and slumped, small slow movements.
- happy: upright, head up, arms open, larger, faster and bouncy movements.
- angry: forward lean, raised tense shoulders, bent elbows (fists), fast sharp movements, stomping.
- fearful: crouched, shoulders raised, arms pulled in to the chest, tremor, glancing around.
- surprised: leaning back, head up, arms flung up and out at a sudden onset, then recovering.
- disgusted: head and torso turned away and leaning back, a warding-off hand, slower movements.

Two data variants (`data.emotion_style`):
- `shared`: the signature above, the same in every scenario (the benchmark before 2026-12-07).
- `scenario` (the default): each emotion keeps its shared core (the signature's directions: which way
  the spine, head and shoulders go, faster or slower) while every scenario expresses it in its own way
  (`REGISTERS`, `scenario_accent`):
  1. which body parts carry it and how strongly: gains on the trunk, head and arm parts of the
     posture offsets and arm attitudes (a sad dancer's arms droop, a sad musician's head sinks);
  2. how strong its dynamics are: the tempo / amplitude / stride / lift multipliers are raised to a
     power (same direction, larger or smaller deviation) and bounce / crouch / stomp are scaled;
  3. an accent of its own per (scenario, emotion): three channel offsets (an offset on a channel of
     the signature goes the signature's way) and one oscillating channel (amplitude, frequency), drawn
     once from a fixed seed (`ACCENT_SEED`) — part of the benchmark's definition, not of `data.seed`. docs/data.md shows one emotion across the eight scenarios.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from l2emg.data.synth.body import CH, BodyTrack
from l2emg.data.synth.curves import smooth_noise, smoothstep
from l2emg.labels import EMOTIONS, SCENARIOS
from l2emg.motion.skeleton import FPS


@dataclass(frozen=True)
class EmotionStyle:
    emotion: str
    intensity: float
    tempo: float = 1.0        # multiplies movement frequency / cadence
    amplitude: float = 1.0    # multiplies movement amplitude
    stride: float = 1.0       # multiplies step length
    lift: float = 1.0         # multiplies foot clearance
    bounce: float = 0.0       # extra vertical bounce (m)
    crouch: float = 0.0       # pelvis lowered (m)
    sharpness: float = 0.0    # 0 smooth .. 1 abrupt, square-ish movements
    stomp: float = 0.0        # 0..1 feet come down hard


# Full-intensity multipliers/offsets of EmotionStyle per emotion.
_STYLE: dict[str, dict[str, float]] = {
    "neutral": {},
    "happy": {"tempo": 1.22, "amplitude": 1.4, "stride": 1.12, "lift": 1.4, "bounce": 0.035},
    "sad": {"tempo": 0.68, "amplitude": 0.45, "stride": 0.68, "lift": 0.55, "crouch": 0.025},
    "angry": {"tempo": 1.3, "amplitude": 1.25, "stride": 1.1, "lift": 1.5, "sharpness": 0.9, "stomp": 0.8},
    "fearful": {"tempo": 0.9, "amplitude": 0.55, "stride": 0.7, "lift": 0.8, "crouch": 0.09},
    "surprised": {"tempo": 1.05, "amplitude": 1.1},
    "disgusted": {"tempo": 0.82, "amplitude": 0.75, "stride": 0.85},
}
_MULTIPLIERS = ("tempo", "amplitude", "stride", "lift")
# What a scenario may make of a style: within the extremes of the signatures above (physical plausibility).
_RANGE: dict[str, tuple[float, float]] = {
    key: (min([1.0] + [v[key] for v in _STYLE.values() if key in v]), max([1.0] + [v[key] for v in _STYLE.values() if key in v]))
    for key in ("tempo", "amplitude", "stride", "lift", "bounce", "crouch", "sharpness", "stomp")}
_RANGE.update({key: (0.0, max(v.get(key, 0.0) for v in _STYLE.values()))
               for key in ("bounce", "crouch", "sharpness", "stomp")})

# Full-intensity posture offsets (degrees), added to every frame.
POSTURE: dict[str, dict[str, float]] = {
    "neutral": {},
    "happy": {"root_pitch": -2, "spine_flex": -7, "neck_flex": -16, "l_sh_abd": 12, "r_sh_abd": 12,
              "l_collar_elev": 3, "r_collar_elev": 3},
    "sad": {"root_pitch": 6, "spine_flex": 24, "neck_flex": 32, "l_collar_prot": 14, "r_collar_prot": 14,
            "l_collar_elev": -7, "r_collar_elev": -7, "l_sh_flex": -22, "r_sh_flex": -22,
            "l_sh_abd": -5, "r_sh_abd": -5},
    "angry": {"root_pitch": 9, "spine_flex": 9, "neck_flex": -6, "l_collar_elev": 10, "r_collar_elev": 10,
              "l_sh_abd": 14, "r_sh_abd": 14, "l_elbow": 45, "r_elbow": 45, "l_sh_flex": -6, "r_sh_flex": -6},
    "fearful": {"root_pitch": 8, "spine_flex": 14, "neck_flex": 2, "l_collar_elev": 18, "r_collar_elev": 18,
                "l_collar_prot": 8, "r_collar_prot": 8},
    "surprised": {"root_pitch": -5, "spine_flex": -9, "neck_flex": -12},
    "disgusted": {"root_pitch": -5, "spine_flex": -5, "spine_twist": 16, "neck_turn": 34, "neck_lat": 10,
                  "neck_flex": -6},
}

# Arm attitudes (channel targets) that free arms are pulled towards, with a weight at intensity 1.
_FEAR_ARMS = {"sh_flex": 28.0, "sh_abd": 4.0, "sh_twist": 0.0, "elbow": 105.0}
_FLING_ARMS = {"sh_flex": 95.0, "sh_abd": 75.0, "sh_twist": 30.0, "elbow": 35.0}
_WARD_ARM = {"sh_flex": 60.0, "sh_abd": 10.0, "sh_twist": 35.0, "elbow": 75.0}
ARM_KEYS = ("sh_flex", "sh_abd", "sh_twist", "elbow")


EMOTION_STYLES = ("shared", "scenario")


@dataclass(frozen=True)
class Register:
    """How one scenario carries emotion: gains on the posture offsets and arm attitudes of the trunk
    (pelvis and spine), the head (neck) and the arms, and the power `dynamics` on the style's deviations."""

    trunk: float = 1.0
    head: float = 1.0
    arms: float = 1.0
    dynamics: float = 1.0


# Hand-set per scenario (the accents below add what is specific to each emotion there).
REGISTERS: dict[str, Register] = {
    "Daily Life": Register(1.0, 1.0, 1.0, 1.0),        # the reference signature
    "Sports": Register(0.6, 0.5, 1.3, 1.5),            # carried by tempo, stride and the arms
    "Dance": Register(0.5, 0.8, 1.6, 1.2),             # carried by the arms
    "Shows": Register(1.2, 1.5, 1.2, 0.8),             # played to an audience: head and chest
    "Game": Register(1.4, 0.6, 0.8, 1.3),              # the trunk, in bursts
    "Animation": Register(1.5, 1.5, 1.5, 1.3),         # exaggerated everywhere (dynamics 1.5: feet skated)
    "Instrument Play": Register(1.3, 1.6, 0.4, 0.5),   # arms are busy: head and trunk carry it
    "Acrobatics": Register(0.4, 0.8, 1.0, 1.2),        # the trunk follows the figure: arms and dynamics
}
ACCENT_SEED = 20261207
# Largest accent offset per channel (degrees); arm channels are set on both sides alike. The pelvis is
# left alone (its tilt moves the legs' IK targets: feet skated).
_ACCENT_RANGE = {"spine_flex": 22.0, "spine_lat": 14.0, "spine_twist": 18.0,
                 "neck_flex": 25.0, "neck_lat": 18.0, "neck_turn": 25.0, "collar_elev": 14.0, "collar_prot": 14.0,
                 "sh_flex": 30.0, "sh_abd": 30.0, "sh_twist": 30.0, "elbow": 45.0}
_OSCILLATING = ("spine_lat", "spine_twist", "neck_lat", "neck_turn", "sh_flex", "sh_abd", "elbow")
_TRUNK = ("root_pitch", "root_roll", "root_yaw", "spine_flex", "spine_lat", "spine_twist")


def _region(channel: str) -> str:
    base = channel[2:] if channel[:2] in ("l_", "r_") else channel
    return "trunk" if base in _TRUNK else "head" if base.startswith("neck") else "arms"


@dataclass(frozen=True)
class Accent:
    """A (scenario, emotion)'s own expression at intensity 1: constant offsets (degrees) on a few
    channels and one channel oscillating with `amplitude` degrees at `frequency` Hz."""

    offsets: tuple[tuple[str, float], ...]
    channel: str
    amplitude: float
    frequency: float


def scenario_accent(scenario: str, emotion: str) -> Accent | None:
    """The accent of `emotion` in `scenario` (None for neutral), fixed by ACCENT_SEED."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}")
    if emotion not in EMOTIONS:
        raise ValueError(f"unknown emotion {emotion!r}")
    if emotion == "neutral":
        return None
    rng = np.random.default_rng([ACCENT_SEED, SCENARIOS.index(scenario), EMOTIONS.index(emotion)])
    names = list(_ACCENT_RANGE)
    picked = rng.choice(len(names), size=3, replace=False)
    offsets = []
    for i in sorted(picked):
        sign, size = float(rng.choice([-1.0, 1.0])), float(rng.uniform(0.5, 1.0))
        core = POSTURE[emotion].get(names[i], POSTURE[emotion].get(f"l_{names[i]}", 0.0))
        if core:  # an accent on a channel of the core goes the core's way: it varies it, never undoes it
            sign = float(np.sign(core))
        offsets.append((names[i], sign * size * _ACCENT_RANGE[names[i]]))
    offsets = tuple(offsets)
    channel = _OSCILLATING[int(rng.integers(len(_OSCILLATING)))]
    amplitude = float(rng.uniform(0.4, 0.8) * _ACCENT_RANGE[channel])
    return Accent(offsets, channel, amplitude, float(rng.uniform(0.5, 2.5)))


def scenario_style(style: "EmotionStyle", scenario: str) -> "EmotionStyle":
    """The style's deviations from neutral raised to the scenario's `dynamics` power (multipliers) or
    scaled by it (bounce, crouch, sharpness, stomp): same direction, scenario-specific strength."""
    power = REGISTERS[scenario].dynamics
    values = {key: float(np.clip(float(getattr(style, key)) ** power, *_RANGE[key])) for key in _MULTIPLIERS}
    values.update({key: float(np.clip(getattr(style, key) * power, *_RANGE[key]))
                   for key in ("bounce", "crouch", "sharpness", "stomp")})
    return replace(style, **values)


def sample_intensity(emotion: str, rng: np.random.Generator) -> float:
    """Neutral has intensity 0; other emotions are clearly expressed: k ~ U(0.55, 1)."""
    return 0.0 if emotion == "neutral" else float(rng.uniform(0.55, 1.0))


def emotion_style(emotion: str, intensity: float) -> EmotionStyle:
    if emotion not in EMOTIONS:
        raise ValueError(f"unknown emotion {emotion!r}")
    k = float(intensity)
    values = {}
    for key, full in _STYLE[emotion].items():
        values[key] = 1.0 + k * (full - 1.0) if key in _MULTIPLIERS else k * full
    return EmotionStyle(emotion=emotion, intensity=k, **values)


def _blend_arm(track: BodyTrack, side: str, target: dict[str, float], weight: np.ndarray) -> None:
    for key in ARM_KEYS:
        name = f"{side}_{key}"
        track.set(name, (1 - weight) * track.get(name) + weight * target[key])


def express(track: BodyTrack, style: EmotionStyle, rng: np.random.Generator,
            free_arms: tuple[str, ...], airborne: np.ndarray | None = None,
            scenario: str | None = None, accent_rng: np.random.Generator | None = None) -> BodyTrack:
    """Lay the emotion's posture, arm attitude and dynamics over a built action (in place).

    free_arms: the sides ("l", "r") whose arms the action does not need; they take the emotion's
    arm attitude fully, busy arms partly. airborne: (T,) bool, frames where the pelvis is in flight
    (no crouch or bounce added there). scenario: express the emotion in that scenario's register and
    with its accent (the `scenario` data variant; None = the shared signature). accent_rng: the random
    stream of the accent's phase (kept apart from `rng`, so both variants draw the same everything else).
    """
    k = style.intensity
    emotion = style.emotion
    num = track.num_frames
    t = np.arange(num) / FPS
    ground = np.ones(num) if airborne is None else 1.0 - airborne.astype(float)
    register = REGISTERS[scenario] if scenario is not None else Register()
    gain = {"trunk": register.trunk, "head": register.head, "arms": register.arms}

    def arm_weight(side: str) -> float:
        return min(1.0, (1.0 if side in free_arms else 0.4) * register.arms)

    for name, value in POSTURE[emotion].items():
        track.add(name, k * value * gain[_region(name)])
    accent = scenario_accent(scenario, emotion) if scenario is not None else None
    if accent is not None:
        phase_rng = accent_rng if accent_rng is not None else rng
        sides = ("l", "r")
        for name, value in accent.offsets:
            for channel in ([name] if _region(name) != "arms" else [f"{s}_{name}" for s in sides]):
                busy = 1.0 if _region(channel) != "arms" or channel[0] in free_arms else 0.4
                track.add(channel, k * value * busy)
        phase = phase_rng.uniform(0.0, 2 * np.pi)
        wave = k * accent.amplitude * np.sin(2 * np.pi * accent.frequency * t + phase)
        if _region(accent.channel) == "arms":
            for side in sides:
                track.add(f"{side}_{accent.channel}", wave * (1.0 if side in free_arms else 0.4))
        else:
            track.add(accent.channel, wave)

    if emotion == "sad":
        track.pelvis[:, 1] -= style.crouch * ground
    elif emotion == "happy":
        beat = 2.0 * style.tempo
        track.pelvis[:, 1] -= style.bounce * np.abs(np.sin(np.pi * beat * t + rng.uniform(0, np.pi))) * ground
    elif emotion == "angry":
        track.add("neck_turn", 3.0 * k * smooth_noise(rng, t, 0.8))
    elif emotion == "fearful":
        track.pelvis[:, 1] -= style.crouch * ground
        for side in ("l", "r"):
            _blend_arm(track, side, _FEAR_ARMS, np.full(num, 0.75 * k * arm_weight(side)))
        # Tremor (~8 Hz) on arms, head and trunk; glancing around with the head.
        for name, amp in (("l_sh_flex", 2.5), ("r_sh_flex", 2.5), ("l_elbow", 3.0), ("r_elbow", 3.0),
                          ("neck_flex", 1.5), ("spine_twist", 1.0), ("neck_lat", 1.5)):
            track.add(name, k * amp * smooth_noise(rng, t, 8.0))
        track.add("neck_turn", k * 38.0 * smooth_noise(rng, t, 0.45, octaves=2))
    elif emotion == "surprised":
        onset = rng.uniform(0.2, 0.45) * t[-1] if num > 1 else 0.0
        rise = smoothstep((t - onset) / 0.18)
        decay = 0.45 + 0.55 * np.exp(-np.maximum(t - onset - 0.18, 0.0) / 1.0)
        startle = k * rise * decay                                  # (T,) 0 -> 1 -> ~0.45
        for side in ("l", "r"):
            _blend_arm(track, side, _FLING_ARMS, 0.9 * startle * arm_weight(side))
        track.add("spine_flex", -14.0 * startle)
        track.add("root_pitch", -6.0 * startle)
        track.add("neck_flex", -14.0 * startle)
        track.add("l_collar_elev", 10.0 * startle)
        track.add("r_collar_elev", 10.0 * startle)
        track.pelvis[:, 1] -= 0.04 * startle * ground
    elif emotion == "disgusted":
        onset = rng.uniform(0.05, 0.3) * t[-1] if num > 1 else 0.0
        turn = smoothstep((t - onset) / 0.7)
        track.add("neck_turn", 12.0 * k * turn)
        track.add("spine_twist", 8.0 * k * turn)
        ward = "r" if "r" in free_arms or not free_arms else free_arms[0]
        _blend_arm(track, ward, _WARD_ARM, 0.85 * k * turn * arm_weight(ward))
        # The warding hand pushes away in small repeated shoves.
        track.add(f"{ward}_elbow", -12.0 * k * turn * np.maximum(np.sin(2 * np.pi * 0.9 * t), 0.0))
    return track


def signature_channels() -> dict[str, dict[str, float]]:
    """The full-intensity posture offsets per emotion (for documentation and tests)."""
    return {emotion: dict(values) for emotion, values in POSTURE.items()}


assert set(_STYLE) == set(EMOTIONS) == set(POSTURE)
assert all(name in CH for offsets in POSTURE.values() for name in offsets)
