"""Does the generator follow the text? MTL learning curves of the language model's conditioning.

    .venv/bin/python benchmarks/conditioning.py --run-dir runs/default [--setups chosen,full,before]
        [--updates 100,300,672] [--eval-motions 256] [--threads 2] [--set key=value …]

Needs a run folder whose shared stages are done (`l2emg run --no-stream`). For each set-up, trains
like MTL (the union of every scenario's training examples, batch train.batch_size, input-code
corruption, AdamW with the trainer's warm-up + cosine schedule over the largest update count) and
evaluates at each update count on the same `--eval-motions` test motions (drawn once, seeded; one
sampled generation per caption at T = 1, the full distribution — T2M-GPT's protocol;
`train.eval_repeats` repetitions): top-1 R-Precision, emotion F1 and FID, each mean ± 95 % CI.
The curve is one run's, read at several points (its lr schedule spans the largest count).

Set-ups (each on top of the profile and `--set`):
  chosen  the profile as shipped (its `lora` budget and `train.lr`)
  before  the set-up shipped before the conditioning work: rank-8 LoRA on q/k/v/o only, lr 2e-3
  full    full fine-tuning of every backbone weight (embeddings included), lr 1e-3: the ceiling
  cfg     `chosen` trained with caption dropout 0.1 (the unconditional model of classifier-free guidance)

After the last count, probes on the final model:
  decoding  greedy against sampling (T = 1) — metrics and mean generated length in frames;
  prefix    the first k true codes given, the rest sampled (k = --prefix): how much of the gap is the
            first codes;
  guidance  classifier-free guidance scales (--guidance; meaningful only for `cfg`).
Prints a table and saves benchmarks/results/conditioning.json (plus the machine and thread count).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
SETUPS = {
    "chosen": [],
    "before": ["lora.target_modules=[q_proj,k_proj,v_proj,o_proj]", "lora.rank_pattern={}",
               "lora.alpha_pattern={}", "train.lr=0.002"],
    "full": ["train.lr=0.001"],
    "cfg": ["train.caption_dropout=0.1"],
}


def _metrics(evaluation: dict) -> dict:
    out = {}
    for key, name in (("r_precision_top1", "top1"), ("emotion_f1", "f1"), ("fid", "fid")):
        value = evaluation["metrics"].get(key)
        out[name] = None if value is None else {"mean": value["mean"], "ci95": value["ci95"]}
    return out


class Probe:
    """The run's frozen pieces (data, codes, motion tokenizer, evaluator) and the evaluation motions."""

    def __init__(self, run_dir: Path, config, eval_motions: int, repeats: int):
        import numpy as np

        from l2emg.continual.trainer import StreamTrainer
        from l2emg.runs import RunDir

        self.trainer = StreamTrainer(RunDir(run_dir), config, method="mtl", progress=False)
        self.trainer._load()
        t = self.trainer
        test = sorted(i for s in t.stream.subsets for i in s.test)
        rng = np.random.default_rng(0)
        self.ids = sorted(rng.choice(test, size=min(eval_motions, len(test)), replace=False).tolist())
        self.captions = [t.dataset.by_id(i).captions[0].text for i in self.ids]
        self.repeats = repeats

    def evaluate(self, codes: list, seed: int) -> dict:
        from l2emg.eval.evaluate import evaluate_motions

        t = self.trainer
        features = t.motion_tokenizer.decode_codes(codes)
        evaluation = evaluate_motions(t.evaluator, dict(zip(self.ids, features)), t.dataset, "test", self.ids,
                                      captions=dict(zip(self.ids, self.captions)), repeats=self.repeats, seed=seed)
        result = _metrics(evaluation)
        result["mean_frames"] = float(sum(len(f) for f in features) / len(features))
        return result

    def generate(self, seed: int, greedy: bool = False, guidance: float = 1.0, prefix: int = 0) -> list:
        import numpy as np
        import torch

        from l2emg.lm.generate import _generate_batch
        from l2emg.lm.prompts import encode_prompts

        t = self.trainer
        model, vocab, method = t.lm.model, t.lm.vocab, t.method
        method.eval()
        device = model.get_input_embeddings().weight.device
        generator = torch.Generator(device=device).manual_seed(seed)
        out = []
        for start in range(0, len(self.ids), 64):
            ids, captions = self.ids[start:start + 64], self.captions[start:start + 64]
            if guidance != 1.0:
                captions = captions + [""] * len(captions)
            prompts = encode_prompts(t.lm.tokenizer, vocab, captions)
            input_ids, mask = prompts["input_ids"], prompts["attention_mask"]
            given = [np.asarray(t.codes[i][:prefix], dtype=np.int64) for i in ids]
            if prefix:
                forced = torch.stack([vocab.codes_to_ids(g) for g in given])
                if guidance != 1.0:
                    forced = torch.cat([forced, forced])
                input_ids = torch.cat([input_ids, forced], dim=1)
                mask = torch.cat([mask, torch.ones_like(forced)], dim=1)
            with torch.no_grad():
                codes = _generate_batch(model, vocab, input_ids.to(device), mask.to(device),
                                        max_codes=t.config.lm.max_codes - prefix, greedy=greedy, temperature=1.0,
                                        top_k=None, generator=generator, prepare=method.prepare_generation,
                                        use_cache=True, guidance_scale=guidance)
            out += [np.concatenate([g, c]) for g, c in zip(given, codes)]
        return out


def run_setup(name: str, args) -> dict:
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from l2emg.config import load_config
    from l2emg.continual.examples import collate_examples, corrupt_motion_codes, drop_captions
    from l2emg.continual.methods import ScenarioContext
    from l2emg.lm.prompts import prompt_ids
    from l2emg.utils.schedule import warmup_cosine
    from l2emg.utils.seeding import seed_everything

    config = load_config(args.profile, SETUPS[name] + list(args.set or []))
    cfg = config.train
    seed_everything(cfg.seed)
    probe = Probe(Path(args.run_dir), config, args.eval_motions, cfg.eval_repeats)
    t = probe.trainer
    method = t.method
    examples = t._examples([i for s in t.stream.subsets for i in s.train])
    method.train()
    method.begin_scenario(0, ScenarioContext(0, "all scenarios", examples))
    if name == "full":
        method.bank.set_trainable([])
        params = [p for n, p in method.model.named_parameters() if "lora_" not in n]
        for p in params:
            p.requires_grad_(True)
    else:
        params = method.trainable_parameters()
    trained = sum(p.numel() for p in params)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    counts = sorted(int(c) for c in args.updates.split(","))
    total = counts[-1]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total, cfg.warmup_steps,
                                                                                   cfg.min_lr_ratio))
    generator = torch.Generator().manual_seed(cfg.seed)
    corruption = torch.Generator().manual_seed(cfg.seed + 1)
    dropout = torch.Generator().manual_seed(cfg.seed + 2)
    unconditional = prompt_ids(t.lm.tokenizer, t.lm.vocab, "")
    pad_id = t.lm.tokenizer.pad_token_id or 0
    loader = DataLoader(examples, batch_size=cfg.batch_size, shuffle=True, generator=generator,
                        collate_fn=lambda b: collate_examples(drop_captions(b, unconditional, cfg.caption_dropout,
                                                                            dropout), pad_id))
    curve, losses, step, started = [], [], 0, time.time()
    print(f"[{name}] {trained:,} trained parameters, {len(examples)} examples, {total} updates", flush=True)
    while step < total:
        for batch in loader:
            method.train()
            batch["input_ids"] = corrupt_motion_codes(batch["input_ids"], t.lm.vocab, cfg.code_corruption, corruption)
            loss = method(batch)["loss"]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            step += 1
            if step in counts:
                point = {"updates": step, "loss": float(np.mean(losses[-20:])),
                         "seconds": round(time.time() - started, 1), **probe.evaluate(probe.generate(seed=step), seed=0)}
                curve.append(point)
                print(f"[{name}] {_row(point)}", flush=True)
            if step >= total:
                break
    probes: dict = {"decoding": {}, "prefix": {}, "guidance": {}}
    if not args.no_probes:
        probes["decoding"]["sample_t1"] = {k: v for k, v in curve[-1].items() if k not in ("updates", "loss", "seconds")}
        probes["decoding"]["greedy"] = probe.evaluate(probe.generate(seed=1, greedy=True), seed=0)
        for k in args.prefix:
            probes["prefix"][k] = probe.evaluate(probe.generate(seed=1, prefix=k), seed=0)
        if cfg.caption_dropout > 0:
            for g in args.guidance:
                probes["guidance"][g] = probe.evaluate(probe.generate(seed=1, guidance=g), seed=0)
    for kind, values in probes.items():
        for key, value in values.items():
            print(f"[{name}] {kind} {key}: {_row(value)}", flush=True)
    return {"overrides": SETUPS[name] + list(args.set or []), "trained_parameters": trained,
            "examples": len(examples), "curve": curve, "probes": probes}


def _cell(value: dict | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value['mean']:.{digits}f} ± {value['ci95']:.{digits}f}"


def _row(point: dict) -> str:
    head = f"{point['updates']:>4} updates, loss {point['loss']:.2f}: " if "updates" in point else ""
    return (f"{head}top-1 {_cell(point['top1'])}, F1 {_cell(point['f1'])}, FID {_cell(point['fid'])}, "
            f"{point['mean_frames']:.0f} frames")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--run-dir", default="runs/default", help="run folder with the shared stages done")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--setups", default="chosen,full,before", help=f"comma list of {', '.join(SETUPS)}")
    parser.add_argument("--updates", default="100,300,672", help="update counts at which to evaluate")
    parser.add_argument("--eval-motions", type=int, default=256)
    parser.add_argument("--prefix", type=lambda s: [int(x) for x in s.split(",") if x], default=[1, 2, 4, 8])
    parser.add_argument("--guidance", type=lambda s: [float(x) for x in s.split(",") if x], default=[2.0, 3.0])
    parser.add_argument("--no-probes", action="store_true", help="only the learning curve (no decoding/prefix/guidance probes)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", help="config override for every set-up (repeatable)")
    parser.add_argument("--out", default=str(HERE / "results" / "conditioning.json"))
    args = parser.parse_args()
    from l2emg.runs import RunDir

    if not RunDir(args.run_dir).lm_dir.is_dir():
        print(f"{args.run_dir}: no language model yet; run `l2emg run --no-stream --run-dir {args.run_dir}` first",
              file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    names = [s for s in args.setups.split(",") if s]
    unknown = [s for s in names if s not in SETUPS]
    if unknown:
        parser.error(f"unknown set-ups {unknown}; known: {', '.join(SETUPS)}")
    results = {"machine": f"{platform.node()} ({os.cpu_count()} cores)", "threads": args.threads,
               "run_dir": args.run_dir, "profile": args.profile, "eval_motions": args.eval_motions,
               "updates": args.updates, "setups": {}}
    out = Path(args.out)
    if out.exists():  # keep the set-ups measured earlier (each set-up can run in its own process)
        previous = json.loads(out.read_text())
        results["setups"].update(previous.get("setups", {}))
    for name in names:
        results["setups"][name] = run_setup(name, args)
        from l2emg.utils.io import atomic_write_text

        atomic_write_text(out, json.dumps(results, indent=2) + "\n")
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
