"""The method registry: a method's identity (name, label, paper row, options model) is declared on its
class, and the labels, the paper table by method and Config's method sections derive from it. A method
defined here, outside the package, and registered with one line runs through `l2emg train` on the tiny
run; the registry and Config are as before once the test ends."""

from __future__ import annotations

import pytest
from pydantic import Field
from typer.testing import CliRunner

from conftest import TINY_RUN_OVERRIDES
from l2emg import config as config_module
from l2emg.cli import app
from l2emg.config import METHOD_OPTIONS, CoreConfig, MethodOptions, load_config, read_saved_config
from l2emg.continual.methods import METHOD_LABELS, METHODS, paper_table2, register_method, unregister_method
from l2emg.continual.methods.seqlora import SeqLoRA
from l2emg.errors import ConfigError
from l2emg.eval.paper_table2 import PAPER_TABLE2
from l2emg.runs import RunDir

# METHOD_LABELS as it was spelled out before it was derived from the classes.
LABELS = {"mtl": "MTL", "seqlora": "SeqLoRA", "esmoe": "ES-MoE", "esmoe_wo_cged": "w/o CGED",
          "esmoe_wo_samoe": "w/o SAMoE", "esmoe_wo_lemo": "w/o L_emo", "lwf": "LwF-LoRA", "olora": "O-LoRA",
          "sapt": "SAPT", "epi": "EPI", "progprompt": "ProgPrompt"}


class ToyOptions(MethodOptions):
    """The toy method's options: the Config section `toy`."""

    section = "toy"
    loss_scale: float = Field(1.0, gt=0.0, description="factor on the training loss")


class ToyLoRA(SeqLoRA):
    """SeqLoRA whose loss is scaled by its own option: a method that lives in one file (this one)."""

    name = "toy"
    label = "Toy-LoRA"
    paper_row = None
    options = ToyOptions

    def forward(self, batch):
        out = super().forward(batch)
        return {**out, "loss": out["loss"] * self.options.loss_scale}


@pytest.fixture
def toy():
    """ToyLoRA registered for one test, then removed (registry, labels and Config as before)."""
    shipped, config_class = dict(METHODS), config_module.Config
    register_method(ToyLoRA)  # the one registry line
    try:
        yield ToyLoRA
    finally:
        unregister_method("toy")
        assert METHODS == shipped and "toy" not in METHOD_OPTIONS
        assert config_module.Config is config_class  # the very class other modules imported


def test_identity_is_declared_on_the_classes_and_derived():
    assert dict(METHOD_LABELS) == LABELS and list(METHOD_LABELS) == list(METHODS)
    for name, cls in METHODS.items():
        assert {"name", "label", "paper_row"} <= set(vars(cls)), cls
        assert cls.name == name
    # the paper table by method is eval's table, row for row (the bench looks rows up by method name)
    assert paper_table2() == PAPER_TABLE2
    # Config's method sections are the registered methods' options models, defined on the config's floor
    # so that profiles and saved configs validate without importing the methods
    models = {cls.options for cls in METHODS.values() if cls.options is not None}
    assert {m.section: m for m in models} == METHOD_OPTIONS
    assert all(m.__module__ == "l2emg.config" for m in models)
    assert set(config_module.Config.model_fields) == set(CoreConfig.model_fields) | set(METHOD_OPTIONS)
    config = load_config("tiny", ["esmoe.top_k=3"])
    assert config.esmoe.top_k == 3 and METHODS["esmoe_wo_cged"].options is type(config.esmoe)


def test_registration_refuses_inherited_taken_or_unknown_identity():
    class Inherited(SeqLoRA):
        name = "inherited"  # label and paper_row would be SeqLoRA's

    class TakenName(SeqLoRA):
        name, label, paper_row = "seqlora", "Another", None

    class TakenLabel(SeqLoRA):
        name, label, paper_row = "another", "SeqLoRA", None

    class NoSuchRow(SeqLoRA):
        name, label, paper_row = "another", "Another", "nope"

    class Clash(MethodOptions):
        section = "esmoe"
        x: int = 1

    class TakenSection(SeqLoRA):
        name, label, paper_row, options = "another", "Another", None, Clash

    shipped = dict(METHODS)
    for cls, words in ((Inherited, "label, paper_row"), (TakenName, "taken"), (TakenLabel, "taken"),
                       (NoSuchRow, "paper's rows"), (TakenSection, "already holds")):
        with pytest.raises(ValueError, match=words):
            register_method(cls)
    assert METHODS == shipped


def test_options_section_comes_and_goes_with_the_method(toy):
    config = load_config("tiny", ["toy.loss_scale=0.5"])
    assert config.toy.loss_scale == 0.5 and config.esmoe == load_config("tiny").esmoe
    with pytest.raises(ConfigError, match="toy.loss_scale"):
        load_config("tiny", ["toy.loss_scale=0"])
    assert METHOD_LABELS["toy"] == "Toy-LoRA" and "toy" not in paper_table2()["unseen"]


def test_a_section_without_its_method_is_refused():
    with pytest.raises(ConfigError, match="toy"):
        load_config("tiny", ["toy.loss_scale=0.5"])


def test_a_method_registered_in_a_test_runs_through_train(toy, tiny_run_copy):
    overrides = [*TINY_RUN_OVERRIDES, "stream.max_subsets=2", "toy.loss_scale=0.5"]
    args = ["train", "--method", "toy", "--split", "unseen", "--order", "1", "--profile", "tiny",
            "--run-dir", str(tiny_run_copy), "--no-progress"]
    result = CliRunner().invoke(app, args + [a for o in overrides for a in ("--set", o)])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    method_run = RunDir(tiny_run_copy).method_run("toy", "unseen", 1)
    assert method_run.metrics_path.exists() and method_run.report_path.exists()
    report = method_run.report_path.read_text(encoding="utf-8")
    assert report.startswith("# Toy-LoRA on the unseen stream")
    assert any(line.startswith("|") and "Toy-LoRA" in line for line in report.splitlines())  # its table row
    assert "Toy-LoRA" in result.output
    assert read_saved_config(method_run.config_path).toy.loss_scale == 0.5
