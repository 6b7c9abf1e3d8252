"""Where ES-MoE's emotion F1 goes: a finished ES-MoE run evaluated again with other inference gates.

    .venv/bin/python benchmarks/esmoe_gate.py --run-dir runs/default [--method-run esmoe-unseen-o1]
        [--gates 2:1,1:1,8:1,8:4] [--threads 1]

No training. Loads the method run's last checkpoint, sets the gate's inference `top_k` and softmax
`temperature` (each `K:T` of `--gates`; K above the number of experts keeps all of them) and runs the
trainer's own evaluation of the last step (every scenario's test set, the run's evaluation seeds and
repeats), so the run's own gate (top-2, temperature 1 on the default profile) reproduces its last row
exactly. Prints AR (mean top-1 over the scenarios) and AWF (mean emotion F1) per gate, with the
per-scenario values, and the emotion-transfer summary of the run itself: for each old scenario, the
change of top-1 and emotion F1 from the step that learned it to the end of the stream.

Saves benchmarks/results/esmoe_gate.json (atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch


def value(cell):
    return cell["mean"] if isinstance(cell, dict) else cell


def transfer(results: dict) -> dict:
    """Mean over old scenarios of (value at the end − value right after learning it), per metric."""
    steps = results["steps"]
    names = results["scenarios"]
    out = {}
    for key in ("r_precision_top1", "emotion_f1"):
        diag = [value(steps[i]["results"][names[i]][key]) for i in range(len(names))]
        final = [value(steps[-1]["results"][name][key]) for name in names]
        old = range(len(names) - 1)
        out[key] = {"diagonal": diag, "final": final,
                    "mean_change_old": sum(final[j] - diag[j] for j in old) / max(len(old), 1)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", default="runs/default")
    parser.add_argument("--method-run", default="esmoe-unseen-o1", help="folder under RUN/methods/")
    parser.add_argument("--gates", default="2:1,1:1,8:1,8:4", help="comma list of TOP_K:TEMPERATURE")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "esmoe_gate.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from l2emg.config import load_config
    from l2emg.continual.trainer import StreamTrainer
    from l2emg.runs import RunDir
    from l2emg.utils.io import atomic_write_text, load_json

    run = RunDir(args.run_dir)
    method_run = run.methods_dir / args.method_run
    config = load_config(str(method_run / "config.yaml"))
    method, split, order = args.method_run.rsplit("-", 2)  # <method>-<split>-o<order>
    trainer = StreamTrainer(run, config, method, split, int(order.lstrip("o")), progress=False)
    last = trainer.method_run.finished_steps() - 1
    if last < 0:
        raise SystemExit(f"{method_run}: no finished step")
    trainer._load()
    trainer._load_checkpoint(last)
    trainer.method.eval()
    gate = getattr(trainer.method, "gate", None)
    if gate is None:
        raise SystemExit(f"{method_run}: method {method!r} has no ES-MoE gate")

    recorded = load_json(trainer.method_run.results_path)
    report = {"machine": f"{platform.node()} ({os.cpu_count()} cores)", "threads": args.threads,
              "method_run": str(method_run), "step": last, "transfer": transfer(recorded), "gates": {}}
    for spec in [g for g in args.gates.split(",") if g]:
        top_k, temperature = spec.split(":")
        gate.top_k, gate.temperature = int(top_k), float(temperature)
        start = time.time()
        evaluation = trainer.evaluate(last)["results"]
        top1 = [value(r["r_precision_top1"]) for r in evaluation.values()]
        f1 = [value(r["emotion_f1"]) for r in evaluation.values()]
        row = {"AR": sum(top1) / len(top1), "AWF": sum(f1) / len(f1), "top1": top1, "emotion_f1": f1,
               "seconds": time.time() - start}
        report["gates"][spec] = row
        print(f"top_k {top_k}, temperature {temperature}: AR {row['AR']:.3f}  AWF {row['AWF']:.3f}  "
              f"({row['seconds']:.0f} s)", flush=True)
    for key, summary in report["transfer"].items():
        print(f"{key}: mean change on old scenarios from learning to the end {summary['mean_change_old']:+.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
