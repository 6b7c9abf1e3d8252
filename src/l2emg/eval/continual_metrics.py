"""Continual-learning metrics over performance matrices (the paper's AF, AR, AD, AMM, AWF, FR).

A performance matrix M (N × N) holds one metric for a stream of N scenarios: row i = after
training on scenario i, column j = test set of scenario j, both in the stream's training order.
With 1-based indices as in the paper and N the last scenario:

    AF  = 1/N Σ_j f[N, j]       (FID)                  AR  = 1/N Σ_j r[N, j]   (top-1 R-Precision)
    AD  = 1/N Σ_j d[N, j]       (diversity)             AMM = 1/N Σ_j m[N, j]   (MultiModality)
    AWF = 1/N Σ_j wf[N, j]      (emotion weighted F1)
    (each average also gets a 95 % half-width, `AR_ci95` …, from its cells' own: sqrt(Σ h_j²) / N)
    FR  = 1/(N−1) Σ_{j=1}^{N−1} ( max_{k=j}^{N−1} r[k, j] − r[N, j] )   (top-1 R-Precision)
          (FR_ci95 from the two cells of each term: `forgetting_rate_ci95`)

AWF in two parts (not in the paper): the same average of the last row of the emotion F1 restricted
to the test motions of the trained (scenario, emotion) pairs (`emotion_f1_trained` -> AWF_trained)
and to those of the held-out pairs (`emotion_f1_heldout` -> AWF_heldout, see `eval.evaluate`), each
over the scenarios j whose test set has motions of that part (AWF_heldout: the scenarios with
held-out pairs; None where none has any), with `_ci95` from the cells' half-widths as above; both
None where AWF itself is (a missing cell of wf[N, ·]) and for results written before these parts
existed.

AF_pooled (not in the paper): the last step's FID of every scenario's generations pooled against all
their real test motions (the step's "pooled" entry, written by the trainer since 2026-12-07), with its
own 95 % half-width over the evaluation repeats; None for results without it.

plus the usual transfer measures (Lopez-Paz & Ranzato 2017), here on any matrix:

    BWT = 1/(N−1) Σ_{i=1}^{N−1} ( M[N, i] − M[i, i] )
    FWT = 1/(N−1) Σ_{i=2}^{N}   ( M[i−1, i] − b_i )

where b is a reference vector: the `initial` row of the results (the model evaluated on every
scenario before any continual training, i.e. zero-shot), or a reference given explicitly. Without
one, FWT is not reported.

FR is a fraction like R-Precision itself; the paper's Table 2 prints it in percentage points
(FR 6.70 next to AR 0.157), which is what `report.table2_row` does.

The results file (`RESULTS.json`) written by the continual trainer looks like:

    {"method": "ES-MoE",
     "scenarios": ["Daily Life", "Sports", ...],            # the stream's training order
     "initial": {"Daily Life": {"fid": ..., ...}, ...},     # optional: before training (for FWT)
     "steps": [{"scenario": "Daily Life",                   # step i trained on scenarios[i]
                "results": {"Daily Life": {"fid": 1.2, "r_precision_top1": 0.31, "diversity": 9.1,
                                           "multimodality": 1.4, "emotion_f1": 0.42,
                                           "emotion_f1_trained": 0.44, "emotion_f1_heldout": 0.2}, ...}},
               ...]}

A metric value is a number or a summary {"mean": ..., "ci95": ...} (what `evaluate_motions`
returns). Cells that were not evaluated are NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from l2emg.errors import DataError
from l2emg.utils.io import load_json, save_json

# Matrix name -> the paper's average metric on the last row.
AVERAGE_METRICS: dict[str, str] = {
    "fid": "AF",
    "r_precision_top1": "AR",
    "diversity": "AD",
    "multimodality": "AMM",
    "emotion_f1": "AWF",
}
# The parts of AWF: matrix -> its average over the last row's cells that exist (module docstring).
AWF_PARTS: dict[str, str] = {
    "emotion_f1_trained": "AWF_trained",
    "emotion_f1_heldout": "AWF_heldout",
}
FORGETTING_METRIC = "r_precision_top1"
# Direction of each metric: True when lower is better (used for heatmap colours).
LOWER_IS_BETTER: dict[str, bool] = {
    "fid": True, "r_precision_top1": False, "r_precision_top2": False, "r_precision_top3": False,
    "mm_dist": True, "diversity": False, "multimodality": False, "emotion_f1": False,
    "emotion_f1_trained": False, "emotion_f1_heldout": False,
}


@dataclass
class PerformanceMatrices:
    """Per-metric N × N matrices of one stream (rows: after step i; columns: scenario j)."""

    method: str
    scenarios: list[str]
    matrices: dict[str, np.ndarray]
    initial: dict[str, np.ndarray] = field(default_factory=dict)  # metric -> (N,) before training
    ci95: dict[str, np.ndarray] = field(default_factory=dict)  # metric -> N × N half-widths, where the cells have them
    final_pooled: dict[str, Any] | None = None  # the last step's "pooled" entry ({"fid": summary, "num_motions"})

    def to_json(self) -> dict[str, Any]:
        def clean(a: np.ndarray) -> Any:
            return [[None if math.isnan(v) else float(v) for v in row] for row in np.atleast_2d(a)]

        return {
            "method": self.method,
            "scenarios": self.scenarios,
            "matrices": {k: clean(v) for k, v in self.matrices.items()},
            "initial": {k: clean(v)[0] for k, v in self.initial.items()},
        }


def _value(cell: Any, path: str) -> float:
    if cell is None:
        return math.nan
    if isinstance(cell, dict):
        if "mean" not in cell:
            raise DataError(f"{path}: a metric summary needs a 'mean' field")
        cell = cell["mean"]
    if cell is None:
        return math.nan
    try:
        return float(cell)
    except (TypeError, ValueError) as err:
        raise DataError(f"{path}: metric value {cell!r} is not a number") from err


def matrices_from_results(results: dict[str, Any], source: str = "results") -> PerformanceMatrices:
    """Build the performance matrices from a results dict (format in the module docstring)."""
    if not isinstance(results, dict):
        raise DataError(f"{source}: expected a JSON object")
    scenarios = results.get("scenarios")
    steps = results.get("steps")
    if not isinstance(scenarios, list) or not scenarios:
        raise DataError(f"{source}: field 'scenarios' must be the non-empty list of scenarios in training order")
    if not isinstance(steps, list):
        raise DataError(f"{source}: field 'steps' must be a list (one entry per training step)")
    if len(steps) != len(scenarios):
        raise DataError(f"{source}: {len(steps)} steps for {len(scenarios)} scenarios; each step trains one scenario")
    n = len(scenarios)
    col = {name: j for j, name in enumerate(scenarios)}
    matrices: dict[str, np.ndarray] = {}
    ci95: dict[str, np.ndarray] = {}
    for i, step in enumerate(steps):
        if step.get("scenario", scenarios[i]) != scenarios[i]:
            raise DataError(f"{source}: steps[{i}].scenario is {step.get('scenario')!r}, expected {scenarios[i]!r}")
        for name, metrics in (step.get("results") or {}).items():
            if name not in col:
                raise DataError(f"{source}: steps[{i}].results names unknown scenario {name!r}")
            for metric, cell in metrics.items():
                matrix = matrices.setdefault(metric, np.full((n, n), np.nan))
                matrix[i, col[name]] = _value(cell, f"{source}: steps[{i}].results.{name}.{metric}")
                if isinstance(cell, dict) and cell.get("ci95") is not None:
                    half = ci95.setdefault(metric, np.full((n, n), np.nan))
                    half[i, col[name]] = _value(cell["ci95"], f"{source}: steps[{i}].results.{name}.{metric}.ci95")
    initial: dict[str, np.ndarray] = {}
    for name, metrics in (results.get("initial") or {}).items():
        if name not in col:
            raise DataError(f"{source}: initial names unknown scenario {name!r}")
        for metric, cell in metrics.items():
            row = initial.setdefault(metric, np.full(n, np.nan))
            row[col[name]] = _value(cell, f"{source}: initial.{name}.{metric}")
    pooled = steps[-1].get("pooled") if steps else None
    return PerformanceMatrices(str(results.get("method", "method")), list(scenarios), matrices, initial, ci95,
                               pooled if isinstance(pooled, dict) else None)


def load_results(path: str | Path) -> PerformanceMatrices:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: results file not found")
    try:
        data = load_json(path)
    except ValueError as err:
        raise DataError(str(err)) from err
    return matrices_from_results(data, str(path))


def _check_square(matrix: np.ndarray) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"a performance matrix must be N × N, got {m.shape}")
    return m


def final_average(matrix: np.ndarray) -> float | None:
    """1/N Σ_j M[N, j]; None when a cell of the last row is missing."""
    last = _check_square(matrix)[-1]
    return None if np.isnan(last).any() else float(last.mean())


def average_ci95(half_widths: np.ndarray | list[float]) -> float | None:
    """95 % half-width of the mean of N cells from the cells' own half-widths (independent
    evaluations): sqrt(Σ h_j²) / N; None when one is missing."""
    h = np.asarray(half_widths, dtype=np.float64)
    return None if h.size == 0 or np.isnan(h).any() else float(np.sqrt((h**2).sum()) / h.size)


def part_average(part: np.ndarray, whole: np.ndarray | None = None,
                 part_ci95: np.ndarray | None = None) -> tuple[float | None, float | None]:
    """(mean, 95 % half-width) of the last row of a part's matrix (e.g. emotion F1 on the held-out
    pairs only) over the columns that have a cell, the half-width from those cells' own
    (`average_ci95`); (None, None) when no column has one, or when `whole` (the matrix of the metric
    the part belongs to) misses a cell of its last row, as its own average then does."""
    last = _check_square(part)[-1]
    if whole is not None and np.isnan(_check_square(whole)[-1]).any():
        return None, None
    present = ~np.isnan(last)
    if not present.any():
        return None, None
    half = average_ci95(_check_square(part_ci95)[-1][present]) if part_ci95 is not None else None
    return float(last[present].mean()), half


def forgetting_rate(matrix: np.ndarray) -> float | None:
    """FR_N = 1/(N−1) Σ_{j=1}^{N−1} (max_{k=j}^{N−1} r[k, j] − r[N, j]) (paper, 1-based).

    0-based: for column j < N−1, the best score over rows j..N−2 minus the last row's score.
    None for a single scenario or when a needed cell is missing."""
    r = _check_square(matrix)
    n = r.shape[0]
    if n < 2:
        return None
    terms = []
    for j in range(n - 1):
        history = r[j:n - 1, j]
        if np.isnan(history).any() or np.isnan(r[n - 1, j]):
            return None
        terms.append(history.max() - r[n - 1, j])
    return float(np.mean(terms))


def forgetting_rate_ci95(matrix: np.ndarray, half_widths: np.ndarray) -> float | None:
    """A 95 % half-width for FR from its cells' own: term j is r[k*, j] − r[N, j] with k* the best
    earlier row, so h_j = sqrt(h[k*, j]² + h[N, j]²) and FR's is sqrt(Σ h_j²) / (N − 1) (the choice
    of k* treated as fixed). None where FR is or a needed half-width is missing."""
    r, h = _check_square(matrix), _check_square(half_widths)
    if forgetting_rate(r) is None or h.shape != r.shape:
        return None
    n = r.shape[0]
    terms = []
    for j in range(n - 1):
        best = j + int(np.argmax(r[j:n - 1, j]))
        terms.append(h[best, j] ** 2 + h[n - 1, j] ** 2)
    total = float(np.sum(terms))
    return None if np.isnan(total) else float(np.sqrt(total) / (n - 1))


def backward_transfer(matrix: np.ndarray) -> float | None:
    """BWT = 1/(N−1) Σ_{i<N} (M[N, i] − M[i, i]); negative = forgetting (for higher-is-better metrics)."""
    m = _check_square(matrix)
    n = m.shape[0]
    if n < 2:
        return None
    terms = m[n - 1, : n - 1] - np.diagonal(m)[: n - 1]
    return None if np.isnan(terms).any() else float(terms.mean())


def forward_transfer(matrix: np.ndarray, reference: np.ndarray | None) -> float | None:
    """FWT = 1/(N−1) Σ_{i=2}^{N} (M[i−1, i] − b_i) against a reference vector b (N,)."""
    m = _check_square(matrix)
    n = m.shape[0]
    if n < 2 or reference is None:
        return None
    b = np.asarray(reference, dtype=np.float64)
    if b.shape != (n,):
        raise ValueError(f"reference vector must have {n} entries, got shape {b.shape}")
    terms = np.array([m[i - 1, i] - b[i] for i in range(1, n)])
    return None if np.isnan(terms).any() else float(terms.mean())


def continual_metrics(perf: PerformanceMatrices, reference: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """AF, AR, AD, AMM, AWF, FR (+ BWT/FWT on top-1 R-Precision, and per matrix under 'transfer'), and
    AWF in two parts: AWF_trained, AWF_heldout (None where the results do not have them).

    reference: metric -> (N,) vector for FWT; defaults to the results' `initial` row."""
    reference = dict(perf.initial) | dict(reference or {})
    out: dict[str, Any] = {"method": perf.method, "scenarios": perf.scenarios, "num_scenarios": len(perf.scenarios)}
    for metric, name in AVERAGE_METRICS.items():
        out[name] = final_average(perf.matrices[metric]) if metric in perf.matrices else None
        out[f"{name}_ci95"] = average_ci95(_check_square(perf.ci95[metric])[-1]) if metric in perf.ci95 else None
    for metric, name in AWF_PARTS.items():
        out[name], out[f"{name}_ci95"] = (part_average(perf.matrices[metric], perf.matrices.get("emotion_f1"),
                                                       perf.ci95.get(metric))
                                          if metric in perf.matrices else (None, None))
    fid = (perf.final_pooled or {}).get("fid")
    out["AF_pooled"] = _value(fid, "pooled.fid") if fid is not None else None
    out["AF_pooled_ci95"] = float(fid["ci95"]) if isinstance(fid, dict) and fid.get("ci95") is not None else None
    r = perf.matrices.get(FORGETTING_METRIC)
    out["FR"] = forgetting_rate(r) if r is not None else None
    out["FR_ci95"] = (forgetting_rate_ci95(r, perf.ci95[FORGETTING_METRIC])
                      if r is not None and FORGETTING_METRIC in perf.ci95 else None)
    out["BWT"] = backward_transfer(r) if r is not None else None
    out["FWT"] = forward_transfer(r, reference.get(FORGETTING_METRIC)) if r is not None else None
    out["fwt_reference"] = "initial" if FORGETTING_METRIC in perf.initial else (
        "given" if FORGETTING_METRIC in reference else None)
    out["transfer"] = {
        metric: {"BWT": backward_transfer(m), "FWT": forward_transfer(m, reference.get(metric))}
        for metric, m in perf.matrices.items()
    }
    return out


def step_averages(step: dict[str, Any], scenarios: list[str]) -> dict[str, Any]:
    """The Table-2 averages of ONE evaluation point (a results.json step: a joint-training run's only
    row, or any step evaluated alone): per `AVERAGE_METRICS` / `AWF_PARTS` metric the mean over the
    scenarios whose cell exists and its `average_ci95`, and AF_pooled from the step's "pooled" entry
    (None where missing)."""
    row = step.get("results") or {}
    out: dict[str, Any] = {}
    for key, name in {**AVERAGE_METRICS, **AWF_PARTS}.items():
        cells = [row[s][key] for s in scenarios if row.get(s, {}).get(key)]  # no test motions: no cell
        out[name] = float(np.mean([c["mean"] for c in cells])) if cells else None
        out[f"{name}_ci95"] = average_ci95([c["ci95"] for c in cells]) if cells else None
    fid = (step.get("pooled") or {}).get("fid")
    out["AF_pooled"], out["AF_pooled_ci95"] = (fid["mean"], fid["ci95"]) if fid else (None, None)
    return out


def average_over_orders(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread (std, ddof 0) of the Table-2 metrics over several scenario orders, as the
    paper averages three orders (it does not report the spread; we do)."""
    keys = [*AVERAGE_METRICS.values(), *AWF_PARTS.values(), "AF_pooled", "FR", "BWT", "FWT"]
    out: dict[str, Any] = {"method": runs[0]["method"] if runs else "method", "orders": len(runs)}
    for key in keys:
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = float(np.mean(values)) if len(values) == len(runs) and values else None
        out[f"{key}_std"] = float(np.std(values)) if len(values) == len(runs) and values else None
    return out


def save_continual_metrics(path: str | Path, perf: PerformanceMatrices, metrics: dict[str, Any]) -> None:
    """One JSON with the matrices and the metrics computed from them."""
    save_json(path, {"metrics": metrics, **perf.to_json()})
