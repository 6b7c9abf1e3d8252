"""The output layer restricted to the motion vocabulary (decoding, lm.motion_softmax training) and
bf16 autocast detection."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from l2emg.continual.lora import ExpertLinear, RoutingState
from l2emg.lm.motion_head import RowHead, restricted_head, to_row_labels, training_ids
from l2emg.lm.prompts import IGNORE_INDEX
from l2emg.lm.vocab import MotionVocab
from l2emg.utils import precision


def tiny_llama(vocab_size: int = 120) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2, vocab_size=vocab_size, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def test_restricted_logits_are_the_full_logits_rows_and_the_head_comes_back():
    model = tiny_llama()
    ids = torch.randint(0, 120, (3, 7))
    rows = torch.tensor([5, 90, 17, 3])
    full = model(input_ids=ids).logits
    head = model.get_output_embeddings()
    with restricted_head(model, rows):
        assert model.config.vocab_size == 4
        part = model(input_ids=ids).logits
    assert model.get_output_embeddings() is head and model.config.vocab_size == 120
    torch.testing.assert_close(part, full[..., rows])


def test_lora_lm_head_gives_the_same_rows_with_per_sample_experts():
    torch.manual_seed(0)
    routing = RoutingState()
    layer = ExpertLinear(torch.nn.Linear(16, 50), rank=4, alpha=8, routing=routing)
    for _ in range(3):
        layer.add_expert()
        torch.nn.init.normal_(layer.lora_B[-1])
    routing.set(torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.3, 0.7]]))
    x = torch.randn(2, 5, 16)
    rows = torch.tensor([49, 0, 7])
    torch.testing.assert_close(RowHead(layer, rows)(x), layer(x)[..., rows])
    layer.merge(torch.tensor([0.2, 0.0, 0.8]))  # merged: the base weight carries the experts
    routing.set(None)
    torch.testing.assert_close(RowHead(layer, rows)(x), layer(x)[..., rows])


def test_motion_softmax_loss_is_cross_entropy_over_the_target_vocabulary():
    model = tiny_llama()
    vocab = MotionVocab(som_id=100, eom_id=101, first_code_id=102, codebook_size=16)
    head_ids = training_ids(vocab, eos_id=2)
    assert head_ids.tolist() == [*range(102, 118), 101, 2]
    ids = torch.tensor([[1, 7, 8, 100, 105, 110, 101, 2]])
    labels = torch.tensor([[IGNORE_INDEX] * 4 + [105, 110, 101, 2]])
    rows = to_row_labels(labels, head_ids)
    assert rows.tolist() == [[IGNORE_INDEX] * 4 + [3, 8, 16, 17]]
    with restricted_head(model, head_ids):
        loss = model(input_ids=ids, labels=rows).loss
    logits = model(input_ids=ids).logits[0, 3:7][:, head_ids]  # positions predicting the targets
    torch.testing.assert_close(loss, F.cross_entropy(logits, torch.tensor([3, 8, 16, 17])))
    with pytest.raises(ValueError, match="not a motion-target token"):
        to_row_labels(torch.tensor([[IGNORE_INDEX, 7]]), head_ids)


def test_bf16_is_auto_only_where_the_cpu_has_bf16_units(monkeypatch):
    monkeypatch.setattr(precision, "_cpuinfo", lambda: ("Some CPU", frozenset({"avx2", "avx512_bf16"})))
    assert precision.resolve_precision("auto") == "bf16"
    assert isinstance(precision.autocast("auto"), torch.autocast)
    monkeypatch.setattr(precision, "_cpuinfo", lambda: ("AMD EPYC", frozenset({"avx2"})))
    assert precision.resolve_precision("auto") == "fp32"
    assert not isinstance(precision.autocast("auto"), torch.autocast)
    assert precision.resolve_precision("bf16") == "bf16" and precision.resolve_precision("fp32") == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.resolve_precision("fp8")
    assert precision.machine()["cpu"] == "AMD EPYC"
