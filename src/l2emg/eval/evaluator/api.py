"""`Evaluator`: a trained, frozen evaluator as the metrics use it, and its checkpoint folder.

    evaluator = Evaluator.from_pretrained("runs/default/evaluator")
    motion_emb = evaluator.embed_motion([f1, f2, ...])      # raw (T_i, 263) -> (N, embed_dim)
    text_emb = evaluator.embed_text(["a person walks sadly"])
    emotions = evaluator.predict_emotion([f1, f2, ...])

Embeddings are unit vectors times `embedding_scale`, so metrics are Euclidean distances between
them. `embed_motion` takes *raw* features only, and refuses input whose dimensions are wrong, that
contains NaN/inf, or whose statistics say it was normalised already (the most common cause of
wrong scores in the field).

Checkpoint folder: `evaluator.safetensors` (weights and statistics) + `evaluator.json` (config,
labels, text-model probe, training summary).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from l2emg.config import EvaluatorConfig
from l2emg.errors import CheckpointError, DataError
from l2emg.eval.evaluator.net import MOTION_DIMS, EvaluatorNet, offset_deviation, pad_motions
from l2emg.eval.text_encoder import PROBE_SENTENCE, FrozenTextEncoder
from l2emg.motion.features import FEATURE_DIM
from l2emg.utils.io import atomic_write_bytes, load_json, save_json

WEIGHTS_FILE = "evaluator.safetensors"
META_FILE = "evaluator.json"
FORMAT_VERSION = 1


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
