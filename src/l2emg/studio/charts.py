"""The studio's "Why this motion" panel: what the method decided from the prompt, as HTML bar charts.

    explanation_html(generator.explain(caption), method_label="ES-MoE")

- a gate (ES-MoE, its ablations with a gate, SAPT): one bar per expert, named by the scenario that
  expert learned, its length the weight generation routes by (top-k renormalised: zero for the
  experts left out), with a tick at the softmax over all experts before top-k;
- an emotion block (ES-MoE's CGED classifier): one bar per emotion label, the predicted one marked;
- EPI's routing: the scenario whose prefix answered, and the prompt's distance to each scenario;
- anything else (SeqLoRA, MTL, the plain backbone): one sentence saying that nothing is decided per
  prompt.

Plain HTML and CSS (no script, no plotting library): the Gradio HTML component shows it as is, and
each bar is an element a test can count (`.gate-bar`, `.emotion-bar`, `.route-bar`).
"""

from __future__ import annotations

import html
import math
from typing import Any, Sequence

_STYLE = """<style>
.l2emg-why { font-size: 14px; line-height: 1.35; }
.l2emg-why h4 { margin: 10px 0 4px; font-size: 14px; }
.l2emg-why .note { opacity: 0.75; font-size: 12.5px; margin: 2px 0 6px; }
.l2emg-why .row { display: grid; grid-template-columns: minmax(90px, 150px) 1fr 56px; gap: 8px; align-items: center; margin: 3px 0; }
.l2emg-why .name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.l2emg-why .track { position: relative; height: 16px; border-radius: 4px; background: rgba(127,127,127,0.15); }
.l2emg-why .fill { position: absolute; left: 0; top: 0; bottom: 0; border-radius: 4px; background: #3b7dd8; min-width: 1px; }
.l2emg-why .chosen .fill { background: #e07b16; }
.l2emg-why .chosen .name { font-weight: 600; }
.l2emg-why .tick { position: absolute; top: -2px; bottom: -2px; width: 2px; background: #222; opacity: 0.55; }
.l2emg-why .value { text-align: right; font-variant-numeric: tabular-nums; }
</style>"""


def _fraction(value: float) -> float:
    return 0.0 if not math.isfinite(value) else min(max(value, 0.0), 1.0)


def _bar(kind: str, name: str, value: float, shown: str, chosen: bool = False, tick: float | None = None,
         data: dict[str, str] | None = None) -> str:
    attributes = "".join(f' data-{k}="{html.escape(v)}"' for k, v in (data or {}).items())
    tick_html = (f'<span class="tick" style="left:{100 * _fraction(tick):.1f}%" title="before top-k: {tick:.3f}"></span>'
                 if tick is not None else "")
    return (f'<div class="row {kind}-bar{" chosen" if chosen else ""}"{attributes}>'
            f'<span class="name" title="{html.escape(name)}">{html.escape(name)}</span>'
            f'<span class="track"><span class="fill" style="width:{100 * _fraction(value):.1f}%"></span>{tick_html}</span>'
            f'<span class="value">{html.escape(shown)}</span></div>')


def expert_names(count: int, scenarios: Sequence[str]) -> list[str]:
    """Expert i is named by the scenario learned at stream step i (`expert i` where unknown)."""
    return [scenarios[i] if i < len(scenarios) else f"expert {i}" for i in range(count)]


def gate_chart(weights: Sequence[float], scores: Sequence[float] | None, scenarios: Sequence[str]) -> str:
    """One bar per expert: the routing weight (what generation uses), the pre-top-k softmax as a tick."""
    names = expert_names(len(weights), scenarios)
    top = max(range(len(weights)), key=lambda i: weights[i]) if weights else -1
    rows = [_bar("gate", name, w, f"{w:.3f}", chosen=i == top,
                 tick=None if scores is None or i >= len(scores) else float(scores[i]),
                 data={"expert": name, "weight": f"{w:.6f}"})
            for i, (name, w) in enumerate(zip(names, (float(x) for x in weights)))]
    used = sum(1 for w in weights if w > 0)
    return (f'<h4>Gate over the {len(weights)} scenario expert{"s" if len(weights) != 1 else ""}</h4>'
            f'<div class="note">{used} expert{"s" if used != 1 else ""} answered; bar = weight of its LoRA expert '
            'in this generation, tick = the gate\'s softmax before the top-k cut.</div>'
            f'<div class="gate-chart">{"".join(rows)}</div>')


def emotion_chart(probabilities: dict[str, float]) -> str:
    """One bar per emotion label: the emotion block's probabilities, the predicted label marked."""
    if not probabilities:
        return ""
    best = max(probabilities, key=lambda k: probabilities[k])
    rows = [_bar("emotion", label, p, f"{p:.3f}", chosen=label == best, data={"emotion": label})
            for label, p in probabilities.items()]
    return (f'<h4>Emotion block: <span class="predicted-emotion">{html.escape(best)}</span></h4>'
            '<div class="note">The CGED classifier\'s probabilities for the caption (it also feeds the '
            'emotion-highlighted prompt to the LLM).</div>'
            f'<div class="emotion-chart">{"".join(rows)}</div>')


def route_chart(route: int, distances: Sequence[float | None], scenarios: Sequence[str]) -> str:
    """EPI: the routed scenario and the prompt's squared Mahalanobis distance to each scenario."""
    names = expert_names(max(len(distances), route + 1), scenarios)
    finite = [d for d in distances if d is not None and math.isfinite(d)]
    scale = max(finite) if finite else 1.0
    rows = [_bar("route", name, (d or 0.0) / scale if d is not None else 0.0,
                 "–" if d is None else f"{d:.1f}", chosen=i == route, data={"scenario": name})
            for i, (name, d) in enumerate(zip(names, distances))]
    return (f'<h4>Routed to: <span class="routed-scenario">{html.escape(names[route])}</span></h4>'
            '<div class="note">EPI answers with the prefix of the scenario nearest to the prompt '
            '(squared Mahalanobis distance of its frozen features to each scenario\'s emotion means; '
            'shorter is nearer).</div>'
            f'<div class="route-chart">{"".join(rows)}</div>')


def explanation_html(explanation: dict[str, Any], method_label: str = "this method") -> str:
    """The whole panel for `MotionGenerator.explain`'s dict."""
    scenarios = list(explanation.get("scenarios") or [])
    parts = []
    if explanation.get("gate") is not None:
        parts.append(gate_chart(explanation["gate"], explanation.get("gate_scores"), scenarios))
    if explanation.get("emotion"):
        parts.append(emotion_chart(explanation["emotion"]))
    if explanation.get("route") is not None:
        parts.append(route_chart(int(explanation["route"]), explanation.get("route_distances") or [], scenarios))
    if not parts:
        what = ("the plain backbone answers every caption" if explanation.get("method") is None
                else f"{html.escape(method_label)} decides nothing per prompt: the same adapters answer every caption")
        parts.append(f'<div class="note nothing-decided">No gate and no routing — {what}.</div>')
    step = explanation.get("step")
    if step is not None:
        after = scenarios[step] if step < len(scenarios) else f"step {step}"
        parts.insert(0, f'<div class="note">Checkpoint after stream step {step + 1} ({html.escape(after)}).</div>')
    return f'{_STYLE}<div class="l2emg-why">{"".join(parts)}</div>'
