"""Scenarios learned after a finished stream (`l2emg learn`): their record and how a run reads them back.

A finished method run can keep learning: each `l2emg learn` appends one scenario as step N (after the
stream's N steps). What it needs later — to evaluate that scenario again after a further learn, or
to resume a killed one — is kept inside the method run (`runs.MethodRunDir`), so the run stays
self-contained when it is moved or shared:

    learned.json                [{"scenario", "step", "source", "motions", "tokenizer": {...}}, …]
    learned/<slug>/data/        a copy of the dataset the scenario was learned from
    learned/<slug>/codes.json   its motions as codes of the run's tokenizer
"""

from __future__ import annotations

from typing import Any

from l2emg.data.reader import MotionDataset, load_dataset
from l2emg.data.stream import Subset
from l2emg.errors import CheckpointError, DataError
from l2emg.runs import MethodRunDir
from l2emg.utils.io import load_json, save_json


def read_learned(method_run: MethodRunDir) -> list[dict[str, Any]]:
    """The learned scenarios of a method run, in the order they were learned ([] when none)."""
    path = method_run.learned_path
    if not path.exists():
        return []
    try:
        entries = load_json(path)
    except ValueError as err:
        raise CheckpointError(f"{path}: unreadable ({err})") from err
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "scenario" in e and "step" in e
                                                 for e in entries):
        raise CheckpointError(f"{path}: expected a list of {{\"scenario\", \"step\", …}} entries")
    return entries


def record_learned(method_run: MethodRunDir, entry: dict[str, Any]) -> None:
    """Append (or replace, for the same scenario) one entry of learned.json, atomically."""
    entries = [e for e in read_learned(method_run) if e["scenario"] != entry["scenario"]]
    save_json(method_run.learned_path, [*entries, entry])


def learned_dataset(method_run: MethodRunDir, scenario: str) -> MotionDataset:
    path = method_run.learned_data_dir(scenario)
    if not path.is_dir():
        raise CheckpointError(f"{method_run.learned_path}: the data of learned scenario {scenario!r} is missing "
                              f"({path}); copy it back or remove the entry and the later checkpoints")
    return load_dataset(path)


def learned_subset(method_run: MethodRunDir, entry: dict[str, Any]) -> tuple[Subset, dict[str, list[int]]]:
    """The learned scenario as one more subset of the stream (its own dataset attached) and its codes."""
    scenario = str(entry["scenario"])
    dataset = learned_dataset(method_run, scenario)
    codes_path = method_run.learned_codes_path(scenario)
    try:
        codes = load_json(codes_path)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{codes_path}: codes of learned scenario {scenario!r} unreadable ({err})") from err
    parts = {split: dataset.ids(split) for split in ("train", "val", "test")}
    if not parts["train"]:
        raise DataError(f"{dataset.root}: no motions in the train split")
    return Subset(scenario, None, parts["train"], parts["val"], parts["test"], dataset), codes
