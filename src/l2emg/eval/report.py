"""Pictures and tables of evaluation results: performance-matrix heatmaps (the paper's Figure 3),
Table-2 rows in Markdown (`table2_header`, `table2_row`: drawn by `l2emg.eval.table2`, the one writer
of Table 2; `awf_parts_table`: AWF beside its trained / held-out parts), and the real-motion reference
table."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from l2emg.eval import table2
from l2emg.eval.continual_metrics import LOWER_IS_BETTER, PerformanceMatrices
from l2emg.utils.io import atomic_write_bytes

METRIC_TITLES: dict[str, str] = {
    "fid": "FID",
    "r_precision_top1": "Top-1 R-Precision",
    "r_precision_top2": "Top-2 R-Precision",
    "r_precision_top3": "Top-3 R-Precision",
    "mm_dist": "MM-Dist",
    "diversity": "Diversity",
    "multimodality": "MultiModality",
    "emotion_f1": "Emotion weighted F1",
    "emotion_f1_trained": "Emotion weighted F1, trained pairs",
    "emotion_f1_heldout": "Emotion weighted F1, held-out pairs",
}
TABLE2_COLUMNS = table2.COLUMNS
TABLE2_ARROWS = table2.ARROWS


def plot_heatmap(matrix: np.ndarray, scenarios: list[str], title: str, path: str | Path,
                 lower_is_better: bool = False) -> Path:
    """One annotated N × N heatmap, rows = after training step i, columns = scenario j.

    As in the paper's Figure 3, red means good (retained) and blue means bad (forgotten): the
    colour map is flipped for lower-is-better metrics such as FID. Missing cells are left grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(matrix, dtype=np.float64)
    n = m.shape[0]
    cmap = matplotlib.colormaps["coolwarm_r" if lower_is_better else "coolwarm"].with_extremes(bad="#dddddd")
    size = 1.0 + 0.75 * n
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(np.ma.masked_invalid(m), cmap=cmap, aspect="equal")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    finite = m[np.isfinite(m)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i in range(n):
        for j in range(n):
            if math.isfinite(m[i, j]):
                extreme = abs(m[i, j] - mid) > 0.3 * (np.ptp(finite) if finite.size else 1.0)
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if extreme else "black")
    short = [s if len(s) <= 10 else s[:9] + "." for s in scenarios]
    ax.set_xticks(range(n), short, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), [f"after {i + 1}" for i in range(n)], fontsize=8)
    ax.set_xlabel("evaluated on scenario j")
    ax.set_ylabel("after training step i")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def render_heatmaps(perf: PerformanceMatrices, out_dir: str | Path) -> list[Path]:
    """A PNG per metric matrix: `<out_dir>/heatmap_<metric>.png`."""
    out_dir = Path(out_dir)
    paths = []
    for metric, matrix in perf.matrices.items():
        if not np.isfinite(matrix).any():
            continue
        title = f"{perf.method}: {METRIC_TITLES.get(metric, metric)}"
        paths.append(plot_heatmap(matrix, perf.scenarios, title, out_dir / f"heatmap_{metric}.png",
                                  LOWER_IS_BETTER.get(metric, False)))
    return paths


def table2_header() -> str:
    """Markdown header of the paper's Table 2 (FR in percentage points, as the paper prints it)."""
    return table2.header()


def table2_row(method: str, metrics: dict[str, Any]) -> str:
    """`| method | AF | AR | AD | AMM | AWF | FR |` with the paper's precision; FR × 100; an average
    with a 95 % half-width (`AR_ci95` …) prints as `mean ± h` (`l2emg.eval.table2.markdown_row`)."""
    return table2.markdown_row(method, table2.values_from_metrics(metrics))


def awf_parts_table(runs: dict[str, dict[str, Any]]) -> str | None:
    """`| Method | AWF | AWF trained | AWF held-out |`, one row per labelled metrics dict (AWF_trained,
    AWF_heldout and their `_ci95` from `continual_metrics`); None when none of them has a part (results
    written before the parts existed)."""
    values = {label: table2.values_from_metrics(metrics) for label, metrics in runs.items()}
    return table2.parts_table(values) if table2.has_parts(values.values()) else None


REFERENCE_COLUMNS = (
    ("r_precision_top1", "Top-1"), ("r_precision_top2", "Top-2"), ("r_precision_top3", "Top-3"),
    ("fid", "FID"), ("mm_dist", "MM-Dist"), ("diversity", "Diversity"), ("multimodality", "MModality"),
    ("emotion_f1", "Emotion F1"),
)


def format_summary(summary: dict[str, float] | None, digits: int = 3) -> str:
    """{'mean', 'ci95'} -> '0.512±.004' as the field prints it; '–' when missing."""
    if summary is None:
        return "–"
    ci = f"{summary['ci95']:.{digits}f}".lstrip("0") if summary.get("ci95") is not None else ""
    return f"{summary['mean']:.{digits}f}" + (f"±{ci}" if ci else "")


def metrics_table_markdown(rows: dict[str, dict[str, Any]]) -> str:
    """A HumanML3D-style table: one row per named metric dict (e.g. 'Real motion')."""
    header = "| Motions | " + " | ".join(title for _, title in REFERENCE_COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(REFERENCE_COLUMNS) + 1)]
    for name, metrics in rows.items():
        cells = [format_summary(metrics.get(key)) for key, _ in REFERENCE_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
