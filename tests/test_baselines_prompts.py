"""The prompt-based continual baselines: EPI (per-scenario key/value prefix, Mahalanobis routing on
frozen features) and Progressive Prompts ([P_t; …; P_1; x], residual MLP folded in)."""

from __future__ import annotations

import os
from functools import partial

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from l2emg.config import load_config  # noqa: E402
from l2emg.continual.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from l2emg.continual.methods import ScenarioContext  # noqa: E402
from l2emg.continual.methods.epi import squared_mahalanobis  # noqa: E402
from l2emg.lm.generate import generate_codes  # noqa: E402
from l2emg.lm.motion_head import decoding_ids  # noqa: E402
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
)
from method_fixtures import train as _train  # noqa: E402

torch.set_num_threads(1)

# Of the two scenarios (SCENARIO_A, SCENARIO_B), even rows train and odd rows are the held-out test prompts.
PREFIX, PROMPT = 4, 3  # short prefix / soft prompt for speed (the defaults are 16 / 10)
# LoRA on the embeddings and lm_head too, and both methods' experts there (the default profile's setting).
ADAPTERS = (*EMBEDDING_LORA, "epi.output_adapters=true", "progprompt.output_adapters=true")


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def make_method(tokenizer, name: str, seed: int = 0, rough: bool = False, extra: tuple[str, ...] = ()):
    config = load_config("tiny", [f"epi.prefix_length={PREFIX}", f"progprompt.prompt_length={PROMPT}",
                                  "progprompt.mlp_hidden=32", *extra])
    lm = make_lm(tokenizer, seed, rough,
                 num_key_value_heads=2,  # grouped-query attention: the prefix has kv_heads, not heads
                 initializer_range=0.1)  # (0.02 leaves a random tiny model deaf to any prompt)
    return setup_method(name, config, lm)


train = partial(_train, lr=3e-2)  # begin_scenario -> AdamW updates (4 by default) -> end_scenario


def fixed_loss(method, examples) -> float:
    """The loss of all `examples` in one batch, in eval mode."""
    was_training = method.training
    method.eval()
    with torch.no_grad():
        loss = float(method(batch_of(method, examples))["loss"])
    method.train(was_training)
    return loss


def two_scenarios(method, updates: int = 0):
    """Scenario 0 = the training half of A, scenario 1 = that of B (statistics only when updates=0)."""
    ex_a = examples_for(method, SCENARIO_A[::2], "A")
    ex_b = examples_for(method, SCENARIO_B[::2], "B")
    for step, examples in enumerate([ex_a, ex_b]):
        if updates:
            train(method, step, examples, updates=updates)
        else:
            ctx = ScenarioContext(step, f"s{step}", examples)
            method.begin_scenario(step, ctx)
            method.end_scenario(step, ctx)
    return ex_a, ex_b


# ---- EPI ------------------------------------------------------------------------------------------------


def test_epi_routing_is_the_mahalanobis_of_scipy(tokenizer):
    from scipy.spatial.distance import mahalanobis

    method = make_method(tokenizer, "epi")
    ex_a, ex_b = two_scenarios(method)
    method.eval()
    # The shared covariance is the average of the scenarios' (each: the mean within-emotion covariance).
    covariances = []
    for examples in (ex_a, ex_b):
        feats = method.example_features(examples).double().numpy()
        labels = np.array([e["emotion"] for e in examples])
        covariances.append(np.mean([np.cov(feats[labels == c].T) for c in np.unique(labels)
                                    if (labels == c).sum() >= 2], axis=0))
    shared = np.mean(covariances, axis=0)
    assert np.allclose(method.shared_covariance().double().numpy(), shared, atol=1e-6 * np.abs(shared).max())

    captions = [c for c, _ in SCENARIO_A[1::4] + SCENARIO_B[1::4]]
    batch = prompts(method, captions)
    features = method.prompt_features(batch["input_ids"], batch["attention_mask"]).double().numpy()
    stored = method.shared_covariance().double().numpy()  # (kept in float32, as the official)
    precision = np.linalg.pinv(stored, rcond=np.finfo(np.float32).eps * stored.shape[0], hermitian=True)
    expected_scores = np.zeros((len(captions), 2))
    for s, stats in enumerate(method.stats):
        means = stats.means.double().numpy()
        distances = np.array([[mahalanobis(f, m, precision) for m in means] for f in features])
        ours = squared_mahalanobis(torch.from_numpy(features), stats.means, torch.from_numpy(precision)).numpy()
        assert np.allclose(ours, distances ** 2, rtol=1e-6, atol=1e-9)
        expected_scores[:, s] = distances.min(1)
    assert np.allclose(method.scenario_scores(torch.from_numpy(features)).numpy(), expected_scores ** 2, rtol=1e-5)
    routed = method.route(batch["input_ids"], batch["attention_mask"]).numpy()
    assert routed.tolist() == expected_scores.argmin(1).tolist()
    assert len(set(routed.tolist())) == 2  # both scenarios are chosen: the comparison is not trivial


def test_epi_state_holds_only_prefixes_means_and_covariances(tokenizer):
    shapes = []
    for copies in (1, 3):  # three times as many training prompts: the same saved tensors
        method = make_method(tokenizer, "epi")
        ex_a = examples_for(method, SCENARIO_A[::2] * copies, "A")
        ex_b = examples_for(method, SCENARIO_B[::2] * copies, "B")
        for step, examples in enumerate([ex_a, ex_b]):
            ctx = ScenarioContext(step, f"s{step}", examples)
            method.begin_scenario(step, ctx)
            method.end_scenario(step, ctx)
        state = method.adapter_state()
        shapes.append({k: tuple(v.shape) for k, v in state.items()})
    assert shapes[0] == shapes[1]
    d, width = method.hidden, method.prefix_width
    emotions = len(MOODS)
    assert shapes[1] == {"prefixes.0": (PREFIX, width), "prefixes.1": (PREFIX, width),
                         "stats.0.means": (emotions, d), "stats.0.emotions": (emotions,),
                         "stats.1.means": (emotions, d), "stats.1.emotions": (emotions,),
                         "covariance_sum": (d, d), "covariance_count": ()}
    # No stored row is the feature of a single training prompt (every emotion mean averages several).
    feats = method.example_features(ex_a)
    assert torch.cdist(state["stats.0.means"], feats).min() > 1e-4


def test_epi_routes_held_out_prompts_to_their_scenario(tokenizer):
    method = make_method(tokenizer, "epi")
    two_scenarios(method)
    method.eval()
    test_a = [c for c, _ in SCENARIO_A[1::2]]  # captions never seen in the statistics
    test_b = [c for c, _ in SCENARIO_B[1::2]]
    acc_a = method.evaluation_extras(test_a, 0)["routing_accuracy"]
    acc_b = method.evaluation_extras(test_b, 1)["routing_accuracy"]
    assert acc_a > 0.75 and acc_b > 0.75, (acc_a, acc_b)  # chance is 0.5
    assert method.evaluation_extras(test_a, 2) == {}  # a scenario not learned yet
    # prepare_generation routes the same way and returns that scenario's prefix
    batch = prompts(method, test_a[:2] + test_b[:2])
    inputs = method.prepare_generation(batch["input_ids"], batch["attention_mask"])
    assert method.last_routing.tolist() == method.route(batch["input_ids"], batch["attention_mask"]).tolist()
    key0 = inputs.prefix[0][0]  # (B, kv_heads, P, head_dim)
    assert key0.shape == (4, method.kv_heads, PREFIX, method.head_dim)
    for row, scenario in enumerate(method.last_routing.tolist()):
        expected = method.prefix_key_values(torch.tensor([scenario]))[0][0][0]
        assert torch.equal(key0[row], expected)


def test_epi_cached_generation_equals_a_full_forward_with_the_prefix(tokenizer):
    method = make_method(tokenizer, "epi", rough=True)
    two_scenarios(method, updates=2)
    method.eval()
    captions = [SCENARIO_A[1][0], SCENARIO_B[3][0], "a person runs slowly, sadly", SCENARIO_B[6][0]]
    calls = []  # the decoding forwards' last logits (not the routing's feature forward)
    hook = method.model.register_forward_hook(
        lambda module, args, kwargs, out: None if kwargs.get("output_hidden_states") else
        calls.append(out.logits[:, -1].detach()), with_kwargs=True)
    try:
        codes = generate_codes(method.model, method.lm.tokenizer, method.lm.vocab, captions, max_codes=6,
                               prepare=method.prepare_generation, batch_size=len(captions))
    finally:
        hook.remove()
    routing = method.last_routing.tolist()
    uncached = generate_codes(method.model, method.lm.tokenizer, method.lm.vocab, captions, max_codes=6,
                              prepare=method.prepare_generation, batch_size=len(captions), use_cache=False)
    assert [c.tolist() for c in codes] == [c.tolist() for c in uncached]
    assert len(calls) >= 2
    # Teacher-forced full forward (right-padded, the training path) with each prompt's routed prefix:
    # its logits at the prompt end and at every generated code equal the cached decoding steps'.
    vocab = method.lm.vocab
    allowed = decoding_ids(vocab)  # decoding computes the logits of the codes and <eom> only
    for row, caption in enumerate(captions):
        example = examples_for(method, [(caption, "sad")], "x")[0]
        prompt = example["input_ids"][: example["prompt_length"]]
        ids = torch.tensor([prompt + vocab.codes_to_ids(codes[row]).tolist()])
        with torch.no_grad():
            full = method.logits({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, scenario=routing[row])
        for step in range(len(codes[row])):
            torch.testing.assert_close(full[0, len(prompt) - 1 + step][allowed], calls[step][row], atol=2e-4, rtol=1e-4)
    # and the prefix changes what is generated (the routed prefix matters)
    swapped = method.prefix_key_values(torch.tensor([1 - s for s in routing]))
    from l2emg.lm.generate import GenerationInputs

    other = generate_codes(method.model, method.lm.tokenizer, method.lm.vocab, captions, max_codes=6,
                           prepare=lambda i, m: GenerationInputs(prefix=swapped), batch_size=len(captions))
    assert [c.tolist() for c in other] != [c.tolist() for c in codes]


# ---- Progressive Prompts ------------------------------------------------------------------------------


def test_progprompt_older_prompts_frozen_and_input_is_newest_first(tokenizer):
    method = make_method(tokenizer, "progprompt")
    ex_a = examples_for(method, SCENARIO_A[::2], "A")
    ex_b = examples_for(method, SCENARIO_B[::2], "B")
    backbone = {k: v.clone() for k, v in method.model.state_dict().items()}
    train(method, 0, ex_a)
    first = method.prompts[0].detach().clone()
    method.train()
    method.begin_scenario(1, ScenarioContext(1, "s1", ex_b))
    expected = {id(method.prompts[1]), *(id(p) for p in method.mlp.parameters())}
    assert {id(p) for p in method.trainable_parameters()} == expected
    assert {id(p) for p in method.parameters() if p.requires_grad} == expected
    method.end_scenario(1, None)
    train(method, 1, ex_b)
    assert torch.equal(method.prompts[0], first)  # bit-identical
    for key, value in method.model.state_dict().items():
        assert torch.equal(value, backbone[key]), key  # frozen backbone

    captured = []
    hook = method.model.register_forward_pre_hook(
        lambda module, args, kwargs: captured.append((kwargs["inputs_embeds"].detach(), kwargs["attention_mask"])),
        with_kwargs=True)
    batch = batch_of(method, ex_b[:3])
    plain = prompts(method, [SCENARIO_B[0][0], SCENARIO_A[2][0]])  # left-padded generation prompts
    try:
        method.eval()
        with torch.no_grad():
            method.logits(batch)
            inputs = method.prepare_generation(plain["input_ids"], plain["attention_mask"])
    finally:
        hook.remove()
    table = method.model.get_input_embeddings()
    n = PROMPT
    for (embeds, mask), source in ((captured[0], batch), ((inputs.embeds, inputs.attention_mask), plain)):
        rows = embeds.shape[0]
        assert torch.equal(embeds[:, :n], method.prompts[1].expand(rows, -1, -1))  # P_2 first
        assert torch.equal(embeds[:, n:2 * n], method.prompts[0].expand(rows, -1, -1))  # then P_1
        assert torch.equal(embeds[:, 2 * n:], table(source["input_ids"]))  # then x
        assert bool(mask[:, :2 * n].all()) and torch.equal(mask[:, 2 * n:], source["attention_mask"])


def test_progprompt_training_input_goes_through_the_mlp_and_folding_keeps_the_output(tokenizer):
    method = make_method(tokenizer, "progprompt", rough=True)
    ex_a = examples_for(method, SCENARIO_A[::2], "A")
    ctx = ScenarioContext(0, "s0", ex_a)
    method.train()
    method.begin_scenario(0, ctx)
    optimizer = torch.optim.AdamW(method.trainable_parameters(), lr=3e-2)
    for u in range(3):
        method(batch_of(method, ex_a[u * 4:(u + 1) * 4]))["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    raw = method.prompts[0].detach().clone()
    method.eval()
    batch = batch_of(method, ex_a[:4])
    with torch.no_grad():
        through_mlp = method.prompt_stack().clone()
        before = method.logits(batch)
    assert torch.allclose(through_mlp, method.mlp(raw))
    assert not torch.allclose(through_mlp, raw, atol=1e-4)  # the MLP does something
    method.end_scenario(0, ctx)
    assert method.mlp is None and "mlp.module.0.weight" not in method.adapter_state()
    assert torch.allclose(method.prompts[0], through_mlp, atol=1e-6)
    with torch.no_grad():
        after = method.logits(batch)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


# ---- both -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["epi", "progprompt"])
def test_two_scenarios_train_with_falling_loss(tokenizer, name):
    method = make_method(tokenizer, name)
    for step, (captions, scenario) in enumerate([(SCENARIO_A, "A"), (SCENARIO_B, "B")]):
        examples = examples_for(method, captions, scenario)
        ctx = ScenarioContext(step, f"s{step}", examples)
        method.begin_scenario(step, ctx)
        before = fixed_loss(method, examples)  # with the new scenario's fresh prefix / prompt
        method.end_scenario(step, ctx)
        train(method, step, examples, updates=8, lr=0.1)
        after = fixed_loss(method, examples)
        assert after < before - 0.1, (step, before, after)


@pytest.mark.parametrize("name,extra", [("epi", ()), ("progprompt", ()), ("epi", ADAPTERS), ("progprompt", ADAPTERS)],
                         ids=["epi", "progprompt", "epi-output_adapters", "progprompt-output_adapters"])
def test_checkpoint_round_trip_gives_identical_logits_and_generations(tokenizer, name, extra, tmp_path):
    method = make_method(tokenizer, name, rough=True, extra=extra)
    ex_a, ex_b = two_scenarios(method, updates=2)
    assert sum(".lora_" in k for k in method.adapter_state()) == (8 if extra else 0)  # 2 experts × 2 layers × A, B
    save_checkpoint(method, name, 1, {"step": 1}, tmp_path / "step_01")
    restored = make_method(tokenizer, name, rough=True, extra=extra)
    load_checkpoint(restored, tmp_path / "step_01", name)
    for m in (method, restored):
        m.eval()
    batch = batch_of(method, ex_a[:3] + ex_b[:3])
    with torch.no_grad():
        assert torch.equal(method.logits(batch), restored.logits(batch))
    captions = [c for c, _ in SCENARIO_A[1:6:2] + SCENARIO_B[1:6:2]]
    kwargs = dict(max_codes=6, batch_size=3, greedy=False, seed=3)
    lists = [[c.tolist() for c in generate_codes(m.model, m.lm.tokenizer, m.lm.vocab, captions,
                                                  prepare=m.prepare_generation, **kwargs)]
             for m in (method, restored)]
    assert lists[0] == lists[1]
    uncached = generate_codes(method.model, method.lm.tokenizer, method.lm.vocab, captions,
                              prepare=method.prepare_generation, use_cache=False, **kwargs)
    assert [c.tolist() for c in uncached] == lists[0]  # the KV-cached path equals full recomputation
    assert method.structure() == restored.structure()
    if name == "epi":
        batch = prompts(method, captions)
        assert torch.equal(method.route(*batch.values()), restored.route(*batch.values()))


def test_report_lists_a_methods_extras_per_step_and_scenario():
    from l2emg.continual.report import extras_lines, method_extras

    results = {"scenarios": ["A", "B"], "steps": [
        {"extras": {"A": {"routing_accuracy": 1.0}}},
        {"extras": {"A": {"routing_accuracy": 0.75}, "B": {"routing_accuracy": 0.5}}}]}
    extras = method_extras(results)
    assert extras == {"routing_accuracy": {"matrix": [[1.0, None], [0.75, 0.5]], "final": {"A": 0.75, "B": 0.5},
                                           "final_mean": 0.625}}
    text = "\n".join(extras_lines(extras, results["scenarios"]))
    assert "| 1 | 1.000 |  |" in text and "| 2 | 0.750 | 0.500 |" in text and "0.625" in text
    assert method_extras({"scenarios": ["A"], "steps": [{"results": {}}]}) == {}  # other methods: nothing


def test_config_sections_have_the_official_defaults_and_refuse_bad_values(tokenizer):
    from l2emg.config import Config
    from l2emg.errors import ConfigError

    config = Config()
    assert (config.epi.prefix_length, config.epi.feature_layer, config.epi.init_std, config.epi.dropout) == (16, -1, 1.0, 0.0)
    assert (config.progprompt.prompt_length, config.progprompt.residual_mlp, config.progprompt.mlp_hidden) == (10, True, 800)
    assert (config.progprompt.prompt_lr, config.progprompt.output_adapters, config.epi.output_adapters) == (0.3, False, False)
    default = load_config("default")  # the default profile gives both the embeddings' reach (and a measured prompt lr)
    assert default.epi.output_adapters and default.progprompt.output_adapters
    assert not load_config("paper").epi.output_adapters and not load_config("paper").progprompt.output_adapters
    for bad in ("epi.prefix_length=0", "epi.init_std=0", "epi.dropout=1.0", "progprompt.prompt_length=0",
                "progprompt.mlp_hidden=0", "progprompt.prompt_lr=0", "epi.unknown=1"):
        with pytest.raises(ConfigError):
            load_config("tiny", [bad])
    with pytest.raises(ConfigError, match="feature_layer"):
        make_method(tokenizer, "epi", extra=("epi.feature_layer=3",))  # the tiny model has hidden states 0 … 2


# ---- output adapters ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["epi", "progprompt"])
def test_output_adapters_need_an_embedding_target(tokenizer, name):
    from l2emg.errors import ConfigError

    with pytest.raises(ConfigError, match=f"{name}.output_adapters"):  # the tiny profile: LoRA on q/k/v/o only
        make_method(tokenizer, name, extra=(f"{name}.output_adapters=true",))


def test_epi_output_adapters_pair_each_prefix_with_its_expert_and_route_on_the_frozen_backbone(tokenizer):
    method = make_method(tokenizer, "epi", rough=True, extra=ADAPTERS)
    plain = make_method(tokenizer, "epi", rough=True)  # the same backbone, prefixes only
    assert sorted(method.bank.layers) == ["lm_head", "model.embed_tokens"]  # not the attention projections
    assert method.bank.layers["model.embed_tokens"].rank == 8 and method.bank.layers["lm_head"].rank == 6  # rank_pattern
    two_scenarios(method, updates=2)
    two_scenarios(plain)
    # the statistics were taken with every expert off, although expert 0 had trained (and acts on embed_tokens)
    assert method.bank.layers["model.embed_tokens"].lora_A[0].abs().sum() > 0
    for ours, theirs in zip(method.stats, plain.stats):
        torch.testing.assert_close(ours.means, theirs.means)
    method.eval()
    batch = prompts(method, [c for c, _ in SCENARIO_A[1:8:2] + SCENARIO_B[1:8:2]])
    method.prepare_generation(batch["input_ids"], batch["attention_mask"])
    routed = method.last_routing
    assert len(set(routed.tolist())) == 2
    # each prompt decodes with the expert of the scenario its prefix is routed to (one-hot, per sample)
    assert torch.equal(method.bank.routing_state.weights.cpu(), torch.nn.functional.one_hot(routed, 2).float())
    # the expert matters: scenario 0's logits with and without expert 0
    train_batch = batch_of(method, examples_for(method, SCENARIO_A[:4], "A"))
    with torch.no_grad():
        with_expert = method.logits(train_batch, scenario=0)
        for p in method.bank.expert_parameters(0):
            p.zero_()
        without = method.logits(train_batch, scenario=0)
        assert not torch.allclose(with_expert, without, atol=1e-4)


def test_progprompt_output_adapters_sum_every_expert_and_the_prompt_trains_at_its_own_lr(tokenizer):
    method = make_method(tokenizer, "progprompt", rough=True, extra=(*ADAPTERS, "progprompt.prompt_lr=0.2"))
    ex_a, ex_b = two_scenarios(method, updates=2)
    method.train()
    method.begin_scenario(1, ScenarioContext(1, "s1", ex_b))
    groups = method.parameter_groups(0.005)
    assert groups[0]["lr"] == 0.2 and {id(p) for p in groups[0]["params"]} == \
        {id(method.prompts[1]), *(id(p) for p in method.mlp.parameters())}
    assert "lr" not in groups[1] and {id(p) for p in groups[1]["params"]} == \
        {id(p) for p in method.bank.expert_parameters(1)}
    method.end_scenario(1, None)
    method.eval()
    batch = prompts(method, [SCENARIO_A[1][0], SCENARIO_B[1][0]])
    method.prepare_generation(batch["input_ids"], batch["attention_mask"])
    assert torch.equal(method.bank.routing_state.weights, torch.ones(2))  # every expert, weight 1, no task id
    # both experts act (the older, frozen one too): removing either changes the output
    train_batch = batch_of(method, ex_b[:4])
    with torch.no_grad():
        both = method.logits(train_batch)
        for expert in (0, 1):
            saved = [p.clone() for p in method.bank.expert_parameters(expert)]
            for p in method.bank.expert_parameters(expert):
                p.zero_()
            assert not torch.allclose(method.logits(train_batch), both, atol=1e-4), expert
            for p, value in zip(method.bank.expert_parameters(expert), saved):
                p.copy_(value)
        torch.testing.assert_close(method.logits(train_batch), both)
