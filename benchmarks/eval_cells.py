"""Which cells an evaluation point scores: `train.eval_cells` all (before 2026-12-07) against needed, on
two method runs that trained identically (same config and seeds but that one field).

    l2emg train --method esmoe --split mixed --run-dir runs/t2                               # needed (default)
    l2emg train --method esmoe --split mixed --run-dir runs/t2-all --set train.eval_cells=all
    python benchmarks/eval_cells.py --run runs/t2-all/methods/esmoe-mixed-o1 --run runs/t2/methods/esmoe-mixed-o1

Training does not read the evaluation (each step reseeds itself), so the two runs' training is the
same and their last evaluation point decodes the same requests from the same seed: the Table-2 values
of the last row (AF, AR, AD, AMM, AWF) are expected bit-identical; FR reads the earlier rows, whose
generation batches differ, so it is only statistically equal. Reported per run: the CPU seconds of
training and of evaluation (main process, from results.json), the cells scored, the Table-2 values
with their 95 % half-widths (metrics.json). Writes benchmarks/results/eval_cells.json:
{"machine", "date", "load", "rows": [{"run", "method", "eval_cells", "train_cpu_s", "eval_cpu_s",
"core_seconds", "cells_scored", "multimodality_cells", "AF", "AF_ci95", "AR", "AR_ci95", "AD", "AMM", "AWF", "AWF_ci95", "FR",
"FR_ci95"}], "ratio_core_seconds", "ratio_eval_cpu_s", "identical": {column: bool}, "notes"}
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "eval_cells.json"
COLUMNS = ("AF", "AR", "AD", "AMM", "AWF", "FR")


def row(path: Path) -> dict:
    from l2emg.config import read_saved_config
    from l2emg.eval.table2 import run_time, values_from_metrics
    from l2emg.runs import MethodRunDir
    from l2emg.utils.io import load_json

    method_run = MethodRunDir(path)
    if not method_run.adapter_path.exists():
        raise SystemExit(f"{path}: not a finished method run (no adapter.json)")
    config = read_saved_config(method_run.config_path)
    times = run_time(method_run)
    metrics = load_json(method_run.metrics_path)
    steps = load_json(method_run.results_path)["steps"]
    out = {"run": str(path), "method": path.name.split("-")[0], "eval_cells": config.train.eval_cells,
           "train_cpu_s": times["train_cpu_s"], "eval_cpu_s": times["eval_cpu_s"],
           "core_seconds": round(times["train_cpu_s"] + times["eval_cpu_s"], 1),
           "cells_scored": sum(len(s["results"]) for s in steps),
           "multimodality_cells": sum(1 for s in steps for c in s["results"].values() if c.get("multimodality"))}
    values = values_from_metrics(metrics)  # as Table 2 shows them (FR in points)
    for column in COLUMNS:
        out[column] = values[column]
        out[f"{column}_ci95"] = values[f"{column}_ci95"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, action="append", required=True,
                        help="a finished method run folder (twice: eval_cells all, then needed)")
    parser.add_argument("--note", action="append", default=[], help="what the machine was doing while the runs "
                        "trained (kept as notes)")
    args = parser.parse_args(argv)
    from l2emg.utils.io import save_json
    from l2emg.utils.precision import machine

    rows = [row(p) for p in args.run]
    by = {r["eval_cells"]: r for r in rows}
    if set(by) != {"all", "needed"}:
        raise SystemExit(f"expected one run with train.eval_cells all and one with needed, got {[r['eval_cells'] for r in rows]}")
    old, new = by["all"], by["needed"]
    doc = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "load": list(os.getloadavg()), "rows": rows,
           "ratio_core_seconds": round(new["core_seconds"] / old["core_seconds"], 3),
           "ratio_eval_cpu_s": round(new["eval_cpu_s"] / old["eval_cpu_s"], 3),
           "identical": {c: old[c] == new[c] for c in COLUMNS}, "notes": args.note}
    for r in rows:
        print(f"{r['eval_cells']:>6}: train {r['train_cpu_s']} CPU-s, evaluation {r['eval_cpu_s']} CPU-s, "
              f"{r['cells_scored']} cells; " + "  ".join(f"{c} {r[c]}" for c in COLUMNS))
    print(f"core-seconds needed/all {doc['ratio_core_seconds']}, evaluation {doc['ratio_eval_cpu_s']}; "
          f"identical: {doc['identical']}")
    save_json(OUT, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
