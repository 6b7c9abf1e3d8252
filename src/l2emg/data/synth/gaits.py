"""Locomotion actions: walking styles, jogging, running, sneaking, marching, side steps and spins.

Every builder plans footsteps with `locomotion.plan_gait` (so stance feet never slide) and adds an
upper body that fits the gait. Emotion enters through the style: tempo scales cadence, stride scales
step length, lift and stomp shape the swing foot.
"""

from __future__ import annotations

import numpy as np

from l2emg.data.synth.body import set_arm_target
from l2emg.data.synth.context import BuildContext, Built
from l2emg.data.synth.locomotion import Gait, add_gait_upper_body, plan_gait


def _gait(ctx: BuildContext, cadence: float, step: float, *, tempo_power: float = 0.6, **kwargs) -> Gait:
    """Gait parameters with the emotion applied: tempo scales cadence (partly: a hurried walk is
    still a walk), stride scales step length, lift scales foot clearance."""
    s = ctx.style
    return Gait(
        cadence=cadence * s.tempo ** tempo_power * ctx.uniform(0.94, 1.06),
        step_length=step * s.stride * ctx.uniform(0.92, 1.08),
        stomp=s.stomp,
        **{**kwargs, "lift": kwargs.get("lift", 0.09) * s.lift},
    )


def walk(ctx: BuildContext, turn: float = 0.0, **overrides) -> Built:
    """Ordinary walking: ~1.8 steps/s, 0.63 m steps, double support, relaxed arms."""
    gait = _gait(ctx, 1.82, 0.63, turn_rate=turn, from_stand=ctx.chance(0.6), **overrides)
    res = plan_gait(ctx.num_frames, gait, ctx.rng)
    add_gait_upper_body(res.track, res.phase, arm_swing=20 * ctx.amp, elbow=14 + 6 * ctx.amp,
                        elbow_swing=6 * ctx.amp, moving=res.moving)
    return Built(res.track)


def walk_circle(ctx: BuildContext) -> Built:
    """Walking around a circle: the heading turns a full circle (or most of one) over the clip."""
    direction = 1.0 if ctx.chance(0.5) else -1.0
    # A full circle over the clip, but never tighter than ~1 m radius (a short clip walks an arc).
    turn = direction * 2 * np.pi / max(ctx.duration * ctx.uniform(0.75, 1.0), 5.5)
    built = walk(ctx, turn=turn, width=0.2)
    built.track.add("spine_lat", direction * 3.0)   # lean into the turn
    built.details["turn"] = "left" if direction > 0 else "right"
    return built


def jog(ctx: BuildContext) -> Built:
    """Jogging: ~2.7 steps/s, a short flight phase, elbows bent ~85°, heels kick up."""
    gait = _gait(ctx, 2.7, 0.85, tempo_power=0.4, duty=0.42, lift=0.15, heel_kick=0.6, vertical=-0.03,
                 toe_off=34, sway=0.015, from_stand=False, width=0.14)
    res = plan_gait(ctx.num_frames, gait, ctx.rng)
    add_gait_upper_body(res.track, res.phase, arm_swing=30 * ctx.amp, elbow=85, elbow_swing=12 * ctx.amp,
                        lean=5.0, pelvis_yaw=6.0, shoulder_out=12.0)
    return Built(res.track)


def run(ctx: BuildContext) -> Built:
    """Running: ~3 steps/s, long steps, long flight, forward lean, vigorous bent-arm swing."""
    gait = _gait(ctx, 2.9, 0.98, tempo_power=0.4, duty=0.35, lift=0.24, heel_kick=1.0, vertical=-0.04,
                 toe_off=40, sway=0.01, from_stand=False, width=0.12)
    res = plan_gait(ctx.num_frames, gait, ctx.rng)
    add_gait_upper_body(res.track, res.phase, arm_swing=45 * ctx.amp, elbow=90, elbow_swing=15 * ctx.amp,
                        lean=9.0, pelvis_yaw=8.0, shoulder_out=10.0)
    return Built(res.track)


def catwalk(ctx: BuildContext) -> Built:
    """A runway strut: feet placed on one line, swaying hips, chin up, small arm swing."""
    gait = _gait(ctx, 1.9, 0.6, width=0.03, sway=0.045, toe_out=12, lift=0.1, from_stand=ctx.chance(0.5))
    res = plan_gait(ctx.num_frames, gait, ctx.rng)
    add_gait_upper_body(res.track, res.phase, arm_swing=14 * ctx.amp, elbow=20, pelvis_yaw=11.0,
                        pelvis_roll=7.0, moving=res.moving, shoulder_out=10.0)
    res.track.add("neck_flex", -10.0)
    res.track.add("spine_flex", -4.0)
    if ctx.chance(0.4):  # one hand on the hip
        wrist = np.tile([-0.21, -0.36, -0.02], (ctx.num_frames, 1))
        set_arm_target(res.track, "r", wrist, np.array([-1.0, 0.0, -0.3]), weight=ctx.envelope(0.6))
        return Built(res.track, free_arms=("l",))
    return Built(res.track)


def sneak(ctx: BuildContext) -> Built:
    """A crouched sneaking walk: low pelvis, slow careful steps, trunk bent, arms ready in front."""
    gait = _gait(ctx, 1.45, 0.45, height=-0.2, lift=0.11, toe_off=20, sway=0.02, width=0.24,
                 from_stand=ctx.chance(0.5))
    res = plan_gait(ctx.num_frames, gait, ctx.rng)
    add_gait_upper_body(res.track, res.phase, arm_swing=8 * ctx.amp, elbow=85, lean=14.0, moving=res.moving)
    res.track.add("spine_flex", 16.0)
    res.track.add("neck_flex", -14.0)
    res.track.add("l_sh_flex", 35.0)
    res.track.add("r_sh_flex", 35.0)
    res.track.add("neck_turn", 20.0 * np.sin(2 * np.pi * ctx.phase(0.3)))
    return Built(res.track, free_arms=())


def bouncy_walk(ctx: BuildContext) -> Built:
    """A cartoon bouncy walk: big vertical bounce, high feet, big arm swing."""
    gait = _gait(ctx, 2.0, 0.55, vertical=0.06, lift=0.17, toe_off=38, from_stand=ctx.chance(0.5))
    res = plan_gait(ctx.num_frames, gait, ctx.rng)
    add_gait_upper_body(res.track, res.phase, arm_swing=45 * ctx.amp, elbow=35, elbow_swing=15,
                        moving=res.moving, shoulder_out=14.0)
    res.track.add("neck_flex", -6.0 * np.cos(4 * np.pi * res.phase))
    return Built(res.track)


def zombie_walk(ctx: BuildContext) -> Built:
    """A zombie shamble: slow dragging steps, lurching sideways, arms stretched forward, head lolling."""
    gait = _gait(ctx, 1.15, 0.38, lift=0.035, toe_off=6, toe_up=0, sway=0.06, width=0.26, from_stand=ctx.chance(0.5))
    res = plan_gait(ctx.num_frames, gait, ctx.rng)
    add_gait_upper_body(res.track, res.phase, arm_swing=4, elbow=8, pelvis_yaw=6, pelvis_roll=8, moving=res.moving)
    env = ctx.envelope(0.8)
    track = res.track
    for side in ("l", "r"):
        track.add(f"{side}_sh_flex", 82.0 * env)
        track.add(f"{side}_sh_abd", 2.0 * env)
    track.add("neck_lat", (18.0 + 8 * np.sin(2 * np.pi * res.phase)) * env)
    track.add("neck_flex", 14.0 * env)
    track.add("spine_lat", 6.0 * np.sin(2 * np.pi * res.phase))
    track.add("root_pitch", 4.0)
    return Built(track, free_arms=())


def robot_walk(ctx: BuildContext) -> Built:
    """A robot walk: stop-and-go steps, stiff trunk, elbows locked at 90° swinging stiffly."""
    gait = _gait(ctx, 1.6, 0.5, robot=0.95, toe_off=4, toe_up=0, sway=0.0, lift=0.1, from_stand=ctx.chance(0.5))
    res = plan_gait(ctx.num_frames, gait, ctx.rng)
    add_gait_upper_body(res.track, res.phase, arm_swing=28 * ctx.amp, elbow=90, pelvis_yaw=0.0,
                        pelvis_roll=0.0, moving=res.moving)
    # The head turns in discrete snaps.
    snaps = np.round(np.sin(2 * np.pi * ctx.phase(0.2)) * 1.5) / 1.5
    res.track.add("neck_turn", 25.0 * _smooth_series(snaps, 3))
    return Built(res.track)


def tiptoe_sneak(ctx: BuildContext) -> Built:
    """A cartoon tiptoe sneak: up on the toes, high slow knee lifts, hunched, hands up like paws."""
    gait = _gait(ctx, 1.3, 0.38, tiptoe=32, toe_off=8, lift=0.2, sway=0.03, width=0.2, from_stand=ctx.chance(0.5))
    res = plan_gait(ctx.num_frames, gait, ctx.rng)
    add_gait_upper_body(res.track, res.phase, arm_swing=5, elbow=20, pelvis_yaw=3, moving=res.moving)
    track = res.track
    track.add("spine_flex", 18.0)
    track.add("neck_flex", -12.0)
    env = ctx.envelope(0.6)
    bob = 0.03 * np.sin(2 * np.pi * 2 * res.phase)
    for side, x in (("l", 0.13), ("r", -0.13)):
        wrist = np.stack([np.full(ctx.num_frames, x), 0.02 + bob, np.full(ctx.num_frames, 0.3)], axis=-1)
        set_arm_target(track, side, wrist, np.array([np.sign(x), -1.0, -0.2]), weight=env)
    return Built(track, free_arms=())


def march(ctx: BuildContext) -> Built:
    """A toy-soldier march: high knees, stiff straight arms swinging high, upright trunk."""
    gait = _gait(ctx, 1.9, 0.5, lift=0.24, toe_off=10, toe_up=0, sway=0.01, from_stand=ctx.chance(0.5))
    res = plan_gait(ctx.num_frames, gait, ctx.rng)
    add_gait_upper_body(res.track, res.phase, arm_swing=42 * ctx.amp, elbow=4, pelvis_yaw=1.0,
                        pelvis_roll=1.0, moving=res.moving)
    res.track.add("neck_flex", -6.0)
    res.track.add("spine_flex", -3.0)
    return Built(res.track)


def side_steps(ctx: BuildContext) -> Built:
    """A dance groove: step-touch side to side on the beat, knees bouncing, bent arms swinging."""
    # Footsteps half a cycle apart move at most amplitude·√2 sideways: keep that below the step
    # width so the feet never cross.
    amplitude = min(0.16 * ctx.style.stride * ctx.uniform(0.85, 1.1), 0.19)
    gait = _gait(ctx, 2.0, 0.3, travel=np.pi / 2, width=0.32, lift=0.07, toe_off=15, vertical=-0.025,
                 sway=0.0, from_stand=True, path=lambda phi: amplitude * np.sin(np.pi * np.maximum(phi + 0.45, 0)))
    res = plan_gait(ctx.num_frames, gait, ctx.rng)
    track = res.track
    cyc = 2 * np.pi * res.phase
    w = res.moving
    for side, sign in (("l", 1.0), ("r", -1.0)):
        track.set(f"{side}_elbow", 75 + 15 * ctx.amp * np.sin(2 * cyc) * w)
        track.set(f"{side}_sh_flex", 20 + 25 * ctx.amp * sign * np.sin(cyc) * w)
        track.set(f"{side}_sh_abd", 20 + 10 * ctx.amp * np.cos(2 * cyc) * w)
    track.add("spine_lat", 8.0 * ctx.amp * np.sin(np.pi * res.phase) * w)
    track.add("root_roll", -5.0 * ctx.amp * np.sin(np.pi * res.phase) * w)
    track.add("neck_flex", 6.0 * np.sin(2 * cyc) * w)
    return Built(track)


def spin(ctx: BuildContext) -> Built:
    """Spinning around on the spot with small quick steps, arms out."""
    direction = 1.0 if ctx.chance(0.5) else -1.0
    turn = direction * 2 * np.pi / ctx.uniform(1.6, 2.2) * ctx.tempo
    gait = _gait(ctx, 2.2, 0.0, turn_rate=turn, width=0.22, lift=0.06, toe_off=12, sway=0.0, from_stand=True,
                 path=lambda phi: np.zeros_like(phi))
    res = plan_gait(ctx.num_frames, gait, ctx.rng)
    track = res.track
    env = res.moving
    for side in ("l", "r"):
        track.set(f"{side}_sh_abd", 8 + 72 * ctx.amp ** 0.5 * env)
        track.set(f"{side}_elbow", 20 + 10 * env)
        track.set(f"{side}_sh_flex", 10 * env)
    track.add("neck_flex", -5.0 * env)
    return Built(track, details={"turn": "left" if direction > 0 else "right"})


def _smooth_series(x: np.ndarray, frames: int) -> np.ndarray:
    """Moving-average smoothing (edge-padded) so snapped values change over a few frames."""
    kernel = np.ones(frames) / frames
    padded = np.pad(x, (frames, frames), mode="edge")
    return np.convolve(padded, kernel, mode="same")[frames:-frames]
