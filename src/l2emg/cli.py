"""The `l2emg` command line: one sub-command group per stage of the pipeline.

Each group lives in `l2emg/commands/<group>.py` and is registered here.
"""

from __future__ import annotations

import sys

import typer

from l2emg.commands import data as data_commands
from l2emg.commands import eval as eval_commands
from l2emg.commands import generate as generate_commands
from l2emg.commands import run as run_commands
from l2emg.commands import tokenizer as tokenizer_commands
from l2emg.commands import train as train_commands

app = typer.Typer(
    name="l2emg",
    help=(
        "LLM-centric lifelong empathic motion generation (L²-EMG).\n\n"
        "Generate the embedded emotional-motion benchmark, train the motion tokenizer and the evaluator, "
        "and run continual-learning methods (ES-MoE and baselines) over streams of motion scenarios."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_commands.app, name="data")
app.add_typer(tokenizer_commands.app, name="tokenizer")
app.add_typer(eval_commands.app, name="eval")
app.command(name="run")(run_commands.run)
app.command(name="train")(train_commands.train)
app.command(name="generate")(generate_commands.generate)


def main() -> None:
    from l2emg.errors import L2EMGError

    try:
        app()
    except L2EMGError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
