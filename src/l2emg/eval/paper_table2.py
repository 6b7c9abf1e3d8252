"""The paper's Table 2, transcribed (numbers only) from `shared/paper/es-moe-aaai26.md` (ES-MoE,
AAAI-26, Table 2: LLaMA-2-7B, averages over three scenario orders; FR in percentage points).

PAPER_TABLE2[split][row] = {"AF", "AR", "AD", "AMM", "AWF", "FR"}; FR is None where the paper
prints "-" (MTL has no forgetting). A row key names one row of the paper (`PAPER_ROWS`); a method class
declares the row it reproduces (`ContinualMethod.paper_row`), and `l2emg.continual.methods.paper_table2()`
gives this table keyed by registry name, for the methods that declare one. Each row key here is also
the registry name of the shipped method that reproduces it, so a lookup by method name finds that
method's row; a method outside the paper finds none.
"""

from __future__ import annotations

COLUMNS: tuple[str, ...] = ("AF", "AR", "AD", "AMM", "AWF", "FR")

_UNSEEN = {
    "mtl":            (1.05, 0.281, 9.63, 1.56, 0.383, None),
    "seqlora":        (3.58, 0.157, 8.83, 1.10, 0.198, 6.70),
    "lwf":            (4.38, 0.164, 8.44, 0.95, 0.152, 5.76),
    "epi":            (2.21, 0.180, 9.86, 1.47, 0.256, 4.89),
    "olora":          (2.35, 0.214, 9.29, 1.18, 0.282, 2.75),
    "progprompt":     (7.30, 0.102, 6.75, 1.84, 0.128, 7.16),
    "sapt":           (2.12, 0.237, 9.61, 1.59, 0.313, -0.54),
    "esmoe":          (1.89, 0.241, 9.74, 1.47, 0.340, -1.03),
    "esmoe_wo_cged":  (2.07, 0.248, 9.53, 1.39, 0.312, -0.75),
    "esmoe_wo_samoe": (2.48, 0.206, 9.08, 1.78, 0.286, 3.26),
    "esmoe_wo_lemo":  (2.01, 0.232, 9.45, 1.42, 0.326, -0.86),
}
_MIXED = {
    "mtl":            (1.05, 0.281, 9.63, 1.56, 0.383, None),
    "seqlora":        (2.61, 0.195, 9.32, 1.07, 0.239, 5.17),
    "lwf":            (3.36, 0.215, 8.81, 1.27, 0.188, 3.70),
    "epi":            (1.99, 0.207, 9.13, 1.33, 0.283, 1.51),
    "olora":          (2.20, 0.236, 9.82, 1.29, 0.296, -0.42),
    "progprompt":     (5.77, 0.153, 8.12, 1.87, 0.134, 5.09),
    "sapt":           (1.65, 0.245, 9.47, 1.82, 0.327, -1.97),
    "esmoe":          (1.39, 0.259, 9.87, 1.65, 0.347, -3.03),
    "esmoe_wo_cged":  (1.70, 0.247, 9.44, 1.77, 0.305, -1.74),
    "esmoe_wo_samoe": (1.96, 0.229, 9.28, 1.58, 0.273, 0.83),
    "esmoe_wo_lemo":  (1.52, 0.237, 9.75, 1.52, 0.336, -2.59),
}

# The row keys of the table (one per row of the paper).
PAPER_ROWS: tuple[str, ...] = tuple(_UNSEEN)

PAPER_TABLE2: dict[str, dict[str, dict[str, float | None]]] = {
    split: {method: dict(zip(COLUMNS, values)) for method, values in rows.items()}
    for split, rows in (("unseen", _UNSEEN), ("mixed", _MIXED))
}


def paper_value(split: str, row: str, column: str) -> float | None:
    """The paper's number for one cell (FR in percentage points); None where it has none."""
    return PAPER_TABLE2.get(split, {}).get(row, {}).get(column)
