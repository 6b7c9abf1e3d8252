"""Label maps: a foreign dataset's emotion/scenario names translated onto ours (`LabelMap`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from l2emg.errors import DataError
from l2emg.labels import EMOTIONS, SCENARIOS


@dataclass
class LabelMap:
    """Maps a dataset's emotion/scenario names onto EMOTIONS/SCENARIOS (case-insensitive).

    Built from `{"emotion": {...}, "scenario": {...}}` or from one flat `{foreign: ours}` dict in
    which each target says by itself whether it is an emotion or a scenario. A value of null maps the
    label to None (unlabelled). Names already in our label sets pass through unchanged.
    """

    emotion: dict[str, str | None] = field(default_factory=dict)
    scenario: dict[str, str | None] = field(default_factory=dict)
    source: str = "(none)"

    @classmethod
    def from_any(cls, spec: "LabelMap | Mapping[str, Any] | str | Path | None") -> "LabelMap":
        if spec is None:
            return cls()
        if isinstance(spec, LabelMap):
            return spec
        source = "(dict)"
        if isinstance(spec, (str, Path)):
            path = Path(spec)
            source = str(path)
            if not path.exists():
                raise DataError(f"{path}: label map file not found")
            from l2emg.utils.io import read_text

            text = read_text(path, "a label map (JSON/YAML)")
            try:
                spec = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
            except (json.JSONDecodeError, yaml.YAMLError) as err:
                raise DataError(f"{path}: label map is not valid JSON/YAML ({' '.join(str(err).split())})") from err
        if not isinstance(spec, Mapping):
            raise DataError(f"{source}: label map must be a mapping of names")
        out = cls(source=source)
        sections = {k: v for k, v in spec.items() if k in ("emotion", "scenario")}
        if sections and all(isinstance(v, Mapping) for v in sections.values()):
            extra = sorted(set(spec) - set(sections))
            if extra:
                raise DataError(f"{source}: label map may only have 'emotion' and 'scenario' sections, got {extra}")
            for kind, known in (("emotion", EMOTIONS), ("scenario", SCENARIOS)):
                for foreign, ours in dict(sections.get(kind) or {}).items():
                    target = None if ours is None else _canonical(ours, known)
                    if ours is not None and target is None:
                        raise DataError(f"{source}: label map sends {kind} {foreign!r} to {ours!r}, which is not "
                                        f"a known {kind} ({', '.join(known)})")
                    getattr(out, kind)[str(foreign).strip().lower()] = target
            return out
        # A flat map: each target says by itself whether it is an emotion or a scenario.
        for foreign, ours in spec.items():
            key = str(foreign).strip().lower()
            if ours is None:
                out.emotion[key] = out.scenario[key] = None
            elif _canonical(ours, EMOTIONS) is not None:
                out.emotion[key] = _canonical(ours, EMOTIONS)
            elif _canonical(ours, SCENARIOS) is not None:
                out.scenario[key] = _canonical(ours, SCENARIOS)
            else:
                raise DataError(f"{source}: label map sends {foreign!r} to {ours!r}, which is neither an emotion "
                                f"({', '.join(EMOTIONS)}) nor a scenario ({', '.join(SCENARIOS)})")
        return out

    def map(self, kind: str, value: Any) -> tuple[str | None, bool]:
        """(our label or None, ok). ok is False when the value is not a known label after mapping."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return None, True
        table = self.emotion if kind == "emotion" else self.scenario
        known = EMOTIONS if kind == "emotion" else SCENARIOS
        key = str(value).strip().lower()
        if key in table:
            return table[key], True
        canonical = _canonical(str(value), known)
        return (canonical, True) if canonical is not None else (str(value), False)


def _canonical(name: Any, known: Sequence[str]) -> str | None:
    key = str(name).strip().lower().replace("_", " ")
    for label in known:
        if label.lower() == key:
            return label
    return None

