"""Free text a user would type, not the data's captions: what does each backbone make of it?

    .venv/bin/python benchmarks/free_text.py --entry runs/default:mtl:llama-4m --entry runs/smollm2:mtl:smollm2-135m

For each prompt of PROMPTS (our own words: synonyms, everyday phrasing, a reason for the emotion) and
each entry (RUN_DIR:METHOD:LABEL), generates `--samples` motions with the run's decoding settings
(seeded) and measures them as benchmarks/caption_probe.py does (duration, root path, displacement,
turn, trunk lean) plus the emotion the run's evaluator recognises (its classifier's vote over the
samples) against the emotion the prompt means. Writes benchmarks/results/free_text.json and one
keyframe strip per entry and prompt (the first sample) to docs/free_text/<label>.png: a row per prompt.
Rows of other entries already in the JSON are kept.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from caption_probe import summary

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "free_text.json"
DOCS = HERE.parent / "docs" / "free_text"
# (prompt, the emotion it means, what a reader expects to see)
PROMPTS = [
    ("a gentleman strides onward, heartbroken", "sad", "walks forward"),
    ("someone trudges along, devastated after losing a loved one", "sad", "walks forward"),
    ("a guy hops up and down, thrilled about winning the lottery", "happy", "jumps"),
    ("a lady strolls ahead feeling upbeat and carefree", "happy", "walks forward"),
    ("a boxer throws hits at an opponent, livid", "angry", "punches"),
    ("somebody tiptoes forward, petrified of what is around the corner", "fearful", "sneaks forward"),
    ("a ballerina whirls around, stunned", "surprised", "spins"),
    ("an individual squats down, feeling serene", "neutral", "crouches"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entry", action="append", required=True, help="RUN_DIR:METHOD:LABEL (repeatable)")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from l2emg.eval.evaluator import Evaluator
    from l2emg.generator import load_generator
    from l2emg.lm.generate import codes_to_motion
    from l2emg.motion.render import render_keyframes
    from l2emg.runs import RunDir
    from l2emg.utils.io import atomic_write_bytes, save_json
    from l2emg.utils.precision import machine

    results = []
    DOCS.mkdir(parents=True, exist_ok=True)
    for entry in args.entry:
        run_dir, method, label = entry.split(":")
        generator = load_generator(run_dir, method)
        evaluator = Evaluator.from_pretrained(RunDir(run_dir).evaluator_dir)
        strips = []
        for prompt, emotion, action in PROMPTS:
            captions = [prompt] * args.samples
            codes = generator.codes(captions, seed=args.seed)
            features, joints = codes_to_motion(generator.motion_tokenizer, codes)
            _, probs = evaluator.embed_motion_and_emotion(features, names=[f"{prompt} [{k}]" for k in range(len(codes))])
            votes = Counter(evaluator.emotions[i] for i in probs.argmax(1))
            results.append({"entry": label, "method": method, "prompt": prompt, "means": emotion, "expected": action,
                            "recognised_emotions": dict(votes), "emotion_hits": votes.get(emotion, 0),
                            **summary(joints)})
            print(f"{label:14s} {prompt[:60]:60s} emotion {votes.most_common(1)[0][0]:9s} "
                  f"({votes.get(emotion, 0)}/{len(codes)} {emotion})  {results[-1]['seconds']:.1f} s  "
                  f"path {results[-1]['path_m']:.2f} m  turn {results[-1]['turn_deg']:.0f}°", flush=True)
            with tempfile.TemporaryDirectory() as tmp:
                path = render_keyframes(joints[0], Path(tmp) / "strip.png", n=6, caption=f"{prompt}  [{label}]",
                                        size=160)
                with Image.open(path) as image:
                    strips.append(image.convert("RGB"))
        width = max(s.width for s in strips)
        canvas = Image.new("RGB", (width, sum(s.height for s in strips) + 4 * len(strips)), "white")
        y = 0
        for strip in strips:
            canvas.paste(strip, (0, y))
            y += strip.height + 4
        buffer = io.BytesIO()
        canvas.save(buffer, format="PNG", optimize=True)
        atomic_write_bytes(DOCS / f"{label}.png", buffer.getvalue())
    # rows of other entries already there are kept (each entry is measured once, in its own call or not)
    import json

    mine = {r["entry"] for r in results}
    kept = [r for r in json.loads(OUT.read_text())["rows"] if r["entry"] not in mine] if OUT.exists() else []
    save_json(OUT, {"rows": kept + results, "samples": args.samples, "seed": args.seed, "machine": machine(),
                    "date": time.strftime("%Y-%m-%d")})
    hits = {e: int(np.sum([r["emotion_hits"] for r in results if r["entry"] == e])) for e in {r["entry"] for r in results}}
    print({e: f"{h}/{len(PROMPTS) * args.samples} motions show the prompt's emotion" for e, h in hits.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
