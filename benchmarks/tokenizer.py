"""Motion-tokenizer throughput: encode and decode frames per second at batch 1 and batch 64.

    python benchmarks/tokenizer.py [--tokenizer DIR] [--frames 128] [--repeats 5]

Uses a trained tokenizer when one is given (or found at runs/default/tokenizer), else the default
profile's architecture with random weights (throughput does not depend on the weight values).
Inputs are random normalised features of `--frames` frames (encode runs without the input
statistics check, which random inputs would fail); decode includes denormalisation. Prints the
JSON and saves it to benchmarks/results/tokenizer.json.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from l2emg.config import load_config
from l2emg.motion.features import FEATURE_DIM
from l2emg.tokenizer.api import MotionTokenizer
from l2emg.tokenizer.vqvae import VQVAE
from l2emg.utils.io import save_json

RESULTS = Path(__file__).parent / "results" / "tokenizer.json"
DEFAULT_TOKENIZER = Path("runs/default/tokenizer")


def _load(path: Path | None) -> tuple[MotionTokenizer, str]:
    if path is None and (DEFAULT_TOKENIZER / "model.safetensors").exists():
        path = DEFAULT_TOKENIZER
    if path is not None:
        return MotionTokenizer.from_pretrained(path), str(path)
    cfg = load_config("default").tokenizer
    torch.manual_seed(0)
    model = VQVAE(cfg)
    model.quantizer.initialize(torch.randn(cfg.codebook_size, cfg.code_dim))
    return MotionTokenizer(model, np.zeros(FEATURE_DIM, np.float32), np.ones(FEATURE_DIM, np.float32)), "random weights (default profile)"


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, default=None)
    parser.add_argument("--frames", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    tokenizer, source = _load(args.tokenizer)
    cfg = tokenizer.config
    results = {
        "tokenizer": source,
        "model": {k: getattr(cfg, k) for k in cfg.MODEL_FIELDS},
        "parameters": sum(p.numel() for p in tokenizer.model.parameters()),
        "frames_per_motion": args.frames,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "timing": "best of {} runs".format(args.repeats),
        "batches": {},
    }
    generator = torch.Generator().manual_seed(0)
    for batch in (1, 64):
        features = torch.randn(batch, args.frames, FEATURE_DIM, generator=generator)
        codes, mask = tokenizer.encode(features, normalized=True, check=False)
        encode_s = _time(lambda features=features: tokenizer.encode(features, normalized=True, check=False), args.repeats)
        decode_s = _time(lambda codes=codes, mask=mask: tokenizer.decode(codes, mask), args.repeats)
        frames = batch * args.frames
        results["batches"][str(batch)] = {
            "encode_frames_per_s": round(frames / encode_s, 1),
            "decode_frames_per_s": round(frames / decode_s, 1),
            "encode_ms_per_batch": round(1000 * encode_s, 2),
            "decode_ms_per_batch": round(1000 * decode_s, 2),
        }
    save_json(RESULTS, results)
    import json

    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
