"""The VQ-VAE motion tokenizer: training, exact resumption, masks, codebook maintenance, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from l2emg.config import Config, TokenizerConfig, load_config
from l2emg.data.reader import load_dataset
from l2emg.data.records import Caption, MotionRecord
from l2emg.data.writer import write_dataset
from l2emg.errors import CheckpointError, DataError
from l2emg.labels import EMOTIONS, SCENARIOS
from l2emg.motion.features import FEATURE_DIM, RIC, compute_feature_stats, extract_features
from l2emg.motion.rotations import euler_to_matrix
from l2emg.motion.skeleton import forward_kinematics
from l2emg.tokenizer.api import MotionTokenizer
from l2emg.tokenizer.evaluate import evaluate_tokenizer
from l2emg.tokenizer.losses import tokenizer_loss
from l2emg.tokenizer.quantizer import EMAQuantizer
from l2emg.tokenizer.train import feature_bounds, learning_rate, train_tokenizer
from l2emg.tokenizer.vqvae import VQVAE
from l2emg.tokenizer.windows import FeatureBank, WindowSampler

TINY = dict(
    width=32, code_dim=16, codebook_size=32, depth=2, window=16, batch_size=8, lr=2e-3,
    warmup_steps=2, iterations=8, lr_decay_steps=[6], val_interval=3, val_windows=8,
    checkpoint_interval=2, eval_batch_size=8,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run fastest on one thread, and do not fight other processes for cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(**changes) -> Config:
    config = load_config("tiny")
    config.tokenizer = TokenizerConfig(**{**TINY, **changes})
    return config


def _motion(rng: np.random.Generator, num_frames: int) -> np.ndarray:
    """Joints (T, 22, 3) of smooth random joint rotations on the canonical skeleton, walking forward."""
    t = np.arange(num_frames) / 20.0
    amp = rng.uniform(5, 35, (22, 3))
    freq = rng.uniform(0.3, 2.0, (22, 3))
    phase = rng.uniform(0, 2 * np.pi, (22, 3))
    angles = amp * np.sin(2 * np.pi * freq * t[:, None, None] + phase)  # degrees
    rotations = euler_to_matrix(angles.reshape(-1, 3)).reshape(num_frames, 22, 3, 3)
    root = np.stack([0.2 * np.sin(t), 0.9 + 0.02 * np.sin(4 * t), rng.uniform(0, 1.2) * t], -1)
    return forward_kinematics(rotations, root)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    """A small HumanML3D-layout dataset of real features (extracted from FK motions)."""
    root = tmp_path_factory.mktemp("tokdata")
    rng = np.random.default_rng(0)
    records, features = [], {}
    for i in range(28):
        num_frames = int(rng.integers(24, 72))
        motion_id = f"m{i:03d}"
        split = "train" if i < 18 else ("val" if i < 22 else "test")
        records.append(MotionRecord(motion_id, split, [Caption.from_text("a person moves")], num_frames,
                                    EMOTIONS[i % len(EMOTIONS)], SCENARIOS[i % len(SCENARIOS)]))
        features[motion_id] = extract_features(_motion(rng, num_frames))
    mean, std = compute_feature_stats([features[r.motion_id] for r in records if r.split == "train"])
    write_dataset(root, records, features, mean, std)
    return root


@pytest.fixture(scope="module")
def trained_dir(dataset_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    train_tokenizer(tiny_config(), dataset_dir, out, progress=False)
    return out


def _random_tokenizer(dataset_dir: Path) -> MotionTokenizer:
    """An untrained tokenizer whose codebook is initialised from encoder outputs of real data."""
    dataset = load_dataset(dataset_dir)
    torch.manual_seed(0)
    model = VQVAE(TokenizerConfig(**TINY))
    bank = FeatureBank.from_dataset(dataset, "train", dataset.mean, dataset.std)
    windows = WindowSampler(bank, 16, 16).sample(torch.Generator().manual_seed(0))
    with torch.no_grad():
        z = model.encode_latents(windows)
    model.quantizer.initialize(z.reshape(-1, z.shape[-1]), torch.Generator().manual_seed(0))
    return MotionTokenizer(model, dataset.mean, dataset.std, feature_bounds(bank))


def test_tiny_tokenizer_lowers_its_loss(dataset_dir):
    dataset = load_dataset(dataset_dir)
    torch.manual_seed(0)
    model = VQVAE(TokenizerConfig(**TINY)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    sampler = WindowSampler(FeatureBank.from_dataset(dataset, "train", dataset.mean, dataset.std), 16, 8)
    generator = torch.Generator().manual_seed(0)
    batch = sampler.sample(generator)  # (8, 16, 263), fitted for a few steps
    losses, encoder_before = [], model.encoder.conv_in.weight.detach().clone()
    for _ in range(40):
        out = model(batch, generator=generator)
        terms = tokenizer_loss(out.reconstruction, batch, out.commit_loss, 0.5, 0.02)
        optimizer.zero_grad()
        terms.total.backward()
        optimizer.step()
        losses.append(float(terms.total.detach()))
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    # Gradients reach the encoder through the straight-through estimator.
    assert not torch.equal(encoder_before, model.encoder.conv_in.weight)


def test_shapes_and_masks_for_variable_lengths(dataset_dir):
    tokenizer = _random_tokenizer(dataset_dir)
    dataset = load_dataset(dataset_dir)
    motions = [dataset.features(i)[:n] for i, n in zip(dataset.ids("train")[:3], (5, 16, 33))]
    lengths = [len(m) for m in motions]
    batch = np.zeros((3, 40, FEATURE_DIM), np.float32)
    for row, m in enumerate(motions):
        batch[row, : len(m)] = m
    codes, code_mask = tokenizer.encode(batch, lengths)
    assert codes.shape == (3, 9) and codes.dtype == torch.long
    assert code_mask.sum(1).tolist() == [2, 4, 9]
    assert (codes[~code_mask] == 0).all()
    # A padded batch gives the same codes as each motion alone.
    for row, m in enumerate(motions):
        alone, alone_mask = tokenizer.encode(m[None])
        assert alone_mask.all() and torch.equal(alone[0], codes[row][code_mask[row]])
    features, frame_mask = tokenizer.decode(codes, code_mask)
    assert features.shape == (3, 36, FEATURE_DIM)
    assert frame_mask.sum(1).tolist() == [8, 16, 36]
    assert (features[~frame_mask] == 0).all()
    for row in range(3):
        alone, _ = tokenizer.decode(codes[row : row + 1, : int(code_mask[row].sum())])
        torch.testing.assert_close(alone[0], features[row][frame_mask[row]], atol=1e-4, rtol=1e-4)
    # List API: ceil(T / 4) codes per motion, 4 frames per code back.
    code_lists = tokenizer.encode_motions(motions, batch_size=2)
    assert [len(c) for c in code_lists] == [2, 4, 9]
    assert [len(f) for f in tokenizer.decode_codes(code_lists)] == [8, 16, 36]


def test_dead_codes_get_reset():
    torch.manual_seed(0)
    quantizer = EMAQuantizer(codebook_size=16, code_dim=4, mu=0.9, reset_threshold=1.0).train()
    generator = torch.Generator().manual_seed(0)
    data = torch.randn(256, 4)
    quantizer.initialize(data, generator)
    quantizer.codebook[:8] = 1000.0  # half the codes far from every input: never chosen
    quantizer.ema_sum[:8] = 1000.0
    out = quantizer(data, generator)
    assert out.num_reset >= 8
    assert quantizer.codebook.norm(dim=1).max() < 10.0  # the dead codes now sit on the data
    for _ in range(20):
        out = quantizer(torch.randn(256, 4, generator=generator), generator)
    used = torch.bincount(out.codes, minlength=16)
    assert (used > 0).sum() >= 14
    quantizer.eval()
    before = quantizer.codebook.clone()
    quantizer(torch.randn(64, 4))
    assert torch.equal(before, quantizer.codebook)  # eval mode never touches the codebook


def test_velocity_term_uses_joint_position_differences():
    target = torch.randn(2, 16, FEATURE_DIM)
    shifted = target.clone()
    shifted[..., RIC] += 0.5  # same joint velocities, wrong positions
    terms = tokenizer_loss(shifted, target, torch.tensor(0.0), 1.0, 0.0)
    assert float(terms.reconstruction) > 0 and float(terms.velocity) == pytest.approx(0.0, abs=1e-6)
    jitter = target.clone()
    jitter[:, ::2, RIC] += 0.1
    assert float(tokenizer_loss(jitter, target, torch.tensor(0.0), 1.0, 0.0).velocity) > 0.05
    other = target.clone()
    other[..., 193:259] += torch.randn(2, 16, 66)  # local-velocity dims do not enter the term
    assert float(tokenizer_loss(other, target, torch.tensor(0.0), 1.0, 0.0).velocity) == pytest.approx(0.0, abs=1e-6)


def test_root_weight_scales_only_the_root_dims():
    target = torch.randn(2, 16, FEATURE_DIM)
    root_off, body_off = target.clone(), target.clone()
    root_off[..., 0:4] += 0.5
    body_off[..., 100:104] += 0.5
    plain = tokenizer_loss(root_off, target, torch.tensor(0.0), 0.0, 0.0).reconstruction
    heavy = tokenizer_loss(root_off, target, torch.tensor(0.0), 0.0, 0.0, root_weight=5.0).reconstruction
    assert float(heavy) == pytest.approx(5.0 * float(plain), rel=1e-5)
    body = [tokenizer_loss(body_off, target, torch.tensor(0.0), 0.0, 0.0, root_weight=w).reconstruction
            for w in (1.0, 5.0)]
    assert float(body[0]) == pytest.approx(float(body[1]))


def test_heading_term_is_the_integrated_rotation_error():
    torch.manual_seed(0)
    mean, std = torch.zeros(FEATURE_DIM), torch.full((FEATURE_DIM,), 0.1)
    target = torch.randn(2, 16, FEATURE_DIM)
    assert float(tokenizer_loss(target, target, torch.tensor(0.0), 0.0, 0.0, heading_weight=1.0, mean=mean,
                                std=std).heading) == pytest.approx(0.0, abs=1e-7)
    turned = target.clone()
    turned[:, 3, 0] += 0.5  # one frame turns 0.05 rad too far: frames 4..15 keep that heading error
    terms = tokenizer_loss(turned, target, torch.tensor(0.0), 0.0, 0.0, heading_weight=2.0, mean=mean, std=std)
    assert float(terms.heading) == pytest.approx(0.05 * 12 / 16, rel=1e-4)
    plain = tokenizer_loss(turned, target, torch.tensor(0.0), 0.0, 0.0)
    assert float(terms.total - plain.total) == pytest.approx(2.0 * float(terms.heading), rel=1e-4)
    # Only the rotation velocity is integrated; the padded frames of a mask do not count.
    body = target.clone()
    body[..., 1:263] += 1.0
    assert float(tokenizer_loss(body, target, torch.tensor(0.0), 0.0, 0.0, heading_weight=1.0, mean=mean,
                                std=std).heading) == pytest.approx(0.0, abs=1e-7)
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[:, 8:] = False
    masked = tokenizer_loss(turned, target, torch.tensor(0.0), 0.0, 0.0, mask=mask, heading_weight=1.0, mean=mean, std=std)
    assert float(masked.heading) == pytest.approx(0.05 * 4 / 8, rel=1e-4)
    with pytest.raises(ValueError, match="mean/std"):
        tokenizer_loss(turned, target, torch.tensor(0.0), 0.0, 0.0, heading_weight=1.0)


def test_joint_term_sees_heading_drift(dataset_dir):
    dataset = load_dataset(dataset_dir)
    mean, std = torch.from_numpy(dataset.mean), torch.from_numpy(dataset.std)
    raw = torch.from_numpy(np.array(dataset.features(dataset.ids("train")[0])[:32]))[None]  # (1, 32, 263)
    target = (raw - mean) / std
    same = tokenizer_loss(target, target, torch.tensor(0.0), 0.5, 0.02, joint_weight=1.0, mean=mean, std=std)
    assert float(same.joints) == pytest.approx(0.0, abs=1e-6)
    turned = raw.clone()
    turned[..., 0] += 0.01  # 0.01 rad more turn per frame: one feature dim, a growing heading error
    drift = tokenizer_loss(((turned - mean) / std).requires_grad_(), target, torch.tensor(0.0), 0.5, 0.02,
                           joint_weight=1.0, mean=mean, std=std)
    assert float(drift.joints.detach()) > 0.01  # metres
    drift.total.backward()


def test_learning_rate_schedule():
    cfg = TokenizerConfig(lr=1e-3, warmup_steps=10, lr_decay_steps=[100], lr_decay_gamma=0.1)
    assert learning_rate(cfg, 0) == pytest.approx(1e-4)
    assert learning_rate(cfg, 9) == pytest.approx(1e-3)
    assert learning_rate(cfg, 99) == pytest.approx(1e-3)
    assert learning_rate(cfg, 100) == pytest.approx(1e-4)


def test_resumed_training_ends_with_identical_weights(dataset_dir, trained_dir, tmp_path):
    resumed = tmp_path / "resumed"
    partial = train_tokenizer(tiny_config(), dataset_dir, resumed, progress=False, stop_after=5)
    assert partial == {"steps": 5, "stopped": True}  # "crashed" after step 5; last checkpoint: step 4
    assert not (resumed / "model.safetensors").exists()
    torch.manual_seed(123)  # the resumed run must not depend on the process's RNG
    summary = train_tokenizer(tiny_config(), dataset_dir, resumed, progress=False)
    assert summary["steps"] == 8
    for name in ("model.safetensors", "train_state.safetensors"):
        a, b = load_file(trained_dir / name), load_file(resumed / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}: {key} differs"
    assert json.loads((trained_dir / "history.json").read_text()) == json.loads((resumed / "history.json").read_text())


def test_trained_tokenizer_loads_encodes_and_evaluates(dataset_dir, trained_dir):
    tokenizer = MotionTokenizer.from_pretrained(trained_dir, tiny_config().tokenizer)
    assert tokenizer.codebook.shape == (32, 16)
    metrics = evaluate_tokenizer(tokenizer, load_dataset(dataset_dir), "test")
    assert metrics["num_motions"] == 6
    assert 0 < metrics["codebook_usage"] <= 1 and 1 <= metrics["perplexity"] <= 32
    assert metrics["mpjpe_mm"] > 0 and metrics["mpjpe_global_mm"] >= metrics["mpjpe_mm"] * 0.5
    assert sum(v["frames"] for v in metrics["per_scenario"].values()) == metrics["frames"]
    assert sum(v["frames"] for v in metrics["per_emotion"].values()) == metrics["frames"]

    class MeanPoolEvaluator:  # stands in for l2emg.eval.evaluator.Evaluator.embed_motion
        def embed_motion(self, motions, names=None):
            return np.stack([np.asarray(m)[:, :8].mean(0) for m in motions])

    with_fid = evaluate_tokenizer(tokenizer, load_dataset(dataset_dir), "test", evaluator=MeanPoolEvaluator())
    assert with_fid["reconstruction_fid"] > 0 and with_fid["mpjpe_mm"] == metrics["mpjpe_mm"]
    # Re-running a finished training does nothing and returns its summary.
    assert train_tokenizer(tiny_config(), dataset_dir, trained_dir, progress=False)["steps"] == 8


def test_bad_features_are_refused(dataset_dir):
    tokenizer = _random_tokenizer(dataset_dir)
    dataset = load_dataset(dataset_dir)
    raw = np.stack([dataset.features(i)[:20] for i in dataset.ids("test")[:2]])  # (2, 20, 263)
    tokenizer.encode(raw)  # raw features: accepted
    normalized = (raw - dataset.mean) / dataset.std
    tokenizer.encode(normalized, normalized=True)  # normalised with the tokenizer's stats: accepted

    with pytest.raises(DataError, match="263"):
        tokenizer.encode(raw[..., :251])
    with pytest.raises(DataError, match="NaN"):
        bad = raw.copy()
        bad[1, 3, 70] = np.nan
        tokenizer.encode(bad)
    with pytest.raises(DataError, match="raw"):
        tokenizer.encode(raw, normalized=True)
    with pytest.raises(DataError, match="normalised"):
        tokenizer.encode(normalized)  # normalised features passed as raw
    other_std = dataset.std * np.where(np.arange(FEATURE_DIM) >= 193, 0.05, 1.0).astype(np.float32)
    with pytest.raises(DataError, match="other statistics"):
        tokenizer.encode((raw - dataset.mean) / other_std, normalized=True)
    with pytest.raises(DataError, match="codes must lie"):
        tokenizer.decode(np.array([[0, 1, 99]]))


def test_checkpoint_from_another_config_is_refused(dataset_dir, trained_dir):
    other = TokenizerConfig(**{**TINY, "codebook_size": 64})
    with pytest.raises(CheckpointError, match="tokenizer.codebook_size"):
        MotionTokenizer.from_pretrained(trained_dir, other)
    with pytest.raises(CheckpointError, match="tokenizer.lr"):
        train_tokenizer(tiny_config(lr=1e-2), dataset_dir, trained_dir, progress=False)
    with pytest.raises(CheckpointError, match="not found"):
        MotionTokenizer.from_pretrained(trained_dir / "missing")


def test_cli_encode_decode_eval(dataset_dir, trained_dir, tmp_path):
    from l2emg.cli import app

    runner = CliRunner()
    codes_path = tmp_path / "codes.json"
    result = runner.invoke(app, ["tokenizer", "encode", "--tokenizer", str(trained_dir), "--data", str(dataset_dir),
                                 "--out", str(codes_path)])
    assert result.exit_code == 0, result.output
    payload = json.loads(codes_path.read_text())
    assert len(payload["codes"]) == 28
    first = sorted(payload["codes"])[0]
    assert len(payload["codes"][first]) == -(-payload["num_frames"][first] // 4)
    result = runner.invoke(app, ["tokenizer", "decode", "--tokenizer", str(trained_dir), "--codes", str(codes_path),
                                 "--out", str(tmp_path / "decoded")])
    assert result.exit_code == 0, result.output
    joints = np.load(tmp_path / "decoded" / "joints" / f"{first}.npy")
    assert joints.shape == (payload["num_frames"][first], 22, 3)
    result = runner.invoke(app, ["tokenizer", "eval", "--tokenizer", str(trained_dir), "--data", str(dataset_dir),
                                 "--no-progress", "--out", str(tmp_path / "eval.json")])
    assert result.exit_code == 0, result.output
    assert "mpjpe_mm" in json.loads((tmp_path / "eval.json").read_text())
