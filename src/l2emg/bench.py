"""The paper's whole evaluation in one call: methods × splits × orders trained into one run folder,
then Table 2 over the orders (mean ± 95 % CI), next to the paper's numbers, with Kendall τ between
our ranking and the paper's, Figure 3's FID heatmaps and the emotion-transfer column.

    plan      one `PlannedRun` per (method, split, order); a joint-training method (MTL) does not
              depend on the order, so it runs once per split with order 1 (and is reported once);
              `all_orders` limits the other orders to some methods (the rest run the first order)
    train     every planned method run through `StreamTrainer.run_stream` (finished ones are reused,
              unfinished ones resumed). `shard=(k, n)`: worker k takes the planned runs whose index
              % n == k − 1, then any other planned run that is neither finished nor locked by another
              worker (`BusyError` = in training elsewhere: skipped), so n workers on one run folder
              finish the table with each method run trained once
    report    when every planned run is finished (whichever worker gets there), `l2emg.bench_report`:
              RUN/bench/table2.md, table2.json, figure3_fid_<split>_<method>.png, figure4.png + .gif/.mp4
              (paths: `RunDir`; rows drawn by `l2emg.eval.table2`); `export`: table2.json copied there
    estimate  `estimate_costs`: core-seconds of each planned run from measured costs (`--dry-run`)

The statistics (`mean_ci`, `kendall_tau`) live in `l2emg.eval.metrics` and are importable from here.
Floor of `pipeline` / `continual` (docs/design.md, "Layers"): it uses both; the command line
(`l2emg bench`, `l2emg.commands.bench`) only parses and prints.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from rich.console import Console

from l2emg.config import Config
from l2emg.errors import BusyError, ConfigError
from l2emg.eval.metrics import kendall_tau, mean_ci
from l2emg.runs import BenchArchive, MethodRunDir, RunDir
from l2emg.utils.io import load_json

__all__ = ["BenchOutcome", "PlannedRun", "RunEstimate", "bench", "check_selection", "estimate_costs",
           "kendall_tau", "mean_ci", "overall_progress", "parse_shard", "plan", "shard_runs"]

console = Console(stderr=True)  # progress lines, beside the trainer's (stdout: the summary)


@dataclass(frozen=True)
class PlannedRun:
    method: str
    split: str
    order: int

    @property
    def name(self) -> str:
        return f"{self.method}-{self.split}-o{self.order}"


@dataclass
class BenchOutcome:
    """What one `bench` call did: method runs it trained (or resumed), reused, skipped as busy."""

    planned: list[PlannedRun]
    trained: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)  # found finished in the archive (`archive`), not trained here
    table: Path | None = None  # table2.md once every planned run is finished
    figures: list[Path] = field(default_factory=list)
    exported: Path | None = None  # `export`, once table2.json was copied there


# -- the plan ---------------------------------------------------------------------------------------
def _joint(method: str) -> bool:
    from l2emg.continual.methods import method_class

    return bool(method_class(method).joint_training)


def check_selection(methods: Sequence[str], splits: Sequence[str], orders: Sequence[int],
                    shard: tuple[int, int] = (1, 1), all_orders: Sequence[str] | None = None) -> None:
    """ConfigError (one line) for an unknown method, split or order, an empty list, a bad shard, or an
    `all_orders` method that is not among `methods`."""
    from l2emg.continual.methods import METHODS
    from l2emg.data.stream import SCENARIO_ORDERS, STREAM_SPLITS

    for what, values, known in (("method", methods, sorted(METHODS)), ("split", splits, list(STREAM_SPLITS)),
                                ("order", orders, sorted(SCENARIO_ORDERS))):
        if not values:
            raise ConfigError(f"no {what} selected; available: {', '.join(map(str, known))}")
        for value in values:
            if value not in known:
                raise ConfigError(f"unknown {what} {value!r}; available: {', '.join(map(str, known))}")
        if len(set(values)) != len(values):
            raise ConfigError(f"{what}s listed twice: {', '.join(map(str, values))}")
    stray = [m for m in (all_orders or ()) if m not in methods]
    if stray:
        raise ConfigError(f"--all-orders {', '.join(stray)}: not among the methods of this bench "
                          f"({', '.join(methods)})")
    k, n = shard
    if n < 1 or not 1 <= k <= n:
        raise ConfigError(f"shard {k}/{n}: expected k/n with 1 ≤ k ≤ n (e.g. 1/2 and 2/2 for two workers)")


def parse_shard(text: str) -> tuple[int, int]:
    """'k/n' -> (k, n), checked."""
    try:
        k, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise ConfigError(f"shard {text!r}: expected k/n, e.g. 1/2") from None
    check_selection(["mtl"], ["unseen"], [1], (k, n))
    return k, n


def plan(methods: Sequence[str], splits: Sequence[str], orders: Sequence[int],
         all_orders: Sequence[str] | None = None) -> list[PlannedRun]:
    """Every method run of the table, split by split; a joint-training method once per split (order 1).
    `all_orders`: only these methods run over every order, the others over the first one (None: all)."""
    runs = []
    for split in splits:
        for method in methods:
            if _joint(method):
                chosen = [1]
            else:
                chosen = list(orders) if all_orders is None or method in all_orders else list(orders[:1])
            runs.extend(PlannedRun(method, split, order) for order in chosen)
    return runs


def shard_runs(planned: Sequence[PlannedRun], shard: tuple[int, int]) -> tuple[list[PlannedRun], list[PlannedRun]]:
    """(this worker's own runs, the others it may pick up afterwards)."""
    k, n = shard
    own = [p for i, p in enumerate(planned) if i % n == k - 1]
    return own, [p for p in planned if p not in own]


# -- training ---------------------------------------------------------------------------------------
def _mtime(path: Path) -> float | None:
    return path.stat().st_mtime_ns if path.exists() else None


def bench(run_dir: str | Path, config: Config, methods: Sequence[str], splits: Sequence[str],
          orders: Sequence[int], shard: tuple[int, int] = (1, 1), progress: bool = True,
          export: str | Path | None = None, all_orders: Sequence[str] | None = None,
          archive: str | Path | None = None) -> BenchOutcome:
    """Prepare the run's shared stages, train this worker's share of the plan (then anything left
    that nobody is training), and write the tables once every planned run is finished (`export`:
    RUN/bench/table2.json written there too, e.g. benchmarks/results/table2.json; `all_orders`: as `plan`).

    `archive` (a `BenchArchive` folder): a planned run not finished in the run folder but archived
    there with this bench's config counts as finished (its records make its rows; ConfigError when
    it was archived with other settings), and every run finished here is archived; so a table can be
    built over several sessions or machines whose run folders do not survive."""
    from l2emg.bench_report import write_tables
    from l2emg.continual.trainer import StreamTrainer
    from l2emg.pipeline import prepare_run

    check_selection(methods, splits, orders, shard, all_orders)
    export_path = None if export is None else Path(export)
    planned = plan(methods, splits, orders, all_orders)
    store = None if archive is None else BenchArchive(archive)
    run = prepare_run(run_dir, config, progress=progress, previews=False, archive=store)
    outcome = BenchOutcome(planned)
    own, others = shard_runs(planned, shard)
    worker = f"bench {shard[0]}/{shard[1]}" if shard[1] > 1 else "bench"
    if store is not None:
        _archive_stages(store, run, worker)
    started, trained_seconds = time.time(), []
    for p in [*own, *others]:
        method_run = run.method_run(p.method, p.split, p.order)
        if store is not None and not _finished(method_run) and store.has(p.name):
            _check_archived(store, StreamTrainer(run, config, p.method, p.split, p.order, progress=False), p.name)
            outcome.archived.append(p.name)
            continue
        is_own = p in own
        if not is_own and _finished(method_run):
            continue  # another worker's share, finished: nothing to say
        console.print(overall_progress(worker, run, planned, time.time() - started, trained_seconds, shard[1], store),
                      soft_wrap=True)
        trainer = StreamTrainer(run, config, p.method, p.split, p.order, progress=progress)
        if trainer.is_finished():
            trainer.run_stream()  # checks the method run's config, writes nothing
            outcome.reused.append(p.name)
            if store is not None:
                store.save(method_run)
            continue
        before = _mtime(method_run.progress_path), _mtime(method_run.adapter_path)
        began = time.time()
        try:
            trainer.run_stream()
        except BusyError:
            console.print(f"{worker}: skipping {p.name}: another worker is training it (its lock is held)",
                          soft_wrap=True)
            outcome.busy.append(p.name)
            continue
        if (_mtime(method_run.progress_path), _mtime(method_run.adapter_path)) != before:
            outcome.trained.append(p.name)
            trained_seconds.append(time.time() - began)
        else:
            outcome.reused.append(p.name)  # another worker finished it while this one waited for it
        if store is not None and _finished(method_run):
            store.save(method_run)
    console.print(overall_progress(worker, run, planned, time.time() - started, trained_seconds, shard[1], store),
                  soft_wrap=True)
    sources = {p.name: record_of(run, p, store) for p in planned}
    if all(source is not None for source in sources.values()):
        try:
            with run.bench_lock():
                outcome.table, outcome.figures = write_tables(run, planned, export_path, sources)
            outcome.exported = export_path
        except BusyError:
            pass  # another worker is writing the same tables
    if export_path is not None:
        console.print(f"{worker}: " + (f"table2.json exported to {export_path}" if outcome.exported else
                                       f"{export_path} not written: this worker did not write the tables"),
                      soft_wrap=True)
    return outcome


def _archive_stages(store: BenchArchive, run: RunDir, worker: str) -> None:
    """Keep the run folder's stage build in the archive when it holds none; say so when the archive's
    build is another one (its runs and this folder's will rest on different stages)."""
    try:
        with run.lock():  # one worker copies; another one meanwhile leaves it to that one
            saved = store.save_stages(run)
    except BusyError:
        return
    if saved:
        console.print(f"{worker}: stage build archived in {store.stages_dir}", soft_wrap=True)
    elif (store.stage_build() or {}).get("fingerprint") != run.stage_fingerprint():
        console.print(f"[yellow]warning[/]: {worker}: {run.path}'s stages differ from the build archived in "
                      f"{store.stages_dir}; the table will name the runs of each build", soft_wrap=True)


def record_of(run: RunDir | None, p: PlannedRun, store: BenchArchive | None = None) -> MethodRunDir | None:
    """Where planned run `p`'s records are: its method run when finished in the run folder, else its
    archived records (`store`), else None (not finished)."""
    method_run = None if run is None else run.method_run(p.method, p.split, p.order)
    if method_run is not None and _finished(method_run):
        return method_run
    return store.method_run(p.name) if store is not None and store.has(p.name) else None


def _check_archived(store: BenchArchive, trainer: Any, name: str) -> None:
    """An archived run counts only if it ran with the settings this bench would train it with."""
    archived = store.method_run(name)
    changed = trainer.config_changes(archived.config_path)
    if changed:
        raise ConfigError(f"{archived.config_path}: archived with another config (differs in: {', '.join(changed)}); "
                          f"remove {archived.path} to train it again, or use its settings")
    progress = load_json(archived.progress_path)
    if progress.get("finished_steps") != progress.get("total_steps"):
        raise ConfigError(f"{archived.progress_path}: {progress.get('finished_steps')} of {progress.get('total_steps')} "
                          f"steps: an archived run must be finished; remove {archived.path}")


def overall_progress(worker: str, run: RunDir, planned: Sequence[PlannedRun], elapsed: float,
                     trained_seconds: Sequence[float], workers: int, store: BenchArchive | None = None) -> str:
    """One line over the whole plan: method runs finished / planned, elapsed, and an estimate of what is
    left (this worker's mean time per trained run × the unfinished runs / the number of workers)."""
    done = sum(record_of(run, p, store) is not None for p in planned)
    line = f"{worker}: {done}/{len(planned)} method runs finished, {_clock(elapsed)} elapsed"
    if done < len(planned) and trained_seconds:
        left = np.mean(trained_seconds) * (len(planned) - done) / workers
        line += f", ~{_clock(left)} left (from {len(trained_seconds)} run(s) trained here)"
    return line


TRAIN_PHASES = ("data", "forward", "backward", "optimizer", "hooks")  # benchmarks/stream_profile.py's phases


@dataclass
class RunEstimate:
    run: PlannedRun
    core_seconds: float
    source: str  # where the number comes from
    finished: bool


def estimate_costs(planned: Sequence[PlannedRun], profile: dict[str, Any], method_costs: dict[str, Any] | None = None,
                   run: RunDir | None = None, label: str = "after",
                   store: BenchArchive | None = None) -> list[RunEstimate]:
    """Core-seconds of each planned method run, from measured costs (`l2emg bench --dry-run`).

    profile: benchmarks/stream_profile.json — whole method runs profiled by phase (`label`: "after" is
    the current code); a method measured there costs what it measured (ES-MoE's ablations what ES-MoE
    did). Any other method costs SeqLoRA's run with its training phases scaled by the method's measured
    training-step cost relative to SeqLoRA (benchmarks/results/methods_cost.json `training`), or SeqLoRA's
    run where that is not measured either. A split or order is assumed to cost what Unseen order 1 did.
    With `run` (and `store`, an archive), method runs already finished there are marked (they cost
    nothing more), and a method with finished runs there that recorded their CPU seconds costs their
    mean instead (`recorded`); the methods without such runs are then scaled by the mean ratio of the
    recorded costs to their own estimates (the run folder's profile and machine against the stream
    profile's: a SmolLM2 run folder costs ~12× the default profile's measurement)."""
    measured: dict[str, dict[str, Any]] = {}
    for entry in profile.get("runs", []):
        detail = (entry.get("details") or {}).get(label)
        if detail:
            measured[entry["method"]] = detail
    if "seqlora" not in measured:
        raise ConfigError(f"the stream profile has no {label!r} run of seqlora to scale other methods from")
    ratios = {m: float(v["ratio_vs_seqlora"]) for m, v in ((method_costs or {}).get("training") or {}).items()}
    base = measured["seqlora"]
    base_train = sum(float(base["phases"].get(p, 0.0)) for p in TRAIN_PHASES)
    recorded_costs = recorded(run, sorted({p.method for p in planned}), store)
    estimated: dict[str, tuple[float, str]] = {}
    for method in sorted({p.method for p in planned}):
        key = "esmoe" if method.startswith("esmoe") and "esmoe" in measured else method
        if key in measured:
            estimated[method] = float(measured[key]["core_seconds"]), f"measured ({key})"
        elif method in ratios:
            estimated[method] = (float(base["core_seconds"]) + base_train * (ratios[method] - 1.0),
                                 f"seqlora × training step {ratios[method]:.2f}")
        else:
            estimated[method] = float(base["core_seconds"]), "as seqlora (not measured)"
    scales = [recorded_costs[m][0] / estimated[m][0] for m in recorded_costs if estimated[m][0] > 0]
    scale = float(np.mean(scales)) if scales else 1.0
    out = []
    for p in planned:
        if p.method in recorded_costs:
            cost, source = recorded_costs[p.method]
        elif scales:
            cost = estimated[p.method][0] * scale
            source = f"{estimated[p.method][1]} × {scale:.2f} (recorded / estimated here)"
        else:
            cost, source = estimated[p.method]
        out.append(RunEstimate(p, cost, source, record_of(run, p, store) is not None))
    return out


def recorded(run: RunDir | None, methods: Sequence[str],
             store: BenchArchive | None = None) -> dict[str, tuple[float, str]]:
    """{method: (mean core-seconds, source)} over the method's finished runs in `run` or archived in
    `store` (any split and order) that recorded their CPU seconds (training + evaluation, all threads of the main process; a
    run over several processes counts its main one only): what the current code and evaluation
    protocol cost on this machine, preferred to the stream profile. Methods without such runs are
    left out."""
    from l2emg.data.stream import SCENARIO_ORDERS, STREAM_SPLITS
    from l2emg.eval.table2 import run_time

    costs: dict[str, tuple[float, str]] = {}
    for method in methods:
        seconds = []
        for split in STREAM_SPLITS:
            for order in sorted(SCENARIO_ORDERS):
                method_run = record_of(run, PlannedRun(method, split, order), store)
                if method_run is None:
                    continue
                t = run_time(method_run)
                if t["train_cpu_s"] is not None and t["eval_cpu_s"] is not None:
                    seconds.append(t["train_cpu_s"] + t["eval_cpu_s"])
        if seconds:
            costs[method] = (float(np.mean(seconds)), f"recorded ({len(seconds)} run{'s' * (len(seconds) > 1)})")
    return costs


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(seconds)))


def _finished(method_run: MethodRunDir) -> bool:
    return method_run.adapter_path.exists() and method_run.report_path.exists()
