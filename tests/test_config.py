"""Typed configs: profiles load, overrides apply, bad files are refused naming file and field."""

import pytest

from l2emg.config import Config, available_profiles, load_config, read_saved_config, save_config
from l2emg.errors import ConfigError
from l2emg.runs import RunDir


def test_profiles_load():
    assert {"tiny", "default"} <= set(available_profiles())
    tiny = load_config("tiny")
    default = load_config("default")
    assert tiny.profile == "tiny" and default.profile == "default"
    assert tiny.data.num_motions < default.data.num_motions


def test_overrides_are_typed():
    config = load_config("tiny", ["data.num_motions=64", "stream.split=mixed"])
    assert config.data.num_motions == 64
    assert config.stream.split == "mixed"
    with pytest.raises(ConfigError, match="data.num_motions"):
        load_config("tiny", ["data.num_motions=lots"])


def test_an_empty_mapping_clears_and_a_mapping_merges():
    """`--set lora.rank_pattern={}` clears the profile's pattern (it used to merge nothing and keep it)."""
    default = load_config("default")
    assert default.lora.rank_pattern  # the shipped profile ranks embed_tokens / lm_head apart
    cleared = load_config("default", ["lora.rank_pattern={}", "lora.alpha_pattern={}",
                                      "lora.target_modules=[q_proj,k_proj,v_proj,o_proj]"])
    assert cleared.lora.rank_pattern == {} and cleared.lora.alpha_pattern == {}
    merged = load_config("default", ["lora.rank_pattern={q_proj: 4}"])
    assert merged.lora.rank_pattern == {**default.lora.rank_pattern, "q_proj": 4}


def test_unknown_field_names_file_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  num_motoins: 10\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert str(path) in str(err.value) and "data.num_motoins" in str(err.value)


def test_unknown_label_in_holdout(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  holdout_pairs: [[Sports, bored]]\n")
    with pytest.raises(ConfigError, match="bored"):
        load_config(str(path))


def test_bad_yaml_and_missing_profile(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(path))
    with pytest.raises(ConfigError, match="unknown profile"):
        load_config("no-such-profile")


def test_saved_config_round_trip(tmp_path):
    config = load_config("tiny", ["data.seed=7"])
    save_config(config, tmp_path / "config.yaml")
    assert read_saved_config(tmp_path / "config.yaml") == config


def test_a_config_saved_before_a_field_existed_keeps_the_old_behaviour(tmp_path):
    """Run folders written before the scenario emotion data and the paper's CGED load as they ran."""
    import yaml

    from l2emg.config import SAVED_BEFORE

    config = load_config("tiny")
    assert config.data.emotion_style == "scenario" and config.esmoe.llm_trains_cged is False
    raw = config.model_dump(mode="json")
    for section, key in SAVED_BEFORE:
        del raw[section][key]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    old = read_saved_config(tmp_path / "config.yaml")
    assert old.data.emotion_style == "shared"
    assert (old.esmoe.fusion, old.esmoe.dictionary, old.esmoe.gate_input, old.esmoe.mask_schedule,
            old.esmoe.llm_trains_cged) == ("residual", "fixed", "embeddings", "constant", True)
    save_config(config, tmp_path / "new.yaml")  # a config that names the fields keeps them
    assert read_saved_config(tmp_path / "new.yaml") == config


def test_run_dir_refuses_other_config(tmp_path):
    run = RunDir(tmp_path / "run")
    run.init(load_config("tiny"))
    run.init(load_config("tiny"))  # same config: fine (resume)
    with pytest.raises(ConfigError, match="data.seed"):
        run.init(load_config("tiny", ["data.seed=3"]))
    run.init(load_config("tiny", ["train.epochs=7"]))  # method settings may differ between method runs
    run.mark_done("data", motions=3)
    assert run.is_done("data") and run.stage_info("data")["motions"] == 3
    assert isinstance(run.config(), Config)


def test_profile_help_names_every_packaged_profile():
    import re

    from l2emg.commands import PROFILE_HELP
    from l2emg.config import available_profiles

    listed = re.search(r"\(([^)]*)\)", PROFILE_HELP).group(1).split(", ")
    assert sorted(listed) == sorted(available_profiles())
