"""`l2emg run`: the main job (what `make run` calls)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List

import typer
from rich.console import Console

from l2emg.commands import PROFILE_HELP

console = Console()


def run(
    profile: str = typer.Option("default", help=PROFILE_HELP),
    run_dir: Path = typer.Option(Path("runs/default"), help="run directory; re-running resumes it"),
    set_: List[str] = typer.Option([], "--set", help="config override, e.g. --set data.num_motions=800"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show progress bars"),
    stream: bool = typer.Option(True, help="also train train.method over the configured stream (--no-stream: shared stages only)"),
) -> None:
    """Run the whole pipeline into one run directory, reusing stages that are already done.

    Generates the embedded dataset and its previews, trains the motion tokenizer and the evaluator,
    builds the language model, then trains the profile's method (train.method, ES-MoE by default)
    over the configured stream (stream.split, stream.order) and writes its report and a summary
    (RUN/summary.md). Each stage is recorded in RUN/manifest.json, and the stream checkpoints after
    every scenario, so an interrupted run continues where it stopped.
    """
    from l2emg.config import load_config
    from l2emg.continual.trainer import StreamTrainer
    from l2emg.pipeline import is_prepared, prepare_run, write_summary
    from l2emg.runs import RunDir

    started = time.time()
    config = load_config(profile, set_)
    changed = not is_prepared(RunDir(run_dir), config)
    run = prepare_run(run_dir, config, progress=progress)
    if stream:
        trainer = StreamTrainer(run, config, progress=progress)
        changed |= not trainer.is_finished()
        trainer.run_stream()
    if changed or not run.summary_path.exists():  # a finished run is only read
        write_summary(run, time.time() - started)
    console.print(f"[bold green]done[/] in {time.time() - started:.0f} s — see {run.summary_path}")
