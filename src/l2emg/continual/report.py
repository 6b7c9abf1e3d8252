"""A method run's report: its Table-2 row, continual metrics, heatmaps and GIFs of one emotion
across scenarios, written into the method run folder (`l2emg.runs.MethodRunDir`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from l2emg.utils.io import atomic_write_text, save_json
from l2emg.utils.seeding import step_seed

if TYPE_CHECKING:
    from l2emg.continual.trainer import StreamTrainer

METHOD_LABELS = {"mtl": "MTL", "seqlora": "SeqLoRA", "esmoe": "ES-MoE", "esmoe_wo_cged": "w/o CGED",
                 "esmoe_wo_samoe": "w/o SAMoE", "esmoe_wo_lemo": "w/o L_emo",
                 "lwf": "LwF-LoRA", "olora": "O-LoRA", "sapt": "SAPT",
                 "epi": "EPI", "progprompt": "ProgPrompt"}


def method_label(name: str) -> str:
    """The name Table 2 prints for a method."""
    return METHOD_LABELS.get(name, name)


def write_report(trainer: StreamTrainer, results: dict[str, Any]) -> dict[str, Any]:
    """Table-2 row, continual metrics, heatmaps and a GIF grid of one emotion across scenarios."""
    from l2emg.eval.continual_metrics import (
        AVERAGE_METRICS,
        average_ci95,
        continual_metrics,
        matrices_from_results,
        save_continual_metrics,
    )
    from l2emg.eval.report import render_heatmaps, table2_header, table2_row

    out = trainer.method_run
    if results.get("joint_training"):
        # One evaluation after joint training: the averages of that row; FR does not apply.
        row = results["steps"][0]["results"]
        metrics = {"method": results["method"], "scenarios": results["scenarios"], "FR": None}
        for key, name in AVERAGE_METRICS.items():
            cells = [row[s][key] for s in results["scenarios"] if row.get(s, {}).get(key)]  # no test motions: no cell
            metrics[name] = float(np.mean([c["mean"] for c in cells])) if cells else None
            metrics[f"{name}_ci95"] = average_ci95([c["ci95"] for c in cells]) if cells else None
        figures: list[Path] = []
    else:
        perf = matrices_from_results(results, str(trainer.method_run.results_path))
        metrics = continual_metrics(perf)
        save_continual_metrics(out.continual_metrics_path, perf, metrics)
        figures = render_heatmaps(perf, out.figures_dir)
    transfer = [s.get("transfer") for s in results["steps"][-1:]]
    metrics["emotion_transfer"] = transfer[0] if transfer else None
    extras = method_extras(results)
    if extras:
        metrics["method_extras"] = extras
    save_json(out.metrics_path, metrics)
    label = method_label(results["method"])
    table = table2_header() + "\n" + table2_row(label, metrics)
    samples = render_emotion_samples(trainer, out.samples_dir)
    lines = [f"# {label} on the {results['split']} stream, order {results['order']}", "", table, "",
             "FR in percentage points of top-1 R-Precision, as the paper prints it.", ""]
    lines += extras_lines(extras, results["scenarios"])
    lines += [f"![{p.stem}]({p.relative_to(out.path)})" for p in figures + samples]
    atomic_write_text(out.report_path, "\n".join(lines) + "\n")
    return metrics


def method_extras(results: dict[str, Any]) -> dict[str, Any]:
    """A method's own per-scenario measurements (`ContinualMethod.evaluation_extras`, stored by the
    trainer as steps[i]["extras"][scenario][key]) -> {key: {"matrix": rows = after step i, columns =
    scenarios (None: not measured), "final": {scenario: value after the last step}, "final_mean"}}."""
    scenarios = results["scenarios"]
    steps = results.get("steps", [])
    keys = sorted({k for step in steps for cells in (step.get("extras") or {}).values() for k in cells})
    out: dict[str, Any] = {}
    for key in keys:
        matrix = [[(step.get("extras") or {}).get(s, {}).get(key) for s in scenarios] for step in steps]
        final = {s: v for s, v in zip(scenarios, matrix[-1]) if v is not None}
        out[key] = {"matrix": matrix, "final": final,
                    "final_mean": float(np.mean(list(final.values()))) if final else None}
    return out


def extras_lines(extras: dict[str, Any], scenarios: list[str]) -> list[str]:
    """Markdown tables of `method_extras` (one row per training step)."""
    lines: list[str] = []
    for key, entry in extras.items():
        mean = "n/a" if entry["final_mean"] is None else f"{entry['final_mean']:.3f}"
        lines += [f"{key.replace('_', ' ').capitalize()} after each step (rows) on each scenario's test prompts "
                  f"(columns); mean after the last step: {mean}.", "",
                  "| after step | " + " | ".join(scenarios) + " |", "|---" * (len(scenarios) + 1) + "|"]
        for i, row in enumerate(entry["matrix"]):
            cells = ["" if v is None else f"{v:.3f}" for v in row]
            lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def render_emotion_samples(trainer: StreamTrainer, out_dir: Path, emotions: tuple[str, ...] = ("sad", "happy"))\
        -> list[Path]:
    """For each emotion, one test caption per scenario with that emotion -> a GIF grid (the paper's
    Figure 1/4 idea: the same emotion expressed across scenarios)."""
    from l2emg.motion.features import recover_joints
    from l2emg.motion.render import render_grid

    count = trainer.config.train.report_samples
    if count == 0:
        return []
    paths = []
    for emotion in emotions:
        picks = []
        for subset in trainer.stream.subsets:
            for motion_id in subset.test:
                record = trainer.dataset.by_id(motion_id)
                if record.emotion == emotion and (subset.primary_scenario in (None, record.scenario)):
                    picks.append(record)
                    break
        picks = picks[:count]
        if not picks:
            continue
        captions = [r.captions[0].text for r in picks]
        features = trainer.generate_features(captions, seed=step_seed(trainer.config.train.seed, 999))
        joints = [np.asarray(recover_joints(f)) for f in features]
        path = out_dir / f"{emotion}_across_scenarios.{trainer.config.preview.format}"
        render_grid(joints, captions, path, fps=trainer.config.preview.fps, size=trainer.config.preview.size,
                    titles=[r.scenario for r in picks])
        paths.append(path)
    return paths
