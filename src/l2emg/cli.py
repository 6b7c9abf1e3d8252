"""The `l2emg` command line: one sub-command group per stage of the pipeline.

Each group lives in `l2emg/commands/<group>.py` and is registered here.
"""

from __future__ import annotations

import errno
import inspect
import os
import sys

import typer

from l2emg.commands import bench as bench_commands
from l2emg.commands import data as data_commands
from l2emg.commands import eval as eval_commands
from l2emg.commands import generate as generate_commands
from l2emg.commands import learn as learn_commands
from l2emg.commands import run as run_commands
from l2emg.commands import studio as studio_commands
from l2emg.commands import tokenizer as tokenizer_commands
from l2emg.commands import train as train_commands


def reflow(doc: str | None) -> str | None:
    """A docstring as `--help` text: the hard-wrapped lines of each paragraph joined into one, so that
    rich wraps it evenly at the terminal's width. List items (`-`, `*`, `•`) and indented lines
    (examples) keep their own lines."""
    if not doc:
        return doc
    lines = inspect.cleandoc(doc).splitlines()
    out: list[str] = []
    for line in lines:
        text = line.strip()
        keep = not text or line.startswith((" ", "\t")) or text.startswith(("-", "*", "•"))
        if out and out[-1].strip() and not keep and not out[-1].startswith((" ", "\t")):
            out[-1] = f"{out[-1]} {text}"
        else:
            out.append(line.rstrip())
    return "\n".join(out)


def _reflow_help(group: typer.Typer) -> None:
    for command in group.registered_commands:
        command.help = reflow(command.help or (command.callback.__doc__ if command.callback else None))
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _reflow_help(sub.typer_instance)


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
app.command(name="learn")(learn_commands.learn)
app.command(name="bench")(bench_commands.bench)
app.command(name="studio")(studio_commands.studio)
_reflow_help(app)


NOT_WRITABLE = "not writable: choose another --run-dir/--out or fix permissions"
DISK_FULL = "disk full: free space and re-run; the run resumes where it stopped"
OS_ERROR_HINTS = {
    errno.ENOSPC: DISK_FULL,
    getattr(errno, "EDQUOT", errno.ENOSPC): DISK_FULL,  # over quota: the same remedy
    errno.EROFS: NOT_WRITABLE,
    errno.EACCES: NOT_WRITABLE,
    errno.EPERM: NOT_WRITABLE,
}


def error_message(err: BaseException) -> str | None:
    """What the CLI prints after `error: ` for an expected failure; None for a bug (a traceback).

    Expected are `L2EMGError`s (their message names the file) and failed file operations
    (OSError, or safetensors' error for a failed write): `<file>: <reason>; <hint>`.
    """
    from l2emg.errors import L2EMGError
    from l2emg.utils.io import os_error_of

    if isinstance(err, L2EMGError):
        return str(err)
    failed = os_error_of(err)
    if failed is None:
        return None
    reason = failed.strerror or str(failed)
    where = failed.filename if failed.filename is not None else failed.filename2
    if isinstance(where, (bytes, os.PathLike)):
        where = os.fsdecode(where)
    message = f"{where}: {reason}" if where is not None else reason
    hint = OS_ERROR_HINTS.get(failed.errno)
    return f"{message}; {hint}" if hint else message


def main(argv: list[str] | None = None) -> None:
    """The `l2emg` entry point: expected failures become one `error: …` line and exit code 2."""
    try:
        app(args=argv, prog_name="l2emg")
    except Exception as err:
        message = error_message(err)
        if message is None:
            raise
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
