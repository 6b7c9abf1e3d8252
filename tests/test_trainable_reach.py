"""What each registered method trains, by parameter name, at its first two steps (tiny profile, LoRA on
the attention projections and on the input / output embeddings as the default profile has it).

For every method: the parameters that require a gradient after `begin_scenario(step)` are exactly
`trainable_parameters()` and exactly the union of its optimiser groups (`parameter_groups`), and they are
what its paper trains at that step — the current scenario's adapter and the modules it learns — and
nothing it forbids: no backbone weight, no older expert, prefix, soft prompt or key.
"""

from __future__ import annotations

import os
import re

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from l2emg.config import load_config  # noqa: E402
from l2emg.continual.methods import METHODS, ScenarioContext  # noqa: E402
from method_fixtures import EMBEDDING_LORA, SCENARIO_A, SCENARIO_B, build_tokenizer, examples_for, make_lm, setup_method  # noqa: E402

torch.set_num_threads(1)

OPTIONS = ["lora.dropout=0.0", "lora.rank=4", *EMBEDDING_LORA,
           "esmoe.d_cged=32", "esmoe.heads=4", "esmoe.dict_clusters=4", "esmoe.kmeans_n_init=2",
           "esmoe.classifier_hidden=32", "esmoe.query_rank=16", "esmoe.key_dim=16", "esmoe.max_experts=8",
           "sapt.query_hidden=16", "sapt.pseudo_prompt_tokens=8", "sapt.reflection_min=3", "sapt.pseudo_prompt_pool=3",
           "epi.prefix_length=4", "progprompt.prompt_length=3", "progprompt.mlp_hidden=32", "progprompt.prompt_lr=0.07"]
OUTPUT_ADAPTERS = ("epi.output_adapters=true", "progprompt.output_adapters=true")
LR = 0.005  # the trainer's train.lr, passed to parameter_groups

EMBEDDINGS = ("embed_tokens", "lm_head")


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def lora(names: set[str], expert: int, embeddings_only: bool = False) -> set[str]:
    """The A and B of `expert` on every targeted layer (or on the input / output embeddings only)."""
    chosen = {n for n in names if re.fullmatch(rf"model\..*\.lora_[AB]\.{expert}", n)}
    if embeddings_only:
        chosen = {n for n in chosen if any(f".{e}." in n for e in EMBEDDINGS)}
    assert chosen, f"no LoRA expert {expert}"
    return chosen


def under(names: set[str], *prefixes: str) -> set[str]:
    """Every parameter of the modules named (e.g. the whole CGED block)."""
    chosen = {n for n in names if n.startswith(prefixes)}
    assert chosen, f"nothing under {prefixes}"
    return chosen


def expected(name: str, step: int, names: set[str], output_adapters: bool) -> set[str]:
    """What the method's paper trains at `step` (0 or 1), by parameter name."""
    if name in ("mtl", "seqlora"):  # one LoRA through the stream (MTL: once, on the union)
        return lora(names, 0)
    if name == "lwf":  # expert 0 at step 0; from step 1 the student is expert 1 and expert 0 the frozen teacher
        return lora(names, step)
    if name == "olora":  # LoRA_t only
        return lora(names, step)
    if name == "sapt":  # LoRA_t, key_t and the shared query network
        return lora(names, step) | {f"gate.keys.{step}"} | under(names, "gate.query.")
    if name.startswith("esmoe"):
        cged = under(names, "cged.", "emotion_scale") if name != "esmoe_wo_cged" else set()
    if name == "esmoe":  # expert_t, key_t, the gate's query network, CGED and its emotion classifier
        return lora(names, step) | {f"gate.keys.{step}"} | under(names, "gate.query.") | cged | under(names, "classifier.")
    if name == "esmoe_wo_cged":  # no CGED: expert_t, key_t, the query network
        return lora(names, step) | {f"gate.keys.{step}"} | under(names, "gate.query.")
    if name == "esmoe_wo_samoe":  # one LoRA (as SeqLoRA) with CGED and its classifier
        return lora(names, 0) | cged | under(names, "classifier.")
    if name == "esmoe_wo_lemo":  # no classifier (λ = 0), nor the attention pooling that only feeds it
        return lora(names, step) | {f"gate.keys.{step}"} | under(names, "gate.query.") | (cged - under(names, "cged.pool_score."))
    if name == "epi":  # prefix_t (and, with output adapters, expert_t on the embeddings)
        return {f"prefixes.{step}"} | (lora(names, step, embeddings_only=True) if output_adapters else set())
    if name == "progprompt":  # θ_t, its residual MLP (and, with output adapters, expert_t on the embeddings)
        return {f"prompts.{step}"} | under(names, "mlp.") | (lora(names, step, embeddings_only=True) if output_adapters else set())
    raise AssertionError(f"no expectation for method {name!r}: add one")


CASES = [(name, True) for name in sorted(METHODS)] + [("epi", False), ("progprompt", False)]


def test_every_registered_method_has_a_case():
    assert {name for name, _ in CASES} == set(METHODS)


@pytest.mark.parametrize("name,output_adapters", CASES,
                         ids=[f"{n}-output_adapters" if n in ("epi", "progprompt") and o else
                              (f"{n}-official" if n in ("epi", "progprompt") else n) for n, o in CASES])
def test_each_method_trains_what_its_paper_trains_and_nothing_else(tokenizer, name, output_adapters):
    config = load_config("tiny", OPTIONS + (list(OUTPUT_ADAPTERS) if output_adapters else []))
    method = setup_method(name, config, make_lm(tokenizer, num_key_value_heads=2))
    for step, (captions, scenario) in enumerate([(SCENARIO_A[::2], "A"), (SCENARIO_B[::2], "B")]):
        ctx = ScenarioContext(step, f"s{step}", examples_for(method, captions, scenario))
        method.train()
        method.begin_scenario(step, ctx)
        named = dict(method.named_parameters())
        by_id = {id(p): n for n, p in named.items()}
        requires_grad = {n for n, p in named.items() if p.requires_grad}
        trainable = [by_id[id(p)] for p in method.trainable_parameters()]
        groups = method.parameter_groups(LR)
        grouped = [by_id[id(p)] for g in groups for p in g["params"]]
        assert len(trainable) == len(set(trainable)) and len(grouped) == len(set(grouped)), "a parameter twice"
        assert set(trainable) == requires_grad, (step, sorted(requires_grad ^ set(trainable)))
        assert set(grouped) == requires_grad, (step, sorted(requires_grad ^ set(grouped)))

        want = expected(name, step, set(named), output_adapters)
        assert requires_grad == want, (step, "extra", sorted(requires_grad - want), "missing", sorted(want - requires_grad))
        # nothing forbidden, spelled out: no backbone weight, nothing of an older scenario
        assert not {n for n in requires_grad if n.startswith("model.") and ".lora_" not in n}
        older = re.compile(r"(lora_[AB]|gate\.keys|prefixes|prompts)\.(\d+)$")
        assert all(int(m.group(2)) >= step for n in requires_grad if (m := older.search(n))
                   and not (name in ("mtl", "seqlora", "esmoe_wo_samoe") and m.group(2) == "0"))

        # the optimiser's groups: one group at train.lr, except Progressive Prompts' prompt (+ MLP) group
        if name == "progprompt":
            prompt_group = {by_id[id(p)] for p in groups[0]["params"]}
            assert groups[0]["lr"] == config.progprompt.prompt_lr == 0.07
            assert prompt_group == {f"prompts.{step}"} | under(set(named), "mlp.")
            assert len(groups) == (2 if output_adapters else 1)
            assert all("lr" not in g for g in groups[1:])  # the experts train at train.lr
        else:
            assert len(groups) == 1 and "lr" not in groups[0]
        method.end_scenario(step, ctx)
        # the scenario's adapter freezes when it ends (shared modules such as a gate may stay trainable)
        assert not [n for n, p in method.named_parameters() if p.requires_grad and older.search(n)]
