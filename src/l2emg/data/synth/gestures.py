"""Actions performed on the spot with planted feet: everyday gestures, sports drills, dance moves,
stage gestures, game moves and instrument playing.

Hands are placed with arm IK in the chest frame (+X the character's left, +Y up, +Z forward, origin
at the upper spine; shoulders sit at about (±0.19, 0.16, 0)); the trunk, head and pelvis are moved
through channels. Feet stay planted (a kick lifts one foot and puts it back on the same spot), so
weight shifts, squats and lunges bend the knees through the leg IK. Every action eases in from the
relaxed standing pose. Builders are written right-handed; the generator mirrors half of the motions.
"""

from __future__ import annotations

import numpy as np

from l2emg.data.synth.body import BodyTrack, rest_channels, set_arm_target, stance_feet
from l2emg.data.synth.context import BuildContext, Built
from l2emg.data.synth.curves import bump, hermite, sharpen, smoothstep
from l2emg.motion.skeleton import REST_PELVIS_HEIGHT

DOWN_OUT_L = np.array([0.6, -1.0, -0.2])    # elbow hint: down and out (left arm; mirrored for the right)
DOWN_OUT_R = DOWN_OUT_L * np.array([-1.0, 1.0, 1.0])


def _stand(ctx: BuildContext, width: float = 0.2, left_forward: float = 0.0, right_forward: float = 0.0,
           toe_out: float = 8.0) -> BodyTrack:
    left, right = stance_feet(ctx.num_frames, width, toe_out, left_forward, right_forward)
    pelvis = np.zeros((ctx.num_frames, 3))
    pelvis[:, 1] = REST_PELVIS_HEIGHT
    pelvis[:, 2] = 0.5 * (left_forward + right_forward)
    return BodyTrack(rest_channels(ctx.num_frames), pelvis, np.zeros(ctx.num_frames), left, right)


def _xyz(ctx: BuildContext, x, y, z) -> np.ndarray:
    """(T, 3) from scalars or (T,) arrays."""
    n = ctx.num_frames
    return np.stack([np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)) for v in (x, y, z)], axis=-1)


def _hint(x, y, z) -> np.ndarray:
    return np.array([x, y, z], dtype=np.float64)


def _osc(phase: np.ndarray, sharp: float = 0.0, shift: float = 0.0) -> np.ndarray:
    return sharpen(np.sin(2 * np.pi * (phase + shift)), sharp)


def _knee_bob(track: BodyTrack, ctx: BuildContext, phase: np.ndarray, depth: float, env) -> None:
    """Rhythmic knee bends on the beat (the pelvis dips, planted feet bend the knees)."""
    track.pelvis[:, 1] -= depth * env * (0.5 - 0.5 * np.cos(2 * np.pi * phase))


# ----------------------------------------------------------------------------- Daily Life

def wave(ctx: BuildContext) -> Built:
    """Waving hello with the right hand raised beside the head."""
    track = _stand(ctx)
    env = ctx.envelope(0.5, 0.5 if ctx.chance(0.5) else None, start=ctx.uniform(0.0, 0.4))
    ph = ctx.phase(1.8)
    x = -0.42 + 0.11 * ctx.amp * _osc(ph, ctx.style.sharpness)
    set_arm_target(track, "r", _xyz(ctx, x, 0.38, 0.12), _hint(-1.0, -0.7, 0.0), env)
    track.add("neck_turn", -6.0 * env)
    track.add("spine_lat", 3.0 * env * _osc(ph))
    return Built(track, free_arms=("l",))


def pick_up(ctx: BuildContext) -> Built:
    """Bending down with both hands to pick something up from the floor and standing up holding it."""
    track = _stand(ctx, width=0.26)
    t0 = ctx.uniform(0.2, 0.6)
    dur = 1.0 / ctx.tempo
    down = bump((ctx.t - t0) / (2.2 * dur)) ** 0.7                   # 0 -> 1 -> 0
    hold = smoothstep((ctx.t - t0 - 1.1 * dur) / (0.8 * dur))       # object carried afterwards
    track.pelvis[:, 1] -= 0.42 * down
    track.pelvis[:, 2] -= 0.15 * down
    track.add("root_pitch", 42.0 * down)
    track.add("spine_flex", 36.0 * down)
    track.add("neck_flex", -25.0 * down)
    for side in ("l", "r"):
        track.add(f"{side}_sh_flex", 88.0 * down + 30.0 * hold * (1 - down))
        track.add(f"{side}_elbow", -6.0 * down + 75.0 * hold * (1 - down))
        track.add(f"{side}_sh_abd", -6.0 * down)
    return Built(track, free_arms=())


def sit_down(ctx: BuildContext) -> Built:
    """Sitting down on a chair, staying seated a moment and standing back up."""
    track = _stand(ctx, width=0.24)
    t0 = ctx.uniform(0.2, 0.5)
    go = 1.1 / ctx.tempo
    seated = max(ctx.duration - t0 - 2 * go - 0.3, 0.3)
    seat = smoothstep((ctx.t - t0) / go) * (1 - smoothstep((ctx.t - t0 - go - seated) / go))
    moving = bump((ctx.t - t0) / go) + bump((ctx.t - t0 - go - seated) / go)
    track.pelvis[:, 1] -= 0.42 * seat
    track.pelvis[:, 2] -= 0.24 * seat
    track.add("root_pitch", 12.0 * seat + 30.0 * moving)
    track.add("spine_flex", 6.0 * seat + 8.0 * moving)
    for side in ("l", "r"):
        track.add(f"{side}_sh_flex", 38.0 * moving + 28.0 * seat)
        track.add(f"{side}_elbow", 45.0 * seat)
    return Built(track)


def stretch(ctx: BuildContext) -> Built:
    """Stretching: arms pushed up overhead, leaning to one side and the other."""
    track = _stand(ctx, width=0.26)
    env = ctx.envelope(0.8, 0.6 if ctx.chance(0.5) else None)
    ph = ctx.phase(0.35)
    lean = 22.0 * ctx.amp * np.sin(2 * np.pi * ph)
    for side, x in (("l", 0.1), ("r", -0.1)):
        set_arm_target(track, side, _xyz(ctx, x, 0.7, 0.04), _hint(np.sign(x), 0.3, 0.0), env)
    track.add("spine_lat", lean * env)
    track.add("root_roll", 0.3 * lean * env)
    track.pelvis[:, 0] -= 0.004 * lean * env
    track.add("neck_flex", -12.0 * env)
    track.add("spine_flex", -6.0 * env)
    return Built(track, free_arms=())


# ----------------------------------------------------------------------------- Sports

def boxing(ctx: BuildContext) -> Built:
    """Shadow boxing: guard up, bouncing, jabs with the left and crosses with the right."""
    track = _stand(ctx, width=0.3, left_forward=0.18, right_forward=-0.12)
    env = ctx.envelope(0.4)
    punches = ctx.times(0.6)
    n = ctx.num_frames
    reach = {"l": np.zeros(n), "r": np.zeros(n)}
    for i, tp in enumerate(punches):
        side = "l" if (i % 3 != 1) else "r"
        dur = 0.32 / ctx.tempo
        u = (ctx.t - tp) / dur
        reach[side] += np.where((u > 0) & (u < 1), np.sin(np.pi * np.clip(u, 0, 1) ** 0.6) ** 2, 0.0)
    twist = 28.0 * (reach["r"] - 0.6 * reach["l"]) * ctx.amp
    track.add("spine_twist", (twist - 15.0) * env)     # stance turned with the left side forward
    track.add("root_yaw", -10.0 * env)
    track.add("root_pitch", 8.0 * env)
    track.add("neck_flex", 10.0 * env)
    for side, sign in (("l", 1.0), ("r", -1.0)):
        guard = np.array([0.08 * sign, 0.22, 0.22])
        punch = np.array([0.04 * sign, 0.22, 0.55 + 0.05 * ctx.amp])
        r = np.clip(reach[side], 0, 1)[:, None]
        wrist = guard + (punch - guard) * r
        set_arm_target(track, side, wrist, _hint(sign * 0.7, -1.0, -0.2), env)
    bounce = ctx.phase(2.2)
    _knee_bob(track, ctx, bounce, 0.03, env)
    track.pelvis[:, 1] -= 0.05 * env
    return Built(track, free_arms=())


def kick(ctx: BuildContext) -> Built:
    """Front kicks with the right leg: chamber the knee, snap the foot out, retract, set it down."""
    track = _stand(ctx, width=0.22)
    env = ctx.envelope(0.4)
    track.add("l_elbow", 70.0 * env)
    track.add("r_elbow", 70.0 * env)
    track.add("l_sh_flex", 30.0 * env)
    track.add("r_sh_flex", 30.0 * env)
    kicks = ctx.times(1.5, start=0.5, end_margin=0.9)
    foot = track.right
    start = foot.ball[0].copy()
    lift_total = np.zeros(ctx.num_frames)
    for tk in kicks:
        d = 0.9 / ctx.tempo
        u = (ctx.t - tk) / d
        keys = [0.0, 0.25, 0.45, 0.65, 1.0]
        height = hermite(u, keys, [0.0, 0.45, 0.75 * min(ctx.amp, 1.2), 0.45, 0.0])
        ahead = hermite(u, keys, [0.0, 0.15, 0.62 * min(ctx.amp, 1.2), 0.15, 0.0])
        inside = (u > 0) & (u < 1)
        foot.ball[inside, 1] = start[1] + height[inside]
        foot.ball[inside, 2] = start[2] + ahead[inside]
        foot.pitch[inside] = 25.0 * np.sin(np.pi * u[inside])
        lift_total += bump(np.clip(u, 0, 1)) * inside
        track.pelvis[:, 0] += 0.07 * bump((ctx.t - tk + 0.25) / (d + 0.5))   # weight onto the left foot
    track.add("root_pitch", -10.0 * lift_total)
    return Built(track, free_arms=())


def throw(ctx: BuildContext) -> Built:
    """An overhand throw with the right arm: wind up back, whip over the top, follow through."""
    track = _stand(ctx, width=0.3, left_forward=0.2, right_forward=-0.12)
    t0 = ctx.uniform(0.5, max(0.6, ctx.duration - 1.6))
    d = 1.0 / ctx.tempo
    u = (ctx.t - t0) / d
    keys = [0.0, 0.4, 0.62, 0.78, 1.3]
    x = hermite(u, keys, [-0.25, -0.42, -0.3, 0.05, -0.25])
    y = hermite(u, keys, [-0.45, 0.25, 0.42, 0.0, -0.45])
    z = hermite(u, keys, [0.05, -0.3, 0.1, 0.45, 0.05])
    env = ctx.envelope(0.3)
    set_arm_target(track, "r", np.stack([x, y, z], -1), _hint(-1.0, -0.2, -0.5), env)
    twist = hermite(u, keys, [0.0, -35.0, 0.0, 30.0, 0.0]) * ctx.amp ** 0.5
    track.add("spine_twist", twist)
    track.add("spine_flex", hermite(u, keys, [0.0, -8.0, 5.0, 25.0, 0.0]))
    track.add("l_sh_flex", hermite(u, keys, [0.0, 70.0, 60.0, 10.0, 0.0]))
    track.pelvis[:, 2] += hermite(u, keys, [0.0, -0.08, 0.0, 0.1, 0.0])
    return Built(track, free_arms=("l",))


def squats(ctx: BuildContext) -> Built:
    """Bodyweight squats: sit the hips back and down with arms reaching forward, then stand."""
    track = _stand(ctx, width=0.32, toe_out=15)
    env = ctx.envelope(0.4)
    ph = ctx.phase(0.55, jitter=0.02)
    depth = 0.5 - 0.5 * np.cos(2 * np.pi * ph)
    depth = depth * env * min(ctx.amp, 1.15)
    track.pelvis[:, 1] -= 0.36 * depth
    track.pelvis[:, 2] -= 0.14 * depth
    track.add("root_pitch", 32.0 * depth)
    track.add("neck_flex", -18.0 * depth)
    for side in ("l", "r"):
        track.add(f"{side}_sh_flex", 20.0 * env + 65.0 * depth)
    return Built(track)


# ----------------------------------------------------------------------------- Dance

def arm_waves(ctx: BuildContext) -> Built:
    """Both arms up over the head, swaying side to side with the hips."""
    track = _stand(ctx, width=0.3)
    env = ctx.envelope(0.6)
    ph = ctx.phase(0.6)
    s = np.sin(2 * np.pi * ph) * ctx.amp
    for side, x in (("l", 0.22), ("r", -0.22)):
        wrist = _xyz(ctx, x + 0.2 * s, 0.62 - 0.05 * np.abs(s), 0.08)
        set_arm_target(track, side, wrist, _hint(np.sign(x), 0.2, 0.0), env)
    track.add("spine_lat", 12.0 * s * env)
    track.pelvis[:, 0] -= 0.05 * s * env
    track.add("root_roll", -5.0 * s * env)
    track.add("neck_lat", 6.0 * s * env)
    return Built(track, free_arms=())


def hip_sway(ctx: BuildContext) -> Built:
    """Swaying the hips from side to side on the beat, knees softly bending, arms loose."""
    track = _stand(ctx, width=0.3)
    env = ctx.envelope(0.5)
    ph = ctx.phase(0.8)
    s = _osc(ph, ctx.style.sharpness) * ctx.amp
    track.pelvis[:, 0] += 0.06 * s * env
    track.add("root_roll", -8.0 * s * env)
    track.add("spine_lat", 12.0 * s * env)
    track.add("root_yaw", 6.0 * np.sin(4 * np.pi * ph) * env)
    _knee_bob(track, ctx, 2 * ph, 0.03, env)
    for side, sign in (("l", 1.0), ("r", -1.0)):
        track.add(f"{side}_elbow", (70.0 + 15 * sign * s) * env)
        track.add(f"{side}_sh_abd", (18.0 + 8 * sign * s) * env)
        track.add(f"{side}_sh_flex", 15.0 * env)
    return Built(track)


def twist_dance(ctx: BuildContext) -> Built:
    """Dancing the twist: hips and shoulders twisting against each other, knees bent, arms swinging."""
    track = _stand(ctx, width=0.28)
    env = ctx.envelope(0.5)
    ph = ctx.phase(1.1)
    s = _osc(ph, ctx.style.sharpness) * ctx.amp
    track.add("root_yaw", 28.0 * s * env)
    track.add("spine_twist", -42.0 * s * env)
    track.pelvis[:, 1] -= 0.1 * env
    track.add("root_pitch", 10.0 * env)
    for side, sign in (("l", 1.0), ("r", -1.0)):
        track.add(f"{side}_sh_abd", 30.0 * env)
        track.add(f"{side}_elbow", 80.0 * env)
        track.add(f"{side}_sh_flex", (25.0 + 25.0 * sign * s) * env)
    return Built(track)


def disco_point(ctx: BuildContext) -> Built:
    """The disco point: the right arm points up to the sky and down across the body, hips swaying."""
    track = _stand(ctx, width=0.3)
    env = ctx.envelope(0.5)
    ph = ctx.phase(0.9)
    s = 0.5 + 0.5 * _osc(ph, 0.3 + 0.4 * ctx.style.sharpness)
    up, down = np.array([-0.5, 0.62, 0.2]), np.array([0.18, -0.4, 0.25])
    wrist = down + (up - down) * s[:, None]
    set_arm_target(track, "r", wrist, _hint(-1.0, -0.5, 0.0), env)
    track.add("l_sh_abd", 25.0 * env)
    track.add("l_elbow", 75.0 * env)
    track.pelvis[:, 0] += 0.05 * (2 * s - 1) * env * ctx.amp
    track.add("root_roll", -6.0 * (2 * s - 1) * env)
    track.add("neck_turn", -12.0 * (2 * s - 1) * env)
    _knee_bob(track, ctx, 2 * ph, 0.025, env)
    return Built(track, free_arms=("l",))


# ----------------------------------------------------------------------------- Shows

def bow(ctx: BuildContext) -> Built:
    """A deep theatrical bow: one hand to the stomach, the other arm swept out, head down, then up."""
    track = _stand(ctx, width=0.2, right_forward=0.1)
    t0 = ctx.uniform(0.3, 0.7)
    d = 0.8 / ctx.tempo
    hold = ctx.uniform(0.4, 1.0)
    prep = smoothstep((ctx.t - t0 + 0.5) / 0.5)
    down = smoothstep((ctx.t - t0) / d) * (1 - smoothstep((ctx.t - t0 - d - hold) / d))
    set_arm_target(track, "r", _xyz(ctx, 0.02, -0.28, 0.22), _hint(-1.0, -0.3, 0.0), prep * (0.3 + 0.7 * down))
    track.add("l_sh_abd", 55.0 * prep)
    track.add("l_sh_flex", 25.0 * prep * down)
    depth = min(ctx.amp, 1.25)
    track.add("root_pitch", 40.0 * depth * down)
    track.add("spine_flex", 22.0 * depth * down)
    track.add("neck_flex", 14.0 * down)
    track.pelvis[:, 2] -= 0.12 * depth * down
    return Built(track, free_arms=())


def theatrical(ctx: BuildContext) -> Built:
    """A dramatic stage declamation: arms sweep wide open, then a hand to the heart and the other
    reaching out to the audience."""
    track = _stand(ctx, width=0.24, left_forward=0.12)
    env = ctx.envelope(0.5)
    ph = ctx.phase(0.35)
    s = 0.5 - 0.5 * np.cos(2 * np.pi * ph)        # 0 = open wide, 1 = heart and reach
    open_l, open_r = np.array([0.62, 0.32, 0.2]), np.array([-0.62, 0.32, 0.2])
    reach_l, heart_r = np.array([0.3, 0.42, 0.5]), np.array([0.08, 0.02, 0.17])
    a = ctx.amp ** 0.5
    set_arm_target(track, "l", open_l + (reach_l - open_l) * s[:, None] * a, _hint(1, -0.5, -0.3), env)
    set_arm_target(track, "r", open_r + (heart_r - open_r) * s[:, None], _hint(-1, -0.8, 0.0), env)
    track.add("spine_flex", (-10.0 + 14.0 * s) * env)
    track.add("neck_flex", (-14.0 + 10.0 * s) * env)
    track.add("spine_twist", 12.0 * s * env)
    return Built(track, free_arms=())


def magic_flourish(ctx: BuildContext) -> Built:
    """A magician's flourish: hands roll around each other in front, then fly apart - ta-da."""
    track = _stand(ctx, width=0.26)
    t0 = ctx.uniform(0.3, 0.6)
    roll_time = ctx.uniform(1.0, 1.8) / ctx.tempo
    env = ctx.envelope(0.4, start=t0 - 0.3)
    reveal = smoothstep((ctx.t - t0 - roll_time) / (0.25 / ctx.tempo))
    ph = ctx.phase(1.6)
    c, s = np.cos(2 * np.pi * ph), np.sin(2 * np.pi * ph)
    r = 0.09 * ctx.amp
    for side, sign in (("l", 1.0), ("r", -1.0)):
        rolling = np.stack([sign * 0.06 + sign * r * c, 0.0 + sign * r * s, np.full(ctx.num_frames, 0.32)], -1)
        tada = np.array([sign * 0.62, 0.38, 0.22])
        wrist = rolling + (tada - rolling) * reveal[:, None]
        set_arm_target(track, side, wrist, _hint(sign, -1.0, -0.2), env)
    track.add("spine_flex", (8.0 - 20.0 * reveal) * env)
    track.add("neck_flex", (12.0 - 22.0 * reveal) * env)
    track.pelvis[:, 1] -= 0.05 * env * (1 - reveal)
    return Built(track, free_arms=())


def clap_overhead(ctx: BuildContext) -> Built:
    """Clapping the hands high above the head to get the crowd going, knees bouncing on the beat."""
    track = _stand(ctx, width=0.3)
    env = ctx.envelope(0.6)
    ph = ctx.phase(1.7)
    apart = 0.03 + 0.16 * ctx.amp ** 0.5 * (0.5 + 0.5 * _osc(ph, 0.6 + ctx.style.sharpness))
    for side, sign in (("l", 1.0), ("r", -1.0)):
        set_arm_target(track, side, _xyz(ctx, sign * apart, 0.66, 0.14), _hint(sign, 0.0, -0.3), env)
    _knee_bob(track, ctx, ph, 0.03, env)
    track.add("neck_flex", -12.0 * env)
    return Built(track, free_arms=())


def wave_to_crowd(ctx: BuildContext) -> Built:
    """Waving both arms high over the head to the audience."""
    track = _stand(ctx, width=0.28)
    env = ctx.envelope(0.5)
    ph = ctx.phase(0.9)
    s = _osc(ph, ctx.style.sharpness) * ctx.amp
    for side, x in (("l", 0.38), ("r", -0.38)):
        set_arm_target(track, side, _xyz(ctx, x + 0.16 * s, 0.55, 0.15), _hint(np.sign(x), -0.4, 0.0), env)
    track.add("spine_lat", 5.0 * s * env)
    track.add("neck_flex", -10.0 * env)
    return Built(track, free_arms=())


# ----------------------------------------------------------------------------- Game

def sword_slash(ctx: BuildContext) -> Built:
    """Two-handed sword slashes: from high over the right shoulder down across to the lower left."""
    track = _stand(ctx, width=0.36, left_forward=0.22, right_forward=-0.14)
    env = ctx.envelope(0.4)
    slashes = ctx.times(1.1, start=0.5, end_margin=0.6)
    n = ctx.num_frames
    prog = np.zeros(n)   # 0 = raised (wound up), 1 = slashed through
    for ts in slashes:
        prog += smoothstep((ctx.t - ts) / (0.28 / ctx.tempo)) - smoothstep((ctx.t - ts - 0.5 / ctx.tempo) / 0.5)
    prog = np.clip(prog, 0.0, 1.0)
    high, low = np.array([-0.3, 0.45, 0.15]), np.array([0.22, -0.25, 0.45])
    wrist = high + (low - high) * prog[:, None]
    set_arm_target(track, "r", wrist, _hint(-1.0, -0.3, 0.0), env)
    set_arm_target(track, "l", wrist + np.array([0.07, -0.04, 0.03]), _hint(1.0, -1.0, 0.0), env)
    track.add("spine_twist", (-25.0 + 50.0 * prog * ctx.amp ** 0.5) * env)
    track.add("spine_flex", (5.0 + 18.0 * prog) * env)
    track.pelvis[:, 1] -= (0.08 + 0.05 * prog) * env
    return Built(track, free_arms=())


def spell_cast(ctx: BuildContext) -> Built:
    """Casting a spell: gathering energy between the hands at the chest, then thrusting both palms
    forward in a lunge."""
    track = _stand(ctx, width=0.3, left_forward=0.2, right_forward=-0.12)
    env = ctx.envelope(0.4)
    casts = ctx.times(1.6, start=0.9, end_margin=0.5)
    push = np.zeros(ctx.num_frames)
    for tc in casts:
        push += smoothstep((ctx.t - tc) / (0.22 / ctx.tempo)) * (1 - smoothstep((ctx.t - tc - 0.6 / ctx.tempo) / 0.5))
    push = np.clip(push, 0.0, 1.0)
    ph = ctx.phase(1.2)
    for side, sign in (("l", 1.0), ("r", -1.0)):
        gather = np.stack([sign * (0.12 + 0.04 * np.cos(2 * np.pi * ph)), 0.05 + 0.06 * sign * np.sin(2 * np.pi * ph),
                           np.full(ctx.num_frames, 0.28)], -1)
        thrust = np.array([sign * 0.12, 0.2, 0.58])
        set_arm_target(track, side, gather + (thrust - gather) * push[:, None], _hint(sign, -1.0, -0.3), env)
    track.pelvis[:, 2] += 0.1 * push * ctx.amp ** 0.5
    track.pelvis[:, 1] -= (0.04 + 0.06 * push) * env
    track.add("root_pitch", 10.0 * push)
    return Built(track, free_arms=())


def aim_shoot(ctx: BuildContext) -> Built:
    """Aiming a rifle at the shoulder, scanning left and right, and firing with recoil."""
    track = _stand(ctx, width=0.32, left_forward=0.18, right_forward=-0.14)
    env = ctx.envelope(0.6)
    shots = ctx.times(0.7, start=1.0, end_margin=0.2)
    recoil = np.zeros(ctx.num_frames)
    for ts in shots:
        u = (ctx.t - ts) / 0.3
        recoil += np.where((u > 0) & (u < 1), np.exp(-4 * np.clip(u, 0, 1)) * (1 - np.clip(u, 0, 1)), 0.0)
    scan = 18.0 * np.sin(2 * np.pi * ctx.phase(0.18))
    set_arm_target(track, "r", _xyz(ctx, -0.1, 0.13, 0.3 - 0.05 * recoil), _hint(-1.0, -0.4, 0.0), env)
    set_arm_target(track, "l", _xyz(ctx, 0.04, 0.11, 0.56 - 0.05 * recoil), _hint(0.3, -1.0, 0.0), env)
    track.add("root_yaw", scan * env)
    track.add("spine_flex", (6.0 - 5.0 * recoil) * env)
    track.add("neck_flex", 12.0 * env)
    track.add("neck_turn", -8.0 * env)
    track.pelvis[:, 1] -= 0.04 * env
    return Built(track, free_arms=())


def victory_pose(ctx: BuildContext) -> Built:
    """Celebrating a win: fist pumps with the right arm, then both arms thrown up in a V."""
    track = _stand(ctx, width=0.3)
    env = ctx.envelope(0.4)
    t_v = ctx.duration * ctx.uniform(0.45, 0.7)
    v = smoothstep((ctx.t - t_v) / 0.3)
    ph = ctx.phase(1.6)
    pump = 0.5 + 0.5 * _osc(ph, 0.5 + ctx.style.sharpness)
    pump_wrist = _xyz(ctx, -0.3, 0.3 + 0.3 * ctx.amp ** 0.5 * pump, 0.15)
    v_r, v_l = np.array([-0.42, 0.62, 0.12]), np.array([0.42, 0.62, 0.12])
    set_arm_target(track, "r", pump_wrist + (v_r - pump_wrist) * v[:, None], _hint(-1.0, -0.6, 0.0), env)
    set_arm_target(track, "l", v_l[None, :].repeat(ctx.num_frames, 0), _hint(1.0, -0.3, 0.0), v)
    track.add("l_elbow", 70.0 * env * (1 - v))
    track.add("neck_flex", -16.0 * v - 5.0 * env)
    track.add("spine_flex", -8.0 * v)
    return Built(track, free_arms=())


def shield_block(ctx: BuildContext) -> Built:
    """Blocking with a shield: crouched, the left forearm raised before the face, bracing for hits."""
    track = _stand(ctx, width=0.36, left_forward=0.2, right_forward=-0.14)
    env = ctx.envelope(0.35)
    hits = ctx.times(0.9, start=0.8)
    jolt = np.zeros(ctx.num_frames)
    for th in hits:
        jolt += bump((ctx.t - th) / 0.35)
    set_arm_target(track, "l", _xyz(ctx, 0.05, 0.22 - 0.04 * jolt, 0.34 - 0.06 * jolt), _hint(1.0, -0.2, 0.0), env)
    set_arm_target(track, "r", _xyz(ctx, -0.3, -0.22, 0.05), _hint(-1.0, -0.5, -0.5), env)
    track.pelvis[:, 1] -= 0.12 * env
    track.pelvis[:, 2] -= 0.04 * jolt
    track.add("spine_flex", (12.0 - 6.0 * jolt) * env)
    track.add("neck_flex", 8.0 * env)
    return Built(track, free_arms=())


# ----------------------------------------------------------------------------- Animation

def bird_flap(ctx: BuildContext) -> Built:
    """Flapping the arms like a bird's wings, bobbing and pecking with the head."""
    track = _stand(ctx, width=0.24)
    env = ctx.envelope(0.5)
    ph = ctx.phase(1.3)
    s = _osc(ph, ctx.style.sharpness)
    for side in ("l", "r"):
        track.add(f"{side}_sh_abd", (55.0 + 45.0 * ctx.amp * s) * env)
        track.add(f"{side}_elbow", (15.0 - 10.0 * s) * env)
        track.add(f"{side}_sh_flex", -10.0 * env)
    track.add("neck_flex", 10.0 * np.sin(4 * np.pi * ph) * env)
    track.add("spine_flex", 12.0 * env)
    _knee_bob(track, ctx, ph, 0.04, env)
    return Built(track, free_arms=())


# ----------------------------------------------------------------------------- Instrument Play

def guitar(ctx: BuildContext) -> Built:
    """Playing a guitar: the left hand on the neck out to the left, the right hand strumming at the hip."""
    track = _stand(ctx, width=0.3)
    env = ctx.envelope(0.6)
    strum = ctx.phase(2.4)
    chord = np.round(1.5 * np.sin(2 * np.pi * ctx.phase(0.3))) / 1.5
    s = _osc(strum, ctx.style.sharpness)
    set_arm_target(track, "r", _xyz(ctx, -0.06, -0.3 + 0.08 * ctx.amp * s, 0.22), _hint(-1.0, -0.3, -0.4), env)
    set_arm_target(track, "l", _xyz(ctx, 0.4 + 0.04 * chord, -0.08, 0.3), _hint(1.0, -1.0, -0.2), env)
    track.add("neck_flex", (10.0 + 6.0 * np.sin(2 * np.pi * strum / 2)) * env)
    _knee_bob(track, ctx, strum / 2, 0.02, env)
    return Built(track, free_arms=())


def drums(ctx: BuildContext) -> Built:
    """Playing a marching drum: sticks striking in turn in front of the waist, head nodding."""
    track = _stand(ctx, width=0.3)
    env = ctx.envelope(0.5)
    ph = ctx.phase(2.2)
    for side, sign, shift in (("l", 1.0, 0.0), ("r", -1.0, 0.5)):
        hit = 0.5 + 0.5 * _osc(ph, 0.8 + ctx.style.sharpness, shift)
        set_arm_target(track, side, _xyz(ctx, sign * 0.13, -0.26 + 0.14 * ctx.amp * hit, 0.32),
                       _hint(sign, -1.0, -0.2), env)
    track.add("neck_flex", (12.0 + 5.0 * np.sin(2 * np.pi * ph)) * env)
    _knee_bob(track, ctx, ph, 0.02, env)
    return Built(track, free_arms=())


def violin(ctx: BuildContext) -> Built:
    """Playing a violin: held on the left shoulder under the chin, the right arm drawing the bow."""
    track = _stand(ctx, width=0.26)
    env = ctx.envelope(0.6)
    ph = ctx.phase(0.7)
    bow = 0.5 + 0.5 * np.sin(2 * np.pi * ph)
    near, far = np.array([0.0, 0.12, 0.3]), np.array([-0.42, -0.02, 0.28])
    span = 0.6 + 0.4 * min(ctx.amp, 1.3)
    set_arm_target(track, "r", near + (far - near) * (span * bow)[:, None], _hint(-1.0, -0.6, 0.0), env)
    set_arm_target(track, "l", _xyz(ctx, 0.3, 0.18, 0.42), _hint(0.3, -1.0, 0.0), env)
    track.add("neck_turn", 22.0 * env)
    track.add("neck_lat", 14.0 * env)
    track.add("neck_flex", 10.0 * env)
    track.add("spine_lat", 4.0 * np.sin(2 * np.pi * ph / 2) * env * ctx.amp)
    track.add("spine_flex", 5.0 * np.sin(2 * np.pi * ph / 2) * env * ctx.amp)
    return Built(track, free_arms=())


def trumpet(ctx: BuildContext) -> Built:
    """Playing a trumpet: both hands at the mouth, elbows out, the horn swinging up and down with the music."""
    track = _stand(ctx, width=0.28)
    env = ctx.envelope(0.5)
    ph = ctx.phase(0.6)
    swing = np.sin(2 * np.pi * ph) * ctx.amp
    set_arm_target(track, "r", _xyz(ctx, -0.04, 0.24 + 0.03 * swing, 0.3), _hint(-1.0, -0.2, 0.0), env)
    set_arm_target(track, "l", _xyz(ctx, 0.03, 0.22 + 0.03 * swing, 0.36), _hint(1.0, -0.4, 0.0), env)
    track.add("spine_flex", -8.0 * swing * env)
    track.add("neck_flex", -6.0 * swing * env)
    track.add("root_pitch", -3.0 * swing * env)
    _knee_bob(track, ctx, 2 * ph, 0.025, env)
    return Built(track, free_arms=())


def conducting(ctx: BuildContext) -> Built:
    """Conducting an orchestra: the right hand beats a four-count pattern, the left shapes the dynamics."""
    track = _stand(ctx, width=0.26)
    env = ctx.envelope(0.5)
    beat = ctx.phase(0.45)           # bars per second
    u = np.mod(beat, 1.0)
    a = ctx.amp
    keys = [0.0, 0.25, 0.5, 0.75, 1.0]
    x = hermite(u, keys, [-0.22, -0.02 + 0.1 * (a - 1), -0.44 - 0.1 * (a - 1), -0.26, -0.22])
    y = hermite(u, keys, [0.3, 0.0, 0.05, 0.08, 0.3])
    y = 0.1 + (y - 0.1) * a
    set_arm_target(track, "r", np.stack([x, y, np.full(ctx.num_frames, 0.4)], -1), _hint(-1.0, -0.5, -0.2), env)
    lift = 0.5 + 0.5 * np.sin(2 * np.pi * ctx.phase(0.2))
    set_arm_target(track, "l", _xyz(ctx, 0.35, -0.05 + 0.3 * lift, 0.35), _hint(1.0, -1.0, 0.0), env)
    track.add("neck_flex", (-6.0 + 6.0 * np.sin(2 * np.pi * 4 * beat)) * env)
    return Built(track, free_arms=())


def piano(ctx: BuildContext) -> Built:
    """Playing a keyboard at waist height: hands running along the keys, the body leaning in and swaying."""
    track = _stand(ctx, width=0.26)
    env = ctx.envelope(0.5)
    run_ph = ctx.phase(0.4)
    key_ph = ctx.phase(3.0)
    shift = 0.12 * ctx.amp * np.sin(2 * np.pi * run_ph)
    for side, sign, off in (("l", 1.0, 0.0), ("r", -1.0, 0.5)):
        press = 0.02 * np.maximum(_osc(key_ph, 0.5 + ctx.style.sharpness, off), 0.0)
        set_arm_target(track, side, _xyz(ctx, sign * 0.2 + shift, -0.3 - press, 0.42), _hint(sign, -1.0, -0.1), env)
    track.add("spine_flex", 12.0 * env)
    track.add("root_pitch", 6.0 * env)
    track.add("neck_flex", 15.0 * env)
    track.add("spine_lat", 6.0 * np.sin(2 * np.pi * run_ph) * env)
    return Built(track, free_arms=())
