"""`l2emg bench`: the paper's whole evaluation (Table 2 over splits and orders) in one command."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from l2emg.commands import METHOD_LIST, PROFILE_HELP

console = Console()


def bench(
    profile: str = typer.Option("default", help=PROFILE_HELP),
    run_dir: Path = typer.Option(Path("runs/default"), help="run directory (shared stages are built or reused)"),
    methods: Optional[str] = typer.Option(None, help=f"comma-separated methods among {METHOD_LIST} (default: all of them)"),
    splits: str = typer.Option("unseen,mixed", help="comma-separated stream splits: unseen, mixed"),
    orders: str = typer.Option("1,2,3", help="comma-separated scenario orders (1, 2, 3)"),
    all_orders: Optional[str] = typer.Option(None, help="comma-separated methods that run over every order in "
                                             "--orders; the others run the first order only (default: every "
                                             "method), e.g. --all-orders mtl,seqlora,esmoe"),
    shard: str = typer.Option("1/1", help="k/n: this is worker k of n sharing the run folder (e.g. 1/2 and 2/2)"),
    set_: List[str] = typer.Option([], "--set", help="config override, e.g. --set stream.max_subsets=2 (repeatable)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show progress bars"),
    export: Optional[Path] = typer.Option(None, "--export", help="also write RUN/bench/table2.json to this file "
                                          "(atomically) once the tables are written, e.g. benchmarks/results/table2.json"),
    archive: Optional[Path] = typer.Option(None, "--archive", help="keep every finished method run's records "
                                           "(config, progress, results, metrics; no checkpoints) in this folder, "
                                           "and count runs archived there with the same settings as finished: a "
                                           "table built over sessions whose run folders do not survive (commit "
                                           "the folder, e.g. benchmarks/results/table2_runs)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and its core-hours estimate from "
                                 "measured costs (--costs, --method-costs); train nothing"),
    costs: Path = typer.Option(Path("benchmarks/results/stream_profile.json"),
                               help="--dry-run: whole method runs profiled by benchmarks/stream_profile.py"),
    method_costs: Path = typer.Option(Path("benchmarks/results/methods_cost.json"),
                                      help="--dry-run: training-step cost of every method relative to SeqLoRA"),
) -> None:
    """Train every METHOD over every SPLIT and ORDER into one run folder and write the paper's Table 2.

    Each method run lives in RUN/methods/<method>-<split>-o<order>/ (MTL once per split, order 1);
    finished runs are reused and interrupted ones resume, so re-running continues where it stopped.
    With --shard k/n, n workers (separate processes, even on separate machines sharing the folder)
    split the runs; a worker done with its share takes over runs nobody is training yet. --all-orders
    gives the other orders to some methods only (e.g. all 11 methods on order 1, MTL/SeqLoRA/ES-MoE on
    orders 1–3: --orders 1,2,3 --all-orders mtl,seqlora,esmoe). When every run
    is finished, RUN/bench/table2.md and table2.json hold AF, AR, AD, AMM, AWF, FR as mean ± 95 % CI
    over the orders beside the paper's numbers, Kendall τ of our ranking against the paper's, an
    emotion-transfer column, AWF in two parts (AWF_trained, AWF_heldout: emotion F1 on the test motions
    of the trained and of the held-out (scenario, emotion) pairs, each ± 95 % CI), Figure 3's FID heatmaps (PNG) and Figure 4 (test captions × methods, same
    seed: keyframe strips as PNG and animated as GIF or MP4). One overall line (runs finished / planned,
    elapsed, estimate) is printed before each method run; runs skipped are named with the reason.

    Profiles: tiny (tests), default (a CPU machine), smollm2 (a real pretrained LLM on a CPU),
    paper (LLaMA-2-7B, bf16, T2M-GPT's evaluation protocol) and gpu (a mid-size model on one 80 GB
    GPU); set the backbone folder with --set lm.backbone=/models/... --dry-run prints the plan and
    its core-hours from measured per-run costs without training.
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
    chosen_all = _names(all_orders) if all_orders else None
    worker = parse_shard(shard)
    check_selection(chosen_methods, chosen_splits, chosen_orders, worker, chosen_all)  # before any work
    if dry_run:
        _dry_run(run_dir, chosen_methods, chosen_splits, chosen_orders, worker, costs, method_costs, chosen_all,
                 archive, load_config(profile, set_))
        return
    config = load_config(profile, set_)
    outcome = run_bench(run_dir, config, chosen_methods, chosen_splits, chosen_orders, worker, progress=progress,
                        export=export, all_orders=chosen_all, archive=archive)
    console.print(f"shard {worker[0]}/{worker[1]}: {len(outcome.planned)} planned method runs", soft_wrap=True)
    console.print(f"trained: {', '.join(outcome.trained) or 'none'}", soft_wrap=True)
    console.print(f"reused: {', '.join(outcome.reused) or 'none'}", soft_wrap=True)
    if archive is not None:
        console.print(f"read from the archive {archive}: {', '.join(outcome.archived) or 'none'}", soft_wrap=True)
    if outcome.busy:
        console.print(f"in training by another worker: {', '.join(outcome.busy)}", soft_wrap=True)
    if outcome.table is not None:
        console.print(f"table: {outcome.table}", soft_wrap=True)
    else:
        console.print("table: not yet (other workers are still training; the last one to finish writes it)")


def _dry_run(run_dir: Path, methods: list[str], splits: list[str], orders: list[int], worker: tuple[int, int],
             costs: Path, method_costs: Path, all_orders: list[str] | None = None,
             archive: Path | None = None, config=None) -> None:
    from rich.table import Table

    from l2emg.bench import estimate_costs, plan, shard_runs
    from l2emg.errors import ConfigError
    from l2emg.runs import BenchArchive, RunDir
    from l2emg.utils.io import load_json

    if not costs.exists():
        raise ConfigError(f"{costs}: no measured run costs (run benchmarks/stream_profile.py, or pass --costs)")
    profile = load_json(costs)
    ratios = load_json(method_costs) if method_costs.exists() else None
    planned = plan(methods, splits, orders, all_orders)
    own, _ = shard_runs(planned, worker)
    run = RunDir(run_dir) if run_dir.exists() else None
    estimates = estimate_costs(planned, profile, ratios, run, store=None if archive is None else BenchArchive(archive))
    table = Table("method run", "core-min", "from", "state", title=f"l2emg bench --dry-run: {len(planned)} method runs")
    for e in estimates:
        state = "finished" if e.finished else ("this shard" if e.run in own else "other shard")
        table.add_row(e.run.name, f"{e.core_seconds / 60:.1f}", e.source, state)
    console.print(table)
    total = sum(e.core_seconds for e in estimates) / 3600
    left = sum(e.core_seconds for e in estimates if not e.finished) / 3600
    m = profile.get("machine", {})
    console.print(f"whole plan: {total:.1f} core-hours ({total / 2:.1f} h on 2 cores with one 1-thread run per core); "
                  f"left: {left:.1f} core-hours", soft_wrap=True)
    console.print(f"costs measured on {m.get('cpu')} (bf16 units: {', '.join(m.get('flags_bf16') or []) or 'none'}), "
                  f"{m.get('threads')} thread per run, from {costs}"
                  + (f" and {method_costs}" if ratios else ""), soft_wrap=True)
    mine = sorted({e.run.method for e in estimates if e.source.startswith("recorded")})
    if mine:
        console.print(f"{', '.join(mine)}: the mean CPU seconds their finished runs in {run_dir}"
                      + (f" or {archive}" if archive is not None else "") + " recorded, instead", soft_wrap=True)
    # Costs measured on another profile (another backbone: SmolLM2 is ~35x the 4 M model) do not apply.
    profiles = sorted({str(d.get("profile")) for r in profile.get("runs", []) for d in (r.get("details") or {}).values()})
    if config is not None and profiles and profiles != [config.profile] \
            and any(not e.source.startswith("recorded") for e in estimates):
        console.print(f"[yellow]note[/]: {costs} measured profile {', '.join(profiles)}; this plan runs profile "
                      f"{config.profile} (backbone {config.lm.backbone or 'the 4 M LLaMA'}): the estimates not marked "
                      "recorded are that profile's costs, not this one's (finished runs of this plan, once there "
                      "are some, are used instead, and scale the others: \"recorded / estimated here\")",
                      soft_wrap=True)
    # The stream profile records the evaluation it was measured with (before it did: the fixed protocol,
    # every cell); a plan evaluated otherwise costs otherwise.
    measured = (profile.get("evaluation") or {"eval_protocol": "fixed", "eval_cells": "all"})
    if config is not None and any(not e.source.startswith("recorded") for e in estimates):
        now = {"eval_protocol": config.train.eval_protocol, "eval_cells": config.train.eval_cells}
        if any(measured.get(k) != v for k, v in now.items()):
            console.print("[yellow]note[/]: the stream profile was measured with evaluation "
                          + ", ".join(f"{k} {measured.get(k)}" for k in now) + "; this plan evaluates with "
                          + ", ".join(f"{k} {v}" for k, v in now.items()) + ": the estimates from it are not what "
                          "the runs will cost (methods with recorded runs are)", soft_wrap=True)


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]
