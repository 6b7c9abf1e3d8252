"""Does emotion decoupling matter? ES-MoE against its ablations and baselines on both data variants.

    python benchmarks/cged.py --run scenario=runs/scen --run shared=runs/shared-base \
        [--variant before=runs/scen-before] [--methods esmoe esmoe_wo_cged ...]

For every finished method run `RUN/methods/<method>-unseen-o1/` of each `--run DATA=RUN` (DATA is the
run's `data.emotion_style`: `scenario` or `shared`), reads its continual metrics and writes one row
to `benchmarks/results/cged.json` (issue 33's schema, more fields welcome):

    {"rows": [{"data", "method", "AR", "AR_ci95", "AWF", "AWF_ci95", "AWF_trained", "AWF_trained_ci95",
               "AWF_heldout", "AWF_heldout_ci95", "FR", "FR_ci95", "cged_input_norm_ratio", ...}], ...}

- AR / AWF / AWF_trained / AWF_heldout and their half-widths are the run's (`eval.continual_metrics`,
  from the results of every evaluation point; FR_ci95 from the cells of each FR term).
- `cged_input_norm_ratio` (variants with CGED; null otherwise): ‖Δ‖ / ‖X‖ over the prompt tokens of
  the run's test captions (each motion's first caption), where X are the frozen prompt embeddings and
  Δ what CGED adds to them (scale · rms(E) · out_proj(h)), with the method's final weights; with
  `esmoe.cged_input: prefix`, the RMS norm of a prefix embedding over that of a prompt token's.
- `routing_accuracy` (methods with a gate): the share of test prompts whose top-weighted expert is
  the expert of their own scenario (Unseen split: expert j belongs to the stream's scenario j).
- `emotion_scale`, `dictionary_drift`: the learned scale of CGED's input and each scenario part's
  relative distance from its K-means initialisation (learnable dictionary).
`--variant NAME=RUN` adds the rows of another run folder (e.g. ES-MoE with the CGED of before
2026-12-07) with "variant": NAME; the ordinary rows have "variant": "default". Machine and date are
recorded. `python benchmarks/cged.py table` prints the committed JSON as a markdown table;
`python benchmarks/cged.py first-scenario RUN [KEY=VALUE ...]` trains ES-MoE on the first
scenario only and prints its emotion accuracy (how the CGED settings were compared:
docs/experiments/cged-paper.md); `python benchmarks/cged.py evaluator-f1 RUN` prints the run's
evaluator's emotion F1 on the real test motions, overall, per part and per scenario.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from l2emg.bench_report import backbone_name
from l2emg.config import read_saved_config
from l2emg.eval.continual_metrics import continual_metrics, matrices_from_results
from l2emg.runs import RunDir
from l2emg.utils.io import load_json, save_json
from l2emg.utils.precision import machine

OUT = Path(__file__).resolve().parent / "results" / "cged.json"
METHODS = ("esmoe", "esmoe_wo_cged", "esmoe_wo_samoe", "esmoe_wo_lemo", "seqlora", "mtl")
COLUMNS = ("AR", "AWF", "AWF_trained", "AWF_heldout", "FR")


def _metrics(method_dir: Path) -> dict[str, Any]:
    """The run's continual metrics recomputed from its results (so FR_ci95 and the AWF parts are there
    for runs written before they existed in metrics.json); MTL's joint run: its metrics.json."""
    results = load_json(method_dir / "results.json")
    if results.get("joint_training"):  # one evaluation, not a stream of them
        return load_json(method_dir / "metrics.json")
    return continual_metrics(matrices_from_results(results, str(method_dir / "results.json")))


@torch.no_grad()
def _probe(run_dir: Path, method: str, batch: int = 128) -> dict[str, Any]:
    """cged_input_norm_ratio, routing_accuracy, emotion_scale and dictionary_drift of a finished run."""
    from l2emg.data.reader import load_dataset
    from l2emg.generator import load_generator, stream_scenarios
    from l2emg.lm.prompts import encode_prompts

    generator = load_generator(run_dir, method)
    trained = generator.method
    out: dict[str, Any] = {"cged_input_norm_ratio": None, "routing_accuracy": None, "emotion_scale": None,
                           "dictionary_drift": None}
    if trained is None or not hasattr(trained, "_front"):
        return out
    run = RunDir(run_dir)
    records = load_dataset(run.data_dir).split("test")
    scenarios = stream_scenarios(run.find_method_run(method))
    lm = generator.lm
    table = lm.model.get_input_embeddings()
    delta_sq = plain_sq = 0.0
    delta_tokens = plain_tokens = 0
    hits = total = 0
    for start in range(0, len(records), batch):
        chunk = records[start:start + batch]
        enc = encode_prompts(lm.tokenizer, lm.vocab, [r.captions[0].text for r in chunk])
        ids, mask = enc["input_ids"], enc["attention_mask"].bool()
        embeds, gate_source, _ = trained._front(ids, mask)
        plain = table.frozen(ids) if hasattr(table, "frozen") else table(ids)
        if getattr(trained, "use_cged", False):
            prefix = getattr(trained, "_prefix", None)  # cged_input: prefix, (B, n, d_model)
            delta = (embeds - plain).float()[mask] if prefix is None else prefix.float().flatten(0, 1)
            delta_sq += float(delta.pow(2).sum())
            delta_tokens += delta.shape[0]
            plain_sq += float(plain.float()[mask].pow(2).sum())
            plain_tokens += int(mask.sum())
        if getattr(trained, "use_samoe", False):
            top = trained.gate(trained._gate_in(gate_source)).argmax(-1)
            own = torch.tensor([scenarios.index(r.scenario) if r.scenario in scenarios else -1 for r in chunk])
            hits += int((top.cpu() == own).sum())
            total += len(chunk)
    if getattr(trained, "use_cged", False):
        out["cged_input_norm_ratio"] = float(np.sqrt((delta_sq / max(delta_tokens, 1))
                                                     / max(plain_sq / max(plain_tokens, 1), 1e-30)))
        out["emotion_scale"] = float(trained.emotion_scale.detach())
        out["dictionary_drift"] = [round(d, 4) for d in trained.cged.dictionary_drift()]
    if total:
        out["routing_accuracy"] = hits / total
    return out


def collect(runs: list[tuple[str, Path]], variants: list[tuple[str, Path]], methods: list[str]) -> list[dict]:
    rows = []
    for label, run_dir, variant in [(d, p, "default") for d, p in runs] + [(None, p, v) for v, p in variants]:
        run = RunDir(run_dir)
        config = read_saved_config(run.config_path)
        backbone = backbone_name(run, config)
        data = config.data.emotion_style if label is None else label
        if data != config.data.emotion_style:
            raise SystemExit(f"{run_dir}: its data.emotion_style is {config.data.emotion_style!r}, not {data!r}")
        for method in methods:
            method_dir = run.path / "methods" / f"{method}-unseen-o1"
            if not (method_dir / "metrics.json").exists():
                continue
            metrics = _metrics(method_dir)
            row: dict[str, Any] = {"data": data, "method": method, "variant": variant,
                                   "profile": config.profile, "backbone": backbone}
            for column in COLUMNS:
                row[column] = metrics.get(column)
                row[f"{column}_ci95"] = metrics.get(f"{column}_ci95")
            row.update(_probe(Path(run_dir), method_dir.name))  # the full name: a folder may hold other orders
            row["run"] = str(method_dir)
            progress = method_dir / "progress.json"
            row["cpu"] = (load_json(progress).get("environment") or {}).get("cpu") if progress.exists() else None
            method_config = read_saved_config(method_dir / "config.yaml")
            row["esmoe"] = method_config.esmoe.model_dump(mode="json") if method.startswith("esmoe") else None
            rows.append(row)
            print(f"{data:8s} {variant:8s} {method:15s} " + "  ".join(
                f"{c} {row[c]:.3f}" if isinstance(row[c], float) else f"{c} -" for c in COLUMNS)
                + f"  ratio {row['cged_input_norm_ratio']}  routing {row['routing_accuracy']}", flush=True)
    return rows


def table(path: Path = OUT) -> str:
    """The committed rows as markdown: mean ± 95 % half-width."""
    data = json.loads(path.read_text())

    def cell(row, column):
        value, half = row.get(column), row.get(f"{column}_ci95")
        if value is None:
            return "–"
        return f"{value:.3f}" + (f" ± {half:.3f}" if half is not None else "")

    lines = ["| data | backbone | method | variant | AR ↑ | AWF ↑ | AWF trained ↑ | AWF held-out ↑ | FR ↓ | CGED input / prompt "
             "| routing |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in data["rows"]:
        ratio = row.get("cged_input_norm_ratio")
        routing = row.get("routing_accuracy")
        lines.append(f"| {row['data']} | {row.get('backbone', 'llama-4m')} | {row['method']} | {row.get('variant', 'default')} | "
                     + " | ".join(cell(row, c) for c in COLUMNS)
                     + f" | {'–' if ratio is None else f'{ratio:.3f}'} | {'–' if routing is None else f'{routing:.2f}'} |")
    seeds = seeds_table(data["rows"])
    return "\n".join(lines) + ("\n\n" + seeds if seeds else "")


SEED_VARIANT = re.compile(r"^(default|seed(\d+))$")  # "default" is train.seed 0


def seeds_table(rows: list[dict]) -> str:
    """Per method with runs on two or more training seeds (variants default = seed 0, seed1, seed2, …;
    data `scenario`): the mean over seeds ± the 95 % t half-width over them, and the difference from
    ES-MoE on the same seed (paired), mean ± t half-width."""
    from l2emg.eval.metrics import mean_ci as summary

    by: dict[str, dict[int, dict]] = {}
    for row in rows:
        match = SEED_VARIANT.match(row.get("variant", "default"))
        if row["data"] == "scenario" and match:
            by.setdefault(row["method"], {})[int(match.group(2) or 0)] = row
    multi = {m: seeds for m, seeds in by.items() if len(seeds) >= 2}
    if "esmoe" not in multi:
        return ""

    def mean_ci(values: list[float], signed: bool = False) -> str:
        s = summary(values)  # the t half-width over runs, as Table 2's over orders
        return f"{s['mean']:{'+' if signed else ''}.3f} ± {s['ci95']:.3f}"

    columns = ("AR", "AWF", "AWF_trained")
    lines = ["Over training seeds (train.seed; mean ± 95 % t half-width over the seeds), and each method minus "
             "ES-MoE on the same seed:", "",
             "| method | seeds | " + " | ".join(columns) + " | " + " | ".join(f"Δ{c} vs ES-MoE" for c in columns) + " |",
             "|---|---|" + "---|" * (2 * len(columns))]
    full = multi["esmoe"]
    for method, seeds in multi.items():
        cells = [mean_ci([seeds[k][c] for k in sorted(seeds)]) for c in columns]
        paired = sorted(set(seeds) & set(full))
        diffs = ["–" if method == "esmoe" or len(paired) < 2 else
                 mean_ci([seeds[k][c] - full[k][c] for k in paired], signed=True) for c in columns]
        lines.append(f"| {method} | {', '.join(map(str, sorted(seeds)))} | " + " | ".join(cells) + " | "
                     + " | ".join(diffs) + " |")
    return "\n".join(lines)


def first_scenario(run_dir: str, overrides: list[str]) -> dict[str, Any]:
    """Train ES-MoE on the stream's first scenario only (the trainer's own `train_step`, nothing saved)
    with the default profile and `overrides`; return the last updates' emotion accuracy and losses."""
    from l2emg.config import load_config
    from l2emg.continual.trainer import StreamTrainer

    torch.set_num_threads(1)
    trainer = StreamTrainer(RunDir(run_dir), load_config("default", overrides), method="esmoe", progress=False)
    trainer._load()
    name, ids = trainer.steps()[0]
    log = trainer.train_step(0, name, ids)
    return {"overrides": overrides, "scenario": name, "updates": log["updates"],
            "emo_acc": log.get("last_emo_acc"), "emo_loss": log.get("last_emo_loss"), "lm_loss": log.get("last_lm_loss")}


def evaluator_f1(run_dir: str) -> dict[str, float]:
    """The run's evaluator on the REAL test motions: emotion weighted F1 overall, on trained and
    held-out (scenario, emotion) pairs, and per scenario (and part)."""
    from collections import defaultdict

    from l2emg.data.reader import load_dataset
    from l2emg.eval.evaluate import holdout_pairs_of
    from l2emg.eval.evaluator import Evaluator
    from l2emg.eval.metrics import weighted_f1

    run = RunDir(run_dir)
    dataset = load_dataset(run.data_dir)
    held = set(holdout_pairs_of(dataset))
    records = dataset.split("test")
    predicted = Evaluator.from_pretrained(run.evaluator_dir).predict_emotion([dataset.features(r.motion_id) for r in records])
    groups: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    for record, guess in zip(records, predicted):
        part = "heldout" if (record.scenario, record.emotion) in held else "trained"
        for key in ("all", part, record.scenario, f"{record.scenario}/{part}"):
            groups[key][0].append(record.emotion)
            groups[key][1].append(guess)
    return {key: round(float(weighted_f1(np.array(t), np.array(g))), 3) for key, (t, g) in sorted(groups.items())}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["table"]:
        print(table())
        return 0
    if argv[:1] == ["evaluator-f1"]:  # evaluator-f1 RUN
        print(json.dumps(evaluator_f1(argv[1]), indent=1))
        return 0
    if argv[:1] == ["first-scenario"]:  # first-scenario RUN [KEY=VALUE ...]
        print(json.dumps(first_scenario(argv[1], argv[2:])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", default=[], metavar="DATA=RUN", help="scenario=runs/scen, shared=…")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=RUN", help="extra rows (e.g. before=…)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--note", action="append", default=[], help="a line printed under the table in docs/results.md")
    parser.add_argument("--keep", action="store_true",
                        help="keep the rows of --out that this call does not collect (same data, method and variant: "
                             "replaced), e.g. rows whose run folders are gone; and its notes unless --note is given")
    args = parser.parse_args(argv)
    pairs = [tuple(item.split("=", 1)) for item in args.run]
    variants = [tuple(item.split("=", 1)) for item in args.variant]
    rows = collect([(d, Path(p)) for d, p in pairs], [(v, Path(p)) for v, p in variants], args.methods)
    notes = args.note
    if args.keep and args.out.exists():
        old = load_json(args.out)
        new = {(r["data"], r["method"], r.get("variant", "default")) for r in rows}
        rows = [r for r in old["rows"] if (r["data"], r["method"], r.get("variant", "default")) not in new] + rows
        notes = notes or old.get("notes", [])
    save_json(args.out, {
        "rows": rows,
        "machine": machine(),
        "date": dt.date.today().isoformat(),
        "protocol": "Unseen order 1 (each row's profile and backbone in its fields; rows without them: the default "
                    "profile's 4 M LLaMA), seed 0 unless the variant names one; CIs: 1.96·σ/√R over the evaluator's "
                    "repeats (R = evaluator.eval_repeats) of each cell, averaged as AR's",
        "notes": notes,
    })
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
