"""The settings picked for the baselines where an official value does not transfer, and what they measured.

    python benchmarks/baseline_settings.py collect \
        --entry "progprompt|prompt_lr 0.3|runs/sweep-pp/methods/progprompt-unseen-o1-lr0.3" …
    python benchmarks/baseline_settings.py table

Each entry is a method run over the first two scenarios of Unseen order 1 (`--set stream.max_subsets=2`,
default profile, one setting changed). The rule, the same for every method (docs/design.md, "The
baselines' reach, and parity"): keep the value with the highest mean top-1 R-Precision over the two
scenarios after the second step. `collect` reads each run's results.json and writes
benchmarks/results/baseline_settings.json: {"machine", "date", "rule", "rows": [{"method", "setting",
"run", "top1": {scenario: {"mean", "ci95"}}, "mean_top1", "extras": {scenario: {...}} (e.g. SAPT's
gate_own_expert), "protocol", "picked"}]}, `picked` true on each method's best row. With `--bench RUN`
(a bench run folder of Unseen order 1) also "learned": {method: {"diagonal_top1": top-1 on each scenario
right after learning it, "mean", "final_AR"}} — how much each method learns per scenario, the measured
reason given for methods below half of MTL's AR. `table` prints it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "baseline_settings.json"
RULE = ("the highest mean top-1 R-Precision over the first two scenarios after the second step "
        "(Unseen order 1, default profile, stream.max_subsets=2)")


def read_entry(method: str, setting: str, run: Path) -> dict:
    path = run / "results.json"
    if not path.exists():
        raise SystemExit(f"{path}: no results (is {run} a method run folder?)")
    results = json.loads(path.read_text())
    if len(results["steps"]) < 2:
        raise SystemExit(f"{path}: {len(results['steps'])} step(s); the rule reads the state after step 2")
    last = results["steps"][1]
    top1 = {s: {"mean": last["results"][s]["r_precision_top1"]["mean"],
                "ci95": last["results"][s]["r_precision_top1"]["ci95"]} for s in results["scenarios"][:2]}
    return {"method": method, "setting": setting, "run": str(run), "top1": top1,
            "mean_top1": sum(v["mean"] for v in top1.values()) / len(top1),
            "extras": last.get("extras") or {}, "protocol": last.get("protocol", "fixed"), "picked": False}


def learned(bench: Path) -> dict:
    """Per finished continual method run of Unseen order 1 in `bench`: the diagonal of its top-1 matrix."""
    out = {}
    for path in sorted((bench / "methods").glob("*-unseen-o1/results.json")):
        results = json.loads(path.read_text())
        if results.get("joint_training") or len(results["steps"]) != len(results["scenarios"]):
            continue
        names, steps = results["scenarios"], results["steps"]
        diagonal = [steps[i]["results"][names[i]]["r_precision_top1"]["mean"] for i in range(len(names))]
        final = [steps[-1]["results"][n]["r_precision_top1"]["mean"] for n in names]
        out[results["method"]] = {"diagonal_top1": diagonal, "mean": sum(diagonal) / len(diagonal),
                                  "final_AR": sum(final) / len(final)}
    return out


def collect(entries: list[str], bench: Path | None = None) -> None:
    from l2emg.utils.io import save_json
    from l2emg.utils.precision import machine

    rows = []
    for entry in entries:
        try:
            method, setting, run = entry.split("|")
        except ValueError:
            raise SystemExit(f"--entry {entry!r}: expected METHOD|SETTING|METHOD_RUN_DIR") from None
        rows.append(read_entry(method, setting, Path(run)))
    for method in {r["method"] for r in rows}:
        mine = [r for r in rows if r["method"] == method]
        if len(mine) > 1:
            max(mine, key=lambda r: r["mean_top1"])["picked"] = True
    document = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "rule": RULE, "rows": rows}
    if bench is not None:
        document["learned"] = learned(bench)
    save_json(OUT, document)


def table(path: Path = OUT) -> str:
    data = json.loads(path.read_text())
    lines = ["| method | setting | top-1 after step 2 (per scenario) | mean | picked | extras |", "|---|---|---|---|---|---|"]
    for r in data["rows"]:
        cells = ", ".join(f"{s} {v['mean']:.3f} ± {v['ci95']:.3f}" for s, v in r["top1"].items())
        extras = "; ".join(f"{s}: " + ", ".join(f"{k} {v:.2f}" for k, v in e.items()) for s, e in r["extras"].items())
        lines.append(f"| {r['method']} | {r['setting']} | {cells} | {r['mean_top1']:.3f} | "
                     f"{'yes' if r['picked'] else ''} | {extras or '–'} |")
    if data.get("learned"):
        lines += ["", "Learned per scenario (Unseen order 1, the bench's runs): mean top-1 on each scenario right after "
                  "learning it, and AR.", "", "| method | mean top-1 right after learning | AR |", "|---|---|---|"]
        lines += [f"| {m} | {v['mean']:.3f} | {v['final_AR']:.3f} |" for m, v in data["learned"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="read the sweep runs into baseline_settings.json")
    c.add_argument("--entry", action="append", required=True, help="METHOD|SETTING|METHOD_RUN_DIR (repeatable)")
    c.add_argument("--bench", type=Path, help="a bench run folder: add what each method learned per scenario")
    sub.add_parser("table", help="print baseline_settings.json as Markdown")
    args = parser.parse_args(argv)
    if args.command == "collect":
        collect(args.entry, args.bench)
    print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
