"""Run directories: one folder per run holding its resolved config, a manifest of finished stages,
checkpoints, metrics and figures. Re-running a command resumes from the manifest."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from l2emg.config import Config, read_saved_config, save_config
from l2emg.errors import ConfigError
from l2emg.utils.io import load_json, save_json


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    # Standard sub-folders of a run.
    @property
    def data_dir(self) -> Path:
        return self.path / "data"

    @property
    def previews_dir(self) -> Path:
        return self.path / "previews"

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def subdir(self, name: str) -> Path:
        path = self.path / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def init(self, config: Config) -> None:
        """Create the run folder and save its resolved config; refuse to mix two configs in one run.

        Only the sections the shared stages depend on must match (SHARED_SECTIONS); methods trained
        inside the run keep their own resolved config next to their results."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.config_path.exists():
            saved = read_saved_config(self.config_path)
            changed = config_differences(saved, config, SHARED_SECTIONS)
            if changed:
                raise ConfigError(
                    f"{self.config_path}: this run was started with another config "
                    f"(differs in: {', '.join(changed)}); use a new --run-dir or the same settings"
                )
        else:
            save_config(config, self.config_path)

    def config(self) -> Config:
        return read_saved_config(self.config_path)

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"stages": {}}
        return load_json(self.manifest_path)

    def is_done(self, stage: str) -> bool:
        return stage in self.manifest()["stages"]

    def mark_done(self, stage: str, **info: Any) -> None:
        manifest = self.manifest()
        manifest["stages"][stage] = {"finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
        save_json(self.manifest_path, manifest)

    def stage_info(self, stage: str) -> dict[str, Any]:
        return self.manifest()["stages"].get(stage, {})


# Config sections that shape the shared stages of a run (data, tokenizer, evaluator, language model).
SHARED_SECTIONS = ("data", "tokenizer", "evaluator", "lm")


# Fields of those sections that only steer generation (free to differ between a run and a later command).
GENERATION_FIELDS = ("lm.greedy", "lm.temperature", "lm.top_k", "lm.generation_batch_size")


def config_differences(saved: Config, wanted: Config, sections: tuple[str, ...] | None = None) -> list[str]:
    """Dotted names of the fields that differ (within `sections` — there ignoring GENERATION_FIELDS —
    or everywhere)."""
    a, b = saved.model_dump(), wanted.model_dump()
    if sections is None:
        return _diff(a, b)
    a = {k: a[k] for k in sections}
    b = {k: b[k] for k in sections}
    return [name for name in _diff(a, b) if name not in GENERATION_FIELDS]


def _diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}")
    return out
