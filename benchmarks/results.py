"""Write docs/results.md from the committed JSON under benchmarks/results/ (`make results`).

    python benchmarks/results.py            # (re)write docs/results.md
    python benchmarks/results.py --check    # exit 1 if docs/results.md differs from what the JSON gives

Every number of docs/results.md comes from a JSON file a benchmark script wrote; each section names
its file and the command that measures it again. Running this twice on a clean checkout changes
nothing (no dates or timings of its own).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOC = HERE.parent / "docs" / "results.md"


def _script(name: str):
    """A sibling benchmark script as a module (its table functions)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _printed(fn) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        fn()
    return out.getvalue().rstrip()


def speed_section() -> list[str]:
    path = RESULTS / "stream_profile.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    lines = ["## Speed: where a method run's core-time goes", "",
             "One default-profile method run (Unseen, order 1) timed by phase, in core-seconds (process CPU "
             "time, one torch thread per run, two runs side by side on the two cores). \"before\" is the code "
             "at the named commit, \"after\" the current code, measured in the same session on the same "
             "machine (`benchmarks/stream_profile.py`, `benchmarks/results/stream_profile.json`).", ""]
    profile = _script("stream_profile")
    lines.append(profile.table(data))
    lines += [""] + [f"- {n}" for n in data.get("notes", [])]
    lines += ["", _table_estimate(data)]
    smol = RESULTS / "stream_profile_smollm2.json"
    if smol.exists():
        data = json.loads(smol.read_text())
        lines += ["", "The SmolLM2 profile, shortened (`benchmarks/results/stream_profile_smollm2.json`):", "",
                  profile.table(data), ""] + [f"- {n}" for n in data.get("notes", [])]
    return lines + [""]


def _table_estimate(profile: dict) -> str:
    """The whole default Table 2 (11 methods × 2 splits × 3 orders) in core-hours, as `l2emg bench
    --dry-run` estimates it, from the before and the after costs."""
    from l2emg.bench import estimate_costs, plan
    from l2emg.continual.methods import METHODS

    ratios = json.loads((RESULTS / "methods_cost.json").read_text()) if (RESULTS / "methods_cost.json").exists() else None
    planned = plan(list(METHODS), ["unseen", "mixed"], [1, 2, 3])
    hours = {label: sum(e.core_seconds for e in estimate_costs(planned, profile, ratios, label=label)) / 3600
             for label in ("before", "after")}
    return (f"The whole default Table 2 ({len(planned)} method runs: {len(METHODS)} methods × Unseen and Mixed × "
            f"orders 1–3, MTL once per split), estimated as `l2emg bench --dry-run` does from these costs "
            f"(other methods: SeqLoRA's run with its training scaled by `methods_cost.json`): "
            f"**{hours['before']:.1f} core-hours before, {hours['after']:.1f} after**.")


def table2_section() -> list[str]:
    return table2_lines(RESULTS / "table2.json", "Table 2")


def table2_smollm2_section() -> list[str]:
    return table2_lines(RESULTS / "table2_smollm2.json", "Table 2 on SmolLM2-135M-Instruct (the `smollm2` profile)",
                        intro="The same data, tokenizer, evaluator and protocol as Table 2 above, with the pretrained "
                              "LLM as the backbone; compare each row with the same method's row above (the 4 M LLaMA).")


def table2_lines(path: Path, heading: str, intro: str = "") -> list[str]:
    """Table 2 from a JSON written by `l2emg bench --export`, drawn by the project's one Table-2 writer
    (`l2emg.eval.table2`), with the paper's values in parentheses."""
    if not path.exists():
        return []
    from l2emg.continual.methods import METHOD_LABELS, paper_table2
    from l2emg.eval import table2

    data = json.loads(path.read_text())
    paper = paper_table2()
    lines = [f"## {heading}", ""] + ([intro, ""] if intro else []) + [
             f"`benchmarks/results/{path.name}`, written by `l2emg bench --export` on {data['date'][:10]} (profile "
             f"`{data['profile']}`, backbone `{data['backbone']}`, exported on {data['machine']['cpu']}; where each run "
             "ran: the \"Time\" lines). Each cell: the mean over "
             "the orders (± 95 % CI over them where there are several orders), the paper's value (LLaMA-2-7B) in "
             "parentheses. " + table2.FR_NOTE, ""]
    if data.get("protocol"):
        from l2emg.bench_report import archived_line, protocol_line, stages_line

        lines += [protocol_line(data["protocol"]) + archived_line(data.get("archived") or [])
                  + (stages_line(data["stages"]) if data.get("stages") else "")
                  + " The protocol of before and of now on the same trained models: below, \"Evaluation protocol\""
                  + (", and the same runs on two stage builds: \"Stage builds\"" if (RESULTS / "stage_builds.json").exists()
                     else "") + ".", ""]
    else:
        lines += ["Evaluation: the protocol before 2026-12-07 (generations drawn once from each test motion's first "
                  "caption and re-scored; the CIs leave out the generator's sampling noise).", ""]
    rows = [r for r in data["rows"] if "orders" in r]
    from l2emg.continual.methods import METHODS

    methods, splits = {r["method"] for r in rows}, {r["split"] for r in rows}
    orders = {o for r in rows for o in r["orders"]}
    if len(methods) < len(METHODS) or len(splits) < 2 or len(orders) < 3:
        lines += [f"**A partial table**: {len(methods)} of {len(METHODS)} methods, {len(splits)} of 2 splits, "
                  f"{len(orders)} of 3 orders (the whole table is `l2emg bench`; its cost: `l2emg bench --dry-run`).", ""]
    for split in dict.fromkeys(r["split"] for r in rows):
        averaged = [r for r in rows if r["split"] == split]
        orders = sorted({o for r in averaged for o in r["orders"]})
        # a method run on one order: its run's own row, ± the half-width over its evaluation repetitions
        shown = [next((s for s in data["rows"] if s["split"] == split and s["method"] == r["method"]
                       and s.get("order") == r["orders"][0]), r) if len(r["orders"]) == 1 else r for r in averaged]
        singles = {r["method"] for r in averaged if len(r["orders"]) == 1}
        mixed = bool(singles) and len(singles) < len(averaged)
        labels = {r["method"]: METHOD_LABELS.get(r["method"], r["method"])
                  + (table2.ONE_ORDER_MARK if mixed and r["method"] in singles else "") for r in averaged}
        note = " (one order: ± the 95 % half-width over the evaluation repetitions)" if singles and not mixed else ""
        lines += [f"{split.capitalize()} split, order(s) {', '.join(map(str, orders))}, {len(shown)} methods{note}:", "",
                  table2.header(table2.COLUMNS + tuple(table2.TRANSFER_COLUMNS))]
        for r in shown:
            lines.append(table2.markdown_row(labels[r["method"]], r, table2.COLUMNS + tuple(table2.TRANSFER_COLUMNS),
                                             paper=paper.get(split, {}).get(r["method"])))
        if mixed:
            lines += ["", table2.ONE_ORDER_NOTE]
        if table2.has_parts(shown):  # AWF_trained / AWF_heldout: rows written before them lack the fields
            lines += ["", table2.PARTS_NOTE, "", table2.parts_table({r["method"]: r for r in shown}, labels=labels)]
        if table2.has_pooled(shown):
            lines += ["", table2.POOLED_NOTE, "", table2.pooled_table({r["method"]: r for r in shown}, labels=labels)]
        if data.get("time", {}).get(split):
            lines += ["", table2.time_line(data["time"][split])]
        taus = data.get("kendall_tau", {}).get(split, {})
        if taus:
            lines += ["", "Kendall τ against the paper's ranking: " + ", ".join(
                f"{c} {v['tau']:+.2f} ({len(v['methods'])} methods)" for c, v in taus.items() if v.get("tau") is not None)]
        lines.append("")
    figures = [name for name in data.get("figures", []) if name.endswith(".png")
               and (DOC.parent / "figures" / "table2" / name).exists()] if path.name == "table2.json" else []
    if figures:  # copied from RUN/bench/ (the bench writes them there)
        lines += ["Figures 3 (FID performance matrices of ES-MoE and the best other continual method) and 4 (test "
                  "captions × methods, same seed), from the same bench run:", ""]
        lines += [f"![{name[:-4]}](figures/table2/{name})" for name in figures]
        lines.append("")
    return lines


def protocol_section() -> list[str]:
    """The evaluation protocol of before (`fixed`) and of now (`redrawn`) on the same trained models
    (benchmarks/protocol.py, protocol.json)."""
    path = RESULTS / "protocol.json"
    if not path.exists():
        return []
    from l2emg.continual.methods import METHOD_LABELS

    data = json.loads(path.read_text())
    lines = ["## Evaluation protocol: before and now, same models", "",
             f"`benchmarks/protocol.py` ({data['date']}, {data['machine']['cpu']}): the final checkpoint of each "
             "run below (default profile, Unseen order 1) evaluated at its last step with both protocols, same "
             "seeds. fixed (before 2026-12-07): 2 generations drawn once from each test motion's first caption, "
             "re-scored in 5 repetitions. redrawn (now): 5 generation sets, each motion from a caption drawn at "
             "random; MultiModality from 10 generations of 10 motions per scenario. Mean ± 95 % half-width "
             "(averages over the 8 scenarios of the cells' own). The fixed rows equal what the runs recorded when "
             "they were trained (the same code path). eval s: wall seconds of the evaluation point, 1 thread, on a "
             "machine shared with other jobs (not a timing benchmark).", "",
             "| Method | protocol | AF↓ | AF pooled↓ | AR↑ | AD↑ | AMM↑ | AWF↑ | eval s |", "|---|---|---|---|---|---|---|---|---|"]

    from l2emg.eval.table2 import cell

    def pm(row, key, digits):
        return cell(row.get(key), row.get(f"{key}_ci95"), digits)

    for r in data["rows"]:
        lines.append(f"| {METHOD_LABELS.get(r['method'], r['method'])} | {r['protocol']} | {pm(r, 'AF', 3)} | "
                     f"{pm(r, 'AF_pooled', 3)} | {pm(r, 'AR', 3)} | {pm(r, 'AD', 2)} | {pm(r, 'AMM', 2)} | "
                     f"{pm(r, 'AWF', 3)} | {r['eval_seconds']:.0f} |")
    return lines + [""]


def eval_cells_section() -> list[str]:
    """`train.eval_cells` all (before) against needed (now) on two runs that trained identically
    (benchmarks/eval_cells.py, eval_cells.json)."""
    path = RESULTS / "eval_cells.json"
    if not path.exists():
        return []
    from l2emg.eval.table2 import cell

    data = json.loads(path.read_text())
    m = data["machine"]
    lines = ["## Evaluation cells: every scenario after every step, or the cells the metrics read", "",
             f"`benchmarks/eval_cells.py` ({data['date']}, {m['cpu']}, bf16 units: "
             f"{', '.join(m.get('flags_bf16') or []) or 'none'}; load {', '.join(f'{x:.1f}' for x in data['load'])} "
             "when it read the runs): the same method run trained twice, with `train.eval_cells` all (every scenario "
             "after every step: the protocol before 2026-12-07) and needed (after step i the scenarios 1..i+1, "
             "after the last step all of them; MultiModality after the last step only). CPU seconds of the main "
             "process from each run's results.json; one torch thread per run, both runs side by side. Runs: "
             + ", ".join(f"`{r['run']}`" for r in data["rows"]) + ".", "",
             "| eval_cells | cells scored | MultiModality cells | training CPU-s | evaluation CPU-s | run CPU-s | "
             "AF↓ | AR↑ | AD↑ | AMM↑ | AWF↑ | FR↓ |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        lines.append(f"| {r['eval_cells']} | {r['cells_scored']} | {r['multimodality_cells']} | {r['train_cpu_s']:.0f} | "
                     f"{r['eval_cpu_s']:.0f} | {r['core_seconds']:.0f} | "
                     + " | ".join(cell(r[c], r.get(f"{c}_ci95"), 2 if c in ("AD", "AMM", "FR") else 3)
                                  for c in ("AF", "AR", "AD", "AMM", "AWF", "FR")) + " |")
    same = [c for c, v in data["identical"].items() if v]
    lines += ["", f"needed / all: run {data['ratio_core_seconds']:.2f}×, evaluation {data['ratio_eval_cpu_s']:.2f}×. "
              f"Identical in both runs: {', '.join(same) or 'none'}" + (
                  f"; differing: {', '.join(c for c, v in data['identical'].items() if not v)}" if len(same) < len(
                      data["identical"]) else "") + ".", ""]
    return lines + [f"- {n}" for n in data.get("notes", [])] + ([""] if data.get("notes") else [])


def stage_builds_section() -> list[str]:
    """The same method runs on two builds of the shared stages (benchmarks/stage_builds.py)."""
    path = RESULTS / "stage_builds.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    first = data["runs"][0]
    within = sum(v["within"] for r in data["runs"] for v in r["columns"].values())
    total = sum(len(r["columns"]) for r in data["runs"])
    return ["## Stage builds: the same runs on two builds of the shared stages", "",
            f"`benchmarks/stage_builds.py` ({data['date']}): each run's archived records (build A, "
            f"{first['a']['cpu'] or 'the Xeon of the session before: its runs did not record their CPU'}; now in "
            "`benchmarks/results/table2_runs_other_build/`) against the same run trained again on this session's "
            f"rebuild of the tokenizer, evaluator and backbone from the same seeds (build B, {first['b']['cpu']}), "
            "same config, seed and one torch thread: the difference is the stage build's and the CPU's together. "
            f"{within} of {total} differences lie within the two runs' combined 95 % half-widths: the CIs, which "
            "measure generation and scoring noise, do not cover a rebuild, so rows compare only within one build "
            "(the bench archive keeps one and restores it, docs/guide.md).", "",
            _script("stage_builds").table(path), ""]


def baseline_settings_section() -> list[str]:
    path = RESULTS / "baseline_settings.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return ["## Baseline settings where the official value does not transfer", "",
            f"`benchmarks/baseline_settings.py` ({data['date']}, {data['machine']['cpu']}): two-scenario runs, one "
            f"setting changed each; the rule, the same for every method: {data['rule']}. ± 95 % half-widths "
            "over the evaluation repeats.", "", _script("baseline_settings").table(path), ""]


def olora_section() -> list[str]:
    path = RESULTS / "olora_forgetting.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return ["## O-LoRA's subspaces: why it forgets at the budget's rank", "",
            f"`benchmarks/olora_forgetting.py` ({data['date']}, {data['machine']['cpu']}, one thread per run): O-LoRA "
            "over Unseen order 1 with its LoRA on `lm_head` (input: the hidden size, 256) at the budget's rank 64 and at "
            "32, everything else equal. Per expert 2…8, the share of the new LoRA's A inside the subspace the older "
            "LoRAs' A's span (mean over the modules of the group; in brackets what a random A would give). O-LoRA "
            "sums every LoRA at inference and relies on these subspaces being orthogonal: at rank 64 they cannot be "
            "after four scenarios, and from the 5th LoRA on `lm_head` reads only directions older LoRAs read. The "
            "two-scenario rule (the column \"rule\") cannot see this; the default profile sets `olora.rank_pattern: "
            "{lm_head: 32}`, the rank at which all eight scenarios fit (configs/default.yaml, olora.py).", "",
            _script("olora_forgetting").table(path), ""]


def backbones_section() -> list[str]:
    if not (RESULTS / "backbones.json").exists():
        return []
    return ["## Backbones: the 4 M LLaMA and SmolLM2-135M-Instruct", "",
            "Method runs, the paraphrase benchmark, bf16/fp32 agreement and step costs "
            "(`benchmarks/backbones.py table`; `backbones.json`, `paraphrase.json`, `precision_agreement.json`, "
            "`backbone_speed*.json`).", "", _printed(_script("backbones").table), ""]


def cged_section() -> list[str]:
    lines: list[str] = []
    for name, title in (("cged.json", "Emotion decoupling: ES-MoE, its ablations and baselines on both data variants"),
                        ("cged_prefix.json", "Emotion decoupling on the Table-2 stage build: h as a prefix")):
        path = RESULTS / name
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        machine = data.get("machine", {})
        lines += [f"## {title}", "",
                  f"Unseen order 1, the default profile unless the backbone column says otherwise, {data.get('date', '')}, {machine.get('cpu', '')} "
                  f"(`benchmarks/cged.py`, `benchmarks/results/{name}`). data `scenario`: each emotion expressed "
                  "in each scenario's own way (the default); `shared`: one signature in every scenario. AWF trained / "
                  "held-out: emotion weighted F1 on the test motions of trained / held-out (scenario, emotion) pairs. "
                  "CGED input / prompt: ‖what CGED adds‖ / ‖prompt embeddings‖ on the test prompts (a prefix: RMS "
                  "norm of a prefix embedding over a prompt token's); routing: share of test prompts whose top "
                  "expert is their scenario's.", "",
                  _script("cged").table(path), ""]
        lines += [f"- {n}" for n in data.get("notes", [])] + [""]
    return lines


def render() -> str:
    lines = ["<!-- generated by `make results` (benchmarks/results.py) from benchmarks/results/*.json — do not edit -->",
             "", "# Results", ""]
    for section in (table2_section, table2_smollm2_section, protocol_section, stage_builds_section, eval_cells_section,
                    baseline_settings_section, olora_section, cged_section, speed_section, backbones_section):
        lines += section()
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare docs/results.md with the JSON")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        same = DOC.exists() and DOC.read_text() == text
        print(f"{DOC}: {'up to date' if same else 'differs from benchmarks/results/*.json (run make results)'}")
        return 0 if same else 1
    DOC.parent.mkdir(parents=True, exist_ok=True)
    tmp = DOC.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(DOC)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
