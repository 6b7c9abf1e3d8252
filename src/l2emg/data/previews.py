"""Preview animations of a dataset: sample motions per scenario × emotion rendered into grids.

`render_previews` writes one animated grid per scenario (its seven emotions side by side) and one
per emotion across the eight scenarios, plus an index.md listing the files and the captions. Used
by `l2emg data preview` and by the pipeline's previews stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from l2emg.errors import DataError
from l2emg.labels import EMOTIONS, SCENARIOS, scenario_slug
from l2emg.utils.progress import progress_bar


def render_previews(dataset: Any, out_dir: Path, preview: Any = None, progress: bool = True,
                    split: Optional[str] = None, seed: int = 0) -> list[Path]:
    """Render sample motions of `dataset` into `out_dir`; returns the animation paths and index.md.

    One grid per scenario (its seven emotions side by side — `per_cell` rows — with each motion's
    first caption under its panel) and one grid per emotion across the eight scenarios. `preview` is
    a PreviewConfig (fps, format, per_cell, size); `split` limits the samples to one split.
    """
    from l2emg.config import PreviewConfig
    from l2emg.motion.render import render_grid
    from l2emg.utils.io import atomic_write_text

    preview = preview or PreviewConfig()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: exists and is not a folder; choose another --out")
    records = dataset.records if split is None else dataset.split(split)
    rng = np.random.default_rng(seed)
    cells: dict[tuple[str, str], list] = {}
    for r in records:
        if r.scenario is not None and r.emotion is not None:
            cells.setdefault((r.scenario, r.emotion), []).append(r)
    if not cells:
        raise DataError(f"{dataset.root}: no motion has both a scenario and an emotion label to preview")
    picked = {key: [group[i] for i in sorted(rng.choice(len(group), min(preview.per_cell, len(group)),
                                                        replace=False))]
              for key, group in cells.items()}

    jobs: list[tuple[str, list, list[str], Path, int]] = []  # (heading, records, titles, path, ncols)
    for scenario in SCENARIOS:
        # Row k holds the k-th sample of every emotion, so each column is one emotion.
        panels, titles = [], []
        for k in range(preview.per_cell):
            for emotion in EMOTIONS:
                group = picked.get((scenario, emotion), [])
                if k < len(group):
                    panels.append(group[k])
                    titles.append(f"{emotion} · {group[k].action or group[k].motion_id}")
        if panels:
            jobs.append((f"Scenario **{scenario}**: emotions side by side", panels, titles,
                         out_dir / f"scenario_{scenario_slug(scenario)}.{preview.format}",
                         min(len(EMOTIONS), len(panels))))
    for emotion in EMOTIONS:
        panels = [picked[(s, emotion)][0] for s in SCENARIOS if (s, emotion) in picked]
        if panels:
            jobs.append((f"Emotion **{emotion}** across scenarios", panels,
                         [f"{r.scenario} · {r.action or r.motion_id}" for r in panels],
                         out_dir / f"emotion_{emotion}.{preview.format}", min(4, len(panels))))

    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"# Preview of {dataset.name}", "", f"Dataset: `{dataset.root}` ({len(dataset)} motions). "
             "Each panel: title = emotion or scenario and action, text = the motion's first caption.", ""]
    written: list[Path] = []
    with progress_bar("rendering previews", len(jobs), enabled=progress) as bar:
        for heading, panels, titles, path, ncols in jobs:
            render_grid([np.asarray(dataset.joints(r.motion_id)) for r in panels],
                        [r.captions[0].text for r in panels], path, ncols=ncols, fps=preview.fps,
                        size=preview.size, titles=titles)
            written.append(path)
            lines += [f"## {heading}", "", f"![{path.stem}]({path.name})", "",
                      *[f"- `{r.motion_id}` ({r.scenario}, {r.emotion}, {r.split}): {r.captions[0].text}"
                        for r in panels], ""]
            bar.advance()
    atomic_write_text(out_dir / "index.md", "\n".join(lines))
    return written + [out_dir / "index.md"]
