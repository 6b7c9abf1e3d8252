"""The continual trainer: the stream runs, checkpoints restore, and a killed run resumes to exactly
the metrics of an uninterrupted one."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from l2emg.continual.trainer import StreamTrainer
from l2emg.errors import CheckpointError
from l2emg.runs import RunDir
from l2emg.utils.schedule import warmup_cosine
from l2emg.utils.seeding import step_seed
from method_fixtures import strip_timing


def _results(trainer: StreamTrainer) -> dict:
    return json.loads(trainer.method_run.results_path.read_text())


def test_lr_schedule_warms_up_then_decays():
    values = [warmup_cosine(s, 100, 10, 0.1) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))
    assert values[-1] == pytest.approx(0.1, abs=0.01)
    assert len({step_seed(0, s) for s in range(8)}) == 8


def test_killed_stream_resumes_to_identical_metrics(tiny_run_copy, tiny_config, tmp_path):
    other = tmp_path / "uninterrupted"
    shutil.copytree(tiny_run_copy, other)

    # Killed after its second step, then started again.
    killed = StreamTrainer(RunDir(tiny_run_copy), tiny_config, "seqlora", "mixed", 1, progress=False,
                           stop_after_step=1)
    killed.run_stream()
    assert killed.finished_steps() == 2
    resumed = StreamTrainer(RunDir(tiny_run_copy), tiny_config, "seqlora", "mixed", 1, progress=False)
    resumed.run_stream()

    straight = StreamTrainer(RunDir(other), tiny_config, "seqlora", "mixed", 1, progress=False)
    straight.run_stream()

    a, b = strip_timing(_results(resumed)), strip_timing(_results(straight))
    assert len(a["steps"]) == len(a["scenarios"]) == 3
    assert a == b
    # The final adapters are bit-identical too.
    final_a = resumed.method.adapter_state()
    final_b = straight.method.adapter_state()
    assert final_a.keys() == final_b.keys()
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)

    # Training moved the adapter away from its zero-initialised B factor, and the loss fell.
    assert any(float(t.abs().sum()) > 0 for k, t in final_a.items() if k.endswith(("B", "B.0")) or ".B" in k)
    first = a["steps"][0]["train"]
    assert first["updates"] >= 1 and np.isfinite(first["last_loss"])

    metrics = resumed.write_report(a)
    assert resumed.method_run.report_path.exists() and resumed.method_run.metrics_path.exists()
    assert "FR" in metrics

    # train.log: the start, two steps, the resume, the last step and the finish, one line each, in order
    lines = resumed.method_run.log_path.read_text().splitlines()
    kinds = [line.split(" ", 2)[2].split(":")[0].split(" of ")[0] for line in lines]
    assert kinds == ["start", "step 1/3 " + a["scenarios"][0], "step 2/3 " + a["scenarios"][1],
                     "resume after step 2", "step 3/3 " + a["scenarios"][2], "finished"], lines
    assert f"loss {first['first_loss']:.3f} -> {first['last_loss']:.3f}" in lines[1]
    assert "; evaluation " in lines[1] and "AWF" in lines[-1]  # (the tiny runs' test sets are too small for top-1)


def test_code_corruption_replaces_only_motion_codes():
    from l2emg.continual.examples import corrupt_motion_codes
    from l2emg.lm.vocab import MotionVocab

    vocab = MotionVocab(som_id=100, eom_id=101, first_code_id=102, codebook_size=50)
    ids = torch.cat([torch.arange(0, 100), torch.tensor([100]), torch.arange(102, 152), torch.tensor([101, 0, 0])])
    ids = ids[None].repeat(64, 1)  # (64, 154): text, <som>, 50 codes, <eom>, padding
    generator = torch.Generator().manual_seed(0)
    out = corrupt_motion_codes(ids, vocab, 0.5, generator)
    codes = slice(101, 151)
    assert torch.equal(out[:, :101], ids[:, :101]) and torch.equal(out[:, 151:], ids[:, 151:])
    assert ((out[:, codes] >= 102) & (out[:, codes] < 152)).all()
    changed = (out[:, codes] != ids[:, codes]).float().mean()
    assert 0.4 < float(changed) < 0.5  # p = 0.5, minus random codes that hit the original (1/50)
    again = corrupt_motion_codes(ids, vocab, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert corrupt_motion_codes(ids, vocab, 0.0) is ids


def test_caption_dropout_swaps_the_prompt_and_keeps_the_target():
    from l2emg.continual.examples import UNLABELLED, drop_captions

    examples = [{"input_ids": [1, 2, 3, 4, 50, 51, 52], "labels": [-100] * 4 + [50, 51, 52], "prompt_length": 4,
                 "emotion": 2, "motion_id": f"m{k}"} for k in range(400)]
    out = drop_captions(examples, [1, 9], 0.25, torch.Generator().manual_seed(0))
    dropped = [e for e in out if e["prompt_length"] == 2]
    assert 0.18 < len(dropped) / len(out) < 0.32
    for e in dropped:
        assert e["input_ids"] == [1, 9, 50, 51, 52] and e["labels"] == [-100, -100, 50, 51, 52]
        assert e["emotion"] == UNLABELLED
    kept = [e for e in out if e["prompt_length"] == 4]
    assert all(e == examples[0] | {"motion_id": e["motion_id"]} for e in kept)
    assert examples[0]["prompt_length"] == 4  # the inputs are not modified
    assert drop_captions(examples, [1, 9], 0.0) == examples


def test_two_process_cpu_run_has_two_ranks(tiny_run_copy):
    """torchrun with 2 CPU processes: both ranks join (gloo) and the stream finishes."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "l2emg.cli", "train", "--method", "seqlora", "--profile", "tiny", "--run-dir", str(tiny_run_copy),
           "--no-progress", "--set", "stream.max_subsets=2", "--set", "train.epochs=1", "--set", "train.report_samples=0"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "on 2 process(es) (MULTI_CPU" in done.stdout + done.stderr
    assert (tiny_run_copy / "methods" / "seqlora-unseen-o1" / "report.md").exists()


def test_checkpoint_of_another_method_is_refused(tiny_run_copy, tiny_config):
    trainer = StreamTrainer(RunDir(tiny_run_copy), tiny_config, "seqlora", "mixed", 1, progress=False,
                            stop_after_step=0)
    trainer.run_stream()
    structure = trainer.method_run.checkpoint_dir(0) / "structure.json"
    data = json.loads(structure.read_text())
    data["method"] = "mtl"
    structure.write_text(json.dumps(data))
    again = StreamTrainer(RunDir(tiny_run_copy), tiny_config, "seqlora", "mixed", 1, progress=False)
    with pytest.raises(CheckpointError, match="mtl"):
        again.run_stream()


def test_corrupt_adapter_file_is_refused(tiny_run_copy, tiny_config):
    trainer = StreamTrainer(RunDir(tiny_run_copy), tiny_config, "seqlora", "mixed", 1, progress=False,
                            stop_after_step=0)
    trainer.run_stream()
    (trainer.method_run.checkpoint_dir(0) / "adapters.safetensors").write_bytes(b"not a safetensors file")
    again = StreamTrainer(RunDir(tiny_run_copy), tiny_config, "seqlora", "mixed", 1, progress=False)
    with pytest.raises(CheckpointError, match="adapters.safetensors"):
        again.run_stream()


def test_killed_esmoe_stream_with_embedding_experts_resumes_to_identical_metrics(tiny_run_copy, tiny_config, tmp_path):
    """The default profile's ES-MoE set-up (experts on q/k/v/o, the input embedding and lm_head; a new
    expert starts from the previous one; LoRA dropout), killed after its first step."""
    overrides = {"lora": tiny_config.lora.model_copy(update={
                     "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "embed_tokens", "lm_head"],
                     "rank_pattern": {"embed_tokens": 16, "lm_head": 16}, "dropout": 0.05}),
                 "esmoe": tiny_config.esmoe.model_copy(update={"expert_init": "previous"})}
    config = tiny_config.model_copy(update=overrides)
    other = tmp_path / "uninterrupted"
    shutil.copytree(tiny_run_copy, other)
    StreamTrainer(RunDir(tiny_run_copy), config, "esmoe", "unseen", 1, progress=False, stop_after_step=0).run_stream()
    resumed = StreamTrainer(RunDir(tiny_run_copy), config, "esmoe", "unseen", 1, progress=False)
    a = strip_timing(resumed.run_stream())
    straight = StreamTrainer(RunDir(other), config, "esmoe", "unseen", 1, progress=False)
    b = strip_timing(straight.run_stream())
    assert len(a["steps"]) == 3 and a == b
    final_a, final_b = resumed.method.adapter_state(), straight.method.adapter_state()
    assert final_a.keys() == final_b.keys() and all(torch.equal(final_a[k], final_b[k]) for k in final_a)


def test_gradient_accumulation_follows_the_larger_batch(tiny_run_copy, tiny_config):
    """batch 8 × grad_accum 2 lands where batch 16 does (far nearer than batch 8), with half the updates of batch 8."""
    def train(batch_size: int, grad_accum: int) -> tuple[dict, torch.Tensor]:
        config = tiny_config.model_copy(deep=True)
        config.train.batch_size, config.train.grad_accum = batch_size, grad_accum
        config.train.code_corruption = config.lora.dropout = 0.0  # no per-batch random draws
        config.train.group_by_length = False  # the same examples in a batch of 16 as in two of 8
        trainer = StreamTrainer(RunDir(tiny_run_copy), config, "seqlora", "unseen", 1, progress=False)
        torch.manual_seed(0)
        trainer._load()
        name, ids = trainer.steps()[0]
        log = trainer.train_step(0, name, ids)
        state = trainer.method.adapter_state()
        return log, torch.cat([state[k].flatten().float() for k in sorted(state)])

    big_log, big = train(16, 1)
    small_log, small = train(8, 1)
    accum_log, accum = train(8, 2)
    assert accum_log["updates"] == big_log["updates"] == math.ceil(small_log["updates"] / 2)
    # Measured: 0.0016 against 0.17 (group means differ from the batch mean by padding only).
    assert torch.dist(accum, big) < 0.1 * torch.dist(small, big)


def test_length_grouped_batches_cover_every_example_once_with_little_padding():
    from l2emg.continual.examples import LengthGroupedBatches

    lengths = [int(x) for x in np.random.default_rng(0).integers(20, 100, size=1000)]
    sampler = LengthGroupedBatches(lengths, 32, torch.Generator().manual_seed(0), megabatch=8)
    first, second = list(sampler), list(sampler)
    assert len(first) == len(sampler) == 32
    for epoch in (first, second):
        assert sorted(i for batch in epoch for i in batch) == list(range(1000))  # each example once
    assert first != second  # reshuffled every epoch

    def padding(batches):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    plain = torch.randperm(1000, generator=torch.Generator().manual_seed(0)).tolist()
    assert padding(first) < 0.2 * padding([plain[k:k + 32] for k in range(0, 1000, 32)])
    again = list(LengthGroupedBatches(lengths, 32, torch.Generator().manual_seed(0), megabatch=8))
    assert again == first  # seeded


def _recording_decoder(trainer, monkeypatch) -> list[str]:
    """Load the trainer and record every caption its evaluation decodes (the returned list fills)."""
    trainer._load()
    decoded: list[str] = []
    original = trainer.generate_features

    def recording(captions, seed, greedy=False):
        decoded.extend(captions)
        return original(captions, seed, greedy)

    monkeypatch.setattr(trainer, "generate_features", recording)
    return decoded


@pytest.mark.parametrize("protocol", ["redrawn", "fixed"])
def test_evaluation_protocol_decodes_what_it_scores(tiny_run_copy, tiny_config, protocol, monkeypatch):
    """redrawn: one generation set per repetition (captions drawn at random among each motion's) plus a
    MultiModality set; fixed: eval_generations of the first caption. Both report FID pooled over scenarios."""
    config = tiny_config.model_copy(deep=True)
    config.train.eval_protocol = protocol
    config.train.eval_mm_captions = 2
    config.train.eval_cells = "all"
    trainer = StreamTrainer(RunDir(tiny_run_copy), config, "seqlora", "mixed", 1, progress=False)
    decoded = _recording_decoder(trainer, monkeypatch)
    evaluation = trainer.evaluate(0)
    tasks = [(trainer.dataset_of(s), trainer.test_ids(s)) for s in trainer.stream.subsets if trainer.test_ids(s)]
    n = sum(len(ids) for _d, ids in tasks)
    first = {d.by_id(i).captions[0].text for d, ids in tasks for i in ids}
    repeats, gens = config.train.eval_repeats, config.train.eval_generations
    mm = sum(min(2, len(ids)) for _d, ids in tasks)
    if protocol == "redrawn":
        assert len(decoded) == repeats * n + gens * mm
        assert set(decoded) - first  # captions other than the first were drawn
    else:
        assert len(decoded) == n + (gens - 1) * mm and set(decoded) <= first
    assert evaluation["protocol"] == protocol
    assert evaluation["pooled"]["num_motions"] == n and evaluation["pooled"]["fid"]["repeats"] == repeats


def test_needed_cells_score_the_learned_and_next_scenarios_and_everything_at_the_end(tiny_run_copy, tiny_config,
                                                                                        monkeypatch):
    """eval_cells needed: after step 1 only scenarios 1–2 are decoded and scored, without MultiModality;
    after the last step every scenario, with MultiModality; the metrics read those cells alone."""
    config = tiny_config.model_copy(deep=True)
    config.train.eval_mm_captions = 2
    assert config.train.eval_cells == "needed"
    trainer = StreamTrainer(RunDir(tiny_run_copy), config, "seqlora", "unseen", 1, progress=False)
    decoded = _recording_decoder(trainer, monkeypatch)
    subsets = trainer.stream.subsets
    assert len(subsets) >= 3
    repeats, gens = config.train.eval_repeats, config.train.eval_generations
    first = trainer.evaluate(0)
    scored = [s for s in subsets[:2] if trainer.test_ids(s)]
    assert sorted(first["results"]) == sorted(s.name for s in scored)
    assert len(decoded) == repeats * sum(len(trainer.test_ids(s)) for s in scored)  # no MultiModality set
    assert all(cell["multimodality"] is None for cell in first["results"].values())
    decoded.clear()
    last = trainer.evaluate(len(subsets) - 1)
    scored = [s for s in subsets if trainer.test_ids(s)]
    assert sorted(last["results"]) == sorted(s.name for s in scored)
    mm = sum(min(2, len(trainer.test_ids(s))) for s in scored)
    assert len(decoded) == repeats * sum(len(trainer.test_ids(s)) for s in scored) + gens * mm
    assert all(cell["multimodality"] is not None for cell in last["results"].values())


def test_resume_checks_the_config_except_other_methods_options(tiny_run_copy, tiny_config):
    """A finished step of SeqLoRA stays valid when another method's options change (a baseline's new
    option), and is refused when a setting of its own run changes."""
    first = StreamTrainer(RunDir(tiny_run_copy), tiny_config, "seqlora", "mixed", 1, progress=False, stop_after_step=0)
    first.run_stream()
    other = tiny_config.model_copy(deep=True)
    other.sapt.route_weight = 3.0
    other.esmoe.emotion_weight = 0.9
    StreamTrainer(RunDir(tiny_run_copy), other, "seqlora", "mixed", 1, progress=False, stop_after_step=1).run_stream()
    own = tiny_config.model_copy(deep=True)
    own.train.lr = 0.123
    with pytest.raises(CheckpointError, match="train.lr"):
        StreamTrainer(RunDir(tiny_run_copy), own, "seqlora", "mixed", 1, progress=False).run_stream()
