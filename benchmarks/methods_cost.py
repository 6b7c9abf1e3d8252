"""Cost of every continual method relative to SeqLoRA, mid-stream, on the default-size embedded LLaMA.

Methods: SeqLoRA (the reference), ES-MoE and the five baselines (`lwf`, `olora`, `sapt`, `epi`,
`progprompt`), each built from the default profile (its LoRA budget and method settings) and brought
to a realistic mid-stream state by the real lifecycle: scenarios 0-2 begun and ended (their
parameters moved off their initial values in between, so older experts / prefixes / prompts are
non-zero; SAPT samples its pseudo prompts, EPI stores its statistics, ES-MoE its dictionary and
reflection memory, ProgPrompt folds its MLP), then `begin_scenario` of the 4th scenario (step 3):
expert-based methods hold 4 experts, LwF has its teacher, EPI 4 prefixes, ProgPrompt 4 prompts.

Measured, interleaved round-robin (one training step / one request per method per round, medians):
(a) the training step (forward + backward + clip + AdamW, one persistent optimiser per method as
    the trainer has, batch 32 of ~96-token examples with the trainer's code corruption) relative to
    SeqLoRA, with its forward / backward / update parts;
(b) generation tokens/s relative to SeqLoRA: `generate_codes` (greedy, KV cache, the method's
    `prepare_generation` hook) for exactly 49 motion tokens per sample (`<eom>` disabled, so every
    method decodes the same number), at batch 1 and batch 8 (captions of the four scenarios);
(c) trainable parameters (what `trainable_parameters()` gives the optimiser) and stored parameters
    (every element of `adapter_state()`: trained, frozen and buffers);
(d) memory: on CPU the "training-state bytes" = stored tensors + gradients of the trainable
    parameters + AdamW state (exact sizes, not activations; RSS is too coarse on CPU); on CUDA also
    the peak of `torch.cuda.max_memory_allocated` over one step above what was allocated before it.

    .venv/bin/python benchmarks/methods_cost.py [--device cpu|cuda] [--rounds 7] [--steps 1] [--threads N] [--set lwf.weight=1]

Prints a table and writes benchmarks/results/methods_cost.json (atomically). On CPU the ratios use
process CPU time (a machine shared with other jobs disturbs it far less than wall time); both are
saved. Targets (the issue): every method's step ≤ 1.5× SeqLoRA's, LwF's ≤ 1.8×.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from l2emg.config import Config, load_config  # noqa: E402
from l2emg.continual.examples import build_examples, collate_examples, corrupt_motion_codes  # noqa: E402
from l2emg.continual.methods import METHODS, ScenarioContext  # noqa: E402
from l2emg.data.stream import INSTRUCTION, InstructionSample  # noqa: E402
from l2emg.labels import SCENARIOS  # noqa: E402
from l2emg.lm.generate import generate_codes  # noqa: E402
from l2emg.lm.motion_lm import MotionLM  # noqa: E402
from l2emg.lm.vocab import MotionVocab  # noqa: E402
from l2emg.utils.io import save_json  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from esmoe_overhead import build_lm, fresh  # noqa: E402  (the same default-size model and its copies)

RESULTS = Path(__file__).parent / "results" / "methods_cost.json"
NAMES = ("seqlora", "esmoe", "lwf", "olora", "sapt", "epi", "progprompt")  # seqlora first: the reference
STEP = 3  # the 4th scenario: 4 experts / prefixes / prompts, LwF with its teacher
BATCH = 32
EXAMPLES_PER_SCENARIO = 128
CODES = (60, 72)  # motion-token targets; with the ~25-token prompt about 96 tokens per example
DECODE_TOKENS = 49  # lm.max_codes of the default profile
GEN_BATCHES = (1, 8)
TARGETS = {"max_step_ratio": 1.5, "lwf_max_step_ratio": 1.8}

VERBS = ["walks", "runs", "jumps", "dances", "waves", "kicks", "spins", "crouches", "bows", "juggles"]
MOODS = {"happily": "happy", "sadly": "sad", "angrily": "angry", "with fear": "fearful",
         "in surprise": "surprised", "with disgust": "disgusted", "calmly": "neutral"}
PLACES = ["across the kitchen", "on the court", "on the stage", "for the audience"]  # one per scenario used


def captions(scenario: int) -> list[tuple[str, str]]:
    place = PLACES[scenario % len(PLACES)]
    return [(f"a person {v} {place} and then turns around, {m}", e) for v in VERBS for m, e in MOODS.items()]


class FixedLengthVocab(MotionVocab):
    """The motion vocabulary with `<eom>` never allowed: every sample decodes exactly `max_codes` tokens."""

    def motion_token_mask(self, vocab_size: int, device=None) -> torch.Tensor:
        mask = super().motion_token_mask(vocab_size, device)
        mask[self.eom_id] = False
        return mask


def scenario_context(lm: MotionLM, config: Config, scenario: int, count: int) -> ScenarioContext:
    rng = np.random.default_rng(scenario)
    pool = captions(scenario)
    samples, codes = [], {}
    for k in range(count):
        caption, emotion = pool[int(rng.integers(len(pool)))]
        motion_id = f"s{scenario}m{k:04d}"
        codes[motion_id] = rng.integers(0, config.tokenizer.codebook_size, int(rng.integers(*CODES))).tolist()
        samples.append(InstructionSample(INSTRUCTION, caption, emotion, SCENARIOS[scenario], motion_id, "s"))
    examples = build_examples(samples, codes, lm.tokenizer, lm.vocab, config.lm.max_length)
    return ScenarioContext(scenario, SCENARIOS[scenario], examples)


@torch.no_grad()
def move_off_init(method, seed: int) -> None:
    """Stand-in for a scenario's training: every trainable tensor moves by a small random amount
    (LoRA B factors leave zero, so the expert is no longer a no-op)."""
    g = torch.Generator().manual_seed(seed)
    for p in method.trainable_parameters():
        p.add_((torch.randn(p.shape, generator=g) * 0.02).to(device=p.device, dtype=p.dtype))


def mid_stream(name: str, lm: MotionLM, config: Config, contexts: list[ScenarioContext], device: str):
    """The method after scenarios 0 … STEP-1 and `begin_scenario(STEP)`, as the trainer drives it."""
    method = METHODS[name](config, fresh(lm))
    method.setup()
    method.to(device)
    for step in range(STEP):
        method.train()
        method.begin_scenario(step, contexts[step])
        move_off_init(method, seed=100 * step + 1)
        method.end_scenario(step, contexts[step])
    method.train()
    method.begin_scenario(STEP, contexts[STEP])
    return method


def unique(params) -> list[torch.nn.Parameter]:
    seen, out = set(), []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


@dataclass
class Trainer:
    """One method's training step as the trainer runs it (persistent AdamW, clip, set_to_none)."""

    method: torch.nn.Module
    clip: float
    lr: float
    weight_decay: float

    def __post_init__(self):
        self.params = unique(self.method.trainable_parameters())
        self.optimizer = torch.optim.AdamW(self.params, lr=self.lr, weight_decay=self.weight_decay)

    def step(self, batch, sync) -> dict[str, float]:
        """Wall and CPU seconds of the whole step and CPU (wall on CUDA) seconds of its parts."""
        self.method.train()
        sync()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        out = self.method(batch)
        sync()
        wall1, cpu1 = time.perf_counter(), time.process_time()
        out["loss"].backward()
        sync()
        wall2, cpu2 = time.perf_counter(), time.process_time()
        torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        sync()
        wall3, cpu3 = time.perf_counter(), time.process_time()
        return {"wall": wall3 - wall0, "cpu": cpu3 - cpu0, "forward_cpu": cpu1 - cpu0, "backward_cpu": cpu2 - cpu1,
                "update_cpu": cpu3 - cpu2, "forward_wall": wall1 - wall0, "backward_wall": wall2 - wall1,
                "update_wall": wall3 - wall2}

    def optimizer_state_bytes(self) -> int:
        return nbytes(v for state in self.optimizer.state.values() for v in state.values() if torch.is_tensor(v))


def generate(method, lm: MotionLM, vocab: MotionVocab, prompts: list[str], sync) -> tuple[float, float]:
    """(wall, cpu) tokens/s of one `generate_codes` request of len(prompts) samples × DECODE_TOKENS."""
    method.eval()
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    codes = generate_codes(lm.model, lm.tokenizer, vocab, prompts, max_codes=DECODE_TOKENS, greedy=True,
                           batch_size=len(prompts), prepare=method.prepare_generation)
    sync()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if any(len(c) != DECODE_TOKENS for c in codes):
        raise RuntimeError(f"{method.name}: decoded {[len(c) for c in codes]} codes, expected {DECODE_TOKENS} each")
    tokens = DECODE_TOKENS * len(prompts)
    return tokens / wall, tokens / max(cpu, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=7, help="round-robin rounds (median taken)")
    parser.add_argument("--steps", type=int, default=1, help="training steps per method per round (interleaved)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed training steps per method first")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--set", action="append", default=[], help="config override, e.g. lwf.weight=1")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    on_cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if on_cuda else (lambda: None)
    unit = "wall" if on_cuda else "cpu"
    load_before = os.getloadavg()
    started = time.perf_counter()

    config = load_config("default", args.set)
    lm = build_lm(config, device, [c for s in range(len(PLACES)) for c, _ in captions(s)])
    contexts = [scenario_context(lm, config, s, EXAMPLES_PER_SCENARIO) for s in range(STEP + 1)]
    batch = collate_examples(contexts[STEP].examples[:BATCH], lm.tokenizer.pad_token_id)
    batch["input_ids"] = corrupt_motion_codes(batch["input_ids"], lm.vocab, config.train.code_corruption,
                                              torch.Generator().manual_seed(3))
    batch = {k: v.to(device) for k, v in batch.items()}
    tokens_per_example = float(batch["attention_mask"].sum(1).float().mean())

    methods = {}
    for name in NAMES:
        methods[name] = mid_stream(name, lm, config, contexts, device)
        print(f"built {name}", file=sys.stderr)
    trainers = {name: Trainer(m, config.train.grad_clip, config.train.lr, config.train.weight_decay)
                for name, m in methods.items()}

    # -- (a) training step ----------------------------------------------------------------------
    for trainer in trainers.values():  # warm-up: allocator, kernels, AdamW state
        for _ in range(args.warmup):
            trainer.step(batch, sync)
    steps: dict[str, list[dict[str, float]]] = {k: [] for k in trainers}
    for r in range(args.rounds):
        for _ in range(args.steps):  # interleaved step by step: slow drifts of a shared machine hit all alike
            for name, trainer in trainers.items():
                steps[name].append(trainer.step(batch, sync))
        print(f"training round {r + 1}/{args.rounds}", file=sys.stderr)

    def median(name: str, key: str) -> float:
        return statistics.median(s[key] for s in steps[name])

    training = {}
    for name in trainers:
        training[name] = {
            "wall_s_per_step": median(name, "wall"), "cpu_s_per_step": median(name, "cpu"),
            "ratio_vs_seqlora": median(name, unit) / median("seqlora", unit),
            "parts_s": {part: median(name, f"{part}_{unit}") for part in ("forward", "backward", "update")},
        }

    # -- (b) generation -------------------------------------------------------------------------
    vocab = FixedLengthVocab(lm.vocab.som_id, lm.vocab.eom_id, lm.vocab.first_code_id, lm.vocab.codebook_size,
                             lm.vocab.seed)
    test = [[c for c, _ in captions(s)][3::9] for s in range(STEP + 1)]  # a few captions of each scenario
    mixed = [c for group in zip(*test) for c in group]  # scenario 0, 1, 2, 3, 0, 1, …
    requests = {b: [[mixed[(k * b + i) % len(mixed)] for i in range(b)] for k in range(args.rounds)]
                for b in GEN_BATCHES}  # round k's request of b captions (the same for every method)
    for method in methods.values():
        for b in GEN_BATCHES:
            generate(method, lm, vocab, requests[b][0], sync)
    gen = {b: {k: {"wall": [], "cpu": []} for k in methods} for b in GEN_BATCHES}
    for r in range(args.rounds):
        for b in GEN_BATCHES:
            for name, method in methods.items():  # interleaved request by request
                wall, cpu = generate(method, lm, vocab, requests[b][r], sync)
                gen[b][name]["wall"].append(wall)
                gen[b][name]["cpu"].append(cpu)
        print(f"generation round {r + 1}/{args.rounds}", file=sys.stderr)
    generation = {
        f"batch{b}": {name: {"wall_tokens_per_s": statistics.median(gen[b][name]["wall"]),
                             "cpu_tokens_per_s": statistics.median(gen[b][name]["cpu"]),
                             "ratio_vs_seqlora": statistics.median(gen[b][name][unit])
                             / statistics.median(gen[b]["seqlora"][unit])}
                      for name in methods}
        for b in GEN_BATCHES}

    # -- (c) parameters, (d) memory -------------------------------------------------------------
    sizes = {}
    for name, trainer in trainers.items():
        state = methods[name].adapter_state()
        sizes[name] = {
            "trainable_parameters": sum(p.numel() for p in trainer.params),
            "stored_parameters": sum(t.numel() for t in state.values()),
            "stored_bytes": nbytes(state.values()),
            "gradient_bytes": nbytes(trainer.params),
            "optimizer_state_bytes": trainer.optimizer_state_bytes(),
            "structure": methods[name].structure(),
        }
        sizes[name]["training_state_bytes"] = (sizes[name]["stored_bytes"] + sizes[name]["gradient_bytes"]
                                               + sizes[name]["optimizer_state_bytes"])
    if on_cuda:  # a separate phase: one step per method, peak above what was allocated before it
        for name, trainer in trainers.items():
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            trainer.step(batch, sync)
            sizes[name]["cuda_peak_step_bytes"] = torch.cuda.max_memory_allocated() - before

    ratios = {name: training[name]["ratio_vs_seqlora"] for name in trainers}
    limits = {name: TARGETS["lwf_max_step_ratio"] if name == "lwf" else TARGETS["max_step_ratio"] for name in trainers}
    result = {
        "device": device if not on_cuda else torch.cuda.get_device_name(),
        "machine": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "timing": "process CPU time" if not on_cuda else "wall time (synchronised)",
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "total_wall_s": time.perf_counter() - started,
        "model": {"hidden": config.lm.tiny_hidden, "layers": config.lm.tiny_layers,
                  "vocab": int(lm.model.get_input_embeddings().weight.shape[0])},
        "lora": config.lora.model_dump(),
        "state": f"after begin_scenario({STEP}) (the 4th scenario), scenarios 0-{STEP - 1} begun, moved off "
                 f"their initialisation and ended",
        "batch": BATCH, "tokens_per_example": tokens_per_example, "rounds": args.rounds, "steps": args.steps,
        "warmup_steps": args.warmup, "decode_tokens": DECODE_TOKENS,
        "training": training, "generation": generation, "sizes": sizes,
        "training_state_bytes": "stored tensors (adapter_state) + gradients of the trainable parameters + AdamW "
                                "state; activations not included" + ("" if not on_cuda else
                                                                      "; cuda_peak_step_bytes: peak over one step"),
        "targets": {name: limits[name] for name in trainers},
        "meets_targets": {name: ratios[name] <= limits[name] for name in trainers},
    }
    save_json(RESULTS, result)

    print(f"device {result['device']}, {result['threads']} thread(s), batch {BATCH} × {tokens_per_example:.0f} "
          f"tokens, ratios from {result['timing']}, {args.rounds} rounds; mid-stream at scenario {STEP + 1}")
    header = (f"{'method':<12}{unit + ' s/step':>11}{'× SeqLoRA':>10}{'fwd/bwd/upd s':>21}{'gen b1 ×':>10}"
              f"{'gen b8 ×':>10}{'trainable':>11}{'stored':>10}{'state MB':>10}  target")
    print(header)
    for name in trainers:
        row, size, parts = training[name], sizes[name], training[name]["parts_s"]
        split = f"{parts['forward']:.3f}/{parts['backward']:.3f}/{parts['update']:.3f}"
        ok = "pass" if result["meets_targets"][name] else "FAIL"
        print(f"{name:<12}{row[f'{unit}_s_per_step']:>11.3f}{row['ratio_vs_seqlora']:>10.2f}{split:>21}"
              f"{generation['batch1'][name]['ratio_vs_seqlora']:>10.2f}{generation['batch8'][name]['ratio_vs_seqlora']:>10.2f}"
              f"{size['trainable_parameters']:>11,}{size['stored_parameters']:>10,}"
              f"{size['training_state_bytes'] / 1e6:>10.2f}  {ok} (≤ {limits[name]}×)")
    seq = generation["batch1"]["seqlora"][f"{unit}_tokens_per_s"], generation["batch8"]["seqlora"][f"{unit}_tokens_per_s"]
    print(f"SeqLoRA generation: {seq[0]:.0f} tokens/s at batch 1, {seq[1]:.0f} at batch 8 ({unit}); "
          f"load {load_before[0]:.2f} -> {result['load_average_after'][0]:.2f}; "
          f"{result['total_wall_s']:.0f} s -> {RESULTS}")


if __name__ == "__main__":
    main()
