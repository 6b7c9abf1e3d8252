"""The studio's Report tab: what `l2emg train` and `l2emg bench` already wrote, gathered for a page.

    table = table2_markdown(RunDir("runs/default"))     # one Table-2 row per finished method run
    report = method_report(run.find_method_run("esmoe"))

Nothing is recomputed: the rows come from each method run's `metrics.json` through the same
writer as its `report.md` (`l2emg.eval.table2`), the text, heatmaps and GIF grids from
`report.md` and the files it links (`figures/`, `samples/`), and `l2emg bench`'s table from
`RUN/bench/table2.md` when it exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from l2emg.runs import MethodRunDir, RunDir
from l2emg.utils.io import load_json

_IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<path>[^)]+)\)\s*$")


@dataclass
class MethodReport:
    """One method run's report, split for a page: text, heatmaps and animated sample grids."""

    name: str
    markdown: str
    figures: list[tuple[Path, str]] = field(default_factory=list)  # (PNG, caption)
    samples: list[tuple[Path, str]] = field(default_factory=list)  # (GIF, caption)


def method_name(method_run: MethodRunDir) -> str:
    """The registry name of a finished method run (its `adapter.json`), or the folder's first part."""
    try:
        return str(load_json(method_run.adapter_path)["method"])
    except (OSError, ValueError, KeyError, TypeError):
        return method_run.name.split("-")[0]


def table2_markdown(run: RunDir) -> str:
    """Table 2 with one row per finished method run of `run` (those with a `metrics.json`)."""
    from l2emg.continual.report import method_label
    from l2emg.eval.table2 import FR_NOTE, markdown_table, values_from_metrics

    rows = {}
    for method_run in run.finished_method_runs():
        if not method_run.metrics_path.exists():
            continue
        try:
            metrics = load_json(method_run.metrics_path)
        except (OSError, ValueError):
            continue
        if isinstance(metrics, dict):
            rows[f"{method_label(method_name(method_run))} ({method_run.name})"] = values_from_metrics(metrics)
    if not rows:
        return "No finished method run with a report in this run yet."
    return markdown_table(rows) + "\n\n" + FR_NOTE


def bench_markdown(run: RunDir) -> str | None:
    """`l2emg bench`'s Table 2 over splits and orders, when it has been written."""
    path = run.bench_table_path
    return path.read_text(encoding="utf-8") if path.exists() else None


def method_report(method_run: MethodRunDir) -> MethodReport:
    """`report.md` of a method run without its image lines, and the images it links, in its order."""
    if not method_run.report_path.exists():
        return MethodReport(method_run.name, f"{method_run.name}: no report.md yet.")
    text, figures, samples = [], [], []
    for line in method_run.report_path.read_text(encoding="utf-8").splitlines():
        match = _IMAGE.match(line.strip())
        if match is None:
            text.append(line)
            continue
        path = (method_run.path / match["path"]).resolve()
        if not path.is_file() or not path.is_relative_to(method_run.path.resolve()):
            continue
        caption = match["alt"].replace("_", " ")
        (samples if path.suffix.lower() == ".gif" else figures).append((path, caption))
    return MethodReport(method_run.name, "\n".join(text).strip() + "\n", figures, samples)
