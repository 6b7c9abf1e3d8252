"""Physical plausibility of a motion from its joint positions: foot skating, floor penetration,
joint-limit violations and frame-to-frame jumps.

Conventions: joints (T, 22, 3) in metres, Y up, 20 fps, floor at `floor_height` (0 for the embedded
generator's world coordinates; pass None to estimate it from the lowest foot joint, as HumanML3D's
pre-processing puts the lowest point on the floor).

Definitions (and why):
- Contact: a foot joint (ankle 7/8, ball 10/11) is in contact when it is within `CONTACT_MARGIN`
  (2.5 cm) of its resting height above the floor (ankle 8 cm, ball 3 cm for the canonical body), in
  both frames of a frame pair. Resting heights are per joint because an ankle never gets near y = 0.
- Skate speed: horizontal speed of a contact joint between consecutive frames (cm/s). We report its
  mean over contact samples, and the fraction of contact samples faster than `SKATE_SPEED`
  = 50 cm/s, i.e. 2.5 cm per frame at 20 fps — the skid distance used by the foot-skating ratio of
  GMD (Karunratanakul et al., 2023), a common choice in text-to-motion papers. A planted foot that
  pivots onto its toes moves its ankle by a few cm/s, far below it; a foot gliding over the floor
  at walking speed (~130 cm/s) is far above it.
- Penetration: how far the lowest joint goes below the floor (cm, 0 when none).
- Joint limits (degrees, from positions alone): knee flexion signed by the pelvis' left axis
  (negative = hyperextension) in [−KNEE_HYPER_TOL, 160]; elbow flexion ≤ 160 (an elbow's
  hyperextension is not observable without hand orientation); hip: the thigh's angle to the trunk
  axis ≤ 140; neck: the head segment's angle to the upper trunk ≤ 90; trunk: the upper trunk's angle
  to the lower trunk ≤ 90; ankle: the angle between the ankle→knee and ankle→ball segments in
  [75, 165] (rest ≈ 113: about 38° of dorsiflexion, as in a deep squat, and 52° of plantarflexion).
- Max jump: the largest displacement of any joint between two frames (m); teleports and popping
  show up here (a 9 m/s swing foot moves 0.45 m per frame, so values above ~0.6 are suspicious).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from l2emg.motion.skeleton import ANKLE_HEIGHT, BONE_OFFSETS, FPS
from l2emg.motion.skeleton import JOINT_INDEX as J

CONTACT_MARGIN = 0.025     # m above a foot joint's resting height that still counts as contact
SKATE_SPEED = 0.50         # m/s: skid faster than this while in contact counts as skating
KNEE_HYPER_TOL = 5.0       # degrees of apparent knee hyperextension tolerated
BALL_REST_HEIGHT = ANKLE_HEIGHT + float(BONE_OFFSETS[J["left_foot"], 1])

# (name, lower, upper) limits in degrees.
LIMITS: dict[str, tuple[float, float]] = {
    "knee": (-KNEE_HYPER_TOL, 160.0),
    "elbow": (0.0, 160.0),
    "hip": (0.0, 140.0),
    "neck": (0.0, 90.0),
    "trunk": (0.0, 90.0),
    "ankle": (75.0, 165.0),
}


@dataclass(frozen=True)
class MotionQuality:
    num_frames: int
    contact_fraction: float        # fraction of foot-joint frame pairs in contact
    skate_speed_cm_s: float        # mean horizontal speed of foot joints in contact
    skate_fraction: float          # fraction of contact samples skidding faster than SKATE_SPEED
    min_height_cm: float           # lowest joint height above the floor
    penetration_cm: float          # depth of the lowest joint below the floor (0 if none)
    limit_violation_deg: float     # worst violation of any joint limit
    limit_violation_fraction: float  # fraction of frames with any violation
    worst_limit: str               # which limit the worst violation belongs to ("" if none)
    max_jump_m: float              # largest per-frame displacement of any joint

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees between (..., 3) vectors."""
    na = np.linalg.norm(a, axis=-1)
    nb = np.linalg.norm(b, axis=-1)
    cos = np.sum(a * b, axis=-1) / np.maximum(na * nb, 1e-9)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def joint_angles(joints: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame angles (degrees) that the joint limits are checked on; each (T, k)."""
    j = np.asarray(joints, dtype=np.float64)
    left_axis = j[:, J["left_hip"]] - j[:, J["right_hip"]]
    out: dict[str, list[np.ndarray]] = {name: [] for name in LIMITS}
    trunk_up = j[:, J["spine1"]] - j[:, J["pelvis"]]
    for side in ("left", "right"):
        hip, knee, ankle, foot = (j[:, J[f"{side}_{n}"]] for n in ("hip", "knee", "ankle", "foot"))
        thigh, shin = knee - hip, ankle - knee
        flex = _angle(thigh, shin)
        sign = np.sign(np.sum(np.cross(thigh, shin) * left_axis, axis=-1))
        out["knee"].append(np.where(sign < 0, -flex, flex))
        out["hip"].append(_angle(thigh, -trunk_up))
        out["ankle"].append(_angle(-shin, foot - ankle))
        shoulder, elbow, wrist = (j[:, J[f"{side}_{n}"]] for n in ("shoulder", "elbow", "wrist"))
        out["elbow"].append(_angle(elbow - shoulder, wrist - elbow))
    lower = j[:, J["spine2"]] - j[:, J["pelvis"]]
    upper = j[:, J["neck"]] - j[:, J["spine2"]]
    out["trunk"].append(_angle(lower, upper))
    out["neck"].append(_angle(j[:, J["neck"]] - j[:, J["spine3"]], j[:, J["head"]] - j[:, J["neck"]]))
    return {name: np.stack(v, axis=-1) for name, v in out.items()}


def motion_quality(joints: np.ndarray, fps: int = FPS, floor_height: float | None = 0.0) -> MotionQuality:
    """Plausibility measures of one motion (T, 22, 3)."""
    j = np.asarray(joints, dtype=np.float64)
    if j.ndim != 3 or j.shape[1:] != (22, 3) or j.shape[0] < 2:
        raise ValueError(f"joints must be (T>=2, 22, 3), got {j.shape}")
    feet = [J["left_ankle"], J["right_ankle"], J["left_foot"], J["right_foot"]]
    rest = np.array([ANKLE_HEIGHT, ANKLE_HEIGHT, BALL_REST_HEIGHT, BALL_REST_HEIGHT])
    if floor_height is None:
        floor_height = float(j[:, feet[2:], 1].min()) - BALL_REST_HEIGHT
    height = j[:, feet, 1] - floor_height                        # (T, 4)
    contact = height < rest + CONTACT_MARGIN
    pair = contact[1:] & contact[:-1]                            # (T-1, 4)
    step = np.linalg.norm(np.diff(j[:, feet][:, :, [0, 2]], axis=0), axis=-1) * fps  # (T-1, 4) m/s
    num_contact = int(pair.sum())
    skate_speed = float(step[pair].mean() * 100.0) if num_contact else 0.0
    skate_fraction = float((step[pair] > SKATE_SPEED).mean()) if num_contact else 0.0

    min_height = float(j[..., 1].min() - floor_height)

    worst, worst_name = 0.0, ""
    violating = np.zeros(j.shape[0], dtype=bool)
    for name, angles in joint_angles(j).items():
        lo, hi = LIMITS[name]
        excess = np.maximum(lo - angles, 0.0) + np.maximum(angles - hi, 0.0)   # (T, k)
        violating |= (excess > 0).any(axis=-1)
        if excess.max() > worst:
            worst, worst_name = float(excess.max()), name

    jump = float(np.linalg.norm(np.diff(j, axis=0), axis=-1).max())
    return MotionQuality(
        num_frames=int(j.shape[0]),
        contact_fraction=float(pair.mean()),
        skate_speed_cm_s=skate_speed,
        skate_fraction=skate_fraction,
        min_height_cm=min_height * 100.0,
        penetration_cm=max(0.0, -min_height * 100.0),
        limit_violation_deg=worst,
        limit_violation_fraction=float(violating.mean()),
        worst_limit=worst_name,
        max_jump_m=jump,
    )


def summarize_quality(motions: Sequence[np.ndarray], fps: int = FPS, floor_height: float | None = 0.0) -> dict:
    """Aggregate plausibility over many motions: means, worst cases and pass rates.

    Skating is pooled over contact samples of all motions (weighted by contact count).
    """
    if len(motions) == 0:
        raise ValueError("summarize_quality needs at least one motion")
    qs = [motion_quality(m, fps, floor_height) for m in motions]
    weights = np.array([q.contact_fraction * (q.num_frames - 1) for q in qs])
    total = weights.sum()

    def pooled(values):
        return float(np.dot(weights, values) / total) if total > 0 else 0.0

    return {
        "num_motions": len(qs),
        "skate_speed_cm_s": pooled([q.skate_speed_cm_s for q in qs]),
        "skate_fraction": pooled([q.skate_fraction for q in qs]),
        "skate_speed_cm_s_max": max(q.skate_speed_cm_s for q in qs),
        "penetration_cm_max": max(q.penetration_cm for q in qs),
        "penetration_cm_mean": float(np.mean([q.penetration_cm for q in qs])),
        "min_height_cm": min(q.min_height_cm for q in qs),
        "limit_violation_deg_max": max(q.limit_violation_deg for q in qs),
        "limit_violation_frame_fraction": float(
            np.average([q.limit_violation_fraction for q in qs], weights=[q.num_frames for q in qs])
        ),
        "motions_with_limit_violation": float(np.mean([q.limit_violation_deg > 0 for q in qs])),
        "max_jump_m_max": max(q.max_jump_m for q in qs),
        "max_jump_m_mean": float(np.mean([q.max_jump_m for q in qs])),
    }
