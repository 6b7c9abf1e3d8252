"""LoRA expert bank: injection, fused mixture, routing, merging, isolation of frozen experts, state."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from l2emg.config import LoRAConfig, load_config
from l2emg.continual.lora import ExpertBank, ExpertEmbedding, ExpertLinear, inject_experts, inject_experts_from_config
from l2emg.continual.lora import layers as lora_layers
from l2emg.errors import ConfigError
from l2emg.lm.generate import cache_kwarg

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=4, vocab_size=100, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def randomize_experts(bank: ExpertBank, seed: int = 1, scale: float = 0.05) -> None:
    """Give every expert a non-zero B (a fresh expert is a no-op) so that mixtures are visible."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for e in range(bank.num_experts):
            for p in bank.expert_parameters(e):
                p.copy_(torch.randn(p.shape, generator=g) * scale)


def tokens(batch: int = 3, length: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 100, (batch, length), generator=torch.Generator().manual_seed(seed))


def logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_injection_wraps_exactly_the_targets_and_freezes_the_base():
    model = tiny_llama()
    ids = tokens()
    before = logits(model, ids)
    bank = inject_experts(model, TARGETS, rank=4, alpha=8)
    expected = {f"model.layers.{i}.self_attn.{t}" for i in range(2) for t in TARGETS}
    assert set(bank.layers) == expected
    wrapped = {n for n, m in model.named_modules() if isinstance(m, ExpertLinear)}
    assert wrapped == expected
    assert isinstance(model.model.layers[0].mlp.up_proj, nn.Linear)  # untargeted layers untouched
    assert not any(p.requires_grad for p in model.parameters())
    assert bank.num_experts == 0 and bank.num_trainable_parameters() == 0
    assert torch.equal(logits(model, ids), before)  # no experts: exactly the same model

    with pytest.raises(ValueError, match="already has injected experts"):
        inject_experts(model, TARGETS, rank=4, alpha=8)


def test_unknown_target_is_a_clear_error():
    model = tiny_llama()
    with pytest.raises(ConfigError, match=r"lora\.target_modules.*'query'.*q_proj"):
        inject_experts(model, ["q_proj", "query"], rank=4, alpha=8)
    assert not any(isinstance(m, ExpertLinear) for m in model.modules())  # nothing half-done


def test_config_driven_injection_and_profiles():
    cfg = LoRAConfig(rank=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj", "gate_proj"])
    assert cfg.scaling == 2.0
    bank = inject_experts_from_config(tiny_llama(), cfg)
    assert len(bank.layers) == 6 and bank.scaling == 2.0
    assert load_config("tiny").lora.target_modules == TARGETS
    default = load_config("default").lora  # the default profile also adapts the input and output embeddings
    assert default.target_modules == TARGETS + ["embed_tokens", "lm_head"] and default.rank >= 1
    assert set(default.rank_pattern) <= set(default.target_modules)
    with pytest.raises(ConfigError, match="lora.init"):
        load_config("tiny", ["lora.init=xavier"])


def test_zero_b_experts_leave_outputs_unchanged():
    model = tiny_llama()
    ids = tokens()
    before = logits(model, ids)
    bank = inject_experts(model, TARGETS, rank=4, alpha=8)
    for _ in range(3):
        bank.add_expert()
    assert bank.num_trainable_parameters() == 3 * 8 * (4 * 64 + 64 * 4)
    with bank.routing(torch.softmax(torch.randn(3, 3), dim=-1)):
        assert torch.equal(logits(model, ids), before)
    assert torch.equal(logits(model, ids), before)  # no routing: newest expert, still zero


def explicit_mixture(layer: ExpertLinear, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The definition, one expert at a time: base(x) + scaling · Σ_e w[b,e] B_e A_e x."""
    out = layer.base(x)
    for e in range(layer.num_experts):
        a, b = layer.expert_parameters(e)
        out = out + layer.scaling * w[:, e].view(-1, 1, 1) * (x @ a.T @ b.T)
    return out


def expert_layer(experts: int) -> ExpertLinear:
    """A 32 -> 48 layer (seed 0) with `experts` rank-4 experts, each with a non-zero B."""
    torch.manual_seed(0)
    layer = ExpertLinear(nn.Linear(32, 48), rank=4, alpha=8)
    for _ in range(experts):
        layer.add_expert()
    with torch.no_grad():
        for e in range(experts):
            layer.lora_B[e].normal_(std=0.1)
    return layer


def test_fused_forward_equals_the_per_expert_loop():
    layer = expert_layer(5)
    x = torch.randn(3, 7, 32)
    w = torch.softmax(torch.randn(3, 5), dim=-1)
    w[0, 1] = 0.0  # masked experts: skipped in the fused product, identical result
    w[:, 3] = 0.0
    layer.routing.set(w)
    fused = layer(x)
    assert torch.allclose(fused, explicit_mixture(layer, x, w), atol=1e-6, rtol=0)
    # Frozen and trainable experts are computed as two fused groups: same values, same gradients.
    layer.set_trainable([2, 4])
    target = torch.randn(3, 7, 48)
    grads = []
    for forward in (layer, lambda inp: explicit_mixture(layer, inp, w)):  # noqa: B023 (w is set before the call)
        x_in = x.clone().requires_grad_(True)
        layer.zero_grad()
        out = forward(x_in)
        assert torch.allclose(out, fused, atol=1e-6, rtol=0)
        ((out - target) ** 2).sum().backward()
        grads.append([x_in.grad] + [p.grad for e in (2, 4) for p in layer.expert_parameters(e)])
        assert all(p.grad is None for e in (0, 1, 3) for p in layer.expert_parameters(e))
    for g_fused, g_loop in zip(*grads):
        assert torch.allclose(g_fused, g_loop, atol=1e-5, rtol=1e-5)
    # Shared (E,) weights broadcast over the batch; (B, in) inputs work too.
    layer.routing.set(w[1])
    assert torch.allclose(layer(x), explicit_mixture(layer, x, w[1].expand(3, 5)), atol=1e-6, rtol=0)
    layer.routing.set(w)
    x2 = x[:, 0]
    assert torch.allclose(layer(x2), explicit_mixture(layer, x2[:, None], w)[:, 0], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="batch of 3"):
        layer(torch.randn(4, 7, 32))


def test_top_k_routing_computes_only_each_samples_own_experts(monkeypatch):
    """Per-sample top-k weights take the selected path (each sample computes only its own k experts,
    batched): values and every gradient (input, gate weights, the trainable expert) equal the definition."""
    monkeypatch.setattr(lora_layers, "GATHER_COST", 0)  # these short inputs would otherwise take the fused product
    layer = expert_layer(6)
    selected_calls = []
    original = layer._selected_low_rank
    monkeypatch.setattr(layer, "_selected_low_rank", lambda *args: selected_calls.append(1) or original(*args))
    layer.set_trainable([5])
    # ES-MoE's training gate: the current expert (5) plus one old expert per sample, 4 old ones used.
    rows, picks = torch.arange(5), torch.tensor([0, 3, 1, 0, 4])
    raw = torch.rand(5, 2) + 0.1
    target = torch.randn(5, 7, 48)
    x = torch.randn(5, 7, 32)
    grads = []
    for forward in (layer, lambda inp: explicit_mixture(layer, inp, w)):  # noqa: B023 (w is set before the call)
        logits_ = raw.clone().requires_grad_(True)
        gate = torch.softmax(logits_, dim=-1)  # (B, 2): the old pick, the current expert
        w = torch.zeros(5, 6).index_put((rows, picks), gate[:, 0]).index_put((rows, torch.full((5,), 5)), gate[:, 1])
        layer.routing.set(w)
        x_in = x.clone().requires_grad_(True)
        layer.zero_grad()
        out = forward(x_in)
        ((out - target) ** 2).sum().backward()
        grads.append([out.detach(), x_in.grad, logits_.grad, *[p.grad for p in layer.expert_parameters(5)]])
    assert len(selected_calls) == 1  # the layer's own forward took the selected path
    positions, weights = layer.routing.row_selection((0, 1, 3, 4))
    assert positions.shape == (5, 1) and torch.equal(torch.tensor([0, 1, 3, 4])[positions[:, 0]], picks)
    for g_selected, g_loop in zip(*grads):
        assert torch.allclose(g_selected, g_loop, atol=1e-5, rtol=1e-5)
    # Samples using different numbers of experts (a zero-weight pad), (B, in) inputs, no_grad decoding.
    w = torch.tensor([[0.5, 0.0, 0.0, 0.0, 0.0, 0.5], [0.2, 0.3, 0.0, 0.0, 0.0, 0.5], [0.0] * 5 + [1.0],
                      [0.0, 0.0, 0.4, 0.0, 0.6, 0.0], [0.0, 0.0, 0.0, 0.7, 0.3, 0.0]])
    layer.routing.set(w)
    with torch.no_grad():
        assert torch.allclose(layer(x), explicit_mixture(layer, x, w), atol=1e-6, rtol=0)
        assert torch.allclose(layer(x[:, 0]), explicit_mixture(layer, x[:, :1], w)[:, 0], atol=1e-6, rtol=0)


def test_per_sample_routing_matches_each_sample_alone():
    model = tiny_llama()
    bank = inject_experts(model, TARGETS, rank=4, alpha=8)
    for _ in range(3):
        bank.add_expert()
    randomize_experts(bank)
    ids = tokens(batch=3)
    w = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.2, 0.3, 0.5]])
    with bank.routing(w):
        batched = logits(model, ids)
    assert not torch.allclose(batched[0], batched[1])
    for b in range(3):
        with bank.routing(w[b : b + 1]):
            alone = logits(model, ids[b : b + 1])
        assert torch.allclose(batched[b], alone[0], atol=1e-5)
    # Only expert 0 for sample 0 means: the same as a bank routed to expert 0 for everyone.
    with bank.routing(torch.tensor([1.0, 0.0, 0.0])):
        assert torch.allclose(logits(model, ids)[0], batched[0], atol=1e-5)
    with pytest.raises(ValueError, match="E = 3"):
        bank.set_routing(torch.ones(3, 2))


def test_routing_is_fixed_across_kv_cache_decoding_steps():
    model = tiny_llama()
    bank = inject_experts(model, TARGETS, rank=4, alpha=8)
    for _ in range(2):
        bank.add_expert()
    randomize_experts(bank)
    ids = tokens(batch=2, length=9)
    with bank.routing(torch.tensor([[0.9, 0.1], [0.0, 1.0]])), torch.no_grad():
        full = model(input_ids=ids).logits[:, -1]
        prefill = model(input_ids=ids[:, :-1], use_cache=True)
        step = model(input_ids=ids[:, -1:], **cache_kwarg(model, prefill.past_key_values), use_cache=True).logits[:, -1]
    assert torch.allclose(full, step, atol=1e-5)


def test_one_expert_without_routing_is_plain_lora():
    torch.manual_seed(0)
    layer = ExpertLinear(nn.Linear(16, 24), rank=2, alpha=6)
    layer.add_expert()
    with torch.no_grad():
        layer.lora_B[0].normal_()
    x = torch.randn(2, 5, 16)
    a, b = layer.expert_parameters(0)
    assert torch.allclose(layer(x), layer.base(x) + 3.0 * (x @ a.T @ b.T), atol=1e-6)

    model = tiny_llama()
    bank = inject_experts(model, TARGETS, rank=4, alpha=8)
    bank.add_expert()
    randomize_experts(bank)
    ids = tokens()
    plain = logits(model, ids)
    with bank.routing(torch.ones(3, 1)):
        assert torch.allclose(logits(model, ids), plain, atol=1e-6)
    # With several experts and no routing, all weight goes to the newest one.
    bank.add_expert()
    randomize_experts(bank, seed=2)
    with bank.routing(torch.tensor([0.0, 1.0])):
        newest = logits(model, ids)
    bank.set_trainable([0])  # a trainable older expert takes part with weight 0
    assert torch.allclose(logits(model, ids), newest, atol=1e-6)


def test_merged_forward_equals_fused_and_unmerge_restores_exactly():
    model = tiny_llama()
    bank = inject_experts(model, TARGETS, rank=4, alpha=8)
    for _ in range(4):
        bank.add_expert()
    randomize_experts(bank)
    originals = {name: layer.base.weight.detach().clone() for name, layer in bank.layers.items()}
    ids = tokens(batch=1)
    w = torch.tensor([0.1, 0.0, 0.6, 0.3])
    with bank.routing(w[None]):
        fused = logits(model, ids)
    bank.merge(w)
    assert bank.merged
    merged = logits(model, ids)
    assert torch.allclose(merged, fused, atol=1e-5, rtol=0)
    with pytest.raises(RuntimeError, match="unmerge"):
        bank.set_routing(w[None])
    bank.merge(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))  # re-merge replaces, never accumulates
    with torch.no_grad():
        layer = bank.layers["model.layers.0.self_attn.q_proj"]
        a, b = layer.expert_parameters(0)
        expected = originals["model.layers.0.self_attn.q_proj"] + layer.scaling * b @ a
        assert torch.allclose(layer.base.weight, expected, atol=1e-6)
    bank.unmerge()
    assert not bank.merged
    for name, layer in bank.layers.items():
        assert torch.equal(layer.base.weight, originals[name])
    with bank.routing(w[None]):
        assert torch.equal(logits(model, ids), fused)


def lm_loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids, labels=ids).loss


def train_expert_one(model: nn.Module, bank: ExpertBank, check_first_gradients: bool = False) -> set[str]:
    """Train expert 1 for 12 AdamW steps under a learned per-sample gate, every model parameter in
    the optimizer (with weight decay); check the loss falls, the gate learns, and only expert 1's
    tensors moved (older experts and the base bit-identical). Returns the checked parameter names."""
    bank.set_trainable([1])
    assert bank.trainable_experts == (1,)
    assert {id(p) for p in bank.trainable_parameters()} == {id(p) for p in bank.expert_parameters(1)}
    trained = {id(p) for p in bank.expert_parameters(1)}
    snapshot = {n: p.detach().clone() for n, p in model.named_parameters()}
    gate = nn.Linear(8, 3)  # a stand-in for ES-MoE's gate: per-sample weights that also learn
    features = torch.randn(4, 8)
    # The optimizer sees every parameter (with weight decay): frozen ones must still not move.
    opt = torch.optim.AdamW(list(model.parameters()) + list(gate.parameters()), lr=1e-2, weight_decay=0.1)
    ids = tokens(batch=4, length=12, seed=3)
    model.train()
    losses = []
    for step in range(12):
        bank.set_routing(torch.softmax(gate(features), dim=-1))
        loss = lm_loss(model, ids)
        opt.zero_grad()
        loss.backward()
        if step == 0 and check_first_gradients:  # gradients reach only the trainable expert
            for name, p in model.named_parameters():
                if id(p) in trained:
                    assert p.grad is not None and torch.count_nonzero(p.grad) > 0, name
                else:
                    assert p.grad is None, name
        opt.step()
        losses.append(loss.item())
    bank.clear_routing()
    assert losses[-1] < losses[0] - 0.1
    assert gate.weight.grad is not None and gate.weight.grad.abs().sum() > 0  # the gate gets gradients
    for name, p in model.named_parameters():
        if id(p) in trained:
            assert not torch.equal(p, snapshot[name]), name
        else:
            assert torch.equal(p, snapshot[name]), name  # older experts and the base: bit-identical
    return set(snapshot)


def test_training_one_expert_leaves_every_other_parameter_bit_identical():
    model = tiny_llama()
    bank = inject_experts(model, TARGETS, rank=4, alpha=8, dropout=0.1)
    for _ in range(3):
        bank.add_expert()
    randomize_experts(bank)
    train_expert_one(model, bank)


def test_trainable_expert_gets_a_gradient_even_with_zero_weight():
    model = tiny_llama()
    bank = inject_experts(model, TARGETS, rank=4, alpha=8)
    for _ in range(3):
        bank.add_expert()
    randomize_experts(bank)
    bank.set_trainable([2])
    with bank.routing(torch.tensor([[0.5, 0.5, 0.0]])):
        lm_loss(model, tokens(batch=1)).backward()
    for p in bank.expert_parameters(2):
        assert p.grad is not None and torch.count_nonzero(p.grad) == 0
    assert all(p.grad is None for e in (0, 1) for p in bank.expert_parameters(e))
    # All-zero routing: nothing is added, under no_grad even the trainable expert is skipped.
    ids = tokens(batch=1)
    base_logits = logits(tiny_llama(), ids)  # same seed: the same base weights, no experts
    with bank.routing(torch.zeros(1, 3)):
        assert torch.equal(logits(model, ids), base_logits)
    bank.set_trainable([])
    with bank.routing(torch.zeros(3)), torch.enable_grad():
        assert torch.equal(model(input_ids=ids).logits, base_logits)


def test_new_expert_starts_as_a_no_op_and_init_is_reproducible():
    banks = []
    for _ in range(2):
        bank = inject_experts(tiny_llama(), TARGETS, rank=4, alpha=8)
        bank.add_expert(generator=torch.Generator().manual_seed(7))
        banks.append(bank)
    for p, q in zip(banks[0].expert_parameters(0), banks[1].expert_parameters(0)):
        assert torch.equal(p, q)
    layers = list(banks[0].layers.values())
    a0, b0 = layers[0].expert_parameters(0)
    a1, _ = layers[1].expert_parameters(0)
    assert torch.count_nonzero(b0) == 0 and a0.abs().sum() > 0
    assert not torch.equal(a0, a1)  # each layer draws its own A


# ---- experts on the input embeddings and lm_head -------------------------------------------------------

EMBEDDING_TARGETS = TARGETS + ["embed_tokens", "lm_head"]
EMBEDDING_RANKS = {"embed_tokens": 8, "lm_head": 6}


def explicit_embedding_mixture(layer: ExpertEmbedding, ids: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The definition, one expert at a time: base(ids) + scaling · Σ_e w[b,e] (B_e A_e[:, ids]).T.

    ids (B,) or (B, T); w (B, E)."""
    out = layer.base(ids)
    for e in range(layer.num_experts):
        a, b = layer.expert_parameters(e)
        delta = (b @ a[:, ids.reshape(-1)]).T.reshape(*ids.shape, -1)  # (…, d)
        out = out + layer.scaling * w[:, e].view(-1, *([1] * ids.dim())) * delta
    return out


def embedding_layer(experts: int) -> ExpertEmbedding:
    """nn.Embedding(50, 16) (seed 0) with `experts` rank-4 experts, A and B both non-zero."""
    torch.manual_seed(0)
    layer = ExpertEmbedding(nn.Embedding(50, 16), rank=4, alpha=8)
    for _ in range(experts):
        layer.add_expert()
    assert all(torch.count_nonzero(a) == 0 for a in layer.lora_A)  # PEFT's init: A zero, B Gaussian
    assert all(torch.count_nonzero(b) > 0 for b in layer.lora_B)
    with torch.no_grad():
        for e in range(experts):
            layer.lora_A[e].normal_()
            layer.lora_B[e].normal_(std=0.1)
    layer.set_trainable([])
    return layer


def test_embedding_experts_equal_the_definition(monkeypatch):
    """Per-sample (B, E) weights (each sample using all of the batch's experts: the fused product), shared (E,)
    weights and no routing: values and gradients (gate logits, trainable experts' A and B) equal the definition."""
    layer = embedding_layer(5)
    monkeypatch.setattr(layer, "_selected_low_rank", None)  # (the per-sample selected path is tested below)
    ids = torch.randint(0, 50, (3, 7), generator=torch.Generator().manual_seed(1))
    raw = torch.randn(3, 5)
    mask = torch.ones(3, 5)
    mask[0, 1] = 0.0  # masked experts: skipped, identical result
    mask[:, 3] = 0.0
    w = torch.softmax(raw, dim=-1) * mask
    layer.routing.set(w)
    fused = layer(ids)
    assert fused.shape == (3, 7, 16)
    assert torch.allclose(fused, explicit_embedding_mixture(layer, ids, w), atol=1e-6, rtol=0)
    assert not torch.allclose(fused, layer.base(ids), atol=1e-2)  # the experts matter
    # Values and gradients (gate logits, the trainable experts' A and B) equal the definition.
    layer.set_trainable([2, 4])
    target = torch.randn(3, 7, 16)
    grads = []
    for forward in (layer, lambda inp: explicit_embedding_mixture(layer, inp, gate_w)):  # noqa: B023
        logits_ = raw.clone().requires_grad_(True)
        gate_w = torch.softmax(logits_, dim=-1) * mask
        layer.routing.set(gate_w)
        layer.zero_grad()
        out = forward(ids)
        ((out - target) ** 2).sum().backward()
        grads.append([out.detach(), logits_.grad] + [p.grad for e in (2, 4) for p in layer.expert_parameters(e)])
        assert all(p.grad is None for e in (0, 1, 3) for p in layer.expert_parameters(e))
        assert layer.base.weight.grad is None
    for g_fused, g_loop in zip(*grads):
        assert g_fused is not None and torch.count_nonzero(g_fused) > 0
        assert torch.allclose(g_fused, g_loop, atol=1e-5, rtol=1e-5)
    layer.set_trainable([])
    # Shared (E,) weights broadcast over the batch; (B,) ids work too.
    layer.routing.set(w[1])
    assert torch.allclose(layer(ids), explicit_embedding_mixture(layer, ids, w[1].expand(3, 5)), atol=1e-6, rtol=0)
    layer.routing.set(w)
    assert torch.allclose(layer(ids[:, 0]), explicit_embedding_mixture(layer, ids[:, 0], w), atol=1e-6, rtol=0)
    # No routing: plain LoRA with the newest expert.
    layer.routing.set(None)
    newest = torch.zeros(3, 5)
    newest[:, 4] = 1.0
    assert torch.allclose(layer(ids), explicit_embedding_mixture(layer, ids, newest), atol=1e-6, rtol=0)
    assert torch.allclose(layer(ids[:, 0]), explicit_embedding_mixture(layer, ids[:, 0], newest), atol=1e-6, rtol=0)
    # add_experts adds the same update to any given base output.
    layer.routing.set(w)
    offset = torch.randn(3, 7, 16)
    assert torch.allclose(layer.add_experts(ids, offset), offset + fused - layer.base(ids), atol=1e-6, rtol=0)


def test_embedding_experts_limited_to_some_rows_leave_the_others_alone():
    """lora.embedding_rows `new`: only the listed rows (the motion tokens) get the experts' update, in the
    fused path, the per-sample selected path and a merge; the other rows' columns of A get no gradient."""
    layer = embedding_layer(3)
    ids = torch.randint(0, 50, (4, 9), generator=torch.Generator().manual_seed(2))
    new_rows = list(range(40, 50))
    weights = torch.softmax(torch.randn(4, 3), dim=-1)
    layer.routing.set(weights)
    full = layer(ids)
    picks = torch.tensor([[0], [2], [1], [0]])  # the per-sample selected path: one expert per sample

    def selected():
        return layer._selected_low_rank(ids, (0, 1, 2), picks, torch.ones(4, 1), layer.base(ids))

    full_selected = selected()
    layer.limit_rows(new_rows)
    limited = layer(ids)
    new = ids >= 40
    assert bool(new.any()) and bool((~new).any())
    base = layer.base(ids)
    assert torch.equal(limited[~new], base[~new])  # word rows: the base table
    assert torch.allclose(limited[new], full[new], atol=1e-6, rtol=0)  # motion rows: as before
    assert not torch.allclose(full[~new], base[~new], atol=1e-3)  # (the experts do reach them unlimited)
    limited_selected = selected()
    assert torch.equal(limited_selected[~new], base[~new])
    assert torch.allclose(limited_selected[new], full_selected[new], atol=1e-6, rtol=0)
    layer.set_trainable([1])
    layer(ids).sum().backward()
    grad = layer.lora_A[1].grad
    assert torch.count_nonzero(grad[:, 40:]) > 0 and torch.count_nonzero(grad[:, :40]) == 0
    layer.set_trainable([])
    with torch.no_grad():
        layer.merge(torch.tensor([0.2, 0.5, 0.3]))
        merged = layer.base.weight.clone()
        layer.unmerge()
    assert torch.equal(merged[:40], layer.base.weight[:40]) and not torch.equal(merged[40:], layer.base.weight[40:])
    layer.limit_rows(None)
    assert torch.allclose(layer(ids), full, atol=1e-6, rtol=0)


def test_embedding_top_k_routing_takes_the_selected_path_and_equals_the_definition(monkeypatch):
    """Per-sample top-k weights (each sample uses fewer experts than the batch): each sample computes only
    its own experts, and values and gradients (gate logits, the trainable expert's A and B) equal the definition."""
    monkeypatch.setattr(lora_layers, "GATHER_COST", 0)  # a lookup this short would otherwise take the fused product
    layer = embedding_layer(6)
    layer.set_trainable([5])
    selected_calls = []
    original = layer._selected_low_rank
    monkeypatch.setattr(layer, "_selected_low_rank", lambda *args: selected_calls.append(1) or original(*args))
    rows, picks = torch.arange(5), torch.tensor([0, 3, 1, 0, 4])  # the current expert (5) + one old one
    raw = torch.rand(5, 2) + 0.1
    target = torch.randn(5, 7, 16)
    ids = torch.randint(0, 50, (5, 7), generator=torch.Generator().manual_seed(2))
    grads = []
    for forward in (layer, lambda inp: explicit_embedding_mixture(layer, inp, w)):  # noqa: B023
        logits_ = raw.clone().requires_grad_(True)
        gate = torch.softmax(logits_, dim=-1)
        w = torch.zeros(5, 6).index_put((rows, picks), gate[:, 0]).index_put((rows, torch.full((5,), 5)), gate[:, 1])
        layer.routing.set(w)
        layer.zero_grad()
        out = forward(ids)
        ((out - target) ** 2).sum().backward()
        grads.append([out.detach(), logits_.grad, *[p.grad for p in layer.expert_parameters(5)]])
        assert all(p.grad is None for e in range(5) for p in layer.expert_parameters(e))
    assert len(selected_calls) == 1  # the fused forward took the selected path, once
    positions, _ = layer.routing.row_selection((0, 1, 3, 4, 5))
    assert positions.shape == (5, 2)
    for g_selected, g_loop in zip(*grads):
        assert torch.count_nonzero(g_selected) > 0
        assert torch.allclose(g_selected, g_loop, atol=1e-5, rtol=1e-5)
    # Samples using different numbers of experts (a zero-weight pad), (B,) and (B, T) ids, no_grad decoding.
    w = torch.tensor([[0.5, 0.0, 0.0, 0.0, 0.0, 0.5], [0.2, 0.3, 0.0, 0.0, 0.0, 0.5], [0.0] * 5 + [1.0],
                      [0.0, 0.0, 0.4, 0.0, 0.6, 0.0], [0.0, 0.0, 0.0, 0.7, 0.3, 0.0]])
    layer.routing.set(w)
    selected_calls.clear()
    with torch.no_grad():
        assert torch.allclose(layer(ids), explicit_embedding_mixture(layer, ids, w), atol=1e-6, rtol=0)
        assert len(selected_calls) == 1
        assert torch.allclose(layer(ids[:, 0]), explicit_embedding_mixture(layer, ids[:, 0], w), atol=1e-6, rtol=0)


def test_per_sample_gather_is_taken_only_where_it_pays(monkeypatch):
    """The selected path gathers every sample's A and B: worth it for training-length inputs, not for
    one decoding step (2-25x slower per layer than the fused product) nor for an embedding lookup.
    Either way the output is the same mixture."""
    torch.manual_seed(0)
    layers = {"linear": ExpertLinear(nn.Linear(256, 256), rank=8, alpha=16),
              "embedding": ExpertEmbedding(nn.Embedding(1365, 256), rank=64, alpha=64)}
    w = torch.zeros(7, 8).index_put((torch.arange(7), torch.arange(7)), torch.full((7,), 0.4))
    w[:, 7] = 0.6  # the newest expert plus one other per sample (top-2 of 8), the batch uses all 8
    for kind, layer in layers.items():
        for _ in range(8):
            layer.add_expert()
        with torch.no_grad():
            for e in range(8):
                layer.lora_A[e].normal_(std=0.1)
                layer.lora_B[e].normal_(std=0.1)
        layer.routing.set(w)
        calls = []
        original = layer._selected_low_rank
        monkeypatch.setattr(layer, "_selected_low_rank", lambda *args, _o=original, _c=calls: _c.append(1) or _o(*args))
        for length in (1, 96):
            x = torch.randint(0, 1365, (7, length)) if kind == "embedding" else torch.randn(7, length, 256)
            calls.clear()
            with torch.no_grad():
                chosen = layer(x)
            took_selected = bool(calls)
            assert took_selected == (kind == "linear" and length == 96), (kind, length)
            with monkeypatch.context() as forced:  # the other path gives the same output
                forced.setattr(lora_layers, "GATHER_COST", 0 if not took_selected else 10**9)
                with torch.no_grad():
                    other = layer(x)
            assert torch.allclose(chosen, other, atol=1e-5, rtol=1e-5)


def embedding_bank(seed: int = 0, experts: int = 4, **kwargs) -> tuple[LlamaForCausalLM, ExpertBank]:
    model = tiny_llama(seed)
    options = {"rank": 4, "alpha": 8, "rank_pattern": EMBEDDING_RANKS, **kwargs}
    bank = inject_experts(model, EMBEDDING_TARGETS, **options)
    for _ in range(experts):
        bank.add_expert()
    randomize_experts(bank, scale=0.1)
    return model, bank


def test_embedding_and_lm_head_experts_merge_like_the_fused_path_and_unmerge_exactly():
    model = tiny_llama()
    ids = tokens(batch=1)
    plain = logits(model, ids)
    original_embedding = model.model.embed_tokens.weight.detach().clone()
    model, bank = embedding_bank()
    embedding = bank.input_embedding
    assert isinstance(embedding, ExpertEmbedding) and embedding is model.model.embed_tokens
    assert set(bank.layers) >= {"model.embed_tokens", "lm_head"}
    assert isinstance(bank.layers["lm_head"], ExpertLinear) and model.get_output_embeddings() is bank.layers["lm_head"]
    originals = {name: layer.base.weight.detach().clone() for name, layer in bank.layers.items()}
    w = torch.tensor([0.1, 0.0, 0.6, 0.3])
    with bank.routing(w[None]):
        fused = logits(model, ids)
    assert not torch.allclose(fused, plain, atol=1e-3)
    bank.merge(w)
    assert bank.merged
    assert torch.allclose(logits(model, ids), fused, atol=1e-5, rtol=0)
    assert not torch.equal(embedding.base.weight, original_embedding)  # the experts are in the table now
    assert torch.equal(embedding.frozen(ids), original_embedding[ids])  # ... but not in the frozen view
    with torch.no_grad():
        delta = sum(w[e] * embedding.scaling * (embedding.lora_B[e] @ embedding.lora_A[e]) for e in range(4))
        assert torch.allclose(embedding.base.weight, original_embedding + delta.T, atol=1e-6)
    bank.unmerge()
    assert not bank.merged
    for name, layer in bank.layers.items():
        assert torch.equal(layer.base.weight, originals[name]), name
    assert torch.equal(embedding.frozen(ids), original_embedding[ids])
    with bank.routing(w[None]):
        assert torch.equal(logits(model, ids), fused)


def test_rank_and_alpha_patterns():
    model = tiny_llama()
    bank = inject_experts(model, EMBEDDING_TARGETS, rank=4, alpha=8,
                          rank_pattern={"embed_tokens": 8, "lm_head": 6, "q_proj": 2},
                          alpha_pattern={"lm_head": 3, "model.layers.1.self_attn.q_proj": 5})
    bank.add_expert()
    expected = {"model.embed_tokens": (8, 8.0), "lm_head": (6, 3.0), "model.layers.0.self_attn.q_proj": (2, 8.0),
                "model.layers.1.self_attn.q_proj": (2, 5.0), "model.layers.1.self_attn.v_proj": (4, 8.0)}
    for name, (rank, alpha) in expected.items():
        layer = bank.layers[name]
        assert (layer.rank, layer.alpha, layer.scaling) == (rank, alpha, alpha / rank), name
        a, b = layer.expert_parameters(0)
        assert a.shape == (rank, layer.in_features) and b.shape == (layer.out_features, rank), name
    assert bank.layers["model.embed_tokens"].expert_parameters(0)[0].shape == (8, 100)
    assert bank.layers["lm_head"].expert_parameters(0)[1].shape == (100, 6)
    assert (bank.rank, bank.alpha, bank.scaling) == (4, 8.0, 2.0)  # the defaults, from an unpatterned layer
    assert bank.rank_pattern == {"embed_tokens": 8, "lm_head": 6, "q_proj": 2}
    # A key matching no targeted layer is a config error (gate_proj exists but is not targeted).
    for options in ({"rank_pattern": {"gate_proj": 2}}, {"alpha_pattern": {"nope": 1.0}}):
        fresh = tiny_llama()
        field = next(iter(options))
        with pytest.raises(ConfigError, match=f"lora.{field}"):
            inject_experts(fresh, EMBEDDING_TARGETS, rank=4, alpha=8, **options)
        assert not any(isinstance(m, (ExpertLinear, ExpertEmbedding)) for m in fresh.modules())  # nothing half-done
    # From a LoRAConfig.
    cfg = LoRAConfig(rank=4, alpha=8, dropout=0.0, target_modules=["q_proj", "embed_tokens", "lm_head"],
                     rank_pattern={"embed_tokens": 8}, alpha_pattern={"lm_head": 2})
    bank = inject_experts_from_config(tiny_llama(), cfg)
    assert len(bank.layers) == 4
    assert (bank.layers["model.embed_tokens"].rank, bank.layers["model.embed_tokens"].scaling) == (8, 1.0)
    assert (bank.layers["lm_head"].rank, bank.layers["lm_head"].scaling) == (4, 0.5)
    assert (bank.layers["model.layers.0.self_attn.q_proj"].rank, bank.scaling) == (4, 2.0)
    with pytest.raises(ConfigError, match="rank_pattern"):
        load_config("tiny", ["lora.rank_pattern={q_proj: 0}"])


def test_training_one_expert_with_embedding_targets_leaves_everything_else_bit_identical():
    model, bank = embedding_bank(experts=3, dropout=0.1)
    names = train_expert_one(model, bank, check_first_gradients=True)
    # the embedding and lm_head factors of every expert, and the base tables, are among the checked ones
    assert {"model.embed_tokens.base.weight", "lm_head.base.weight", "model.embed_tokens.lora_A.0",
            "model.embed_tokens.lora_B.2", "lm_head.lora_A.0", "lm_head.lora_B.1"} <= names


def test_tied_embeddings_cannot_both_be_targeted():
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=4, vocab_size=100, max_position_embeddings=64, tie_word_embeddings=True)
    model = LlamaForCausalLM(config).eval()
    with pytest.raises(ConfigError, match="share one weight"):
        inject_experts(model, ["q_proj", "embed_tokens", "lm_head"], rank=4, alpha=8)
    assert not any(isinstance(m, ExpertLinear) for m in model.modules())
    inject_experts(model, ["q_proj", "lm_head"], rank=4, alpha=8)  # one of the two is fine
