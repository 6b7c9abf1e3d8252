"""`l2emg learn`: a finished method run learns one more scenario (the paper's self-evolving loop)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from l2emg.commands import METHOD_LIST

console = Console()


def learn(
    data: Path = typer.Option(..., help="dataset folder in the HumanML3D layout (e.g. from `l2emg data import`); "
                                        "its train split is learned, its test split evaluated"),
    scenario: str = typer.Option(..., help="name of the new scenario (a row and a column of the matrices)"),
    run: Path = typer.Option(Path("runs/default"), "--run", help="run folder with a finished method run"),
    method: Optional[str] = typer.Option(None, help=f"method run: a method name ({METHOD_LIST}) or a folder name "
                                                    "(esmoe-unseen-o1); needed when the run has several"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show progress bars"),
) -> None:
    """Continue a finished stream with one more scenario learned from DATA.

    The method's lifecycle runs step N+1 (ES-MoE: a new expert and gate key; the emotion block's
    dictionary grows from the new data only), with the stream's epochs, optimiser and seeds, then
    evaluates on every old scenario and the new one, appends the row to the performance matrices,
    writes the report again and points adapter.json to the new checkpoint (`l2emg generate` uses
    it). The data is copied into the method run (learned/<scenario>/) and encoded with the run's
    tokenizer; its reconstruction error is compared with the run's own and a warning says when the
    motions lie outside what the tokenizer learned. A killed learn resumes when run again.
    """
    from l2emg.continual.learn import learn_scenario
    from l2emg.continual.report import method_label
    from l2emg.eval.report import table2_header, table2_row
    from l2emg.utils.io import load_json

    results = learn_scenario(run, method, data, scenario, progress=progress)
    last = results["steps"][-1]["results"]
    for name in results["scenarios"]:
        cell = last.get(name, {})
        top1 = cell.get("r_precision_top1", {}).get("mean") if cell else None
        f1 = cell.get("emotion_f1", {}).get("mean") if cell else None
        console.print(f"  {name:<22} top-1 {'–' if top1 is None else f'{top1:.3f}'}   "
                      f"emotion F1 {'–' if f1 is None else f'{f1:.3f}'}")
    from l2emg.runs import RunDir

    method_run = RunDir(run).find_method_run(method or results["method"])
    metrics = load_json(method_run.metrics_path)
    console.print(table2_header())
    console.print(table2_row(method_label(results["method"]), metrics))
    console.print(f"report: {method_run.report_path}")
