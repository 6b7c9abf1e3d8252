"""Where a method run's core-time goes: one stream, timed by phase.

    python benchmarks/stream_profile.py run --run-dir runs/profile-after --method esmoe --label after
    python benchmarks/stream_profile.py table            # the docs table from the committed JSON

`run` trains and evaluates one method over one stream (the profile's split and order) exactly as
`l2emg train` does, with timers wrapped around the functions the trainer calls (no change to the
code it measures, so the same script times an older checkout: put its `src` first on PYTHONPATH).
Phases are exclusive core-seconds: the process's CPU time (all its threads; `time.process_time`)
spent inside each phase, a phase nested in another counted once, in the inner one. CPU time rather
than wall time, so that a run beside another job on a shared machine is charged only its own work:

    load        run folder, language model, method, tokenizer and evaluator loading ("setup" in the table)
    data        examples (tokenising captions), collation, code corruption, caption dropout
    forward     the method's forward pass (training)
    backward    backpropagation
    optimizer   gradient clipping, AdamW step, scheduler, zero_grad
    hooks       the method's begin/end of a scenario (ES-MoE's K-means, EPI's statistics, …)
    generation  autoregressive decoding of evaluation motions (per evaluation point in `generation_per_eval`)
    decode      motion codes -> features (the VQ-VAE decoder)
    scoring     the evaluator: embeddings, FID, R-Precision, emotion F1, repeats
    checkpoint  safetensors checkpoints
    report      the method run's report (its own sample generations, figures, GIFs)
    other       the rest (Python between the phases, progress bars, JSON)

`core_seconds` is the process CPU time of the whole method run; `wall_seconds` beside it.

Results are merged into benchmarks/results/stream_profile.json under the method and label
("before" / "after"), with the machine (CPU, bf16 flags, threads, load) and process CPU time.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "stream_profile.json"
PHASES = ("load", "data", "forward", "backward", "optimizer", "hooks", "generation", "decode", "scoring",
          "checkpoint", "report", "other")


class PhaseClock:
    """Exclusive CPU time per phase: entering a phase pauses the one it is nested in."""

    def __init__(self) -> None:
        self.seconds = {p: 0.0 for p in PHASES}
        self.stack: list[tuple[str, float]] = []
        self.counts: dict[str, int] = {}

    def wrap(self, phase: str, fn, absorb: tuple[str, ...] = ()):
        """fn timed as `phase`, unless it runs inside one of `absorb` (then it is that phase's time)."""

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            if self.stack and self.stack[-1][0] in absorb:
                return fn(*args, **kwargs)
            now = time.process_time()
            if self.stack:
                outer, since = self.stack[-1]
                self.seconds[outer] += now - since
            self.stack.append((phase, now))
            try:
                return fn(*args, **kwargs)
            finally:
                name, since = self.stack.pop()
                end = time.process_time()
                self.seconds[name] += end - since
                self.counts[name] = self.counts.get(name, 0) + 1
                if self.stack:
                    self.stack[-1] = (self.stack[-1][0], end)

        return timed


def _cpuinfo() -> dict[str, str]:
    """The first value of each /proc/cpuinfo key (empty where it cannot be read). Read here rather than
    through `l2emg.utils.precision`, which the older checkouts this script times do not have."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def machine(threads: int) -> dict:
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    return {"cpu": info.get("model name") or platform.processor(),
            "flags_bf16": sorted(f for f in ("amx_bf16", "avx512_bf16") if f in flags),
            "threads": threads, "cores": os.cpu_count(), "load": round(os.getloadavg()[0], 2)}


def profile_run(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    import l2emg
    import l2emg.continual.trainer as trainer_module
    import l2emg.eval.evaluate as evaluate_module
    import l2emg.lm.generate as generate_module
    from l2emg.config import load_config
    from l2emg.continual.trainer import StreamTrainer
    from l2emg.pipeline import prepare_run
    from l2emg.runs import RunDir
    from l2emg.tokenizer.api import MotionTokenizer

    clock = PhaseClock()
    counters = {"train_tokens": 0, "train_batches": 0, "decoded_tokens": 0, "generated_motions": 0}
    per_eval: list[float] = []

    collate = trainer_module.collate_examples

    def counting_collate(*a, **k):
        batch = collate(*a, **k)
        counters["train_tokens"] += int(batch["attention_mask"].sum())
        counters["train_batches"] += 1
        return batch

    trainer_module.collate_examples = clock.wrap("data", counting_collate)
    for name in ("corrupt_motion_codes", "drop_captions"):
        setattr(trainer_module, name, clock.wrap("data", getattr(trainer_module, name)))
    if hasattr(trainer_module, "to_row_labels"):
        trainer_module.to_row_labels = clock.wrap("data", trainer_module.to_row_labels)
    generate = generate_module.generate_codes

    def counting_generate(*a, **k):
        codes = generate(*a, **k)
        counters["decoded_tokens"] += sum(len(c) + 1 for c in codes)  # + the end token
        counters["generated_motions"] += len(codes)
        return codes

    generate_module.generate_codes = clock.wrap("generation", counting_generate, absorb=("report",))
    evaluate_module.evaluate_motions = clock.wrap("scoring", evaluate_module.evaluate_motions)
    MotionTokenizer.decode_codes = clock.wrap("decode", MotionTokenizer.decode_codes, absorb=("report",))
    StreamTrainer._load = clock.wrap("load", StreamTrainer._load)
    StreamTrainer._examples = clock.wrap("data", StreamTrainer._examples)
    StreamTrainer._save_checkpoint = clock.wrap("checkpoint", StreamTrainer._save_checkpoint)
    StreamTrainer.write_report = clock.wrap("report", StreamTrainer.write_report)
    torch.optim.AdamW.step = clock.wrap("optimizer", torch.optim.AdamW.step)
    torch.optim.AdamW.zero_grad = clock.wrap("optimizer", torch.optim.AdamW.zero_grad)
    evaluate = StreamTrainer.evaluate

    def evaluate_step(self, step):
        before = clock.seconds["generation"]
        out = evaluate(self, step)
        per_eval.append(round(clock.seconds["generation"] - before, 2))
        return out

    StreamTrainer.evaluate = evaluate_step

    config = load_config(args.profile, args.set)
    run = RunDir(args.run_dir)
    prepare_run(args.run_dir, config, progress=False, previews=False)
    trainer = StreamTrainer(run, config, args.method, args.split, args.order, progress=False)
    if trainer.method_run.path.exists():
        shutil.rmtree(trainer.method_run.path)  # a fresh method run every time
    acc = trainer.accelerator
    acc.backward = clock.wrap("backward", acc.backward)
    acc.clip_grad_norm_ = clock.wrap("optimizer", acc.clip_grad_norm_)
    load = trainer._load

    def load_and_wrap():
        load()
        method = trainer.method
        method.forward = clock.wrap("forward", method.forward)
        method.begin_scenario = clock.wrap("hooks", method.begin_scenario)
        method.end_scenario = clock.wrap("hooks", method.end_scenario)

    trainer._load = load_and_wrap
    start_machine = machine(args.threads)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    results = trainer.run_stream()
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    clock.seconds["other"] = max(0.0, cpu - sum(v for k, v in clock.seconds.items() if k != "other"))
    train_seconds = sum(clock.seconds[p] for p in ("data", "forward", "backward", "optimizer"))
    from l2emg.utils.io import load_json

    metrics = load_json(trainer.method_run.metrics_path) if trainer.method_run.metrics_path.exists() else {}
    env = load_json(trainer.method_run.progress_path).get("environment", {})
    return {
        "method": args.method or config.train.method, "label": args.label, "profile": args.profile,
        "split": trainer.config.stream.split, "order": trainer.config.stream.order,
        "code": {"l2emg": str(Path(l2emg.__file__).parent), "commit": _commit(Path(l2emg.__file__).parent)},
        "machine": {**start_machine, "load_end": round(os.getloadavg()[0], 2)},
        "dtype": env.get("precision", "fp32"),
        "wall_seconds": round(wall, 1), "process_cpu_seconds": round(cpu, 1),
        "core_seconds": round(cpu, 1),
        "phases": {k: round(v, 1) for k, v in clock.seconds.items()},
        "calls": clock.counts, "generation_per_eval": per_eval,
        "train_tokens_per_second": round(counters["train_tokens"] / train_seconds, 1) if train_seconds else None,
        "decode_tokens_per_second": round(counters["decoded_tokens"] / clock.seconds["generation"], 1)
        if clock.seconds["generation"] else None,
        **counters,
        "metrics": {k: metrics.get(k) for k in ("AF", "AR", "AD", "AMM", "AWF", "FR")
                    if isinstance(metrics.get(k), (int, float))},
        "metrics_ci95": {k: metrics.get(f"{k}_ci95") for k in ("AF", "AR", "AD", "AMM", "AWF", "FR")
                         if f"{k}_ci95" in metrics},
        "steps": len(results.get("steps", [])),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _commit(src: Path) -> str | None:
    import subprocess

    try:
        return subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def flops(args: argparse.Namespace) -> dict:
    """FLOPs per token of the profile's language model and the CPU's peak, into the JSON's "flops".

    Training a frozen backbone with small adapters costs ~4 FLOPs per weight per token (forward 2;
    backward 2 for the input gradients; the frozen weights get no weight gradient), decoding 2; plus
    attention (QK^T and AV: 4·L·d·T forward per token at context T, ×2 with its backward), with T the
    mean training length over 2 (causal) and the mean decoding context. Peak per core: fp32 AVX-512 =
    2 FMA units × 16 lanes × 2 FLOPs = 64 FLOPs per cycle; bf16 AMX = 1024 FLOPs per cycle (Intel's
    figure for AMX-BF16); × the clock /proc/cpuinfo reports (no turbo assumed)."""
    import torch

    from l2emg.lm.motion_lm import MotionLM

    lm = MotionLM.load(Path(args.run_dir) / "lm")
    linear = sum(m.weight.numel() for m in lm.model.modules() if isinstance(m, torch.nn.Linear))
    cfg = lm.model.config
    data = json.loads(args.out.read_text())
    detail = next(iter(data["runs"][0]["details"].values()))
    mean_len = detail["train_tokens"] / max(1, detail["train_batches"]) / 32
    attention = 4 * cfg.num_hidden_layers * cfg.hidden_size * mean_len / 2
    mhz = float(_cpuinfo().get("cpu MHz") or "nan")
    data["flops"] = {"per_train_token": round(4 * linear + 2 * attention), "per_decode_token": round(2 * linear),
                     "linear_weights": linear, "mean_train_length": round(mean_len, 1), "cpu_mhz": mhz,
                     "peak_fp32_gflops_per_core": round(mhz * 64 / 1e3, 1),
                     "peak_bf16_gflops_per_core": round(mhz * 1024 / 1e3, 1), "how": " ".join(flops.__doc__.split("\n\n")[1].split())}
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    return data["flops"]


def merge(entry: dict, path: Path) -> dict:
    """Merge one profiled run into the JSON file (schema of issue 32, plus details per label)."""
    data = json.loads(path.read_text()) if path.exists() else {"runs": []}  # "notes" are kept
    run = next((r for r in data["runs"] if r["method"] == entry["method"]), None)
    if run is None:
        run = {"method": entry["method"]}
        data["runs"].append(run)
    label = entry["label"]
    run[f"core_seconds_{label}"] = entry["core_seconds"]
    run[f"phases_{label}"] = entry["phases"]
    run[f"dtype_{label}"] = entry["dtype"]
    run.setdefault("details", {})[label] = entry
    if "core_seconds_before" in run and "core_seconds_after" in run:
        run["ratio"] = round(run["core_seconds_after"] / run["core_seconds_before"], 3)
    if label == "after" or "machine" not in data:
        m = entry["machine"]
        data["machine"] = {"cpu": m["cpu"], "flags_bf16": m["flags_bf16"], "threads": m["threads"],
                           "load": m["load"], "cores": m["cores"]}
    order = {"esmoe": 0, "seqlora": 1, "mtl": 2}
    data["runs"].sort(key=lambda r: order.get(r["method"], 9))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
    return data


def table(data: dict) -> str:
    """Markdown: core-seconds per phase, before and after, per method."""
    m = data.get("machine", {})
    lines = [f"Machine: {m.get('cpu')} (bf16 units: {', '.join(m.get('flags_bf16') or []) or 'none'}), "
             f"{m.get('threads')} thread(s) per run, {m.get('cores')} cores, load {m.get('load')} at the start.", "",
             "| method | run | dtype | core-s | " + " | ".join("setup" if p == "load" else p for p in PHASES)
             + " | train tok/s | decode tok/s | train % of peak | AR | AWF |",
             "|---|---|---|---:|" + "---:|" * len(PHASES) + "---:|---:|---:|---:|---:|"]
    fl = data.get("flops")

    def peak_share(d: dict) -> str:
        if not fl:
            return "–"
        peak = fl["peak_bf16_gflops_per_core" if d["dtype"] == "bf16" else "peak_fp32_gflops_per_core"]
        return f"{d['train_tokens_per_second'] * fl['per_train_token'] / 1e9 / peak:.1%}"

    for run in data["runs"]:
        for label in ("before", "after"):
            d = run.get("details", {}).get(label)
            if not d:
                continue
            cells = " | ".join(f"{d['phases'].get(p, 0):.0f}" for p in PHASES)
            lines.append(f"| {run['method']} | {label} ({d['code'].get('commit')}) | {d['dtype']} | "
                         f"{d['core_seconds']:.0f} | {cells} | {d['train_tokens_per_second']:.0f} | "
                         f"{d['decode_tokens_per_second']:.0f} | {peak_share(d)} | "
                         f"{d['metrics'].get('AR', float('nan')):.3f} | "
                         f"{d['metrics'].get('AWF', float('nan')):.3f} |")
        if "ratio" in run:
            lines.append(f"| {run['method']} | **after / before** | | **{run['ratio']:.2f}×** |" + " |" * len(PHASES)
                         + " | | | | |")
    if fl:
        lines += ["", f"Training FLOPs per token {fl['per_train_token'] / 1e6:.1f} M (linear weights "
                  f"{fl['linear_weights']:,}, mean length {fl['mean_train_length']}); peak per core at {fl['cpu_mhz']:.0f} MHz: fp32 "
                  f"{fl['peak_fp32_gflops_per_core']} GFLOP/s, bf16 {fl['peak_bf16_gflops_per_core']} GFLOP/s. {fl['how']}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="profile one method run and merge it into the JSON")
    r.add_argument("--run-dir", type=Path, required=True, help="a run folder (shared stages built or reused)")
    r.add_argument("--method", default=None)
    r.add_argument("--profile", default="default")
    r.add_argument("--split", default=None)
    r.add_argument("--order", type=int, default=None)
    r.add_argument("--set", action="append", default=[], help="config override, as l2emg train --set")
    r.add_argument("--label", required=True, help="before | after (or any name)")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--out", type=Path, default=RESULTS, help="the JSON to merge into (one per profile)")
    f = sub.add_parser("flops", help="add the model's FLOPs per token and the CPU's peak to the JSON")
    f.add_argument("--run-dir", type=Path, required=True, help="a run folder whose lm/ is the profiled model")
    f.add_argument("--out", type=Path, default=RESULTS)
    t = sub.add_parser("table", help="print the markdown table of the JSON")
    t.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.command == "flops":
        print(json.dumps(flops(args), indent=2))
        return 0
    if args.command == "table":
        print(table(json.loads(args.json.read_text())))
        return 0
    entry = profile_run(args)
    data = merge(entry, args.out)
    print(table(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
