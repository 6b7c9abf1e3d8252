"""Jumping actions with a real flight phase: vertical jumps, tuck jumps, leaps, spins, star jumps,
broad jumps and jumping jacks.

A jump is crouch -> push-off (heels rise, the balls stay planted) -> ballistic flight (the pelvis
follows a parabola under g = 9.81 m/s², its horizontal speed constant) -> landing toes first ->
absorbing crouch -> standing. In flight the feet move with the pelvis (tucked, split or spread by
the action); they land where the flight puts them and stay planted there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from l2emg.data.synth.body import BALL_HEIGHT, BodyTrack, FootTrack, rest_channels, stance_feet
from l2emg.data.synth.context import BuildContext, Built
from l2emg.data.synth.curves import bump, hermite, min_jerk, smoothstep
from l2emg.data.synth.rotations import rot_y
from l2emg.motion.skeleton import REST_PELVIS_HEIGHT

GRAVITY = 9.81
TAKEOFF_RISE = 0.05  # pelvis height gained at take-off (heels up, legs extended)
FLIGHT_FOOT_LIFT = 0.06  # feet drawn up a little in any flight (knees bend), so they clear the floor


@dataclass(frozen=True)
class JumpSpec:
    flight: float = 0.5          # seconds in the air
    crouch: float = 0.16         # pelvis drop before take-off (m)
    prep: float = 0.45           # seconds from standing to take-off
    recover: float = 0.55        # seconds from landing back to standing
    travel: float = 0.0          # forward distance per jump (m)
    spin: float = 0.0            # heading change per jump (rad)
    tuck: float = 0.0            # feet raised towards the hips at the apex (m)
    split: float = 0.0           # front/back foot spread at the apex (m)
    spread: float = 0.0          # extra sideways foot spread at the apex (m)
    land_width: tuple[float, ...] = (0.2,)  # stance width after each landing (cycled)


def jump_sequence(ctx: BuildContext, spec: JumpSpec, max_jumps: int = 4) -> tuple[BodyTrack, np.ndarray, list[tuple[float, float]]]:
    """Plan as many jumps as fit in the clip. Returns the track (rest upper body), an airborne mask
    and the (take-off, landing) times."""
    num, t = ctx.num_frames, ctx.t
    tempo = ctx.tempo
    flight = spec.flight * np.sqrt(ctx.amp) * ctx.uniform(0.92, 1.08)
    prep, recover = spec.prep / tempo, spec.recover / tempo
    crouch = spec.crouch * (0.6 + 0.4 * ctx.amp)
    start = ctx.uniform(0.15, 0.5)
    jumps: list[tuple[float, float]] = []
    cur = start
    while len(jumps) < max_jumps and cur + prep + flight + 0.2 < ctx.duration:
        take = cur + prep
        jumps.append((take, take + flight))
        cur = take + flight + recover
    if not jumps:  # too short for a full jump: a quick hop right away
        take = min(0.25, ctx.duration * 0.3)
        flight = min(flight, max(ctx.duration - take - 0.15, 0.1))
        jumps.append((take, take + flight))

    stand = REST_PELVIS_HEIGHT
    rise = TAKEOFF_RISE
    v0 = GRAVITY * flight / 2
    keys_t, keys_y, keys_v = [0.0], [stand], [0.0]
    for take, land in jumps:
        low_t = max(take - 0.17 / tempo, keys_t[-1] + 0.05)
        if take - prep > keys_t[-1] + 0.05:
            keys_t.append(take - prep); keys_y.append(stand); keys_v.append(0.0)
        keys_t += [low_t, take, land, land + 0.16 / tempo]
        keys_y += [stand - crouch, stand + rise, stand + rise, stand - 0.7 * crouch]
        keys_v += [0.0, v0, -v0, 0.0]
    end_t = max(jumps[-1][1] + recover, keys_t[-1] + 0.1)
    keys_t.append(end_t); keys_y.append(stand); keys_v.append(0.0)
    pelvis_y = hermite(t, keys_t, keys_y, keys_v)

    # Heading turns in flight; horizontal travel happens in flight at constant speed.
    head = np.zeros(num)
    forward = np.zeros(num)
    airborne = np.zeros(num, dtype=bool)
    for take, land in jumps:
        s = (t - take) / (land - take)
        airborne |= (s > 0) & (s < 1)
        head += spec.spin * min_jerk((t - take + 0.06) / (land - take + 0.12))
        lean = spec.travel * 0.12
        forward += lean * (smoothstep((t - take + 0.2) / 0.2) - smoothstep((t - land) / 0.25))
        forward += spec.travel * np.clip(s, 0.0, 1.0)
    # Travel along the initial facing (+Z): keeps a spinning leap on a straight line.
    pelvis = np.zeros((num, 3))
    pelvis[:, 1] = pelvis_y
    pelvis[:, 2] = forward

    # Feet: planted between jumps, carried by the pelvis in flight.
    left0, right0 = stance_feet(num, width=spec.land_width[0])
    feet = []
    for foot0, side in ((left0, 1.0), (right0, -1.0)):
        rel_stand = foot0.ball[0, [0, 2]].copy()       # planted offset in the body frame (x, z)
        ball = foot0.ball.copy()
        yaw = foot0.yaw.copy()
        offset_yaw = float(foot0.yaw[0])
        planted_rel = rel_stand.copy()
        for i, (take, land) in enumerate(jumps):
            width = spec.land_width[(i + 1) % len(spec.land_width)]
            rel_land = np.array([side * width / 2, rel_stand[1]]) + np.array([side * 0.12 * np.sin(abs(offset_yaw)), 0.0])
            s = np.clip((t - take) / (land - take), 0.0, 1.0)
            in_air = (t > take) & (t < land)
            after = t >= land
            r_head = rot_y(head)                              # (T, 3, 3)
            rel = planted_rel[None, :] + (rel_land - planted_rel)[None, :] * smoothstep(s)[:, None]
            rel3 = np.stack([rel[:, 0] + side * spec.spread * bump(s),
                             np.zeros(num),
                             rel[:, 1] + side * spec.split * bump(s) * 0.5], axis=-1)
            if spec.split:
                rel3[:, 2] = rel[:, 1] + (side * spec.split * np.sin(np.pi * s))
            world = pelvis + np.einsum("tij,tj->ti", r_head, rel3)
            world[:, 1] = BALL_HEIGHT + (pelvis_y - (stand + rise)) + spec.tuck * np.sin(np.pi * s) ** 1.5 \
                + 0.25 * abs(spec.split) * np.sin(np.pi * s) + FLIGHT_FOOT_LIFT * np.sin(np.pi * s) ** 0.5
            world[:, 1] = np.maximum(world[:, 1], BALL_HEIGHT)
            ball[in_air] = world[in_air]
            yaw_air = head + offset_yaw
            yaw[in_air] = yaw_air[in_air]
            # Landing spot: where the flight ends.
            land_idx = np.searchsorted(t, land)
            end_head = heading_at(head, land_idx)
            land_pos = pelvis[min(land_idx, num - 1)] + rot_y(np.array(end_head)) @ np.array([rel_land[0], 0.0, rel_land[1]])
            land_pos[1] = BALL_HEIGHT
            ball[after] = land_pos
            yaw[after] = end_head + offset_yaw
            planted_rel = rel_land
            # Heels rise before take-off; toes point in the air; the heel comes down after landing.
        feet.append(FootTrack(ball, _heel_pitch(t, jumps, ctx.tempo), yaw))
    track = BodyTrack(rest_channels(num), pelvis, head, feet[0], feet[1])
    return track, airborne, jumps


def _heel_pitch(t: np.ndarray, jumps, tempo: float, heel: float = 40.0) -> np.ndarray:
    """Foot pitch over a jump sequence: heels rise before each take-off, toes stay pointed in the
    air, the heel comes down after landing — unless the next take-off follows at once, when the
    jumper stays on the balls of the feet (as in jumping jacks)."""
    rise, drop = 0.16 / tempo, 0.25 / tempo
    keys_t, keys_v = [t[0] - 1.0], [0.0]
    for i, (take, land) in enumerate(jumps):
        if keys_v[-1] == 0.0:
            keys_t.append(max(take - rise, keys_t[-1] + 1e-3)); keys_v.append(0.0)
        keys_t += [max(take, keys_t[-1] + 1e-3), max(land, keys_t[-1] + 2e-3)]
        keys_v += [heel, heel]
        next_take = jumps[i + 1][0] if i + 1 < len(jumps) else np.inf
        if next_take - land > rise + drop:
            keys_t.append(land + drop); keys_v.append(0.0)
    keys_t.append(max(t[-1] + 1.0, keys_t[-1] + 1.0)); keys_v.append(keys_v[-1])
    return hermite(t, keys_t, keys_v, np.zeros(len(keys_t)))


def heading_at(head: np.ndarray, index: int) -> float:
    return float(head[min(index, len(head) - 1)])


def _arm_swing(track: BodyTrack, ctx: BuildContext, jumps, up: float = 150.0, back: float = -40.0) -> None:
    """Arms swing back in the crouch and up through take-off, then settle after landing."""
    t = ctx.t
    flex = np.zeros(ctx.num_frames)
    for take, land in jumps:
        flex += back * bump((t - take + 0.45 / ctx.tempo) / (0.45 / ctx.tempo))
        flex += up * ctx.amp ** 0.5 * smoothstep((t - take + 0.25) / 0.42) * (1 - smoothstep((t - land) / 0.5))
    for side in ("l", "r"):
        track.add(f"{side}_sh_flex", flex)
        track.add(f"{side}_elbow", 10.0 * np.abs(flex) / 150.0)


def _trunk(track: BodyTrack, ctx: BuildContext, jumps, crouch_lean: float = 25.0) -> None:
    t = ctx.t
    lean = np.zeros(ctx.num_frames)
    for take, land in jumps:
        lean += crouch_lean * bump((t - take + 0.35 / ctx.tempo) / (0.5 / ctx.tempo))
        lean += 0.7 * crouch_lean * bump((t - land + 0.05) / 0.45)
    track.add("root_pitch", lean)


def vertical_jump(ctx: BuildContext) -> Built:
    track, air, jumps = jump_sequence(ctx, JumpSpec(flight=0.5, crouch=0.2))
    _arm_swing(track, ctx, jumps)
    _trunk(track, ctx, jumps)
    return Built(track, airborne=air)


def tuck_jump(ctx: BuildContext) -> Built:
    track, air, jumps = jump_sequence(ctx, JumpSpec(flight=0.58, crouch=0.22, tuck=0.42))
    _arm_swing(track, ctx, jumps, up=70.0)
    _trunk(track, ctx, jumps)
    for take, land in jumps:
        tuck = bump((ctx.t - take) / (land - take))
        track.add("spine_flex", 18.0 * tuck)
        track.add("l_elbow", 60.0 * tuck)
        track.add("r_elbow", 60.0 * tuck)
    return Built(track, airborne=air)


def split_leap(ctx: BuildContext) -> Built:
    track, air, jumps = jump_sequence(
        ctx, JumpSpec(flight=0.55, crouch=0.18, travel=0.9 * ctx.style.stride, split=0.5), max_jumps=3
    )
    _trunk(track, ctx, jumps, 15.0)
    for take, land in jumps:
        s = bump((ctx.t - take + 0.1) / (land - take + 0.2))
        track.add("l_sh_abd", 85.0 * s * ctx.amp ** 0.5)
        track.add("r_sh_abd", 85.0 * s * ctx.amp ** 0.5)
        track.add("l_sh_flex", 25.0 * s)
        track.add("r_sh_flex", 25.0 * s)
        track.add("neck_flex", -12.0 * s)
    return Built(track, airborne=air)


def jump_spin(ctx: BuildContext) -> Built:
    turns = 2 * np.pi if ctx.chance(0.5) else np.pi
    direction = 1.0 if ctx.chance(0.5) else -1.0
    track, air, jumps = jump_sequence(ctx, JumpSpec(flight=0.55, crouch=0.2, spin=direction * turns))
    _trunk(track, ctx, jumps, 18.0)
    for take, land in jumps:
        s = bump((ctx.t - take + 0.15) / (land - take + 0.3))
        for side in ("l", "r"):
            track.add(f"{side}_sh_flex", 60.0 * s)
            track.add(f"{side}_elbow", 90.0 * s)
            track.add(f"{side}_sh_abd", 10.0 * s)
    return Built(track, airborne=air, details={"turn": "left" if direction > 0 else "right"})


def star_jump(ctx: BuildContext) -> Built:
    track, air, jumps = jump_sequence(ctx, JumpSpec(flight=0.5, crouch=0.18, spread=0.22))
    _trunk(track, ctx, jumps, 20.0)
    for take, land in jumps:
        s = bump((ctx.t - take + 0.12) / (land - take + 0.24))
        for side in ("l", "r"):
            track.add(f"{side}_sh_abd", 125.0 * s * ctx.amp ** 0.5)
    return Built(track, airborne=air)


def broad_jump(ctx: BuildContext) -> Built:
    track, air, jumps = jump_sequence(
        ctx, JumpSpec(flight=0.45, crouch=0.22, travel=1.0 * ctx.style.stride, tuck=0.12, prep=0.6), max_jumps=3
    )
    _arm_swing(track, ctx, jumps, up=110.0, back=-55.0)
    _trunk(track, ctx, jumps, 35.0)
    return Built(track, airborne=air)


def jumping_jacks(ctx: BuildContext) -> Built:
    """Jumping jacks: quick low hops, landing feet wide and together in turn, arms over the head and
    back down."""
    spec = JumpSpec(flight=0.24, crouch=0.06, prep=0.18, recover=0.22, land_width=(0.2, 0.55))
    track, air, jumps = jump_sequence(ctx, spec, max_jumps=40)
    t = ctx.t
    arms = np.zeros(ctx.num_frames)
    for i, (take, land) in enumerate(jumps):
        target = 1.0 if i % 2 == 0 else 0.0         # jump 0 lands wide: arms go up
        prev = 0.0 if i % 2 == 0 else 1.0
        arms += (target - prev) * smoothstep((t - take + 0.05) / (land - take + 0.1))
    arms = np.clip(arms, 0.0, 1.0)
    for side in ("l", "r"):
        track.add(f"{side}_sh_abd", 150.0 * arms * min(ctx.amp, 1.1))
        track.add(f"{side}_elbow", 10.0 * arms)
    return Built(track, airborne=air)
