"""Training-step and generation throughput of the language model, plain backbone vs LoRA.

    .venv/bin/python benchmarks/train_step.py [--profile default] [--repeats 5] [--threads 2]

Builds the profile's embedded tiny LLaMA (random weights; speed does not depend on training) with
the motion vocabulary, then measures
  * a training step (forward + backward + AdamW) on a batch of train.batch_size × 96 tokens:
    the full backbone trained ("plain") vs the frozen backbone with one LoRA expert ("lora");
  * greedy generation of 49 motion tokens with the KV cache at batch 1 and 16, plain vs LoRA.
Each case runs in its own process so its peak memory is its own (GPU: max allocated; CPU: the
process's peak resident set, VmHWM). Prints a table and saves benchmarks/results/train_step.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
CASES = ("train_plain", "train_lora", "generate_plain_b1", "generate_lora_b1", "generate_plain_b16",
         "generate_lora_b16")


def _peak_memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_case(case: str, profile: str, repeats: int, threads: int) -> dict:
    import torch
    from transformers import LlamaForCausalLM

    from l2emg.config import load_config
    from l2emg.continual.lora import inject_experts_from_config
    from l2emg.lm.backbone import tiny_llama_config
    from l2emg.lm.generate import generate_codes
    from l2emg.lm.text_tokenizer import build_text_tokenizer
    from l2emg.lm.vocab import add_motion_tokens

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = load_config(profile)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    words = ["a person walks forward sadly", "someone jumps with joy", "the dancer spins angrily"] * 50
    tokenizer = build_text_tokenizer(words, config.lm.text_vocab_size)
    model = LlamaForCausalLM(tiny_llama_config(config.lm, len(tokenizer), tokenizer))
    codebook = torch.randn(config.tokenizer.codebook_size, config.tokenizer.code_dim)
    vocab = add_motion_tokens(model, tokenizer, codebook, seed=0)
    lora = case.split("_")[1] == "lora"
    if lora:
        bank = inject_experts_from_config(model, config.lora)
        bank.add_expert(trainable=True)
        bank.set_trainable([0])
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    result = {"case": case, "trainable_parameters": sum(p.numel() for p in params),
              "parameters": sum(p.numel() for p in model.parameters())}

    if case.startswith("train"):
        batch, length = config.train.batch_size, 96
        ids = torch.randint(0, len(tokenizer), (batch, length), device=device)
        optimizer = torch.optim.AdamW(params, lr=1e-4)
        model.train()

        def step() -> None:
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        step()  # warm-up
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
        seconds = sorted(times)[len(times) // 2]
        result.update(batch=batch, tokens_per_step=batch * length, step_ms=1000 * seconds,
                      tokens_per_s=batch * length / seconds)
    else:
        batch = int(case.rsplit("_b", 1)[1])
        captions = [words[i % len(words)] for i in range(batch)]
        max_codes = 49

        def generate() -> int:
            codes = generate_codes(model, tokenizer, vocab, captions, max_codes=max_codes, greedy=True,
                                   batch_size=batch)
            return sum(len(c) for c in codes)  # motion tokens produced (each sample stops at <eom>)

        generate()
        times, tokens = [], 0
        for _ in range(repeats):
            started = time.perf_counter()
            tokens = generate()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
        seconds = sorted(times)[len(times) // 2]
        result.update(batch=batch, generated_tokens=tokens, seconds=seconds, tokens_per_s=tokens / seconds)
    result["peak_memory_mb"] = _peak_memory_mb(device)
    result["device"] = str(device)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="default")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.profile, args.repeats, args.threads)))
        return 0
    rows = []
    for case in CASES:
        out = subprocess.run([sys.executable, __file__, "--case", case, "--profile", args.profile,
                              "--repeats", str(args.repeats), "--threads", str(args.threads)],
                             capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if out.returncode != 0:
            print(out.stderr[-2000:], file=sys.stderr)
            return 1
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    report = {"benchmark": "train_step", "profile": args.profile, "threads": args.threads,
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or platform.system()}",
              "load_average_at_end": os.getloadavg(), "results": rows}
    from l2emg.utils.io import save_json

    save_json(HERE / "results" / "train_step.json", report)
    print(f"{'case':22} {'tokens/s':>10} {'peak MB':>9}")
    for r in rows:
        print(f"{r['case']:22} {r['tokens_per_s']:10.0f} {r['peak_memory_mb']:9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
