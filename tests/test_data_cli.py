"""Tests for the dataset build pipeline and the `l2emg data …` commands.

The build tests mostly swap the procedural generator for a small forward-kinematics one (same
interface), so they check the pipeline itself: features, splits, statistics, atomic/resumable
writes. One test runs the real generator in-process and through the worker pool.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import l2emg.data.synth as synth
from l2emg.cli import app
from l2emg.config import load_config
from l2emg.data.build import build_dataset
from l2emg.data.reader import load_dataset, read_split_file
from l2emg.data.validate import check_dataset
from l2emg.errors import DataError
from l2emg.labels import EMOTIONS, SCENARIOS
from l2emg.motion.features import compute_feature_stats
from test_formats import toy_motion

runner = CliRunner()


@dataclass
class FakeMotion:
    motion_id: str
    joints: np.ndarray
    scenario: str
    emotion: str
    action: str
    intensity: float
    captions: list[str]


def fake_generate(config, fail_after: int | None = None):
    """Stands in for l2emg.data.synth.generate_motions: same fields, forward-kinematics motions."""
    rng = np.random.default_rng(config.seed)
    for i in range(config.num_motions):
        if fail_after is not None and i == fail_after:
            raise KeyboardInterrupt("simulated interruption")
        scenario, emotion = SCENARIOS[i % 8], EMOTIONS[(i // 8) % 7]
        frames = int(rng.integers(config.min_frames, min(config.max_frames, config.min_frames + 16) + 1))
        yield FakeMotion(f"{i:06d}", toy_motion(i, frames, 0.6 + 0.1 * (i % 7)) + [1.0, 0.0, -2.0],
                         scenario, emotion, f"act{i % 5}", 0.3 + 0.1 * (i % 5),
                         [f"a person moves {emotion} in a {scenario.lower()} way", f"someone looks {emotion}"])


@pytest.fixture
def fake_generator(monkeypatch):
    monkeypatch.setattr(synth, "generate_motions", fake_generate, raising=False)


def small_config(num_motions: int = 56, **data):
    overrides = [f"data.num_motions={num_motions}", "data.max_frames=60"] + [f"data.{k}={v}" for k, v in data.items()]
    return load_config("tiny", overrides)


# --------------------------------------------------------------------------------------------- build


def test_build_writes_a_valid_dataset(tmp_path: Path, fake_generator):
    config = small_config(112)
    out = tmp_path / "data"
    summary = build_dataset(config, out, progress=False, workers=1)
    assert summary["status"] == "built" and summary["num_motions"] == 112
    assert summary["timing_s"]["generate"] >= 0 and summary["timing_s"]["total"] > 0
    assert check_dataset(out) == []
    ds = load_dataset(out)
    assert len(ds) == 112 and sum(summary["splits"].values()) == 112
    for record in ds.records:
        if (record.scenario, record.emotion) in {tuple(p) for p in config.data.holdout_pairs}:
            assert record.split == "test"
    # Canonical joints: floor at 0, frame-0 root at the XZ origin; features row count T-1.
    joints = ds.joints(ds.records[0].motion_id)
    assert abs(float(joints[..., 1].min())) < 1e-5 and np.allclose(joints[0, 0, [0, 2]], 0, atol=1e-5)
    # Mean/Std from the train split only.
    mean, std = compute_feature_stats([ds.features(r.motion_id) for r in ds.split("train")])
    np.testing.assert_allclose(ds.mean, mean, rtol=1e-6)
    np.testing.assert_allclose(ds.std, std, rtol=1e-6)
    assert ds.records[0].captions[0].tokens[1] == "person/NOUN"
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["generator"]["seed"] == 0 and meta["holdout_pairs"] == [list(p) for p in config.data.holdout_pairs]
    assert meta["generator"]["config"]["num_motions"] == 112


def test_rebuild_is_a_no_op_and_other_config_is_refused(tmp_path: Path, fake_generator):
    out = tmp_path / "data"
    build_dataset(small_config(), out, progress=False, workers=1)
    stamp = (out / "dataset.json").stat().st_mtime_ns
    again = build_dataset(small_config(), out, progress=False, workers=1)
    assert again["status"] == "already built" and (out / "dataset.json").stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match="differs in: seed"):
        build_dataset(small_config(seed=1), out, progress=False, workers=1)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="holds no finished dataset"):
        build_dataset(small_config(), foreign, progress=False, workers=1)


def test_interrupted_build_leaves_nothing_loadable_and_restarts(tmp_path: Path, monkeypatch):
    out = tmp_path / "data"
    monkeypatch.setattr(synth, "generate_motions", lambda c: fake_generate(c, fail_after=20), raising=False)
    with pytest.raises(KeyboardInterrupt):
        build_dataset(small_config(), out, progress=False, workers=1)
    assert not out.exists() and not (tmp_path / ".data.partial").exists()
    with pytest.raises(DataError):
        load_dataset(out)
    # What a killed process (SIGKILL, power loss) leaves: a half-written staging folder.
    (tmp_path / ".data.partial" / "new_joint_vecs").mkdir(parents=True)
    (tmp_path / ".data.partial" / "new_joint_vecs" / "000000.npy").write_bytes(b"half")
    monkeypatch.setattr(synth, "generate_motions", fake_generate, raising=False)
    summary = build_dataset(small_config(), out, progress=False, workers=1)
    assert summary["status"] == "built" and not (tmp_path / ".data.partial").exists()
    assert check_dataset(out) == []


def test_build_with_the_real_generator_is_identical_for_any_worker_count(tmp_path: Path):
    """workers=1 iterates generate_motions in-process; workers=2 spreads plan_motions over a spawned
    pool. Both must write byte-identical folders (only dataset.json's timings differ)."""
    config = load_config("tiny", ["data.num_motions=40"])
    one, two = tmp_path / "one", tmp_path / "two"
    summary = build_dataset(config, one, progress=False, workers=1)
    assert summary["num_motions"] == 40 and summary["timing_s"]["generate"] > 0
    build_dataset(config, two, progress=False, workers=2)
    assert check_dataset(one, max_frames=config.data.max_frames) == []
    for name in ("train.txt", "val.txt", "test.txt", "labels.json", "Mean.npy", "Std.npy"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    for motion_id in read_split_file(one / "all.txt"):
        for folder, suffix in (("new_joints", ".npy"), ("new_joint_vecs", ".npy"), ("texts", ".txt")):
            assert (one / folder / f"{motion_id}{suffix}").read_bytes() == \
                   (two / folder / f"{motion_id}{suffix}").read_bytes()
    ds = load_dataset(one)
    assert {r.scenario for r in ds.records} <= set(SCENARIOS) and {r.emotion for r in ds.records} <= set(EMOTIONS)
    assert all(r.captions and r.captions[0].tokens for r in ds.records)


# --------------------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A dataset made by `l2emg data generate` with the fake generator."""
    mp = pytest.MonkeyPatch()
    mp.setattr(synth, "generate_motions", fake_generate, raising=False)
    out = tmp_path_factory.mktemp("cli") / "data"
    try:
        result = runner.invoke(app, ["data", "generate", "--profile", "tiny", "--out", str(out), "--set",
                                     "num_motions=112", "--set", "data.max_frames=60", "--no-progress",
                                     "--workers", "1"])
    finally:
        mp.undo()
    assert result.exit_code == 0, result.output
    assert "motions" in result.output and "112" in result.output
    return out


def test_cli_help_texts():
    result = runner.invoke(app, ["data", "--help"])
    assert result.exit_code == 0
    for command in ("generate", "check", "stats", "stream", "preview"):
        assert command in result.output
    result = runner.invoke(app, ["data", "check", "--help"])
    assert "--label-map" in result.output and "--min-frames" in result.output


def test_help_paragraphs_are_reflowed_for_even_wrapping():
    """Hard-wrapped docstring lines are joined per paragraph (rich then wraps them at the terminal
    width instead of breaking at both widths); list items and indented examples keep their lines."""
    from l2emg.cli import reflow

    doc = """Summary line.

        First paragraph, wrapped
        by hand here.
        - an item
        - another item
            indented example
        Last line.
        """
    assert reflow(doc).splitlines() == ["Summary line.", "", "First paragraph, wrapped by hand here.",
                                        "- an item", "- another item", "    indented example", "Last line."]
    wide = CliRunner().invoke(app, ["learn", "--help"], env={"COLUMNS": "300", "TERMINAL_WIDTH": "300"})
    paragraph = [line for line in wide.output.splitlines() if "lifecycle runs step N+1" in line]
    assert paragraph and "appends the row to the performance matrices" in paragraph[0]  # not broken where the docstring is


def test_cli_check_valid_and_broken(built: Path, tmp_path: Path):
    import shutil

    result = runner.invoke(app, ["data", "check", str(built)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output and "112 motions" in result.output
    broken = tmp_path / "broken"
    shutil.copytree(built, broken)
    victim = read_split_file(broken / "train.txt")[0]
    np.save(broken / "new_joint_vecs" / f"{victim}.npy", np.full((5, 263), np.nan, np.float32))
    (broken / "texts" / f"{victim}.txt").write_text("oops\n")
    result = runner.invoke(app, ["data", "check", str(broken)])
    assert result.exit_code == 1
    assert "problem(s)" in result.output and "NaN/inf" in result.output and "malformed caption line" in result.output


def test_cli_stats_json(built: Path, tmp_path: Path):
    out = tmp_path / "stats.json"
    result = runner.invoke(app, ["data", "stats", str(built), "--json", str(out), "--no-physical"])
    assert result.exit_code == 0, result.output
    assert "Daily Life" in result.output and "distinct_2" in result.output
    stats = json.loads(out.read_text())
    assert stats["num_motions"] == 112
    assert sum(stats["counts"]["scenarios"].values()) == 112
    assert stats["counts"]["scenario_emotion"]["Sports"]["happy"] == 2
    assert stats["actions"]["distinct"] == 5
    assert 0 < stats["captions"]["distinct_1"] < 1 and stats["captions"]["mean_per_motion"] == 2.0


def test_stats_physical_checks(built: Path):
    pytest.importorskip("l2emg.motion.quality", reason="quality measures not available yet")
    from l2emg.data.stats import dataset_stats

    stats = dataset_stats(load_dataset(built), sample_size=4)
    assert stats["roundtrip"]["sample_size"] == 4
    assert stats["roundtrip"]["feature_roundtrip_m"]["max"] < 0.01
    assert stats["roundtrip"]["bvh_roundtrip_m"]["max"] < 0.01
    assert stats["quality"]["sample_size"] == 4


def test_cli_stream_saves_json(built: Path, tmp_path: Path):
    out = tmp_path / "stream.json"
    result = runner.invoke(app, ["data", "stream", str(built), "--split", "unseen", "--order", "2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "Game" in result.output and "primary" in result.output and "Ga:" in result.output
    saved = json.loads(out.read_text())
    assert saved["split"] == "unseen" and saved["order"] == 2 and saved["subsets"][0]["name"] == "Game"
    result = runner.invoke(app, ["data", "stream", str(built), "--split", "mixed"])
    assert result.exit_code == 0 and "Scenario 1" in result.output


def test_cli_preview_writes_grids_and_index(built: Path, tmp_path: Path):
    out = tmp_path / "preview"
    result = runner.invoke(app, ["data", "preview", str(built), "--out", str(out), "--size", "64",
                                 "--split", "train"])
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in out.iterdir())
    assert "index.md" in files and "scenario_daily_life.gif" in files and "emotion_happy.gif" in files
    assert len([f for f in files if f.endswith(".gif")]) == 8 + 7
    index = (out / "index.md").read_text()
    assert "scenario_instrument_play.gif" in index and "emotion_disgusted.gif" in index
    assert os.path.getsize(out / "scenario_daily_life.gif") > 1000
    result = runner.invoke(app, ["data", "preview", str(built), "--out", str(out), "--format", "avi"])
    assert isinstance(result.exception, DataError) and "--format" in str(result.exception)


def test_cli_bad_input_is_one_clear_error(tmp_path: Path):
    import subprocess
    import sys

    result = runner.invoke(app, ["data", "stats", str(tmp_path / "missing")])
    assert isinstance(result.exception, DataError) and "dataset folder not found" in str(result.exception)
    # Through the real entry point: one line on stderr, exit code 2, no traceback.
    proc = subprocess.run([sys.executable, "-c", "from l2emg.cli import main; main()", "data", "stream",
                           str(tmp_path / "missing")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "dataset folder not found" in proc.stderr
    assert "Traceback" not in proc.stderr
