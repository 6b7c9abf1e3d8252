"""Why O-LoRA forgets here: how much of each new LoRA's input subspace the older LoRAs already hold.

    python benchmarks/olora_forgetting.py collect \
        --entry "lm_head rank 64 (the budget of every method)|runs/ol64/methods/olora-unseen-o1" \
        --entry "lm_head rank 32 (8 × 32 = 256: all scenarios fit)|runs/ol32/methods/olora-unseen-o1"
    python benchmarks/olora_forgetting.py table

O-LoRA (olora.py) keeps every scenario's LoRA and sums them all at inference with weight 1; what keeps
a new scenario from overwriting an old one is that their A's read orthogonal subspaces of the layer's
input (the λ1 term). Where the LoRAs of all scenarios cannot fit into the input space (8 scenarios ×
rank r > the input size), later LoRAs must read directions the earlier ones read.

For each method run (an O-LoRA run folder with checkpoints) `collect` reads the adapters of the last
checkpoint and, per module group (attention q/k/v/o, embed_tokens, lm_head) and per expert i ≥ 1, the
share of A_i's energy inside the row space of A_0 … A_{i−1}: ‖P_old A_iᵀ‖² / ‖A_iᵀ‖² (1: every direction
A_i reads is one an older LoRA reads; a random A_i would give min(1, i·r / in), the "chance" beside it),
and the official term Σ|A_old A_iᵀ|. With the run's top-1 R-Precision matrix (rows: after each step), its
AR and FR, and the rule's number (the mean top-1 over the first two scenarios after step 2, the rule
every baseline setting was picked by, benchmarks/baseline_settings.py).

Writes benchmarks/results/olora_forgetting.json: {"machine", "date", "runs": [{"setting", "run",
"ranks": {group: r}, "in_features": {group: n}, "overlap": {group: [per expert i ≥ 1]}, "chance":
{group: [...]}, "orth_term": {group: [...]}, "top1": [[per scenario] per step], "scenarios", "AR",
"AR_ci95", "FR", "rule_top1"}]}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "olora_forgetting.json"
GROUPS = ("attention", "embed_tokens", "lm_head")


def _group(module: str) -> str | None:
    leaf = module.rsplit(".", 1)[-1]
    if leaf in ("lm_head", "embed_tokens"):
        return leaf
    return "attention" if leaf in ("q_proj", "k_proj", "v_proj", "o_proj") else None


def subspace_overlap(a_old, a_new) -> float:
    """Share of a_new's (r, in) energy inside the row space of a_old (m, in)."""
    import torch

    q, _ = torch.linalg.qr(a_old.double().t())  # (in, m): an orthonormal basis of a_old's row space
    new = a_new.double().t()  # (in, r)
    inside = q.t() @ new
    total = float((new ** 2).sum())
    return float((inside ** 2).sum()) / total if total > 0 else 0.0


def adapters(run: Path) -> dict[str, dict[str, list]]:
    """{module: {"A": [A_0 …], "B": [B_0 …]}} of the run's last checkpoint."""
    from safetensors.torch import load_file

    from l2emg.continual.checkpoint import ADAPTER_FILE
    from l2emg.runs import MethodRunDir

    method_run = MethodRunDir(run)
    path = method_run.checkpoint_dir(method_run.finished_steps() - 1) / ADAPTER_FILE
    if not path.exists():
        raise SystemExit(f"{path}: missing (keep the run's checkpoints)")
    tensors = load_file(str(path))
    modules: dict[str, dict[str, dict[int, object]]] = {}
    for key, value in tensors.items():
        module, _, rest = key.partition(".lora_")
        if not rest:
            continue
        kind, _, index = rest.partition(".")
        modules.setdefault(module, {"A": {}, "B": {}})[kind][int(index)] = value
    return {m: {k: [v[i] for i in sorted(v)] for k, v in d.items()} for m, d in modules.items()}


def read_run(setting: str, run: Path) -> dict:
    import torch

    for name in ("results.json", "metrics.json"):
        if not (run / name).exists():
            raise SystemExit(f"{run / name}: missing (is {run} a finished method run folder?)")
    results = json.loads((run / "results.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    names = results["scenarios"]
    steps = results["steps"]
    top1 = [[(s["results"][n]["r_precision_top1"]["mean"] if n in s["results"] else None) for n in names]
            for s in steps]
    overlap: dict[str, list[list[float]]] = {g: [] for g in GROUPS}
    chance: dict[str, list[float]] = {}
    orth: dict[str, list[list[float]]] = {g: [] for g in GROUPS}
    ranks: dict[str, int] = {}
    inputs: dict[str, int] = {}
    for module, factors in adapters(run).items():
        group = _group(module)
        if group is None:
            continue
        a = factors["A"]
        # An embedding's A is (r, vocabulary) as a Linear's is (r, in): the same reading applies.
        ranks[group], inputs[group] = int(a[0].shape[0]), int(a[0].shape[1])
        overlap[group].append([subspace_overlap(torch.cat(a[:i]), a[i]) for i in range(1, len(a))])
        orth[group].append([float((torch.cat(a[:i]) @ a[i].t()).abs().sum()) for i in range(1, len(a))])
        chance[group] = [min(1.0, i * ranks[group] / inputs[group]) for i in range(1, len(a))]

    def mean_over_modules(rows: list[list[float]]) -> list[float]:
        return [sum(col) / len(col) for col in zip(*rows, strict=True)] if rows else []

    return {"setting": setting, "run": str(run), "ranks": ranks, "in_features": inputs,
            "overlap": {g: [round(v, 4) for v in mean_over_modules(r)] for g, r in overlap.items() if r},
            "chance": {g: [round(v, 4) for v in c] for g, c in chance.items()},
            "orth_term": {g: [round(v, 2) for v in mean_over_modules(r)] for g, r in orth.items() if r},
            "scenarios": names, "top1": top1, "AR": metrics.get("AR"), "AR_ci95": metrics.get("AR_ci95"),
            "FR": metrics.get("FR"), "rule_top1": sum(top1[1][:2]) / 2}


def collect(entries: list[str]) -> None:
    from l2emg.utils.io import save_json
    from l2emg.utils.precision import machine

    runs = []
    for entry in entries:
        try:
            setting, run = entry.split("|")
        except ValueError:
            raise SystemExit(f"--entry {entry!r}: expected SETTING|METHOD_RUN_DIR") from None
        runs.append(read_run(setting, Path(run)))
    save_json(OUT, {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "runs": runs})


def table(path: Path = OUT) -> str:
    data = json.loads(path.read_text())
    lines = ["| setting | AR | FR | rule (top-1 after step 2) | lm_head: new LoRA's energy in older LoRAs' subspace, "
             "experts 2…8 (chance) | attention: same |", "|---|---|---|---|---|---|"]
    def series(r: dict, group: str) -> str:
        if group not in r["overlap"]:
            return "–"
        return " ".join(f"{v:.2f}" for v in r["overlap"][group]) + " (" + " ".join(
            f"{v:.2f}" for v in r["chance"][group]) + ")"

    for r in data["runs"]:
        ar = f"{r['AR']:.3f} ± {r['AR_ci95']:.3f}" if r.get("AR_ci95") is not None else f"{r['AR']:.3f}"
        lines.append(f"| {r['setting']} | {ar} | {100 * r['FR']:.1f} | {r['rule_top1']:.3f} | {series(r, 'lm_head')} | "
                     f"{series(r, 'attention')} |")
    lines += ["", "Top-1 R-Precision after each step (rows) on each scenario (columns):", ""]
    for r in data["runs"]:
        lines += [f"{r['setting']}:", "", "| after | " + " | ".join(r["scenarios"]) + " |",
                  "|---|" + "---:|" * len(r["scenarios"])]
        for i, row in enumerate(r["top1"]):
            lines.append(f"| step {i + 1} | " + " | ".join("" if v is None else f"{v:.2f}" for v in row) + " |")
        lines.append("")
    return "\n".join(lines).rstrip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="read O-LoRA runs into olora_forgetting.json")
    c.add_argument("--entry", action="append", required=True, help="SETTING|METHOD_RUN_DIR (repeatable)")
    sub.add_parser("table", help="print olora_forgetting.json as Markdown")
    args = parser.parse_args(argv)
    if args.command == "collect":
        collect(args.entry)
    print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
