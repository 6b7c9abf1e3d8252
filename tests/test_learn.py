"""`l2emg learn`: a finished ES-MoE run learns one more scenario from a dataset of its own."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from l2emg.cli import main
from l2emg.continual.learn import learn_scenario
from l2emg.continual.trainer import StreamTrainer
from l2emg.data.reader import load_dataset
from l2emg.data.writer import write_dataset
from l2emg.errors import ConfigError
from l2emg.eval.continual_metrics import load_results
from l2emg.generator import load_generator
from l2emg.lm.prompts import prompt_ids
from l2emg.runs import RunDir
from l2emg.utils.io import load_json

NEW_SCENARIO = "Acrobatics"  # not among the two scenarios of the stream below


def _new_data(run: Path, out: Path, scenario: str = NEW_SCENARIO) -> Path:
    """A dataset of its own (HumanML3D layout) holding only `scenario`'s motions of the run's data."""
    source = load_dataset(run / "data")
    records = [r for r in source.records if r.scenario == scenario]
    write_dataset(out, records, {r.motion_id: np.asarray(source.features(r.motion_id)) for r in records},
                  source.mean, source.std, {"name": "new", "feature_convention": "l2emg"},
                  joints={r.motion_id: np.asarray(source.joints(r.motion_id)) for r in records})
    return out


def _gate_means(generator, captions: list[str]) -> torch.Tensor:
    """Mean inference gate weights (E,) of the ES-MoE method behind a generator over `captions`."""
    method = generator.method
    lm = generator.lm
    rows = [prompt_ids(lm.tokenizer, lm.vocab, c) for c in captions]
    length = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), length, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.long)
    for k, r in enumerate(rows):  # left-padded, as generation
        ids[k, length - len(r):] = torch.tensor(r)
        mask[k, length - len(r):] = 1
    return method.gate_weights(ids, mask).float().mean(0)


@pytest.fixture(scope="module")
def esmoe_template(prepared_tiny_run, tiny_config, tmp_path_factory) -> Path:
    """A tiny run with ES-MoE finished over a two-scenario stream (trained once per module)."""
    run = tmp_path_factory.mktemp("learn") / "run"
    shutil.copytree(prepared_tiny_run, run)
    config = tiny_config.model_copy(update={"stream": tiny_config.stream.model_copy(update={"max_subsets": 2})})
    StreamTrainer(RunDir(run), config, "esmoe", "unseen", 1, progress=False).run_stream()
    return run


@pytest.fixture
def finished_esmoe(esmoe_template, tmp_path) -> Path:
    shutil.copytree(esmoe_template, tmp_path / "run")
    return tmp_path / "run"


def test_learn_adds_a_step_keeps_old_experts_and_routes_the_new_scenario(finished_esmoe, tmp_path):
    run = finished_esmoe
    method_dir = run / "methods" / "esmoe-unseen-o1"
    before = load_file(str(method_dir / "checkpoints" / "step_01" / "adapters.safetensors"))
    data = _new_data(run, tmp_path / "new")

    results = learn_scenario(run, "esmoe", data, NEW_SCENARIO, progress=False)

    # One more step, one more row and column.
    assert results["scenarios"][-1] == NEW_SCENARIO and len(results["steps"]) == 3
    perf = load_results(method_dir / "results.json")
    assert perf.matrices["r_precision_top1"].shape == (3, 3)
    assert not np.isnan(perf.matrices["fid"][2]).any()  # the new row covers every scenario
    assert np.isnan(perf.matrices["fid"][0, 2]) and np.isnan(perf.matrices["fid"][1, 2])  # not yet learned then
    assert load_json(method_dir / "adapter.json")["checkpoint"] == "checkpoints/step_02"
    assert (method_dir / "learned" / "acrobatics" / "data" / "dataset.json").exists()
    entry = load_json(method_dir / "learned.json")[0]
    assert entry["step"] == 2 and entry["tokenizer"]["mpjpe_mm"] > 0

    # Older experts and their keys: bit-identical; the dictionary and the reflection memory only grow.
    after = load_file(str(method_dir / "checkpoints" / "step_02" / "adapters.safetensors"))
    old_experts = [k for k in before if k.endswith((".0", ".1")) and (".lora_" in k or k.startswith("gate.keys."))]
    assert len(old_experts) > 8
    for key in old_experts:
        assert torch.equal(before[key], after[key]), key
    assert any(k.endswith("lora_A.2") for k in after) and not any(k.endswith("lora_A.2") for k in before)
    for key in ("cged.dictionary", "gate.reflection_points"):
        assert after[key].shape[0] > before[key].shape[0]
        assert torch.equal(after[key][: before[key].shape[0]], before[key]), key

    # The generator now holds three experts; on the new scenario's test prompts the new one leads.
    generator = load_generator(run, "esmoe")
    learned = load_dataset(method_dir / "learned" / "acrobatics" / "data")
    captions = [learned.by_id(i).captions[0].text for i in learned.ids("test")]
    weights = _gate_means(generator, captions)
    assert weights.shape == (3,)
    assert int(weights.argmax()) == 2, weights

    # The same scenario twice is refused.
    with pytest.raises(ConfigError, match="already learned"):
        learn_scenario(run, "esmoe", data, NEW_SCENARIO, progress=False)


def test_learn_cli_refuses_bad_input(finished_esmoe, tmp_path, capsys):
    run = finished_esmoe
    data = _new_data(run, tmp_path / "new")
    with pytest.raises(SystemExit) as exit_info:
        main(["learn", "--run", str(run), "--data", str(data), "--scenario", "Daily Life"])
    assert exit_info.value.code == 2
    assert "already has a scenario named 'Daily Life'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["learn", "--run", str(tmp_path / "nothing"), "--data", str(data), "--scenario", "X"])
    assert "not a run folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["learn", "--run", str(run), "--data", str(tmp_path / "missing"), "--scenario", "X"])
    assert "dataset folder not found" in capsys.readouterr().err


def test_a_learn_killed_before_its_step_resumes(finished_esmoe, tmp_path, monkeypatch):
    """Killed after the data was copied and recorded (before training): the same command finishes it."""
    from l2emg.continual.learn import ScenarioLearner

    run = finished_esmoe
    data = _new_data(run, tmp_path / "new")

    def killed(self, *args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(ScenarioLearner, "_learn_step", killed)
        with pytest.raises(KeyboardInterrupt):
            learn_scenario(run, "esmoe", data, NEW_SCENARIO, progress=False)
    method_dir = run / "methods" / "esmoe-unseen-o1"
    assert load_json(method_dir / "learned.json")[0]["step"] == 2
    assert load_json(method_dir / "adapter.json")["checkpoint"] == "checkpoints/step_01"  # still the stream's
    results = learn_scenario(run, "esmoe", data, NEW_SCENARIO, progress=False)
    assert len(results["steps"]) == 3 and results["scenarios"][-1] == NEW_SCENARIO
    assert load_json(method_dir / "adapter.json")["checkpoint"] == "checkpoints/step_02"
