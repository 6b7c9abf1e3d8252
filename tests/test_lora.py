"""LoRA expert bank: injection, fused mixture, routing, merging, isolation of frozen experts, state."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from l2emg.config import LoRAConfig, load_config
from l2emg.continual.lora import ExpertBank, ExpertLinear, inject_experts, inject_experts_from_config
from l2emg.errors import CheckpointError, ConfigError

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
    for profile in ("tiny", "default"):
        lora = load_config(profile).lora
        assert lora.target_modules == TARGETS and lora.rank >= 1
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
    for forward in (layer, lambda inp: explicit_mixture(layer, inp, w)):
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


def test_top_k_routing_computes_only_each_samples_own_experts():
    """Per-sample top-k weights take the selected path (each sample computes only its own k experts,
    batched): values and every gradient (input, gate weights, the trainable expert) equal the definition."""
    layer = expert_layer(6)
    layer.set_trainable([5])
    # ES-MoE's training gate: the current expert (5) plus one old expert per sample, 4 old ones used.
    rows, picks = torch.arange(5), torch.tensor([0, 3, 1, 0, 4])
    raw = torch.rand(5, 2) + 0.1
    target = torch.randn(5, 7, 48)
    x = torch.randn(5, 7, 32)
    grads = []
    for forward in (layer, lambda inp: explicit_mixture(layer, inp, w)):
        logits_ = raw.clone().requires_grad_(True)
        gate = torch.softmax(logits_, dim=-1)  # (B, 2): the old pick, the current expert
        w = torch.zeros(5, 6).index_put((rows, picks), gate[:, 0]).index_put((rows, torch.full((5,), 5)), gate[:, 1])
        layer.routing.set(w)
        x_in = x.clone().requires_grad_(True)
        layer.zero_grad()
        out = forward(x_in)
        ((out - target) ** 2).sum().backward()
        grads.append([out.detach(), x_in.grad, logits_.grad, *[p.grad for p in layer.expert_parameters(5)]])
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
        step = model(input_ids=ids[:, -1:], past_key_values=prefill.past_key_values, use_cache=True).logits[:, -1]
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


def test_training_one_expert_leaves_every_other_parameter_bit_identical():
    model = tiny_llama()
    bank = inject_experts(model, TARGETS, rank=4, alpha=8, dropout=0.1)
    for _ in range(3):
        bank.add_expert()
    randomize_experts(bank)
    bank.set_trainable([1])
    assert bank.trainable_experts == (1,)
    assert {id(p) for p in bank.trainable_parameters()} == {id(p) for p in bank.expert_parameters(1)}
    snapshot = {n: p.detach().clone() for n, p in model.named_parameters()}
    gate = nn.Linear(8, 3)  # a stand-in for ES-MoE's gate: per-sample weights that also learn
    features = torch.randn(4, 8)
    # The optimizer sees every parameter (with weight decay): frozen ones must still not move.
    opt = torch.optim.AdamW(list(model.parameters()) + list(gate.parameters()), lr=1e-2, weight_decay=0.1)
    ids = tokens(batch=4, length=12, seed=3)
    model.train()
    losses = []
    for _ in range(12):
        bank.set_routing(torch.softmax(gate(features), dim=-1))
        loss = lm_loss(model, ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    bank.clear_routing()
    assert losses[-1] < losses[0] - 0.1
    assert gate.weight.grad is not None and gate.weight.grad.abs().sum() > 0  # the gate gets gradients
    trained = {id(p) for p in bank.expert_parameters(1)}
    for name, p in model.named_parameters():
        if id(p) in trained:
            assert not torch.equal(p, snapshot[name]), name
        else:
            assert torch.equal(p, snapshot[name]), name  # older experts and the base: bit-identical


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


def test_save_and_load_round_trip(tmp_path):
    model = tiny_llama()
    bank = inject_experts(model, TARGETS, rank=4, alpha=8)
    for _ in range(3):
        bank.add_expert()
    randomize_experts(bank)
    ids = tokens()
    w = torch.softmax(torch.randn(3, 3), dim=-1)
    with bank.routing(w):
        expected = logits(model, ids)
    state = bank.state_dict_for([0])
    assert sorted(state)[0] == "expert.0.model.layers.0.self_attn.k_proj.lora_A"
    assert len(state) == 2 * 8
    path = tmp_path / "experts.safetensors"
    bank.save(path)

    fresh = tiny_llama()  # same base weights (same seed), no experts yet
    fresh_bank = inject_experts(fresh, TARGETS, rank=4, alpha=8)
    assert fresh_bank.load(path) == [0, 1, 2]
    assert fresh_bank.num_experts == 3 and fresh_bank.trainable_experts == ()
    with fresh_bank.routing(w):
        assert torch.equal(logits(fresh, ids), expected)

    # Partial state: only expert 1 replaced, the others untouched.
    partial = {k: v * 0 for k, v in bank.state_dict_for([1]).items()}
    assert fresh_bank.load_expert_state(partial) == [1]
    assert torch.count_nonzero(fresh_bank.expert_parameters(1)[0]) == 0
    assert torch.equal(fresh_bank.expert_parameters(0)[0], bank.expert_parameters(0)[0])

    wrong_rank = inject_experts(tiny_llama(), TARGETS, rank=2, alpha=8)
    with pytest.raises(CheckpointError, match="rank"):
        wrong_rank.load(path)
    broken = dict(state)
    broken.pop("expert.0.model.layers.1.self_attn.v_proj.lora_B")
    with pytest.raises(CheckpointError, match="missing tensor 'expert.0.model.layers.1.self_attn.v_proj.lora_B'"):
        fresh_bank.load_expert_state(broken)
    with pytest.raises(CheckpointError, match="not found"):
        fresh_bank.load(tmp_path / "nope.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        fresh_bank.load(tmp_path / "junk.safetensors")


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
