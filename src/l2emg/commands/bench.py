"""`l2emg bench`: the paper's whole evaluation (Table 2 over splits and orders) in one command."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from l2emg.commands import PROFILE_HELP

console = Console()


def bench(
    profile: str = typer.Option("default", help=PROFILE_HELP),
    run_dir: Path = typer.Option(Path("runs/default"), help="run directory (shared stages are built or reused)"),
    methods: Optional[str] = typer.Option(None, help="comma-separated methods (default: every registered method)"),
    splits: str = typer.Option("unseen,mixed", help="comma-separated stream splits: unseen, mixed"),
    orders: str = typer.Option("1,2,3", help="comma-separated scenario orders (1, 2, 3)"),
    shard: str = typer.Option("1/1", help="k/n: this is worker k of n sharing the run folder (e.g. 1/2 and 2/2)"),
    set_: List[str] = typer.Option([], "--set", help="config override, e.g. --set stream.max_subsets=2 (repeatable)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show progress bars"),
) -> None:
    """Train every METHOD over every SPLIT and ORDER into one run folder and write the paper's Table 2.

    Each method run lives in RUN/methods/<method>-<split>-o<order>/ (MTL once per split, order 1);
    finished runs are reused and interrupted ones resume, so re-running continues where it stopped.
    With --shard k/n, n workers (separate processes, even on separate machines sharing the folder)
    split the runs; a worker done with its share takes over runs nobody is training yet. When every run
    is finished, RUN/bench/table2.md and table2.json hold AF, AR, AD, AMM, AWF, FR as mean ± 95 % CI
    over the orders beside the paper's numbers, Kendall τ of our ranking against the paper's, an
    emotion-transfer column, Figure 3's FID heatmaps (PNG) and Figure 4 (test captions × methods, same
    seed: keyframe strips as PNG and animated as GIF or MP4). One overall line (runs finished / planned,
    elapsed, estimate) is printed before each method run; runs skipped are named with the reason.

    Profiles: tiny (tests), default (a CPU machine), paper (LLaMA-2-7B, bf16, T2M-GPT's evaluation
    protocol) and gpu (a mid-size model on one 80 GB GPU); set the backbone folder with
    --set lm.backbone=/models/...
    """
    from l2emg.bench import bench as run_bench
    from l2emg.bench import check_selection, parse_shard
    from l2emg.config import load_config
    from l2emg.continual.methods import METHODS
    from l2emg.errors import ConfigError

    chosen_methods = _names(methods) if methods else list(METHODS)
    chosen_splits = _names(splits)
    try:
        chosen_orders = [int(o) for o in _names(orders)]
    except ValueError:
        raise ConfigError(f"--orders {orders!r}: expected comma-separated numbers, e.g. 1,2,3") from None
    worker = parse_shard(shard)
    check_selection(chosen_methods, chosen_splits, chosen_orders, worker)  # before any work
    config = load_config(profile, set_)
    outcome = run_bench(run_dir, config, chosen_methods, chosen_splits, chosen_orders, worker, progress=progress)
    console.print(f"shard {worker[0]}/{worker[1]}: {len(outcome.planned)} planned method runs", soft_wrap=True)
    console.print(f"trained: {', '.join(outcome.trained) or 'none'}", soft_wrap=True)
    console.print(f"reused: {', '.join(outcome.reused) or 'none'}", soft_wrap=True)
    if outcome.busy:
        console.print(f"in training by another worker: {', '.join(outcome.busy)}", soft_wrap=True)
    if outcome.table is not None:
        console.print(f"table: {outcome.table}", soft_wrap=True)
    else:
        console.print("table: not yet (other workers are still training; the last one to finish writes it)")


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]
