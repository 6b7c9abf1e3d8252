"""bf16 against fp32 decoding of one trained run: do the metrics agree within their CIs?

    python benchmarks/precision_agreement.py --entry runs/smollm2:mtl:smollm2-135m

Generates every test motion's first caption twice with the same seed, once under bf16 autocast and
once in float32, and scores both with the run's evaluator (benchmarks/paraphrase.py's `score`, the
`original` set). Training under bf16 is compared on whole runs instead (docs/experiments/backbones.md). Writes
benchmarks/results/precision_agreement.json (rows of other entries are kept).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from paraphrase import HERE, build_set, score, words

OUT = HERE / "results" / "precision_agreement.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entry", action="append", required=True, help="RUN_DIR:METHOD:BACKBONE (repeatable)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from l2emg.data.reader import load_dataset
    from l2emg.runs import RunDir
    from l2emg.utils.io import save_json
    from l2emg.utils.precision import bf16_available, machine

    if not bf16_available():
        print("this machine has no bf16 units (AMX-BF16 / AVX512-BF16): nothing to compare")
        return 1
    dataset = load_dataset(RunDir(args.entry[0].split(":")[0]).data_dir)
    train_words = {w for r in dataset.split("train") for c in r.captions for w in words(c.text)}
    items = build_set(dataset, train_words)
    rows = json.loads(OUT.read_text())["rows"] if OUT.exists() else []
    for entry in args.entry:
        new = [row for precision in ("fp32", "bf16")
               for row in score(entry, items, dataset, train_words, args.repeats, ("original",), precision)]
        keys = {(r["backbone"], r["method"]) for r in new}
        rows = [r for r in rows if (r["backbone"], r["method"]) not in keys] + new
        save_json(OUT, {"rows": rows, "machine": machine(), "date": time.strftime("%Y-%m-%d"),
                        "repeats": args.repeats})
    return 0


if __name__ == "__main__":
    sys.exit(main())
