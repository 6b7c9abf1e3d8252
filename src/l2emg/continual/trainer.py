"""The continual trainer: a method learns the scenarios of a stream one after another.

For each step i (scenario D_i of the chosen split and order):

    method.begin_scenario(i) -> train on D_i's training examples only -> method.end_scenario(i)
    -> checkpoint (atomic, safetensors) -> evaluate on EVERY scenario's test set -> row i of the
    performance matrices (RESULTS.json, the format of `l2emg.eval.continual_metrics`).

MTL (joint_training) instead trains once on the union of all training sets and is evaluated once.

Everything a step does is seeded from (train.seed, step), so a run killed at any point and started
again resumes after the last finished step and ends with exactly the metrics of an uninterrupted
run. Training goes through Hugging Face Accelerate: one process here, several processes or GPUs
with `accelerate launch` / `torchrun` (evaluation and checkpoints happen on the main process).

The method run folder (`RUN/methods/<method>-<split>-o<order>/`) is laid out by
`l2emg.runs.MethodRunDir`; checkpoints are `l2emg.continual.checkpoint`'s; the report is
`l2emg.continual.report`'s.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from torch.utils.data import DataLoader

from l2emg.config import Config
from l2emg.continual.checkpoint import load_checkpoint, save_checkpoint
from l2emg.continual.examples import (
    LengthGroupedBatches,
    build_examples,
    collate_examples,
    corrupt_motion_codes,
    drop_captions,
)
from l2emg.continual.learned import learned_subset, read_learned
from l2emg.continual.methods import ContinualMethod, ScenarioContext, method_class
from l2emg.continual.report import EmotionSamples, write_report
from l2emg.data.reader import MotionDataset, load_dataset
from l2emg.data.stream import Stream, Subset, stream_from_config
from l2emg.errors import CheckpointError, ConfigError
from l2emg.lm.motion_head import restricted_head, to_row_labels, training_ids
from l2emg.lm.prompts import prompt_ids
from l2emg.runs import MethodRunDir, RunDir
from l2emg.utils.io import load_json, save_json
from l2emg.utils.precision import autocast, machine, resolve_precision
from l2emg.utils.progress import progress_bar
from l2emg.utils.schedule import make_optimizer, make_scheduler
from l2emg.utils.seeding import seed_everything, seeded_generator, step_seed

console = Console(stderr=True)


def step_line(step: int, total: int, entry: dict[str, Any]) -> str:
    """One finished step for train.log: its training, its evaluation and the top-1 on the scenario just learned."""
    train = entry["train"]
    line = (f"step {step + 1}/{total} {entry['scenario']}: {train.get('updates')} updates, loss "
            f"{train.get('first_loss', float('nan')):.3f} -> {train.get('last_loss', float('nan')):.3f}, training "
            f"{train.get('seconds', 0):.0f} s (CPU {train.get('cpu_seconds', 0):.0f} s)")
    if "eval_seconds" in entry:
        line += f"; evaluation {entry['eval_seconds']:.0f} s (CPU {entry.get('eval_cpu_seconds', 0):.0f} s)"
    top1 = [v["r_precision_top1"]["mean"] for v in (entry.get("results") or {}).values()
            if isinstance(v, dict) and v.get("r_precision_top1")]
    own = ((entry.get("results") or {}).get(entry["scenario"]) or {}).get("r_precision_top1")
    if own:
        line += f"; top-1 on it {own['mean']:.3f}"
    if top1:
        line += f", mean over the {len(top1)} scored {sum(top1) / len(top1):.3f}"
    return line


class StreamTrainer:
    """Runs one method over one stream inside a prepared run directory (see `l2emg.pipeline`)."""

    def __init__(self, run: RunDir, config: Config, method: str | None = None, split: str | None = None,
                 order: int | None = None, progress: bool = True, accelerator: Any = None,
                 stop_after_step: int | None = None):
        updates = {"split": split or config.stream.split, "order": order or config.stream.order}
        self.config = config.model_copy(update={"stream": config.stream.model_copy(update=updates)})
        self.method_name = method or config.train.method
        self.run = run
        self.progress = progress
        self.stop_after_step = stop_after_step  # for tests: behave as if killed after this step
        self.method_run: MethodRunDir = run.method_run(self.method_name, updates["split"], updates["order"])
        if accelerator is None:
            from accelerate import Accelerator

            accelerator = Accelerator(cpu=not torch.cuda.is_available())
        self.accelerator = accelerator

    # -- set-up -------------------------------------------------------------------------------------
    def _load(self) -> None:
        from l2emg.eval.evaluator import Evaluator
        from l2emg.lm.motion_lm import MotionLM
        from l2emg.tokenizer.api import MotionTokenizer

        cfg = self.config
        device = self.accelerator.device
        self.dataset: MotionDataset = load_dataset(self.run.data_dir)
        self.stream: Stream = stream_from_config(self.dataset, cfg.stream)
        if cfg.stream.max_subsets:
            self.stream.subsets = self.stream.subsets[: cfg.stream.max_subsets]
        self.codes = load_json(self.run.codes_path)
        # Scenarios learned after the stream (`l2emg learn`): their own datasets and codes.
        self.learned_codes: dict[str, dict[str, list[int]]] = {}
        for entry in read_learned(self.method_run):
            subset, codes = learned_subset(self.method_run, entry)
            self.stream.subsets.append(subset)
            self.learned_codes[subset.name] = codes
        self.lm = MotionLM.load(self.run.lm_dir, dtype=cfg.lm.dtype)
        self.lm.model.to(device)
        self.method: ContinualMethod = method_class(self.method_name)(cfg, self.lm)
        self.method.setup()
        self.method.to(device)
        self._check_context()
        self.motion_tokenizer = MotionTokenizer.from_pretrained(self.run.tokenizer_dir, device=device)
        self.evaluator = Evaluator.from_pretrained(self.run.evaluator_dir)
        self._eval_cache: dict = {}  # the evaluator's embeddings of real motions and captions (eval.evaluate)

    def _check_context(self) -> None:
        """Evaluation prompts + lm.max_codes must fit the backbone's context: refused before any training."""
        context = int(self.lm.model.config.max_position_embeddings)
        captions = [c.text for s in self.stream.subsets for i in self.test_ids(s)
                    for c in self.dataset_of(s).by_id(i).captions]  # any of them may be drawn
        longest = max((len(prompt_ids(self.lm.tokenizer, self.lm.vocab, c)) for c in captions), default=0)
        longest += self.method.extra_positions(len(self.stream.subsets))  # prefixes, soft prompts
        if longest + self.config.lm.max_codes + 1 > context:
            raise ConfigError(f"lm.max_codes={self.config.lm.max_codes}: with test prompts of up to {longest} tokens "
                              f"generation needs {longest + self.config.lm.max_codes + 1} positions, the backbone "
                              f"has {context}; lower lm.max_codes")

    def steps(self) -> list[tuple[str, list[str]]]:
        """(name, training motion ids) per step: one per subset, or the union for joint training."""
        if method_class(self.method_name).joint_training:
            return [("all scenarios", [i for s in self.stream.subsets for i in s.train])]
        return [(s.name, s.train) for s in self.stream.subsets]

    def dataset_of(self, subset: Subset | None) -> MotionDataset:
        """The dataset a subset's motion ids belong to: the run's, or a learned scenario's own."""
        return subset.dataset if subset is not None and subset.dataset is not None else self.dataset

    def _examples(self, ids: list[str], subset: Subset | None = None) -> list[dict[str, Any]]:
        from l2emg.data.stream import INSTRUCTION, InstructionSample

        dataset = self.dataset_of(subset)
        codes = self.learned_codes.get(subset.name, self.codes) if subset is not None else self.codes
        samples = []
        for motion_id in ids:
            record = dataset.by_id(motion_id)
            for caption in record.captions:
                samples.append(InstructionSample(INSTRUCTION, caption.text, record.emotion, record.scenario,
                                                 motion_id, ""))
        return build_examples(samples, codes, self.lm.tokenizer, self.lm.vocab, self.config.lm.max_length)

    # -- checkpoints --------------------------------------------------------------------------------
    def finished_steps(self) -> int:
        return self.method_run.finished_steps()

    def _save_checkpoint(self, step: int, log: dict[str, Any]) -> None:
        save_checkpoint(self.method, self.method_name, step, log, self.method_run.checkpoint_dir(step))

    def _load_checkpoint(self, step: int) -> None:
        load_checkpoint(self.method, self.method_run.checkpoint_dir(step), self.method_name)

    # -- training -----------------------------------------------------------------------------------
    def train_step(self, step: int, name: str, ids: list[str], subset: Subset | None = None) -> dict[str, Any]:
        cfg = self.config.train
        seed_everything(step_seed(cfg.seed, step))
        examples = self._examples(ids, subset)
        ctx = ScenarioContext(step, name, examples)
        self.method.train()
        self.method.begin_scenario(step, ctx)
        params = self.method.trainable_parameters()
        if not params:
            raise CheckpointError(f"method {self.method_name}: nothing to train at step {step}")
        # One group of `params` for most methods; a method may give some parameters their own peak lr
        # (Progressive Prompts' soft prompts: progprompt.prompt_lr), each scaled by the same schedule.
        optimizer = make_optimizer(self.method.parameter_groups(cfg.lr), cfg.lr, weight_decay=cfg.weight_decay)
        generator = seeded_generator(step_seed(cfg.seed, step, purpose=1))
        corruption = seeded_generator(step_seed(cfg.seed, step, purpose=3))
        dropout = seeded_generator(step_seed(cfg.seed, step, purpose=4))
        unconditional = prompt_ids(self.lm.tokenizer, self.lm.vocab, "")
        pad_id = self.lm.tokenizer.pad_token_id or 0
        # lm.motion_softmax: the loss's softmax over the motion targets' vocabulary only (lm/motion_head.py)
        head_ids = training_ids(self.lm.vocab, self.lm.tokenizer.eos_token_id, self.accelerator.device) \
            if self.config.lm.motion_softmax else None

        def collate_fn(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
            return collate_examples(drop_captions(batch, unconditional, cfg.caption_dropout, dropout), pad_id)

        if cfg.group_by_length:
            lengths = [len(e["input_ids"]) for e in examples]
            loader = DataLoader(examples, batch_sampler=LengthGroupedBatches(lengths, cfg.batch_size, generator),
                                collate_fn=collate_fn)
        else:
            loader = DataLoader(examples, batch_size=cfg.batch_size, shuffle=True, generator=generator,
                                collate_fn=collate_fn)
        acc = self.accelerator
        model, optimizer, loader = acc.prepare_model(self.method), acc.prepare_optimizer(optimizer), \
            acc.prepare_data_loader(loader)
        # Gradient accumulation: an update every `grad_accum` micro-batches (the last group of an epoch
        # may be shorter); each micro-batch's loss is divided by its group's size, so an update follows
        # the mean loss of its group, and ranks synchronise gradients only on a group's last micro-batch.
        micro = len(loader)
        total = cfg.epochs * math.ceil(micro / cfg.grad_accum)
        scheduler = make_scheduler(optimizer, "warmup_cosine", total=total, warmup=cfg.warmup_steps,
                                   min_lr_ratio=cfg.min_lr_ratio)
        losses: list[float] = []
        group: list[torch.Tensor] = []
        extra: dict[str, list[float]] = {}
        started, cpu_started = time.time(), time.process_time()
        with progress_bar(f"step {step + 1}: {name}", cfg.epochs * micro,
                          enabled=self.progress and acc.is_main_process) as bar:
            for _epoch in range(cfg.epochs):
                for k, batch in enumerate(loader):
                    first = k - k % cfg.grad_accum
                    size = min(cfg.grad_accum, micro - first)
                    last = k == first + size - 1
                    batch["input_ids"] = corrupt_motion_codes(batch["input_ids"], self.lm.vocab, cfg.code_corruption,
                                                              corruption)
                    with contextlib.nullcontext() if last else acc.no_sync(model):
                        with autocast(self.config.lm.precision, acc.device), \
                                restricted_head(self.lm.model, head_ids) if head_ids is not None else contextlib.nullcontext():
                            if head_ids is not None:
                                batch["labels"] = to_row_labels(batch["labels"], head_ids)
                            out = model(batch)
                        acc.backward(out["loss"] if size == 1 else out["loss"] / size)
                    group.append(out["loss"].detach())
                    for key, value in out.items():
                        if key != "loss":
                            extra.setdefault(key, []).append(float(value.detach()))
                    if last:
                        acc.clip_grad_norm_(params, cfg.grad_clip)
                        optimizer.step()
                        scheduler.step()
                        optimizer.zero_grad(set_to_none=True)
                        mean = group[0] if size == 1 else torch.stack(group).mean()
                        losses.append(float(acc.reduce(mean, reduction="mean")))  # mean over ranks
                        group = []
                    bar.advance(info=f"loss {np.mean(losses[-20:]):.3f}" if losses else None)
        acc.wait_for_everyone()
        self.method.end_scenario(step, ctx)
        acc.free_memory()
        return {"step": step, "scenario": name, "examples": len(examples), "updates": len(losses),
                "seconds": round(time.time() - started, 1), "cpu_seconds": round(time.process_time() - cpu_started, 1),
                "loss": losses,
                "first_loss": losses[0], "last_loss": float(np.mean(losses[-10:])),
                **{f"last_{k}": float(np.mean(v[-10:])) for k, v in extra.items()}}

    # -- evaluation ---------------------------------------------------------------------------------
    def test_ids(self, subset: Subset) -> list[str]:
        ids = list(subset.test)
        cap = self.config.train.eval_max_motions
        return ids[:cap] if cap else ids

    def evaluated_columns(self, step: int) -> tuple[range, bool]:
        """(the subsets step `step`'s evaluation point scores, whether it draws the MultiModality set):
        `train.eval_cells` all -> every subset and MultiModality at every step; needed -> the subsets
        learned so far and the next one (the cells AR/AF/AD/AWF, FR, BWT and FWT read), every subset
        and MultiModality after the last step (and for joint training, whose only step is the last)."""
        n = len(self.stream.subsets)
        last = self.method.joint_training or step >= n - 1
        if self.config.train.eval_cells == "all" or last:
            return range(n), True
        return range(min(step + 2, n)), False

    def generate_features(self, captions: list[str], seed: int, greedy: bool = False) -> list[np.ndarray]:
        """Captions -> raw (T, 263) features from the current model (sampling as the config says)."""
        from l2emg.lm.generate import generate_codes

        cfg = self.config.train
        self.method.eval()
        codes = generate_codes(self.lm.model, self.lm.tokenizer, self.lm.vocab, captions,
                               max_codes=self.config.lm.max_codes, greedy=greedy,
                               temperature=cfg.eval_temperature, top_k=cfg.eval_top_k,
                               batch_size=cfg.eval_batch_size, seed=seed, prepare=self.method.prepare_generation,
                               guidance_scale=cfg.guidance_scale, precision=self.config.lm.precision)
        return self.motion_tokenizer.decode_codes(codes)

    def evaluate(self, step: int) -> dict[str, Any]:
        """Metrics of the current model on the scenarios' test sets `evaluated_columns` names (all of
        them after the last step), and the seconds it took.

        Every generation of the evaluation point (all scenarios' test motions, every set) is drawn in
        one `generate_features` call from one seed, in batches of `train.eval_batch_size`, so a batch
        spans scenarios; the motions are then scored scenario by scenario, and FID once more over all
        scenarios pooled (`pooled`: one FID of every test motion, beside the per-scenario FIDs whose
        40–170 motions are fewer than the evaluator's dimensions).

        `train.eval_protocol` (eval/evaluate.py explains both): `redrawn` decodes `eval_repeats` sets,
        each test motion from one of its captions drawn at random (seeded per evaluation point), plus
        a MultiModality set of `eval_generations` generations of one random caption for the first
        `eval_mm_captions` motions of each scenario; `fixed` decodes `eval_generations` from the first
        caption once and re-scores them in every repetition."""
        from l2emg.eval import metrics as M
        from l2emg.eval.evaluate import cache_texts, evaluate_motions

        started, cpu_started = time.time(), time.process_time()
        cfg = self.config.train
        redrawn = cfg.eval_protocol == "redrawn"
        results: dict[str, Any] = {}
        transfer: dict[str, Any] = {}
        extras: dict[str, Any] = {}  # what a method measures of itself (e.g. EPI's routing accuracy)
        mm = cfg.eval_mm_captions  # only the first `mm` motions get every MultiModality generation (None: all)
        columns, with_mm = self.evaluated_columns(step)
        choose = np.random.default_rng(step_seed(cfg.seed, step, purpose=5))  # redrawn: the caption of each
        tasks = []  # (subset index, dataset, ids, first captions, captions of each scoring set, MM caption)
        for j, subset in enumerate(self.stream.subsets):
            ids = self.test_ids(subset) if j in columns else []
            if ids:  # a subset without test motions (or not scored now) has no entry: NaN in the matrices
                dataset = self.dataset_of(subset)
                options = [[c.text for c in dataset.by_id(i).captions] for i in ids]
                first = [texts[0] for texts in options]
                if redrawn:
                    sets = [[texts[int(choose.integers(len(texts)))] for texts in options]
                            for _r in range(cfg.eval_repeats)]
                    mm_captions = [texts[int(choose.integers(len(texts)))] for texts in options[:mm]] if with_mm else []
                else:
                    sets, mm_captions = [], []
                tasks.append((j, dataset, ids, first, sets, mm_captions))
                cache_texts(self.evaluator, sorted({t for texts in options for t in texts}), self._eval_cache)
        # requests: (task, motion id, caption, kind) with kind "score" (a scoring set) or "mm"
        if redrawn:
            requests = [(k, motion_id, caption, "score") for r in range(cfg.eval_repeats)
                        for k, (_j, _d, ids, _f, sets, _m) in enumerate(tasks) for motion_id, caption in zip(ids, sets[r])]
            if cfg.eval_generations >= 2:
                requests += [(k, motion_id, caption, "mm") for _g in range(cfg.eval_generations)
                             for k, (_j, _d, ids, _f, _s, mm_caps) in enumerate(tasks)
                             for motion_id, caption in zip(ids, mm_caps)]
        else:
            requests = [(k, motion_id, caption, "score") for g in range(cfg.eval_generations)
                        for k, (_j, _d, ids, first, _s, _m) in enumerate(tasks)
                        for motion_id, caption in list(zip(ids, first))[: None if g == 0 or mm is None else mm]]
        with progress_bar(f"step {step + 1}: evaluating", len(requests) + len(tasks), enabled=self.progress) as bar:
            feats = self.generate_features([c for _k, _i, c, _kind in requests],
                                           seed=step_seed(cfg.seed, step, purpose=100))
            bar.advance(len(requests), info="generated")
            generations: list[dict[str, list[np.ndarray]]] = [{i: [] for i in t[2]} for t in tasks]
            used: list[dict[str, list[str]]] = [{i: [] for i in t[2]} for t in tasks]
            mm_sets: list[dict[str, list[np.ndarray]]] = [{} for _t in tasks]
            for (k, motion_id, caption, kind), f in zip(requests, feats):
                if kind == "mm":
                    mm_sets[k].setdefault(motion_id, []).append(f)
                else:
                    generations[k][motion_id].append(f)
                    used[k][motion_id].append(caption)
            pooled_real, pooled_repeats = [], []
            for k, (j, dataset, ids, first, _sets, _mm) in enumerate(tasks):
                name = self.stream.subsets[j].name
                kept: dict[str, Any] = {}
                evaluation = evaluate_motions(self.evaluator, generations[k], dataset, "test", ids,
                                              captions=dict(zip(ids, first)), repeats=cfg.eval_repeats,
                                              seed=step_seed(cfg.seed, step, purpose=2), cache=self._eval_cache,
                                              generation_captions=used[k] if redrawn else None,
                                              mm_generated=mm_sets[k] if redrawn else None, embeddings=kept)
                results[name] = evaluation["metrics"]
                pooled_real.append(kept["real"])
                pooled_repeats.append(kept["repeats"])
                extra = self.method.evaluation_extras(first, j)
                if extra:
                    extras[name] = extra
                if evaluation.get("transfer") and evaluation["transfer"]["num_motions"]:
                    transfer[name] = evaluation["transfer"]
                bar.advance(info=name)
        real = np.concatenate(pooled_real)
        fids = [M.fid(np.concatenate([rep[r] for rep in pooled_repeats]), real) for r in range(cfg.eval_repeats)]
        pooled = {"fid": M.mean_ci95(fids), "num_motions": int(len(real))}
        return {"results": results, "pooled": pooled, "transfer": transfer, **({"extras": extras} if extras else {}),
                "protocol": cfg.eval_protocol, "eval_seconds": round(time.time() - started, 1),
                "eval_cpu_seconds": round(time.process_time() - cpu_started, 1)}

    # -- the stream ---------------------------------------------------------------------------------
    def config_changes(self, path: Path) -> list[str]:
        """The fields in which the method-run config saved at `path` differs from this trainer's, other
        methods' option sections and the profile name aside (a change there — a baseline's new option —
        leaves a finished run of this method valid)."""
        from l2emg.config import METHOD_OPTIONS, read_saved_config
        from l2emg.runs import config_differences

        options = method_class(self.method_name).options
        own = options.section if options is not None else None
        others = tuple(f"{section}." for section in METHOD_OPTIONS if section != own)
        return [c for c in config_differences(read_saved_config(path), self.config)
                if c != "profile" and not c.startswith(others)]

    def _save_or_check_config(self) -> None:
        """The method run's resolved config: saved on the first start, and a resume must match it."""
        from l2emg.config import save_config

        path = self.method_run.config_path
        if path.exists() and self.finished_steps():
            changed = self.config_changes(path)
            if changed:
                raise CheckpointError(f"{path}: this method run was started with another config (differs in: "
                                      f"{', '.join(changed)}); remove {self.method_run.path} or use the same settings")
        elif self.accelerator.is_main_process:
            save_config(self.config, path)

    # -- the report ---------------------------------------------------------------------------------
    def emotion_samples(self, emotions: tuple[str, ...] = ("sad", "happy")) -> list[EmotionSamples]:
        """For each emotion, one test caption per scenario with that emotion, generated by the current model."""
        count = self.config.train.report_samples
        samples = []
        for emotion in emotions if count else ():
            picks = []
            for subset in self.stream.subsets:
                for motion_id in subset.test:
                    record = self.dataset_of(subset).by_id(motion_id)
                    if record.emotion == emotion and (subset.primary_scenario in (None, record.scenario)):
                        picks.append(record)
                        break
            picks = picks[:count]
            if picks:
                captions = [r.captions[0].text for r in picks]
                features = self.generate_features(captions, seed=step_seed(self.config.train.seed, 999))
                samples.append(EmotionSamples(emotion, captions, [r.scenario for r in picks], features))
        return samples

    def write_report(self, results: dict[str, Any]) -> dict[str, Any]:
        """The method run's report (`l2emg.continual.report`), with fresh emotion samples."""
        return write_report(self.method_run, results, self.config, self.emotion_samples())

    def is_finished(self) -> bool:
        """The method run finished its stream and wrote its report (nothing left to do)."""
        return self.method_run.adapter_path.exists() and self.method_run.report_path.exists()

    def run_stream(self) -> dict[str, Any]:
        """Train and evaluate every step not finished yet, then write the report; return the results.

        A finished method run is only read (nothing is written, so a read-only copy works); an
        unfinished one is locked (`MethodRunDir.lock`) while this process writes it."""
        if self.is_finished():
            self._save_or_check_config()  # refuses another config, writes nothing
            if self.accelerator.is_main_process:
                console.print(f"[bold]{self.method_run.name}[/]: finished (reused)")
            return load_json(self.method_run.results_path)
        main = self.accelerator.is_main_process
        with self.method_run.lock() if main else contextlib.nullcontext():
            if main:
                self.method_run.clean_leftovers()
            if self.is_finished():  # another process finished it between the check above and the lock
                return load_json(self.method_run.results_path)
            return self._run_stream()

    def _environment(self) -> dict[str, Any]:
        import transformers

        return {"threads": torch.get_num_threads(), "precision": resolve_precision(self.config.lm.precision,
                                                                                   self.accelerator.device),
                "cpu": machine()["cpu"], "torch": torch.__version__,
                "transformers": transformers.__version__, "numpy": np.__version__}

    def _check_environment(self) -> None:
        """A resume with other threads or library versions is not bit-identical to a straight run: say so."""
        if not self.method_run.progress_path.exists():
            return
        before = load_json(self.method_run.progress_path).get("environment")
        now = self._environment()
        changed = ", ".join(f"{k} {before[k]} -> {now[k]}" for k in now if k in (before or {}) and before[k] != now[k])
        if changed:  # a field the run did not record yet (e.g. "cpu" before 2026-12-07's fourth session) is no change
            console.print(f"[yellow]warning[/]: {self.method_run.name} resumes with another environment ({changed}); "
                          "its results will not be bit-identical to an uninterrupted run")

    def _run_stream(self) -> dict[str, Any]:
        self.method_run.path.mkdir(parents=True, exist_ok=True)
        self._save_or_check_config()
        self._load()
        acc = self.accelerator
        steps = self.steps()
        done = self.finished_steps()
        results = load_json(self.method_run.results_path) if self.method_run.results_path.exists() and done else {
            "method": self.method_name, "split": self.config.stream.split, "order": self.config.stream.order,
            "joint_training": self.method.joint_training,
            "scenarios": [s.name for s in self.stream.subsets], "steps": [],
        }
        results["steps"] = results["steps"][:done]
        if acc.is_main_process:
            console.print(f"[bold]{self.method_run.name}[/]: {len(steps)} steps on {acc.num_processes} process(es) "
                          f"({acc.distributed_type.value}, device {acc.device})")
            env = self._environment()
            self._log(f"{'resume after step ' + str(done) if done else 'start'} of {len(steps)} steps: "
                      f"{acc.num_processes} process(es), device {acc.device}, {env['precision']}, {env['threads']} "
                      f"thread(s), {env['cpu']}")
        if done:
            if acc.is_main_process:
                self._check_environment()
            self._load_checkpoint(done - 1)
            if acc.is_main_process:
                console.print(f"[bold]{self.method_run.name}[/]: resuming after step {done} of {len(steps)}")
        stages = self.run.stage_fingerprint() if acc.is_main_process else {}
        for step in range(done, len(steps)):
            name, ids = steps[step]
            log = self.train_step(step, name, ids)
            if acc.is_main_process:
                self._save_checkpoint(step, log)
                evaluation = self.evaluate(step)
                results["steps"].append({"scenario": name, "train": {k: v for k, v in log.items() if k != "loss"},
                                         **evaluation})
                save_json(self.method_run.results_path, results)
                save_json(self.method_run.progress_path, {"finished_steps": step + 1, "total_steps": len(steps),
                                                          "environment": self._environment(), "stages": stages})
                self._log(step_line(step, len(steps), results["steps"][-1]))
            acc.wait_for_everyone()
            if self.stop_after_step is not None and step >= self.stop_after_step:
                break
        if acc.is_main_process and self.finished_steps() == len(steps):
            self.method_run.mark_finished(self.method_name, len(steps) - 1)
            metrics = self.write_report(results)
            self._log("finished: " + ", ".join(f"{k} {metrics[k]:.3f}" for k in ("AR", "AWF")
                                               if isinstance(metrics.get(k), (int, float)))
                      + (f", FR {100 * metrics['FR']:.1f} points" if isinstance(metrics.get("FR"), (int, float)) else ""))
        return results

    def _log(self, line: str) -> None:
        """One line into the method run's train.log (appended, with the time) and on the console."""
        with open(self.method_run.log_path, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
        console.print(f"[bold]{self.method_run.name}[/]: {escape(line)}", soft_wrap=True, highlight=False)
