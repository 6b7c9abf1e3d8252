"""Constrained, KV-cached, batched motion-token generation and the `l2emg generate` command."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from l2emg.commands.generate import generate as generate_command  # noqa: E402
from l2emg.config import TokenizerConfig, load_config, save_config  # noqa: E402
from l2emg.errors import CheckpointError  # noqa: E402
from l2emg.generator import load_generator  # noqa: E402
from l2emg.lm.backbone import build_tiny_backbone  # noqa: E402
from l2emg.lm.generate import codes_to_motion  # noqa: E402
from l2emg.lm.motion_lm import MotionLM  # noqa: E402
from l2emg.motion.bvh import read_bvh  # noqa: E402
from l2emg.motion.features import FEATURE_DIM  # noqa: E402
from l2emg.tokenizer.api import MotionTokenizer  # noqa: E402
from l2emg.tokenizer.vqvae import VQVAE  # noqa: E402
from lm_fixtures import CAPTIONS, roughen, tiny_lm_config  # noqa: E402

torch.set_num_threads(1)
CODEBOOK = 32
PROMPTS = CAPTIONS[::9][:10]  # ten captions of varied lengths


def tiny_motion_tokenizer() -> MotionTokenizer:
    torch.manual_seed(0)
    cfg = TokenizerConfig(width=32, code_dim=16, codebook_size=CODEBOOK, depth=2, window=16, batch_size=8,
                          warmup_steps=2, iterations=8, lr_decay_steps=[6], eval_batch_size=8)
    std = np.full(FEATURE_DIM, 0.05, np.float32)
    return MotionTokenizer(VQVAE(cfg), np.zeros(FEATURE_DIM, np.float32), std)


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory) -> Path:
    lm = tiny_lm_config(warmup_steps=20)
    return build_tiny_backbone(lm, CAPTIONS, tmp_path_factory.mktemp("gen") / "base", progress=False)


@pytest.fixture(scope="module")
def lm(backbone_dir) -> MotionLM:
    """A backbone + motion vocabulary with noisy weights, so generations differ across prompts and steps."""
    bundle = MotionLM.from_backbone(backbone_dir, tiny_motion_tokenizer().codebook, seed=0)
    roughen(bundle.model, seed=1, scale=2.0)
    return bundle


def _lists(codes):
    return [c.tolist() for c in codes]


def test_generations_vary(lm):
    """The fixture model is not degenerate, so the equality tests below mean something."""
    codes = _lists(lm.generate(PROMPTS, max_codes=12))
    assert len({tuple(c) for c in codes}) >= 3
    assert max(len(set(c)) for c in codes) >= 2  # the position matters
    assert len({len(c) for c in codes}) >= 2  # some stop at <eom> before max_codes


def test_kv_cache_generation_equals_full_recompute(lm):
    cached = lm.generate(PROMPTS, max_codes=12, batch_size=5)
    uncached = lm.generate(PROMPTS, max_codes=12, batch_size=5, use_cache=False)
    assert _lists(cached) == _lists(uncached)


def test_batched_generation_equals_one_by_one(lm):
    batched = lm.generate(PROMPTS, max_codes=12, batch_size=len(PROMPTS))
    single = lm.generate(PROMPTS, max_codes=12, batch_size=1)
    assert _lists(batched) == _lists(single)
    # The first-step logits agree numerically too (left padding is masked and positions skip it).
    from l2emg.lm.prompts import encode_prompts, position_ids

    batch = encode_prompts(lm.tokenizer, lm.vocab, PROMPTS[:3])
    with torch.no_grad():
        logits = lm.model(**batch, position_ids=position_ids(batch["attention_mask"])).logits[:, -1]
        for row, caption in enumerate(PROMPTS[:3]):
            alone = encode_prompts(lm.tokenizer, lm.vocab, [caption])
            ref = lm.model(**alone).logits[0, -1]
            assert torch.allclose(logits[row], ref, atol=1e-4)


def test_constrained_decoding_only_emits_codes_then_stops_at_eom(lm):
    from l2emg.lm.motion_head import decoding_ids

    allowed = decoding_ids(lm.vocab)  # the K codes, then <eom>: the only logits decoding computes
    boost = torch.zeros(len(allowed))
    widths = []

    def add_boost(module, inputs, output):  # logits (B, L, R) + boost
        widths.append(output.logits.shape[-1])
        output.logits = output.logits + boost
        return output

    handle = lm.model.register_forward_hook(add_boost)
    try:
        codes = lm.generate(PROMPTS[:4], max_codes=7)
        assert all(1 <= len(c) <= 7 and c.min() >= 0 and c.max() < CODEBOOK for c in codes)
        assert set(widths) == {CODEBOOK + 1}  # no text-token logit is ever formed
        # <eom> overwhelmingly likely: every generation stops right after its one mandatory code.
        boost[-1] = 1e4
        assert [len(c) for c in lm.generate(PROMPTS[:4], max_codes=7)] == [1, 1, 1, 1]
        # <eom> impossible: every generation runs to the length bound.
        boost[-1] = -1e4
        assert [len(c) for c in lm.generate(PROMPTS[:4], max_codes=7)] == [7, 7, 7, 7]
        # one code overwhelmingly likely: it is what every step emits
        boost.zero_()
        boost[5] = 1e4
        assert all(set(c.tolist()) == {5} for c in lm.generate(PROMPTS[:4], max_codes=7))
    finally:
        handle.remove()
    assert lm.model.get_output_embeddings().weight.shape[0] > CODEBOOK + 1  # the full head is back
    # Per-sample stopping: samples end at different lengths within one batch.
    lengths = {len(c) for c in lm.generate(CAPTIONS[:30], max_codes=40, greedy=False, seed=0, batch_size=30)}
    assert all(1 <= n <= 40 for n in lengths) and len(lengths) >= 3


def test_sampling_is_reproducible_with_a_seed(lm):
    a = lm.generate(PROMPTS, max_codes=10, greedy=False, temperature=1.2, top_k=8, seed=7)
    b = lm.generate(PROMPTS, max_codes=10, greedy=False, temperature=1.2, top_k=8, seed=7)
    c = lm.generate(PROMPTS, max_codes=10, greedy=False, temperature=1.2, top_k=8, seed=8)
    assert _lists(a) == _lists(b) and _lists(a) != _lists(c)
    # top_k=1 sampling is greedy decoding.
    assert _lists(lm.generate(PROMPTS, max_codes=10, greedy=False, top_k=1, seed=3)) == _lists(lm.generate(PROMPTS, max_codes=10))


def test_classifier_free_guidance_combines_conditional_and_unconditional_logits(lm):
    from l2emg.lm.prompts import encode_prompts, position_ids

    # Scale 1 is plain decoding; other scales change the choice, with and without the KV cache.
    plain = _lists(lm.generate(PROMPTS, max_codes=10))
    assert _lists(lm.generate(PROMPTS, max_codes=10, guidance_scale=1.0)) == plain
    guided = lm.generate(PROMPTS, max_codes=10, guidance_scale=3.0, batch_size=4)
    assert _lists(guided) != plain
    assert _lists(guided) == _lists(lm.generate(PROMPTS, max_codes=10, guidance_scale=3.0, use_cache=False))
    # The first code is the argmax of u + s (c - u) over the codes: c from the prompt, u from the caption-less one.
    batch = encode_prompts(lm.tokenizer, lm.vocab, [PROMPTS[0], ""])
    with torch.no_grad():
        logits = lm.model(**batch, position_ids=position_ids(batch["attention_mask"])).logits[:, -1]
    mixed = logits[1] + 3.0 * (logits[0] - logits[1])
    codes = torch.tensor(list(lm.vocab.code_ids))
    assert int(guided[0][0]) == int(mixed[codes].argmax())
    with pytest.raises(ValueError, match="guidance_scale"):
        lm.generate(PROMPTS, guidance_scale=0.0)


def test_finished_rows_leave_the_batch_and_nothing_else_changes(backbone_dir, monkeypatch):
    """Rows that ended leave the decoding batch (KV cache, mask, positions and the experts' per-sample
    routing selected alike): codes as the full recompute gives them, greedy, sampled (the same seeded
    draws as without compaction) and guided."""
    from l2emg.continual.lora import inject_experts
    from l2emg.continual.lora.routing import RoutingState
    from l2emg.lm import generate as generation

    bundle = MotionLM.from_backbone(backbone_dir, tiny_motion_tokenizer().codebook, seed=0)
    roughen(bundle.model, seed=1, scale=2.0)
    bank = inject_experts(bundle.model, ["q_proj", "v_proj", "lm_head"], rank=4, alpha=8.0)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        bank.add_expert(trainable=False, generator=generator)
    with torch.no_grad():
        for layer in bank.layers.values():
            for b in layer.lora_B:
                b.normal_(0.0, 0.05, generator=generator)

    def route(input_ids, attention_mask):  # a per-sample gate that depends on the prompt
        weights = torch.softmax(torch.stack([input_ids.sum(1) % 5, input_ids.sum(1) % 7, input_ids[:, -2] % 3], 1)
                                .float(), dim=1)
        bank.set_routing(weights)
        return None

    prompts = CAPTIONS[:24]
    selected = []
    original = RoutingState.select_rows
    monkeypatch.setattr(RoutingState, "select_rows", lambda self, index: (selected.append(len(index)),
                                                                          original(self, index))[1])

    def run(compact: bool, **kwargs):
        monkeypatch.setattr(generation, "COMPACT_MIN", 1 if compact else 10**6)
        return _lists(bundle.generate(prompts, max_codes=12, batch_size=len(prompts), prepare=route, **kwargs))

    reference = run(False, use_cache=False)
    assert len({len(c) for c in reference}) >= 3  # rows end at different steps
    assert run(True) == reference and selected  # compacted (routing rows selected), same codes
    selected.clear()
    assert run(True, greedy=False, seed=4) == run(False, greedy=False, seed=4) and selected
    selected.clear()
    assert run(True, guidance_scale=2.0) == run(False, guidance_scale=2.0, use_cache=False)
    assert selected and all(n % 2 == 0 for n in selected)  # guided: both halves of a sample kept together


def test_prepare_hook_sets_state_and_replaces_prompt_embeddings(lm):
    calls = []
    embed = lm.model.get_input_embeddings()

    def same(input_ids, attention_mask):
        calls.append(tuple(input_ids.shape))
        return embed(input_ids)

    plain = lm.generate(PROMPTS, max_codes=8, batch_size=4)
    assert _lists(lm.generate(PROMPTS, max_codes=8, batch_size=4, prepare=same)) == _lists(plain)
    assert [c[0] for c in calls] == [4, 4, 2]  # once per batch

    def shifted(input_ids, attention_mask):
        e = embed(input_ids)
        return e + 3.0 * e.std() * attention_mask[..., None].float()

    moved = lm.generate(PROMPTS, max_codes=8, batch_size=4, prepare=shifted)
    assert _lists(moved) != _lists(plain)
    assert _lists(moved) == _lists(lm.generate(PROMPTS, max_codes=8, batch_size=4, prepare=shifted, use_cache=False))


def test_codes_to_motion_gives_features_and_joints():
    tokenizer = tiny_motion_tokenizer()
    features, joints = codes_to_motion(tokenizer, [np.array([1, 2, 3]), np.array([0])])
    assert [f.shape for f in features] == [(12, FEATURE_DIM), (4, FEATURE_DIM)]
    assert [j.shape for j in joints] == [(12, 22, 3), (4, 22, 3)]
    assert all(np.isfinite(j).all() for j in joints)


@pytest.fixture(scope="module")
def run_dir(backbone_dir, tmp_path_factory) -> Path:
    """A run folder as the trainer leaves it: config.yaml, tokenizer/, lm/ (untrained motion rows)."""
    run = tmp_path_factory.mktemp("run")
    config = load_config("tiny")
    config.lm = tiny_lm_config(max_codes=6)
    save_config(config, run / "config.yaml")
    motion_tokenizer = tiny_motion_tokenizer()
    motion_tokenizer.save_pretrained(run / "tokenizer")
    MotionLM.from_backbone(backbone_dir, motion_tokenizer.codebook).save(run / "lm")
    return run


def _finished_method_run(run_dir: Path, name: str = "seqlora-unseen-o1", seed: int = 3):
    """A trained-looking SeqLoRA run: random adapters saved as the trainer saves them."""
    from l2emg.config import read_saved_config
    from l2emg.continual.checkpoint import save_checkpoint
    from l2emg.continual.methods import method_class
    from l2emg.runs import MethodRunDir

    config = read_saved_config(run_dir / "config.yaml")
    lm = MotionLM.load(run_dir / "lm")
    method = method_class("seqlora")(config, lm)
    method.setup()
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in method.bank.expert_parameters(0):
            p.normal_(0.0, 0.5)
    method_run = MethodRunDir(run_dir / "methods" / name)
    save_config(config, method_run.config_path)
    save_checkpoint(method, "seqlora", 0, {}, method_run.checkpoint_dir(0))
    method_run.mark_finished("seqlora", 0)
    method.eval()
    return method_run, lm, method


def test_load_generator_restores_a_method_through_the_registry(run_dir, tmp_path, monkeypatch):
    import json
    import shutil

    generator = load_generator(run_dir)  # no trained method: the plain backbone
    assert generator.method_dir is None and generator.prepare is None
    codes, features, joints = generator.motions(PROMPTS[:2])
    assert all(1 <= len(c) <= 6 for c in codes)  # max_codes from the run's config.yaml
    assert [j.shape[0] for j in joints] == [4 * len(c) for c in codes]
    plain = _lists(generator.codes(PROMPTS[:4], seed=5, greedy=True, max_codes=6))

    (run_dir / "methods" / "unfinished-unseen-o1").mkdir(parents=True)  # no adapter.json: not offered
    try:
        method_run, lm, method = _finished_method_run(run_dir)
        assert json.loads(method_run.adapter_path.read_text()) == {"method": "seqlora", "checkpoint": "checkpoints/step_00"}
        expected = _lists(lm.generate(PROMPTS[:4], seed=5, greedy=True, max_codes=6, prepare=method.prepare_generation))
        assert expected != plain  # the adapters change the generations, so the comparison below means something
        for choice in (None, "seqlora", "seqlora-unseen-o1"):
            generator = load_generator(run_dir, method=choice)
            assert generator.method_dir == method_run.path
            assert _lists(generator.codes(PROMPTS[:4], seed=5, greedy=True, max_codes=6)) == expected

        # A moved run, loaded from another working directory, uses its own checkpoint.
        moved = tmp_path / "moved"
        shutil.copytree(run_dir, moved)
        monkeypatch.chdir(tmp_path)
        assert _lists(load_generator(moved).codes(PROMPTS[:4], seed=5, greedy=True, max_codes=6)) == expected
        # An adapter.json of older runs (a loader and a path relative to where training started) still loads.
        old = {"loader": "l2emg.continual.trainer:load_adapters", "method": "seqlora",
               "checkpoint": "runs/default/methods/seqlora-unseen-o1/checkpoints/step_00"}
        (moved / "methods" / "seqlora-unseen-o1" / "adapter.json").write_text(json.dumps(old))
        assert _lists(load_generator(moved).codes(PROMPTS[:4], seed=5, greedy=True, max_codes=6)) == expected
        shutil.rmtree(moved / "methods" / "seqlora-unseen-o1" / "checkpoints")
        with pytest.raises(CheckpointError, match="not found"):
            load_generator(moved)

        with pytest.raises(CheckpointError, match="no finished method named 'unfinished'"):
            load_generator(run_dir, method="unfinished")
        _finished_method_run(run_dir, "seqlora-mixed-o1")
        with pytest.raises(CheckpointError, match="several trained methods"):
            load_generator(run_dir)
        with pytest.raises(CheckpointError, match="several finished methods named 'seqlora'"):
            load_generator(run_dir, method="seqlora")
    finally:
        shutil.rmtree(run_dir / "methods")
    with pytest.raises(CheckpointError, match="no language model"):
        load_generator(tmp_path)


def test_generate_cli_writes_gif_npy_and_bvh(run_dir, tmp_path):
    app = typer.Typer()
    app.command()(generate_command)
    out = tmp_path / "jog.gif"
    result = CliRunner().invoke(app, ["a person jogs in a circle, sadly", "--run", str(run_dir), "--out", str(out),
                                      "--sample", "--temperature", "0.9", "--top-k", "10", "--seed", "1"])
    assert result.exit_code == 0, result.output
    joints = np.load(tmp_path / "jog.npy")
    assert joints.ndim == 3 and joints.shape[1:] == (22, 3) and 4 <= joints.shape[0] <= 24
    assert out.stat().st_size > 0 and out.read_bytes()[:3] == b"GIF"
    bvh_joints, fps = read_bvh(tmp_path / "jog.bvh")
    assert bvh_joints.shape == joints.shape and fps == pytest.approx(20)
    assert "plain backbone" in result.output
    bad = CliRunner().invoke(app, ["walk", "--run", str(run_dir), "--out", str(tmp_path / "x.png")])
    assert bad.exit_code != 0
