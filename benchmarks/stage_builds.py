"""The same method runs on two builds of the shared stages: how far apart are their Table-2 rows?

    python benchmarks/stage_builds.py --archive benchmarks/results/table2_runs --run-dir runs/t2check \
        --runs mtl-unseen-o1 esmoe-unseen-o1 seqlora-unseen-o1

A table built over several sessions (`l2emg bench --archive`) mixes runs whose tokenizer, evaluator and
backbone were rebuilt from the same seeds in another session, possibly on another CPU: bf16 and
oneDNN kernels differ between CPUs (AMX against AVX-512), so the builds need not agree bit for bit.
This reads, for each named run, its archived records (build A) and the same run trained again in
RUN_DIR on this session's build (build B: train it first, e.g. `l2emg train --method mtl --split unseen
--order 1 --run-dir RUN_DIR`), and compares the Table-2 columns: the difference against the two
runs' 95 % half-widths combined (sqrt(a² + b²)). Writes benchmarks/results/stage_builds.json.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "stage_builds.json"
COLUMNS = ("AF", "AR", "AD", "AMM", "AWF", "AWF_trained", "AWF_heldout", "FR")


def side(method_run) -> dict:
    """One run's columns, CPU and stage fingerprint (None where it did not record them)."""
    from l2emg.utils.io import load_json

    metrics = load_json(method_run.metrics_path)
    progress = load_json(method_run.progress_path)
    return {"cpu": (progress.get("environment") or {}).get("cpu"), "stages": progress.get("stages"),
            **{c: metrics.get(c) for c in COLUMNS}, **{f"{c}_ci95": metrics.get(f"{c}_ci95") for c in COLUMNS}}


def compare(a: dict, b: dict) -> dict:
    """Per column: both values, the difference b − a and whether it lies within sqrt(ci_a² + ci_b²)."""
    out = {}
    for c in COLUMNS:
        if a.get(c) is None or b.get(c) is None:
            continue
        half = math.hypot(a.get(f"{c}_ci95") or 0.0, b.get(f"{c}_ci95") or 0.0)
        diff = b[c] - a[c]
        out[c] = {"a": a[c], "b": b[c], "diff": diff, "combined_ci95": half, "within": abs(diff) <= half}
    return out


def table(path: Path) -> str:
    """Markdown: one line per run and column (docs/results.md)."""
    import json

    data = json.loads(path.read_text())
    lines = ["| run | column | build A | build B | B − A | combined 95 % half-width | within |",
             "|---|---|---|---|---|---|---|"]
    for run in data["runs"]:
        for c, v in run["columns"].items():
            lines.append(f"| {run['run']} | {c} | {v['a']:.3f} | {v['b']:.3f} | {v['diff']:+.3f} | "
                         f"{v['combined_ci95']:.3f} | {'yes' if v['within'] else '**no**'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, required=True, help="archived records (build A)")
    parser.add_argument("--run-dir", type=Path, required=True, help="run folder holding the same runs (build B)")
    parser.add_argument("--runs", nargs="+", required=True, help="method run names, e.g. mtl-unseen-o1")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    from l2emg.runs import BenchArchive, MethodRunDir, RunDir
    from l2emg.utils.io import save_json
    from l2emg.utils.precision import machine

    run, archive = RunDir(args.run_dir), BenchArchive(args.archive)
    rows = []
    for name in args.runs:
        here = MethodRunDir(run.methods_dir / name)
        if not archive.has(name) or not here.metrics_path.exists():
            print(f"{name}: needs archived records in {args.archive} and a finished run in {here.path}")
            return 1
        a, b = side(archive.method_run(name)), side(here)
        rows.append({"run": name, "a": a, "b": b, "columns": compare(a, b)})
        outside = [c for c, v in rows[-1]["columns"].items() if not v["within"]]
        print(f"{name}: {len(rows[-1]['columns']) - len(outside)} of {len(rows[-1]['columns'])} columns within the "
              f"combined CI" + (f"; outside: {', '.join(outside)}" if outside else ""))
    save_json(args.out, {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "build_b": run.stage_fingerprint(),
                         "runs": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
