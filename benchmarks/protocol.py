"""The evaluation protocol of before and of now, side by side on the same trained models.

    python benchmarks/protocol.py --run runs/scen --method esmoe --method seqlora --method mtl

For each finished method run (default profile, Unseen order 1) its final checkpoint is restored and
its last evaluation point is evaluated twice, with the same trained model and the same seeds:
- `fixed` (before 2026-12-07): eval_generations (2) drawn once from each test motion's first caption
  and re-scored in every repetition, MultiModality from those 2 generations;
- `redrawn` (now): one generation set per repetition, each motion generated from a caption drawn at
  random among its own (seeded), MultiModality from 10 generations of one caption for the first 10
  test motions of each scenario (10 random pairs each), FID also pooled over the scenarios.
Both use the run's evaluator and train.eval_repeats (5). Writes benchmarks/results/protocol.json:
{"machine", "date", "rows": [{"run", "method", "protocol", "AF", "AF_ci95", "AF_pooled", …, "AR",
"AR_ci95", "AMM", "AMM_ci95", "AWF", "AWF_ci95", "AD", "AD_ci95", "eval_seconds", "generations"}]}
(rows of other runs/methods are kept).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "protocol.json"
PROTOCOLS = {
    "fixed": {"eval_protocol": "fixed", "eval_generations": 2, "eval_mm_captions": None},
    "redrawn": {"eval_protocol": "redrawn", "eval_generations": 10, "eval_mm_captions": 10},
}


def evaluate(run: Path, method: str, protocol: str) -> dict:
    from l2emg.config import read_saved_config
    from l2emg.continual.trainer import StreamTrainer
    from l2emg.eval.continual_metrics import step_averages
    from l2emg.runs import RunDir

    run_dir = RunDir(run)
    method_run = run_dir.method_run(method, "unseen", 1)
    saved = read_saved_config(method_run.config_path)
    config = saved.model_copy(update={"train": saved.train.model_copy(update=PROTOCOLS[protocol])})
    trainer = StreamTrainer(run_dir, config, method, "unseen", 1, progress=False)
    trainer._load()
    last = trainer.finished_steps() - 1
    if last < 0 or last != len(trainer.steps()) - 1:
        raise SystemExit(f"{method_run.path}: not finished")
    trainer._load_checkpoint(last)
    evaluation = trainer.evaluate(last)
    cells = evaluation["results"]
    row = {"run": str(run), "method": method, "protocol": protocol, "step": last,
           "eval_seconds": evaluation["eval_seconds"], "repeats": config.train.eval_repeats,
           **{k: v for k, v in PROTOCOLS[protocol].items() if k != "eval_protocol"}}
    row.update(step_averages(evaluation, list(cells)))
    row["per_scenario_top1"] = {s: c["r_precision_top1"]["mean"] for s, c in cells.items() if c.get("r_precision_top1")}
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="run folder with finished Unseen order-1 method runs")
    parser.add_argument("--method", action="append", required=True, help="method name (repeatable)")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from l2emg.utils.io import save_json
    from l2emg.utils.precision import machine

    rows = json.loads(OUT.read_text())["rows"] if OUT.exists() else []
    for method in args.method:
        new = [evaluate(args.run, method, protocol) for protocol in PROTOCOLS]
        for row in new:
            print(f"{method:>14} {row['protocol']:>8}: AR {row['AR']:.3f} ± {row['AR_ci95']:.3f}  "
                  f"AF {row['AF']:.3f} ± {row['AF_ci95']:.3f}  AF pooled {row['AF_pooled']:.3f}  "
                  f"AMM {row['AMM']:.3f}  AWF {row['AWF']:.3f} ± {row['AWF_ci95']:.3f}  ({row['eval_seconds']} s)")
        rows = [r for r in rows if (r["run"], r["method"]) != (str(args.run), method)] + new
        save_json(OUT, {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
