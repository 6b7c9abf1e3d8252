"""ES-MoE: the gate (Eq. 4, masking, top-k), per-scenario isolation of experts and keys, the
scenario-only K-means dictionary, merged vs fused inference, the loss, state round trips, ablations."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from l2emg.config import load_config  # noqa: E402
from l2emg.continual.methods import ScenarioContext  # noqa: E402
from l2emg.continual.methods.cged import kmeans_centroids  # noqa: E402
from l2emg.continual.methods.gate import ExpertGate, orthogonal_keys, select_top_k  # noqa: E402
from l2emg.errors import CheckpointError  # noqa: E402
from l2emg.labels import EMOTIONS  # noqa: E402
from l2emg.lm.generate import GenerationInputs, cache_kwarg, generate_codes  # noqa: E402
from l2emg.lm.prompts import position_ids  # noqa: E402
from method_fixtures import (  # noqa: E402
    EMBEDDING_LORA,
    MOODS,
    SCENARIO_A,
    SCENARIO_B,
    batch_of,
    build_tokenizer,
    examples_for,
    make_lm,
    prompts,
    setup_method,
    train,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def make_config(extra: tuple[str, ...] | list[str] = (), **esmoe):
    """The tiny profile with small ES-MoE options (`esmoe`) and any further overrides (`extra`)."""
    options = {"d_cged": 32, "heads": 4, "dict_clusters": 4, "kmeans_n_init": 2, "classifier_hidden": 32,
               "query_rank": 16, "key_dim": 16, "max_experts": 8, "top_k": 2, "mask_prob": 0.5,
               "emotion_weight": 0.5, **esmoe}
    overrides = [f"esmoe.{k}={v}" for k, v in options.items()] + ["lora.dropout=0.0", "lora.rank=4", *extra]
    return load_config("tiny", overrides)


def make_method(tokenizer, name: str = "esmoe", seed: int = 0, extra: tuple[str, ...] | list[str] = (), **esmoe):
    return setup_method(name, make_config(extra, **esmoe), make_lm(tokenizer, seed))


# ---- the gate ---------------------------------------------------------------------------------------


def test_select_top_k_renormalises_and_never_picks_masked_experts():
    g = torch.Generator().manual_seed(0)
    for trial in range(200):
        batch, count, k = 5, int(torch.randint(2, 9, (1,), generator=g)), int(torch.randint(1, 4, (1,), generator=g))
        logits = torch.randn(batch, count, generator=g) * 3
        available = torch.rand(batch, count, generator=g) > 0.4
        forced = int(torch.randint(0, count, (1,), generator=g)) if trial % 2 else None
        w = select_top_k(logits, k, available, forced=forced)
        chosen = w > 0
        allowed = available.clone()
        if forced is not None:
            allowed[:, forced] = True
            assert bool(chosen[:, forced].all())
        assert not bool((chosen & ~allowed).any())  # a masked expert is never selected
        assert torch.allclose(w.sum(-1)[allowed.any(-1)], torch.ones(int(allowed.any(-1).sum())), atol=1e-6)
        assert bool((chosen.sum(-1) <= k).all())
        for row in range(batch):
            picks = min(k, int(allowed[row].sum()))
            assert int(chosen[row].sum()) == picks
            scores = logits[row].masked_fill(~allowed[row], float("-inf"))
            if forced is not None:
                scores[forced] = float("inf")
            expected = set(scores.topk(picks).indices.tolist())
            assert set(torch.nonzero(chosen[row]).flatten().tolist()) == expected
            sel = sorted(expected)
            assert torch.allclose(w[row, sel], torch.softmax(logits[row, sel], -1), atol=1e-6)


def test_gate_training_masks_old_experts_keeps_current_and_inference_is_top_k():
    gate = ExpertGate(12, key_dim=16, query_rank=8, max_experts=8, top_k=3, mask_prob=0.5, seed=3)
    for _ in range(6):
        gate.add_key()
    keys = orthogonal_keys(8, 16, seed=3)
    assert torch.allclose(keys @ keys.t(), 16 * torch.eye(8), atol=1e-4)  # orthogonal, norm √key_dim
    assert torch.equal(torch.stack(list(gate.keys)), gate.key_init[:6])
    pooled = torch.randn(400, 12, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    w = gate(pooled, current=5)
    chosen = w > 0
    assert torch.allclose(w.sum(-1), torch.ones(400), atol=1e-6)
    assert bool(chosen[:, 5].all())  # the current expert is never masked
    assert bool((chosen.sum(-1) <= 3).all())
    # masking really happens: the chosen old experts are often not the top-2 old experts by logit
    logits = gate.logits(pooled)[:, :5]
    top_old = torch.zeros_like(chosen[:, :5]).scatter_(1, logits.topk(2, dim=-1).indices, True)
    assert 0.2 < float((chosen[:, :5] != top_old).any(-1).float().mean()) < 1.0
    w_inf = gate(pooled)  # inference: top-k of all experts, no masking
    expected = torch.zeros_like(chosen).scatter_(1, gate.logits(pooled).topk(3, dim=-1).indices, True)
    assert torch.equal(w_inf > 0, expected)
    with pytest.raises(ValueError, match="max_experts"):
        for _ in range(3):
            gate.add_key()


# ---- per-scenario isolation, dictionary ----------------------------------------------------------


def test_after_scenario_i_only_expert_i_and_key_i_changed(tokenizer):
    method = make_method(tokenizer, dictionary="learnable")
    ex_a = examples_for(method, SCENARIO_A, "A")
    ex_b = examples_for(method, SCENARIO_B, "B")
    backbone = {k: v.clone() for k, v in method.model.state_dict().items() if "lora_" not in k}
    train(method, 0, ex_a)
    assert method.bank.num_experts == 1 and method.gate.num_experts == 1
    expert0 = [p.detach().clone() for p in method.bank.expert_parameters(0)]
    key0 = method.gate.keys[0].detach().clone()
    query = [p.detach().clone() for p in method.gate.query.parameters()]
    cged = [p.detach().clone() for p in method.cged.parameters()]

    method.train()
    method.begin_scenario(1, ScenarioContext(1, "s1", ex_b))
    trainable = {id(p) for p in method.trainable_parameters()}
    old_part = method.cged.dictionary_parts[0]  # scenario 0's dictionary part is frozen with its scenario
    expected = {id(p) for p in [*method.bank.expert_parameters(1), method.gate.keys[1], *method.gate.query.parameters(),
                                *(p for p in method.cged.parameters() if p is not old_part), method.emotion_scale,
                                *method.classifier.parameters()]}
    assert trainable == expected
    assert {id(p) for p in method.parameters() if p.requires_grad} == expected
    method.end_scenario(1, None)
    key1_init = method.gate.keys[1].detach().clone()
    train(method, 1, ex_b)

    for before, now in zip(expert0, method.bank.expert_parameters(0)):
        assert torch.equal(before, now)  # older expert bit-identical
    assert torch.equal(key0, method.gate.keys[0])
    assert any(not torch.equal(p, torch.zeros_like(p)) for p in method.bank.expert_parameters(1)[1::2])  # B moved
    assert not torch.equal(key1_init, method.gate.keys[1])
    assert any(not torch.equal(a, b) for a, b in zip(query, method.gate.query.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(cged, method.cged.parameters()))
    assert torch.equal(old_part, cged[[id(p) for p in method.cged.parameters()].index(id(old_part))])
    drift = method.cged.dictionary_drift()
    assert drift[0] > 0 and drift[-1] > 0  # each part moved in its own scenario (and part 0 not since)
    for name, value in method.model.state_dict().items():
        if name in backbone:
            assert torch.equal(backbone[name], value), name  # the frozen backbone never moves


def test_dictionary_is_built_from_the_current_scenario_only(tokenizer):
    method = make_method(tokenizer, dict_clusters=4, dictionary="learnable")
    ex_a = examples_for(method, SCENARIO_A, "A")
    ex_b = examples_for(method, SCENARIO_B, "B")
    weight = method.model.get_input_embeddings().weight.detach()

    def features(examples):
        return torch.stack([weight[e["input_ids"][: e["prompt_length"]]].mean(0) for e in examples]).numpy()

    feats_a, feats_b = features(ex_a), features(ex_b)
    assert method.cged.memory().shape[0] == 0
    train(method, 0, ex_a, updates=1)
    after_a = method.cged.memory().detach().clone()
    seed = method.config.train.seed * 1000
    init_a = method.cged.dictionary_init.clone()  # the learnable dictionary starts at the K-means centroids
    assert torch.allclose(init_a, torch.from_numpy(kmeans_centroids(feats_a, 4, seed, 2)), atol=1e-5)
    assert not torch.equal(after_a, init_a)  # ... and learned in its scenario
    train(method, 1, ex_b, updates=1)
    dictionary = method.cged.memory().detach()
    assert method.cged.dictionary_sizes == [4, 4]
    assert torch.equal(dictionary[:4], after_a)  # scenario 0's centroids are kept as they were
    new = method.cged.dictionary_init[4:]
    assert torch.allclose(new, torch.from_numpy(kmeans_centroids(feats_b, 4, seed + 1, 2)), atol=1e-5)
    # every new centroid sits among scenario B's features: its nearest training feature is a B one
    both = torch.from_numpy(np.concatenate([feats_a, feats_b]))
    nearest = torch.cdist(new, both).argmin(dim=1)
    assert bool((nearest >= len(feats_a)).all())
    # ... and is not what a dictionary that had seen both scenarios would hold
    mixed = torch.from_numpy(kmeans_centroids(both.numpy(), 4, seed + 1, 2))
    assert not torch.allclose(torch.sort(new, 0).values, torch.sort(mixed, 0).values, atol=1e-3)


# ---- inference -------------------------------------------------------------------------------------


def _prompt_logits(method, ids, mask):
    embeds = method.prepare_generation(ids, mask)
    with torch.no_grad():
        if embeds is None:
            return method.model(input_ids=ids, attention_mask=mask).logits
        if isinstance(embeds, GenerationInputs):  # CGED's prefix in front of the left-padded prompt
            mask = embeds.attention_mask
            return method.model(inputs_embeds=embeds.embeds, attention_mask=mask, position_ids=position_ids(mask)).logits
        return method.model(inputs_embeds=embeds, attention_mask=mask).logits


def test_merged_single_prompt_matches_fused_and_unmerges_for_training(tokenizer):
    method = make_method(tokenizer, top_k=2)
    ex_a, ex_b = examples_for(method, SCENARIO_A, "A"), examples_for(method, SCENARIO_B, "B")
    train(method, 0, ex_a, updates=3)
    train(method, 1, ex_b, updates=3)
    train(method, 2, ex_a[::2] + ex_b[::2], updates=3)
    with torch.no_grad():  # make every expert clearly non-zero so that the mixture matters
        for e in range(3):
            for p in method.bank.expert_parameters(e):
                p.add_(torch.randn_like(p) * 0.05)
    method.eval()
    captions = [SCENARIO_A[3][0], SCENARIO_B[5][0], "a person runs forward, angrily"]
    batch = prompts(method, captions)
    fused_batch = _prompt_logits(method, batch["input_ids"], batch["attention_mask"])  # (3, L, V), fused
    assert not method.bank.merged
    weights = method.gate_weights(batch["input_ids"], batch["attention_mask"])
    assert bool(((weights > 0).sum(-1) == 2).all())
    base = {n: layer.base.weight.detach().clone() for n, layer in method.bank.layers.items()}
    for row, caption in enumerate(captions):
        single = prompts(method, [caption])
        merged = _prompt_logits(method, single["input_ids"], single["attention_mask"])
        assert method.bank.merged
        method.options.merge_single_prompt = False
        fused = _prompt_logits(method, single["input_ids"], single["attention_mask"])
        method.options.merge_single_prompt = True
        assert not method.bank.merged
        assert torch.allclose(merged, fused, atol=1e-5)
        length = single["input_ids"].shape[1]
        assert torch.allclose(merged[0], fused_batch[row, -length:], atol=1e-4)  # left padding aside
    # decoding through the merged weights gives the same codes as the fused path
    codes_merged = generate_codes(method.model, method.lm.tokenizer, method.lm.vocab, captions[:1], max_codes=8,
                                  batch_size=1, prepare=method.prepare_generation)
    method.options.merge_single_prompt = False
    codes_fused = generate_codes(method.model, method.lm.tokenizer, method.lm.vocab, captions[:1], max_codes=8,
                                 batch_size=1, prepare=method.prepare_generation)
    method.options.merge_single_prompt = True
    assert np.array_equal(codes_merged[0], codes_fused[0])
    method.prepare_generation(*prompts(method, captions[:1]).values())
    assert method.bank.merged
    method(batch_of(method, ex_a[:4]))  # a training forward unmerges first
    assert not method.bank.merged
    for name, layer in method.bank.layers.items():
        assert torch.equal(layer.base.weight, base[name])


# ---- loss, state, ablations ---------------------------------------------------------------------------


def test_lm_and_emotion_losses_fall(tokenizer):
    method = make_method(tokenizer, mask_prob=0.0)
    examples = examples_for(method, SCENARIO_A, "A")[:16]
    batch = batch_of(method, examples)
    method.train()
    method.begin_scenario(0, ScenarioContext(0, "A", examples))
    optimizer = torch.optim.AdamW(method.trainable_parameters(), lr=5e-3)
    first = method(batch)
    for _ in range(50):  # (the classifier reads the emotion through CGED's attentions only: slower than a shortcut)
        out = method(batch)
        out["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    last = method(batch)
    assert float(last["lm_loss"]) < 0.95 * float(first["lm_loss"])  # an untrained tiny LM learns slowly
    assert float(last["emo_loss"]) < 0.6 * float(first["emo_loss"])
    assert float(last["loss"].detach()) < float(first["loss"].detach())
    assert float(last["emotion_scale"]) != 0.0  # h entered the LLM
    unlabelled = dict(batch, emotion=torch.full_like(batch["emotion"], -100))
    out = method(unlabelled)
    assert torch.isfinite(out["loss"]) and float(out["emo_loss"]) == 0.0


@pytest.mark.parametrize("init", ["scale", "projection"])
def test_emotion_highlighted_input_starts_as_a_no_op_and_learns(tokenizer, init):
    """Both inits add exactly nothing to the prompt embeddings at the start; with `projection` (unit
    scale, zero projection, as LoRA's B = 0) the projection gets a gradient from the first update and
    the added part grows to a sizeable share of an embedding within a few updates."""
    method = make_method(tokenizer, mask_prob=0.0, emotion_init=init)
    assert float(method.emotion_scale.detach()) == (1.0 if init == "projection" else 0.0)
    examples = examples_for(method, SCENARIO_A, "A")[:16]
    batch = batch_of(method, examples)
    method.train()
    method.begin_scenario(0, ScenarioContext(0, "A", examples))
    first = method(batch)
    assert float(first["emotion_delta"]) == 0.0
    first["loss"].backward()
    projection_grad = method.cged.out_proj.weight.grad
    assert (projection_grad is not None and float(projection_grad.abs().sum()) > 0) == (init == "projection")
    optimizer = torch.optim.AdamW(method.trainable_parameters(), lr=1e-2)
    for _ in range(10):
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        method(batch)["loss"].backward()
    delta = float(method(batch)["emotion_delta"])
    # the scale init leaves the added part at ~lr · |random projection| (0.1 ≈ 10 Adam steps of 1e-2)
    assert delta > 0.2 if init == "projection" else 0.0 < delta < 0.2


@pytest.mark.parametrize("extra", [(), "embedding"], ids=["attention", "with-embedding-experts"])
def test_checkpoint_round_trip(tokenizer, tmp_path, extra):
    """The one adapter checkpoint format (`l2emg.continual.checkpoint`) restores a method exactly."""
    from safetensors.torch import load_file, save_file

    from l2emg.continual.checkpoint import ADAPTER_FILE, load_checkpoint, save_checkpoint

    extra = EMBEDDING_LORA if extra == "embedding" else ()
    method = make_method(tokenizer, extra=extra)
    train(method, 0, examples_for(method, SCENARIO_A, "A"), updates=2)
    train(method, 1, examples_for(method, SCENARIO_B, "B"), updates=2)
    folder = tmp_path / "step_01"
    save_checkpoint(method, "esmoe", 1, {"loss": [1.0]}, folder)

    fresh = make_method(tokenizer, seed=0, extra=extra)
    load_checkpoint(fresh, folder, "esmoe")
    assert fresh.bank.num_experts == 2 and fresh.gate.num_experts == 2
    assert torch.equal(fresh.cged.memory(), method.cged.memory())
    assert method.cged.learnable_dictionary == fresh.cged.learnable_dictionary
    for name, tensor in method.adapter_state().items():
        assert torch.equal(fresh.adapter_state()[name], tensor), name
    method.eval()
    fresh.eval()
    batch = prompts(method, [SCENARIO_B[0][0], SCENARIO_A[1][0]])
    assert torch.equal(_prompt_logits(method, *batch.values()), _prompt_logits(fresh, *batch.values()))
    # a checkpoint of another method, another variant, another rank, or a damaged one is refused
    with pytest.raises(CheckpointError, match="not 'seqlora'"):
        load_checkpoint(make_method(tokenizer, extra=extra), folder, "seqlora")
    with pytest.raises(CheckpointError):
        load_checkpoint(make_method(tokenizer, name="esmoe_wo_cged", extra=extra), folder, "esmoe")
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(make_method(tokenizer, extra=[*extra, "lora.rank=2"]), folder, "esmoe")
    state = load_file(str(folder / ADAPTER_FILE))
    state["gate.keys.0"] = torch.zeros(3)
    save_file(state, str(folder / ADAPTER_FILE))
    with pytest.raises(CheckpointError, match="gate.keys.0"):
        load_checkpoint(make_method(tokenizer, extra=extra), folder, "esmoe")
    (folder / ADAPTER_FILE).write_bytes(b"not a tensor file")
    with pytest.raises(CheckpointError, match=ADAPTER_FILE):
        load_checkpoint(make_method(tokenizer, extra=extra), folder, "esmoe")
    (folder / ADAPTER_FILE).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(make_method(tokenizer, extra=extra), folder, "esmoe")


@pytest.mark.parametrize("name", ["esmoe", "esmoe_wo_cged", "esmoe_wo_samoe", "esmoe_wo_lemo"])
def test_each_variant_trains_two_scenarios(tokenizer, name):
    method = make_method(tokenizer, name=name)
    ex_a, ex_b = examples_for(method, SCENARIO_A, "A"), examples_for(method, SCENARIO_B, "B")
    train(method, 0, ex_a, updates=1)
    method.train()
    method.begin_scenario(1, ScenarioContext(1, "B", ex_b))
    out = method(batch_of(method, ex_b[:6]))
    out["loss"].backward()
    for p in method.trainable_parameters():
        assert p.grad is not None  # every trainable parameter is in the graph (DDP needs that)
    method.end_scenario(1, None)
    assert ("emo_loss" in out) == (name in ("esmoe", "esmoe_wo_samoe"))
    assert hasattr(method, "cged") == (name != "esmoe_wo_cged")
    assert method.bank.num_experts == (1 if name == "esmoe_wo_samoe" else 2)
    assert method.emotion_weight == (0.5 if name in ("esmoe", "esmoe_wo_samoe") else 0.0)
    method.eval()
    codes = generate_codes(method.model, method.lm.tokenizer, method.lm.vocab,
                           [SCENARIO_A[0][0], SCENARIO_B[1][0]], max_codes=5, prepare=method.prepare_generation)
    assert len(codes) == 2 and all(1 <= len(c) <= 5 for c in codes)


def test_emotions_cover_the_label_set():
    assert len(EMOTIONS) == 7 and set(MOODS.values()) == set(EMOTIONS)



# ---- attentive reflection: routing survives the stream ------------------------------------------------

SCENARIO_C = [(f"the dancer jumps and {v} {w}, {m}", MOODS[m]) for v, w, m in
              itertools.product(["waves", "claps"], ["overhead", "twice"], MOODS)]


def routing_after_stream(tokenizer, **esmoe) -> torch.Tensor:
    """Train three scenarios in sequence (30 updates each); return the mean inference gate (3 scenarios × 3
    experts) of each scenario's training prompts at the end."""
    torch.manual_seed(0)
    method = make_method(tokenizer, mask_prob=0.3, **esmoe)
    scenarios = [SCENARIO_A, SCENARIO_B, SCENARIO_C]
    for step, captions in enumerate(scenarios):
        train(method, step, examples_for(method, captions, "ABC"[step], seed=step), updates=30, lr=5e-3)
    method.eval()
    return torch.stack([method.gate_weights(*prompts(method, [c for c, _ in captions]).values()).mean(0)
                        for captions in scenarios])


@pytest.mark.parametrize("gate_input", ["cged", "embeddings"])
def test_reflection_keeps_old_scenarios_on_their_own_experts(tokenizer, gate_input):
    weights = routing_after_stream(tokenizer, reflection_points=4, gate_input=gate_input)  # route + reflection
    assert torch.equal(weights.argmax(dim=1), torch.arange(3)), weights
    # (the gate reading h keeps them there less firmly on this toy stream: 0.52 for the middle one)
    assert bool((weights.diagonal() > (0.6 if gate_input == "embeddings" else 0.5)).all()), weights
    # without reflection the route loss sends every scenario to the newest expert (routing forgetting)
    forgetful = routing_after_stream(tokenizer, reflection_weight=0.0, reflection_points=4, gate_input=gate_input)
    assert bool((forgetful.argmax(dim=1) == 2).all()), forgetful


# ---- experts on the input embeddings and lm_head (EMBEDDING_LORA) ---------------------------------------


def _prompt_and_step_logits(method, ids, mask, next_id: int):
    """prepare_generation, the prompt forward (with a cache), then one decoding step that feeds token
    `next_id` through the model's own (routed or merged) input embeddings: (prompt logits, step logits)."""
    embeds = method.prepare_generation(ids, mask)
    with torch.no_grad():
        out = method.model(inputs_embeds=embeds, attention_mask=mask, use_cache=True)
        step_mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        step = method.model(input_ids=torch.full((ids.shape[0], 1), next_id), attention_mask=step_mask,
                            **cache_kwarg(method.model, out.past_key_values), use_cache=True)
    return embeds, out.logits, step.logits


def test_embedding_experts_merged_single_prompt_matches_fused(tokenizer):
    method = make_method(tokenizer, top_k=2, extra=EMBEDDING_LORA)
    table = method.bank.input_embedding
    assert table is method.model.get_input_embeddings() and table.rank == 8
    lm_head = method.bank.layers["lm_head"]
    assert lm_head.rank == 6 and method.model.get_output_embeddings() is lm_head
    ex_a, ex_b = examples_for(method, SCENARIO_A, "A"), examples_for(method, SCENARIO_B, "B")
    train(method, 0, ex_a, updates=2)
    train(method, 1, ex_b, updates=2)
    train(method, 2, ex_a[::2] + ex_b[::2], updates=2)
    with torch.no_grad():  # every expert clearly non-zero (the embedding A's start at zero)
        for e in range(3):
            for p in method.bank.expert_parameters(e):
                p.add_(torch.randn_like(p) * 0.05)
    method.eval()
    pristine = table.base.weight.detach().clone()
    captions = [SCENARIO_A[3][0], SCENARIO_B[5][0], "a person runs forward, angrily"]
    batch = prompts(method, captions)
    fused_batch = _prompt_logits(method, batch["input_ids"], batch["attention_mask"])
    code = method.lm.vocab.first_code_id + 3
    for row, caption in enumerate(captions):
        single = prompts(method, [caption])
        ids, mask = single["input_ids"], single["attention_mask"]
        gate = method.gate_weights(ids, mask)
        method.options.merge_single_prompt = False
        embeds_fused, fused, step_fused = _prompt_and_step_logits(method, ids, mask, code)
        assert not method.bank.merged
        front, _, _ = method._front(ids, mask.bool())
        assert not torch.allclose(embeds_fused, front, atol=1e-3)  # the routed embedding experts were added
        method.options.merge_single_prompt = True
        embeds_merged, merged, step_merged = _prompt_and_step_logits(method, ids, mask, code)
        assert method.bank.merged and not torch.equal(table.base.weight, pristine)
        assert torch.equal(table.frozen(ids), pristine[ids])
        assert torch.equal(method.gate_weights(ids, mask), gate)  # the gate reads the frozen table, even merged
        assert torch.allclose(embeds_merged, embeds_fused, atol=1e-6)  # experts added once, not twice
        assert torch.allclose(merged, fused, atol=1e-5)
        assert torch.allclose(step_merged, step_fused, atol=1e-5)  # the decoding step reads the merged table
        length = ids.shape[1]
        assert torch.allclose(merged[0], fused_batch[row, -length:], atol=1e-4)  # left padding aside
    codes = []
    for merge in (True, False):
        method.options.merge_single_prompt = merge
        codes.append(generate_codes(method.model, method.lm.tokenizer, method.lm.vocab, captions[:1], max_codes=8,
                                    batch_size=1, prepare=method.prepare_generation)[0])
    method.options.merge_single_prompt = True
    assert np.array_equal(*codes)
    method.prepare_generation(*prompts(method, captions[:1]).values())
    assert method.bank.merged
    method(batch_of(method, ex_a[:4]))  # a training forward unmerges first
    assert not method.bank.merged and torch.equal(table.base.weight, pristine)


def test_embedding_experts_of_an_old_scenario_stay_bit_identical(tokenizer):
    method = make_method(tokenizer, extra=EMBEDDING_LORA)
    ex_a, ex_b = examples_for(method, SCENARIO_A, "A"), examples_for(method, SCENARIO_B, "B")
    bank, table = method.bank, method.bank.input_embedding
    backbone = {k: v.clone() for k, v in method.model.state_dict().items() if "lora_" not in k}
    train(method, 0, ex_a, updates=3)
    assert torch.count_nonzero(table.lora_A[0]) > 0  # expert 0's embedding factors learned in scenario 0
    expert0 = {name: [p.detach().clone() for p in layer.expert_parameters(0)] for name, layer in bank.layers.items()}

    ctx = ScenarioContext(1, "s1", ex_b)
    method.train()
    method.begin_scenario(1, ctx)
    a1 = table.lora_A[1].detach().clone()
    # every parameter in the optimizer, with weight decay: the frozen ones must still not move
    optimizer = torch.optim.AdamW(method.parameters(), lr=1e-2, weight_decay=0.1)
    for u in range(4):
        out = method(batch_of(method, ex_b[u * 6:(u + 1) * 6]))
        out["loss"].backward()
        if u == 0:
            assert all(p.grad is None for layer in bank.layers.values() for p in layer.expert_parameters(0))
            assert table.lora_A[1].grad is not None and torch.count_nonzero(table.lora_A[1].grad) > 0
            assert table.base.weight.grad is None
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    method.end_scenario(1, ctx)

    for name, layer in bank.layers.items():
        for before, now in zip(expert0[name], layer.expert_parameters(0)):
            assert torch.equal(before, now), name
    assert not torch.equal(a1, table.lora_A[1])
    for name, value in method.model.state_dict().items():
        if name in backbone:
            assert torch.equal(backbone[name], value), name  # the base tables never move
    assert {"model.embed_tokens.base.weight", "lm_head.base.weight"} <= set(backbone)


def test_expert_init_previous_starts_from_a_copy_and_leaves_the_old_expert_alone(tokenizer):
    method = make_method(tokenizer, expert_init="previous", extra=EMBEDDING_LORA)
    ex_a, ex_b = examples_for(method, SCENARIO_A, "A"), examples_for(method, SCENARIO_B, "B")
    train(method, 0, ex_a, updates=3)
    bank = method.bank
    expert0 = [p.detach().clone() for p in bank.expert_parameters(0)]
    assert any(torch.count_nonzero(p) for p in expert0)
    method.train()
    method.begin_scenario(1, ScenarioContext(1, "s1", ex_b))
    for copy, original in zip(bank.expert_parameters(1), expert0):  # expert 1 starts as expert 0
        assert torch.equal(copy, original)
    method.end_scenario(1, None)
    train(method, 1, ex_b, updates=3)
    for now, before in zip(bank.expert_parameters(0), expert0):
        assert torch.equal(now, before)  # the copy trains, the original does not
    assert not all(torch.equal(a, b) for a, b in zip(bank.expert_parameters(1), expert0))
    fresh = make_method(tokenizer, extra=EMBEDDING_LORA)  # the paper's default: a no-op expert
    train(fresh, 0, ex_a, updates=1)
    fresh.train()
    fresh.begin_scenario(1, ScenarioContext(1, "s1", ex_b))
    for layer in fresh.bank.layers.values():  # A or B is zero in every layer: B A = 0
        assert any(torch.count_nonzero(f) == 0 for f in layer.expert_parameters(1))


# ---- CGED as the paper builds it (issue 33) ---------------------------------------------------------------


def test_cged_gradient_reaches_its_dictionary_and_projection_from_the_first_step(tokenizer):
    """From the first update: L_llm reaches the projection into the LLM (out_proj) and the scale (the
    input is live), L_emo reaches the block behind h — its attentions and the dictionary. L_llm does
    not train the block (`esmoe.llm_trains_cged: false`) unless asked to."""
    def grads(**esmoe):
        method = make_method(tokenizer, mask_prob=0.0, route_weight=0.0, reflection_weight=0.0, dictionary="learnable",
                             **esmoe)
        examples = examples_for(method, SCENARIO_A, "A")[:16]
        method.train()
        method.begin_scenario(0, ScenarioContext(0, "A", examples))
        out = method(batch_of(method, examples))
        assert float(out["emotion_delta"]) > 0.01  # h is in the LLM's input from the start
        out["loss"].backward()
        cged = method.cged
        named = {"dictionary": cged.dictionary_parts[0], "out_proj": cged.out_proj.weight, "dict_key": cged.dict_key.weight,
                 "g_query": cged.g_query[0].weight, "f_query": cged.f_query[0].weight, "fuse": cged.fuse.weight,
                 "scale": method.emotion_scale}
        return {k: (0.0 if p.grad is None else float(p.grad.abs().sum())) for k, p in named.items()}

    both = grads()
    assert all(value > 0 for value in both.values()), both
    method = make_method(tokenizer, mask_prob=0.0, dictionary="learnable")  # L_llm alone: only out_proj, scale
    examples = examples_for(method, SCENARIO_A, "A")[:16]
    method.train()
    method.begin_scenario(0, ScenarioContext(0, "A", examples))
    method.zero_grad(set_to_none=True)
    embeds, _, _ = method._front(batch_of(method, examples)["input_ids"], batch_of(method, examples)["prompt_mask"])
    embeds.sum().backward()  # anything downstream of the LLM input
    assert float(method.cged.out_proj.weight.grad.abs().sum()) > 0 and float(method.emotion_scale.grad.abs()) > 0
    assert method.cged.dictionary_parts[0].grad is None and method.cged.fuse.weight.grad is None
    without_lemo = grads(emotion_weight=0.0)  # the w/o L_emo ablation: L_llm trains the block, as in the paper
    assert without_lemo["dictionary"] > 0 and without_lemo["fuse"] > 0


@pytest.mark.parametrize("name,gate_input,cged_input", [("esmoe", "embeddings", "add"), ("esmoe", "cged", "add"),
                                                      ("esmoe", "embeddings", "prefix"),
                                                      ("esmoe_wo_cged", "embeddings", "add")])
def test_zeroing_cged_output_changes_the_full_model_and_not_the_ablation(tokenizer, name, gate_input, cged_input):
    """What reaches the LLM and the gate: in the full model CGED's output (h) enters the prompt embeddings
    (or, with `cged_input: prefix`, embeddings in front of them; with `gate_input: cged`, the gate's query),
    so silencing it changes the logits (and the gate); the ablation has no CGED and its gate reads the
    standardised pooled frozen prompt embeddings."""
    method = make_method(tokenizer, name=name, gate_input=gate_input, cged_input=cged_input)
    train(method, 0, examples_for(method, SCENARIO_A, "A"), updates=2)
    train(method, 1, examples_for(method, SCENARIO_B, "B"), updates=2)
    method.eval()
    batch = prompts(method, [SCENARIO_B[0][0], SCENARIO_A[1][0], "a person runs forward, angrily"])
    logits = _prompt_logits(method, *batch.values())
    gate = method.gate_weights(*batch.values())
    gate_scores = torch.softmax(method.gate.logits(method._gate_in(method._front(batch["input_ids"],
                                                                                batch["attention_mask"].bool())[1])), -1)
    if name == "esmoe_wo_cged":
        assert not hasattr(method, "cged")
        x = method.model.get_input_embeddings().frozen(batch["input_ids"]) if hasattr(
            method.model.get_input_embeddings(), "frozen") else method.model.get_input_embeddings()(batch["input_ids"])
        pooled = torch.nn.functional.layer_norm(
            (x * batch["attention_mask"][..., None]).sum(1) / batch["attention_mask"].sum(1, keepdim=True), (x.shape[-1],))
        assert torch.allclose(method.gate.logits(pooled), method.gate.logits(method._gate_in(
            method._front(batch["input_ids"], batch["attention_mask"].bool())[1])), atol=1e-5)
        return
    original = method.cged.forward
    method.cged.forward = lambda x, mask: torch.zeros(*x.shape[:2], method.cged.width)  # silence h
    try:
        silenced = _prompt_logits(method, *batch.values())
        silenced_scores = torch.softmax(method.gate.logits(method._gate_in(
            method._front(batch["input_ids"], batch["attention_mask"].bool())[1])), -1)
    finally:
        method.cged.forward = original
    assert not torch.allclose(logits, silenced, atol=1e-4)
    assert torch.allclose(gate_scores, silenced_scores, atol=1e-6) == (gate_input == "embeddings")
    assert torch.equal(method.gate_weights(*batch.values()), gate)  # restored


def test_cged_prefix_takes_the_same_positions_in_training_and_in_batched_generation(tokenizer):
    """`cged_input: prefix`: h reaches the LLM as n embeddings of their own in front of the prompt. The
    gradient reaches their projection and the scale from the first update (L_emo the block behind h); the
    logits a right-padded training batch gives for the first motion code equal those of left-padded
    generation (the prefix at positions 0 … n − 1, the pads masked between it and the prompt); and the
    context budget counts the prefix."""
    method = make_method(tokenizer, cged_input="prefix", prefix_tokens=3, mask_prob=0.0, route_weight=0.0,
                         reflection_weight=0.0, dictionary="learnable")
    assert method.extra_positions(1) == 3
    examples = examples_for(method, SCENARIO_A, "A")[:16]
    method.train()
    method.begin_scenario(0, ScenarioContext(0, "A", examples))
    out = method(batch_of(method, examples))
    assert float(out["emotion_delta"]) > 0.1  # live: the prefix starts at an embedding's size
    out["loss"].backward()
    assert float(method.prefix_proj.weight.grad.abs().sum()) > 0 and float(method.emotion_scale.grad.abs()) > 0
    assert float(method.cged.dictionary_parts[0].grad.abs().sum()) > 0  # L_emo trains the block
    method.end_scenario(0, ScenarioContext(0, "A", examples))
    train(method, 1, examples_for(method, SCENARIO_B, "B"), updates=2)

    method.eval()
    chosen = [examples[0], examples[5]]
    assert chosen[0]["prompt_length"] != chosen[1]["prompt_length"]  # so that one row is padded
    batch = batch_of(method, chosen)  # right-padded, as in training
    with torch.no_grad():
        embeds, pooled, _ = method._front(batch["input_ids"], batch["prompt_mask"])
        method.bank.set_routing(method.gate(method._gate_in(pooled)))
        embeds = method._add_embedding_experts(batch["input_ids"], embeds)
        embeds, mask, _ = method._with_prefix(embeds, batch["attention_mask"])
        trained = method.model(inputs_embeds=embeds, attention_mask=mask).logits
        method.bank.clear_routing()
    generated = _prompt_logits(method, *prompts(method, [SCENARIO_A[0][0], SCENARIO_A[5][0]]).values())
    for row, example in enumerate(chosen):
        assert torch.allclose(trained[row, 3 + example["prompt_length"] - 1], generated[row, -1], atol=1e-4)


def test_reflection_replays_stored_prompts_through_the_current_cged(tokenizer):
    """With the gate reading h, the reflection points are pooled prompt embeddings (they never drift) and
    the reflection loss runs them through the CURRENT CGED: a change to CGED changes the loss. With the
    SAPT-style gate input the loss does not depend on CGED at all."""
    losses = {}
    for gate_input in ("cged", "embeddings"):
        method = make_method(tokenizer, gate_input=gate_input, dictionary="learnable")
        train(method, 0, examples_for(method, SCENARIO_A, "A"), updates=2)
        assert method.gate.reflection_points.shape[1] == method.model.get_input_embeddings().weight.shape[1]
        method.train()
        method.begin_scenario(1, ScenarioContext(1, "B", examples_for(method, SCENARIO_B, "B")))
        before = float(method.gate.reflection_loss(1, encode=method._gate_in))
        with torch.no_grad():
            method.cged.g_query[0].weight.add_(0.5)
            method.cged.f_query[0].weight.add_(0.5)
            method.cged.fuse.weight.mul_(-1.0)
        losses[gate_input] = (before, float(method.gate.reflection_loss(1, encode=method._gate_in)))
    assert losses["cged"][0] != losses["cged"][1]
    assert losses["embeddings"][0] == losses["embeddings"][1]


def test_masking_depends_on_the_time_point():
    step = ExpertGate(12, key_dim=16, query_rank=8, max_experts=8, top_k=8, mask_prob=0.3, seed=3, mask_schedule="step")
    constant = ExpertGate(12, key_dim=16, query_rank=8, max_experts=8, mask_prob=0.3, seed=3)
    assert [round(step.masking_probability(i), 4) for i in range(5)] == [0.3, 0.3, 0.65, 0.7667, 0.825]
    assert all(constant.masking_probability(i) == 0.3 for i in range(5))
    for _ in range(6):
        step.add_key()
    g = torch.Generator().manual_seed(0)
    kept_old = []
    for _ in range(400):  # the old experts keep ~ (1 - mask_prob) unmasked on average at every step
        w = step(torch.randn(8, 12), current=5, generator=g)
        kept_old.append(float((w[:, :5] > 0).float().sum(-1).mean()))
    assert 0.6 < np.mean(kept_old) < 0.8
