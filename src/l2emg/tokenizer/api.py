"""`MotionTokenizer`: a trained VQ-VAE with its normalisation, as the rest of l2emg uses it.

    tok = MotionTokenizer.from_pretrained("runs/default/tokenizer")
    codes, code_mask = tok.encode(features, lengths)      # (B, T, 263) raw -> (B, ceil(T/4)) int64
    feats, frame_mask = tok.decode(codes, code_mask)      # -> (B, 4N, 263) raw features
    code_lists = tok.encode_motions([f1, f2, ...])         # list of (T_i, 263) -> list of (N_i,) arrays
    feature_lists = tok.decode_codes(code_lists)           # -> list of (4 N_i, 263) arrays

Features are raw (unnormalised) HumanML3D features by default; the tokenizer normalises them with
the Mean/Std it was trained with (stored in the checkpoint) and checks they look right
(`l2emg.tokenizer.checks`). A sequence of T frames gives ceil(T/4) codes: it is padded to a
multiple of 4 by repeating its last frame, and decoding gives those 4·ceil(T/4) frames back.

On disk (a folder): `model.safetensors` (weights, codebook, normalisation) and `config.json`
(tokenizer config, feature bounds, training summary). Loading refuses a folder whose model
config differs from the one asked for, naming the fields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import Tensor

from l2emg.config import TokenizerConfig
from l2emg.errors import CheckpointError, DataError
from l2emg.motion.features import FEATURE_DIM
from l2emg.tokenizer.checks import check_finite, check_shape, check_statistics, frame_mask
from l2emg.tokenizer.vqvae import VQVAE
from l2emg.utils.io import atomic_write_bytes, save_json

FORMAT = "l2emg-motion-tokenizer"
FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def config_differences(saved: TokenizerConfig, wanted: TokenizerConfig, fields: Sequence[str]) -> list[str]:
    """`field: saved -> wanted` for every listed field that differs."""
    return [
        f"tokenizer.{name}: {getattr(saved, name)!r} in the checkpoint, {getattr(wanted, name)!r} in the config"
        for name in fields
        if getattr(saved, name) != getattr(wanted, name)
    ]


class MotionTokenizer:
    """Raw features (B, T, 263) ↔ motion codes (B, ceil(T / 4)); see the module docstring."""

    def __init__(
        self,
        model: VQVAE,
        mean: np.ndarray,
        std: np.ndarray,
        feature_bounds: dict[str, float] | None = None,
        info: dict[str, Any] | None = None,
    ):
        self.model = model.eval()
        self.config: TokenizerConfig = model.cfg
        self.mean = torch.as_tensor(np.asarray(mean, dtype=np.float32))
        self.std = torch.as_tensor(np.asarray(std, dtype=np.float32))
        if self.mean.shape != (FEATURE_DIM,) or self.std.shape != (FEATURE_DIM,):
            raise ValueError(f"mean/std must be ({FEATURE_DIM},), got {tuple(self.mean.shape)}/{tuple(self.std.shape)}")
        self.feature_bounds = dict(feature_bounds or {})
        self.info = dict(info or {})

    # ---- properties ---------------------------------------------------------------------------

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def downsample(self) -> int:
        """Frames per code (4 by default)."""
        return self.config.downsample

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def codebook(self) -> Tensor:
        """(K, D) code vectors (a copy)."""
        return self.model.quantizer.codebook.detach().clone()

    def to(self, device: str | torch.device) -> "MotionTokenizer":
        self.model.to(device)
        self.mean, self.std = self.mean.to(device), self.std.to(device)
        return self

    def num_codes(self, num_frames: int) -> int:
        """Codes for a motion of `num_frames` feature rows: ceil(T / 4)."""
        return -(-int(num_frames) // self.downsample)

    # ---- normalisation ------------------------------------------------------------------------

    def normalize(self, features: Tensor) -> Tensor:
        return (features - self.mean) / self.std

    def denormalize(self, features: Tensor) -> Tensor:
        return features * self.std + self.mean

    # ---- batched API --------------------------------------------------------------------------

    def _as_batch(self, features: Any, lengths: Any, source: str) -> tuple[Tensor, Tensor]:
        x = features if isinstance(features, Tensor) else torch.from_numpy(np.array(features, copy=True))
        if not torch.is_floating_point(x):
            x = x.float()
        check_shape(x, source)
        x = x.to(device=self.device, dtype=torch.float32)
        if lengths is None:
            lengths_t = torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=self.device)
        else:
            lengths_t = torch.as_tensor(lengths, dtype=torch.long, device=self.device).reshape(-1)
            if lengths_t.shape[0] != x.shape[0]:
                raise DataError(f"{source}: {lengths_t.shape[0]} lengths for a batch of {x.shape[0]} motions")
            if bool((lengths_t < 1).any()) or bool((lengths_t > x.shape[1]).any()):
                raise DataError(f"{source}: lengths must lie in [1, {x.shape[1]}], got {lengths_t.tolist()}")
        if x.shape[1] == 0:
            raise DataError(f"{source}: motions with no frames cannot be encoded")
        return x, lengths_t

    @torch.no_grad()
    def encode(
        self,
        features: Tensor | np.ndarray,
        lengths: Tensor | Sequence[int] | None = None,
        *,
        normalized: bool = False,
        check: bool = True,
        source: str = "features",
    ) -> tuple[Tensor, Tensor]:
        """features (B, T, 263) with valid lengths (B,) -> codes (B, N) int64, code_mask (B, N) bool.

        N = ceil(max(lengths) / 4); codes past a motion's ceil(length / 4) are 0 and masked out.
        `normalized=True` means the features were already normalised with this tokenizer's
        Mean/Std. `check=False` skips the statistics test (NaN and shape are always checked).
        """
        x, lengths = self._as_batch(features, lengths, source)
        valid = frame_mask(lengths, x.shape[1])  # (B, T)
        check_finite(x, valid, source)
        if check:
            z = check_statistics(x, normalized, self.mean, self.std, valid, self.feature_bounds, source)
        else:
            z = x if normalized else self.normalize(x)
        # Pad each motion to a multiple of 4 frames by repeating its last valid frame.
        num_codes = -(-lengths // self.downsample)  # (B,)
        padded_frames = int(num_codes.max()) * self.downsample
        t = torch.arange(padded_frames, device=self.device)
        index = torch.minimum(t[None, :], lengths[:, None] - 1)  # (B, T_pad)
        z = torch.gather(z, 1, index[..., None].expand(-1, -1, FEATURE_DIM))
        mask = frame_mask(num_codes * self.downsample, padded_frames)
        codes = self.model.encode(z, mask)
        return codes, frame_mask(num_codes, codes.shape[1])

    @torch.no_grad()
    def decode(
        self,
        codes: Tensor | np.ndarray,
        code_mask: Tensor | np.ndarray | None = None,
        *,
        denormalize: bool = True,
        source: str = "codes",
    ) -> tuple[Tensor, Tensor]:
        """codes (B, N) int, code_mask (B, N) bool -> features (B, 4N, 263), frame_mask (B, 4N).

        Features are raw (denormalised) unless `denormalize=False`; frames past a motion's end are 0.
        """
        c = torch.as_tensor(np.asarray(codes) if not isinstance(codes, Tensor) else codes)
        if c.ndim != 2:
            raise DataError(f"{source}: expected codes (B, N), got shape {tuple(c.shape)}")
        if c.shape[1] == 0:
            raise DataError(f"{source}: empty code sequences cannot be decoded")
        if torch.is_floating_point(c):
            if not bool((c == c.round()).all()):
                raise DataError(f"{source}: codes must be integers")
        c = c.to(device=self.device, dtype=torch.long)
        if code_mask is None:
            m = torch.ones_like(c, dtype=torch.bool)
        else:
            m = torch.as_tensor(np.asarray(code_mask) if not isinstance(code_mask, Tensor) else code_mask)
            m = m.to(device=self.device, dtype=torch.bool)
            if m.shape != c.shape:
                raise DataError(f"{source}: code mask shape {tuple(m.shape)} differs from codes {tuple(c.shape)}")
        valid_codes = c[m]
        if valid_codes.numel() and (int(valid_codes.min()) < 0 or int(valid_codes.max()) >= self.codebook_size):
            raise DataError(
                f"{source}: codes must lie in [0, {self.codebook_size}), got "
                f"{int(valid_codes.min())}..{int(valid_codes.max())}"
            )
        c = c.masked_fill(~m, 0)
        features = self.model.decode(c, m)  # (B, 4N, F) normalised
        fmask = torch.repeat_interleave(m, self.downsample, dim=1)
        if denormalize:
            features = self.denormalize(features) * fmask[..., None]
        return features, fmask

    # ---- list API -----------------------------------------------------------------------------

    def encode_motions(
        self,
        motions: Sequence[np.ndarray],
        *,
        normalized: bool = False,
        batch_size: int | None = None,
        check: bool = True,
        names: Sequence[str] | None = None,
    ) -> list[np.ndarray]:
        """A list of (T_i, 263) feature arrays -> a list of (ceil(T_i / 4),) int64 code arrays.

        Motions are batched by similar length; `names` (e.g. motion ids) make error messages
        point at the offending motion.
        """
        batch_size = batch_size or self.config.eval_batch_size
        for i, m in enumerate(motions):
            if np.ndim(m) != 2:
                label = names[i] if names else f"motion {i}"
                raise DataError(f"{label}: expected (T, {FEATURE_DIM}) features, got shape {np.shape(m)}")
        order = sorted(range(len(motions)), key=lambda i: len(motions[i]))
        out: list[np.ndarray | None] = [None] * len(motions)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            lengths = [len(motions[i]) for i in chunk]
            batch = np.zeros((len(chunk), max(lengths), np.shape(motions[chunk[0]])[1]), dtype=np.float32)
            for row, i in enumerate(chunk):
                batch[row, : lengths[row]] = motions[i]
            source = f"motions {', '.join(names[i] for i in chunk[:3])}{' …' if len(chunk) > 3 else ''}" if names else "features"
            codes, cmask = self.encode(batch, lengths, normalized=normalized, check=check, source=source)
            for row, i in enumerate(chunk):
                out[i] = codes[row][cmask[row]].cpu().numpy().astype(np.int64)
        return out  # type: ignore[return-value]

    def decode_codes(
        self, code_lists: Sequence[Sequence[int] | np.ndarray], *, batch_size: int | None = None
    ) -> list[np.ndarray]:
        """A list of (N_i,) code sequences -> a list of (4 N_i, 263) float32 raw feature arrays."""
        batch_size = batch_size or self.config.eval_batch_size
        arrays = [np.asarray(c).reshape(-1) for c in code_lists]
        for i, a in enumerate(arrays):
            if a.size == 0:
                raise DataError(f"code sequence {i} is empty")
        order = sorted(range(len(arrays)), key=lambda i: len(arrays[i]))
        out: list[np.ndarray | None] = [None] * len(arrays)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            n = max(len(arrays[i]) for i in chunk)
            codes = np.zeros((len(chunk), n), dtype=np.int64)
            mask = np.zeros((len(chunk), n), dtype=bool)
            for row, i in enumerate(chunk):
                codes[row, : len(arrays[i])] = arrays[i]
                mask[row, : len(arrays[i])] = True
            features, fmask = self.decode(codes, mask, source=f"code sequences {chunk[:3]}")
            for row, i in enumerate(chunk):
                out[i] = features[row][fmask[row]].cpu().numpy().astype(np.float32)
        return out  # type: ignore[return-value]

    # ---- persistence --------------------------------------------------------------------------

    def save_pretrained(self, path: str | Path, training: dict[str, Any] | None = None) -> None:
        """Write `model.safetensors` then `config.json` (which marks the folder complete)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        tensors["normalization.mean"] = self.mean.cpu().contiguous()
        tensors["normalization.std"] = self.std.cpu().contiguous()
        config_json = self.config.model_dump(mode="json")
        metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "config": json.dumps(config_json)}
        atomic_write_bytes(path / MODEL_FILE, save_safetensors(tensors, metadata=metadata))
        info = {**self.info, **({"training": training} if training is not None else {})}
        save_json(
            path / CONFIG_FILE,
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "feature_dim": FEATURE_DIM,
                "tokenizer": config_json,
                "feature_bounds": self.feature_bounds,
                **info,
            },
        )

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        config: TokenizerConfig | None = None,
        device: str | torch.device = "cpu",
    ) -> "MotionTokenizer":
        """Load a tokenizer folder (e.g. `RUN_DIR/tokenizer`).

        With `config`, refuse the folder when any model field (width, codebook size, …) differs.
        """
        path = Path(path)
        config_path, model_path = path / CONFIG_FILE, path / MODEL_FILE
        if not path.is_dir():
            raise CheckpointError(f"{path}: tokenizer folder not found")
        if not config_path.exists() or not model_path.exists():
            missing = [p.name for p in (config_path, model_path) if not p.exists()]
            raise CheckpointError(
                f"{path}: not a finished tokenizer ({', '.join(missing)} missing; is training still running "
                f"or was it interrupted? re-run `l2emg tokenizer train` to resume)"
            )
        try:
            meta = json.loads(config_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{config_path}: not valid JSON ({err})") from err
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise CheckpointError(f"{config_path}: not an l2emg motion tokenizer (format {meta.get('format') if isinstance(meta, dict) else None!r})")
        if meta.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"{config_path}: format_version {meta.get('format_version')!r}, expected {FORMAT_VERSION}")
        try:
            saved = TokenizerConfig.model_validate(meta.get("tokenizer", {}))
        except ValidationError as err:
            raise CheckpointError(f"{config_path}: invalid tokenizer config ({err.errors()[0]['loc']}: {err.errors()[0]['msg']})") from err
        if config is not None:
            diffs = config_differences(saved, config, TokenizerConfig.MODEL_FIELDS)
            if diffs:
                raise CheckpointError(f"{model_path}: checkpoint is from another tokenizer config: " + "; ".join(diffs))
        try:
            tensors = load_safetensors(model_path.read_bytes())
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{model_path}: unreadable safetensors file ({err})") from err
        mean, std = tensors.pop("normalization.mean", None), tensors.pop("normalization.std", None)
        if mean is None or std is None:
            raise CheckpointError(f"{model_path}: normalisation statistics (normalization.mean/std) missing")
        model = VQVAE(saved)
        load_model_state(model, tensors, model_path)
        info = {k: v for k, v in meta.items() if k not in ("format", "format_version", "feature_dim", "tokenizer", "feature_bounds")}
        tokenizer = cls(model, mean.numpy(), std.numpy(), meta.get("feature_bounds") or None, info)
        return tokenizer.to(device)


def load_model_state(model: torch.nn.Module, tensors: dict[str, Tensor], path: Path) -> None:
    """Load `tensors` into `model`, naming the first missing, unexpected or mis-shaped tensor."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: tensors do not match the model"
            + (f"; missing: {', '.join(missing[:5])}" if missing else "")
            + (f"; unexpected: {', '.join(unexpected[:5])}" if unexpected else "")
        )
    for name, value in expected.items():
        if tuple(tensors[name].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{path}: tensor {name} has shape {tuple(tensors[name].shape)}, the model expects {tuple(value.shape)}"
            )
    model.load_state_dict(tensors, strict=True)
