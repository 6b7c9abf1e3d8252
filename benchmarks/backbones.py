"""The backbones side by side: finished method runs' Table-2 rows and costs, and the benchmarks' numbers.

    python benchmarks/backbones.py collect --entry runs/default:mtl:llama-4m --entry runs/smollm2:mtl:smollm2-135m
    python benchmarks/backbones.py table          # the Backbones tables of docs/results.md, from committed JSON only

`collect` reads each method run's metrics.json / results.json / config.yaml (AF, AR, AD, AMM, AWF, FR
with their CIs, training and evaluation seconds, torch threads, precision) into
benchmarks/results/backbones.json (rows of other entries are kept). `table` prints Markdown from that
file, benchmarks/results/paraphrase.json, precision_agreement.json and backbone_speed.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
OUT = RESULTS / "backbones.json"
METRICS = ("AF", "AR", "AD", "AMM", "AWF", "FR")


def collect(entries: list[str]) -> None:
    from l2emg.config import read_saved_config
    from l2emg.runs import RunDir
    from l2emg.utils.io import load_json, save_json
    from l2emg.utils.precision import machine, resolve_precision

    rows = json.loads(OUT.read_text())["rows"] if OUT.exists() else []
    for entry in entries:
        run_dir, method, label = entry.split(":")
        method_run = RunDir(run_dir).find_method_run(method)
        metrics = load_json(method_run.path / "metrics.json")
        results = load_json(method_run.results_path)
        progress = load_json(method_run.progress_path)
        config = read_saved_config(method_run.config_path)
        steps = results["steps"]
        row = {"backbone": label, "method": method, "split": results["split"], "order": results["order"],
               **{k: metrics.get(k) for k in METRICS}, **{f"{k}_ci95": metrics.get(f"{k}_ci95") for k in METRICS},
               "train_seconds": round(sum(s["train"]["seconds"] for s in steps), 1),
               "eval_seconds": round(sum(s.get("eval_seconds", 0) for s in steps), 1),
               "updates": sum(s["train"]["updates"] for s in steps),
               "threads": progress.get("environment", {}).get("threads"),
               "precision": resolve_precision(config.lm.precision), "motion_softmax": config.lm.motion_softmax,
               "run": str(method_run.path)}
        rows = [r for r in rows if (r["backbone"], r["method"], r["split"], r["order"], r["precision"]) !=
                (row["backbone"], row["method"], row["split"], row["order"], row["precision"])] + [row]
        print(row)
    save_json(OUT, {"rows": rows, "machine": machine(), "date": time.strftime("%Y-%m-%d")})


def _f(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table() -> None:
    def load(name: str) -> dict:
        path = RESULTS / name
        return json.loads(path.read_text()) if path.exists() else {"rows": []}

    runs = load("backbones.json")
    print("| backbone | method | precision | AR | AWF | AF | updates | training s | evaluation s | threads |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs["rows"]:
        print(f"| {r['backbone']} | {r['method']} | {r['precision']} | {_f(r['AR'])} ± {_f(r['AR_ci95'])} | "
              f"{_f(r['AWF'])} ± {_f(r['AWF_ci95'])} | {_f(r['AF'])} ± {_f(r['AF_ci95'])} | {r['updates']} | "
              f"{r['train_seconds']:.0f} | {r['eval_seconds']:.0f} | {r['threads']} |")
    para = load("paraphrase.json")
    print("\n| backbone | method | variant | data | set | OOV words | top-1 | top-3 | emotion F1 | FID |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in para["rows"]:
        print(f"| {r['backbone']} | {r['method']} | {r.get('variant') or '–'} | {r.get('emotion_style', 'shared*')} | "
              f"{r['set']} | {r['oov_word_fraction']:.1%} | "
              f"{_f(r['top1'])} ± {_f(r['top1_ci95'])} | {_f(r['top3'])} | {_f(r['emotion_f1'])} | {_f(r['fid'])} |")
    print("\ndata: the run's `data.emotion_style`; * rows written before the JSON recorded it, all on the data of "
          "then (`shared`; docs/experiments/backbones.md). Each data build has its own test captions, so its own "
          "paraphrase set (`benchmarks/paraphrase/set.json` holds the last one built).")
    agree = load("precision_agreement.json")
    if agree["rows"]:
        print("\n| backbone | method | decoding | top-1 | emotion F1 | FID |")
        print("|---|---|---|---|---|---|")
        for r in agree["rows"]:
            print(f"| {r['backbone']} | {r['method']} | {r['precision']} | {_f(r['top1'])} ± {_f(r['top1_ci95'])} | "
                  f"{_f(r['emotion_f1'])} | {_f(r['fid'])} ± {_f(r['fid_ci95'])} |")
    for path in sorted(RESULTS.glob("backbone_speed*.json")):
        speed = json.loads(path.read_text())
        print(f"\n`{path.name}`:")
        print(f"\n{speed['machine']['cpu']}, bf16 units: {', '.join(speed['machine']['flags_bf16']) or 'none'}, "
              f"{speed['machine']['threads']} threads, load {speed['machine']['load']} ({speed['date']})\n")
        print("| backbone | what | precision | softmax | seconds | tokens/s |")
        print("|---|---|---|---|---|---|")
        for r in speed["rows"]:
            softmax = ("motion" if r["motion_softmax"] else "whole vocabulary") if "motion_softmax" in r else "–"
            print(f"| {r['backbone']} | {r['what']} | {r['precision']} | {softmax} | {r['seconds']:.2f} | "
                  f"{r['tokens_per_s']:.0f} |")
        print("\n" + ", ".join(f"{b}: " + ", ".join(f"{k} {v}" for k, v in ratios.items())
                                 for b, ratios in speed["ratios"].items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="read finished method runs into benchmarks/results/backbones.json")
    c.add_argument("--entry", action="append", required=True, help="RUN_DIR:METHOD:BACKBONE (repeatable)")
    sub.add_parser("table", help="print the Markdown tables from the committed JSON")
    args = parser.parse_args(argv)
    if args.command == "collect":
        collect(args.entry)
    else:
        table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
