"""Typed configuration, loaded from YAML profiles.

A profile (`tiny` for tests, `default` for a CPU machine, `paper` for LLaMA-2-7B on GPUs) is a YAML
file in `l2emg/configs/`; any other YAML path works too. Every field has a default, a profile only
states what it changes, and unknown or mistyped fields are refused with the file and field named.
Every run saves its resolved config (`config.yaml` in the run directory).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from l2emg.data.labels import EMOTIONS, SCENARIOS
from l2emg.errors import ConfigError

PROFILE_DIR = Path(__file__).parent / "configs"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Section):
    """The embedded procedural emotional-motion dataset."""

    seed: int = 0
    num_motions: int = Field(3200, ge=16, description="total motions, spread over scenarios as Table 1")
    min_frames: int = Field(40, ge=8)
    max_frames: int = Field(196, ge=8)
    captions_per_motion: int = Field(3, ge=1)
    split_ratios: tuple[float, float, float] = (0.8, 0.05, 0.15)
    # (scenario, emotion) pairs kept out of training: they appear only in that scenario's test split,
    # so emotion transfer across scenarios can be measured.
    holdout_pairs: list[tuple[str, str]] = [
        ("Sports", "sad"), ("Dance", "angry"), ("Shows", "fearful"), ("Instrument Play", "happy"),
    ]

    @field_validator("holdout_pairs")
    @classmethod
    def _known_pairs(cls, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        for scenario, emotion in pairs:
            if scenario not in SCENARIOS:
                raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
            if emotion not in EMOTIONS:
                raise ValueError(f"unknown emotion {emotion!r}; known: {', '.join(EMOTIONS)}")
        return pairs

    @model_validator(mode="after")
    def _check(self) -> "DataConfig":
        if self.min_frames > self.max_frames:
            raise ValueError("min_frames must not exceed max_frames")
        if abs(sum(self.split_ratios) - 1.0) > 1e-6:
            raise ValueError(f"split_ratios must sum to 1, got {self.split_ratios}")
        return self


class StreamConfig(Section):
    """How the dataset becomes a stream of scenario subsets (the L²-EMG Unseen / Mixed splits)."""

    split: str = Field("unseen", pattern="^(unseen|mixed)$")
    order: int = Field(1, ge=1, le=3)
    # In the Unseen split each subset holds this fraction of its primary scenario's motions' share;
    # the rest of a subset comes from other scenarios.
    primary_fraction: float = Field(0.85, gt=0.0, le=1.0)
    seed: int = 0


class PreviewConfig(Section):
    """Pictures of motions."""

    fps: int = Field(20, ge=1)
    format: str = Field("gif", pattern="^(gif|mp4)$")
    per_cell: int = Field(1, ge=1, description="motions rendered per scenario × emotion cell")
    size: int = Field(240, ge=64, description="pixel size of one panel")


class TokenizerConfig(Section):
    """The T2M-GPT-style VQ-VAE motion tokenizer (filled in by the tokenizer issue)."""

    codebook_size: int = 512
    code_dim: int = 512
    width: int = 512
    down_t: int = 2


class EvaluatorConfig(Section):
    """The evaluator: text/motion embeddings and the emotion classifier (the evaluator issue)."""

    embed_dim: int = 512


class Config(Section):
    profile: str = "default"
    data: DataConfig = DataConfig()
    stream: StreamConfig = StreamConfig()
    preview: PreviewConfig = PreviewConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    evaluator: EvaluatorConfig = EvaluatorConfig()


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def profile_path(profile: str) -> Path:
    """A profile name (`tiny`, `default`, …) or a path to a YAML file."""
    candidate = Path(profile)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.exists():
            raise ConfigError(f"{candidate}: config file not found")
        return candidate
    path = PROFILE_DIR / f"{profile}.yaml"
    if not path.exists():
        raise ConfigError(f"unknown profile {profile!r}; available: {', '.join(available_profiles())}")
    return path


def _format_validation_error(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: invalid config"]
    for e in err.errors():
        field = ".".join(str(x) for x in e["loc"]) or "(top level)"
        lines.append(f"  field '{field}': {e['msg']}")
    return "\n".join(lines)


def _deep_update(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_update(out[key], value)
        else:
            out[key] = value
    return out


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """['data.num_motions=100', 'stream.split=mixed'] -> nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.field=value")
        key, value = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(value)
    return out


def load_config(profile: str = "default", overrides: list[str] | None = None) -> Config:
    path = profile_path(profile)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    raw.setdefault("profile", path.stem)
    if overrides:
        raw = _deep_update(raw, parse_overrides(overrides))
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(path, err)) from err


def save_config(config: Config, path: str | Path) -> None:
    from l2emg.utils.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))


def read_saved_config(path: str | Path) -> Config:
    """Load a run's resolved config.yaml."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Config.model_validate(raw)
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: config file not found") from err
    except ValidationError as err:
        raise ConfigError(_format_validation_error(path, err)) from err
