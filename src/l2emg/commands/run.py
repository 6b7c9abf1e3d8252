"""`l2emg run`: the main job (what `make run` calls)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List

import typer
from rich.console import Console

console = Console()


def run(
    profile: str = typer.Option("default", help="config profile (tiny, default) or a YAML file"),
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
    from l2emg.continual.trainer import StreamTrainer, write_report
    from l2emg.pipeline import prepare_run

    started = time.time()
    config = load_config(profile, set_)
    run = prepare_run(run_dir, config, progress=progress)
    if stream:
        trainer = StreamTrainer(run, config, progress=progress)
        write_report(trainer, trainer.run_stream())
    write_summary(run, time.time() - started)
    console.print(f"[bold green]done[/] in {time.time() - started:.0f} s — see {run.path / 'summary.md'}")


def write_summary(run, seconds: float) -> None:
    """RUN/summary.md: what each stage produced, with the numbers it measured."""
    from l2emg.utils.io import atomic_write_text, load_json

    stages = run.manifest()["stages"]
    lines = [f"# Run `{run.path}`", "", f"Profile `{run.config().profile}`; this invocation took {seconds:.0f} s.", ""]
    for stage, info in stages.items():
        details = ", ".join(f"{k}={v}" for k, v in info.items() if k != "finished_at")
        lines.append(f"- **{stage}** ({info.get('finished_at', '')}): {details}")
    reference = run.path / "evaluator" / "reference_test.json"
    if reference.exists():
        from l2emg.eval.report import metrics_table_markdown

        lines += ["", "## Real-motion reference row (test split)", "",
                  metrics_table_markdown({"Real motion": load_json(reference)["metrics"]})]
    for report in sorted((run.path / "methods").glob("*/report.md")):
        lines += ["", f"## {report.parent.name}", "", f"[{report}]({report.relative_to(run.path)})", ""]
        lines += [line for line in report.read_text().splitlines() if line.startswith("|")]
    if (run.previews_dir / "index.md").exists():
        lines += ["", f"Previews: [{run.previews_dir / 'index.md'}](previews/index.md)"]
    atomic_write_text(run.path / "summary.md", "\n".join(lines) + "\n")
