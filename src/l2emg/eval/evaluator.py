"""The evaluator: the measuring instrument behind FID, R-Precision, MM-Dist, Diversity,
MultiModality and the emotion F1.

Like Guo et al.'s evaluator on HumanML3D, it is trained once, on the train splits of all
scenarios, and then frozen. It has

- a text side: the frozen pretrained all-MiniLM-L6-v2 sentence encoder (see `text_encoder.py` for
  why) and a trained projection (384 -> text_hidden -> embed_dim);
- a motion side: the 263-d features without the 4 foot contacts (as Guo et al.), normalised with
  the evaluator's *own* statistics, plus their frame-to-frame differences, cut into 4-frame patches by a stride-4 convolution, a k=3
  convolution and a small transformer, mean-pooled over the valid steps, projected to embed_dim;
- an emotion classifier (7 classes) on the pooled motion features (multi-task: it shares the
  motion encoder, which the contrastive loss already pushes to notice emotion words' body language).

Text and motion embeddings are L2-normalised and trained with a symmetric InfoNCE loss (TMR,
temperature 0.1), ignoring in-batch "negatives" whose caption is nearly the same as the positive's.
Corrupted copies of a quarter of each batch (noised or frame-shuffled) are added as negatives for
every text, and pushed below cosine 0.5 to their clean motion: captions alone never teach an
evaluator that jitter or broken temporal order make a motion worse — without this term, FID
between real and noised (0.5 std) real motions was no larger than between two halves of the
real test set.
Metrics are Euclidean distances between the unit embeddings times `embedding_scale`.

Statistics: HumanML3D group-averaged mean/std of the train split, with the root features' std
divided by 5 as Guo et al.'s evaluator does (their meta/std.npy), so the root trajectory weighs more.
They are buffers of the checkpoint and always applied: `embed_motion` takes *raw* features only,
and refuses input whose dimensions are wrong, that contains NaN/inf, or whose statistics say it was
normalised already (the most common cause of wrong scores in the field).

Checkpoint folder: `evaluator.safetensors` (weights and statistics) + `evaluator.json` (config,
labels, text-model probe, training summary).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from l2emg.config import Config, EvaluatorConfig
from l2emg.data.labels import EMOTIONS
from l2emg.errors import CheckpointError, DataError
from l2emg.eval.text_encoder import PROBE_SENTENCE, FrozenTextEncoder
from l2emg.motion.features import FEATURE_DIM, FOOT_CONTACT, ROOT_LIN_VEL, ROOT_ROT_VEL, ROOT_Y, compute_feature_stats
from l2emg.utils.io import atomic_write_bytes, load_json, save_json

WEIGHTS_FILE = "evaluator.safetensors"
META_FILE = "evaluator.json"
FORMAT_VERSION = 1
MOTION_DIMS = FOOT_CONTACT.start  # 259: the features the motion encoder reads (no foot contacts)
MIN_FRAMES = 4  # one 4-frame patch at least; shorter input is edge-padded
# A channel whose train mean lies this many (per-channel) stds away from 0 is an "offset channel"
# (root height, joint heights, rotation entries near 1): raw motions keep it there, normalised
# features move it to 0. Used to refuse features that were normalised already.
OFFSET_CHANNEL_Z = 5.0


# --------------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------------


def _sinusoids(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """(length, dim) fixed sinusoidal positions."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


class MotionEncoder(nn.Module):
    """(B, T, 2·259) normalised features and their differences + lengths (B,) -> pooled (B, width)."""

    def __init__(self, cfg: EvaluatorConfig):
        super().__init__()
        w = cfg.width
        # Patches of 4 frames (0.2 s, one VQ code's span), then a local k=3 convolution: ×4 fewer
        # positions before the transformer, at half the cost of two overlapping stride-2 layers.
        # Input: the normalised features and their frame-to-frame differences (2 × 259 channels):
        # smooth motion has tiny differences, jitter has large ones, so the encoder can see it.
        self.conv = nn.Sequential(
            nn.Conv1d(2 * MOTION_DIMS, w, kernel_size=4, stride=4), nn.GELU(),
            nn.Conv1d(w, w, kernel_size=3, padding=1), nn.GELU(),
        )
        layer = nn.TransformerEncoderLayer(w, cfg.heads, 2 * w, cfg.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False) if cfg.layers else None
        self.norm = nn.LayerNorm(w)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, T//4, W)
        steps = torch.clamp(lengths // 4, min=1, max=h.shape[1])  # (B,)
        valid = torch.arange(h.shape[1], device=h.device)[None, :] < steps[:, None]  # (B, T')
        if self.transformer is not None:
            h = h + _sinusoids(h.shape[1], h.shape[2], h.device)[None]
            h = self.transformer(h, src_key_padding_mask=~valid)
        h = self.norm(h) * valid[..., None]
        return h.sum(1) / steps[:, None].to(h.dtype)


class EvaluatorNet(nn.Module):
    """All trained parts of the evaluator, plus its feature statistics as buffers."""

    def __init__(self, cfg: EvaluatorConfig, text_dim: int, num_emotions: int):
        super().__init__()
        self.motion_encoder = MotionEncoder(cfg)
        self.motion_head = nn.Sequential(nn.Linear(cfg.width, cfg.width), nn.GELU(), nn.Linear(cfg.width, cfg.embed_dim))
        self.emotion_head = nn.Sequential(nn.Linear(cfg.width, cfg.classifier_hidden), nn.GELU(),
                                          nn.Dropout(cfg.dropout), nn.Linear(cfg.classifier_hidden, num_emotions))
        self.text_head = nn.Sequential(nn.Linear(text_dim, cfg.text_hidden), nn.GELU(), nn.Dropout(cfg.dropout),
                                       nn.Linear(cfg.text_hidden, cfg.embed_dim))
        # Normalisation applied to every motion input; raw per-channel stats for the input check.
        self.register_buffer("mean", torch.zeros(FEATURE_DIM))
        self.register_buffer("std", torch.ones(FEATURE_DIM))
        self.register_buffer("raw_mean", torch.zeros(FEATURE_DIM))
        self.register_buffer("raw_std", torch.ones(FEATURE_DIM))

    def motion_features(self, raw: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, 263) raw padded features -> pooled (B, width). Normalises with the own stats."""
        x = ((raw - self.mean) / self.std)[..., :MOTION_DIMS]
        frame = torch.arange(x.shape[1], device=x.device)[None, :]
        x = x * (frame < lengths[:, None])[..., None]  # (B, T, 259), zero after each motion's end
        diff = torch.zeros_like(x)
        diff[:, :-1] = (x[:, 1:] - x[:, :-1]) * (frame[:, 1:] < lengths[:, None])[..., None]
        return self.motion_encoder(torch.cat([x, diff], dim=-1), lengths)  # (B, T, 518) -> (B, W)

    def embed_motion(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.motion_head(pooled), dim=-1)

    def embed_text(self, sentence_embeddings: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_head(sentence_embeddings), dim=-1)


# --------------------------------------------------------------------------------------------------
# Statistics and the input check
# --------------------------------------------------------------------------------------------------


def evaluator_statistics(features: Sequence[np.ndarray], root_std_divisor: float) -> dict[str, np.ndarray]:
    """Normalisation (HumanML3D group std; root and contact std / divisor) and raw per-channel stats."""
    mean, std = compute_feature_stats(features)
    std = std.astype(np.float64)
    for group in (ROOT_ROT_VEL, ROOT_LIN_VEL, ROOT_Y, FOOT_CONTACT):
        std[group] /= root_std_divisor
    total = np.zeros(FEATURE_DIM)
    total_sq = np.zeros(FEATURE_DIM)
    count = 0
    for f in features:
        f = np.asarray(f, dtype=np.float64)
        total += f.sum(0)
        total_sq += (f * f).sum(0)
        count += len(f)
    raw_mean = total / count
    raw_std = np.sqrt(np.maximum(total_sq / count - raw_mean**2, 0.0)) + 1e-4
    return {"mean": mean.astype(np.float32), "std": std.astype(np.float32),
            "raw_mean": raw_mean.astype(np.float32), "raw_std": raw_std.astype(np.float32)}


def offset_deviation(features: Sequence[np.ndarray], raw_mean: np.ndarray, raw_std: np.ndarray) -> tuple[float, float]:
    """How far the input's channel means lie from the evaluator's, in per-channel stds, over the
    offset channels (median): (deviation from the raw means, deviation from 0).

    Raw motions give a small first number; features normalised with any statistics have channel
    means near 0, so the first number is large and the second small."""
    channels = np.abs(raw_mean) > OFFSET_CHANNEL_Z * raw_std
    channels[FOOT_CONTACT] = False
    if not channels.any():
        return 0.0, math.inf
    frames = np.concatenate([np.asarray(f, dtype=np.float64)[:, channels] for f in features], axis=0)
    m = frames.mean(0)
    s = raw_std[channels].astype(np.float64)
    return float(np.median(np.abs(m - raw_mean[channels]) / s)), float(np.median(np.abs(m) / s))


# --------------------------------------------------------------------------------------------------
# The evaluator
# --------------------------------------------------------------------------------------------------


class Evaluator:
    """A trained (frozen) evaluator: embeddings of texts and raw motions, and emotion predictions."""

    def __init__(self, net: EvaluatorNet, config: EvaluatorConfig, emotions: Sequence[str],
                 meta: dict[str, Any] | None = None, text_encoder: FrozenTextEncoder | None = None,
                 batch_size: int = 64):
        self.net = net.eval()
        self.config = config
        self.emotions = list(emotions)
        self.meta = dict(meta or {})
        self.text_encoder = text_encoder or FrozenTextEncoder(config.text_model)
        self.batch_size = batch_size
        self.source = self.meta.get("path", "evaluator")

    # -- statistics check ----------------------------------------------------------------------
    @property
    def offset_threshold(self) -> float:
        return float(self.meta.get("offset_threshold", 10.0))

    def check_features(self, features: Sequence[np.ndarray], names: Sequence[str] | None = None) -> list[np.ndarray]:
        """Validate raw (T, 263) motions; returns them as float32 arrays. Raises DataError naming
        the offending motion for wrong shapes or NaN/inf, and for input that looks normalised."""
        out = []
        for i, f in enumerate(features):
            name = names[i] if names is not None else f"motion {i}"
            a = np.asarray(f.detach().cpu().numpy() if isinstance(f, torch.Tensor) else f, dtype=np.float32)
            if a.ndim != 2 or a.shape[1] != FEATURE_DIM:
                hint = " (the evaluator reads all 263 raw features; it drops the foot contacts itself)" \
                    if a.ndim == 2 and a.shape[1] == MOTION_DIMS else ""
                raise DataError(f"{name}: expected raw features of shape (T, {FEATURE_DIM}), got {a.shape}{hint}")
            if a.shape[0] < 1:
                raise DataError(f"{name}: empty motion (0 frames)")
            if not np.isfinite(a).all():
                raise DataError(f"{name}: features contain NaN or inf ({int((~np.isfinite(a)).sum())} values)")
            out.append(a)
        if out:
            raw_mean = self.net.raw_mean.cpu().numpy()
            raw_std = self.net.raw_std.cpu().numpy()
            deviation, from_zero = offset_deviation(out, raw_mean, raw_std)
            if deviation > self.offset_threshold:
                looks = "they look normalised already (channel means near 0); " if from_zero < deviation else ""
                first = names[0] if names else "motion 0"
                raise DataError(
                    f"{first} (and {len(out) - 1} more): features do not match the evaluator's statistics "
                    f"({self.source}): median offset {deviation:.1f} σ > {self.offset_threshold:.1f} σ; {looks}"
                    "pass raw, denormalised 263-d features — the evaluator applies its own normalisation")
        return out

    # -- embeddings ----------------------------------------------------------------------------
    def _pooled(self, features: Sequence[np.ndarray]) -> torch.Tensor:
        """Pooled motion features (N, width), in input order, batched by similar length."""
        order = np.argsort([len(f) for f in features], kind="stable")
        pooled = torch.zeros(len(features), self.net.motion_encoder.norm.normalized_shape[0])
        with torch.no_grad():
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                batch, lengths = pad_motions([features[i] for i in idx])
                pooled[torch.as_tensor(idx)] = self.net.motion_features(batch, lengths)
        return pooled

    def _split_input(self, features: Any, lengths: Any) -> list[np.ndarray]:
        if lengths is None:
            if isinstance(features, (np.ndarray, torch.Tensor)) and np.ndim(features) == 2:
                features = [features]
            return list(features)
        feats = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
        lens = np.asarray(lengths.cpu() if isinstance(lengths, torch.Tensor) else lengths).astype(int)
        if feats.ndim != 3 or len(lens) != len(feats):
            raise DataError(f"padded input must be (B, T, {FEATURE_DIM}) with B lengths, got {feats.shape} "
                            f"and {len(lens)} lengths")
        return [feats[i, : lens[i]] for i in range(len(feats))]

    def embed_motion(self, features: Any, lengths: Any = None, names: Sequence[str] | None = None) -> np.ndarray:
        """Raw motions -> (N, embed_dim) embeddings (unit vectors × embedding_scale).

        features: a list of (T_i, 263) arrays, one (T, 263) array, or padded (B, T, 263) + lengths."""
        motions = self.check_features(self._split_input(features, lengths), names)
        if not motions:
            return np.zeros((0, self.config.embed_dim), dtype=np.float32)
        with torch.no_grad():
            emb = self.net.embed_motion(self._pooled(motions))
        return (emb * self.config.embedding_scale).numpy()

    def embed_motion_and_emotion(self, features: Any, lengths: Any = None,
                                 names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings (N, D) and emotion probabilities (N, num_emotions) in one pass."""
        motions = self.check_features(self._split_input(features, lengths), names)
        if not motions:
            return np.zeros((0, self.config.embed_dim), np.float32), np.zeros((0, len(self.emotions)), np.float32)
        with torch.no_grad():
            pooled = self._pooled(motions)
            emb = self.net.embed_motion(pooled) * self.config.embedding_scale
            probs = torch.softmax(self.net.emotion_head(pooled), dim=-1)
        return emb.numpy(), probs.numpy()

    def emotion_probabilities(self, features: Any, lengths: Any = None) -> np.ndarray:
        return self.embed_motion_and_emotion(features, lengths)[1]

    def predict_emotion(self, features: Any, lengths: Any = None) -> list[str]:
        """Raw motions -> predicted emotion names."""
        probs = self.emotion_probabilities(features, lengths)
        return [self.emotions[i] for i in probs.argmax(1)]

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Captions -> (N, embed_dim) embeddings (unit vectors × embedding_scale)."""
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            return np.zeros((0, self.config.embed_dim), dtype=np.float32)
        sentences = torch.from_numpy(self.text_encoder.encode(list(texts)))
        with torch.no_grad():
            emb = self.net.embed_text(sentences)
        return (emb * self.config.embedding_scale).numpy()

    # -- persistence ---------------------------------------------------------------------------
    def save(self, out_dir: str | Path) -> Path:
        from safetensors.torch import save as save_tensors

        out_dir = Path(out_dir)
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        atomic_write_bytes(out_dir / WEIGHTS_FILE, save_tensors(state))
        meta = {
            **{k: v for k, v in self.meta.items() if k != "path"},
            "format_version": FORMAT_VERSION,
            "kind": "l2emg-evaluator",
            "config": self.config.model_dump(mode="json"),
            "emotions": self.emotions,
            "feature_dim": FEATURE_DIM,
            "motion_dims": MOTION_DIMS,
            "text_dim": int(self.net.text_head[0].in_features),
            "text_probe": {"sentence": PROBE_SENTENCE,
                           "embedding_head": self.text_encoder.encode([PROBE_SENTENCE])[0, :8].tolist()},
        }
        save_json(out_dir / META_FILE, meta)
        return out_dir

    @classmethod
    def from_pretrained(cls, path: str | Path, check_text_model: bool = True) -> "Evaluator":
        """Load a trained evaluator folder; refuses missing/corrupt files and a different text model."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(path)
        meta_path, weights_path = path / META_FILE, path / WEIGHTS_FILE
        for p in (meta_path, weights_path):
            if not p.exists():
                raise CheckpointError(f"{p}: evaluator file missing (train one with `l2emg eval train`)")
        try:
            meta = load_json(meta_path)
        except ValueError as err:
            raise CheckpointError(str(err)) from err
        if meta.get("kind") != "l2emg-evaluator" or meta.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"{meta_path}: not an l2emg evaluator of format {FORMAT_VERSION} "
                                  f"(kind={meta.get('kind')!r}, format_version={meta.get('format_version')!r})")
        try:
            config = EvaluatorConfig.model_validate(meta["config"])
        except Exception as err:  # pydantic ValidationError or KeyError
            raise CheckpointError(f"{meta_path}: field 'config' is invalid ({err})") from err
        net = EvaluatorNet(config, int(meta["text_dim"]), len(meta["emotions"]))
        try:
            state = load_file(str(weights_path))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{weights_path}: unreadable safetensors file ({err})") from err
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            raise CheckpointError(f"{weights_path}: weights do not fit the config in {meta_path} ({err})") from err
        meta["path"] = str(path)
        evaluator = cls(net, config, meta["emotions"], meta)
        if check_text_model:
            probe = meta.get("text_probe", {})
            now = evaluator.text_encoder.encode([probe.get("sentence", PROBE_SENTENCE)])[0, :8]
            if not np.allclose(now, probe.get("embedding_head", now), atol=1e-3):
                raise CheckpointError(f"{meta_path}: the text model {config.text_model!r} on this machine is not the "
                                      "one this evaluator was trained with (probe embedding differs)")
        return evaluator


def pad_motions(motions: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (T_i, 263) -> padded (B, max(T, 4), 263) float32 and lengths (B,). Motions shorter than
    4 frames are edge-padded to 4 (the encoder's down-sampling needs them)."""
    lengths = [max(len(m), MIN_FRAMES) for m in motions]
    batch = np.zeros((len(motions), max(lengths), FEATURE_DIM), dtype=np.float32)
    for i, m in enumerate(motions):
        batch[i, : len(m)] = m
        if len(m) < MIN_FRAMES:
            batch[i, len(m): MIN_FRAMES] = m[-1]
    return torch.from_numpy(batch), torch.as_tensor(lengths)


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


def info_nce(text: torch.Tensor, motion: torch.Tensor, temperature: float,
             same_caption: torch.Tensor | None = None, extra_negatives: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE over unit embeddings (B, D); same_caption (B, B) bool marks off-diagonal
    pairs that are not true negatives (near-identical captions) and are left out of the softmax.
    extra_negatives (K, D): motions that match no text (corrupted copies), added to every text's
    softmax over motions."""
    logits = text @ motion.T / temperature  # (B, B)
    if same_caption is not None:
        logits = logits.masked_fill(same_caption & ~torch.eye(len(text), dtype=torch.bool), float("-inf"))
    target = torch.arange(len(text))
    text_to_motion = logits if extra_negatives is None else torch.cat(
        [logits, text @ extra_negatives.T / temperature], dim=1)  # (B, B + K)
    return 0.5 * (F.cross_entropy(text_to_motion, target) + F.cross_entropy(logits.T, target))


def corrupt_motion(motion: np.ndarray, std: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of a raw motion that no caption describes: Gaussian noise of 0.25–1 evaluator std on
    every feature, or its frames shuffled. Used as extra negatives, so that the evaluator's embedding
    (and hence FID and R-Precision) reacts to jitter and to broken temporal order, which captions
    alone never teach it."""
    if rng.random() < 0.5:
        sigma = rng.uniform(0.25, 1.0)
        return (motion + sigma * std * rng.standard_normal(motion.shape)).astype(np.float32)
    return motion[rng.permutation(len(motion))]


def _random_crop(motion: np.ndarray, rng: np.random.Generator, min_fraction: float) -> np.ndarray:
    n = len(motion)
    keep = int(rng.integers(max(MIN_FRAMES, int(math.ceil(min_fraction * n))), n + 1)) if n > MIN_FRAMES else n
    start = int(rng.integers(0, n - keep + 1))
    return motion[start:start + keep]


def _length_buckets(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of batches (len(lengths) // batch_size of them) of similar lengths, to pad little:
    shuffle, sort within windows of 8 batches by length, cut into batches, shuffle the batches."""
    order = rng.permutation(len(lengths))
    window = 8 * batch_size
    for start in range(0, len(order), window):
        chunk = order[start:start + window]
        order[start:start + window] = chunk[np.argsort(lengths[chunk], kind="stable")]
    batches = [order[b * batch_size:(b + 1) * batch_size] for b in range(len(order) // batch_size)]
    return [batches[k] for k in rng.permutation(len(batches))]


def _validation_scores(evaluator: Evaluator, motions: list[np.ndarray], captions: list[str],
                       labels: np.ndarray, batch: int) -> dict[str, float]:
    from l2emg.eval.metrics import r_precision_hits, weighted_f1

    evaluator.net.eval()
    emb, probs = evaluator.embed_motion_and_emotion(motions)
    text = evaluator.embed_text(captions)
    scores: dict[str, float] = {}
    if len(motions) >= batch:
        hits = [r_precision_hits(text, emb, np.random.default_rng(seed), batch)[0] for seed in range(5)]
        stacked = np.concatenate(hits)
        scores["r_precision_top1"] = float(np.nanmean(stacked[:, 0]))
        scores["r_precision_top3"] = float(np.nanmean(stacked[:, 2]))
    known = labels >= 0
    if known.any():
        scores["emotion_f1"] = weighted_f1(labels[known], probs.argmax(1)[known])
    return scores


def train_evaluator_on(config: Config, dataset: Any, out_dir: str | Path, progress: bool = True) -> Evaluator:
    """Train the evaluator on `dataset`'s train split (validating on val), save it to out_dir."""
    cfg = config.evaluator
    started = time.time()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train = dataset.split("train")
    val = dataset.split("val")
    if len(train) < 2:
        raise DataError(f"{dataset.root}: the evaluator needs at least 2 training motions, found {len(train)}")
    emotions = list(EMOTIONS)
    emotion_index = {e: i for i, e in enumerate(emotions)}

    # Arrays, statistics, and a self-calibrated threshold for the "normalised already" check.
    train_features = [np.asarray(dataset.features(r.motion_id), dtype=np.float32) for r in train]
    stats = evaluator_statistics(train_features, cfg.root_std_divisor)
    per_motion = [offset_deviation([f], stats["raw_mean"], stats["raw_std"])[0] for f in train_features]
    normalised = [offset_deviation([(f - stats["mean"]) / stats["std"]], stats["raw_mean"], stats["raw_std"])[0]
                  for f in train_features[:64]]
    # Between the largest offset of a single raw train motion and the smallest of a normalised one.
    raw_max, normalised_min = float(np.max(per_motion)), float(np.min(normalised))
    check_effective = normalised_min > 1.5 * raw_max
    threshold = math.sqrt(raw_max * normalised_min) if check_effective else max(10.0, 2.0 * raw_max)

    timings = {"load_and_stats": time.time() - started}
    text_encoder = FrozenTextEncoder(cfg.text_model)
    all_captions = sorted({c.text for r in [*train, *val] for c in r.captions})
    text_encoder.encode(all_captions)  # cache every caption once
    text_dim = int(text_encoder.encode([all_captions[0]]).shape[1])

    timings["caption_encoding"] = time.time() - started - timings["load_and_stats"]
    net = EvaluatorNet(cfg, text_dim, len(emotions))
    for name, value in stats.items():
        getattr(net, name).copy_(torch.from_numpy(value))
    meta: dict[str, Any] = {"offset_threshold": threshold, "dataset": str(dataset.root),
                            "train_motions": len(train), "val_motions": len(val)}
    evaluator = Evaluator(net, cfg, emotions, meta, text_encoder)

    labels = np.array([emotion_index.get(r.emotion, -1) if r.emotion else -1 for r in train])
    val_features = [np.asarray(dataset.features(r.motion_id), dtype=np.float32) for r in val]
    val_captions = [r.captions[0].text for r in val]
    val_labels = np.array([emotion_index.get(r.emotion, -1) if r.emotion else -1 for r in val])

    train_lengths = np.array([len(f) for f in train_features])
    eval_std = stats["std"]
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    batch_size = min(cfg.batch_size, len(train))
    steps_per_epoch = max(1, len(train) // batch_size)
    total_steps = cfg.epochs * steps_per_epoch

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress_ = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress_)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    history: list[dict[str, float]] = []
    best: tuple[float, dict[str, torch.Tensor], dict[str, float]] | None = None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, desc="evaluator", unit="step", dynamic_ncols=True)
    step = 0
    train_started, cpu_started = time.time(), time.process_time()
    for epoch in range(cfg.epochs):
        net.train()
        epoch_loss = []
        for idx in _length_buckets(train_lengths, batch_size, rng):
            crops = [_random_crop(train_features[i], rng, cfg.crop_min_fraction) for i in idx]
            motion, lengths = pad_motions(crops)
            texts = [train[i].captions[int(rng.integers(len(train[i].captions)))].text for i in idx]
            sentences = torch.from_numpy(text_encoder.encode(texts))  # (B, 384)
            same = (sentences @ sentences.T) > cfg.false_negative_threshold
            num_corrupt = int(round(cfg.corrupt_fraction * len(idx)))
            if num_corrupt:
                corrupted = [corrupt_motion(c, eval_std, rng) for c in crops[:num_corrupt]]
                motion, lengths = pad_motions([*crops, *corrupted])
            all_pooled = net.motion_features(motion, lengths)  # (B + K, W)
            pooled = all_pooled[: len(idx)]
            motion_emb = net.embed_motion(pooled)
            negatives = net.embed_motion(all_pooled[len(idx):]) if num_corrupt else None
            loss_match = info_nce(net.embed_text(sentences), motion_emb, cfg.temperature, same, negatives)
            if num_corrupt:
                # A corrupted copy must land away from its clean motion (cosine below the margin).
                similarity = (negatives * motion_emb[:num_corrupt]).sum(-1)
                loss_match = loss_match + F.relu(similarity - cfg.corrupt_margin).mean()
            target = torch.from_numpy(labels[idx])
            loss_emotion = F.cross_entropy(net.emotion_head(pooled), target, ignore_index=-1) \
                if (target >= 0).any() else torch.zeros(())
            loss = loss_match + cfg.emotion_weight * loss_emotion
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            epoch_loss.append((loss_match.item(), loss_emotion.item()))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(match=f"{loss_match.item():.3f}", emo=f"{loss_emotion.item():.3f}")
        record = {"epoch": epoch + 1, "match_loss": float(np.mean([pair[0] for pair in epoch_loss])),
                  "emotion_loss": float(np.mean([pair[1] for pair in epoch_loss]))}
        if val_features and ((epoch + 1) % cfg.val_interval == 0 or epoch + 1 == cfg.epochs):
            scores = _validation_scores(evaluator, val_features, val_captions, val_labels, cfg.r_precision_batch)
            record.update({f"val_{k}": v for k, v in scores.items()})
            score = scores.get("r_precision_top1", 0.0) + scores.get("emotion_f1", 0.0)
            if best is None or score > best[0]:
                best = (score, {k: v.detach().clone() for k, v in net.state_dict().items()}, {**record})
        history.append(record)
    if bar is not None:
        bar.close()
    if best is not None:
        net.load_state_dict(best[1])
    net.eval()
    meta.update({
        "history": history,
        "best": best[2] if best is not None else history[-1],
        "normalised_offset_min": normalised_min,
        "raw_offset_max": raw_max,
        "normalised_check_effective": check_effective,
        "train_seconds": round(time.time() - started, 1),
        "timings_s": {**{k: round(v, 1) for k, v in timings.items()},
                      "training_loop": round(time.time() - train_started, 1),
                      "training_loop_cpu": round(time.process_time() - cpu_started, 1),
                      "torch_threads": torch.get_num_threads()},
        "steps": total_steps,
    })
    evaluator.meta = meta
    evaluator.save(out_dir)
    evaluator.meta["path"] = str(out_dir)
    evaluator.source = str(out_dir)
    return evaluator


def train_evaluator(config: Config, dataset_dir: str | Path, out_dir: str | Path, progress: bool = True) -> Evaluator:
    """Train the evaluator on the dataset folder's train split and save it into out_dir."""
    from l2emg.data.formats import load_dataset

    return train_evaluator_on(config, load_dataset(dataset_dir), out_dir, progress)
