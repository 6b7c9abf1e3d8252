"""The embedded benchmark generator: labels planned from the config, motions synthesised one by one.

`plan_motions(config)` decides every motion's scenario, emotion and action without randomness in the
counts: scenario sizes follow the paper's Table 1 proportions (largest remainder), emotions are
near-uniform within each scenario and actions spread evenly over emotions; the order inside a
scenario is shuffled with a seed. `synthesize(spec, config)` then builds motion i from its own
random stream seeded by (seed, i), so a motion never depends on which others were generated.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from l2emg.config import DataConfig
from l2emg.data.synth.actions import ACTIONS, ACTIONS_BY_SCENARIO
from l2emg.data.synth.body import mirror_joints, pose_joints
from l2emg.data.synth.captions import make_captions
from l2emg.data.synth.context import BuildContext
from l2emg.data.synth.emotions import emotion_style, express, sample_intensity, scenario_style
from l2emg.data.synth.rotations import rot_y
from l2emg.labels import EMOTIONS, PAPER_SCENARIO_COUNTS, SCENARIOS
from l2emg.motion.skeleton import FPS


@dataclass(frozen=True)
class MotionSpec:
    index: int
    scenario: str
    emotion: str
    action: str

    @property
    def motion_id(self) -> str:
        return f"{self.index:06d}"


@dataclass
class SynthMotion:
    motion_id: str
    joints: np.ndarray          # (T, 22, 3) float64 world coordinates, metres, Y up
    scenario: str
    emotion: str
    action: str
    intensity: float
    captions: list[str]


def scenario_sizes(num_motions: int) -> dict[str, int]:
    """Motions per scenario in Table 1's proportions (largest remainder, every scenario >= 1)."""
    total = sum(PAPER_SCENARIO_COUNTS.values())
    raw = {s: num_motions * PAPER_SCENARIO_COUNTS[s] / total for s in SCENARIOS}
    sizes = {s: max(1, int(np.floor(v))) for s, v in raw.items()}
    order = sorted(SCENARIOS, key=lambda s: raw[s] - np.floor(raw[s]), reverse=True)
    i = 0
    while sum(sizes.values()) < num_motions:
        sizes[order[i % len(order)]] += 1
        i += 1
    while sum(sizes.values()) > num_motions:
        largest = max(SCENARIOS, key=lambda s: sizes[s])
        sizes[largest] -= 1
    return sizes


def plan_motions(config: DataConfig) -> list[MotionSpec]:
    """Every motion's labels, in id order (scenario blocks in the paper's order)."""
    specs: list[MotionSpec] = []
    for s_index, (scenario, size) in enumerate(scenario_sizes(config.num_motions).items()):
        actions = ACTIONS_BY_SCENARIO[scenario]
        cells = []
        for i in range(size):
            emotion = EMOTIONS[i % len(EMOTIONS)]
            # Rotate actions per emotion round so every action meets every emotion.
            action = actions[(i // len(EMOTIONS) + i % len(EMOTIONS)) % len(actions)].id
            cells.append((emotion, action))
        order = np.random.default_rng([config.seed, 7919, s_index]).permutation(size)
        for k in order:
            emotion, action = cells[k]
            specs.append(MotionSpec(len(specs), scenario, emotion, action))
    return specs


def _num_frames(seconds: tuple[float, float], config: DataConfig, rng: np.random.Generator) -> int:
    lo = int(np.clip(round(seconds[0] * FPS), config.min_frames, config.max_frames))
    hi = int(np.clip(round(seconds[1] * FPS), lo, config.max_frames))
    return int(rng.integers(lo, hi + 1))


def synthesize(spec: MotionSpec, config: DataConfig) -> SynthMotion:
    """Build one motion from its spec and the (seed, index) random stream."""
    rng = np.random.default_rng([config.seed, spec.index])
    action = ACTIONS[spec.action]
    intensity = sample_intensity(spec.emotion, rng)
    style = emotion_style(spec.emotion, intensity)
    by_scenario = config.emotion_style == "scenario"
    if by_scenario:  # same direction, the scenario's own strength (emotions.py, "Two data variants")
        style = scenario_style(style, spec.scenario)
    # Per-person variation on top of the emotion: a little faster or slower, larger or smaller.
    style = replace(style, tempo=style.tempo * rng.uniform(0.9, 1.1), amplitude=style.amplitude * rng.uniform(0.88, 1.12))
    num_frames = _num_frames(action.seconds, config, rng)
    ctx = BuildContext(num_frames, rng, style)
    built = action.build(ctx)
    express(built.track, style, rng, built.free_arms, built.airborne,
            scenario=spec.scenario if by_scenario else None,
            accent_rng=np.random.default_rng([config.seed, spec.index, 31]) if by_scenario else None)
    joints = pose_joints(built.track)

    left_handed = bool(rng.uniform() < 0.5)
    slots = {"side": "right", "other": "left", **built.details}
    if left_handed:
        joints = mirror_joints(joints)
        swap = {"left": "right", "right": "left"}
        slots = {k: swap.get(v, v) for k, v in slots.items()}
    # Random facing and place on the floor.
    yaw = rng.uniform(0.0, 2 * np.pi)
    joints = joints @ rot_y(np.array(yaw)).T
    joints[:, :, [0, 2]] += rng.uniform(-1.0, 1.0, size=2)

    captions = make_captions(spec.scenario, spec.emotion, intensity, action.phrases, slots,
                             config.captions_per_motion, rng)
    return SynthMotion(spec.motion_id, joints, spec.scenario, spec.emotion, spec.action, intensity, captions)


def generate_motions(config: DataConfig) -> Iterator[SynthMotion]:
    """Yield `config.num_motions` motions, deterministic by `config.seed`."""
    for spec in plan_motions(config):
        yield synthesize(spec, config)
