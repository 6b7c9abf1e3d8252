"""Tests for bringing your own motion: BVH files of other rigs (`l2emg.motion.retarget`) and
`l2emg data import` (`l2emg.data.importer`).

The BVH files are built here from a known motion (local rotations, root trajectory, bone offsets):
joints renamed as LAFAN1 / Mixamo / a custom rig names them, extra joints (fingers, head end) and
End Sites added, offsets scaled to centimetres or inches, the whole motion turned Z-up, written at
20, 24, 30, 60 or 120 fps. Reading such a file back must give the motion's own joints at 20 fps
within 1 cm.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from l2emg.cli import main
from l2emg.data.importer import ImportOptions, import_dataset, parse_split_ratios
from l2emg.data.reader import load_dataset
from l2emg.data.validate import check_dataset
from l2emg.errors import DataError
from l2emg.motion import bvh, retarget
from l2emg.motion import rotations as rot
from l2emg.motion.features import canonicalize_joints, compute_feature_stats
from l2emg.motion.skeleton import (
    BONE_OFFSETS,
    JOINT_INDEX,
    JOINT_NAMES,
    NUM_JOINTS,
    PARENTS,
    REST_PELVIS_HEIGHT,
    forward_kinematics,
)

LAFAN1_NAMES = {
    "pelvis": "Hips", "left_hip": "LeftUpLeg", "right_hip": "RightUpLeg", "spine1": "Spine",
    "left_knee": "LeftLeg", "right_knee": "RightLeg", "spine2": "Spine1", "left_ankle": "LeftFoot",
    "right_ankle": "RightFoot", "spine3": "Spine2", "left_foot": "LeftToe", "right_foot": "RightToe",
    "neck": "Neck", "left_collar": "LeftShoulder", "right_collar": "RightShoulder", "head": "Head",
    "left_shoulder": "LeftArm", "right_shoulder": "RightArm", "left_elbow": "LeftForeArm",
    "right_elbow": "RightForeArm", "left_wrist": "LeftHand", "right_wrist": "RightHand",
}


def mixamo_names(prefix: str) -> dict[str, str]:
    names = {**LAFAN1_NAMES, "left_foot": "LeftToeBase", "right_foot": "RightToeBase"}
    return {ours: prefix + theirs for ours, theirs in names.items()}


# ---------------------------------------------------------------------------------------------
# motions and BVH files of other rigs
# ---------------------------------------------------------------------------------------------


def smooth_motion(fps: float, seconds: float = 3.0, seed: int = 0, still: tuple[int, ...] = ()):
    """(local (T, 22, 3, 3), root (T, 3), offsets (22, 3)) of a smooth motion sampled at `fps`.

    The same seed gives the same motion at every rate (frame k is at time k / fps); joints in
    `still` keep an identity local rotation (so a rig may leave them out).
    """
    rng = np.random.default_rng(seed)
    amplitude = rng.uniform(0.1, 0.3, size=(NUM_JOINTS, 3))
    freq = rng.uniform(0.2, 0.6, size=(NUM_JOINTS, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(NUM_JOINTS, 3))
    t = np.arange(int(round(seconds * fps)) + 1)[:, None, None] / fps
    rotvec = amplitude * np.sin(2 * np.pi * freq * t + phase)
    rotvec[:, 0, 1] += 0.6 * t[:, 0, 0]  # the body turns slowly
    for j in still:
        rotvec[:, j] = 0.0
    local = Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_matrix().reshape(len(t), NUM_JOINTS, 3, 3)
    tt = t[:, 0, 0]
    root = np.stack([0.4 * np.sin(0.7 * tt), REST_PELVIS_HEIGHT + 0.03 * np.sin(2 * tt), 0.8 * tt], axis=-1)
    return local, root, BONE_OFFSETS.copy()


def joints_of(motion) -> np.ndarray:
    local, root, offsets = motion
    return forward_kinematics(local, root, offsets)


_Z_UP = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # Y-up -> Z-up: (x, y, z) -> (x, -z, y)


def rig_bvh(path, motion, fps: float, names: dict[str, str], *, scale: float = 1.0, up: str = "y",
            order: str = "ZYX", positions_everywhere: bool = False, drop: tuple[str, ...] = ()):
    """Write `motion` as a BVH file of another rig; returns the path.

    names: our joint -> their name; scale: file units per metre; up: "z" turns the whole file Z-up
    (rest pose included); order: rotation channel order of every joint; positions_everywhere: 6
    channels on every joint with the offsets repeated in them (LAFAN1's files); drop: our joints
    the rig lacks (they must keep an identity local rotation; their offset moves into the children).
    Extra joints: a finger under each wrist and a head end, with rotations of their own.
    """
    local, root, offsets = motion
    turn = _Z_UP if up == "z" else np.eye(3)
    offsets = offsets @ turn.T * scale
    root = root @ turn.T * scale
    local = turn @ local @ turn.T
    parents = list(PARENTS)
    for name in drop:
        j = JOINT_INDEX[name]
        assert np.allclose(local[:, j], np.eye(3)), f"{name} must not rotate to be left out"
        for c in range(NUM_JOINTS):
            if parents[c] == j:
                parents[c] = parents[j]
                offsets[c] = offsets[c] + offsets[j]
    kept = [j for j in range(NUM_JOINTS) if JOINT_NAMES[j] not in drop]
    channels = " ".join(f"{axis}rotation" for axis in order)
    rng = np.random.default_rng(1)
    extra_angles = rng.uniform(-40, 40, size=(len(root), 3, 3))  # the extras' own rotations
    extras = {JOINT_INDEX["left_wrist"]: ("Finger", turn @ [0.08, 0, 0]),
              JOINT_INDEX["right_wrist"]: ("Finger", turn @ [-0.08, 0, 0]),
              JOINT_INDEX["head"]: ("HeadEnd", turn @ [0, 0.1, 0])}
    lines = ["HIERARCHY"]
    columns: list[np.ndarray] = []  # per frame values, in declaration order

    def block(kind: str, name: str, offset, depth: int, with_position: bool) -> str:
        pad = "\t" * depth
        lines.extend([f"{pad}{kind} {name}", f"{pad}{{", f"{pad}\tOFFSET {offset[0]:.6f} {offset[1]:.6f} {offset[2]:.6f}"])
        count = 6 if with_position else 3
        lines.append(f"{pad}\tCHANNELS {count} {'Xposition Yposition Zposition ' if with_position else ''}{channels}")
        return pad

    def end_site(pad: str) -> None:
        lines.extend([f"{pad}\tEnd Site", f"{pad}\t{{", f"{pad}\t\tOFFSET 0.000000 {2.0 * scale:.6f} 0.000000",
                      f"{pad}\t}}"])

    def emit(j: int, depth: int) -> None:
        with_position = j == 0 or positions_everywhere
        pad = block("ROOT" if j == 0 else "JOINT", names[JOINT_NAMES[j]], offsets[j], depth, with_position)
        if with_position:
            columns.append(root if j == 0 else np.broadcast_to(offsets[j], root.shape))
        columns.append(rot.matrix_to_euler(local[:, j], order))
        kids = [c for c in kept if parents[c] == j]
        for c in kids:
            emit(c, depth + 1)
        if j in extras:
            suffix, direction = extras[j]
            extra_pad = block("JOINT", names[JOINT_NAMES[j]] + suffix, np.asarray(direction) * scale, depth + 1, False)
            columns.append(extra_angles[:, len(columns) % 3])
            end_site(extra_pad)
            lines.append(f"{extra_pad}}}")
        elif not kids:
            end_site(pad)
        lines.append(f"{pad}}}")

    emit(0, 0)
    values = np.concatenate([np.asarray(c).reshape(len(root), -1) for c in columns], axis=1)
    lines += ["MOTION", f"Frames: {len(root)}", f"Frame Time: {1.0 / fps:.7f}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in values]
    path.write_text("\n".join(lines) + "\n")
    return path


def max_error(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.linalg.norm(a - b, axis=-1).max())


# ---------------------------------------------------------------------------------------------
# retargeting
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "names,rig,scale,unit,up,fps,order,positions_everywhere",
    [
        (LAFAN1_NAMES, "lafan1", 100.0, "cm", "y", 30, "ZYX", True),
        (LAFAN1_NAMES, "lafan1", 1.0, "m", "z", 20, "ZYX", True),
        (mixamo_names("mixamorig:"), "mixamo", 100.0, "cm", "y", 60, "ZXY", False),
        (mixamo_names("mixamorig1:"), "mixamo", 1.0, "m", "z", 30, "ZXY", False),
        (mixamo_names(""), "mixamo", 1 / 0.0254, "in", "z", 24, "XYZ", False),
        (mixamo_names("mixamorig12_"), "mixamo", 100.0, "cm", "z", 30, "ZXY", False),
        ({n: n for n in JOINT_NAMES}, "smpl", 1000.0, "mm", "y", 120, "YXZ", False),
    ],
)
def test_bvh_of_another_rig_gives_back_the_joints(tmp_path, names, rig, scale, unit, up, fps, order,
                                                  positions_everywhere):
    path = rig_bvh(tmp_path / "take.bvh", smooth_motion(fps), fps, names, scale=scale, up=up, order=order,
                   positions_everywhere=positions_everywhere)
    result = retarget.retarget_bvh(path)  # everything detected
    assert (result.rig, result.unit, result.up, result.source_fps) == (rig, unit, up, fps)
    assert result.fps == 20 and result.scale == pytest.approx(1 / scale)
    expected = joints_of(smooth_motion(20))
    assert max_error(result.joints, expected) < 0.01
    if fps in (20, 60, 120):  # integer ratios keep original frames: only rounding in the file remains
        assert max_error(result.joints, expected) < 1e-4


def test_generated_motion_as_mixamo_zup_centimetres_60fps(tmp_path):
    """A motion of the procedural generator, upsampled to 60 fps, as a Mixamo file in cm, Z-up."""
    from l2emg.config import load_config
    from l2emg.data.synth import plan_motions, synthesize

    data = load_config("tiny").data
    joints20 = synthesize(plan_motions(data)[0], data).joints[:60]
    times60 = np.arange(3 * (len(joints20) - 1) + 1) / 60.0
    times20 = np.arange(len(joints20)) / 20.0
    joints60 = np.stack([np.stack([np.interp(times60, times20, joints20[:, j, a]) for a in range(3)], -1)
                         for j in range(NUM_JOINTS)], axis=1)
    offsets, root, local = bvh.joints_to_local_rotations(joints60)
    path = rig_bvh(tmp_path / "mixamo.bvh", (local, root, offsets), 60, mixamo_names("mixamorig:"),
                   scale=100.0, up="z", order="ZXY")
    result = retarget.retarget_bvh(path, rig="mixamo")
    assert (result.unit, result.up, result.source_frames) == ("cm", "z", len(joints60))
    assert max_error(result.joints, joints20) < 0.01
    # Given units and up axis win over detection.
    given = retarget.retarget_bvh(path, rig="mixamo", scale=0.01, up="z")
    assert given.unit == "scale" and max_error(given.joints, result.joints) < 1e-9


def test_fewer_spine_joints_are_interpolated(tmp_path):
    """A Mixamo rig without Spine1 (our spine2): spine2 lies between spine1 and spine3."""
    motion = smooth_motion(20, still=(JOINT_INDEX["spine2"],))
    names = mixamo_names("mixamorig:")
    path = rig_bvh(tmp_path / "short_spine.bvh", motion, 20, names, scale=100.0, drop=("spine2",))
    assert "Spine1" not in path.read_text().replace("Spine1 ", "")  # the joint is really gone
    result = retarget.retarget_bvh(path)
    expected = joints_of(motion)
    spine2 = JOINT_INDEX["spine2"]
    others = [j for j in range(NUM_JOINTS) if j != spine2]
    assert max_error(result.joints[:, others], expected[:, others]) < 1e-4
    assert max_error(result.joints[:, [spine2]], expected[:, [spine2]]) < 0.02  # bent chest: ~1.4 cm


def test_user_yaml_joint_map(tmp_path):
    motion = smooth_motion(30, still=(JOINT_INDEX["spine2"],))
    names = {ours: f"J_{ours.upper()}" for ours in JOINT_NAMES}
    path = rig_bvh(tmp_path / "custom.bvh", motion, 30, names, scale=100.0, up="z", drop=("spine2",))
    with pytest.raises(DataError, match=r"custom\.bvh: cannot tell the rig from its joint names: the closest "
                                        r"preset, smpl, lacks pelvis, left_hip, "):
        retarget.retarget_bvh(path)
    mapping = tmp_path / "rig.yaml"
    mapping.write_text("".join(f"{ours}: {theirs}\n" for ours, theirs in names.items() if ours != "spine2"))
    result = retarget.retarget_bvh(path, rig=mapping)
    assert result.rig == str(mapping) and (result.unit, result.up) == ("cm", "z")
    expected = joints_of(smooth_motion(20, still=(JOINT_INDEX["spine2"],)))
    assert max_error(result.joints, expected) < 0.02
    # A map naming a joint the file does not have: the BVH file, the map and the joint are named.
    mapping.write_text(mapping.read_text().replace("J_LEFT_WRIST", "J_LEFT_HAND"))
    with pytest.raises(DataError, match=r"custom\.bvh: joint map .*rig\.yaml: joint\(s\) not in the file: "
                                        r"J_LEFT_HAND \(for our left_wrist\)"):
        retarget.retarget_bvh(path, rig=mapping)
    # A map without an entry for a joint we need, or with a joint we do not have.
    mapping.write_text("pelvis: J_PELVIS\nneck: J_NECK\n")
    with pytest.raises(DataError, match=r"rig\.yaml: no entry for our joint\(s\) left_hip, right_hip"):
        retarget.load_joint_map(mapping)
    mapping.write_text("hips: J_PELVIS\n")
    with pytest.raises(DataError, match=r"rig\.yaml: 'hips' is not one of our joints"):
        retarget.load_joint_map(mapping)


def test_missing_joint_is_refused_with_its_name(tmp_path):
    names = {**LAFAN1_NAMES, "left_foot": "LeftToe_Missing"}
    path = rig_bvh(tmp_path / "no_toe.bvh", smooth_motion(30), 30, names, scale=100.0)
    with pytest.raises(DataError, match=r"no_toe\.bvh: rig lafan1: joint\(s\) not in the file: LeftToe "
                                        r"\(for our left_foot\)"):
        retarget.retarget_bvh(path, rig="lafan1")
    with pytest.raises(DataError, match=r"no_toe\.bvh: cannot tell the rig .*lafan1, lacks LeftToe \(left_foot\)"):
        retarget.retarget_bvh(path)
    with pytest.raises(DataError, match=r"rig: 'nope' is neither a preset"):
        retarget.retarget_bvh(path, rig="nope")


def test_units_and_up_axis_refused_when_undecidable(tmp_path):
    path = rig_bvh(tmp_path / "tiny.bvh", smooth_motion(20), 20, LAFAN1_NAMES, scale=1e-4)
    with pytest.raises(DataError, match=r"tiny\.bvh: cannot tell the units"):
        retarget.retarget_bvh(path)
    upside_down = joints_of(smooth_motion(20)) * [1, -1, 1]
    with pytest.raises(DataError, match=r"cannot tell the up axis: the head is mostly along -Y"):
        retarget.detect_up(upside_down, "x.bvh")


def test_resample_and_cut_clips():
    joints = joints_of(smooth_motion(60))  # 181 frames
    down = retarget.resample(joints, 60, 20)
    np.testing.assert_array_equal(down, joints[::3])
    assert len(retarget.resample(joints, 30, 20)) == 121 and len(retarget.resample(joints, 29.97, 20)) == 121
    up = retarget.resample(joints[::3], 20, 60)
    assert max_error(up, joints) < 0.01
    assert retarget.snap_fps(1 / 0.0333333) == 30.0 and retarget.snap_fps(29.97) == 29.97
    # Clips: none below 40 frames, one up to 196, equal consecutive clips above.
    take = np.arange(500)
    assert retarget.cut_clips(take[:39]) == []
    assert [len(c) for c in retarget.cut_clips(take[:40])] == [40]
    assert [len(c) for c in retarget.cut_clips(take[:196])] == [196]
    assert [len(c) for c in retarget.cut_clips(take[:197])] == [98, 99]
    clips = retarget.cut_clips(take)
    assert [len(c) for c in clips] == [167, 166, 167]
    np.testing.assert_array_equal(np.concatenate(clips), take)


def test_read_any_bvh_keeps_every_joint(tmp_path):
    path = rig_bvh(tmp_path / "lafan.bvh", smooth_motion(30), 30, LAFAN1_NAMES, scale=100.0,
                   positions_everywhere=True)
    data = bvh.read_any_bvh(path)
    assert data.names[0] == "Hips" and len(data.names) == NUM_JOINTS + 3  # two fingers and a head end
    assert "LeftHandFinger" in data.names and data.parents[0] == -1 and data.fps == pytest.approx(30, rel=1e-6)
    assert data.positions.shape == (91, NUM_JOINTS + 3, 3)
    # The finger is 8 cm from the hand whatever it rotates.
    finger, hand = data.names.index("LeftHandFinger"), data.names.index("LeftHand")
    np.testing.assert_allclose(np.linalg.norm(data.positions[:, finger] - data.positions[:, hand], axis=-1), 8.0,
                               atol=1e-4)
    with pytest.raises(DataError, match=r"lafan\.bvh: line \d+: joint name 'Spine' is used twice"):
        path.write_text(path.read_text().replace("JOINT Spine1", "JOINT Spine"))
        bvh.read_any_bvh(path)


# ---------------------------------------------------------------------------------------------
# l2emg data import
# ---------------------------------------------------------------------------------------------


def write_take(folder, name: str, joints=None, captions=("a person walks forward slowly",), bvh_motion=None, **bvh_kw):
    """NAME.npy (joints) or NAME.bvh (bvh_motion + rig_bvh keywords) with NAME.txt beside it."""
    if bvh_motion is not None:
        rig_bvh(folder / f"{name}.bvh", bvh_motion, **bvh_kw)
    else:
        np.save(folder / f"{name}.npy", joints.astype(np.float32))
    if captions is not None:
        (folder / f"{name}.txt").write_text("\n".join(captions) + "\n")


@pytest.fixture
def source(tmp_path):
    """A folder of takes: two BVH files of other rigs, four joint files (one long, one too short)."""
    src = tmp_path / "src"
    src.mkdir()
    write_take(src, "walk_lafan", bvh_motion=smooth_motion(30, seed=1), fps=30, names=LAFAN1_NAMES, scale=100.0,
               positions_everywhere=True, captions=("a person walks and turns", "", "someone strolls # around"))
    write_take(src, "turn_mixamo", bvh_motion=smooth_motion(60, seed=2), fps=60, names=mixamo_names("mixamorig:"),
               up="z", order="ZXY", captions=("a man turns around happily",))
    for k, frames in enumerate((60, 80)):
        write_take(src, f"npy_{k}", joints_of(smooth_motion(20, seconds=(frames - 1) / 20, seed=10 + k)))
    write_take(src, "long", joints_of(smooth_motion(20, seconds=(450 - 1) / 20, seed=5)),
               captions=("a person walks a long way", "someone keeps walking"))
    write_take(src, "short", joints_of(smooth_motion(20, seconds=1.0, seed=6)))
    (src / "orphan.txt").write_text("a caption without a motion\n")
    (src / "labels.csv").write_text(
        "id,emotion,scenario\nwalk_lafan,Happy,daily life\nturn_mixamo,sad,Dance\nnpy_0,angry,Sports\n"
        "npy_1,neutral,Sports\nlong,fearful,Daily Life\nshort,happy,Game\n")
    return src


def test_data_import_writes_a_valid_dataset(tmp_path, source, capsys):
    out = tmp_path / "mine"
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "import", str(source), "--out", str(out), "--labels", str(source / "labels.csv"),
              "--no-progress"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "files read" in printed and "short.npy: too short: 21 frames at 20 fps, need 40" in printed
    assert "orphan.txt: caption file with no .bvh/.npy take beside it" in printed
    assert check_dataset(out) == []
    ds = load_dataset(out)
    ids = ["long_000", "long_001", "long_002", "npy_0", "npy_1", "turn_mixamo", "walk_lafan"]
    assert [r.motion_id for r in ds.records] == ids
    lengths = {r.motion_id: r.num_frames for r in ds.records}
    assert lengths == {"long_000": 150, "long_001": 150, "long_002": 150, "npy_0": 60, "npy_1": 80,
                       "turn_mixamo": 61, "walk_lafan": 61}
    assert len({ds.by_id(i).split for i in ids[:3]}) == 1  # a take's clips share one split
    assert sum(len(ds.split(s)) for s in ("train", "val", "test")) == 7 and ds.split("train")
    walk = ds.by_id("walk_lafan")
    assert (walk.emotion, walk.scenario) == ("happy", "Daily Life")
    assert (ds.by_id("long_001").emotion, ds.by_id("turn_mixamo").scenario) == ("fearful", "Dance")
    assert [c.text for c in walk.captions] == ["a person walks and turns", "someone strolls around"]
    assert walk.captions[0].tokens[:3] == ("a/DET", "person/NOUN", "walk/VERB")
    # Joints: canonicalised; the npy take is itself, the BVH takes their motion at 20 fps.
    np.testing.assert_allclose(ds.joints("npy_0"), canonicalize_joints(np.load(source / "npy_0.npy")), atol=1e-5)
    lafan = canonicalize_joints(joints_of(smooth_motion(20, seed=1)))
    assert max_error(ds.joints("walk_lafan").astype(np.float64), lafan) < 0.01
    assert ds.features("long_002").shape == (149, 263)
    mean, std = compute_feature_stats([ds.features(r.motion_id) for r in ds.split("train")])  # train split only
    np.testing.assert_allclose(ds.mean, mean, rtol=1e-5)
    np.testing.assert_allclose(ds.std, std, rtol=1e-5)
    meta = ds.metadata["import"]
    assert meta["takes"]["walk_lafan"]["rig"] == "lafan1" and meta["takes"]["turn_mixamo"]["up"] == "z"
    assert meta["takes"]["long"]["clips"] == ids[:3]
    # OUT is not replaced without --overwrite; with it, the same seed gives the same splits.
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "import", str(source), "--out", str(out), "--no-progress"])
    assert exit_info.value.code == 2 and "pass --overwrite" in capsys.readouterr().err
    splits = {r.motion_id: r.split for r in ds.records}
    import_dataset(source, out, ImportOptions(labels=source / "labels.csv", overwrite=True), progress=False)
    assert {r.motion_id: r.split for r in load_dataset(out).records} == splits


def test_data_import_without_labels_uses_scenario_and_json_labels(tmp_path, source):
    for p in source.glob("*.bvh"):
        p.unlink()
    out = import_dataset(source, tmp_path / "a", ImportOptions(scenario="instrument_play", split_ratios=(1, 0, 0)),
                         progress=False)
    assert out.clips == 5 and out.splits == {"train": 5, "val": 0, "test": 0}
    ds = load_dataset(tmp_path / "a")
    assert {(r.emotion, r.scenario) for r in ds.records} == {(None, "Instrument Play")}
    assert check_dataset(tmp_path / "a") == []
    labels = source / "labels.json"
    labels.write_text('{"npy_0": {"emotion": "joy"}, "npy_1": {"emotion": "sad", "scenario": "Game"},'
                      ' "long": {"emotion": "sad", "intensity": 0.5}, "short": {}}')
    label_map = source / "map.yaml"
    label_map.write_text("emotion: {joy: happy}\n")
    import_dataset(source, tmp_path / "b", ImportOptions(labels=labels, label_map=label_map, scenario="Shows"),
                   progress=False)
    ds = load_dataset(tmp_path / "b")
    assert (ds.by_id("npy_0").emotion, ds.by_id("npy_0").scenario) == ("happy", "Shows")
    assert ds.by_id("npy_1").scenario == "Game" and ds.by_id("long_002").intensity == 0.5


def test_data_import_feature_convention(tmp_path, source):
    """--convention humanml3d computes HumanML3D's features and says so in dataset.json."""
    from l2emg.motion.features import extract_features

    for p in source.glob("*.bvh"):
        p.unlink()
    import_dataset(source, tmp_path / "h", ImportOptions(convention="humanml3d"), progress=False)
    ds = load_dataset(tmp_path / "h")
    assert ds.feature_convention == "humanml3d"
    expected = extract_features(canonicalize_joints(np.load(source / "npy_1.npy")), convention="humanml3d")
    np.testing.assert_allclose(ds.features("npy_1"), expected, atol=1e-5)
    assert load_dataset(import_dataset(source, tmp_path / "o", ImportOptions(), progress=False).out
                        ).feature_convention == "l2emg"
    with pytest.raises(DataError, match="--convention"):
        import_dataset(source, tmp_path / "x", ImportOptions(convention="amass"), progress=False)


def test_data_import_refuses_bad_input_naming_file_and_field(tmp_path, source):
    def refused(pattern: str, **options) -> None:
        with pytest.raises(DataError, match=pattern):
            import_dataset(source, tmp_path / "out", ImportOptions(**options), progress=False)
        assert not (tmp_path / "out").exists()  # nothing half-written

    labels = source / "labels.csv"
    labels.write_text(labels.read_text() + "ghost,happy,Game\n")
    refused(r"labels\.csv: line 8: id 'ghost' matches no \.bvh/\.npy take", labels=labels)
    labels.write_text(labels.read_text().replace("ghost,happy,Game\n", "").replace("sad,Dance", "gloomy,Dance"))
    refused(r"labels\.csv: line 3: emotion: 'gloomy' is not one of ours", labels=labels)
    labels.write_text(labels.read_text().replace("gloomy,Dance", "sad,Dance").replace("npy_1,neutral,Sports\n", ""))
    refused(r"labels\.csv: id: no labels for the take\(s\) npy_1", labels=labels)
    refused(r"--scenario: 'Cooking' is not one of ours", scenario="Cooking")
    refused(r"--rig: 'nope\.yaml' is neither", rig="nope.yaml")
    (source / "npy_1.txt").unlink()
    refused(r"npy_1\.npy: captions: no npy_1\.txt beside it")
    (source / "npy_1.txt").write_text("\n\n")
    refused(r"npy_1\.txt: captions: the file has no caption")
    (source / "npy_1.txt").write_text("someone sits\n")
    bad = source / "walk_lafan.bvh"
    bad.write_text(bad.read_text().replace("OFFSET", "OFSET", 2))
    refused(r"walk_lafan\.bvh: line \d+: unexpected 'OFSET' in HIERARCHY")
    bad.unlink()
    np.save(source / "npy_0.npy", np.zeros((50, 24, 3)))
    refused(r"npy_0\.npy: joints: expected a numeric array of shape \(T, 22, 3\)")


def test_split_ratios_parse():
    assert parse_split_ratios("80/5/15") == pytest.approx((0.8, 0.05, 0.15))
    assert parse_split_ratios("0.7/0.1/0.2") == pytest.approx((0.7, 0.1, 0.2))
    with pytest.raises(DataError, match="--splits"):
        parse_split_ratios("0/50/50")
