"""`l2emg eval …`: train the evaluator and measure motions (FID, R-Precision, …) and continual runs.

    l2emg eval train --data DIR --out DIR [--profile P] [--set evaluator.epochs=10]
    l2emg eval reference --evaluator DIR --data DIR [--split test]
    l2emg eval motions --evaluator DIR --data DIR --motions DIR [--split test]
    l2emg eval continual RESULTS.json [MORE.json …] --out DIR

Generated-motions folder for `eval motions`: one file per test motion, named after the id of the
test motion whose caption produced it:
    ID.npy        (T, 263) raw (denormalised) HumanML3D features, or (K, T, 263) for K generations
    ID/*.npy      alternatively, a folder of K generations (any lengths) of that id
    ID.txt        optional: the caption that produced it (first line); default: the id's first caption
MultiModality is reported when there are 2 or more generations per id.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

import typer

from l2emg.commands import PROFILE_HELP
from l2emg.errors import DataError

app = typer.Typer(help="Train the evaluator and measure generated motions (FID, R-Precision, …).", no_args_is_help=True)


def _console():
    from rich.console import Console

    return Console()


def _metrics_table(title: str, result: dict[str, Any]):
    from rich.table import Table

    from l2emg.eval.report import REFERENCE_COLUMNS, format_summary

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value (mean ± 95 % CI)", justify="right")
    for key, name in REFERENCE_COLUMNS:
        table.add_row(name, format_summary(result["metrics"].get(key)))
    transfer = result.get("transfer")
    if transfer and transfer.get("num_motions"):
        trained = result["num_motions"] - transfer["num_motions"]
        table.add_row(f"trained pairs ({trained} motions)", "")
        table.add_row("  Emotion F1", format_summary(result["metrics"].get("emotion_f1_trained")))
        label = ", ".join(f"{s}/{e}" for s, e in transfer["pairs"])
        table.add_row(f"held-out pairs ({transfer['num_motions']} motions: {label})", "")
        for key, name in (("r_precision_top1", "  Top-1"), ("r_precision_top3", "  Top-3"), ("emotion_f1", "  Emotion F1")):
            table.add_row(name, format_summary(transfer.get(key)))
    return table


@app.command("train")
def train(
    data: Path = typer.Option(..., "--data", help="dataset folder (HumanML3D layout)"),
    out: Path = typer.Option(..., "--out", help="folder for the evaluator checkpoint"),
    profile: str = typer.Option("default", help=PROFILE_HELP),
    overrides: Optional[list[str]] = typer.Option(None, "--set", help="config override, e.g. evaluator.epochs=10"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Train the evaluator on the dataset's train split (all scenarios) and save it."""
    from l2emg.config import load_config
    from l2emg.eval.evaluator import train_evaluator

    config = load_config(profile, overrides)
    evaluator = train_evaluator(config, data, out, progress=progress)
    best = evaluator.meta.get("best", {})
    scores = ", ".join(f"{k[4:]}={v:.3f}" for k, v in best.items() if k.startswith("val_"))
    _console().print(f"evaluator saved to {out} in {evaluator.meta['train_seconds']} s "
                     f"(best epoch {best.get('epoch')}: {scores or 'no val split'})")


@app.command("reference")
def reference(
    evaluator_dir: Path = typer.Option(..., "--evaluator", help="trained evaluator folder"),
    data: Path = typer.Option(..., "--data", help="dataset folder"),
    split: str = typer.Option("test", help="split to measure"),
    out: Optional[Path] = typer.Option(None, help="JSON to write (default: EVALUATOR/reference_SPLIT.json)"),
    repeats: Optional[int] = typer.Option(None, help="repeated evaluations (default: evaluator.eval_repeats)"),
    seed: int = typer.Option(0),
) -> None:
    """The real-motion reference row on a split (like HumanML3D's "Real motion" row)."""
    from l2emg.data.reader import load_dataset
    from l2emg.eval.evaluate import reference_row
    from l2emg.eval.evaluator import Evaluator
    from l2emg.eval.report import format_summary
    from l2emg.utils.io import save_json

    evaluator = Evaluator.from_pretrained(evaluator_dir)
    dataset = load_dataset(data)
    result = reference_row(evaluator, dataset, split, repeats, seed)
    out = out or evaluator_dir / f"reference_{split}.json"
    save_json(out, result)
    console = _console()
    console.print(_metrics_table(f"Real motions, {split} split ({result['num_motions']} motions, "
                                 f"{result['repeats']} repeats)", result))
    s = result["sanity"]
    console.print(f"FID between two halves of {s['half_size']} real motions: {format_summary(s['fid_two_halves'], 4)}; "
                  f"noised half vs real half: {format_summary(s['fid_noised'], 3)}; frame-shuffled half vs real half: "
                  f"{format_summary(s['fid_frame_shuffled'], 3)}; chance top-1 {s['chance_r_precision_top1']:.3f}")
    console.print(f"saved {out}")


_NPY = re.compile(r"^(?P<id>.+)\.npy$")


def read_motions_folder(folder: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """A generated-motions folder (format in this module's docstring) -> (id -> generations, id -> caption)."""
    from l2emg.utils.io import load_npy, read_text

    if not folder.is_dir():
        raise DataError(f"{folder}: motions folder not found")
    motions: dict[str, Any] = {}
    captions: dict[str, str] = {}

    def load(path: Path):
        try:
            return load_npy(path)
        except (ValueError, OSError, EOFError) as err:
            raise DataError(f"{path}: unreadable .npy file ({err})") from err

    for path in sorted(folder.iterdir()):
        if path.is_dir():
            files = sorted(path.glob("*.npy"))
            if files:
                motions[path.name] = [load(p) for p in files]
        elif (m := _NPY.match(path.name)) is not None:
            motions[m["id"]] = load(path)
    for motion_id in motions:
        text_path = folder / f"{motion_id}.txt"
        if text_path.exists():
            text = read_text(text_path, "a caption (the first line is the text that produced the motion)")
            lines = [line.split("#")[0].strip() for line in text.splitlines()]
            if lines and lines[0]:
                captions[motion_id] = lines[0]
    if not motions:
        raise DataError(f"{folder}: no generated motions (expected ID.npy files or ID/ folders of .npy files)")
    return motions, captions


@app.command("motions")
def motions(
    evaluator_dir: Path = typer.Option(..., "--evaluator", help="trained evaluator folder"),
    data: Path = typer.Option(..., "--data", help="dataset folder the motions were generated for"),
    motions_dir: Path = typer.Option(..., "--motions", help="folder of generated ID.npy files (format below)"),
    split: str = typer.Option("test", help="split the ids belong to"),
    out: Optional[Path] = typer.Option(None, help="JSON to write (default: MOTIONS/metrics.json)"),
    repeats: Optional[int] = typer.Option(None, help="repeated evaluations (default: evaluator.eval_repeats)"),
    seed: int = typer.Option(0),
) -> None:
    """Measure a folder of generated motions against the real motions of the same test ids.

    MOTIONS holds, per test motion ID whose caption produced it: ID.npy with raw (denormalised) (T, 263) features, or (K, T, 263) for K generations; or a folder ID/ of K .npy generations; and optionally ID.txt whose first line is the caption used (default: the ID's first caption). MultiModality is reported when there are 2 or more generations per ID.
    """
    from l2emg.data.reader import load_dataset
    from l2emg.eval.evaluate import evaluate_motions
    from l2emg.eval.evaluator import Evaluator
    from l2emg.utils.io import save_json

    generated, captions = read_motions_folder(motions_dir)  # the user's files first: cheap to check
    evaluator = Evaluator.from_pretrained(evaluator_dir)
    dataset = load_dataset(data)
    result = evaluate_motions(evaluator, generated, dataset, split, captions=captions, repeats=repeats, seed=seed)
    out = out or motions_dir / "metrics.json"
    save_json(out, result)
    console = _console()
    console.print(_metrics_table(f"Generated motions ({result['num_motions']} ids, {result['repeats']} repeats)", result))
    console.print(f"saved {out}")


@app.command("continual")
def continual(
    results: list[Path] = typer.Argument(..., help="RESULTS.json of a continual run (several: one per scenario order)"),
    out: Path = typer.Option(..., "--out", help="folder for metrics JSON, heatmaps and the Table-2 row"),
) -> None:
    """Performance matrices -> AF, AR, AD, AMM, AWF, FR (+BWT/FWT, AWF_trained, AWF_heldout), heatmaps, a Table-2 row."""
    from l2emg.eval.continual_metrics import (
        average_over_orders,
        continual_metrics,
        load_results,
        save_continual_metrics,
    )
    from l2emg.eval.report import awf_parts_table, render_heatmaps, table2_header, table2_row
    from l2emg.eval.table2 import PARTS_NOTE
    from l2emg.utils.io import atomic_write_text

    console = _console()
    runs, lines, labelled = [], [table2_header()], {}
    for k, path in enumerate(results):
        perf = load_results(path)
        metrics = continual_metrics(perf)
        folder = out if len(results) == 1 else out / f"{k + 1}_{path.stem}"
        save_continual_metrics(folder / "continual_metrics.json", perf, metrics)
        pictures = render_heatmaps(perf, folder)
        runs.append(metrics)
        label = perf.method if len(results) == 1 else f"{perf.method} ({path.stem})"
        labelled[label] = metrics
        lines.append(table2_row(label, metrics))
        console.print(f"{path}: {len(perf.scenarios)} scenarios -> {folder / 'continual_metrics.json'}, "
                      f"{len(pictures)} heatmaps")
    if len(runs) > 1:
        average = average_over_orders(runs)
        label = f"{average['method']} (mean of {len(runs)})"
        labelled[label] = average
        lines.append(table2_row(label, average))
        from l2emg.utils.io import save_json

        save_json(out / "continual_metrics_mean.json", average)
    table = "\n".join(lines) + "\n\nFR in percentage points (the paper's Table 2 convention).\n"
    parts = awf_parts_table(labelled)
    if parts is not None:
        table += f"\n{parts}\n\n{PARTS_NOTE}\n"
    atomic_write_text(out / "table2.md", table)
    console.print(table)
