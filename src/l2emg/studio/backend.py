"""What the studio page does, without the page (no Gradio here): usable from tests and benchmarks.

    backend = StudioBackend("runs/default")
    result = backend.generate("a person walks forward sadly", "esmoe", Sampling(seed=1))
    result.joints, result.explanation, result.seconds       # (T, 22, 3); the gate; caption -> joints
    files = backend.export(result)                            # BVH + joints .npy
    video, seconds = backend.video(result, files)             # MP4 (timed on its own)

A backend holds one run folder. Its methods are the run's *finished* method runs (`adapter.json`
written), looked up again on every call, so a method that finishes while the studio runs shows up.
Generators (`l2emg.generator.load_generator`) are loaded on first use and kept (least recently used
first out), one per (method run, stream step): the final adapters, or those saved after a step for
the "after each step" comparison. One lock serialises model use: a generator's routing and merged
experts are per-call state, and the page may fire several events at once.

Single prompts are generated with batch size 1, so ES-MoE takes its fast path (the gated experts
merged into the weights, then plain-backbone decoding); `Generation.merged` records that it did.

Every error a user can cause raises an `L2EMGError` with a message for people: an empty caption, a
caption (plus the longest motion) beyond the model's context, a run without a finished method, an
unknown method or step, sampling settings out of range, a run folder that does not exist.
"""

from __future__ import annotations

import re
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from l2emg.errors import CheckpointError, ConfigError, DataError
from l2emg.generator import MotionGenerator, load_generator, stream_scenarios
from l2emg.labels import EMOTIONS, SCENARIOS
from l2emg.lm.motion_lm import VOCAB_FILE
from l2emg.motion.skeleton import FPS
from l2emg.runs import MethodRunDir, RunDir

FRAMES_PER_CODE = 4  # the motion tokenizer's down-sampling: one code = 4 frames = 0.2 s at 20 fps
EMPTY_CAPTION = "the caption is empty: describe a motion and its emotion, e.g. \u201ca person walks forward sadly\u201d"


@dataclass(frozen=True)
class Sampling:
    """Decoding settings of one request (`MotionLM.generate`'s); None = the run's `lm` setting."""

    greedy: bool = False
    temperature: float = 1.0
    top_k: int | None = None  # sample among the k most likely codes (None: all)
    guidance: float = 1.0  # classifier-free guidance scale (1: none)
    seed: int = 0
    max_codes: int | None = None  # longest motion in codes (None: the run's lm.max_codes)

    def check(self) -> None:
        """Refuse values the decoder cannot use, with the setting named."""
        if not self.greedy and not self.temperature > 0:
            raise ConfigError(f"temperature {self.temperature}: must be > 0 when sampling")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"top-k {self.top_k}: must be at least 1 (or empty for all codes)")
        if not self.guidance > 0:
            raise ConfigError(f"guidance {self.guidance}: must be > 0 (1 = no guidance)")
        if self.max_codes is not None and self.max_codes < 1:
            raise ConfigError(f"max codes {self.max_codes}: must be at least 1")


@dataclass
class Generation:
    """One caption's motion from one method (at its final state, or after stream step `step`)."""

    caption: str
    method: str  # the method run folder, e.g. esmoe-unseen-o1
    step: int | None
    codes: np.ndarray  # (N,) motion codes
    joints: np.ndarray  # (T, 22, 3) metres, Y up, T = 4 N
    explanation: dict[str, Any]  # `MotionGenerator.explain`
    sampling: Sampling
    seconds: float  # caption -> codes -> joints
    explain_seconds: float  # what the method decided from the prompt (`explain`)
    merged: bool  # decoded with the gated experts merged into the weights (ES-MoE's single-prompt path)
    fps: int = FPS

    @property
    def frames(self) -> int:
        return int(self.joints.shape[0])

    @property
    def duration(self) -> float:
        return self.frames / self.fps

    @property
    def label(self) -> str:
        """How a comparison names this motion: the method run, or the stream step and its scenario."""
        if self.step is None:
            return self.method
        scenarios = self.explanation.get("scenarios") or []
        name = scenarios[self.step] if self.step < len(scenarios) else ""
        return f"after step {self.step + 1}" + (f" · {name}" if name else "")


@dataclass
class Downloads:
    """The files of one generation: BVH (Blender & co.), joints `.npy` (T, 22, 3), MP4 once encoded."""

    bvh: Path
    npy: Path
    mp4: Path | None = None

    def paths(self) -> list[Path]:
        return [p for p in (self.bvh, self.npy, self.mp4) if p is not None]


def _slug(text: str, limit: int = 48) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return (words[:limit].rstrip("-") or "motion")


class StudioBackend:
    """One run folder's finished methods, their generators, and everything the page asks of them."""

    def __init__(self, run_dir: str | Path, cache_size: int = 16):
        self.run = RunDir(run_dir)
        if not self.run.path.is_dir():
            raise CheckpointError(f"{self.run.path}: run folder not found")
        if not (self.run.lm_dir / VOCAB_FILE).exists():
            raise CheckpointError(f"{self.run.lm_dir / VOCAB_FILE}: not found; this run has no language model yet "
                                  "(run `l2emg run` first)")
        self.cache_size = max(1, int(cache_size))
        self._lock = threading.RLock()
        self._generators: OrderedDict[tuple[str, int | None], MotionGenerator] = OrderedDict()
        self._examples: list[tuple[str, str]] | None = None
        self._workdir = tempfile.TemporaryDirectory(prefix="l2emg-studio-")
        self._exports = 0

    @property
    def workdir(self) -> Path:
        """Where downloads are written (removed when the backend is closed or collected)."""
        return Path(self._workdir.name)

    def close(self) -> None:
        self._generators.clear()
        self._workdir.cleanup()

    # -- methods ------------------------------------------------------------------------------------
    def method_names(self) -> list[str]:
        """Folder names of the run's finished method runs (e.g. esmoe-unseen-o1), sorted."""
        return [r.name for r in self.run.finished_method_runs()]

    def default_method(self) -> str | None:
        """ES-MoE when the run has it (the paper's method), else the first finished method run."""
        names = self.method_names()
        return next((n for n in names if n.startswith("esmoe-")), names[0] if names else None)

    def require_methods(self) -> list[str]:
        """`method_names`, or a clear error when the run has no finished method run."""
        names = self.method_names()
        if not names:
            raise CheckpointError(
                f"{self.run.path}: this run has no finished method yet (no {self.run.methods_dir.name}/*/adapter.json); "
                f"train one first, e.g. `l2emg train --method esmoe --run-dir {self.run.path}`")
        return names

    def method_run(self, method: str | None) -> MethodRunDir:
        """The finished method run named `method` (a folder name or a method name), or a clear error."""
        self.require_methods()
        if not method:
            raise ConfigError(f"choose a method: {', '.join(self.method_names())}")
        found = self.run.find_method_run(method)
        assert found is not None  # find_method_run(name) returns a run or raises
        return found

    def scenarios(self, method: str) -> list[str]:
        """The scenarios of a method run's stream in training order (from its `results.json`)."""
        return stream_scenarios(self.method_run(method))

    def steps(self, method: str) -> list[tuple[int, str]]:
        """(step, scenario learned at that step) for every finished step of a method run."""
        method_run = self.method_run(method)
        scenarios = self.scenarios(method_run.name)
        return [(i, scenarios[i] if i < len(scenarios) else f"step {i + 1}") for i in range(method_run.finished_steps())]

    def generator(self, method: str, step: int | None = None) -> MotionGenerator:
        """The (cached) generator of a finished method run, at its final state or after `step`."""
        method_run = self.method_run(method)
        key = (method_run.name, step)
        with self._lock:
            if key in self._generators:
                self._generators.move_to_end(key)
                return self._generators[key]
            generator = load_generator(self.run.path, method_run.name, step=step)
            self._generators[key] = generator
            while len(self._generators) > self.cache_size:
                self._generators.popitem(last=False)
            return generator

    def max_codes_limit(self, method: str) -> int:
        """The most codes any prompt could get (context − `<som>`, `<eom>` and one prompt token)."""
        return max(1, self.generator(method).context - 3)

    def default_max_codes(self, method: str) -> int:
        """The run's `lm.max_codes` (49 codes = 196 frames by default)."""
        return int(self.generator(method).lm_config.max_codes)

    # -- examples -----------------------------------------------------------------------------------
    def examples(self) -> list[tuple[str, str]]:
        """(emotion, caption) from the run's test split, one per emotion, from varied scenarios; [] when
        the run keeps no dataset (a copied run without `data/` still generates)."""
        if self._examples is None:
            from l2emg.data.reader import load_dataset

            try:
                test = sorted(load_dataset(self.run.data_dir).split("test"), key=lambda r: r.motion_id)
            except DataError:
                test = []
            found = []
            for k, emotion in enumerate(EMOTIONS):
                candidates = [r for r in test if r.emotion == emotion and r.captions]
                preferred = [r for r in candidates if r.scenario == SCENARIOS[k % len(SCENARIOS)]]
                chosen = (preferred or candidates or [None])[0]
                if chosen is not None:
                    found.append((emotion, chosen.captions[0].text))
            self._examples = found
        return self._examples

    # -- generation ---------------------------------------------------------------------------------
    def generate(self, caption: str | None, method: str | None, sampling: Sampling = Sampling(),
                 step: int | None = None) -> Generation:
        """Caption -> motion with one method (batch of one: ES-MoE merges its gated experts)."""
        text = " ".join((caption or "").split())
        if not text:
            raise DataError(EMPTY_CAPTION)
        sampling.check()
        method_run = self.method_run(method)
        with self._lock:
            generator = self.generator(method_run.name, step)
            max_codes = sampling.max_codes or int(generator.lm_config.max_codes)
            generator.check_lengths([text], max_codes)
            start = time.perf_counter()
            explanation = generator.explain(text)
            explained = time.perf_counter()
            codes, _, joints = generator.motions(
                [text], greedy=sampling.greedy, temperature=sampling.temperature, top_k=sampling.top_k,
                guidance_scale=sampling.guidance, seed=sampling.seed, max_codes=max_codes, batch_size=1)
            seconds = time.perf_counter() - explained
            bank = getattr(generator.method, "bank", None)
            merged = bool(bank is not None and bank.merged)
        return Generation(text, method_run.name, step, codes[0], joints[0], explanation, sampling, seconds,
                          explained - start, merged)

    def compare_methods(self, caption: str | None, methods: Sequence[str], sampling: Sampling = Sampling()) -> list[Generation]:
        """The same caption and seed through several methods."""
        self.require_methods()
        if not methods:
            raise ConfigError("choose at least one method to compare")
        return [self.generate(caption, m, sampling) for m in methods]

    def compare_steps(self, caption: str | None, method: str | None, sampling: Sampling = Sampling()) -> list[Generation]:
        """The same caption and seed through one method's checkpoint after each stream step."""
        method_run = self.method_run(method)
        steps = self.steps(method_run.name)
        if not steps:
            raise CheckpointError(f"{method_run.path}: no finished step")
        return [self.generate(caption, method, sampling, step=s) for s, _ in steps]

    # -- files --------------------------------------------------------------------------------------
    def export(self, generation: Generation) -> Downloads:
        """Write the motion's BVH and joints `.npy` into a fresh folder of `workdir`."""
        from l2emg.motion.bvh import write_bvh
        from l2emg.utils.io import save_npy

        with self._lock:
            self._exports += 1
            folder = self.workdir / f"{self._exports:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        step = f"_step{generation.step + 1}" if generation.step is not None else ""
        stem = f"{_slug(generation.caption)}_{generation.method}{step}_seed{generation.sampling.seed}"
        downloads = Downloads(folder / f"{stem}.bvh", folder / f"{stem}.npy")
        save_npy(downloads.npy, generation.joints.astype(np.float32))
        write_bvh(downloads.bvh, generation.joints, fps=generation.fps)
        return downloads

    def video(self, generation: Generation, downloads: Downloads) -> tuple[Path, float]:
        """Encode the motion as an MP4 next to its other files (`motion.render`); return it and the
        seconds the encoding took."""
        from l2emg.motion.render import render_motion

        start = time.perf_counter()
        path = downloads.bvh.with_suffix(".mp4")
        render_motion(generation.joints, path, caption=generation.caption, fps=generation.fps)
        downloads.mp4 = path
        return path, time.perf_counter() - start
