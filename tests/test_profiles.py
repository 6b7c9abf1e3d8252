"""The GPU profiles (`paper`: LLaMA-2-7B as the paper; `gpu`: a mid-size model on one 80 GB GPU) resolve
and validate on CPU, and the paper profile's code path — a local Hugging Face LLaMA folder in bf16,
attention-only LoRA, gradient accumulation, T2M-GPT's MultiModality subset — runs end to end on a tiny
locally-saved LLaMA with the sizes of the tiny profile."""

from __future__ import annotations

import math

import pytest
import torch

from l2emg.config import load_config, read_saved_config, save_config


@pytest.mark.parametrize("profile", ["paper", "gpu"])
def test_gpu_profiles_resolve_and_round_trip(profile, tmp_path):
    config = load_config(profile)
    assert config.profile == profile
    assert config.lm.backbone and config.lm.dtype == "bfloat16"  # a local HF folder or a packaged model, in bf16
    attention = ["q_proj", "k_proj", "v_proj", "o_proj"]
    # paper: LLaMA-2's attention only; gpu: SmolLM2 (packaged), whose new motion rows learn through embedding adapters
    assert config.lora.target_modules == (attention if profile == "paper" else attention + ["embed_tokens", "lm_head"])
    assert (config.lm.backbone == "smollm2-135m") == (profile == "gpu")
    save_config(config, tmp_path / "config.yaml")
    assert read_saved_config(tmp_path / "config.yaml") == config


def test_paper_profile_follows_t2m_gpt_protocol():
    config = load_config("paper")
    assert config.lm.backbone.endswith("Llama-2-7b-hf")
    assert config.tokenizer.width == config.tokenizer.code_dim == config.tokenizer.codebook_size == 512
    assert config.tokenizer.iterations == 300_000
    assert config.train.eval_generations == 30 and config.train.eval_mm_captions == 100
    assert config.evaluator.mm_max_texts == 100 and config.evaluator.mm_pairs == 10
    assert config.train.eval_repeats == config.evaluator.eval_repeats == 20
    assert config.train.grad_accum > 1


def test_paper_code_path_on_a_tiny_local_hf_llama(tmp_path, monkeypatch):
    from l2emg.continual.trainer import StreamTrainer
    from l2emg.lm.backbone import build_tiny_backbone
    from l2emg.pipeline import prepare_run

    tiny = load_config("tiny")
    texts = [f"a person {v} {m}" for v in ("walks", "runs", "jumps", "waves") for m in ("happily", "sadly")]
    backbone = build_tiny_backbone(tiny.lm.model_copy(update={"warmup_steps": 0}), texts, tmp_path / "hf-llama",
                                   progress=False)
    paper = load_config("paper", [
        f"lm.backbone={backbone}", "lm.generation_batch_size=8", "stream.max_subsets=2",
        "train.epochs=1", "train.batch_size=4", "train.grad_accum=3", "train.eval_generations=3",
        "train.eval_mm_captions=2", "train.eval_repeats=2", "train.report_samples=0"])
    # Size overrides: the tiny profile's data, tokenizer and evaluator; everything else is the paper's.
    config = paper.model_copy(update={"data": tiny.data, "tokenizer": tiny.tokenizer, "preview": tiny.preview,
                                      "evaluator": tiny.evaluator.model_copy(update={"eval_repeats": 2})})
    run = prepare_run(tmp_path / "run", config, progress=False, previews=False)
    assert (run.path / "lm").exists() and not run.backbone_dir.exists()  # the HF folder is used, not built

    trainer = StreamTrainer(run, config, "esmoe", progress=False)
    generated: list[int] = []
    original = StreamTrainer.generate_features

    def counting(self, captions, seed, greedy=False):
        generated.append(len(captions))
        return original(self, captions, seed, greedy)

    monkeypatch.setattr(StreamTrainer, "generate_features", counting)
    results = trainer.run_stream()
    assert trainer.lm.model.dtype == torch.bfloat16
    assert {p.dtype for p in trainer.method.trainable_parameters()} == {torch.float32}  # adapters stay fp32
    assert trainer.method_run.adapter_path.exists()

    # Gradient accumulation: one update per 3 micro-batches of 4.
    first = results["steps"][0]["train"]
    assert first["updates"] == math.ceil(math.ceil(first["examples"] / 4) / 3)
    # The redrawn protocol: one generation set per repetition (2), plus MultiModality as T2M-GPT (3
    # generations of the first 2 test motions of each scenario), all of an evaluation point's
    # generations in one decoding call.
    tests = [len(trainer.test_ids(s)) for s in trainer.stream.subsets]
    assert generated == 2 * [2 * sum(tests) + 3 * 2 * len(tests)]  # 2 steps × (2 sets + 3 × 2 per scenario)
    for metrics in results["steps"][-1]["results"].values():
        assert math.isfinite(metrics["multimodality"]["mean"])
