"""The L²-EMG streams: a dataset cut into eight subsets learned one after another.

Two splits, as the paper's Table 1:

* **Unseen** — one subset per scenario. "Each subset has a primary scenario with fewer motions from
  others": every motion goes to its own scenario's subset with probability
  `primary_fraction` (config.stream.primary_fraction, 0.85 by default) and otherwise to one of the
  other seven subsets, chosen uniformly. The draw is seeded, so the subsets are fixed for a seed.
* **Mixed** — the motions shuffled (seeded) and cut into eight near-equal subsets ("Scenario 1..8"),
  the last taking the remainder (Table 1: 7 × 2489 + 2493).

Inside each subset, train/val/test come from each motion's *global* split (`l2emg.data.splits`),
so each subset is ≈ 0.8/0.05/0.15 as in the paper, held-out (scenario, emotion) pairs are always
test motions, and the tokenizer and evaluator, trained on the global train split, never see a
stream test motion.

Orders: the subsets are the same for every order; only their sequence changes.
  order 1: the paper's order (SCENARIOS)
  order 2: Game, Acrobatics, Daily Life, Instrument Play, Shows, Sports, Animation, Dance
  order 3: Animation, Dance, Instrument Play, Sports, Acrobatics, Game, Shows, Daily Life
For the Mixed split an order permutes subsets 1..8 by the same index permutation.

Every subset is turned into instruction samples with the paper's instruction, one per caption.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from l2emg.data.layout import SPLITS
from l2emg.data.reader import MotionDataset
from l2emg.errors import DataError
from l2emg.labels import SCENARIOS
from l2emg.utils.io import save_json

INSTRUCTION = "Generate a motion sequence that aligns with the following emotional text description."
STREAM_SPLITS: tuple[str, ...] = ("unseen", "mixed")
NUM_SUBSETS = len(SCENARIOS)

# Fixed scenario orders (order 1 = the paper's). Each is a permutation of SCENARIOS.
SCENARIO_ORDERS: dict[int, tuple[str, ...]] = {
    1: SCENARIOS,
    2: ("Game", "Acrobatics", "Daily Life", "Instrument Play", "Shows", "Sports", "Animation", "Dance"),
    3: ("Animation", "Dance", "Instrument Play", "Sports", "Acrobatics", "Game", "Shows", "Daily Life"),
}
for _order in SCENARIO_ORDERS.values():
    assert sorted(_order) == sorted(SCENARIOS)
# The same orders as index permutations (used for the Mixed split's numbered subsets).
ORDER_PERMUTATIONS: dict[int, tuple[int, ...]] = {
    k: tuple(SCENARIOS.index(s) for s in order) for k, order in SCENARIO_ORDERS.items()
}


@dataclass(frozen=True)
class InstructionSample:
    """One training/evaluation example for the language model."""

    instruction: str
    caption: str
    emotion: str | None
    scenario: str | None
    motion_id: str
    subset: str


@dataclass
class Subset:
    """One step D_i of the stream: motion ids per part, sorted."""

    name: str
    primary_scenario: str | None
    train: list[str]
    val: list[str]
    test: list[str]
    dataset: MotionDataset | None = field(default=None, repr=False, compare=False)

    def ids(self, part: str) -> list[str]:
        if part not in SPLITS:
            raise ValueError(f"part must be one of {SPLITS}, got {part!r}")
        return getattr(self, part)

    def all_ids(self) -> list[str]:
        return self.train + self.val + self.test

    def __len__(self) -> int:
        return len(self.train) + len(self.val) + len(self.test)

    def instruction_samples(self, part: str) -> list[InstructionSample]:
        """One sample per caption of each motion in `part` (train/val/test), in id order."""
        if self.dataset is None:
            raise DataError(f"subset {self.name!r} has no dataset attached; load the stream with its dataset")
        samples = []
        for motion_id in self.ids(part):
            record = self.dataset.by_id(motion_id)
            for caption in record.captions:
                samples.append(InstructionSample(INSTRUCTION, caption.text, record.emotion, record.scenario,
                                                 motion_id, self.name))
        return samples

    def scenario_mix(self) -> dict[str | None, int]:
        """Motions per scenario in this subset (needs the dataset)."""
        if self.dataset is None:
            raise DataError(f"subset {self.name!r} has no dataset attached")
        mix: dict[str | None, int] = {}
        for motion_id in self.all_ids():
            scenario = self.dataset.by_id(motion_id).scenario
            mix[scenario] = mix.get(scenario, 0) + 1
        return mix


@dataclass
class Stream:
    """The subsets of one split and order, in training order."""

    split: str
    order: int
    seed: int
    primary_fraction: float
    subsets: list[Subset]
    dataset_fingerprint: str
    dataset_root: str = ""

    def __len__(self) -> int:
        return len(self.subsets)

    def __iter__(self):
        return iter(self.subsets)

    def subset(self, name: str) -> Subset:
        for s in self.subsets:
            if s.name == name:
                return s
        raise KeyError(f"stream has no subset {name!r}; subsets: {[s.name for s in self.subsets]}")

    def summary(self) -> list[dict[str, Any]]:
        """One row per subset: sizes of train/val/test, the primary share and the scenario mix."""
        rows = []
        for index, subset in enumerate(self.subsets, 1):
            row: dict[str, Any] = {
                "step": index, "name": subset.name, "primary_scenario": subset.primary_scenario,
                "train": len(subset.train), "val": len(subset.val), "test": len(subset.test), "total": len(subset),
            }
            if subset.dataset is not None:
                mix = subset.scenario_mix()
                row["scenario_mix"] = {s: mix.get(s, 0) for s in SCENARIOS if mix.get(s, 0)}
                if None in mix:
                    row["scenario_mix"]["(unlabelled)"] = mix[None]
                if subset.primary_scenario is not None:
                    row["primary_share"] = round(mix.get(subset.primary_scenario, 0) / max(len(subset), 1), 3)
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "l2emg-stream", "version": 1, "split": self.split, "order": self.order, "seed": self.seed,
            "primary_fraction": self.primary_fraction, "instruction": INSTRUCTION,
            "scenario_order": [s.primary_scenario for s in self.subsets] if self.split == "unseen" else None,
            "dataset": {"root": self.dataset_root, "fingerprint": self.dataset_fingerprint},
            "subsets": [{"name": s.name, "primary_scenario": s.primary_scenario, "train": s.train, "val": s.val,
                         "test": s.test} for s in self.subsets],
        }

    def save(self, path: str | Path) -> None:
        save_json(path, self.to_dict())


def dataset_fingerprint(dataset: MotionDataset) -> str:
    """A short hash of (id, split, scenario) over the dataset: a saved stream checks it on load."""
    digest = hashlib.sha256()
    for r in dataset.records:
        digest.update(f"{r.motion_id}|{r.split}|{r.scenario}\n".encode())
    return digest.hexdigest()[:16]


def _rng(seed: int, purpose: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}|{purpose}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _parts(dataset: MotionDataset, ids: Iterable[str]) -> dict[str, list[str]]:
    parts: dict[str, list[str]] = {s: [] for s in SPLITS}
    for motion_id in sorted(ids):
        parts[dataset.by_id(motion_id).split].append(motion_id)
    return parts


def unseen_assignment(dataset: MotionDataset, primary_fraction: float, seed: int) -> dict[str, list[str]]:
    """{scenario: motion ids} for the Unseen split (independent of the order)."""
    unlabelled = [r.motion_id for r in dataset.records if r.scenario not in SCENARIOS]
    if unlabelled:
        raise DataError(f"{dataset.root}: the Unseen split needs a scenario label on every motion; "
                        f"{len(unlabelled)} have none (e.g. {unlabelled[0]!r}); use --split mixed or a label map")
    rng = _rng(seed, "unseen")
    draws = rng.random(len(dataset.records))          # stay in the primary subset?
    others = rng.integers(0, NUM_SUBSETS - 1, len(dataset.records))  # which other subset otherwise
    members: dict[str, list[str]] = {s: [] for s in SCENARIOS}
    for record, draw, other in zip(dataset.records, draws, others):
        own = SCENARIOS.index(record.scenario)
        target = own if draw < primary_fraction else (int(other) + (int(other) >= own))
        members[SCENARIOS[target]].append(record.motion_id)
    return members


def mixed_assignment(dataset: MotionDataset, seed: int) -> list[list[str]]:
    """Eight near-equal random subsets; the last one takes the remainder (as Table 1)."""
    ids = [r.motion_id for r in dataset.records]
    if len(ids) < NUM_SUBSETS:
        raise DataError(f"{dataset.root}: {len(ids)} motions cannot fill {NUM_SUBSETS} subsets")
    shuffled = [ids[i] for i in _rng(seed, "mixed").permutation(len(ids))]
    size = len(ids) // NUM_SUBSETS
    return [shuffled[i * size:(i + 1) * size] if i < NUM_SUBSETS - 1 else shuffled[i * size:]
            for i in range(NUM_SUBSETS)]


def build_stream(dataset: MotionDataset, split: str = "unseen", order: int = 1, seed: int = 0,
                 primary_fraction: float = 0.85) -> Stream:
    """The L²-EMG stream of `dataset` for a split (unseen|mixed) and scenario order (1..3)."""
    if split not in STREAM_SPLITS:
        raise DataError(f"stream split must be one of {STREAM_SPLITS}, got {split!r}")
    if order not in SCENARIO_ORDERS:
        raise DataError(f"stream order must be one of {sorted(SCENARIO_ORDERS)}, got {order!r}")
    if not 0.0 < primary_fraction <= 1.0:
        raise DataError(f"primary_fraction must be in (0, 1], got {primary_fraction}")
    subsets = []
    if split == "unseen":
        members = unseen_assignment(dataset, primary_fraction, seed)
        for scenario in SCENARIO_ORDERS[order]:
            parts = _parts(dataset, members[scenario])
            subsets.append(Subset(scenario, scenario, parts["train"], parts["val"], parts["test"], dataset))
    else:
        chunks = mixed_assignment(dataset, seed)
        for index in ORDER_PERMUTATIONS[order]:
            parts = _parts(dataset, chunks[index])
            subsets.append(Subset(f"Scenario {index + 1}", None, parts["train"], parts["val"], parts["test"],
                                  dataset))
    return Stream(split, order, seed, primary_fraction, subsets, dataset_fingerprint(dataset), str(dataset.root))


def stream_from_config(dataset: MotionDataset, stream_config: Any) -> Stream:
    """build_stream with the fields of a StreamConfig."""
    return build_stream(dataset, stream_config.split, stream_config.order, stream_config.seed,
                        stream_config.primary_fraction)


def load_stream(path: str | Path, dataset: MotionDataset | None = None) -> Stream:
    """Read a saved stream; with `dataset`, check it is the same dataset and attach it to the subsets."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: stream file not found") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(raw, dict) or raw.get("format") != "l2emg-stream":
        raise DataError(f"{path}: not an l2emg stream file")
    try:
        subsets = [Subset(s["name"], s["primary_scenario"], list(s["train"]), list(s["val"]), list(s["test"]))
                   for s in raw["subsets"]]
        stream = Stream(raw["split"], int(raw["order"]), int(raw["seed"]), float(raw["primary_fraction"]),
                        subsets, raw["dataset"]["fingerprint"], raw["dataset"].get("root", ""))
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{path}: malformed stream file ({err!r})") from err
    if dataset is not None:
        fingerprint = dataset_fingerprint(dataset)
        if fingerprint != stream.dataset_fingerprint:
            raise DataError(f"{path}: stream was built from another dataset (fingerprint "
                            f"{stream.dataset_fingerprint}, {dataset.root} has {fingerprint})")
        for subset in subsets:
            subset.dataset = dataset
    return stream
