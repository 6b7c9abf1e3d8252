"""The paper's Table 2: its columns and the one writer of its rows, in Markdown and in JSON.

Every Table-2 row the package prints or stores is drawn here (floor 5 of docs/design.md, "Layers",
so that every floor above can use it):

    eval/report.py        `table2_header`, `table2_row` (`l2emg eval continual`, `train`, `learn`)
    continual/report.py   a method run's report.md (`single_table`)
    studio/report.py      the Report tab: one row per finished method run (`markdown_table`)
    bench_report.py       `l2emg bench`: RUN/bench/table2.md (`bench_markdown`) and table2.json (`bench_json`)

A row's *values*: {column: value, "<column>_ci95": 95 % half-width or None} for `COLUMNS` (AF, AR, AD,
AMM, AWF, FR) and `TRANSFER_COLUMNS`, FR in percentage points as the paper prints it.
`values_from_metrics` makes them from a method run's metrics.json (FR a fraction there, as
`eval.continual_metrics` computes it); `over_orders` averages several orders (mean ± t-interval,
`eval.metrics.mean_ci`). `markdown_row` draws values as `| label | AF | AR | … |` with the paper's
digits (`mean ± h` where a half-width is known; bold and the paper's value in parentheses for the
bench), `json_row` as one row of table2.json:

    {"rows": [{"method", "split", "order" | "orders", "AF", "AF_ci95", …, "FR", "FR_ci95",
               "transfer_f1", "transfer_top1", "AWF_trained", "AWF_trained_ci95", "AWF_heldout",
               "AWF_heldout_ci95", "AF_pooled", "AF_pooled_ci95", "profile", "backbone"}, …],
     "kendall_tau": {split: {column: {"tau", "p", "methods"}}}, "machine": {…}, "date": ISO 8601, …}

(`ROW_FIELDS`, `schema_problems`); one row per method and split with "orders" (means and 95 % CIs over
those orders), followed by one row per order with "order" (that run's values; its half-widths are
the repeated evaluations' own). `PART_COLUMNS` (AWF in two parts: on the test motions of the trained
and of the held-out (scenario, emotion) pairs, `eval.continual_metrics`) are not the paper's: the
Markdown shows them in a small table of their own beside AWF (`parts_table`), with `POOLED_COLUMNS`
(FID pooled over scenarios beside AF), and rows written before they existed lack them
(`OPTIONAL_FIELDS`; read as None).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from l2emg.eval.metrics import kendall_tau, mean_ci
from l2emg.runs import MethodRunDir
from l2emg.utils.io import load_json

COLUMNS: tuple[str, ...] = ("AF", "AR", "AD", "AMM", "AWF", "FR")
ARROWS: dict[str, str] = {"AF": "↓", "AR": "↑", "AD": "↑", "AMM": "↑", "AWF": "↑", "FR": "↓"}
# transfer column -> the results.json measure averaged over scenarios after the last step
TRANSFER_COLUMNS: dict[str, str] = {"transfer_f1": "emotion_f1", "transfer_top1": "r_precision_top1"}
ALL_COLUMNS: tuple[str, ...] = (*COLUMNS, *TRANSFER_COLUMNS)
# AWF in two parts: trained and held-out (scenario, emotion) pairs (metrics.json's fields of the same names)
PART_COLUMNS: tuple[str, ...] = ("AWF_trained", "AWF_heldout")
# FID of the last step's generations of every scenario pooled against all their real test motions
POOLED_COLUMNS: tuple[str, ...] = ("AF_pooled",)
SIDE_COLUMNS: tuple[str, ...] = (*PART_COLUMNS, *POOLED_COLUMNS)  # not the paper's: the small table beside it
PARTS_TABLE_COLUMNS: tuple[str, ...] = ("AWF", *PART_COLUMNS)
POOLED_TABLE_COLUMNS: tuple[str, ...] = ("AF", *POOLED_COLUMNS)
ROW_COLUMNS: tuple[str, ...] = (*ALL_COLUMNS, *SIDE_COLUMNS)  # every column a row's values carry
TITLES: dict[str, str] = {**{c: f"{c}{ARROWS[c]}" for c in COLUMNS},
                          "transfer_f1": "transfer F1↑", "transfer_top1": "transfer top-1↑",
                          "AWF_trained": "AWF trained↑", "AWF_heldout": "AWF held-out↑", "AF_pooled": "AF pooled↓"}
LOWER_IS_BETTER: dict[str, bool] = {**{c: ARROWS[c] == "↓" for c in COLUMNS}, "transfer_f1": False, "transfer_top1": False,
                                    "AWF_trained": False, "AWF_heldout": False, "AF_pooled": True}
DIGITS: dict[str, int] = {"AF": 2, "AR": 3, "AD": 2, "AMM": 2, "AWF": 3, "FR": 2, "transfer_f1": 3, "transfer_top1": 3,
                          "AWF_trained": 3, "AWF_heldout": 3, "AF_pooled": 2}
PARTS_NOTE = ("AWF in two parts: emotion weighted F1 on the test motions of the trained (scenario, emotion) pairs "
              "only, and on those of the held-out pairs only (averaged over the scenarios that have such pairs; "
              "– where none has).")
POOLED_NOTE = ("AF pooled: one FID of the last step's generations of all scenarios against all their real test "
               "motions, beside AF, the mean of per-scenario FIDs over 40–170 motions each (fewer than the "
               "evaluator's 128 dimensions).")
KENDALL_COLUMNS: tuple[str, ...] = ("AF", "AR", "AWF", "FR")  # ranked against the paper's
FR_SCALE = 100.0  # metrics.json's FR (a fraction of top-1 R-Precision) -> percentage points
FR_UNITS = "percentage points"
FR_NOTE = "FR in percentage points of top-1 R-Precision, as the paper prints it."
ONE_ORDER_MARK = "†"
ONE_ORDER_NOTE = (f"{ONE_ORDER_MARK} one order only: ± the 95 % half-width over that run's evaluation repetitions "
                  "(generation and scoring noise), not over orders.")

METRIC_FIELDS: tuple[str, ...] = tuple(f for c in COLUMNS for f in (c, f"{c}_ci95"))
PART_FIELDS: tuple[str, ...] = tuple(f for c in SIDE_COLUMNS for f in (c, f"{c}_ci95"))
OPTIONAL_FIELDS: frozenset[str] = frozenset(PART_FIELDS)  # absent from table2.json written before them
NUMBER_FIELDS: tuple[str, ...] = (*METRIC_FIELDS, *TRANSFER_COLUMNS, *PART_FIELDS)


def row_fields(per_order: bool = False) -> tuple[str, ...]:
    """The fields of one table2.json row, in order: a per-order row has "order", an average "orders"."""
    return ("method", "split", "order" if per_order else "orders", *METRIC_FIELDS, *TRANSFER_COLUMNS,
            *PART_FIELDS, "profile", "backbone")


ROW_FIELDS: tuple[str, ...] = row_fields()
DOCUMENT_FIELDS: tuple[str, ...] = ("rows", "kendall_tau", "machine", "date")


# -- values -----------------------------------------------------------------------------------------
def transfer_mean(transfer: Mapping[str, Any] | None, key: str) -> float | None:
    """Mean over scenarios of one emotion-transfer measure ({scenario: {key: {"mean", …} or value}},
    a results.json step's "transfer", metrics.json's "emotion_transfer")."""
    cells = [(t or {}).get(key) for t in (transfer or {}).values()]
    values = [c["mean"] if isinstance(c, dict) else c for c in cells if c is not None]
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def values_from_metrics(metrics: Mapping[str, Any], transfer: Mapping[str, Any] | None = None) -> dict[str, float | None]:
    """A method run's metrics.json (or an average of several; FR a fraction) -> a row's values, FR ×
    100; the transfer columns from `transfer` (default: metrics' own "emotion_transfer"); the parts of
    AWF (`PART_COLUMNS`) None where the metrics have none (written before them)."""
    values: dict[str, float | None] = {}
    for column in (*COLUMNS, *SIDE_COLUMNS):
        scale = FR_SCALE if column == "FR" else 1.0
        value, half = metrics.get(column), metrics.get(f"{column}_ci95")
        values[column] = None if value is None else scale * float(value)
        values[f"{column}_ci95"] = None if half is None else scale * float(half)
    transfer = metrics.get("emotion_transfer") if transfer is None else transfer
    for column, key in TRANSFER_COLUMNS.items():
        values[column] = transfer_mean(transfer, key)
        values[f"{column}_ci95"] = None
    return values


def over_orders(per_order: Iterable[Mapping[str, float | None]]) -> dict[str, dict[str, Any]]:
    """{column: `mean_ci` over the orders' values} for every column (a half-width of its own per order is
    not carried over: the interval is the orders' spread). One order: its values with the half-width of
    its own evaluation repetitions (`ONE_ORDER_NOTE`), {"ci_over": "evaluation"} in each column."""
    rows = list(per_order)
    if len(rows) == 1:
        return {column: {"mean": rows[0].get(column), "ci95": rows[0].get(f"{column}_ci95"),
                         "n": int(rows[0].get(column) is not None), "values": [rows[0].get(column)],
                         "ci_over": "evaluation"} for column in ROW_COLUMNS}
    return {column: {**mean_ci(row.get(column) for row in rows), "ci_over": "orders"} for column in ROW_COLUMNS}


def one_order(stats: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether a bench cell (`over_orders`' statistics) comes from a single order's run."""
    return any((entry or {}).get("ci_over") == "evaluation" for entry in stats.values() if isinstance(entry, dict))


def values_from_stats(stats: Mapping[str, Mapping[str, Any]]) -> dict[str, float | None]:
    """`over_orders`' statistics (or the bench's cells) -> a row's values (means and half-widths)."""
    values: dict[str, float | None] = {}
    for column in ROW_COLUMNS:
        entry = stats.get(column) or {}
        values[column], values[f"{column}_ci95"] = entry.get("mean"), entry.get("ci95")
    return values


# -- Markdown ---------------------------------------------------------------------------------------
def cell(value: float | None, ci95: float | None, digits: int, *, bold: bool = False, paper: float | None = None,
         paper_bold: bool = False) -> str:
    """`1.89`, `1.89 ± 0.12` (with a half-width), `**…**` (bold), `… (2.07)` (the paper's value); `–` when missing."""
    if value is None:
        text = "–"
    else:
        text = f"{value:.{digits}f}" + ("" if ci95 is None else f" ± {ci95:.{digits}f}")
        text = f"**{text}**" if bold else text
    if paper is not None:
        shown = f"{paper:.{digits}f}"
        text += f" ({'**' + shown + '**' if paper_bold else shown})"
    return text


def header(columns: Sequence[str] = COLUMNS) -> str:
    """`| Method | AF↓ | … |` and its `|---|…|` line."""
    cells = ["Method", *(TITLES[c] for c in columns)]
    return "| " + " | ".join(cells) + " |\n|" + "---|" * len(cells)


def markdown_row(label: str, values: Mapping[str, float | None], columns: Sequence[str] = COLUMNS, *,
                 bold: Iterable[str] = (), paper: Mapping[str, float | None] | None = None,
                 paper_bold: Iterable[str] = ()) -> str:
    """`| label | AF | AR | … |` from a row's values; `bold`, `paper_bold`: the columns to embolden."""
    bold, paper_bold, paper = set(bold), set(paper_bold), paper or {}
    cells = [cell(values.get(c), values.get(f"{c}_ci95"), DIGITS[c], bold=c in bold, paper=paper.get(c),
                  paper_bold=c in paper_bold) for c in columns]
    return f"| {label} | " + " | ".join(cells) + " |"


def best(rows: Mapping[str, Mapping[str, float | None]], column: str) -> set[str]:
    """The keys of the rows holding the best value of a column (lowest or highest, `LOWER_IS_BETTER`)."""
    values = {key: row.get(column) for key, row in rows.items() if row.get(column) is not None}
    if not values:
        return set()
    top = (min if LOWER_IS_BETTER[column] else max)(values.values())
    return {key for key, v in values.items() if v == top}


def markdown_table(rows: Mapping[str, Mapping[str, float | None]], columns: Sequence[str] = COLUMNS, *,
                   labels: Mapping[str, str] | None = None, mark_best: bool = False,
                   paper: Mapping[str, Mapping[str, float | None]] | None = None) -> str:
    """Header and one row per entry of `rows` (key -> values, printed as `labels[key]` or the key).
    `mark_best`: bold the best value of each column; `paper` (key -> the paper's values): printed in
    parentheses, the best of them among the rows shown in bold."""
    labels, paper = labels or {}, paper or {}
    ours = {c: best(rows, c) for c in columns} if mark_best else {}
    shown = {key: paper[key] for key in rows if key in paper}
    theirs = {c: best(shown, c) for c in columns} if shown else {}
    lines = [header(columns)]
    for key, values in rows.items():
        lines.append(markdown_row(labels.get(key, key), values, columns,
                                  bold=[c for c in columns if key in ours.get(c, ())], paper=paper.get(key),
                                  paper_bold=[c for c in columns if key in theirs.get(c, ())]))
    return "\n".join(lines)


def single_table(label: str, metrics: Mapping[str, Any]) -> str:
    """Header + one row from a method run's metrics (FR a fraction), as its report.md shows it."""
    return markdown_table({label: values_from_metrics(metrics)})


def has_parts(rows: Iterable[Mapping[str, Any]]) -> bool:
    """Whether any of these rows' values (or table2.json rows) has a part of AWF."""
    return any(row.get(c) is not None for row in rows for c in PART_COLUMNS)


def has_pooled(rows: Iterable[Mapping[str, Any]]) -> bool:
    """Whether any of these rows' values (or table2.json rows) has the pooled FID."""
    return any(row.get(c) is not None for row in rows for c in POOLED_COLUMNS)


def parts_table(rows: Mapping[str, Mapping[str, float | None]], *, labels: Mapping[str, str] | None = None,
                mark_best: bool = False) -> str:
    """`| Method | AWF↑ | AWF trained↑ | AWF held-out↑ |`: AWF beside its two parts, one row per entry."""
    return markdown_table(rows, PARTS_TABLE_COLUMNS, labels=labels, mark_best=mark_best)


def single_parts_table(label: str, metrics: Mapping[str, Any]) -> str:
    """`parts_table` of one method run's metrics, as its report.md shows it."""
    return parts_table({label: values_from_metrics(metrics)})


def pooled_table(rows: Mapping[str, Mapping[str, float | None]], *, labels: Mapping[str, str] | None = None,
                 mark_best: bool = False) -> str:
    """`| Method | AF↓ | AF pooled↓ |`: per-scenario FID averaged beside the FID pooled over scenarios."""
    return markdown_table(rows, POOLED_TABLE_COLUMNS, labels=labels, mark_best=mark_best)


# -- JSON -------------------------------------------------------------------------------------------
def json_row(method: str, split: str, values: Mapping[str, float | None], *, profile: str, backbone: str,
             order: int | None = None, orders: Sequence[int] | None = None) -> dict[str, Any]:
    """One row of table2.json (`row_fields`): an average over `orders` or one `order`'s run."""
    if (order is None) == (orders is None):
        raise ValueError("a table2.json row has either an order or the orders it averages")
    row: dict[str, Any] = {"method": method, "split": split}
    if orders is not None:
        row["orders"] = [int(o) for o in orders]
    else:
        row["order"] = int(order)  # type: ignore[arg-type]
    for name in NUMBER_FIELDS:
        row[name] = values.get(name)
    row["profile"], row["backbone"] = profile, backbone
    return row


def schema_problems(document: Any) -> list[str]:
    """What keeps a table2.json document from its schema (missing top-level fields, rows whose fields
    are not exactly `row_fields`, except for `OPTIONAL_FIELDS` they may lack, non-numeric values); []
    when it follows it."""
    if not isinstance(document, dict):
        return ["not a JSON object"]
    problems = [f"no {name!r}" for name in DOCUMENT_FIELDS if name not in document]
    rows = document.get("rows")
    if not isinstance(rows, list):
        return problems + ["'rows' is not a list"]
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            problems.append(f"rows[{i}]: not an object")
            continue
        expected = set(row_fields("order" in row))
        differ = (set(row) ^ expected) - (OPTIONAL_FIELDS - set(row))
        if differ:
            problems.append(f"rows[{i}]: fields {sorted(differ)} differ from the schema")
        for name in NUMBER_FIELDS:
            if not (row.get(name) is None or isinstance(row.get(name), (int, float))):
                problems.append(f"rows[{i}].{name}: {row.get(name)!r} is not a number or null")
    return problems


# -- the bench: Table 2 over splits and orders ------------------------------------------------------
@dataclass
class BenchTable:
    """Table 2 of finished method runs over splits and orders (what `l2emg bench` reports).

    cells[split][method]: {"runs": [names], column: `mean_ci` over the orders (+ "paper": the paper's
    value for `COLUMNS`)}; per_order[split][method][order]: that method run's values. FR in
    percentage points."""

    cells: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    per_order: dict[str, dict[str, dict[int, dict[str, float | None]]]] = field(default_factory=dict)

    def values(self, split: str, method: str) -> dict[str, float | None]:
        """The averaged row's values of a method on a split."""
        return values_from_stats(self.cells[split][method])

    def paper(self, split: str) -> dict[str, dict[str, float | None]]:
        return {m: {c: row[c].get("paper") for c in COLUMNS} for m, row in self.cells[split].items()}


Paper = Mapping[str, Mapping[str, Mapping[str, float | None]]]  # [split][method][column], FR in percentage points


def _paper(paper: Paper | None) -> Paper:
    from l2emg.eval.paper_table2 import PAPER_TABLE2

    return PAPER_TABLE2 if paper is None else paper


def collect(method_runs: Mapping[str, Mapping[str, Mapping[int, MethodRunDir]]], paper: Paper | None = None) -> BenchTable:
    """method_runs[split][method][order] (finished method runs) -> their Table 2: each run's values from
    its metrics.json, the transfer columns from its results.json's last step, averaged over the orders;
    beside them the paper's values (`paper`, by method name; default `eval.paper_table2.PAPER_TABLE2`)."""
    paper = _paper(paper)
    table = BenchTable()
    for split, methods in method_runs.items():
        for method, runs in methods.items():
            per_order = {}
            for order, method_run in runs.items():
                steps = load_json(method_run.results_path).get("steps") or []
                per_order[order] = values_from_metrics(load_json(method_run.metrics_path),
                                                       (steps[-1].get("transfer") or {}) if steps else {})
            stats = over_orders(per_order.values())
            for column in COLUMNS:
                stats[column]["paper"] = paper.get(split, {}).get(method, {}).get(column)
            table.cells.setdefault(split, {})[method] = {"runs": [r.name for r in runs.values()], **stats}
            table.per_order.setdefault(split, {})[method] = per_order
    return table


def kendall(table: BenchTable, paper: Paper | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """Kendall τ of our ranking against the paper's, per split and `KENDALL_COLUMNS` column."""
    paper = _paper(paper)
    return {split: {c: kendall_tau({m: row[c]["mean"] for m, row in rows.items()},
                                   {m: v.get(c) for m, v in paper.get(split, {}).items()})
                    for c in KENDALL_COLUMNS}
            for split, rows in table.cells.items()}


def run_time(method_run: MethodRunDir) -> dict[str, Any]:
    """What one method run took, from its records: training and evaluation wall-clock seconds summed
    over its steps (evaluation None for runs trained before it was recorded), the same in CPU seconds
    of the main process (`train_cpu_s`, `eval_cpu_s`: None for runs trained before 2026-12-07's second
    session recorded them), its torch threads and its CPU (None before 2026-12-07's fourth session)."""
    steps = load_json(method_run.results_path).get("steps") or []

    def total(values: list[Any]) -> float | None:
        return None if not values or any(v is None for v in values) else round(sum(float(v) for v in values), 1)

    progress = load_json(method_run.progress_path) if method_run.progress_path.exists() else {}
    return {"train_s": round(sum(float(s["train"]["seconds"]) for s in steps), 1),
            "eval_s": total([s.get("eval_seconds") for s in steps]),
            "train_cpu_s": total([s["train"].get("cpu_seconds") for s in steps]),
            "eval_cpu_s": total([s.get("eval_cpu_seconds") for s in steps]),
            "threads": (progress.get("environment") or {}).get("threads"),
            "cpu": (progress.get("environment") or {}).get("cpu")}


def time_line(times: Mapping[str, Mapping[str, Any]]) -> str:
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
    cpu = [t.get("train_cpu_s", None) for t in times.values()] + [t.get("eval_cpu_s", None) for t in times.values()]
    if times and all(c is not None for c in cpu):
        text += f"; {sum(cpu) / 3600:.1f} core-hours of CPU (main processes)"
    machines = Counter(t.get("cpu") or "a CPU not recorded" for t in times.values())
    if machines:
        text += "; ran on " + ", ".join(f"{name} ({n} runs)" for name, n in machines.items())
    return text + "."


def split_labels(table: BenchTable, split: str, labels: Mapping[str, str] | None = None) -> dict[str, str]:
    """Row labels of one split; where some methods ran several orders and others one, the one-order rows
    get `ONE_ORDER_MARK` (their ± is their evaluation's, `ONE_ORDER_NOTE`)."""
    labels, cells = labels or {}, table.cells[split]
    single = {m for m, row in cells.items() if one_order(row)}
    mark = ONE_ORDER_MARK if single and len(single) < len(cells) else ""
    return {m: labels.get(m, m) + (mark if m in single else "") for m in cells}


def split_markdown(table: BenchTable, split: str, labels: Mapping[str, str] | None = None) -> str:
    """One split's Table 2: mean ± CI over the orders (one order: ± its evaluation's CI), the paper's
    values, the best of each in bold, the transfer columns."""
    rows = {m: table.values(split, m) for m in table.cells[split]}
    return markdown_table(rows, ALL_COLUMNS, labels=split_labels(table, split, labels), mark_best=True,
                          paper=table.paper(split))


def bench_markdown(table: BenchTable, *, run: str, profile: str, backbone: str, orders: Sequence[int],
                   taus: Mapping[str, Mapping[str, Mapping[str, Any]]], times: Mapping[str, Mapping[str, Any]],
                   labels: Mapping[str, str] | None = None, figure3: Sequence[str] = (),
                   figure4: Sequence[str] = (), protocol: str = "") -> str:
    """RUN/bench/table2.md: per split its table, Kendall τ against the paper and the time taken; then
    Figure 3's heatmaps and Figure 4 (paths relative to the bench folder: [png, animation])."""
    lines = ["# Table 2 over splits and orders (`l2emg bench`)", "",
             f"Run `{run}`, profile `{profile}`, backbone `{backbone}`, orders {', '.join(map(str, orders))} "
             "(a joint-training method such as MTL runs once per split, with order 1).", "",
             "Each cell: mean ± 95 % CI over the orders (t-distribution half-width; for a method run on one "
             "order, ± the half-width over its evaluation repetitions), the paper's value (LLaMA-2-7B) in "
             "parentheses; bold: the best of each column (ours, and "
             "separately the paper's among the methods shown). FR in percentage points of top-1 R-Precision. "
             "Transfer: emotion weighted F1 and top-1 R-Precision on the held-out (scenario, emotion) pairs "
             "after the last scenario, averaged over scenarios and orders.", ""]
    if protocol:
        lines += [protocol, ""]
    for split in table.cells:
        lines += [f"## {split.capitalize()} split", "", split_markdown(table, split, labels), ""]
        marked = split_labels(table, split, labels)
        if any(label.endswith(ONE_ORDER_MARK) for label in marked.values()):
            lines += [ONE_ORDER_NOTE, ""]
        parts = {m: table.values(split, m) for m in table.cells[split]}
        if has_parts(parts.values()):
            lines += [PARTS_NOTE + " Mean ± 95 % CI as above.", "",
                      parts_table(parts, labels=marked, mark_best=True), ""]
        if has_pooled(parts.values()):
            lines += [POOLED_NOTE + " Mean ± 95 % CI as above.", "",
                      pooled_table(parts, labels=marked, mark_best=True), ""]
        tau_cells = []
        for column, t in taus[split].items():
            value = "n/a" if t["tau"] is None else f"{t['tau']:+.2f}"
            tau_cells.append(f"{column} τ = {value} ({len(t['methods'])} methods)")
        lines += ["Kendall τ between our ranking and the paper's: " + "; ".join(tau_cells) + ".", "",
                  time_line(times[split]), ""]
    if figure3:
        lines += ["## Figure 3: FID performance matrices", ""]
        lines += [f"![{name.rsplit('/', 1)[-1].rsplit('.', 1)[0]}]({name})" for name in figure3]
        lines.append("")
    if figure4:
        png, animation = figure4
        lines += ["## Figure 4: test captions (rows) × methods (columns), same seed", "",
                  f"![figure4]({png})", "", f"Animated: [{animation}]({animation})", ""]
    return "\n".join(lines) + "\n"


def json_rows(table: BenchTable, *, profile: str, backbone: str) -> list[dict[str, Any]]:
    """table2.json's rows: per split and method the average over its orders, then each order's own."""
    rows = []
    for split, methods in table.per_order.items():
        for method, per_order in methods.items():
            rows.append(json_row(method, split, table.values(split, method), orders=sorted(per_order),
                                 profile=profile, backbone=backbone))
            rows += [json_row(method, split, values, order=order, profile=profile, backbone=backbone)
                     for order, values in sorted(per_order.items())]
    return rows


def bench_json(table: BenchTable, *, profile: str, backbone: str, machine: Mapping[str, Any], date: str,
               taus: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """RUN/bench/table2.json: the schema's fields (module docstring) first, then `extra` ones."""
    return {"rows": json_rows(table, profile=profile, backbone=backbone), "kendall_tau": dict(taus),
            "machine": dict(machine), "date": date, "profile": profile, "backbone": backbone,
            "fr_units": FR_UNITS, **extra, "cells": table.cells}
