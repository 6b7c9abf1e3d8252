"""The evaluator: trains on a small labelled dataset (losses fall, retrieval and emotion above
chance), round-trips through its checkpoint, refuses features with the wrong statistics, and
measures motions (evaluate_motions, reference_row, the CLI)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from l2emg.cli import app
from l2emg.config import load_config
from l2emg.data.reader import load_dataset
from l2emg.data.records import Caption, MotionRecord
from l2emg.data.writer import write_dataset
from l2emg.errors import CheckpointError, DataError
from l2emg.eval.evaluate import evaluate_motions, reference_row
from l2emg.eval.evaluator import Evaluator, train_evaluator_on
from l2emg.eval.evaluator.train import corrupt_motion, info_nce
from l2emg.labels import EMOTIONS, SCENARIOS
from l2emg.utils.io import load_json, save_npy

ACTIONS = ("walks", "jumps", "waves", "spins")
ADVERBS = {"neutral": "calmly", "happy": "happily", "sad": "sadly", "angry": "angrily",
           "fearful": "fearfully", "surprised": "in surprise", "disgusted": "with disgust"}
HOLDOUT = (("Sports", "sad"),)
TINY = ["evaluator.epochs=24", "evaluator.val_interval=4", "evaluator.eval_repeats=4"]  # on top of the tiny profile


def make_dataset(root: Path, num_motions: int = 240, seed: int = 0):
    """A labelled dataset in the real on-disk format with structured synthetic features: each action
    has its own rhythm and channel pattern, each emotion its own amplitude, tempo and posture offset,
    on top of fixed raw channel means (some far from 0, like root and joint heights)."""
    rng = np.random.default_rng(seed)
    base = np.random.default_rng(1234)
    raw_mean = base.normal(0.0, 0.5, 263)
    raw_mean[3] = 0.9
    raw_mean[4:67:3] += 1.0
    scale = base.uniform(0.02, 0.2, 263)
    action_weights = base.normal(0.0, 1.0, (len(ACTIONS), 263))
    emotion_offsets = base.normal(0.0, 1.0, (len(EMOTIONS), 263))
    phase = base.uniform(0, 2 * np.pi, 263)[None]
    records, features = [], {}
    for k in range(num_motions):
        action, emotion = k % len(ACTIONS), (k // len(ACTIONS)) % len(EMOTIONS)
        scenario = SCENARIOS[(k // (len(ACTIONS) * len(EMOTIONS))) % 4]
        length = int(rng.integers(40, 80))
        t = np.arange(length)[:, None] / 20.0
        wave = np.sin(2 * np.pi * (0.5 + 0.4 * action + 0.15 * emotion) * t + phase)
        motion = raw_mean + scale * ((0.6 + 0.2 * emotion) * action_weights[action] * wave
                                     + 1.5 * emotion_offsets[emotion] + 0.05 * rng.standard_normal((length, 263)))
        motion[:, 259:] = rng.random((length, 4)) > 0.5
        emo = EMOTIONS[emotion]
        split = "test" if (scenario, emo) in HOLDOUT or k % 7 == 0 else ("train", "train", "train", "val", "test")[k % 5]
        captions = [Caption(f"a person {ACTIONS[action]} {ADVERBS[emo]}", ()),
                    Caption(f"someone {ACTIONS[action]} around {ADVERBS[emo]} in {scenario.lower()}", ())]
        records.append(MotionRecord(f"M{k:04d}", split, captions, length + 1, emo, scenario, ACTIONS[action], 1.0))
        features[f"M{k:04d}"] = motion.astype(np.float32)
    train = np.concatenate([features[r.motion_id] for r in records if r.split == "train"])
    write_dataset(root, records, features, train.mean(0), train.std(0) + 1e-3,
                  {"name": "eval-fixture", "holdout_pairs": [list(p) for p in HOLDOUT]})
    return load_dataset(root)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("evaluator")
    dataset = make_dataset(root / "data")
    evaluator = train_evaluator_on(load_config("tiny", TINY), dataset, root / "ev", progress=False)
    return dataset, evaluator, root


def test_training_learns_matching_and_emotion(trained):
    dataset, evaluator, _ = trained
    history = evaluator.meta["history"]
    assert history[-1]["match_loss"] < 0.8 * history[0]["match_loss"]
    assert history[-1]["emotion_loss"] < 0.5 * history[0]["emotion_loss"]
    best = evaluator.meta["best"]
    assert best["val_r_precision_top1"] > 3 / 32  # chance is 1/32
    assert best["val_emotion_f1"] > 0.6  # chance is about 1/7
    assert evaluator.meta["normalised_check_effective"]


def test_info_nce_prefers_matching_pairs():
    x = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    matched = info_nce(x, x, 0.1)
    shuffled = info_nce(x, x.roll(1, 0), 0.1)
    assert matched < shuffled
    # Marking every off-diagonal pair as "same caption" leaves nothing to contrast: loss 0.
    assert info_nce(x, x.roll(1, 0), 0.1, torch.ones(8, 8, dtype=torch.bool)).item() == pytest.approx(0.0, abs=1e-6)
    # Extra negatives (corrupted motions) close to the texts raise the loss.
    assert info_nce(x, x, 0.1, extra_negatives=x[:4] * 0.9) > matched


def test_corrupt_motion_breaks_the_motion():
    rng = np.random.default_rng(0)
    motion = np.cumsum(rng.standard_normal((60, 263)), axis=0).astype(np.float32)  # smooth-ish in time
    std = np.ones(263, np.float32)
    copies = [corrupt_motion(motion, std, rng) for _ in range(20)]
    for c in copies:
        assert c.shape == motion.shape and c.dtype == np.float32 and not np.allclose(c, motion)
    shuffled = [c for c in copies if np.allclose(np.sort(c, axis=0), np.sort(motion, axis=0))]
    assert 0 < len(shuffled) < len(copies)  # both kinds of corruption occur


def test_checkpoint_round_trip(trained):
    dataset, evaluator, root = trained
    loaded = Evaluator.from_pretrained(root / "ev")
    motions = [dataset.features(i) for i in dataset.ids("test")[:5]]
    np.testing.assert_allclose(loaded.embed_motion(motions), evaluator.embed_motion(motions), atol=1e-5)
    np.testing.assert_allclose(loaded.embed_text(["a person walks sadly"]), evaluator.embed_text(["a person walks sadly"]),
                               atol=1e-5)
    assert loaded.predict_emotion(motions) == evaluator.predict_emotion(motions)
    # Padded batch + lengths gives the same embeddings as a list.
    lengths = [len(m) for m in motions]
    padded = np.zeros((5, max(lengths), 263), np.float32)
    for k, m in enumerate(motions):
        padded[k, : len(m)] = m
    np.testing.assert_allclose(loaded.embed_motion(padded, lengths), loaded.embed_motion(motions), atol=1e-5)
    norms = np.linalg.norm(loaded.embed_motion(motions), axis=1)
    np.testing.assert_allclose(norms, loaded.config.embedding_scale, rtol=1e-5)


def test_corrupt_or_missing_checkpoint(trained, tmp_path):
    _, evaluator, root = trained
    with pytest.raises(CheckpointError, match="evaluator.json"):
        Evaluator.from_pretrained(tmp_path)
    evaluator.save(tmp_path / "copy")
    (tmp_path / "copy" / "evaluator.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="evaluator.safetensors"):
        Evaluator.from_pretrained(tmp_path / "copy")


def test_refuses_features_with_wrong_statistics(trained):
    dataset, evaluator, _ = trained
    ids = dataset.ids("test")[:8]
    raw = [np.array(dataset.features(i)) for i in ids]
    evaluator.embed_motion(raw)  # raw features are accepted
    rng = np.random.default_rng(0)
    evaluator.embed_motion([m + 0.5 * dataset.std * rng.standard_normal(m.shape).astype(np.float32) for m in raw])
    evaluator.embed_motion([raw[0]])  # a single motion too
    normalised = [(m - dataset.mean) / dataset.std for m in raw]
    with pytest.raises(DataError, match="normalised already"):
        evaluator.embed_motion(normalised)
    with pytest.raises(DataError, match="normalised already"):
        evaluator.embed_motion([normalised[0]])
    with pytest.raises(DataError, match="263"):
        evaluator.embed_motion([m[:, :259] for m in raw])
    bad = raw[0].copy()
    bad[3, 10] = np.nan
    with pytest.raises(DataError, match="NaN"):
        evaluator.embed_motion([raw[1], bad], names=["a", "b"])


def test_evaluate_motions_real_and_corrupted(trained):
    dataset, evaluator, _ = trained
    ids = dataset.ids("test")
    real = {i: dataset.features(i) for i in ids}
    result = evaluate_motions(evaluator, real, dataset, "test", repeats=4)
    m = result["metrics"]
    assert m["fid"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert m["r_precision_top1"]["mean"] > 2 / 32 and m["r_precision_top3"]["mean"] > m["r_precision_top1"]["mean"]
    assert m["emotion_f1"]["mean"] > 0.6 and m["multimodality"] is None
    assert result["transfer"]["num_motions"] > 0 and result["transfer"]["pairs"] == [["Sports", "sad"]]
    # Motions from another class (each id gets the motion of another id): worse FID and R-Precision.
    wrong = {i: real[ids[(k + 5) % len(ids)]] for k, i in enumerate(ids)}
    worse = evaluate_motions(evaluator, wrong, dataset, "test", repeats=4)["metrics"]
    assert worse["r_precision_top1"]["mean"] < m["r_precision_top1"]["mean"]
    # Two generations per id -> MultiModality; a (K, T, 263) stack is accepted too.
    rng = np.random.default_rng(1)
    twice = {i: np.stack([real[i], real[i] + 0.3 * dataset.std * rng.standard_normal(real[i].shape).astype(np.float32)])
             for i in ids}
    multi = evaluate_motions(evaluator, twice, dataset, "test", repeats=4)["metrics"]
    assert multi["multimodality"]["mean"] > 0
    with pytest.raises(DataError, match="not test"):
        evaluate_motions(evaluator, {dataset.ids("train")[0]: real[ids[0]]}, dataset, "test")


def test_reference_row_and_cli(trained, tmp_path):
    dataset, evaluator, root = trained
    ref = reference_row(evaluator, dataset, repeats=4, noise_level=3.0)
    s = ref["sanity"]
    assert s["fid_noised"]["mean"] > s["fid_two_halves"]["mean"]
    assert ref["metrics"]["fid"] == s["fid_two_halves"]
    assert ref["metrics"]["r_precision_top1"]["mean"] > 2 / 32
    runner = CliRunner()
    res = runner.invoke(app, ["eval", "reference", "--evaluator", str(root / "ev"), "--data", str(dataset.root),
                              "--repeats", "2", "--out", str(tmp_path / "ref.json")])
    assert res.exit_code == 0, res.output
    assert load_json(tmp_path / "ref.json")["kind"] == "reference"
    motions = tmp_path / "motions"
    ids = dataset.ids("test")[:40]
    for i in ids[:-1]:
        save_npy(motions / f"{i}.npy", dataset.features(i))
    save_npy(motions / ids[-1] / "0.npy", dataset.features(ids[-1]))
    save_npy(motions / ids[-1] / "1.npy", dataset.features(ids[-1])[:-8])
    (motions / f"{ids[0]}.txt").write_text("a person walks sadly\n")
    res = runner.invoke(app, ["eval", "motions", "--evaluator", str(root / "ev"), "--data", str(dataset.root),
                              "--motions", str(motions), "--repeats", "2"])
    assert res.exit_code == 0, res.output
    saved = load_json(motions / "metrics.json")
    assert saved["num_motions"] == 40 and saved["generations_per_motion"] == 2
    assert saved["metrics"]["multimodality"] is not None


def test_cli_train(tmp_path, trained):
    dataset = trained[0]
    runner = CliRunner()
    res = runner.invoke(app, ["eval", "train", "--data", str(dataset.root), "--out", str(tmp_path / "ev"),
                              "--profile", "tiny", "--no-progress", "--set", "evaluator.epochs=2"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ev" / "evaluator.safetensors").exists()
    assert load_json(tmp_path / "ev" / "evaluator.json")["config"]["epochs"] == 2


def test_redrawn_protocol_scores_each_generation_against_its_own_caption(trained):
    """`generation_captions`: repetition r scores generation r against the caption that produced it;
    `mm_generated`: MultiModality from its own set; `embeddings`: what each repetition scored."""
    dataset, evaluator, _ = trained
    ids = dataset.ids("test")
    real = {i: dataset.features(i) for i in ids}
    other = {i: ids[(k + 5) % len(ids)] for k, i in enumerate(ids)}
    caption = {i: dataset.by_id(i).captions[0].text for i in ids}
    # generation 1 of each id is another id's motion, generated "from" that id's caption
    generated = {i: [real[i], real[other[i]]] for i in ids}
    paired = {i: [caption[i], caption[other[i]]] for i in ids}
    kept: dict = {}
    redrawn = evaluate_motions(evaluator, generated, dataset, "test", repeats=4, generation_captions=paired,
                               mm_generated={i: [real[i], real[i]] for i in ids}, embeddings=kept)["metrics"]
    first = evaluate_motions(evaluator, generated, dataset, "test", repeats=4)["metrics"]
    alone = evaluate_motions(evaluator, real, dataset, "test", repeats=4)["metrics"]
    assert redrawn["r_precision_top1"]["mean"] > first["r_precision_top1"]["mean"] + 0.1
    assert redrawn["mm_dist"]["mean"] == pytest.approx(alone["mm_dist"]["mean"], rel=0.05)
    assert redrawn["multimodality"]["mean"] == pytest.approx(0.0, abs=1e-5)  # its own set: identical pairs
    assert first["multimodality"]["mean"] > 0
    assert len(kept["repeats"]) == 4 and kept["real"].shape == kept["repeats"][0].shape
    with pytest.raises(DataError, match="generation captions"):
        evaluate_motions(evaluator, generated, dataset, "test", repeats=2,
                         generation_captions={i: [caption[i]] for i in ids})
