"""The paper's whole evaluation in one call: methods × splits × orders trained into one run folder,
then Table 2 over the orders (mean ± 95 % CI), next to the paper's numbers, with Kendall τ between
our ranking and the paper's, Figure 3's FID heatmaps and the emotion-transfer column.

    plan      one `PlannedRun` per (method, split, order); a joint-training method (MTL) does not
              depend on the order, so it runs once per split with order 1 (and is reported once)
    train     every planned method run through `StreamTrainer.run_stream` (finished ones are reused,
              unfinished ones resumed). `shard=(k, n)`: worker k takes the planned runs whose index
              % n == k − 1, then any other planned run that is neither finished nor locked by another
              worker (`BusyError` = in training elsewhere: skipped), so n workers on one run folder
              finish the table with each method run trained once
    report    when every planned run is finished (whichever worker gets there):
              RUN/bench/table2.md, table2.json, figure3_fid_<split>_<method>.png, figure4.png + .gif/.mp4
              (paths: `RunDir`)

Floor of `pipeline` / `continual` (docs/design.md, "Layers"): it uses both; the command line
(`l2emg bench`, `l2emg.commands.bench`) only parses and prints.
"""

from __future__ import annotations

import datetime
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from rich.console import Console

from l2emg.config import Config
from l2emg.continual.learned import read_learned
from l2emg.errors import BusyError, ConfigError
from l2emg.runs import MethodRunDir, RunDir
from l2emg.utils.io import atomic_write_text, load_json, save_json

console = Console(stderr=True)  # progress lines, beside the trainer's (stdout: the summary)

TABLE_COLUMNS: tuple[str, ...] = ("AF", "AR", "AD", "AMM", "AWF", "FR")
LOWER_BETTER: dict[str, bool] = {"AF": True, "AR": False, "AD": False, "AMM": False, "AWF": False, "FR": True,
                                 "transfer_f1": False, "transfer_top1": False}
DIGITS: dict[str, int] = {"AF": 2, "AR": 3, "AD": 2, "AMM": 2, "AWF": 3, "FR": 2, "transfer_f1": 3,
                          "transfer_top1": 3}
KENDALL_COLUMNS: tuple[str, ...] = ("AF", "AR", "AWF", "FR")
TRANSFER_COLUMNS: dict[str, str] = {"transfer_f1": "emotion_f1", "transfer_top1": "r_precision_top1"}


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
    table: Path | None = None  # table2.md once every planned run is finished
    figures: list[Path] = field(default_factory=list)


# -- the plan ---------------------------------------------------------------------------------------
def _joint(method: str) -> bool:
    from l2emg.continual.methods import method_class

    return bool(method_class(method).joint_training)


def check_selection(methods: Sequence[str], splits: Sequence[str], orders: Sequence[int],
                    shard: tuple[int, int] = (1, 1)) -> None:
    """ConfigError (one line) for an unknown method, split or order, an empty list, or a bad shard."""
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


def plan(methods: Sequence[str], splits: Sequence[str], orders: Sequence[int]) -> list[PlannedRun]:
    """Every method run of the table, split by split; a joint-training method once per split (order 1)."""
    runs = []
    for split in splits:
        for method in methods:
            for order in ([1] if _joint(method) else orders):
                runs.append(PlannedRun(method, split, order))
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
          orders: Sequence[int], shard: tuple[int, int] = (1, 1), progress: bool = True) -> BenchOutcome:
    """Prepare the run's shared stages, train this worker's share of the plan (then anything left
    that nobody is training), and write the tables once every planned run is finished."""
    from l2emg.continual.trainer import StreamTrainer
    from l2emg.pipeline import prepare_run

    check_selection(methods, splits, orders, shard)
    planned = plan(methods, splits, orders)
    run = prepare_run(run_dir, config, progress=progress, previews=False)
    outcome = BenchOutcome(planned)
    own, others = shard_runs(planned, shard)
    worker = f"bench {shard[0]}/{shard[1]}" if shard[1] > 1 else "bench"
    started, trained_seconds = time.time(), []
    for p in [*own, *others]:
        method_run = run.method_run(p.method, p.split, p.order)
        is_own = p in own
        if not is_own and _finished(method_run):
            continue  # another worker's share, finished: nothing to say
        console.print(overall_progress(worker, run, planned, time.time() - started, trained_seconds, shard[1]),
                      soft_wrap=True)
        trainer = StreamTrainer(run, config, p.method, p.split, p.order, progress=progress)
        if trainer.is_finished():
            trainer.run_stream()  # checks the method run's config, writes nothing
            outcome.reused.append(p.name)
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
    console.print(overall_progress(worker, run, planned, time.time() - started, trained_seconds, shard[1]),
                  soft_wrap=True)
    if all(_finished(run.method_run(p.method, p.split, p.order)) for p in planned):
        try:
            with run.bench_lock():
                outcome.table, outcome.figures = write_tables(run, planned)
        except BusyError:
            pass  # another worker is writing the same tables
    return outcome


def overall_progress(worker: str, run: RunDir, planned: Sequence[PlannedRun], elapsed: float,
                     trained_seconds: Sequence[float], workers: int) -> str:
    """One line over the whole plan: method runs finished / planned, elapsed, and an estimate of what is
    left (this worker's mean time per trained run × the unfinished runs / the number of workers)."""
    done = sum(_finished(run.method_run(p.method, p.split, p.order)) for p in planned)
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
                   run: RunDir | None = None, label: str = "after") -> list[RunEstimate]:
    """Core-seconds of each planned method run, from measured costs (`l2emg bench --dry-run`).

    profile: benchmarks/stream_profile.json — whole method runs profiled by phase (`label`: "after" is
    the current code); a method measured there costs what it measured (ES-MoE's ablations what ES-MoE
    did). Any other method costs SeqLoRA's run with its training phases scaled by the method's measured
    training-step cost relative to SeqLoRA (benchmarks/results/methods_cost.json `training`), or SeqLoRA's
    run where that is not measured either. A split or order is assumed to cost what Unseen order 1 did.
    With `run`, method runs already finished there are marked (they cost nothing more)."""
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
    out = []
    for p in planned:
        key = "esmoe" if p.method.startswith("esmoe") and "esmoe" in measured else p.method
        if key in measured:
            cost, source = float(measured[key]["core_seconds"]), f"measured ({key})"
        elif p.method in ratios:
            cost = float(base["core_seconds"]) + base_train * (ratios[p.method] - 1.0)
            source = f"seqlora × training step {ratios[p.method]:.2f}"
        else:
            cost, source = float(base["core_seconds"]), "as seqlora (not measured)"
        finished = run is not None and _finished(run.method_run(p.method, p.split, p.order))
        out.append(RunEstimate(p, cost, source, finished))
    return out


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(seconds)))


def _finished(method_run: MethodRunDir) -> bool:
    return method_run.adapter_path.exists() and method_run.report_path.exists()


# -- statistics -------------------------------------------------------------------------------------
def mean_ci(values: Iterable[float | None]) -> dict[str, Any]:
    """{"mean", "ci95", "n", "values"} over the per-order values (None skipped): the t-distribution
    95 % half-width t_{0.975, n−1} · s / √n (s with ddof 1); ci95 None for fewer than two values."""
    from scipy import stats

    kept = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    n = len(kept)
    mean = float(np.mean(kept)) if kept else None
    ci = float(stats.t.ppf(0.975, n - 1) * np.std(kept, ddof=1) / math.sqrt(n)) if n >= 2 else None
    return {"mean": mean, "ci95": ci, "n": n, "values": kept}


def kendall_tau(ours: dict[str, float | None], paper: dict[str, float | None]) -> dict[str, Any]:
    """Kendall τ between our values and the paper's over the methods both have (rankings of the
    same metric, so the metric's direction does not matter); τ None for fewer than two methods."""
    from scipy.stats import kendalltau

    common = sorted(m for m in ours if ours[m] is not None and paper.get(m) is not None)
    if len(common) < 2:
        return {"tau": None, "p": None, "methods": common}
    result = kendalltau([ours[m] for m in common], [paper[m] for m in common])
    tau, p = float(result.statistic), float(result.pvalue)
    return {"tau": None if math.isnan(tau) else tau, "p": None if math.isnan(p) else p, "methods": common}


def _transfer_value(results: dict[str, Any], key: str) -> float | None:
    """Mean over scenarios of one emotion-transfer measure after the last scenario."""
    steps = results.get("steps") or []
    cells = [(t or {}).get(key) for t in ((steps[-1].get("transfer") or {}).values() if steps else [])]
    values = [c["mean"] if isinstance(c, dict) else c for c in cells if c is not None]
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def collect(run: RunDir, planned: Sequence[PlannedRun]) -> dict[str, dict[str, dict[str, Any]]]:
    """cells[split][method][column] = mean_ci over the orders (FR in percentage points)."""
    from l2emg.eval.paper_table2 import paper_value

    cells: dict[str, dict[str, dict[str, Any]]] = {}
    for split in dict.fromkeys(p.split for p in planned):
        for method in dict.fromkeys(p.method for p in planned):
            runs = [run.method_run(p.method, p.split, p.order) for p in planned if p.split == split and p.method == method]
            for method_run in runs:
                if read_learned(method_run):
                    raise ConfigError(f"{method_run.learned_path}: this method run learned scenarios after its "
                                      f"stream (`l2emg learn`), so its row would not be the stream's; run the "
                                      f"bench in a run folder without them")
            metrics = [load_json(r.metrics_path) for r in runs]
            results = [load_json(r.results_path) for r in runs]
            row: dict[str, Any] = {"runs": [r.name for r in runs]}
            for column in TABLE_COLUMNS:
                scale = 100.0 if column == "FR" else 1.0
                row[column] = mean_ci(None if m.get(column) is None else scale * m[column] for m in metrics)
                row[column]["paper"] = paper_value(split, method, column)
            for column, key in TRANSFER_COLUMNS.items():
                row[column] = mean_ci(_transfer_value(r, key) for r in results)
            cells.setdefault(split, {})[method] = row
    return cells


def run_time(method_run: MethodRunDir) -> dict[str, Any]:
    """What one method run took, from its records: training and evaluation wall-clock seconds summed
    over its steps (evaluation None for runs trained before it was recorded) and its torch threads."""
    steps = load_json(method_run.results_path).get("steps") or []
    evals = [s.get("eval_seconds") for s in steps]
    progress = load_json(method_run.progress_path) if method_run.progress_path.exists() else {}
    return {"train_s": round(sum(float(s["train"]["seconds"]) for s in steps), 1),
            "eval_s": None if any(e is None for e in evals) else round(sum(evals), 1),
            "threads": (progress.get("environment") or {}).get("threads")}


def time_line(times: dict[str, dict[str, Any]]) -> str:
    """One sentence summing `run_time` over a split's method runs."""
    train = sum(t["train_s"] for t in times.values()) / 3600
    evaluated = [t["eval_s"] for t in times.values() if t["eval_s"] is not None]
    threads = sorted({t["threads"] for t in times.values() if t["threads"] is not None})
    text = f"Time: {len(times)} method runs, {train:.1f} h of training"
    if evaluated:
        text += f", {sum(evaluated) / 3600:.1f} h of evaluation ({len(evaluated)} of {len(times)} runs record it)"
    else:
        text += " (evaluation time not recorded by these runs)"
    if threads:
        text += f"; torch threads per run: {', '.join(map(str, threads))} (wall-clock seconds summed over runs)"
    return text + "."


def best_methods(rows: dict[str, dict[str, Any]], column: str, source: str = "mean") -> set[str]:
    """Methods holding the best value of a column (ours: source "mean"; the paper's: "paper")."""
    values = {m: row[column].get(source) for m, row in rows.items() if row[column].get(source) is not None}
    if not values:
        return set()
    best = (min if LOWER_BETTER[column] else max)(values.values())
    return {m for m, v in values.items() if v == best}


# -- the report -------------------------------------------------------------------------------------
def _cell(entry: dict[str, Any], digits: int, bold: bool, paper_bold: bool, with_paper: bool) -> str:
    if entry.get("mean") is None:
        text = "–"
    else:
        text = f"{entry['mean']:.{digits}f}" + (f" ± {entry['ci95']:.{digits}f}" if entry.get("ci95") is not None else "")
        text = f"**{text}**" if bold else text
    if with_paper and entry.get("paper") is not None:
        paper = f"{entry['paper']:.{digits}f}"
        text += f" ({'**' + paper + '**' if paper_bold else paper})"
    return text


def table_markdown(rows: dict[str, dict[str, Any]]) -> list[str]:
    from l2emg.continual.report import method_label
    from l2emg.eval.report import TABLE2_ARROWS

    columns = [*TABLE_COLUMNS, *TRANSFER_COLUMNS]
    titles = [f"{c}{TABLE2_ARROWS[c]}" for c in TABLE_COLUMNS] + ["transfer F1↑", "transfer top-1↑"]
    best = {c: best_methods(rows, c) for c in columns}
    paper_best = {c: best_methods(rows, c, "paper") for c in TABLE_COLUMNS}
    lines = ["| Method | " + " | ".join(titles) + " |", "|---" * (len(columns) + 1) + "|"]
    for method, row in rows.items():
        cells = [_cell(row[c], DIGITS[c], method in best[c], method in paper_best.get(c, set()), c in TABLE_COLUMNS)
                 for c in columns]
        lines.append(f"| {method_label(method)} | " + " | ".join(cells) + " |")
    return lines


def write_tables(run: RunDir, planned: Sequence[PlannedRun]) -> tuple[Path, list[Path]]:
    """RUN/bench/table2.md + table2.json + Figure 3 heatmaps, from the finished method runs."""
    from l2emg.eval.paper_table2 import PAPER_TABLE2

    cells = collect(run, planned)
    orders = sorted({p.order for p in planned})
    taus = {split: {c: kendall_tau({m: row[c]["mean"] for m, row in rows.items()},
                                   {m: v[c] for m, v in PAPER_TABLE2.get(split, {}).items()})
                    for c in KENDALL_COLUMNS}
            for split, rows in cells.items()}
    times = {split: {p.name: run_time(run.method_run(p.method, p.split, p.order)) for p in planned if p.split == split}
             for split in cells}
    figures = figure3(run, planned, cells)
    figures4 = figure4(run, planned)
    profile = run.config().profile if run.config_path.exists() else "?"
    lines = ["# Table 2 over splits and orders (`l2emg bench`)", "",
             f"Run `{run.path}`, profile `{profile}`, orders {', '.join(map(str, orders))} "
             "(a joint-training method such as MTL runs once per split, with order 1).", "",
             "Each cell: mean ± 95 % CI over the orders (t-distribution half-width; the mean alone for one "
             "order), the paper's value (LLaMA-2-7B) in parentheses; bold: the best of each column (ours, and "
             "separately the paper's among the methods shown). FR in percentage points of top-1 R-Precision. "
             "Transfer: emotion weighted F1 and top-1 R-Precision on the held-out (scenario, emotion) pairs "
             "after the last scenario, averaged over scenarios and orders.", ""]
    for split, rows in cells.items():
        lines += [f"## {split.capitalize()} split", "", *table_markdown(rows), ""]
        tau_cells = []
        for column, t in taus[split].items():
            value = "n/a" if t["tau"] is None else f"{t['tau']:+.2f}"
            tau_cells.append(f"{column} τ = {value} ({len(t['methods'])} methods)")
        lines += ["Kendall τ between our ranking and the paper's: " + "; ".join(tau_cells) + ".", "",
                  time_line(times[split]), ""]
    if figures:
        lines += ["## Figure 3: FID performance matrices", ""]
        lines += [f"![{p.stem}]({p.relative_to(run.bench_dir).as_posix()})" for p in figures]
        lines.append("")
    if figures4:
        png, animation = (p.relative_to(run.bench_dir).as_posix() for p in figures4)
        lines += ["## Figure 4: test captions (rows) × methods (columns), same seed", "",
                  f"![figure4]({png})", "", f"Animated: [{animation}]({animation})", ""]
    figures += figures4
    save_json(run.bench_json_path, {
        "profile": profile, "orders": orders, "splits": list(cells), "runs": [p.name for p in planned],
        "fr_units": "percentage points", "cells": cells, "kendall_tau": taus, "time": times,
        "figures": [p.relative_to(run.bench_dir).as_posix() for p in figures]})
    atomic_write_text(run.bench_table_path, "\n".join(lines) + "\n")
    return run.bench_table_path, figures


def figure3(run: RunDir, planned: Sequence[PlannedRun], cells: dict[str, dict[str, dict[str, Any]]]) -> list[Path]:
    """FID heatmaps of ES-MoE and the best other continual method (by AR; by AF where no AR was
    measured) per split, on the first planned order (each order has its own row/column sequence,
    so matrices are not averaged)."""
    from l2emg.continual.report import method_label
    from l2emg.eval.continual_metrics import load_results
    from l2emg.eval.report import plot_heatmap

    paths = []
    for split, rows in cells.items():
        continual = [m for m in rows if not _joint(m)]
        others = [m for m in continual if not m.startswith("esmoe")]
        chosen = [m for m in continual if m == "esmoe"]
        if others:
            chosen.append(max(others, key=lambda m: _by_ar(rows[m])))
        for method in chosen:
            p = next(q for q in planned if q.split == split and q.method == method)
            perf = load_results(run.method_run(p.method, p.split, p.order).results_path)
            if "fid" not in perf.matrices:
                continue
            title = f"{method_label(method)}, {split}, order {p.order}: FID"
            paths.append(plot_heatmap(perf.matrices["fid"], perf.scenarios, title,
                                      run.bench_figure3_path(split, method), lower_is_better=True))
    return paths


def _by_ar(row: dict[str, Any]) -> tuple[float, float]:
    """Sort key: higher AR first, then lower AF (missing values last)."""
    ar, af = row["AR"]["mean"], row["AF"]["mean"]
    return (-math.inf if ar is None else ar, -math.inf if af is None else -af)


def figure4(run: RunDir, planned: Sequence[PlannedRun], captions: int = 3, seed: int = 0,
            keyframes: int = 4, size: int = 120) -> list[Path]:
    """The paper's Figure 4: the first `captions` test captions (one per emotion where possible) × every
    continual method's final model on the first planned split and order, all generated with the same
    seed; rows = captions, columns = methods. A PNG of keyframe strips and an animation of the same grid
    (`preview.format`: gif or mp4). Returns [png, animation], or [] without a continual method."""
    import io
    import tempfile

    from PIL import Image, ImageDraw

    from l2emg.continual.checkpoint import restore_method
    from l2emg.continual.report import method_label
    from l2emg.data.reader import load_dataset
    from l2emg.lm.generate import codes_to_motion
    from l2emg.lm.motion_lm import MotionLM
    from l2emg.motion.render import render_grid, render_keyframes
    from l2emg.tokenizer.api import MotionTokenizer
    from l2emg.utils.io import atomic_write_bytes

    chosen: list[PlannedRun] = []
    for p in planned:
        if not _joint(p.method) and p.split == planned[0].split and p.method not in {q.method for q in chosen}:
            chosen.append(min((q for q in planned if q.method == p.method and q.split == p.split), key=lambda q: q.order))
    if not chosen:
        return []
    config = run.config()
    dataset = load_dataset(run.data_dir)
    picks, emotions = [], set()
    for record in dataset.split("test"):
        if record.emotion not in emotions:
            picks.append(record.captions[0].text)
            emotions.add(record.emotion)
        if len(picks) == captions:
            break
    motion_tokenizer = MotionTokenizer.from_pretrained(run.tokenizer_dir)
    motions: dict[str, list[np.ndarray]] = {}  # method -> one motion per caption
    for p in chosen:
        method_run = run.method_run(p.method, p.split, p.order)
        method_name, checkpoint = method_run.final_checkpoint()
        lm = MotionLM.load(run.lm_dir, dtype=config.lm.dtype)
        method = restore_method(method_name, _method_config(method_run), lm, checkpoint)
        codes = lm.generate(picks, max_codes=config.lm.max_codes, greedy=False,
                            temperature=config.train.eval_temperature, top_k=config.train.eval_top_k,
                            batch_size=len(picks), seed=seed, prepare=method.prepare_generation,
                            precision=config.lm.precision)
        motions[p.method] = codes_to_motion(motion_tokenizer, codes)[1]

    # The keyframe strips: a header of method names over one column per method, a row per caption.
    cells: list[list[Image.Image]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, caption in enumerate(picks):
            row = []
            for p in chosen:
                path = render_keyframes(motions[p.method][k], Path(tmp) / f"{p.method}_{k}.png", n=keyframes,
                                        caption=caption, size=size)
                with Image.open(path) as image:
                    row.append(image.convert("RGB"))
            cells.append(row)
    header, pad = 20, 6
    cell_w = max(im.width for row in cells for im in row)
    cell_h = max(im.height for row in cells for im in row)
    canvas = Image.new("RGB", (len(chosen) * (cell_w + pad), header + len(picks) * (cell_h + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    for j, p in enumerate(chosen):
        draw.text((j * (cell_w + pad) + pad, 4), method_label(p.method), fill="black")
    for k, row in enumerate(cells):
        for j, image in enumerate(row):
            canvas.paste(image, (j * (cell_w + pad), header + k * (cell_h + pad)))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=True)
    atomic_write_bytes(run.bench_figure4_path, buffer.getvalue())

    # The same grid animated (render_grid writes atomically).
    animation = render_grid([motions[p.method][k] for k in range(len(picks)) for p in chosen],
                            [caption for caption in picks for _ in chosen],
                            run.bench_figure4_animation_path(config.preview.format), ncols=len(chosen),
                            fps=config.preview.fps, size=config.preview.size,
                            titles=[method_label(p.method) for _ in picks for p in chosen])
    return [run.bench_figure4_path, animation]


def _method_config(method_run: MethodRunDir) -> Config:
    from l2emg.config import read_saved_config

    return read_saved_config(method_run.config_path)
