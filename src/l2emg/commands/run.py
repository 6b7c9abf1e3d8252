"""`l2emg run`: the main job (what `make run` calls)."""

from pathlib import Path

import typer

from l2emg.config import load_config
from l2emg.runs import RunDir


def run(
    profile: str = typer.Option("default", help="config profile (tiny, default) or a YAML file"),
    run_dir: Path = typer.Option(Path("runs/default"), help="run directory; re-running resumes it"),
) -> None:
    """Run the whole pipeline into one run directory, reusing stages that are already done."""
    config = load_config(profile)
    RunDir(run_dir).init(config)
