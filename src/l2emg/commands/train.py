"""`l2emg train`: one continual-learning method over one L²-EMG stream."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from l2emg.commands import METHOD_LIST, PROFILE_HELP

console = Console()


def train(
    method: Optional[str] = typer.Option(None, help=f"method: {METHOD_LIST} (default: train.method of the profile)"),
    split: Optional[str] = typer.Option(None, help="stream split: unseen (one subset per scenario) or mixed"),
    order: Optional[int] = typer.Option(None, help="scenario order 1, 2 or 3"),
    profile: str = typer.Option("default", help=PROFILE_HELP),
    run_dir: Path = typer.Option(Path("runs/default"), help="run directory (shared stages are built or reused)"),
    set_: List[str] = typer.Option([], "--set", help="config override, e.g. --set train.epochs=2 (repeatable)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show progress bars"),
) -> None:
    """Train METHOD through the scenarios of a stream, evaluating on every scenario after each step.

    Builds (or reuses) the run's dataset, tokenizer, evaluator and language model, then trains into
    RUN/methods/<method>-<split>-o<order>/ and ends with a report: the Table-2 row, FID / R-Precision
    heatmaps and GIFs of one emotion across scenarios. Re-running resumes after the last finished step.
    Several processes: `torchrun --nproc_per_node N -m l2emg.cli train …` or `accelerate launch`.
    """
    from l2emg.config import load_config
    from l2emg.continual.methods import method_class
    from l2emg.continual.report import method_label
    from l2emg.continual.trainer import StreamTrainer
    from l2emg.eval.report import table2_header, table2_row
    from l2emg.utils.io import load_json
    config = load_config(profile, set_)
    if method:
        method_class(method)  # unknown names fail before any work
    trainer = StreamTrainer(_prepared(run_dir, config, progress), config, method, split, order, progress=progress)
    trainer.run_stream()
    if trainer.accelerator.is_main_process and trainer.method_run.metrics_path.exists():
        metrics = load_json(trainer.method_run.metrics_path)
        console.print(table2_header())
        console.print(table2_row(method_label(trainer.method_name), metrics))
        console.print(f"report: {trainer.method_run.report_path}")


def _prepared(run_dir: Path, config, progress: bool):
    """Shared stages on the main process only; the other ranks wait for them."""
    import torch
    from accelerate import PartialState

    from l2emg.pipeline import prepare_run
    from l2emg.runs import RunDir

    # PartialState is a process-wide singleton: built without cpu=True on a machine without CUDA it
    # ignores the launcher's RANK/WORLD_SIZE and every process believes it is alone.
    state = PartialState(cpu=not torch.cuda.is_available())
    if state.is_main_process:
        prepare_run(run_dir, config, progress=progress, previews=False)
    state.wait_for_everyone()
    return RunDir(run_dir)
