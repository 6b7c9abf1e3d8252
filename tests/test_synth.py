"""The embedded procedural benchmark: determinism, label balance, captions, physical plausibility
and measurable emotion signatures."""

from __future__ import annotations

import itertools
import re
from collections import Counter

import numpy as np
import pytest

from l2emg.config import DataConfig
from l2emg.data.synth import (
    ACTIONS,
    ACTIONS_BY_SCENARIO,
    MotionSpec,
    SynthMotion,
    generate_motions,
    plan_motions,
    synthesize,
)
from l2emg.data.synth.body import CH
from l2emg.data.synth.captions import EMOTION_EXPRESSIONS
from l2emg.data.synth.generator import scenario_sizes
from l2emg.labels import EMOTIONS, PAPER_SCENARIO_COUNTS, SCENARIOS
from l2emg.motion.quality import motion_quality
from l2emg.motion.skeleton import BONE_OFFSETS, bone_lengths
from l2emg.motion.skeleton import JOINT_INDEX as J

TINY = DataConfig(num_motions=112, max_frames=96, seed=0)
GAITS = {"walk", "walk_circle", "jog", "run", "catwalk", "sneak", "bouncy_walk", "zombie_walk", "robot_walk",
         "tiptoe_sneak", "march", "side_steps", "spin"}


@pytest.fixture(scope="module")
def tiny_motions() -> list[SynthMotion]:
    return list(generate_motions(TINY))


@pytest.fixture(scope="module")
def every_cell() -> list[SynthMotion]:
    """One motion for every action x emotion (343 motions, 40-96 frames)."""
    cfg = DataConfig(num_motions=16, min_frames=40, max_frames=96, seed=3)
    specs = [MotionSpec(100 + i, a.scenario, e, a.id)
             for i, (a, e) in enumerate((a, e) for a in ACTIONS.values() for e in EMOTIONS)]
    return [synthesize(s, cfg) for s in specs]


def test_same_seed_same_motions_and_other_seed_differs(tiny_motions):
    again = list(generate_motions(TINY))
    assert [m.motion_id for m in again] == [m.motion_id for m in tiny_motions]
    for a, b in zip(again, tiny_motions):
        assert np.array_equal(a.joints, b.joints)
        assert a.captions == b.captions and a.intensity == b.intensity
    other = list(generate_motions(TINY.model_copy(update={"seed": 1})))
    assert not all(np.array_equal(a.joints, b.joints) for a, b in zip(other, tiny_motions) if a.joints.shape == b.joints.shape)


def test_a_motion_does_not_depend_on_the_others(tiny_motions):
    specs = plan_motions(TINY)
    for i in (0, 57, 111):
        alone = synthesize(specs[i], TINY)
        assert np.array_equal(alone.joints, tiny_motions[i].joints)
        assert alone.captions == tiny_motions[i].captions


def test_counts_labels_and_frames(tiny_motions):
    assert len(tiny_motions) == TINY.num_motions
    assert [m.motion_id for m in tiny_motions] == [f"{i:06d}" for i in range(TINY.num_motions)]
    per_scenario = Counter(m.scenario for m in tiny_motions)
    assert per_scenario == Counter(scenario_sizes(TINY.num_motions))
    for m in tiny_motions:
        assert m.joints.dtype == np.float64 and m.joints.shape[1:] == (22, 3)
        assert TINY.min_frames <= m.joints.shape[0] <= TINY.max_frames
        assert m.emotion in EMOTIONS and m.scenario in SCENARIOS
        assert ACTIONS[m.action].scenario == m.scenario
        assert 0.0 <= m.intensity <= 1.0 and (m.intensity == 0.0) == (m.emotion == "neutral")


def test_default_plan_follows_table_1_and_balances_emotions_and_actions():
    specs = plan_motions(DataConfig())
    assert len(specs) == 3200
    sizes = Counter(s.scenario for s in specs)
    total = sum(PAPER_SCENARIO_COUNTS.values())
    for scenario in SCENARIOS:
        assert abs(sizes[scenario] - 3200 * PAPER_SCENARIO_COUNTS[scenario] / total) <= 1
        emotions = Counter(s.emotion for s in specs if s.scenario == scenario)
        assert set(emotions) == set(EMOTIONS) and max(emotions.values()) - min(emotions.values()) <= 1
        actions = Counter(s.action for s in specs if s.scenario == scenario)
        assert set(actions) == {a.id for a in ACTIONS_BY_SCENARIO[scenario]}
        assert max(actions.values()) - min(actions.values()) <= 2
        pairs = Counter((s.action, s.emotion) for s in specs if s.scenario == scenario)
        assert len(pairs) == len(ACTIONS_BY_SCENARIO[scenario]) * len(EMOTIONS)  # every action meets every emotion


def test_action_catalogue_size():
    assert len(ACTIONS) >= 40
    for scenario in SCENARIOS:
        assert len(ACTIONS_BY_SCENARIO[scenario]) >= 5, scenario


def test_captions_are_varied_and_name_the_emotion(tiny_motions):
    for m in tiny_motions:
        assert len(m.captions) >= TINY.captions_per_motion
        assert len(set(m.captions)) == len(m.captions)
        for caption in m.captions:
            assert re.fullmatch(r"[a-z]+( [a-z]+)*", caption), caption
            assert any(expr in caption for expr in EMOTION_EXPRESSIONS[m.emotion]), (m.emotion, caption)
    # Wording varies across the dataset: many distinct openings and emotion expressions.
    openings = {c.split()[0] for m in tiny_motions for c in m.captions}
    assert len(openings) >= 8
    more = synthesize(plan_motions(TINY)[3], TINY.model_copy(update={"captions_per_motion": 6}))
    assert len(set(more.captions)) == 6


def test_left_handed_motions_are_mirrored_and_captioned_so():
    cfg = DataConfig(num_motions=16, seed=5)
    seen = set()
    for i in range(40):
        m = synthesize(MotionSpec(i, "Daily Life", "neutral", "wave"), cfg)
        side = "left" if any("left hand" in c for c in m.captions) else "right" if any("right hand" in c for c in m.captions) else None
        if side is None:
            continue
        high = "left" if m.joints[:, J["left_wrist"], 1].mean() > m.joints[:, J["right_wrist"], 1].mean() else "right"
        assert high == side
        seen.add(side)
    assert seen == {"left", "right"}


def test_physically_plausible_for_every_action_and_emotion(every_cell):
    rest_bones = np.linalg.norm(BONE_OFFSETS[1:], axis=-1)
    for m in every_cell:
        q = motion_quality(m.joints)
        label = f"{m.action}/{m.emotion}"
        assert q.penetration_cm <= 1.0, label
        assert q.skate_fraction <= 0.02, (label, q)
        assert q.limit_violation_deg <= 2.0, (label, q)
        assert q.max_jump_m <= 0.6, (label, q)
        assert np.allclose(bone_lengths(m.joints), rest_bones, atol=1e-6), label   # rigid bones
        if m.action != "catwalk":   # the runway strut crosses the feet on purpose
            hip_axis = m.joints[:, J["left_hip"]] - m.joints[:, J["right_hip"]]
            hip_axis /= np.linalg.norm(hip_axis, axis=-1, keepdims=True)
            apart = np.sum((m.joints[:, J["left_ankle"]] - m.joints[:, J["right_ankle"]]) * hip_axis, axis=-1)
            assert apart.min() > 0.02, label                                     # legs never cross
    gait_skate = [motion_quality(m.joints).skate_speed_cm_s for m in every_cell if m.action in GAITS]
    assert np.mean(gait_skate) < 2.0 and max(gait_skate) < 6.0


def _root_speed(joints: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(joints[:, 0, [0, 2]], axis=0), axis=-1).mean() * 20)


def _flight_fraction(joints: np.ndarray) -> float:
    feet_low = joints[:, [J["left_foot"], J["right_foot"]], 1] < 0.045
    return float((~feet_low.any(axis=1)).mean())


def test_walking_differs_from_jogging_and_running():
    cfg = DataConfig(num_motions=16, min_frames=80, max_frames=120, seed=2)
    stats = {}
    for action in ("walk", "jog", "run"):
        ms = [synthesize(MotionSpec(i, ACTIONS[action].scenario, "neutral", action), cfg) for i in range(6)]
        stats[action] = ([_root_speed(m.joints[40:]) for m in ms], [_flight_fraction(m.joints) for m in ms],
                         [np.mean(np.degrees(np.arccos(np.clip(np.sum(
                             _unit(m.joints[:, J["left_shoulder"]] - m.joints[:, J["left_elbow"]])
                             * _unit(m.joints[:, J["left_wrist"]] - m.joints[:, J["left_elbow"]]), -1), -1, 1))))
                          for m in ms])
    walk_speed, walk_flight, walk_elbow = stats["walk"]
    jog_speed, jog_flight, jog_elbow = stats["jog"]
    run_speed, run_flight, _ = stats["run"]
    assert max(walk_speed) < 1.6 < min(jog_speed) and np.mean(jog_speed) < np.mean(run_speed)
    assert max(walk_flight) == 0.0 and min(jog_flight) > 0.05 and min(run_flight) > 0.1
    assert min(walk_elbow) > 140 > 110 > max(jog_elbow)   # straight-ish arms walking, bent jogging


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_emotion_signatures_are_measurable_in_every_scenario():
    """Sad motions carry the head lower and move less than happy ones; fearful bodies are lower
    than neutral ones — in every scenario."""
    cfg = DataConfig(num_motions=16, min_frames=60, max_frames=100, seed=4)

    def stats(scenario, emotion):
        heads, motion, pelvis = [], [], []
        for i, action in enumerate(ACTIONS_BY_SCENARIO[scenario]):
            m = synthesize(MotionSpec(500 + i, scenario, emotion, action.id), cfg)
            j = m.joints
            heads.append(np.mean(j[:, J["head"], 1] - j[:, J["spine1"], 1]))
            rel = j[:, [J["left_wrist"], J["right_wrist"], J["left_ankle"], J["right_ankle"]]] - j[:, None, 0]
            motion.append(np.linalg.norm(np.diff(rel, axis=0), axis=-1).mean() * 20)
            pelvis.append(np.median(j[:, 0, 1] - j[:, [J["left_foot"], J["right_foot"]], 1].min(axis=1)))
        return np.mean(heads), np.mean(motion), np.mean(pelvis)

    for scenario in SCENARIOS:
        sad, happy = stats(scenario, "sad"), stats(scenario, "happy")
        fearful, neutral = stats(scenario, "fearful"), stats(scenario, "neutral")
        assert sad[0] < happy[0] - 0.03, scenario          # head carried lower
        assert sad[1] < 0.8 * happy[1], scenario           # less and slower movement
        assert fearful[2] < neutral[2] - 0.02, scenario    # crouched


# ---- the scenario-dependent emotion data (data.emotion_style) ----------------------------------------


def _expression(scenario, emotion, style="scenario"):
    """Channel offsets (C,) and the style an emotion at intensity 1 lays over a standing body in `scenario`."""
    from l2emg.data.synth.body import standing_track
    from l2emg.data.synth.emotions import emotion_style, express, scenario_style

    track = standing_track(40)
    before = track.channels.copy()
    style_ = emotion_style(emotion, 1.0)
    if style == "scenario":
        style_ = scenario_style(style_, scenario)
    express(track, style_, np.random.default_rng(0), ("l", "r"), scenario=scenario if style == "scenario" else None,
            accent_rng=np.random.default_rng(1))
    return (track.channels - before).mean(0), style_


def test_scenario_emotion_data_is_deterministic_and_differs_from_shared_only_where_an_emotion_is():
    shared = DataConfig(num_motions=112, max_frames=96, seed=0, emotion_style="shared")
    scenario = shared.model_copy(update={"emotion_style": "scenario"})
    specs = plan_motions(scenario)
    assert specs == plan_motions(shared)
    for i in (0, 5, 33, 57, 90, 111):
        a, b, s = synthesize(specs[i], scenario), synthesize(specs[i], scenario), synthesize(specs[i], shared)
        assert np.array_equal(a.joints, b.joints) and a.captions == b.captions
        assert a.captions == s.captions and a.intensity == s.intensity   # labels and captions are the same
        assert np.array_equal(a.joints, s.joints) == (specs[i].emotion == "neutral"), specs[i]


def test_each_emotion_keeps_its_core_and_looks_different_in_every_scenario():
    from l2emg.data.synth.emotions import POSTURE, scenario_accent

    for emotion in EMOTIONS[1:]:
        offsets = {s: _expression(s, emotion)[0] for s in SCENARIOS}
        shared = _expression(SCENARIOS[0], emotion, style="shared")[0]
        for scenario, vec in offsets.items():
            for name, value in POSTURE[emotion].items():   # the core: every signature channel keeps its direction
                if abs(value) >= 5 and emotion not in ("fearful", "surprised", "disgusted"):
                    assert np.sign(vec[CH[name]]) == np.sign(shared[CH[name]]), (emotion, scenario, name)
            for name, value in scenario_accent(scenario, emotion).offsets:  # accents never undo it
                core = POSTURE[emotion].get(name, POSTURE[emotion].get(f"l_{name}", 0.0))
                assert core == 0 or np.sign(value) == np.sign(core), (emotion, scenario, name)
        for a, b in itertools.combinations(SCENARIOS, 2):  # ... expressed differently in every scenario
            assert np.abs(offsets[a] - offsets[b]).max() > 5.0, (emotion, a, b)
    # neutral is neutral everywhere
    assert all(np.abs(_expression(s, "neutral")[0]).max() == 0 for s in SCENARIOS)
    # tempo keeps its direction and changes its strength
    for emotion in ("happy", "sad", "angry"):
        tempos = {s: _expression(s, emotion)[1].tempo for s in SCENARIOS}
        assert len({round(t, 4) for t in tempos.values()}) > 1
        assert all(np.sign(t - 1) == np.sign(tempos["Daily Life"] - 1) for t in tempos.values())
