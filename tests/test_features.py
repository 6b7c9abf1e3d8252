"""Tests for the rotation helpers and the HumanML3D 263-d feature representation."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from l2emg.motion import features as F
from l2emg.motion import rotations as R
from l2emg.motion.skeleton import NUM_JOINTS, REST_PELVIS_HEIGHT, forward_kinematics

# Peak rotation (radians) per joint: spine and neck modest, hips/shoulders/elbows/knees larger.
_AMPLITUDE = np.array(
    [0.15, 0.7, 0.7, 0.25, 0.9, 0.9, 0.25, 0.35, 0.35, 0.25, 0.2, 0.2, 0.3, 0.2, 0.2, 0.3,
     1.0, 1.0, 1.1, 1.1, 0.5, 0.5]
)


def random_motion(seed: int, num_frames: int = 80, speed: float = 1.2, turn_rate: float = 0.6) -> np.ndarray:
    """(T, 22, 3) motion of the canonical rigid skeleton: smooth random joint rotations (sums of
    sinusoids within human-ish ranges), a root that walks along its heading while turning, and a
    random global placement (so canonicalisation has work to do)."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames) / 20.0
    rotvec = np.zeros((num_frames, NUM_JOINTS, 3))
    for _ in range(3):
        freq = rng.uniform(0.3, 2.0, size=(NUM_JOINTS, 3))
        phase = rng.uniform(0, 2 * np.pi, size=(NUM_JOINTS, 3))
        amp = rng.uniform(-1, 1, size=(NUM_JOINTS, 3)) * _AMPLITUDE[:, None] / 2
        rotvec += amp * np.sin(2 * np.pi * freq * t[:, None, None] + phase)
    local = Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_matrix().reshape(num_frames, NUM_JOINTS, 3, 3)
    # Root: heading integrates a smoothly varying turn rate; walking direction follows it.
    rate = turn_rate * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t + rng.uniform(0, 6.3))
    heading = rng.uniform(-np.pi, np.pi) + np.cumsum(rate) / 20.0
    local[:, 0] = R.rot_y(heading) @ local[:, 0]
    step = speed / 20.0 * np.stack([np.sin(heading), np.zeros_like(heading), np.cos(heading)], -1)
    root = np.cumsum(step, axis=0) + rng.uniform(-3, 3, size=3) * np.array([1, 0, 1])
    root[:, 1] = REST_PELVIS_HEIGHT + 0.03 * np.sin(2 * np.pi * 1.8 * t) + rng.uniform(-0.2, 0.5)
    return forward_kinematics(local, root)


def _max_dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=-1).max())


# ---------------------------------------------------------------------------------------------
# rotations
# ---------------------------------------------------------------------------------------------


def test_quaternion_helpers_match_scipy():
    rng = np.random.default_rng(0)
    a, b = Rotation.random(50, random_state=1), Rotation.random(50, random_state=2)
    qa, qb = R.matrix_to_quat(a.as_matrix()), R.matrix_to_quat(b.as_matrix())
    np.testing.assert_allclose(R.quat_to_matrix(qa), a.as_matrix(), atol=1e-12)
    np.testing.assert_allclose(R.quat_to_matrix(R.quat_mul(qa, qb)), (a * b).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(R.quat_to_matrix(R.quat_inverse(qa)), a.inv().as_matrix(), atol=1e-12)
    v = rng.normal(size=(50, 3))
    np.testing.assert_allclose(R.quat_rotate(qa, v), a.apply(v), atol=1e-12)
    # torch gives the same numbers
    out = R.quat_rotate(torch.from_numpy(qa), torch.from_numpy(v)).numpy()
    np.testing.assert_allclose(out, a.apply(v), atol=1e-12)


def test_quat_between_maps_u_to_v_including_opposite():
    rng = np.random.default_rng(3)
    u = rng.normal(size=(100, 3))
    v = rng.normal(size=(100, 3))
    v[0] = -u[0]  # opposite
    v[1] = u[1] * 2.0  # parallel
    u[2], v[2] = np.array([1.0, 0, 0]), np.array([-1.0, 0, 0])  # opposite along a basis axis
    for backend in (np.asarray, torch.from_numpy):
        q = np.asarray(R.quat_between(backend(u), backend(v)))
        mapped = R.quat_rotate(q, u / np.linalg.norm(u, axis=-1, keepdims=True))
        np.testing.assert_allclose(mapped, v / np.linalg.norm(v, axis=-1, keepdims=True), atol=1e-9)
        np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-12)


def test_cont6d_euler_and_rot_y_round_trips():
    mats = Rotation.random(64, random_state=4).as_matrix()
    sixd = R.matrix_to_cont6d(mats)
    assert sixd.shape == (64, 6)
    np.testing.assert_allclose(sixd[:, :3], mats[:, :, 0])
    np.testing.assert_allclose(R.cont6d_to_matrix(sixd), mats, atol=1e-12)
    # Gram-Schmidt repairs a perturbed 6D vector into a proper rotation (torch path)
    noisy = torch.from_numpy(sixd + 0.05 * np.random.default_rng(5).normal(size=sixd.shape))
    m = R.cont6d_to_matrix(noisy)
    np.testing.assert_allclose((m.transpose(-1, -2) @ m).numpy(), np.broadcast_to(np.eye(3), (64, 3, 3)), atol=1e-9)
    np.testing.assert_allclose(torch.linalg.det(m).numpy(), 1.0, atol=1e-9)
    for order in ("ZYX", "XYZ", "ZXY"):
        angles = R.matrix_to_euler(mats, order)
        np.testing.assert_allclose(R.euler_to_matrix(angles, order), mats, atol=1e-12)
    # BVH semantics: "ZYX" means Rz @ Ry @ Rx
    z, y, x = 30.0, -20.0, 10.0
    expected = (Rotation.from_euler("z", z, degrees=True) * Rotation.from_euler("y", y, degrees=True)
                * Rotation.from_euler("x", x, degrees=True)).as_matrix()
    np.testing.assert_allclose(R.euler_to_matrix(np.array([z, y, x]), "ZYX"), expected, atol=1e-12)
    np.testing.assert_allclose(R.rot_y(np.array(0.7)) @ [0, 0, 1], [np.sin(0.7), 0, np.cos(0.7)], atol=1e-12)
    np.testing.assert_allclose(R.rotate_y(np.array([0.0, 1.0, 1.0]), np.array(0.7)),
                               R.rot_y(np.array(0.7)) @ [0, 1, 1], atol=1e-12)


def test_best_fit_rotation_recovers_a_rotation_batched():
    rot = Rotation.random(20, random_state=6).as_matrix()
    src = np.random.default_rng(7).normal(size=(20, 3, 3))
    tgt = np.einsum("bij,bnj->bni", rot, src)
    np.testing.assert_allclose(R.best_fit_rotation(src, tgt), rot, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# features
# ---------------------------------------------------------------------------------------------


def test_layout_constants():
    sizes = {name: s.stop - s.start for name, s in F.FEATURE_GROUPS.items()}
    assert sizes == {"root_rot_vel": 1, "root_lin_vel": 2, "root_y": 1, "ric": 63, "rot6d": 126,
                     "local_vel": 66, "foot_contact": 4}
    assert sum(sizes.values()) == F.FEATURE_DIM == 263
    starts = sorted(s.start for s in F.FEATURE_GROUPS.values())
    stops = sorted(s.stop for s in F.FEATURE_GROUPS.values())
    assert starts[0] == 0 and stops[-1] == 263 and starts[1:] == stops[:-1]


def test_canonicalize_faces_plus_z_with_root_at_origin_and_floor_at_zero():
    joints = random_motion(11)
    canon = F.canonicalize_joints(joints)
    assert canon.shape == joints.shape and canon.dtype == np.float64
    assert abs(canon[..., 1].min()) < 1e-12
    np.testing.assert_allclose(canon[0, 0, [0, 2]], 0.0, atol=1e-12)
    assert abs(F.facing_heading(canon[:1])[0]) < 1e-9
    # the left hip is on +X, the facing is +Z
    assert canon[0, 1, 0] > canon[0, 2, 0]
    # rigid: pairwise distances unchanged, and canonicalising twice changes nothing
    np.testing.assert_allclose(np.linalg.norm(canon[:, 5] - canon[:, 20], axis=-1),
                               np.linalg.norm(joints[:, 5] - joints[:, 20], axis=-1), atol=1e-12)
    np.testing.assert_allclose(F.canonicalize_joints(canon), canon, atol=1e-12)
    assert F.canonicalize_joints(joints.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_feature_round_trip_within_1mm(seed):
    joints = random_motion(seed, num_frames=60 + 30 * seed, speed=0.5 + 0.4 * seed, turn_rate=0.3 * seed + 0.2)
    feats = F.extract_features(joints)
    assert feats.shape == (len(joints) - 1, 263) and feats.dtype == np.float32
    assert np.all(np.isfinite(feats))
    recovered = F.recover_joints(feats)
    assert recovered.shape == (len(joints) - 1, 22, 3) and recovered.dtype == np.float32
    err = _max_dist(recovered, F.canonicalize_joints(joints)[:-1])
    assert err < 1e-3, f"round trip max error {err * 1000:.3f} mm"
    assert F.feature_roundtrip_error(joints) == pytest.approx(err, abs=1e-6)


def test_round_trip_with_heading_smoothing_and_fast_spins():
    joints = random_motion(21, num_frames=120, turn_rate=6.0)  # turns of several rad/s
    for sigma in (0.0, 5.0):
        err = _max_dist(F.recover_joints(F.extract_features(joints, facing_smooth_sigma=sigma)),
                        F.canonicalize_joints(joints)[:-1])
        assert err < 1e-3, f"sigma={sigma}: round trip max error {err * 1000:.3f} mm"


def test_features_are_invariant_to_global_placement():
    joints = random_motion(5)
    moved = R.rotate_y(joints, np.array(1.3)) + np.array([4.0, 0.7, -2.0])
    np.testing.assert_allclose(F.extract_features(moved), F.extract_features(joints), atol=2e-5)


def test_root_and_local_dims_mean_what_they_say():
    joints = F.canonicalize_joints(random_motion(8))
    feats = F.extract_features(joints).astype(np.float64)
    np.testing.assert_allclose(feats[:, 3], joints[:-1, 0, 1], atol=1e-6)
    # rot6d dims are the first two columns of proper rotations
    mats = R.cont6d_to_matrix(feats[:, F.ROT6D].reshape(-1, 21, 6))
    np.testing.assert_allclose(R.matrix_to_cont6d(mats), feats[:, F.ROT6D].reshape(-1, 21, 6), atol=1e-5)
    # local velocity: norms equal the world displacement norms
    vel = feats[:, F.LOCAL_VEL].reshape(-1, 22, 3)
    np.testing.assert_allclose(np.linalg.norm(vel, axis=-1),
                               np.linalg.norm(joints[1:] - joints[:-1], axis=-1), atol=1e-6)
    # a body turning left (+heading) gets negative root_rot_vel (HumanML3D's sign and half angle)
    heading = np.unwrap(F.facing_heading(joints))
    np.testing.assert_allclose(feats[:, 0], -0.5 * np.diff(heading), atol=1e-6)


def test_rot6d_reproduces_bone_directions():
    """Chaining the local rotations along HumanML3D's chains rebuilds every bone direction."""
    joints = F.canonicalize_joints(random_motion(9))
    heading = F.facing_heading(joints)
    local = F.local_rotations_ik(joints, heading - heading[0])
    from l2emg.motion.skeleton import KINEMATIC_CHAIN, PARENTS, RAW_OFFSETS

    global_frames = {0: R.rot_y(heading - heading[0])}
    for chain in KINEMATIC_CHAIN:
        frame = global_frames[chain[0]]  # pelvis' facing frame, or the spine3 bone for the arms
        for bone in chain[1:]:
            frame = frame @ local[:, bone - 1]
            global_frames[bone] = frame
            bone_vec = joints[:, bone] - joints[:, PARENTS[bone]]
            direction = bone_vec / np.linalg.norm(bone_vec, axis=-1, keepdims=True)
            np.testing.assert_allclose(frame @ RAW_OFFSETS[bone], direction, atol=1e-9)


def test_foot_contacts_are_binary_and_follow_the_threshold():
    still = np.repeat(random_motion(3, num_frames=2)[:1], 30, axis=0)
    feats = F.extract_features(still)
    assert np.all(feats[:, F.FOOT_CONTACT] == 1.0)
    sliding = still + (np.arange(30)[:, None, None] * np.array([0.0, 0.0, 0.1]))  # 0.01 m²/frame
    assert np.all(F.extract_features(sliding)[:, F.FOOT_CONTACT] == 0.0)
    walking = F.extract_features(random_motion(4, num_frames=100))[:, F.FOOT_CONTACT]
    assert set(np.unique(walking)) <= {0.0, 1.0}
    # contacts are exactly the thresholded squared displacement (ankle 7, foot 10, ankle 8, foot 11)
    canon = F.canonicalize_joints(random_motion(4, num_frames=100))
    sq = ((canon[1:, [7, 10, 8, 11]] - canon[:-1, [7, 10, 8, 11]]) ** 2).sum(-1)
    np.testing.assert_array_equal(walking, (sq < 0.002).astype(np.float32))


def test_torch_recovery_matches_numpy_batched_and_differentiable():
    feats = np.stack([F.extract_features(random_motion(s, num_frames=50)) for s in range(3)])  # (3, 49, 263)
    ref = F.recover_joints(feats.astype(np.float64))
    assert ref.shape == (3, 49, 22, 3)
    np.testing.assert_allclose(ref[1], F.recover_joints(feats[1].astype(np.float64)), atol=1e-12)
    x64 = torch.from_numpy(feats.astype(np.float64)).requires_grad_(True)
    out = F.recover_joints(x64)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64 and out.shape == (3, 49, 22, 3)
    np.testing.assert_allclose(out.detach().numpy(), ref, atol=1e-10)
    out.square().sum().backward()
    grad = x64.grad.numpy()
    assert np.all(np.isfinite(grad))
    for group in (F.ROOT_ROT_VEL, F.ROOT_LIN_VEL, F.ROOT_Y, F.RIC):
        assert np.abs(grad[..., group]).sum() > 0
    assert np.all(grad[..., F.ROT6D] == 0)  # recovery reads positions, not rotations
    # float32 unbatched
    out32 = F.recover_joints(torch.from_numpy(feats[0]))
    assert out32.dtype == torch.float32 and out32.shape == (49, 22, 3)
    np.testing.assert_allclose(out32.numpy(), ref[0], atol=1e-4)
    root_heading, root_pos = F.recover_root(torch.from_numpy(feats[0]))
    np.testing.assert_allclose(root_pos.numpy(), ref[0][:, 0], atol=1e-4)
    assert root_heading[0].item() == 0.0


def test_feature_stats_group_constant_and_floored():
    feats = [F.extract_features(random_motion(s, num_frames=40)) for s in range(4)]
    mean, std = F.compute_feature_stats(feats)
    assert mean.shape == std.shape == (263,) and mean.dtype == std.dtype == np.float32
    np.testing.assert_allclose(mean, np.concatenate(feats).mean(0), atol=1e-5)
    for name, group in F.FEATURE_GROUPS.items():
        assert np.all(std[group] == std[group][0]), name
    assert np.all(std >= F.STD_FLOOR)
    # a constant group (contacts all 1 when standing still) gets the floor, not 0
    still = np.repeat(random_motion(3, num_frames=2)[:1], 20, axis=0)
    _, std_still = F.compute_feature_stats([F.extract_features(still)])
    np.testing.assert_allclose(std_still[F.FOOT_CONTACT], F.STD_FLOOR)
    with pytest.raises(ValueError):
        F.compute_feature_stats([np.zeros((5, 10))])


def test_normalize_denormalize_numpy_and_torch():
    feats = F.extract_features(random_motion(6, num_frames=40))
    mean, std = F.compute_feature_stats([feats])
    z = F.normalize(feats, mean, std)
    assert z.dtype == np.float32
    np.testing.assert_allclose(F.denormalize(z, mean, std), feats, atol=1e-5)
    zt = F.normalize(torch.from_numpy(feats), mean, std)
    assert isinstance(zt, torch.Tensor) and zt.dtype == torch.float32
    np.testing.assert_allclose(zt.numpy(), z, atol=1e-6)
    back = F.denormalize(zt, torch.from_numpy(mean), torch.from_numpy(std))
    np.testing.assert_allclose(back.numpy(), feats, atol=1e-5)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        F.extract_features(np.zeros((10, 21, 3)))
    with pytest.raises(ValueError):
        F.extract_features(np.zeros((1, 22, 3)))
    bad = random_motion(0, num_frames=5)
    bad[2, 3, 1] = np.nan
    with pytest.raises(ValueError):
        F.extract_features(bad)
    with pytest.raises(ValueError):
        F.recover_joints(np.zeros((10, 262)))


def test_extraction_is_fast():
    motions = [random_motion(s, num_frames=100) for s in range(5)]
    F.extract_features(motions[0])  # warm up
    start = time.perf_counter()
    for _ in range(4):
        for m in motions:
            F.extract_features(m)
    per_motion = (time.perf_counter() - start) / 20
    # target is well under 10 ms; the bound is loose because the test machine is shared
    assert per_motion < 0.03, f"extract_features took {per_motion * 1000:.1f} ms per 100-frame motion"


def test_rot6d_does_not_depend_on_heading():
    """The same pose at different headings gives the same 6D rotations (fix (a) in the module doc)."""
    from l2emg.motion.skeleton import rest_pose

    pose = random_motion(12, num_frames=2)[0]
    pose = pose - pose[0]
    yaws = np.linspace(0.0, 5.0, 12)
    spinning = R.rotate_y(np.repeat(pose[None], len(yaws), axis=0), yaws[:, None])
    rot6d = F.extract_features(spinning)[:, F.ROT6D]
    np.testing.assert_allclose(rot6d, np.broadcast_to(rot6d[:1], rot6d.shape), atol=1e-5)
    assert not np.allclose(rot6d[0], F.extract_features(np.stack([rest_pose()] * 2))[0, F.ROT6D], atol=1e-2)
