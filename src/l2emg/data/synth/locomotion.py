"""Footstep-driven locomotion: walking, jogging, running, side steps, turning, sneaking and styled gaits.

The planner works in gait phase φ (cycles; one cycle = a left and a right step). Each foot alternates
stance (a fixed world position: it cannot slide) and swing (a minimum-jerk arc to the next footstep).
Footsteps are placed on the body's path at mid-stance, offset sideways by half the step width, so the
pelvis, which follows the path, passes over each stance foot. A duty factor above 0.5 gives double
support (walking); below 0.5 gives a flight phase (jogging, running). The pelvis height comes from the
gait (vault over the stance leg when walking, dip at mid-stance when running) and is lowered further by
the leg IK wherever a foot would be out of reach.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from l2emg.data.synth.body import BALL_HEIGHT, BodyTrack, FootTrack, rest_channels
from l2emg.data.synth.curves import cumulative, min_jerk, smooth_noise, smoothstep
from l2emg.motion.skeleton import FPS, REST_PELVIS_HEIGHT

MARGIN = 60  # frames planned before and after the clip so footsteps outside it are known
MIN_LIFT = 0.06  # swing clearance never below this: a shuffling foot still leaves the floor
LEVEL_LANDING = 14.0  # deg of plantarflexion (relative to the shin) at the end of a swing
BALL_AHEAD = 0.07  # the ball of a stance foot lands this far ahead of the mid-stance path point


@dataclass(frozen=True)
class Gait:
    cadence: float = 1.8          # steps per second
    step_length: float = 0.65     # metres travelled along the path per step
    duty: float = 0.6             # fraction of a cycle each foot is on the ground (> 0.5 walk, < 0.5 run)
    width: float = 0.18           # lateral distance between the two footstep lines (m)
    lift: float = 0.09            # swing clearance of the ball of the foot (m)
    heel_kick: float = 0.0        # 0..1: the swing foot rises early and behind (running recovery)
    stomp: float = 0.0            # 0..1: the swing foot comes down late and hard
    toe_off: float = 28.0         # heel raise at toe-off (deg)
    toe_up: float = 8.0           # toes lifted in mid swing (deg)
    tiptoe: float = 0.0           # heel raised through the whole stance (deg)
    height: float = 0.0           # pelvis height offset from standing (m, < 0 = crouched)
    vertical: float = 0.01        # pelvis bounce (m): > 0 highest at mid-stance (walk), < 0 lowest (run)
    sway: float = 0.025           # pelvis sway towards the stance foot (m)
    travel: float = 0.0           # direction of travel relative to facing (rad): 0 forward, ±π/2 sideways
    turn_rate: float = 0.0        # heading change (rad/s), > 0 turns left
    toe_out: float = 7.0          # feet turned out (deg)
    from_stand: bool = True       # start standing and accelerate (needs duty >= 0.55)
    robot: float = 0.0            # 0..1 stop-and-go stepping
    path: Callable[[np.ndarray], np.ndarray] | None = None  # custom arc length s(φ) (metres)


@dataclass
class GaitResult:
    track: BodyTrack
    phase: np.ndarray        # (T,) gait phase φ in cycles (left heel strike at integers)
    speed: np.ndarray        # (T,) path speed (m/s)
    moving: np.ndarray       # (T,) 0 while standing, 1 at full cadence


def _robotise(phi: np.ndarray, amount: float) -> np.ndarray:
    """Blend the phase with a stop-and-go version that pauses at every footfall."""
    if amount <= 0:
        return phi
    steps = 2.0 * phi
    quantised = (np.floor(steps) + min_jerk(steps - np.floor(steps))) / 2.0
    return (1 - amount) * phi + amount * quantised


def plan_gait(num_frames: int, gait: Gait, rng: np.random.Generator) -> GaitResult:
    """Plan a gait of `num_frames` frames starting at the origin facing +Z."""
    if gait.from_stand and gait.duty < 0.55:
        gait = replace(gait, from_stand=False)
    total = num_frames + 2 * MARGIN
    t = (np.arange(total) - MARGIN) / FPS
    jitter = 1.0 + 0.04 * smooth_noise(rng, t, 0.3)
    if gait.from_stand:
        start = rng.uniform(0.0, 0.4)
        rate = 0.5 * gait.cadence * smoothstep((t - start) / 0.9) * jitter
        phi0 = -0.45                      # both feet on the ground, left about to lift
    else:
        rate = 0.5 * gait.cadence * jitter
        phi0 = rng.uniform(0.0, 1.0) - rate[MARGIN] * MARGIN / FPS
    phi = _robotise(phi0 + cumulative(rate, 1.0 / FPS), gait.robot)
    phi = phi + np.arange(total) * 1e-9  # strictly increasing for interpolation

    if gait.path is not None:
        arc = gait.path(phi)
    elif gait.from_stand:
        x = np.maximum(phi - phi0, 0.0)
        arc = 2 * gait.step_length * (x - 0.4 * (1 - np.exp(-x / 0.4)))
    else:
        arc = 2 * gait.step_length * phi
    heading = cumulative(np.full(total, gait.turn_rate) * np.clip(rate / (0.5 * gait.cadence), 0, 1.5), 1 / FPS)
    heading -= heading[MARGIN]
    move_dir = heading + gait.travel
    d_arc = np.diff(arc, prepend=arc[0])
    path = np.zeros((total, 2))  # (x, z)
    mid_dir = move_dir - 0.5 * np.diff(move_dir, prepend=move_dir[0])
    path[:, 0] = np.cumsum(d_arc * np.sin(mid_dir))
    path[:, 1] = np.cumsum(d_arc * np.cos(mid_dir))
    path -= path[MARGIN]

    moving = np.clip(rate / (0.5 * gait.cadence), 0.0, 1.0)
    feet = [_plan_foot(phi, t, path, heading, gait, offset, side, moving)
            for offset, side in ((0.0, 1.0), (0.5, -1.0))]

    # Pelvis: the path, swaying towards the stance foot, bouncing with the steps.
    stance_centre = 2 * np.pi * (phi - gait.duty / 2)
    lateral = np.stack([np.cos(heading), -np.sin(heading)], axis=-1)  # +X of the body in world xz
    pelvis = np.zeros((total, 3))
    pelvis[:, [0, 2]] = path + (gait.sway * moving * np.cos(stance_centre))[:, None] * lateral
    pelvis[:, 1] = REST_PELVIS_HEIGHT + gait.height * (0.3 + 0.7 * moving) + gait.vertical * moving * np.cos(2 * stance_centre)

    crop = slice(MARGIN, MARGIN + num_frames)
    track = BodyTrack(
        rest_channels(num_frames), pelvis[crop], heading[crop],
        *(FootTrack(f.ball[crop], f.pitch[crop], f.yaw[crop]) for f in feet),
    )
    speed = np.abs(np.gradient(arc, 1.0 / FPS))[crop]
    return GaitResult(track, phi[crop], speed, moving[crop])


def _plan_foot(phi, t, path, heading, gait: Gait, offset: float, side: float, moving: np.ndarray) -> FootTrack:
    """One foot's ball position, pitch and yaw over the extended frame grid."""
    u = phi - offset
    k_all = np.floor(u).astype(int)
    ks = np.arange(k_all.min() - 1, k_all.max() + 2)
    # Footstep k: the path point at mid-stance, moved sideways by half the step width.
    t_mid = np.interp(ks + offset + gait.duty / 2, phi, t)
    heading_mid = np.interp(t_mid, t, heading)
    centre = np.stack([np.interp(t_mid, t, path[:, 0]), np.interp(t_mid, t, path[:, 1])], axis=-1)
    lateral = np.stack([np.cos(heading_mid), -np.sin(heading_mid)], axis=-1)
    forward = np.stack([np.sin(heading_mid), np.cos(heading_mid)], axis=-1)
    steps = centre + side * gait.width / 2 * lateral + BALL_AHEAD * forward
    step_yaw = heading_mid + side * np.radians(gait.toe_out)

    idx = k_all - ks[0]
    frac = u - k_all
    duty = gait.duty
    in_stance = frac < duty
    sigma = np.clip((frac - duty) / (1 - duty), 0.0, 1.0)   # swing progress
    rho = np.clip(frac / duty, 0.0, 1.0)                    # stance progress

    # Horizontal: hold in stance; min-jerk from this footstep to the next in swing (lagging if heel kick).
    # The foot rises before it travels and has arrived before it comes down (no skid at contact).
    # Running uses the gentler smoothstep so the fast swing foot peaks lower (~1.8x its mean speed).
    if gait.heel_kick > 0:
        m = smoothstep((sigma - 0.03) / 0.9)
    else:
        m = min_jerk((sigma - 0.03) / 0.85)
    a, b = steps[idx], steps[np.minimum(idx + 1, len(ks) - 1)]
    ya, yb = step_yaw[idx], step_yaw[np.minimum(idx + 1, len(ks) - 1)]
    # On a turn the swing follows the arc between the footsteps, not the chord (which would cut
    # inside, towards the other foot): bulge outwards by the arc's sagitta.
    chord = b - a
    outward = -np.stack([chord[:, 1], -chord[:, 0]], axis=-1)          # right of travel for a left turn
    sagitta = 0.5 * np.tan(np.clip(yb - ya, -2.0, 2.0) / 4.0)            # × |chord|
    bulge = (sagitta * np.sin(np.pi * m))[:, None] * outward
    xz = np.where(in_stance[:, None], a, a + chord * m[:, None] + bulge)
    yaw = np.where(in_stance, ya, ya + (yb - ya) * m)

    # Vertical: a clearance arc, peaking early for a heel kick and coming down late for a stomp.
    shape = sigma ** (1.0 / (1.0 + gait.heel_kick)) if gait.heel_kick > 0 else sigma
    shape = shape ** (1.0 + gait.stomp) if gait.stomp > 0 else shape
    lift = max(gait.lift, MIN_LIFT) * np.sin(np.pi * shape) ** 0.7
    y = BALL_HEIGHT + np.where(in_stance, 0.0, lift)

    heel_up = gait.tiptoe + gait.toe_off * moving * smoothstep((rho - 0.55) / 0.45)
    # In the air the pitch is the ankle's flexion from rest (see FootTrack): late in the swing a
    # slight plantarflexion keeps the sole level as the leg reaches forward, so the heel does not
    # drop to the floor before the foot has stopped.
    swing_pitch = (gait.tiptoe + gait.toe_off * moving * (1 - smoothstep(sigma / 0.6))
                   - gait.toe_up * np.sin(np.pi * sigma) ** 2 + LEVEL_LANDING * smoothstep((sigma - 0.4) / 0.5))
    pitch = np.where(in_stance, heel_up, swing_pitch)
    ball = np.stack([xz[:, 0], y, xz[:, 1]], axis=-1)
    return FootTrack(ball, pitch, yaw)


def add_gait_upper_body(track: BodyTrack, phase: np.ndarray, *, arm_swing: float, elbow: float,
                        elbow_swing: float = 0.0, pelvis_yaw: float = 5.0, pelvis_roll: float = 3.0,
                        lean: float = 0.0, shoulder_out: float = 8.0, moving: np.ndarray | None = None) -> None:
    """Counter-rotating pelvis and shoulders with arms swinging opposite to the legs (degrees)."""
    w = np.ones_like(phase) if moving is None else moving
    cyc = 2 * np.pi * phase
    # Left leg is forward at φ = 0 (left heel strike), the right at φ = 0.5.
    track.add("root_yaw", -pelvis_yaw * w * np.cos(cyc))            # pelvis turns with the forward leg
    track.add("spine_twist", 1.6 * pelvis_yaw * w * np.cos(cyc))    # shoulders turn the other way
    track.add("root_roll", pelvis_roll * w * np.sin(2 * cyc))
    track.add("root_pitch", lean * w)
    track.set("l_sh_flex", -arm_swing * w * np.cos(cyc) + 2.0)
    track.set("r_sh_flex", arm_swing * w * np.cos(cyc) + 2.0)
    track.set("l_elbow", elbow - elbow_swing * w * np.cos(cyc))
    track.set("r_elbow", elbow + elbow_swing * w * np.cos(cyc))
    track.set("l_sh_abd", shoulder_out)
    track.set("r_sh_abd", shoulder_out)
