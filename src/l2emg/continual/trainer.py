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

Method run folder `RUN/methods/<method>-<split>-o<order>/`:
    progress.json            finished steps
    checkpoints/step_XX/     adapters.safetensors + structure.json (+ the training log of that step)
    results.json             per-step, per-scenario metrics (continual_metrics' format)
    adapter.json             how `l2emg generate` loads this method's adapters
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from l2emg.config import Config
from l2emg.continual.examples import build_examples, collate_examples, corrupt_motion_codes, drop_captions
from l2emg.continual.methods import ContinualMethod, ScenarioContext, method_class
from l2emg.data.formats import MotionDataset, load_dataset
from l2emg.data.stream import Stream, Subset, stream_from_config
from l2emg.errors import CheckpointError
from l2emg.lm.prompts import prompt_ids
from l2emg.runs import RunDir
from l2emg.utils.io import load_json, save_json

console = Console(stderr=True)

ADAPTER_FILE = "adapters.safetensors"
STRUCTURE_FILE = "structure.json"


def method_run_name(method: str, split: str, order: int) -> str:
    return f"{method}-{split}-o{order}"


def step_seed(seed: int, step: int, purpose: int = 0) -> int:
    """A distinct, reproducible seed for each step (and purpose within the step)."""
    return (int(seed) * 1_000_003 + step * 7_919 + purpose * 104_729) % (2**31 - 1)


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up then cosine decay to `min_ratio`."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, disable=not enabled)


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
        self.dir = run.path / "methods" / method_run_name(self.method_name, updates["split"], updates["order"])
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
        self.codes = load_json(self.run.path / "codes.json")
        self.lm = MotionLM.load(self.run.path / "lm", dtype=cfg.lm.dtype)
        self.lm.model.to(device)
        self.method: ContinualMethod = method_class(self.method_name)(cfg, self.lm)
        self.method.setup()
        self.method.to(device)
        self.motion_tokenizer = MotionTokenizer.from_pretrained(self.run.path / "tokenizer", device=device)
        self.evaluator = Evaluator.from_pretrained(self.run.path / "evaluator")

    def steps(self) -> list[tuple[str, list[str]]]:
        """(name, training motion ids) per step: one per subset, or the union for joint training."""
        if self.method.joint_training:
            return [("all scenarios", [i for s in self.stream.subsets for i in s.train])]
        return [(s.name, s.train) for s in self.stream.subsets]

    def _examples(self, ids: list[str]) -> list[dict[str, Any]]:
        from l2emg.data.stream import INSTRUCTION, InstructionSample

        samples = []
        for motion_id in ids:
            record = self.dataset.by_id(motion_id)
            for caption in record.captions:
                samples.append(InstructionSample(INSTRUCTION, caption.text, record.emotion, record.scenario,
                                                 motion_id, ""))
        return build_examples(samples, self.codes, self.lm.tokenizer, self.lm.vocab, self.config.lm.max_length)

    # -- checkpoints --------------------------------------------------------------------------------
    def _progress_file(self) -> Path:
        return self.dir / "progress.json"

    def finished_steps(self) -> int:
        path = self._progress_file()
        return int(load_json(path)["finished_steps"]) if path.exists() else 0

    def _checkpoint_dir(self, step: int) -> Path:
        return self.dir / "checkpoints" / f"step_{step:02d}"

    def _save_checkpoint(self, step: int, log: dict[str, Any]) -> None:
        target = self._checkpoint_dir(step)
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file(self.method.adapter_state(), str(tmp / ADAPTER_FILE))
        save_json(tmp / STRUCTURE_FILE, {"method": self.method_name, "step": step,
                                         "structure": self.method.structure()})
        save_json(tmp / "train_log.json", log)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)

    def _load_checkpoint(self, step: int) -> None:
        path = self._checkpoint_dir(step)
        load_method_state(self.method, path, self.method_name)

    # -- training -----------------------------------------------------------------------------------
    def train_step(self, step: int, name: str, ids: list[str]) -> dict[str, Any]:
        cfg = self.config.train
        seed_everything(step_seed(cfg.seed, step))
        examples = self._examples(ids)
        ctx = ScenarioContext(step, name, examples)
        self.method.train()
        self.method.begin_scenario(step, ctx)
        params = self.method.trainable_parameters()
        if not params:
            raise CheckpointError(f"method {self.method_name}: nothing to train at step {step}")
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        generator = torch.Generator()
        generator.manual_seed(step_seed(cfg.seed, step, purpose=1))
        corruption = torch.Generator()
        corruption.manual_seed(step_seed(cfg.seed, step, purpose=3))
        dropout = torch.Generator()
        dropout.manual_seed(step_seed(cfg.seed, step, purpose=4))
        unconditional = prompt_ids(self.lm.tokenizer, self.lm.vocab, "")
        pad_id = self.lm.tokenizer.pad_token_id or 0

        def collate_fn(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
            return collate_examples(drop_captions(batch, unconditional, cfg.caption_dropout, dropout), pad_id)

        loader = DataLoader(examples, batch_size=cfg.batch_size, shuffle=True, generator=generator,
                            collate_fn=collate_fn)
        total = cfg.epochs * len(loader)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_factor(s, total, cfg.warmup_steps, cfg.min_lr_ratio))
        acc = self.accelerator
        model, optimizer, loader = acc.prepare_model(self.method), acc.prepare_optimizer(optimizer), \
            acc.prepare_data_loader(loader)
        losses: list[float] = []
        extra: dict[str, list[float]] = {}
        started = time.time()
        with _progress(self.progress and acc.is_main_process) as bar:
            task = bar.add_task(f"step {step + 1}: {name}", total=cfg.epochs * len(loader), info="")
            for _epoch in range(cfg.epochs):
                for batch in loader:
                    batch["input_ids"] = corrupt_motion_codes(batch["input_ids"], self.lm.vocab, cfg.code_corruption,
                                                              corruption)
                    out = model(batch)
                    acc.backward(out["loss"])
                    acc.clip_grad_norm_(params, cfg.grad_clip)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    losses.append(float(acc.reduce(out["loss"].detach(), reduction="mean")))  # mean over ranks
                    for key, value in out.items():
                        if key != "loss":
                            extra.setdefault(key, []).append(float(value.detach()))
                    bar.update(task, advance=1, info=f"loss {np.mean(losses[-20:]):.3f}")
        acc.wait_for_everyone()
        self.method.end_scenario(step, ctx)
        acc.free_memory()
        return {"step": step, "scenario": name, "examples": len(examples), "updates": len(losses),
                "seconds": round(time.time() - started, 1), "loss": losses,
                "first_loss": losses[0], "last_loss": float(np.mean(losses[-10:])),
                **{f"last_{k}": float(np.mean(v[-10:])) for k, v in extra.items()}}

    # -- evaluation ---------------------------------------------------------------------------------
    def test_ids(self, subset: Subset) -> list[str]:
        ids = list(subset.test)
        cap = self.config.train.eval_max_motions
        return ids[:cap] if cap else ids

    def generate_features(self, captions: list[str], seed: int, greedy: bool = False) -> list[np.ndarray]:
        """Captions -> raw (T, 263) features from the current model (sampling as the config says)."""
        from l2emg.lm.generate import generate_codes

        cfg = self.config.train
        self.method.eval()
        codes = generate_codes(self.lm.model, self.lm.tokenizer, self.lm.vocab, captions,
                               max_codes=self.config.lm.max_codes, greedy=greedy,
                               temperature=cfg.eval_temperature, top_k=cfg.eval_top_k,
                               batch_size=cfg.eval_batch_size, seed=seed, prepare=self.method.prepare_generation,
                               guidance_scale=cfg.guidance_scale)
        return self.motion_tokenizer.decode_codes(codes)

    def evaluate(self, step: int) -> dict[str, Any]:
        """Metrics of the current model on every scenario's test set."""
        from l2emg.eval.evaluate import evaluate_motions

        cfg = self.config.train
        results: dict[str, Any] = {}
        transfer: dict[str, Any] = {}
        for j, subset in enumerate(self.stream.subsets):
            ids = self.test_ids(subset)
            if not ids:
                continue  # a subset without test motions has no column entries (NaN in the matrices)
            captions = [self.dataset.by_id(i).captions[0].text for i in ids]
            generations: dict[str, list[np.ndarray]] = {i: [] for i in ids}
            for g in range(cfg.eval_generations):
                feats = self.generate_features(captions, seed=step_seed(cfg.seed, step, purpose=100 + 10 * j + g))
                for motion_id, f in zip(ids, feats):
                    generations[motion_id].append(f)
            evaluation = evaluate_motions(self.evaluator, generations, self.dataset, "test", ids,
                                          captions=dict(zip(ids, captions)), repeats=cfg.eval_repeats,
                                          seed=step_seed(cfg.seed, step, purpose=2))
            results[subset.name] = evaluation["metrics"]
            if evaluation.get("transfer") and evaluation["transfer"]["num_motions"]:
                transfer[subset.name] = evaluation["transfer"]
        return {"results": results, "transfer": transfer}

    # -- the stream ---------------------------------------------------------------------------------
    def results_path(self) -> Path:
        return self.dir / "results.json"

    def _save_or_check_config(self) -> None:
        """The method run's resolved config: saved on the first start, and a resume must match it."""
        from l2emg.config import read_saved_config, save_config
        from l2emg.runs import config_differences

        path = self.dir / "config.yaml"
        if path.exists() and self.finished_steps():
            changed = [c for c in config_differences(read_saved_config(path), self.config) if c != "profile"]
            if changed:
                raise CheckpointError(f"{path}: this method run was started with another config (differs in: "
                                      f"{', '.join(changed)}); remove {self.dir} or use the same settings")
        elif self.accelerator.is_main_process:
            save_config(self.config, path)

    def run_stream(self) -> dict[str, Any]:
        """Train and evaluate every step not finished yet; return the results dict."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._save_or_check_config()
        self._load()
        acc = self.accelerator
        steps = self.steps()
        done = self.finished_steps()
        results = load_json(self.results_path()) if self.results_path().exists() and done else {
            "method": self.method_name, "split": self.config.stream.split, "order": self.config.stream.order,
            "joint_training": self.method.joint_training,
            "scenarios": [s.name for s in self.stream.subsets], "steps": [],
        }
        results["steps"] = results["steps"][:done]
        if acc.is_main_process:
            console.print(f"[bold]{self.dir.name}[/]: {len(steps)} steps on {acc.num_processes} process(es) "
                          f"({acc.distributed_type.value}, device {acc.device})")
        if done:
            self._load_checkpoint(done - 1)
            if acc.is_main_process:
                console.print(f"[bold]{self.dir.name}[/]: resuming after step {done} of {len(steps)}")
        for step in range(done, len(steps)):
            name, ids = steps[step]
            log = self.train_step(step, name, ids)
            if acc.is_main_process:
                self._save_checkpoint(step, log)
                evaluation = self.evaluate(step)
                results["steps"].append({"scenario": name, "train": {k: v for k, v in log.items() if k != "loss"},
                                         **evaluation})
                save_json(self.results_path(), results)
                save_json(self._progress_file(), {"finished_steps": step + 1, "total_steps": len(steps)})
            acc.wait_for_everyone()
            if self.stop_after_step is not None and step >= self.stop_after_step:
                break
        if acc.is_main_process and self.finished_steps() == len(steps):
            save_json(self.dir / "adapter.json", {"loader": "l2emg.continual.trainer:load_adapters",
                                                  "method": self.method_name,
                                                  "checkpoint": str(self._checkpoint_dir(len(steps) - 1))})
        return results


def load_method_state(method: ContinualMethod, checkpoint: Path, method_name: str) -> None:
    """Rebuild a set-up method's structure and load its adapter tensors from a checkpoint folder."""
    structure_path = checkpoint / STRUCTURE_FILE
    tensors_path = checkpoint / ADAPTER_FILE
    for path in (structure_path, tensors_path):
        if not path.exists():
            raise CheckpointError(f"{path}: missing from the checkpoint")
    saved = load_json(structure_path)
    if saved.get("method") != method_name:
        raise CheckpointError(f"{structure_path}: checkpoint of method {saved.get('method')!r}, not {method_name!r}")
    method.restore_structure(saved.get("structure", {}))
    try:
        state = load_file(str(tensors_path))
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{tensors_path}: unreadable safetensors file ({err})") from err
    method.load_adapter_state(state, source=str(tensors_path))


def load_adapters(model: torch.nn.Module, method_dir: Path) -> Callable | None:
    """`adapter.json` loader for `l2emg generate`: inject the method into `model`, load its final
    checkpoint, and return its generation hook."""
    from l2emg.config import read_saved_config
    from l2emg.lm.motion_lm import VOCAB_FILE, MotionLM
    from l2emg.lm.vocab import MotionVocab

    spec = load_json(method_dir / "adapter.json")
    run_dir = method_dir.parent.parent
    config = read_saved_config(method_dir / "config.yaml")
    lm = MotionLM(model, None, MotionVocab.load(run_dir / "lm" / VOCAB_FILE))
    method = method_class(spec["method"])(config, lm)
    method.setup()
    load_method_state(method, Path(spec["checkpoint"]), spec["method"])
    method.eval()
    return method.prepare_generation


METHOD_LABELS = {"mtl": "MTL", "seqlora": "SeqLoRA", "esmoe": "ES-MoE", "esmoe_wo_cged": "w/o CGED",
                 "esmoe_wo_samoe": "w/o SAMoE", "esmoe_wo_lemo": "w/o L_emo"}


def method_label(name: str) -> str:
    """The name Table 2 prints for a method."""
    return METHOD_LABELS.get(name, name)


def write_report(trainer: StreamTrainer, results: dict[str, Any]) -> dict[str, Any]:
    """Table-2 row, continual metrics, heatmaps and a GIF grid of one emotion across scenarios."""
    from l2emg.eval.continual_metrics import (
        AVERAGE_METRICS,
        average_ci95,
        continual_metrics,
        matrices_from_results,
        save_continual_metrics,
    )
    from l2emg.eval.report import render_heatmaps, table2_header, table2_row

    out = trainer.dir
    if results.get("joint_training"):
        # One evaluation after joint training: the averages of that row; FR does not apply.
        row = results["steps"][0]["results"]
        metrics = {"method": results["method"], "scenarios": results["scenarios"], "FR": None}
        for key, name in AVERAGE_METRICS.items():
            cells = [row[s][key] for s in results["scenarios"] if row.get(s, {}).get(key)]  # no test motions: no cell
            metrics[name] = float(np.mean([c["mean"] for c in cells])) if cells else None
            metrics[f"{name}_ci95"] = average_ci95([c["ci95"] for c in cells]) if cells else None
        figures: list[Path] = []
    else:
        perf = matrices_from_results(results, str(trainer.results_path()))
        metrics = continual_metrics(perf)
        save_continual_metrics(out / "continual_metrics.json", perf, metrics)
        figures = render_heatmaps(perf, out / "figures")
    transfer = [s.get("transfer") for s in results["steps"][-1:]]
    metrics["emotion_transfer"] = transfer[0] if transfer else None
    save_json(out / "metrics.json", metrics)
    label = method_label(results["method"])
    table = table2_header() + "\n" + table2_row(label, metrics)
    samples = render_emotion_samples(trainer, out / "samples")
    lines = [f"# {label} on the {results['split']} stream, order {results['order']}", "", table, "",
             "FR in percentage points of top-1 R-Precision, as the paper prints it.", ""]
    lines += [f"![{p.stem}]({p.relative_to(out)})" for p in figures + samples]
    from l2emg.utils.io import atomic_write_text

    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    return metrics


def render_emotion_samples(trainer: StreamTrainer, out_dir: Path, emotions: tuple[str, ...] = ("sad", "happy"))\
        -> list[Path]:
    """For each emotion, one test caption per scenario with that emotion -> a GIF grid (the paper's
    Figure 1/4 idea: the same emotion expressed across scenarios)."""
    from l2emg.motion.features import recover_joints
    from l2emg.motion.render import render_grid

    count = trainer.config.train.report_samples
    if count == 0:
        return []
    paths = []
    for emotion in emotions:
        picks = []
        for subset in trainer.stream.subsets:
            for motion_id in subset.test:
                record = trainer.dataset.by_id(motion_id)
                if record.emotion == emotion and (subset.primary_scenario in (None, record.scenario)):
                    picks.append(record)
                    break
        picks = picks[:count]
        if not picks:
            continue
        captions = [r.captions[0].text for r in picks]
        features = trainer.generate_features(captions, seed=step_seed(trainer.config.train.seed, 999))
        joints = [np.asarray(recover_joints(f)) for f in features]
        path = out_dir / f"{emotion}_across_scenarios.{trainer.config.preview.format}"
        render_grid(joints, captions, path, fps=trainer.config.preview.fps, size=trainer.config.preview.size,
                    titles=[r.scenario for r in picks])
        paths.append(path)
    return paths
