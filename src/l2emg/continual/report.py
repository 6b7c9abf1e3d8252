"""A method run's report: its Table-2 row (drawn by `l2emg.eval.table2`), continual metrics, heatmaps
and GIFs of one emotion across scenarios, written into the method run folder (`l2emg.runs.MethodRunDir`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from l2emg.config import Config
from l2emg.continual.methods import METHOD_LABELS  # {method name: label}, each class declares its label
from l2emg.runs import MethodRunDir
from l2emg.utils.io import atomic_write_text, save_json


@dataclass
class EmotionSamples:
    """Generations of one emotion across scenarios: one test caption per scenario, raw (T, 263) features."""

    emotion: str
    captions: list[str]
    scenarios: list[str]
    features: list[np.ndarray]


def method_label(name: str) -> str:
    """The name Table 2 prints for a method."""
    return METHOD_LABELS.get(name, name)


def write_report(out: MethodRunDir, results: dict[str, Any], config: Config,
                 samples: list[EmotionSamples]) -> dict[str, Any]:
    """Table-2 row, continual metrics, heatmaps and a GIF grid per emotion across scenarios."""
    from l2emg.eval.continual_metrics import (
        continual_metrics,
        matrices_from_results,
        save_continual_metrics,
        step_averages,
    )
    from l2emg.eval.report import render_heatmaps
    from l2emg.eval.table2 import (
        FR_NOTE,
        PARTS_NOTE,
        POOLED_NOTE,
        has_parts,
        has_pooled,
        pooled_table,
        single_parts_table,
        single_table,
        values_from_metrics,
    )

    if results.get("joint_training"):
        # One evaluation after joint training: the averages of that row (the parts of AWF over the
        # scenarios that have them; None for results written before them); FR does not apply.
        metrics = {"method": results["method"], "scenarios": results["scenarios"], "FR": None,
                   **step_averages(results["steps"][0], results["scenarios"])}
        figures: list[Path] = []
    else:
        perf = matrices_from_results(results, str(out.results_path))
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
    table = single_table(label, metrics)
    samples = render_emotion_samples(samples, out.samples_dir, config)
    lines = [f"# {label} on the {results['split']} stream, order {results['order']}", "", table, "", FR_NOTE, ""]
    if has_parts([metrics]):
        lines += [single_parts_table(label, metrics), "", PARTS_NOTE, ""]
    if has_pooled([metrics]):
        lines += [pooled_table({label: values_from_metrics(metrics)}), "", POOLED_NOTE, ""]
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


def render_emotion_samples(samples: list[EmotionSamples], out_dir: Path, config: Config) -> list[Path]:
    """One GIF grid per emotion: the same emotion expressed across scenarios (the paper's Figure 1/4 idea)."""
    from l2emg.motion.features import recover_joints
    from l2emg.motion.render import render_grid

    paths = []
    for sample in samples:
        joints = [np.asarray(recover_joints(f)) for f in sample.features]
        path = out_dir / f"{sample.emotion}_across_scenarios.{config.preview.format}"
        render_grid(joints, sample.captions, path, fps=config.preview.fps, size=config.preview.size,
                    titles=sample.scenarios)
        paths.append(path)
    return paths
