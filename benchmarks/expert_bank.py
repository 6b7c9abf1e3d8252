"""Cost of the LoRA expert bank on the default-size embedded LLaMA (hidden 256, 4 layers).

Training step (forward + backward, batch 16 × 96 tokens, one trainable expert as in ES-MoE):
no adapters, plain LoRA (1 expert, no routing), the fused bank with 1/8/32 experts and dense
per-sample softmax routing, the fused bank with top-2 routing of a gate concentrated on the batch's
scenario (zero-weight experts are skipped), and a naive per-expert Python loop with dense routing.
Inference (batch 1, 96-token prompt, then one KV-cache decoding step): no adapters, merged
experts, and the fused bank. Batched decoding as the evaluation runs it (batch 64, per-sample top-2 of
8 experts, the default profile's targets incl. rank-64 experts on the input embeddings and lm_head):
one KV-cache decoding step with each sample's experts gathered (the per-sample path forced) against
the bank's own choice (`lora.gather_pays`: the fused product for one token). Every variant runs in
this one process, so the ratios are comparable.

    .venv/bin/python benchmarks/expert_bank.py [--device cpu|cuda] [--repeats 5] [--threads 1]

Prints a table and writes benchmarks/results/expert_bank.json (atomically). Variants are timed
round-robin; on CPU the ratios use process CPU time, which a machine shared with other jobs
disturbs far less than wall time (both are saved).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn import functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from l2emg.continual.lora import ExpertBank, ExpertLinear, inject_experts
from l2emg.continual.lora import layers as lora_layers
from l2emg.lm.generate import cache_kwarg
from l2emg.utils.io import save_json

RESULTS = Path(__file__).parent / "results" / "expert_bank.json"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
RANK, ALPHA = 8, 16
BATCH, LENGTH = 16, 96


def build_model(device: str) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4,
                         num_key_value_heads=4, vocab_size=2515, max_position_embeddings=256)
    model = LlamaForCausalLM(config).to(device)
    model.requires_grad_(False)
    return model


def bank_with_experts(model: LlamaForCausalLM, experts: int, targets: list[str] = TARGETS, **options) -> ExpertBank:
    bank = inject_experts(model, targets, rank=RANK, alpha=ALPHA, **options)
    g = torch.Generator().manual_seed(1)
    for _ in range(experts):
        bank.add_expert(trainable=False)
    with torch.no_grad():  # non-zero B everywhere so every expert really contributes
        for e in range(experts):
            for p in bank.expert_parameters(e):
                p.copy_(torch.randn(p.shape, generator=g).to(p.device) * 0.02)
    bank.set_trainable([experts - 1])  # ES-MoE: only the newest expert trains
    return bank


def loop_forward(self: ExpertLinear, x: torch.Tensor) -> torch.Tensor:
    """The naive reference: one pair of matrix products per expert, summed in Python."""
    out = self.base(x)
    weights = self.routing.weights  # (B, E)
    for e in range(self.num_experts):
        delta = F.linear(F.linear(self.dropout(x), self.lora_A[e]), self.lora_B[e])
        out = out + self.scaling * weights[:, e].view(-1, 1, 1) * delta
    return out


def dense_weights(experts: int, device: str) -> torch.Tensor:
    return torch.softmax(torch.randn(BATCH, experts, generator=torch.Generator().manual_seed(2)), -1).to(device)


def top2_weights(experts: int, device: str) -> torch.Tensor:
    """Top-2 renormalised weights of a gate concentrated on the batch's scenario (shared logits plus
    per-sample noise), as ES-MoE's gate within one scenario: a few experts are used by the batch."""
    g = torch.Generator().manual_seed(5)
    gate_logits = 3.0 * torch.randn(experts, generator=g) + 0.7 * torch.randn(BATCH, experts, generator=g)
    top = gate_logits.topk(min(2, experts), dim=-1)
    sparse = torch.zeros_like(gate_logits).scatter_(-1, top.indices, torch.softmax(top.values, dim=-1))
    return sparse.to(device)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def interleaved_median_ms(fns: dict[str, Callable[[], None]], device: str, repeats: int,
                          warmup: int = 1) -> dict[str, dict[str, float]]:
    """Median wall and process-CPU time (ms) of each fn, timed round-robin so that load from other
    processes on a shared machine hits every variant alike. CPU time is the steadier measure when
    the machine is shared (it does not count time spent waiting for a core)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            sync(device)
            wall[name].append((time.perf_counter() - start) * 1000)
            cpu[name].append((time.process_time() - start_cpu) * 1000)
    return {name: {"wall_ms": statistics.median(wall[name]), "cpu_ms": statistics.median(cpu[name])} for name in fns}


def train_step(experts: int | None, routing: str, device: str) -> Callable[[], None]:
    """A forward+backward closure. experts None: no adapters. routing: 'none' (plain LoRA), 'dense',
    'top2' or 'loop' (naive per-expert loop with dense weights)."""
    model = build_model(device).train()
    bank = bank_with_experts(model, experts) if experts else None
    if routing == "loop":
        for layer in bank.layers.values():
            layer.forward = types.MethodType(loop_forward, layer)
    ids = torch.randint(0, 2515, (BATCH, LENGTH), generator=torch.Generator().manual_seed(3)).to(device)
    embeds = model.get_input_embeddings()(ids).detach()
    weights = {"dense": dense_weights, "loop": dense_weights, "top2": top2_weights}.get(routing)

    def step() -> None:
        if bank is not None and weights is not None:
            bank.set_routing(weights(experts, device))  # a fresh gate output every step, as in training
        # Inputs require grad so that backward traverses the whole network in every variant.
        x = embeds.clone().requires_grad_(True)
        model(inputs_embeds=x, labels=ids).loss.backward()
        for p in model.parameters():
            p.grad = None

    return step


def inference_steps(mode: str, experts: int, device: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """(prompt forward, one KV-cache decoding step) closures at batch 1. mode: plain | merged | fused."""
    model = build_model(device).eval()
    ids = torch.randint(0, 2515, (1, LENGTH), generator=torch.Generator().manual_seed(4)).to(device)
    if mode != "plain":
        bank = bank_with_experts(model, experts)
        weights = top2_weights(experts, device)[0]
        if mode == "merged":
            bank.merge(weights)
        else:
            bank.set_routing(weights[None])
    with torch.no_grad():
        cache = model(input_ids=ids[:, :-1], use_cache=True).past_key_values
    last = ids[:, -1:]

    @torch.no_grad()
    def prompt() -> None:
        model(input_ids=ids, use_cache=True)

    @torch.no_grad()
    def decode() -> None:
        model(input_ids=last, **cache_kwarg(model, cache), use_cache=True)
        cache.crop(-1)  # drop the token just added: every timed step sees the same cache length

    return prompt, decode


def batched_decode(force_gather: bool, device: str, batch: int = 64, experts: int = 8) -> Callable[[], None]:
    """One KV-cache decoding step of a batch routed per sample (top-2 of `experts`), the default
    profile's targets (attention rank 8, input embeddings and lm_head rank 64)."""
    model = build_model(device).eval()
    wide = {"embed_tokens": 64, "lm_head": 64}
    bank = bank_with_experts(model, experts, [*TARGETS, "embed_tokens", "lm_head"], rank_pattern=wide, alpha_pattern=wide)
    g = torch.Generator().manual_seed(6)
    picks = torch.randint(0, experts - 1, (batch,), generator=g)
    weights = torch.zeros(batch, experts).index_put((torch.arange(batch), picks), torch.full((batch,), 0.4))
    weights[:, experts - 1] = 0.6
    bank.set_routing(weights.to(device))
    ids = torch.randint(0, 2515, (batch, 40), generator=g).to(device)
    with torch.no_grad():
        cache = model(input_ids=ids[:, :-1], use_cache=True).past_key_values
    last = ids[:, -1:]

    @torch.no_grad()
    def decode() -> None:
        saved = lora_layers.GATHER_COST
        lora_layers.GATHER_COST = 0 if force_gather else saved
        try:
            model(input_ids=last, **cache_kwarg(model, cache), use_cache=True)
        finally:
            lora_layers.GATHER_COST = saved
        cache.crop(-1)

    return decode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    variants = {
        "no_adapters": (None, "none"),
        "plain_lora": (1, "none"),
        "fused_1": (1, "dense"),
        "fused_8": (8, "dense"),
        "fused_32": (32, "dense"),
        "fused_8_top2": (8, "top2"),
        "fused_32_top2": (32, "top2"),
        "loop_8": (8, "loop"),
        "loop_32": (32, "loop"),
    }
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = "cpu_ms" if args.device == "cpu" else "wall_ms"
    print(f"training step (forward+backward), batch {BATCH}x{LENGTH}, rank {RANK}, device {args.device}, "
          f"{torch.get_num_threads()} threads, {args.repeats} interleaved rounds; ratios on {clock}", flush=True)
    train = interleaved_median_ms({name: train_step(e, r, args.device) for name, (e, r) in variants.items()},
                                  args.device, args.repeats)
    for name, row in train.items():
        print(f"  {name:15s} wall {row['wall_ms']:8.1f} ms  cpu {row['cpu_ms']:8.1f} ms  "
              f"({row[clock] / train['plain_lora'][clock]:.2f}x plain LoRA)")
    used = {f"top2_{e}": len((top2_weights(e, "cpu") != 0).any(0).nonzero()) for e in (8, 32)}
    print("  experts used by the top-2 batch: " + ", ".join(f"{k} {v}" for k, v in used.items()))

    print("inference at batch 1: prompt forward (96 tokens) / one KV-cache decoding step", flush=True)
    prompts, decodes = {}, {}
    for name, mode, experts in [("plain", "plain", 0), ("merged_8", "merged", 8), ("fused_8", "fused", 8),
                                ("merged_32", "merged", 32), ("fused_32", "fused", 32)]:
        prompts[name], decodes[name] = inference_steps(mode, experts, args.device)
    prompt_ms = interleaved_median_ms(prompts, args.device, args.repeats * 4)
    decode_ms = interleaved_median_ms(decodes, args.device, args.repeats * 20)
    inference = {name: {"prompt": prompt_ms[name], "decode_step": decode_ms[name]} for name in prompts}
    for name, row in inference.items():
        print(f"  {name:10s} prompt {row['prompt'][clock]:7.2f} ms   decode step {row['decode_step'][clock]:6.2f} ms ({clock})")

    batched = interleaved_median_ms({"gather_forced": batched_decode(True, args.device),
                                     "bank_choice": batched_decode(False, args.device)}, args.device, args.repeats * 4)
    print(f"batched decoding step (batch 64, per-sample top-2 of 8, default targets): gathered per sample "
          f"{batched['gather_forced'][clock]:.1f} ms, the bank's choice (fused) {batched['bank_choice'][clock]:.1f} ms "
          f"({clock})")

    t = {name: row[clock] for name, row in train.items()}
    d = {name: row["decode_step"][clock] for name, row in inference.items()}
    p = {name: row["prompt"][clock] for name, row in inference.items()}
    ratios = {
        "plain_lora_vs_no_adapters": t["plain_lora"] / t["no_adapters"],
        "fused_1_vs_plain_lora": t["fused_1"] / t["plain_lora"],
        "fused_8_vs_plain_lora": t["fused_8"] / t["plain_lora"],
        "fused_32_vs_plain_lora": t["fused_32"] / t["plain_lora"],
        "fused_8_top2_vs_plain_lora": t["fused_8_top2"] / t["plain_lora"],
        "fused_32_top2_vs_plain_lora": t["fused_32_top2"] / t["plain_lora"],
        "loop_8_vs_fused_8": t["loop_8"] / t["fused_8"],
        "loop_32_vs_fused_32": t["loop_32"] / t["fused_32"],
        "merged_8_prompt_vs_plain": p["merged_8"] / p["plain"],
        "fused_8_prompt_vs_plain": p["fused_8"] / p["plain"],
        "merged_8_decode_vs_plain": d["merged_8"] / d["plain"],
        "fused_8_decode_vs_plain": d["fused_8"] / d["plain"],
        "fused_32_decode_vs_plain": d["fused_32"] / d["plain"],
        "batched_decode_gathered_vs_bank_choice": batched["gather_forced"][clock] / batched["bank_choice"][clock],
    }
    print("ratios (" + clock + "): " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    save_json(args.out, {
        "model": {"hidden": 256, "layers": 4, "heads": 4, "intermediate": 688, "vocab": 2515},
        "batch": BATCH, "length": LENGTH, "rank": RANK, "targets": TARGETS,
        "device": args.device, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(), "repeats": args.repeats,
        "ratio_clock": clock, "top2_experts_used": used,
        "train_step": train, "inference": inference, "batched_decode_b64_top2_of_8": batched, "ratios": ratios,
    })
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
