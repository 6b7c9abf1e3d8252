"""Tests for the dataset format: caption lines and POS tags, writing/loading, label maps, lazy arrays,
missing Mean/Std, length helpers and the global split assignment.

`make_toy_dataset` (also used by the stream, validate and CLI tests) writes a small valid dataset
from forward kinematics, independent of the procedural generator."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from l2emg.data.labelmap import LabelMap
from l2emg.data.postags import tag_caption
from l2emg.data.reader import load_dataset, read_split_file
from l2emg.data.records import Caption, MotionRecord, caption_segment, length_ok
from l2emg.data.splits import assign_splits
from l2emg.data.writer import write_dataset
from l2emg.errors import DataError
from l2emg.labels import EMOTIONS, SCENARIOS
from l2emg.motion.features import compute_feature_stats, extract_features
from l2emg.motion.skeleton import NUM_JOINTS, REST_PELVIS_HEIGHT, forward_kinematics


def toy_motion(seed: int, num_frames: int, energy: float = 1.0) -> np.ndarray:
    """(T, 22, 3) walking-ish motion: limbs swing sinusoidally, arms down, root moves forward."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames) / 20.0
    freq = rng.uniform(0.8, 1.6)
    swing = 0.5 * energy * np.sin(2 * np.pi * freq * t)
    rotvec = np.zeros((num_frames, NUM_JOINTS, 3))
    rotvec[:, 1, 0], rotvec[:, 2, 0] = swing, -swing                      # hips
    rotvec[:, 4, 0] = rotvec[:, 5, 0] = 0.3 * energy * (1 + np.sin(2 * np.pi * freq * t))  # knees
    rotvec[:, 16, 2], rotvec[:, 17, 2] = -1.2, 1.2                        # arms down
    rotvec[:, 18, 1], rotvec[:, 19, 1] = 0.4 * swing, -0.4 * swing        # elbows
    local = Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_matrix().reshape(num_frames, NUM_JOINTS, 3, 3)
    root = np.zeros((num_frames, 3))
    root[:, 2] = np.cumsum(np.full(num_frames, 0.05 * energy))
    root[:, 1] = REST_PELVIS_HEIGHT
    return forward_kinematics(local, root)


def make_toy_dataset(root: Path, per_cell: int = 1, scenarios=SCENARIOS[:4], frames=(40, 56), seed: int = 0,
                     holdout=(("Sports", "sad"),), with_meta: bool = True) -> list[MotionRecord]:
    """Write a valid dataset of len(scenarios) × 7 × per_cell short motions into `root`."""
    rng = np.random.default_rng(seed)
    items, motions = [], {}
    for s_index, scenario in enumerate(scenarios):
        for e_index, emotion in enumerate(EMOTIONS):
            for k in range(per_cell):
                motion_id = f"{s_index:02d}{e_index}{k:02d}"
                num_frames = int(rng.integers(frames[0], frames[1] + 1))
                joints = toy_motion(hash((s_index, e_index, k)) % 1000, num_frames, 0.5 + 0.2 * e_index)
                motions[motion_id] = joints
                items.append((motion_id, scenario, emotion))
    split_of = assign_splits(items, (0.8, 0.05, 0.15), holdout, seed)
    records, features = [], {}
    for motion_id, scenario, emotion in items:
        joints = fm_canonical(motions[motion_id])
        motions[motion_id] = joints
        features[motion_id] = extract_features(joints)
        captions = [Caption.from_text(f"a person walks {emotion} in the {scenario.lower()} scene"),
                    Caption.from_text(f"someone moves forward, looking {emotion}")]
        records.append(MotionRecord(motion_id, split_of[motion_id], captions, joints.shape[0], emotion, scenario,
                                    action=f"walk_{scenario_slug_short(scenario)}", intensity=0.5))
    train = [features[r.motion_id] for r in records if r.split == "train"]
    mean, std = compute_feature_stats(train)
    write_dataset(root, records, features, mean, std, {"name": "toy", "generator": {"config": {"toy": True}}},
                  joints=motions, atomic=False)
    return records


def fm_canonical(joints: np.ndarray) -> np.ndarray:
    from l2emg.motion.features import canonicalize_joints

    return canonicalize_joints(joints).astype(np.float32)


def scenario_slug_short(scenario: str) -> str:
    return scenario.split()[0].lower()


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    make_toy_dataset(root, per_cell=2)
    return root


# --------------------------------------------------------------------------------------------- captions


def test_tag_caption_matches_humanml3d_style():
    assert tag_caption("A man kicks something or someone with his left leg.") == (
        "a/DET", "man/NOUN", "kick/VERB", "something/PRON", "or/CCONJ", "someone/PRON", "with/ADP", "his/DET",
        "left/ADJ", "leg/NOUN")
    tokens = tag_caption("A person is running forward slowly, dragging their feet")
    assert tokens == ("a/DET", "person/NOUN", "is/AUX", "run/VERB", "forward/ADV", "slowly/ADV", "drag/VERB",
                      "their/DET", "foot/NOUN")
    assert "dance/VERB" in tag_caption("she dances happily") and "happily/ADV" in tag_caption("she dances happily")
    assert tag_caption("a happy jump")[1:] == ("happy/ADJ", "jump/NOUN")
    assert all("/" in t for t in tag_caption("Hyphen-ated words, numbers 3 and punctuation!"))


def test_caption_line_round_trip_and_humanml3d_nan():
    caption = Caption.from_text("a person waves # happily")
    parsed = Caption.from_line(caption.to_line())
    assert parsed.text == "a person waves happily" and parsed.tokens == caption.tokens
    real = "a man kicks with his left leg.#a/DET man/NOUN kick/VERB with/ADP his/DET left/ADJ leg/NOUN#nan#nan"
    parsed = Caption.from_line(real)
    assert parsed.start == 0.0 and parsed.end == 0.0 and parsed.tokens[2] == "kick/VERB"
    seg = Caption.from_line("walks then sits#walk/VERB#1.5#3.0")
    assert caption_segment(np.zeros((100, 263)), seg).shape == (30, 263)
    for bad in ("no hashes here", "text#tok/NOUN#x#1.0", "#a/DET#0.0#0.0", "text#notatoken#0.0#0.0"):
        with pytest.raises(ValueError):
            Caption.from_line(bad)


# --------------------------------------------------------------------------------------------- load/write


def test_write_then_load_round_trip(toy_root: Path):
    ds = load_dataset(toy_root)
    assert len(ds) == 4 * 7 * 2
    assert [r.motion_id for r in ds.records] == sorted(r.motion_id for r in ds.records)
    assert sum(len(ds.split(s)) for s in ("train", "val", "test")) == len(ds)
    assert all(r.split == "test" for r in ds.records if (r.scenario, r.emotion) == ("Sports", "sad"))
    record = ds.records[0]
    feats, joints = ds.features(record.motion_id), ds.joints(record.motion_id)
    assert feats.shape == (record.num_frames - 1, 263) and feats.dtype == np.float32
    assert joints.shape == (record.num_frames, 22, 3)
    assert ds.features(record.motion_id) is feats  # cached
    with pytest.raises(ValueError):
        feats[0, 0] = 1.0  # cache is read-only
    assert ds.mean.shape == (263,) and ds.std.shape == (263,) and np.all(ds.std > 0)
    assert record.emotion in EMOTIONS and record.scenario in SCENARIOS and record.intensity == 0.5
    assert len(record.captions) == 2 and record.captions[0].tokens
    meta = json.loads((toy_root / "dataset.json").read_text())
    assert meta["num_motions"] == len(ds) and meta["num_frames"][record.motion_id] == record.num_frames
    with pytest.raises(ValueError):
        ds.split("training")


def test_lazy_cache_is_bounded(toy_root: Path):
    ds = load_dataset(toy_root, cache_bytes=100_000)
    for r in ds.records:
        ds.features(r.motion_id)
    assert ds._cache_bytes <= 100_000 + 60 * 263 * 4
    assert len(ds._cache) < len(ds)


def test_humanml3d_style_folder_without_labels_or_stats(tmp_path: Path, toy_root: Path):
    """A foreign folder: no labels.json, no dataset.json, no Mean/Std -> None labels, stats computed."""
    import shutil

    root = tmp_path / "hml"
    shutil.copytree(toy_root, root)
    for name in ("labels.json", "dataset.json", "Mean.npy", "Std.npy"):
        (root / name).unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_dataset(root)
    assert any("Mean.npy/Std.npy missing" in str(w.message) for w in caught)
    assert "computed from the train split" in ds.stats_note
    assert all(r.emotion is None and r.scenario is None for r in ds.records)
    reference = load_dataset(toy_root)
    np.testing.assert_allclose(ds.mean, reference.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ds.std, reference.std, rtol=1e-5, atol=1e-6)


def test_label_map_translates_foreign_labels(tmp_path: Path, toy_root: Path):
    import shutil

    root = tmp_path / "foreign"
    shutil.copytree(toy_root, root)
    labels = json.loads((root / "labels.json").read_text())
    to_foreign = {"happy": "Joy", "sad": "sadness", "Sports": "sport"}
    for entry in labels.values():
        entry["emotion"] = to_foreign.get(entry["emotion"], entry["emotion"])
        entry["scenario"] = to_foreign.get(entry["scenario"], entry["scenario"])
    (root / "labels.json").write_text(json.dumps(labels))
    with pytest.raises(DataError, match="unknown emotion 'Joy'"):
        load_dataset(root)
    label_map = tmp_path / "map.yaml"
    label_map.write_text("emotion:\n  joy: happy\n  Sadness: sad\nscenario:\n  sport: Sports\n")
    ds = load_dataset(root, label_map=label_map)
    reference = load_dataset(toy_root)
    assert [(r.emotion, r.scenario) for r in ds.records] == [(r.emotion, r.scenario) for r in reference.records]
    flat = load_dataset(root, label_map={"joy": "happy", "sadness": "sad", "sport": "Sports"})
    assert [r.emotion for r in flat.records] == [r.emotion for r in reference.records]
    with pytest.raises(DataError, match="not a known emotion"):
        LabelMap.from_any({"emotion": {"joy": "elated"}})


def test_loader_refuses_broken_folders(tmp_path: Path, toy_root: Path):
    import shutil

    with pytest.raises(DataError, match="not found"):
        load_dataset(tmp_path / "nope")
    root = tmp_path / "broken"
    shutil.copytree(toy_root, root)
    victim = read_split_file(root / "train.txt")[0]
    (root / "texts" / f"{victim}.txt").unlink()
    with pytest.raises(DataError, match=f"{victim}.txt: caption file missing"):
        load_dataset(root)
    shutil.rmtree(root)
    shutil.copytree(toy_root, root)
    (root / "test.txt").write_text((root / "test.txt").read_text() + victim + "\n")
    with pytest.raises(DataError, match="exactly one split"):
        load_dataset(root)


def test_length_filter_helpers(toy_root: Path):
    ds = load_dataset(toy_root)
    assert len(ds.filter_by_length()) == len(ds)  # toy motions are 40..56 frames
    short = ds.filter_by_length(min_frames=48, max_frames=196)
    assert 0 < len(short) < len(ds) and all(r.num_frames >= 48 for r in short)
    assert length_ok(40) and length_ok(196) and not length_ok(39) and not length_ok(197)


# --------------------------------------------------------------------------------------------- splits


def test_assign_splits_is_stratified_deterministic_and_holds_out_pairs():
    items = [(f"m{s}{e}{k:03d}", scenario, emotion) for s, scenario in enumerate(SCENARIOS)
             for e, emotion in enumerate(EMOTIONS) for k in range(40)]
    holdout = [("Sports", "sad"), ("Dance", "angry")]
    a = assign_splits(items, (0.8, 0.05, 0.15), holdout, seed=3)
    b = assign_splits(list(reversed(items)), (0.8, 0.05, 0.15), holdout, seed=3)
    assert a == b  # independent of input order
    assert a != assign_splits(items, (0.8, 0.05, 0.15), holdout, seed=4)
    for motion_id, scenario, emotion in items:
        if (scenario, emotion) in holdout:
            assert a[motion_id] == "test"
    regular = [(i, s, e) for i, s, e in items if (s, e) not in holdout]
    counts = {sp: sum(a[i] == sp for i, _, _ in regular) for sp in ("train", "val", "test")}
    assert abs(counts["train"] / len(regular) - 0.8) < 0.01
    assert abs(counts["val"] / len(regular) - 0.05) < 0.01
    assert abs(counts["test"] / len(regular) - 0.15) < 0.01
    for scenario in SCENARIOS:  # every stratum follows the ratios within rounding
        for emotion in EMOTIONS:
            if (scenario, emotion) in holdout:
                continue
            group = [a[i] for i, s, e in items if (s, e) == (scenario, emotion)]
            assert abs(group.count("test") - 6) <= 1 and abs(group.count("val") - 2) <= 1


def test_assign_splits_small_groups_still_reach_totals():
    items = [(f"x{i:03d}", SCENARIOS[i % 8], EMOTIONS[(i // 8) % 7]) for i in range(112)]  # 2 per cell
    split = assign_splits(items, (0.8, 0.05, 0.15), [], seed=0)
    counts = {sp: sum(v == sp for v in split.values()) for sp in ("train", "val", "test")}
    assert counts == {"train": 89, "val": 6, "test": 17}


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path):
    joints = fm_canonical(toy_motion(1, 45))
    record = MotionRecord("m0", "train", [Caption.from_text("a person waves")], 45, "happy", "Dance")
    features = extract_features(joints)
    write_dataset(tmp_path, [record], {"m0": features}, *compute_feature_stats([features]), {"name": "one"},
                  joints={"m0": joints})
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    ds = load_dataset(tmp_path)
    np.testing.assert_allclose(ds.features("m0"), features, atol=1e-6)
    assert ds.by_id("m0").captions[0].tokens == ("a/DET", "person/NOUN", "wave/VERB")
    with pytest.raises(DataError, match="do not match features"):
        write_dataset(tmp_path, [record], {"m0": features}, *compute_feature_stats([features]),
                      joints={"m0": joints[:-2]})
