"""Tests for the L²-EMG streams (Unseen and Mixed splits, scenario orders, instruction samples)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from l2emg.data.reader import load_dataset
from l2emg.data.stream import (
    INSTRUCTION,
    SCENARIO_ORDERS,
    build_stream,
    load_stream,
    stream_from_config,
)
from l2emg.errors import DataError
from l2emg.labels import SCENARIOS
from test_formats import make_toy_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream_ds")
    make_toy_dataset(root, per_cell=4, scenarios=SCENARIOS, frames=(40, 44))  # 8 × 7 × 4 = 224 motions
    return load_dataset(root)


def test_orders_are_fixed_permutations():
    assert SCENARIO_ORDERS[1] == SCENARIOS
    assert SCENARIO_ORDERS[2] != SCENARIOS and SCENARIO_ORDERS[3] != SCENARIOS
    for order in SCENARIO_ORDERS.values():
        assert sorted(order) == sorted(SCENARIOS)


def test_unseen_subsets_have_a_primary_scenario_and_follow_global_splits(dataset):
    stream = build_stream(dataset, "unseen", order=1, seed=0, primary_fraction=0.85)
    assert [s.name for s in stream.subsets] == list(SCENARIOS)
    all_ids = [i for s in stream.subsets for i in s.all_ids()]
    assert sorted(all_ids) == sorted(r.motion_id for r in dataset.records)  # a partition
    stayed = 0
    for subset in stream.subsets:
        assert subset.primary_scenario == subset.name
        mix = subset.scenario_mix()
        assert max(mix, key=mix.get) == subset.primary_scenario  # primary dominates
        stayed += mix.get(subset.primary_scenario, 0)
        for part in ("train", "val", "test"):
            assert all(dataset.by_id(i).split == part for i in subset.ids(part))
            assert subset.ids(part) == sorted(subset.ids(part))
    assert 0.75 < stayed / len(dataset) < 0.95  # ≈ primary_fraction
    # Held-out pairs are test motions wherever they land.
    for subset in stream.subsets:
        assert not [i for i in subset.train if (dataset.by_id(i).scenario, dataset.by_id(i).emotion) == ("Sports", "sad")]
    assert build_stream(dataset, "unseen", primary_fraction=1.0).subsets[0].scenario_mix() == {"Daily Life": 28}


def test_orders_reorder_the_same_subsets_and_seed_changes_them(dataset):
    one = build_stream(dataset, "unseen", order=1, seed=0)
    for order in (2, 3):
        other = build_stream(dataset, "unseen", order=order, seed=0)
        assert [s.name for s in other.subsets] == list(SCENARIO_ORDERS[order])
        for subset in other.subsets:
            assert subset.all_ids() == one.subset(subset.name).all_ids()
    again = build_stream(dataset, "unseen", order=1, seed=0)
    assert [s.all_ids() for s in again.subsets] == [s.all_ids() for s in one.subsets]
    changed = build_stream(dataset, "unseen", order=1, seed=1)
    assert [s.all_ids() for s in changed.subsets] != [s.all_ids() for s in one.subsets]


def test_mixed_subsets_are_near_equal_and_mixed(dataset):
    stream = build_stream(dataset, "mixed", order=1, seed=0)
    sizes = [len(s) for s in stream.subsets]
    assert sizes[:-1] == [len(dataset) // 8] * 7 and sum(sizes) == len(dataset)
    assert all(s.primary_scenario is None for s in stream.subsets)
    assert all(len(s.scenario_mix()) >= 4 for s in stream.subsets)  # scenarios are mixed
    ordered = build_stream(dataset, "mixed", order=2, seed=0)
    assert sorted(s.name for s in ordered.subsets) == sorted(s.name for s in stream.subsets)
    assert [s.name for s in ordered.subsets] != [s.name for s in stream.subsets]


def test_instruction_samples_one_per_caption(dataset):
    subset = build_stream(dataset, "unseen").subsets[1]
    samples = subset.instruction_samples("train")
    assert len(samples) == sum(len(dataset.by_id(i).captions) for i in subset.train)
    sample = samples[0]
    assert sample.instruction == INSTRUCTION
    assert sample.subset == "Sports" and sample.motion_id in subset.train
    assert sample.caption in [c.text for c in dataset.by_id(sample.motion_id).captions]
    assert sample.emotion == dataset.by_id(sample.motion_id).emotion


def test_summary_and_save_load_round_trip(dataset, tmp_path: Path):
    stream = build_stream(dataset, "unseen", order=3, seed=2)
    rows = stream.summary()
    assert [r["name"] for r in rows] == list(SCENARIO_ORDERS[3])
    assert sum(r["total"] for r in rows) == len(dataset)
    assert all(0.5 < r["primary_share"] <= 1.0 for r in rows)
    path = tmp_path / "stream.json"
    stream.save(path)
    loaded = load_stream(path, dataset)
    assert [(s.name, s.train, s.val, s.test) for s in loaded.subsets] == \
           [(s.name, s.train, s.val, s.test) for s in stream.subsets]
    assert loaded.subsets[0].instruction_samples("test")
    with pytest.raises(DataError, match="no dataset attached"):
        load_stream(path).subsets[0].instruction_samples("test")
    # A stream refuses a different dataset.
    other_root = tmp_path / "other"
    make_toy_dataset(other_root, per_cell=1)
    with pytest.raises(DataError, match="another dataset"):
        load_stream(path, load_dataset(other_root))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="not valid JSON"):
        load_stream(tmp_path / "bad.json")


def test_bad_arguments_and_config_helper(dataset):
    from l2emg.config import StreamConfig

    with pytest.raises(DataError):
        build_stream(dataset, "random")
    with pytest.raises(DataError):
        build_stream(dataset, "unseen", order=4)
    stream = stream_from_config(dataset, StreamConfig(split="mixed", order=2, seed=5))
    assert stream.split == "mixed" and stream.order == 2 and stream.seed == 5
    assert Counter(len(s) for s in stream.subsets).most_common(1)[0][0] == len(dataset) // 8
