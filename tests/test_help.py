"""`--help` lists every method and every profile (issue 34).

The lists come from the sources of truth: `l2emg.commands.METHOD_NAMES` must be the keys of the
registry `l2emg.continual.methods.METHODS` (the CLI keeps its own tuple so that `--help` does not
import torch), and `l2emg.commands.PROFILE_NAMES` is read from the YAML files of `l2emg/configs/`.
Every command with a `--method`, `--methods` or `--profile` option is found through typer's click, its
`--help` rendered as a terminal shows it, and each name looked for in the text.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from l2emg.cli import app
from l2emg.commands import METHOD_NAMES, PROFILE_NAMES

METHOD_OPTIONS = {"method", "methods"}
PROFILE_OPTIONS = {"profile"}


def commands_with(options: set[str]) -> list[tuple[str, ...]]:
    """The command paths (`("train",)`, `("data", "generate")`) with one of OPTIONS (parameter names)."""
    found: list[tuple[str, ...]] = []

    def walk(command, path: tuple[str, ...]) -> None:
        if hasattr(command, "commands"):  # a group (typer's own click, so no isinstance on click's Group)
            for name, sub in command.commands.items():
                walk(sub, (*path, name))
        elif any(param.name in options for param in command.params):
            found.append(path)

    walk(typer.main.get_command(app), ())
    return sorted(found)


def help_text(*command: str) -> str:
    """`l2emg COMMAND --help` as printed on a 200-column terminal, with rich's panel borders removed and
    whitespace collapsed: rich wraps the help column, so a list may be split over several lines, and
    on a narrow terminal it even folds a long name (`esmoe_wo_samoe`) inside the word."""
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert result.exit_code == 0, result.output
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())


def test_method_names_are_the_registry():
    from l2emg.continual.methods import METHODS

    assert METHOD_NAMES == tuple(METHODS)
    assert len(METHOD_NAMES) == 11


def test_profile_names_are_the_packaged_profiles():
    from l2emg.config import available_profiles

    assert list(PROFILE_NAMES) == available_profiles()
    assert {"tiny", "default", "smollm2", "paper", "gpu"} <= set(PROFILE_NAMES)


def test_the_named_commands_are_found():
    assert {("train",), ("bench",), ("generate",), ("learn",)} <= set(commands_with(METHOD_OPTIONS))
    assert {("train",), ("bench",), ("run",)} <= set(commands_with(PROFILE_OPTIONS))


@pytest.mark.parametrize("command", commands_with(METHOD_OPTIONS), ids=" ".join)
def test_help_lists_every_method(command):
    words = set(re.findall(r"[\w-]+", help_text(*command)))
    missing = [name for name in METHOD_NAMES if name not in words]
    assert not missing, f"`l2emg {' '.join(command)} --help` does not name {missing}"


@pytest.mark.parametrize("command", commands_with(PROFILE_OPTIONS), ids=" ".join)
def test_help_lists_every_profile(command):
    words = set(re.findall(r"[\w-]+", help_text(*command)))
    missing = [name for name in PROFILE_NAMES if name not in words]
    assert not missing, f"`l2emg {' '.join(command)} --help` does not name {missing}"


def test_help_does_not_import_torch():
    """The lists above are plain tuples: the CLI (and so `--help`) still starts without torch."""
    code = "import sys, l2emg.cli; print(sorted({'torch', 'transformers', 'l2emg.continual'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
