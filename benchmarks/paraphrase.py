"""Language generalisation: does a model follow captions reworded in words it never saw in training?

    python benchmarks/paraphrase.py --entry runs/default:mtl:llama-4m --entry runs/smollm2:mtl:smollm2-135m
    python benchmarks/paraphrase.py --entry runs/smol-rows-new:mtl:smollm2-135m:"1 epoch, word rows frozen"

Anchor: SATO (ACM MM 2024) showed that T2M-GPT and MoMask break under synonym perturbations of
HumanML3D's captions. Here every test motion's first caption (the one the stream evaluation uses) is
rewritten two ways by the rule table `benchmarks/paraphrase/rules.json`:

* `oov`: phrases replaced by synonyms / rephrasings that keep the action, direction and emotion,
  chosen so that each caption gets at least one word absent from every training caption (the
  out-of-vocabulary word fraction is measured against the training captions and reported);
* `in_vocab`: an in-vocabulary rewording: the emotion adverbial moved to the other end of the
  sentence, or an emotion word swapped for another of the same emotion from the data's own lists.

Each entry (RUN_DIR:METHOD:BACKBONE) generates from the original captions and from both sets with the
same seeds, and all three are scored by the run's evaluator **against the original captions and
labels**: top-1/top-3 R-Precision, emotion F1, FID with their 95 % CIs. The paraphrase set is written
to `benchmarks/paraphrase/set.json` (kept in the repo); rows go to `benchmarks/results/paraphrase.json`
(rows of other entries already there are kept) with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
RULES = HERE / "paraphrase" / "rules.json"
SET_FILE = HERE / "paraphrase" / "set.json"
OUT = HERE / "results" / "paraphrase.json"
SEED = 1234


def words(text: str) -> list[str]:
    return re.findall(r"[a-z][a-z'-]*", text.lower())


def apply_rules(caption: str, rules: dict[str, str]) -> str:
    """Replace each rule phrase (longest first, whole words) once; replaced text is not rewritten."""
    pieces: list[tuple[str, bool]] = [(caption, False)]  # (text, already rewritten)
    for phrase in sorted(rules, key=lambda p: (-len(p.split()), -len(p))):
        pattern = re.compile(rf"(?<![a-z-]){re.escape(phrase)}(?![a-z-])")
        out: list[tuple[str, bool]] = []
        for text, done in pieces:
            if done:
                out.append((text, done))
                continue
            last = 0
            for m in pattern.finditer(text):
                out += [(text[last:m.start()], False), (rules[phrase], True)]
                last = m.end()
            out.append((text[last:], False))
        pieces = out
    return " ".join("".join(t for t, _ in pieces).split())


def reorder(caption: str, emotion: str) -> str:
    """An in-vocabulary rewording of a caption of `emotion` (see the module docstring)."""
    from l2emg.data.synth.captions import ADJECTIVES, ADVERBIALS

    for adv in sorted(ADVERBIALS.get(emotion, ()), key=len, reverse=True):
        if caption.endswith(" " + adv):
            return f"{adv} {caption[: -len(adv) - 1]}"
        if caption.startswith(adv + " "):
            return f"{caption[len(adv) + 1:]} {adv}"
    for options in (ADVERBIALS.get(emotion, ()), ADJECTIVES.get(emotion, ())):
        for word in sorted(options, key=len, reverse=True):
            if re.search(rf"(?<![a-z]){re.escape(word)}(?![a-z])", caption):
                other = next(o for o in options if o != word)
                return re.sub(rf"(?<![a-z]){re.escape(word)}(?![a-z])", other, caption, count=1)
    return caption


def build_set(dataset, train_words: set[str]) -> dict:
    rules = json.loads(RULES.read_text())["oov"]
    items = []
    for record in dataset.split("test"):
        original = record.captions[0].text
        oov = apply_rules(original, rules)
        new = [w for w in words(oov) if w not in train_words]
        items.append({"motion_id": record.motion_id, "scenario": record.scenario, "emotion": record.emotion,
                      "original": original, "oov": oov, "in_vocab": reorder(original, record.emotion),
                      "oov_words": new})
    return {"rules": str(RULES.relative_to(HERE.parent)), "items": items}


def oov_fraction(texts: list[str], train_words: set[str]) -> float:
    tokens = [w for t in texts for w in words(t)]
    return round(sum(w not in train_words for w in tokens) / max(len(tokens), 1), 4)


def score(entry: str, paraphrases: dict, dataset, train_words: set[str], repeats: int,
          sets: tuple[str, ...] = ("original", "in_vocab", "oov"), precision: str | None = None) -> list[dict]:
    """Generate from each set's captions (seed SEED) and score against the original captions; with
    `precision`, decode in it instead of the run's lm.precision."""
    from l2emg.config import read_saved_config
    from l2emg.eval.evaluate import evaluate_motions
    from l2emg.eval.evaluator import Evaluator
    from l2emg.generator import load_generator
    from l2emg.runs import RunDir
    from l2emg.utils.precision import machine, resolve_precision

    run_dir, method, backbone, *rest = entry.split(":")
    variant = rest[0] if rest else ""
    run = RunDir(run_dir)
    config = read_saved_config(run.config_path)
    generator = load_generator(run_dir, method)
    if precision is not None:
        generator.lm_config = generator.lm_config.model_copy(update={"precision": precision})
    evaluator = Evaluator.from_pretrained(run.evaluator_dir)
    items = paraphrases["items"]
    ids = [it["motion_id"] for it in items]
    originals = {it["motion_id"]: it["original"] for it in items}
    cpu = machine()["cpu"]
    rows = []
    for name in sets:
        texts = [it[name] for it in items]
        started = time.time()
        codes = generator.codes(texts, greedy=False, temperature=config.train.eval_temperature,
                                top_k=config.train.eval_top_k, batch_size=config.train.eval_batch_size, seed=SEED)
        features = generator.motion_tokenizer.decode_codes(codes)
        seconds = time.time() - started
        result = evaluate_motions(evaluator, dict(zip(ids, features)), dataset, "test", ids, captions=originals,
                                  repeats=repeats, seed=0)
        m = result["metrics"]
        rows.append({"backbone": backbone, "method": method, "variant": variant, "set": name, "n": len(ids),
                     "oov_word_fraction": oov_fraction(texts, train_words),
                     "top1": round(m["r_precision_top1"]["mean"], 4), "top1_ci95": round(m["r_precision_top1"]["ci95"], 4),
                     "top3": round(m["r_precision_top3"]["mean"], 4), "top3_ci95": round(m["r_precision_top3"]["ci95"], 4),
                     "emotion_f1": round(m["emotion_f1"]["mean"], 4), "emotion_f1_ci95": round(m["emotion_f1"]["ci95"], 4),
                     "fid": round(m["fid"]["mean"], 4), "fid_ci95": round(m["fid"]["ci95"], 4),
                     "run": f"{run_dir}/methods/{generator.method_dir.name}" if generator.method_dir else run_dir,
                     "generation_seconds": round(seconds, 1),
                     "precision": resolve_precision(generator.lm_config.precision), "cpu": cpu,
                     "emotion_style": config.data.emotion_style})
        print(f"{backbone:14s} {method:8s} {name:9s} top1 {rows[-1]['top1']:.3f}  top3 {rows[-1]['top3']:.3f}  "
              f"emotion F1 {rows[-1]['emotion_f1']:.3f}  FID {rows[-1]['fid']:.3f}  ({seconds:.0f} s)", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entry", action="append", required=True,
                        help="RUN_DIR:METHOD:BACKBONE[:VARIANT], e.g. runs/default:mtl:llama-4m (repeatable; VARIANT: "
                        "a label for a run trained with other settings, kept beside the plain row); BACKBONE is the "
                             "label written to the JSON (llama-4m or smollm2-135m)")
    parser.add_argument("--repeats", type=int, default=20, help="evaluation repeats per set (CIs)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from l2emg.data.reader import load_dataset
    from l2emg.runs import RunDir
    from l2emg.utils.io import save_json
    from l2emg.utils.precision import machine

    first = RunDir(args.entry[0].split(":")[0])
    dataset = load_dataset(first.data_dir)
    train_words = {w for r in dataset.split("train") for c in r.captions for w in words(c.text)}
    paraphrases = build_set(dataset, train_words)
    without = [it["motion_id"] for it in paraphrases["items"] if not it["oov_words"]]
    save_json(SET_FILE, {**paraphrases, "captions_without_oov_word": without,
                         "oov_word_fraction": oov_fraction([it["oov"] for it in paraphrases["items"]], train_words)})
    print(f"{len(paraphrases['items'])} test captions; out-of-vocabulary words in the oov set: "
          f"{oov_fraction([it['oov'] for it in paraphrases['items']], train_words):.1%}; captions without one: "
          f"{len(without)}", flush=True)
    previous = json.loads(OUT.read_text()) if OUT.exists() else {"rows": []}
    rows = previous["rows"]
    for entry in args.entry:
        new = score(entry, paraphrases, dataset, train_words, args.repeats)
        keys = {(r["backbone"], r["method"], r["variant"]) for r in new}
        rows = [r for r in rows if (r["backbone"], r["method"], r.get("variant", "")) not in keys] + new
        save_json(OUT, {"rows": rows, "machine": machine(), "date": time.strftime("%Y-%m-%d"),
                        "seed": SEED, "repeats": args.repeats, "set": str(SET_FILE.relative_to(HERE.parent))})
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    sys.exit(main())
