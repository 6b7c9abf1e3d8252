"""The language-model layer: text tokenizer, embedded backbone, motion vocabulary, prompts, bundle."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from l2emg.errors import CheckpointError, DataError  # noqa: E402
from l2emg.lm.backbone import build_tiny_backbone, load_backbone, read_warmup_record, text_loss  # noqa: E402
from l2emg.lm.motion_lm import MotionLM  # noqa: E402
from l2emg.lm.prompts import IGNORE_INDEX, INSTRUCTION, collate, encode_example, encode_prompts, format_prompt  # noqa: E402
from l2emg.lm.text_tokenizer import build_text_tokenizer  # noqa: E402
from l2emg.lm.vocab import MotionVocab, add_motion_tokens, configure_motion_embeddings  # noqa: E402
from lm_fixtures import CAPTIONS, roughen, tiny_lm_config  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory) -> Path:
    return build_tiny_backbone(tiny_lm_config(), CAPTIONS, tmp_path_factory.mktemp("lm") / "base", progress=False)


def _codebook(k: int = 32, d: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(k, d, generator=torch.Generator().manual_seed(seed))


# ---- text tokenizer -------------------------------------------------------------------------------


def test_text_tokenizer_round_trips_captions(tmp_path):
    from transformers import AutoTokenizer

    tokenizer = build_text_tokenizer(CAPTIONS + [INSTRUCTION], vocab_size=400)
    assert {tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token, tokenizer.unk_token} == {
        "<s>", "</s>", "<pad>", "<unk>"}
    samples = CAPTIONS[::37] + ["A Person leaps over a puddle!  Then stops.", "someone waves (slowly), 3 times"]
    for caption in samples:
        ids = tokenizer(caption)["input_ids"]
        assert ids[0] == tokenizer.bos_token_id
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == caption.lower()
    # BPE merges learned something: a frequent caption takes far fewer tokens than characters.
    assert len(tokenizer(CAPTIONS[0])["input_ids"]) < len(CAPTIONS[0]) / 2
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert reloaded(samples[-1])["input_ids"] == tokenizer(samples[-1])["input_ids"]


# ---- backbone -------------------------------------------------------------------------------------


def test_tiny_backbone_builds_saves_loads_and_warms_up(backbone_dir):
    record = read_warmup_record(backbone_dir)
    assert record["loss_after"] < 0.6 * record["loss_before"], record
    model, tokenizer = load_backbone(backbone_dir)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    assert model.get_input_embeddings().weight is not model.get_output_embeddings().weight  # untied (LLaMA-2)
    assert not any(p.name.startswith(".base.tmp") for p in backbone_dir.parent.iterdir())
    # The saved weights are the warmed-up ones: the reloaded model reproduces the recorded held-out loss
    # far below a fresh model's.
    seqs = [tokenizer(format_prompt(t))["input_ids"] + [tokenizer.eos_token_id] for t in CAPTIONS[::13]]
    assert text_loss(model, seqs, tokenizer.pad_token_id) < 0.7 * record["loss_before"]
    # A finished folder is reused untouched.
    stamp = (backbone_dir / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_backbone(tiny_lm_config(), CAPTIONS, backbone_dir, progress=False) == backbone_dir
    assert (backbone_dir / "model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("remove, named", [
    (["config.json"], "config.json"),
    (["model.safetensors"], "weights"),
    (["tokenizer.json", "tokenizer_config.json"], "tokenizer"),
])
def test_backbone_dir_with_missing_files_is_refused(backbone_dir, tmp_path, remove, named):
    broken = tmp_path / "broken"
    shutil.copytree(backbone_dir, broken)
    for name in remove:
        (broken / name).unlink()
    with pytest.raises(CheckpointError, match=named) as err:
        load_backbone(broken)
    assert str(broken) in str(err.value)
    with pytest.raises(CheckpointError, match="not found"):
        load_backbone(tmp_path / "nowhere")


# ---- motion vocabulary ----------------------------------------------------------------------------


def test_vocab_extension_keeps_text_rows_and_builds_motion_rows(backbone_dir):
    model, tokenizer = load_backbone(backbone_dir)
    old_in = model.get_input_embeddings().weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()
    codebook = _codebook()
    codebook[5] = codebook[4]  # two identical codes must get identical rows
    vocab = add_motion_tokens(model, tokenizer, codebook, seed=3)
    new_in = model.get_input_embeddings().weight.detach()
    new_out = model.get_output_embeddings().weight.detach()
    assert new_in.shape[0] == len(tokenizer) == old_in.shape[0] + 32 + 2
    assert torch.equal(new_in[: old_in.shape[0]], old_in) and torch.equal(new_out[: old_out.shape[0]], old_out)
    assert list(vocab.code_ids) == tokenizer.convert_tokens_to_ids([f"<motion_{k}>" for k in range(32)])
    assert tokenizer.convert_tokens_to_ids(["<som>", "<eom>"]) == [vocab.som_id, vocab.eom_id]
    ids = torch.tensor(vocab.token_ids())
    for new, old in ((new_in, old_in), (new_out, old_out)):
        norms = new[ids].norm(dim=1)
        assert torch.allclose(norms, old.norm(dim=1).mean().expand_as(norms), rtol=1e-4)
    code_rows = new_in[list(vocab.code_ids)]
    assert torch.allclose(code_rows[4], code_rows[5])
    # The projection is fixed by the seed: a second build gives the same rows; another seed does not.
    model2, tokenizer2 = load_backbone(backbone_dir)
    add_motion_tokens(model2, tokenizer2, codebook, seed=3)
    assert torch.equal(model2.get_input_embeddings().weight[ids], new_in[ids])
    model3, tokenizer3 = load_backbone(backbone_dir)
    add_motion_tokens(model3, tokenizer3, codebook, seed=4)
    assert not torch.allclose(model3.get_input_embeddings().weight[ids], new_in[ids])
    with pytest.raises(ValueError, match="already holds motion tokens"):
        add_motion_tokens(model, tokenizer, codebook)


def test_motion_vocab_ids_mask_and_json(tmp_path):
    vocab = MotionVocab(som_id=110, eom_id=111, first_code_id=100, codebook_size=10, seed=2)
    assert vocab.codes_to_ids([0, 9, 3]).tolist() == [100, 109, 103]
    assert vocab.ids_to_codes(torch.tensor([100, 109])).tolist() == [0, 9]
    with pytest.raises(ValueError):
        vocab.codes_to_ids([10])
    with pytest.raises(ValueError):
        vocab.ids_to_codes([111])
    mask = vocab.motion_token_mask(120)
    assert mask.dtype == torch.bool and mask.sum() == 11 and mask[100:110].all() and mask[111] and not mask[110]
    vocab.save(tmp_path / "v.json")
    assert MotionVocab.load(tmp_path / "v.json") == vocab
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(CheckpointError, match="bad.json"):
        MotionVocab.load(tmp_path / "bad.json")


def _lm_loss(model, tokenizer, vocab):
    batch = collate([encode_example(tokenizer, vocab, c, np.arange(6) % 32, 128) for c in CAPTIONS[:4]],
                    tokenizer.pad_token_id)
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss


def test_motion_rows_frozen_unless_flag_then_only_motion_rows_train(backbone_dir):
    model, tokenizer = load_backbone(backbone_dir)
    vocab = add_motion_tokens(model, tokenizer, _codebook())
    emb, out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    # Default: frozen (a LoRA-style setup trains other parameters; the embeddings get no gradient).
    assert not emb.requires_grad and not out.requires_grad
    _lm_loss(model, tokenizer, vocab).backward()
    assert emb.grad is None and out.grad is None
    # Flag on: only motion rows receive gradient, and an optimiser step leaves text rows bit-identical.
    model.zero_grad(set_to_none=True)
    params = configure_motion_embeddings(model, vocab, train=True)
    assert len(params) == 2
    before = [p.detach().clone() for p in params]
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0)
    _lm_loss(model, tokenizer, vocab).backward()
    ids = torch.tensor(vocab.token_ids())
    text = torch.ones(emb.shape[0], dtype=torch.bool)
    text[ids] = False
    for p in params:
        assert p.grad[text].abs().max() == 0
        assert p.grad[ids].abs().max() > 0
    optimizer.step()
    for p, b in zip(params, before):
        assert torch.equal(p.detach()[text], b[text])
        assert not torch.equal(p.detach()[ids], b[ids])
    # Switching back freezes again and removes the hooks.
    assert configure_motion_embeddings(model, vocab, train=False) == []
    assert not emb.requires_grad


# ---- prompts --------------------------------------------------------------------------------------


def test_prompt_labels_mask_the_prompt_and_batches_pad(backbone_dir):
    model, tokenizer = load_backbone(backbone_dir)
    vocab = add_motion_tokens(model, tokenizer, _codebook())
    codes = [np.array([3, 1, 4, 1, 5]), np.array([9, 2])]
    examples = [encode_example(tokenizer, vocab, c, k, 128, motion_id=f"m{i}")
                for i, (c, k) in enumerate(zip(["a person walks sadly", "a person jumps for joy, arms high"], codes))]
    for example, k in zip(examples, codes):
        n = example["prompt_length"]
        ids, labels = example["input_ids"], example["labels"]
        assert ids[0] == tokenizer.bos_token_id and ids[n - 1] == vocab.som_id
        assert labels[:n] == [IGNORE_INDEX] * n
        assert labels[n:] == ids[n:] == [*(vocab.first_code_id + k).tolist(), vocab.eom_id, tokenizer.eos_token_id]
        assert tokenizer.decode(ids[:n], skip_special_tokens=True).startswith(INSTRUCTION.lower())
    batch = collate(examples, tokenizer.pad_token_id)
    lengths = [len(e["input_ids"]) for e in examples]
    assert batch["input_ids"].shape == (2, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert batch["prompt_mask"].sum(1).tolist() == [e["prompt_length"] for e in examples]
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()
    assert (batch["labels"][batch["prompt_mask"]] == IGNORE_INDEX).all()
    # The masked loss is the mean over the 7 + 4 target tokens only.
    loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    assert torch.isfinite(loss)
    # Generation prompts: left-padded, each ending in <som>, same tokens as the training prompt.
    prompts = encode_prompts(tokenizer, vocab, ["a person walks sadly", "a person jumps for joy, arms high"])
    assert (prompts["input_ids"][:, -1] == vocab.som_id).all()
    assert prompts["attention_mask"][:, -1].all() and prompts["attention_mask"][:, 0].tolist() != [1, 1]
    row0 = prompts["input_ids"][0][prompts["attention_mask"][0].bool()].tolist()
    assert row0 == examples[0]["input_ids"][: examples[0]["prompt_length"]]


def test_too_long_caption_or_bad_codes_are_refused(backbone_dir):
    model, tokenizer = load_backbone(backbone_dir)
    vocab = add_motion_tokens(model, tokenizer, _codebook())
    long_caption = "a person walks very " * 40 + "sadly"
    with pytest.raises(DataError, match=r"motion 'M042'.*walks very.*exceeds the context of 64") as err:
        encode_example(tokenizer, vocab, long_caption, np.zeros(10, int), 64, motion_id="M042")
    assert "prompt (" in str(err.value)
    with pytest.raises(DataError, match="no motion codes"):
        encode_example(tokenizer, vocab, "a person walks", np.zeros(0, int), 64)
    with pytest.raises(DataError, match=r"\[0, 32\)"):
        encode_example(tokenizer, vocab, "a person walks", np.array([40]), 64)
    with pytest.raises(DataError, match="context holds 64"):
        encode_prompts(tokenizer, vocab, [long_caption], max_length=64)


# ---- the bundle -----------------------------------------------------------------------------------


@pytest.mark.parametrize("by_reference", [False, True])
def test_motion_lm_save_load_round_trip(backbone_dir, tmp_path, by_reference):
    lm = MotionLM.from_backbone(backbone_dir, _codebook(), seed=1)
    roughen(lm.model)
    if by_reference:  # only motion rows + tokenizer saved; the (unmodified) base is referenced
        lm = MotionLM.from_backbone(backbone_dir, _codebook(), seed=1)
        lm.save(tmp_path / "lm", base_dir=backbone_dir)
        assert not (tmp_path / "lm" / "backbone").exists()
    else:
        lm.save(tmp_path / "lm")
        assert (tmp_path / "lm" / "backbone" / "config.json").exists()
    again = MotionLM.load(tmp_path / "lm")
    assert again.vocab == lm.vocab
    for a, b in zip(lm.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a, b)
    assert not again.model.get_input_embeddings().weight.requires_grad
    captions = CAPTIONS[:3]
    assert [c.tolist() for c in again.generate(captions, max_codes=6)] == [c.tolist() for c in lm.generate(captions, max_codes=6)]
    (tmp_path / "lm" / "motion_vocab.json").unlink()
    with pytest.raises(CheckpointError, match="motion_vocab.json"):
        MotionLM.load(tmp_path / "lm")
