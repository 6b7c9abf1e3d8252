"""Load a trained run and generate: captions -> motion codes -> features -> joints.

    generator = load_generator("runs/default", method="esmoe")   # or None: the run's only method
    codes, features, joints = generator.motions(["a person jogs in a circle, sadly"])

A run's generator is its language model (`RUN/lm/`), its motion tokenizer (`RUN/tokenizer/`), the
generation settings of its config and, when a method is chosen, that method's final checkpoint
restored through the method registry (`l2emg.continual.checkpoint.restore_method`). Without a
trained method the plain backbone + motion vocabulary generates (untrained motion rows still give
valid motions).

`MotionGenerator.explain(caption)` says what the method decides from the prompt alone, before any code
is generated (ES-MoE's gate over its scenario experts and its emotion block's prediction, EPI's routed
scenario); `load_generator(..., step=k)` restores the method as it was after stream step k (its
checkpoint `checkpoints/step_XX/`) instead of its final state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from l2emg.config import LMConfig, read_saved_config
from l2emg.errors import CheckpointError, ConfigError, DataError
from l2emg.lm.generate import PrepareHook, codes_to_motion
from l2emg.lm.motion_lm import VOCAB_FILE, MotionLM
from l2emg.lm.prompts import encode_prompts, prompt_ids
from l2emg.runs import MethodRunDir, RunDir
from l2emg.utils.io import load_json

if TYPE_CHECKING:
    from l2emg.continual.methods import ContinualMethod


@dataclass
class MotionGenerator:
    """Everything needed to turn captions into motions for one run."""

    lm: MotionLM
    motion_tokenizer: Any
    lm_config: LMConfig = field(default_factory=LMConfig)
    prepare: PrepareHook | None = None
    method_dir: Path | None = None
    extra_positions: int = 0  # what the method puts in front of a prompt (a KV prefix, soft prompts)
    method: "ContinualMethod | None" = None  # the restored method (None: the plain backbone)
    step: int | None = None  # the stream step whose checkpoint was restored (None: the final one)

    @property
    def context(self) -> int:
        """Positions the backbone can attend over (prompt + `<som>` + codes + `<eom>`)."""
        return int(self.lm.model.config.max_position_embeddings)

    def check_lengths(self, captions: Sequence[str], max_codes: int) -> None:
        """Refuse, before any work, a motion length or a caption that does not fit the context."""
        if max_codes + 3 > self.context:
            raise ConfigError(f"max codes {max_codes}: the model's context holds {self.context} positions "
                              f"(prompt, <som>, codes, <eom>); use at most {self.context - 3} and a short caption")
        for caption in captions:
            prompt = len(prompt_ids(self.lm.tokenizer, self.lm.vocab, caption)) + self.extra_positions
            if prompt + max_codes + 1 > self.context:
                raise DataError(
                    f"caption ({len(caption)} characters, {prompt} prompt tokens) and {max_codes} motion codes "
                    f"exceed the model's context of {self.context} positions; shorten the caption"
                    + (f" or use at most {self.context - prompt - 1} codes" if self.context - prompt - 1 > 0 else ""))

    def codes(self, captions: Sequence[str], **kwargs: Any) -> list[np.ndarray]:
        """Captions -> code arrays; keyword arguments override the run's `lm` generation settings."""
        settings = dict(max_codes=self.lm_config.max_codes, greedy=self.lm_config.greedy,
                        temperature=self.lm_config.temperature, top_k=self.lm_config.top_k,
                        batch_size=self.lm_config.generation_batch_size, prepare=self.prepare,
                        precision=self.lm_config.precision)
        settings.update({k: v for k, v in kwargs.items() if v is not None})
        self.check_lengths(captions, int(settings["max_codes"]))
        return self.lm.generate(captions, **settings)

    def motions(self, captions: Sequence[str], **kwargs: Any) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """Captions -> (codes, raw features (T, 263), joints (T, 22, 3)) lists."""
        codes = self.codes(captions, **kwargs)
        features, joints = codes_to_motion(self.motion_tokenizer, codes)
        return codes, features, joints

    @property
    def scenarios(self) -> list[str]:
        """`stream_scenarios` of the method run ([] for the plain backbone)."""
        return stream_scenarios(MethodRunDir(self.method_dir)) if self.method_dir is not None else []

    def explain(self, caption: str) -> dict[str, Any]:
        """Why `caption` gets its motion: what the method decides from the prompt before any code.

        Always {"method": method run folder name or None, "step": restored step or None,
        "scenarios": `scenarios`}, plus the method's own entries (`ContinualMethod.explain`): ES-MoE
        "gate" (the weights generation uses, one per expert), "gate_scores" (softmax over all experts
        before top-k) and "emotion" ({label: probability}); EPI "route" (scenario index) and
        "route_distances". Nothing else for methods that decide nothing per prompt (SeqLoRA, MTL).
        Refuses a caption that does not fit the context (as `codes` does)."""
        self.check_lengths([caption], 1)
        info: dict[str, Any] = {"method": self.method_dir.name if self.method_dir is not None else None,
                                "step": self.step, "scenarios": self.scenarios}
        if self.method is None:
            return info
        device = self.lm.model.get_input_embeddings().weight.device
        prompts = encode_prompts(self.lm.tokenizer, self.lm.vocab, [caption])
        with torch.no_grad():
            info.update(self.method.explain(prompts["input_ids"].to(device), prompts["attention_mask"].to(device))[0])
        return info


def stream_scenarios(method_run: MethodRunDir) -> list[str]:
    """The scenarios of a method run's stream in training order (expert / prefix i learned scenario
    i), from its `results.json`; [] when it has none (or an unreadable one: this only names things)."""
    path = method_run.results_path
    try:
        names = load_json(path).get("scenarios") if path.exists() else None
    except (OSError, ValueError, AttributeError):
        return []
    return [str(n) for n in names] if isinstance(names, list) else []


def restore_trained_method(method_run: MethodRunDir, lm: MotionLM, step: int | None = None) -> "ContinualMethod":
    """Inject a finished method run's adapters into `lm.model` and return the method (eval mode):
    its final checkpoint, or with `step` the checkpoint written after that stream step."""
    from l2emg.continual.checkpoint import restore_method

    method_name, checkpoint = method_run.final_checkpoint()
    if step is not None:
        finished = method_run.finished_steps()
        if not 0 <= step < finished:
            raise CheckpointError(f"{method_run.path}: no checkpoint after step {step}; "
                                  f"steps 0 … {finished - 1} are finished")
        checkpoint = method_run.checkpoint_dir(step)
        if not checkpoint.is_dir():
            raise CheckpointError(f"{checkpoint}: checkpoint not found")
    config = read_saved_config(method_run.config_path)
    return restore_method(method_name, config, lm, checkpoint)


def restore_adapters(method_run: MethodRunDir, lm: MotionLM) -> tuple[PrepareHook, int]:
    """Inject a finished method run's adapters into `lm.model`; return its per-batch generation hook
    and the context positions it adds in front of a prompt."""
    method = restore_trained_method(method_run, lm)
    return method.prepare_generation, method.extra_positions(method_run.finished_steps())


def load_generator(run_dir: str | Path, method: str | None = None, device: str | torch.device = "cpu",
                   step: int | None = None) -> MotionGenerator:
    """The generator of a run folder with `method`'s adapters (`RunDir.find_method_run`): its final
    ones, or with `step` those saved after that stream step (0-based)."""
    from l2emg.tokenizer.api import MotionTokenizer

    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise CheckpointError(f"{run.path}: run folder not found")
    if not (run.lm_dir / VOCAB_FILE).exists():
        raise CheckpointError(f"{run.lm_dir / VOCAB_FILE}: not found; this run has no language model yet "
                              "(run `l2emg train` first)")
    method_run = run.find_method_run(method)
    lm_config = read_saved_config(run.config_path).lm if run.config_path.exists() else LMConfig()
    lm = MotionLM.load(run.lm_dir, dtype=lm_config.dtype)
    motion_tokenizer = MotionTokenizer.from_pretrained(run.tokenizer_dir, device=device)
    if motion_tokenizer.codebook_size != lm.vocab.codebook_size:
        raise CheckpointError(f"{run.path}: the motion tokenizer has {motion_tokenizer.codebook_size} codes, the language "
                              f"model's vocabulary {lm.vocab.codebook_size}")
    lm.model.to(device)
    if method_run is None:
        if step is not None:
            raise CheckpointError(f"{run.path}: no finished method run, so no checkpoint after step {step}")
        return MotionGenerator(lm, motion_tokenizer, lm_config)
    restored = restore_trained_method(method_run, lm, step)
    steps = method_run.finished_steps() if step is None else step + 1
    return MotionGenerator(lm, motion_tokenizer, lm_config, restored.prepare_generation, method_run.path,
                           restored.extra_positions(steps), restored, step)
