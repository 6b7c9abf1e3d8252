"""`l2emg studio` latency: one prompt, end to end up to a playable motion, for a 196-frame motion.

    python benchmarks/studio_latency.py --run runs/default [--method esmoe] [--repeats 5] [--threads 2]

Times the studio's own Generate handler (`StudioApp.generate`, called as the page calls it, without
the browser or HTTP): the explanation (gate / emotion block), caption -> 49 motion codes -> joints
(batch of one: ES-MoE's merged-experts path), the three.js viewer page with its payload, and the BVH +
`.npy` downloads it returns with it. The MP4 (`StudioApp.video`, which the page runs right after) is
timed separately. The `<eom>` logit is masked during the timed calls so every repeat decodes the full
`--frames` / 4 codes (the longest motion the default profile generates); repeat i samples with seed
i. Loading the method's generator (once per studio) and one warm-up call are timed apart and left
out. Prints the JSON and saves it to benchmarks/results/studio_latency.json (`--out`). Target: the
playable motion in under 2 s on the default profile.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from l2emg.utils.io import save_json

RESULTS = Path(__file__).parent / "results" / "studio_latency.json"
TARGET_SECONDS = 2.0


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a run folder with a finished method run")
    parser.add_argument("--method", default=None, help="method run (name or folder); default: the studio's default")
    parser.add_argument("--caption", default="a person jogs in a circle, sadly")
    parser.add_argument("--frames", type=int, default=196, help="motion length to force (a multiple of 4)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.frames % 4 or args.frames < 4:
        parser.error("--frames must be a positive multiple of 4 (one motion code = 4 frames)")
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from l2emg.studio.app import StudioApp
    from l2emg.studio.backend import StudioBackend

    backend = StudioBackend(args.run)
    studio = StudioApp(backend)
    method = backend.method_run(args.method or backend.default_method()).name
    codes = args.frames // 4
    controls = lambda seed: (args.caption, method, "sampling", 1.0, 0, 1.0, seed, codes)  # noqa: E731

    start = time.perf_counter()
    generator = backend.generator(method)
    load_seconds = time.perf_counter() - start
    eom = torch.tensor([generator.lm.vocab.eom_id])

    def no_eom(_module, _inputs, logits):  # every repeat decodes the full `codes` codes
        return logits.index_fill(-1, eom.to(logits.device), float("-inf"))

    handle = generator.lm.model.get_output_embeddings().register_forward_hook(no_eom)
    rows = []
    try:
        studio.generate(*controls(10_000))  # warm-up (first-call allocations)
        for seed in range(args.repeats):
            start = time.perf_counter()
            outputs = studio.generate(*controls(seed))
            playable = time.perf_counter() - start
            state, status = outputs[-2], outputs[-1]
            if state is None:
                print(f"error: {status}", file=sys.stderr)
                return 2
            generation = state["generation"]
            start = time.perf_counter()
            studio.video(state)
            mp4 = time.perf_counter() - start
            rows.append({"seed": seed, "frames": generation.frames, "playable_s": playable,
                         "caption_to_joints_s": generation.seconds, "explain_s": generation.explain_seconds,
                         "viewer_s": state["viewer_seconds"], "merged_experts": generation.merged,
                         "mp4_s": mp4})
    finally:
        handle.remove()
        backend.close()
    assert all(r["frames"] == args.frames for r in rows), [r["frames"] for r in rows]
    playable = _summary([r["playable_s"] for r in rows])
    results = {
        "run": str(args.run), "method": method, "caption": args.caption, "frames": args.frames,
        "codes": codes, "repeats": args.repeats, "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "machine": platform.machine(), "load_generator_s": load_seconds,
        "playable_s": playable, "mp4_s": _summary([r["mp4_s"] for r in rows]),
        "caption_to_joints_s": _summary([r["caption_to_joints_s"] for r in rows]),
        "target_s": TARGET_SECONDS, "meets_target": playable["median"] < TARGET_SECONDS, "rows": rows,
    }
    save_json(args.out, results)
    for row in rows:
        print(f"seed {row['seed']}: playable {row['playable_s']:.3f} s (caption -> joints {row['caption_to_joints_s']:.3f} s, "
              f"why {row['explain_s']:.3f} s, viewer {row['viewer_s']:.3f} s), MP4 {row['mp4_s']:.3f} s")
    print(f"{method}, {args.frames} frames: playable in {playable['median']:.3f} s (median of {args.repeats}; "
          f"target < {TARGET_SECONDS} s: {'met' if results['meets_target'] else 'NOT met'}), "
          f"MP4 {results['mp4_s']['median']:.3f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
