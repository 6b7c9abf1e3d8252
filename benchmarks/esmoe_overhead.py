"""Overhead of ES-MoE over SeqLoRA on the default-size embedded LLaMA (hidden 256, 4 layers).

Training step (forward + backward + clip + AdamW, batch 32 × ~96 tokens, the default profile's
LoRA on q/k/v/o, rank 8): SeqLoRA (one LoRA) and ES-MoE with 1, 8 and 32 experts (the newest one
training, all older ones non-zero and frozen, the full CGED block with a dictionary of 16 centroids
per scenario, the emotion classifier and the gate with masking and top-k) — ratios ES-MoE / SeqLoRA.

Generation at batch 1 (one prompt, then 49 motion tokens through the KV cache, like `generate_codes`
but with a fixed length, so every variant decodes the same number of tokens): the plain backbone
(no adapters), ES-MoE with 8 experts merged into the weights (the default for a single prompt), and
ES-MoE with 8 experts on the fused path (unmerged). The per-request `prepare_generation` (CGED, gate,
merge) is included in the ES-MoE times.

    .venv/bin/python benchmarks/esmoe_overhead.py [--device cpu|cuda] [--rounds 7] [--threads N] [--set esmoe.top_k=2]

Prints a table and writes benchmarks/results/esmoe_overhead.json (atomically). Variants are timed
round-robin, one training step / one request at a time, in this one process, and medians compared;
on CPU the ratios use process CPU time (a machine shared with other jobs disturbs it far less than
wall time); both are saved.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from l2emg.config import Config, load_config  # noqa: E402
from l2emg.continual.examples import build_examples, collate_examples  # noqa: E402
from l2emg.continual.methods import ScenarioContext  # noqa: E402
from l2emg.continual.methods.esmoe import ESMoE  # noqa: E402
from l2emg.continual.methods.seqlora import SeqLoRA  # noqa: E402
from l2emg.data.stream import INSTRUCTION, InstructionSample  # noqa: E402
from l2emg.lm.backbone import tiny_llama_config  # noqa: E402
from l2emg.lm.generate import cache_kwarg  # noqa: E402
from l2emg.lm.motion_lm import MotionLM  # noqa: E402
from l2emg.lm.prompts import encode_prompts, position_ids  # noqa: E402
from l2emg.lm.text_tokenizer import build_text_tokenizer  # noqa: E402
from l2emg.lm.vocab import add_motion_tokens  # noqa: E402
from l2emg.utils.io import save_json  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "esmoe_overhead.json"
BATCH = 32
CODES = (60, 72)  # motion-token targets; with the ~25-token prompt about 96 tokens per example
DECODE_TOKENS = 49
EXPERT_COUNTS = (1, 8, 32)

VERBS = ["walks", "runs", "jumps", "dances", "waves", "kicks", "spins", "crouches", "bows", "juggles"]
MOODS = {"happily": "happy", "sadly": "sad", "angrily": "angry", "with fear": "fearful",
         "in surprise": "surprised", "with disgust": "disgusted", "calmly": "neutral"}
CAPTIONS = [(f"a person {v} forward and then turns around, {m}", e) for v in VERBS for m, e in MOODS.items()]


def build_lm(config: Config, device: str, texts: list[str] | None = None) -> MotionLM:
    """The default-size embedded LLaMA (seeded, frozen) with motion tokens; its BPE is trained on
    `texts` (default: this benchmark's captions) plus the instruction."""
    texts = [c for c, _ in CAPTIONS] if texts is None else texts
    tokenizer = build_text_tokenizer(texts + [INSTRUCTION] * 3, vocab_size=config.lm.text_vocab_size)
    torch.manual_seed(0)
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(tiny_llama_config(config.lm, len(tokenizer), tokenizer))
    codebook = torch.randn(config.tokenizer.codebook_size, config.tokenizer.code_dim, generator=torch.Generator().manual_seed(1))
    vocab = add_motion_tokens(model, tokenizer, codebook, seed=0)
    model.to(device).requires_grad_(False)
    return MotionLM(model, tokenizer, vocab)


def fresh(lm: MotionLM) -> MotionLM:
    return MotionLM(copy.deepcopy(lm.model), lm.tokenizer, lm.vocab)


def examples(lm: MotionLM, config: Config, count: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    samples, codes = [], {}
    for k in range(count):
        caption, emotion = CAPTIONS[k % len(CAPTIONS)]
        motion_id = f"m{k:04d}"
        codes[motion_id] = rng.integers(0, config.tokenizer.codebook_size, int(rng.integers(*CODES))).tolist()
        samples.append(InstructionSample(INSTRUCTION, caption, emotion, "Daily Life", motion_id, "s"))
    return build_examples(samples, codes, lm.tokenizer, lm.vocab, config.lm.max_length)


def nonzero_experts(bank, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for e in range(bank.num_experts):
            for p in bank.expert_parameters(e):
                p.copy_((torch.randn(p.shape, generator=g) * 0.02).to(p.device))


def seqlora(lm: MotionLM, config: Config, ctx: ScenarioContext, device: str) -> SeqLoRA:
    method = SeqLoRA(config, fresh(lm))
    method.setup()
    method.to(device)
    method.begin_scenario(0, ctx)
    return method


def esmoe(lm: MotionLM, config: Config, ctx: ScenarioContext, experts: int, device: str) -> ESMoE:
    """An ES-MoE at step `experts - 1`: older experts (non-zero, frozen) and dictionary in place."""
    method = ESMoE(config, fresh(lm))
    method.setup()
    method.to(device)
    clusters = config.esmoe.dict_clusters
    method.restore_structure({"variant": "esmoe", "num_experts": experts - 1, "current": max(experts - 2, 0),
                              "dictionary_sizes": [clusters] * (experts - 1)})
    with torch.no_grad():
        method.cged.dictionary.normal_(0, 0.02)
    method.begin_scenario(experts - 1, ctx)  # adds the trained expert, its key and this scenario's centroids
    nonzero_experts(method.bank)
    return method


def cpu_seconds() -> float:
    return time.process_time()


def time_training(method, batch, steps: int, sync) -> tuple[float, float]:
    """(wall, cpu) seconds per step of forward + backward + clip + AdamW."""
    params = method.trainable_parameters()
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    method.train()
    sync()
    wall, cpu = time.perf_counter(), cpu_seconds()
    for _ in range(steps):
        out = method(batch)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync()
    return (time.perf_counter() - wall) / steps, (cpu_seconds() - cpu) / steps


@torch.no_grad()
def decode(model, vocab, prepare, input_ids, attention_mask, tokens: int) -> None:
    """prepare -> prompt forward -> `tokens` greedy motion tokens through the KV cache (no early stop)."""
    from transformers import DynamicCache

    embeds = prepare(input_ids, attention_mask) if prepare is not None else None
    codes = torch.tensor(list(vocab.code_ids), device=input_ids.device)
    cache = DynamicCache(config=model.config)
    positions = position_ids(attention_mask)
    kwargs = dict(attention_mask=attention_mask, position_ids=positions, **cache_kwarg(model, cache), use_cache=True,
                  logits_to_keep=1)
    out = model(inputs_embeds=embeds, **kwargs) if embeds is not None else model(input_ids=input_ids, **kwargs)
    mask = attention_mask
    for _ in range(tokens - 1):
        token = codes[out.logits[:, -1, codes].argmax(-1)]  # (1,)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        positions = positions[:, -1:] + 1
        out = model(input_ids=token[:, None], attention_mask=mask, position_ids=positions,
                    **cache_kwarg(model, cache), use_cache=True)


def time_generation(model, vocab, prepare, prompts, sync) -> tuple[float, float]:
    """(wall, cpu) tokens per second over all prompts, one request (batch 1) at a time."""
    model.eval()
    sync()
    wall, cpu = time.perf_counter(), cpu_seconds()
    for ids, mask in prompts:
        decode(model, vocab, prepare, ids, mask, DECODE_TOKENS)
    sync()
    tokens = DECODE_TOKENS * len(prompts)
    return tokens / (time.perf_counter() - wall), tokens / max(cpu_seconds() - cpu, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=7, help="round-robin rounds (median taken)")
    parser.add_argument("--steps", type=int, default=2, help="training steps per variant per round (interleaved)")
    parser.add_argument("--prompts", type=int, default=4, help="generation requests per variant per round")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--set", action="append", default=[], help="config override, e.g. esmoe.top_k=2")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    use_cpu_time = not device.startswith("cuda")

    config = load_config("default", args.set)
    lm = build_lm(config, device)
    scenario = examples(lm, config, 96)
    ctx = ScenarioContext(0, "Daily Life", scenario)
    batch = {k: v.to(device) for k, v in collate_examples(scenario[:BATCH], lm.tokenizer.pad_token_id).items()}
    tokens_per_example = float(batch["attention_mask"].sum(1).float().mean())

    # -- training -------------------------------------------------------------------------------
    variants = {"seqlora": seqlora(lm, config, ctx, device)}
    for count in EXPERT_COUNTS:
        variants[f"esmoe_{count}"] = esmoe(lm, config, ctx, count, device)
    for method in variants.values():  # warm-up (allocator, kernels)
        time_training(method, batch, 1, sync)
    train_wall: dict[str, list[float]] = {k: [] for k in variants}
    train_cpu: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(args.rounds):
        for _ in range(args.steps):  # interleaved step by step: slow drifts of a shared machine hit all alike
            for name, method in variants.items():
                wall, cpu = time_training(method, batch, 1, sync)
                train_wall[name].append(wall)
                train_cpu[name].append(cpu)
        print(f"training round {r + 1}/{args.rounds}", file=sys.stderr)
    pick = train_cpu if use_cpu_time else train_wall
    train = {name: {"wall_s_per_step": statistics.median(train_wall[name]),
                    "cpu_s_per_step": statistics.median(train_cpu[name]),
                    "ratio_vs_seqlora": statistics.median(pick[name]) / statistics.median(pick["seqlora"])}
             for name in variants}
    del variants

    # -- generation at batch 1 ------------------------------------------------------------------
    plain = fresh(lm).model.eval()
    merged_method = esmoe(lm, config, ctx, 8, device).eval()
    fused_method = esmoe(lm, config, ctx, 8, device).eval()
    fused_method.options = fused_method.options.model_copy(update={"merge_single_prompt": False})
    captions = [c for c, _ in CAPTIONS[:: max(1, len(CAPTIONS) // args.prompts)]][: args.prompts]
    prompts = [tuple(t.to(device) for t in encode_prompts(lm.tokenizer, lm.vocab, [c]).values()) for c in captions]
    gen_variants = {"plain": (plain, None), "esmoe_merged": (merged_method.model, merged_method.prepare_generation),
                    "esmoe_fused": (fused_method.model, fused_method.prepare_generation)}
    for model, prepare in gen_variants.values():
        time_generation(model, lm.vocab, prepare, prompts[:1], sync)
    gen_wall: dict[str, list[float]] = {k: [] for k in gen_variants}
    gen_cpu: dict[str, list[float]] = {k: [] for k in gen_variants}
    for r in range(args.rounds):
        for prompt in prompts:  # interleaved request by request
            for name, (model, prepare) in gen_variants.items():
                wall, cpu = time_generation(model, lm.vocab, prepare, [prompt], sync)
                gen_wall[name].append(wall)
                gen_cpu[name].append(cpu)
        print(f"generation round {r + 1}/{args.rounds}", file=sys.stderr)
    pick = gen_cpu if use_cpu_time else gen_wall
    generation = {name: {"wall_tokens_per_s": statistics.median(gen_wall[name]),
                         "cpu_tokens_per_s": statistics.median(gen_cpu[name]),
                         "ratio_vs_plain": statistics.median(pick[name]) / statistics.median(pick["plain"])}
                  for name in gen_variants}

    targets = {"train_8_experts_max_ratio": 1.15, "train_32_experts_max_ratio": 1.3, "merged_generation_min_ratio": 0.9}
    result = {
        "device": device if not device.startswith("cuda") else torch.cuda.get_device_name(),
        "machine": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "timing": "process CPU time" if use_cpu_time else "wall time (synchronised)",
        "model": {"hidden": config.lm.tiny_hidden, "layers": config.lm.tiny_layers,
                  "vocab": int(lm.model.get_input_embeddings().weight.shape[0])},
        "lora": {"rank": config.lora.rank, "targets": config.lora.target_modules},
        "esmoe": config.esmoe.model_dump(),
        "batch": BATCH, "tokens_per_example": tokens_per_example, "rounds": args.rounds, "steps": args.steps,
        "training": train, "generation_batch1": generation, "decode_tokens": DECODE_TOKENS, "targets": targets,
        "meets_targets": {
            "train_8_experts": train["esmoe_8"]["ratio_vs_seqlora"] <= targets["train_8_experts_max_ratio"],
            "train_32_experts": train["esmoe_32"]["ratio_vs_seqlora"] <= targets["train_32_experts_max_ratio"],
            "merged_generation": generation["esmoe_merged"]["ratio_vs_plain"] >= targets["merged_generation_min_ratio"],
        },
    }
    save_json(RESULTS, result)
    unit = "cpu" if use_cpu_time else "wall"
    print(f"device {result['device']}, batch {BATCH} × {tokens_per_example:.0f} tokens, ratios from {result['timing']}")
    print(f"{'training':<16}{unit + ' s/step':>14}{'× SeqLoRA':>12}")
    for name, row in train.items():
        print(f"{name:<16}{row[f'{unit}_s_per_step']:>14.4f}{row['ratio_vs_seqlora']:>12.3f}")
    print(f"{'generation b=1':<16}{unit + ' tok/s':>14}{'× plain':>12}")
    for name, row in generation.items():
        print(f"{name:<16}{row[f'{unit}_tokens_per_s']:>14.1f}{row['ratio_vs_plain']:>12.3f}")
    print(f"targets met: {result['meets_targets']}  -> {RESULTS}")


if __name__ == "__main__":
    main()
