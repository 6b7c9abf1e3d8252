"""Pictures of the embedded data's emotions across the eight scenarios, in both data variants.

    python scripts/emotion_figures.py [--out docs/figures] [--emotions sad angry]

For each emotion: `emotion_<e>_scenarios.png`, two rows of eight panels (one per scenario, its first
action, the same motion seed in both rows): the top row is the `shared` variant (one signature in
every scenario), the bottom row the `scenario` variant (the same core, each scenario's own register
and accent; data/synth/emotions.py). Each panel shows the pose at 40 % of the motion, compare the rows. The animated version of one emotion
across scenarios is in every run's previews (RUN/previews/emotion_<e>.gif).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image

from l2emg.config import DataConfig
from l2emg.data.synth.actions import ACTIONS_BY_SCENARIO
from l2emg.data.synth.generator import MotionSpec, synthesize
from l2emg.labels import SCENARIOS
from l2emg.motion.render import render_frames
from l2emg.utils.io import atomic_write_bytes


def motions(emotion: str, style: str) -> list[np.ndarray]:
    config = DataConfig(num_motions=16, min_frames=80, max_frames=100, seed=0, emotion_style=style)
    return [synthesize(MotionSpec(9000 + i, scenario, emotion, ACTIONS_BY_SCENARIO[scenario][0].id), config).joints
            for i, scenario in enumerate(SCENARIOS)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/figures"))
    parser.add_argument("--emotions", nargs="+", default=["sad", "angry"])
    parser.add_argument("--size", type=int, default=200)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for emotion in args.emotions:
        panels = motions(emotion, "shared") + motions(emotion, "scenario")
        titles = [f"{s} · shared" for s in SCENARIOS] + [f"{s} · by scenario" for s in SCENARIOS]
        captions = [ACTIONS_BY_SCENARIO[s][0].id.replace("_", " ") for s in SCENARIOS] * 2
        frames = render_frames(panels, captions, ncols=len(SCENARIOS), size=args.size, titles=titles,
                               frame_counter=False, legend=False)
        still = frames[int(0.4 * (len(frames) - 1))]
        png = args.out / f"emotion_{emotion}_scenarios.png"
        buffer = io.BytesIO()
        Image.fromarray(still).save(buffer, format="PNG", optimize=True)
        atomic_write_bytes(png, buffer.getvalue())
        print(png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
