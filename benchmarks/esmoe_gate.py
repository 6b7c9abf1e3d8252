"""Where ES-MoE's emotion F1 goes: a finished ES-MoE run evaluated again with other inference gates.

    .venv/bin/python benchmarks/esmoe_gate.py --run-dir runs/default [--method esmoe-unseen-o1]
        [--gates 2:1,1:1,8:1,8:4] [--threads 1]

No training. Loads the method run's last checkpoint, sets the inference gate and runs the trainer's
own evaluation of the last step (every scenario's test set, the run's evaluation seeds and repeats),
so the run's own gate (top-2, temperature 1 on the default profile) reproduces its last row exactly.
Each item of `--gates` is one of
  K:T           top-K of all experts at softmax temperature T (K above the number of experts keeps all);
  newest+K:T    the newest expert always, plus the top K−1 of the others (the selection training
                uses, where the expert being trained is always kept), renormalised at temperature T;
  own+newest:W  the gate's top expert among the older ones with weight 1−W, the newest with W;
  newest        every prompt on the newest expert alone (with `esmoe.expert_init: previous` it has
                been warm-started along the whole stream).
Prints AR and AWF per gate (`continual_metrics` of the run's results with the last row replaced),
with the per-scenario values, and the backward transfer (BWT) of the run itself on top-1 and emotion
F1: the mean change on old scenarios from the step that learned them to the end.

Saves benchmarks/results/esmoe_gate.json (atomically).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch


def inference_route(gate, spec: str, trained_forward):
    """A gate forward whose inference weights (B, E) follow `spec` (newest+K:T, own+newest:W or
    newest); training calls (with `current`) keep the trained behaviour."""
    from l2emg.continual.methods.gate import select_top_k

    def forward(pooled, current=None, generator=None):
        if current is not None:
            return trained_forward(pooled, current, generator)
        logits = gate.logits(pooled)  # (B, E)
        newest = logits.shape[1] - 1
        if spec.startswith("newest+"):
            return select_top_k(logits, gate.top_k, forced=newest)
        weights = torch.zeros_like(logits)
        if spec == "newest" or newest == 0:
            weights[:, newest] = 1.0
            return weights
        w_newest = float(spec.split(":")[1])
        own = logits[:, :newest].argmax(dim=-1)  # (B,) the gate's top older expert
        weights[torch.arange(len(weights)), own] = 1.0 - w_newest
        weights[:, newest] += w_newest
        return weights

    return forward


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", default="runs/default")
    parser.add_argument("--method", default="esmoe", help="method run: a method name or a folder name "
                        "under RUN/methods/ (esmoe-unseen-o1)")
    parser.add_argument("--gates", default="2:1,1:1,8:1,8:4", help="comma list of TOP_K:TEMPERATURE, "
                        "newest+TOP_K:TEMPERATURE, own+newest:WEIGHT or newest (see above)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "esmoe_gate.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from l2emg.config import read_saved_config
    from l2emg.continual.trainer import StreamTrainer
    from l2emg.eval.continual_metrics import continual_metrics, matrices_from_results
    from l2emg.runs import RunDir
    from l2emg.utils.io import load_json, save_json

    run = RunDir(args.run_dir)
    method_run = run.find_method_run(args.method)
    config = read_saved_config(method_run.config_path)
    method, _ = method_run.final_checkpoint()
    trainer = StreamTrainer(run, config, method, config.stream.split, config.stream.order, progress=False)
    recorded = load_json(method_run.results_path)
    last = len(recorded["steps"]) - 1
    trainer._load()
    trainer._load_checkpoint(last)
    trainer.method.eval()
    gate = getattr(trainer.method, "gate", None)
    if gate is None:
        raise SystemExit(f"{method_run.path}: method {method!r} has no ES-MoE gate")

    own = continual_metrics(matrices_from_results(recorded, str(method_run.results_path)))
    report = {"machine": f"{platform.node()} ({os.cpu_count()} cores)", "threads": args.threads,
              "method_run": str(method_run.path), "step": last,
              "BWT": {m: own["transfer"][m]["BWT"] for m in ("r_precision_top1", "emotion_f1")}, "gates": {}}
    trained_forward, top_k0, temperature0 = gate.forward, gate.top_k, gate.temperature
    for spec in [g for g in args.gates.split(",") if g]:
        gate.forward, gate.top_k, gate.temperature = trained_forward, top_k0, temperature0
        if spec == "newest" or spec.startswith("own+newest:"):
            gate.forward = inference_route(gate, spec, trained_forward)
        else:
            top_k, temperature = spec.removeprefix("newest+").split(":")
            gate.top_k, gate.temperature = int(top_k), float(temperature)
            if spec.startswith("newest+"):
                gate.forward = inference_route(gate, spec, trained_forward)
        start = time.time()
        evaluation = trainer.evaluate(last)
        rerun = {**recorded, "steps": [*recorded["steps"][:last], {**recorded["steps"][last], **evaluation}]}
        perf = matrices_from_results(rerun, f"{method_run.results_path} with gate {spec}")
        metrics = continual_metrics(perf)
        row = {"AR": metrics["AR"], "AWF": metrics["AWF"], "top1": perf.matrices["r_precision_top1"][-1].tolist(),
               "emotion_f1": perf.matrices["emotion_f1"][-1].tolist(), "seconds": time.time() - start}
        report["gates"][spec] = row
        print(f"{spec}: AR {row['AR']:.3f}  AWF {row['AWF']:.3f}  ({row['seconds']:.0f} s)", flush=True)
    gate.forward, gate.top_k, gate.temperature = trained_forward, top_k0, temperature0
    for metric, bwt in report["BWT"].items():
        print(f"{metric}: mean change on old scenarios from learning to the end (BWT) {bwt:+.3f}")
    save_json(args.out, report)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
