"""The stages every experiment shares, each done once per run directory and reused afterwards:

    data        RUN/data/        the embedded dataset (or a real one linked by --data)
    previews    RUN/previews/    GIF grids per scenario × emotion
    tokenizer   RUN/tokenizer/   the VQ-VAE motion tokenizer (stage 1 of the paper)
    evaluator   RUN/evaluator/   the measuring instrument (text/motion embeddings, emotion classifier)
    reference   RUN/evaluator/reference_test.json   real-motion metrics on the test split
    backbone    RUN/backbone/    the embedded tiny LLaMA after its language warm-up (or lm.backbone)
    lm          RUN/lm/          the backbone extended with motion tokens
    codes       RUN/codes.json   every motion's token sequence

`l2emg run` calls them all and then the continual stream; `l2emg train` calls what it needs.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from l2emg.config import Config
from l2emg.runs import RunDir
from l2emg.utils.io import load_json, save_json

console = Console(stderr=True)


def _announce(stage: str, done: bool) -> None:
    console.print(f"[bold cyan]{stage}[/] " + ("(done, reused)" if done else "…"))


def ensure_data(run: RunDir, config: Config, progress: bool = True) -> Path:
    from l2emg.data.build import build_dataset

    _announce("data", run.is_done("data"))
    if not run.is_done("data"):
        summary = build_dataset(config, run.data_dir, progress=progress)
        run.mark_done("data", **{k: v for k, v in summary.items() if isinstance(v, (int, float, str))})
    return run.data_dir


def ensure_previews(run: RunDir, config: Config, progress: bool = True) -> Path:
    from l2emg.commands.data import render_previews
    from l2emg.data.formats import load_dataset

    _announce("previews", run.is_done("previews"))
    if not run.is_done("previews"):
        files = render_previews(load_dataset(run.data_dir), run.previews_dir, config.preview, progress=progress)
        run.mark_done("previews", files=len(files))
    return run.previews_dir


def ensure_tokenizer(run: RunDir, config: Config, progress: bool = True) -> Path:
    from l2emg.tokenizer.train import tokenizer_stage

    _announce("tokenizer", run.is_done("tokenizer"))
    tokenizer_stage(run, config, run.data_dir, progress=progress)
    return run.path / "tokenizer"


def ensure_evaluator(run: RunDir, config: Config, progress: bool = True) -> Path:
    from l2emg.data.formats import load_dataset
    from l2emg.eval.evaluate import reference_row
    from l2emg.eval.evaluator import Evaluator, train_evaluator

    out = run.path / "evaluator"
    _announce("evaluator", run.is_done("evaluator"))
    if not run.is_done("evaluator"):
        started = time.time()
        train_evaluator(config, run.data_dir, out, progress=progress)
        run.mark_done("evaluator", train_seconds=round(time.time() - started, 1))
    _announce("reference", run.is_done("reference"))
    if not run.is_done("reference"):
        reference = reference_row(Evaluator.from_pretrained(out), load_dataset(run.data_dir))
        save_json(out / "reference_test.json", reference)
        run.mark_done("reference")
    return out


def ensure_lm(run: RunDir, config: Config, progress: bool = True) -> Path:
    """The backbone (built and warmed up, or the configured HF folder) extended with motion tokens."""
    from l2emg.data.formats import load_dataset
    from l2emg.lm.backbone import build_tiny_backbone, read_warmup_record
    from l2emg.lm.motion_lm import MotionLM
    from l2emg.tokenizer.api import MotionTokenizer

    _announce("backbone", run.is_done("backbone"))
    if config.lm.backbone:
        backbone = Path(config.lm.backbone)
    else:
        backbone = run.path / "backbone"
        if not run.is_done("backbone"):
            dataset = load_dataset(run.data_dir)
            captions = [c.text for r in dataset.split("train") for c in r.captions]
            build_tiny_backbone(config.lm, captions, backbone, progress=progress)
            run.mark_done("backbone", **(read_warmup_record(backbone) or {}))
    _announce("lm", run.is_done("lm"))
    if not run.is_done("lm"):
        tokenizer = MotionTokenizer.from_pretrained(run.path / "tokenizer")
        lm = MotionLM.from_backbone(backbone, tokenizer.codebook, seed=config.lm.motion_embedding_seed,
                                    dtype=config.lm.dtype)
        lm.save(run.path / "lm", base_dir=backbone if config.lm.backbone else None)
        run.mark_done("lm", backbone=str(backbone))
    return run.path / "lm"


def ensure_codes(run: RunDir, config: Config, progress: bool = True) -> dict[str, list[int]]:
    """Every motion of the dataset as motion-token codes (RUN/codes.json)."""
    from l2emg.data.formats import load_dataset
    from l2emg.tokenizer.api import MotionTokenizer

    path = run.path / "codes.json"
    _announce("codes", run.is_done("codes"))
    if not run.is_done("codes"):
        dataset = load_dataset(run.data_dir)
        tokenizer = MotionTokenizer.from_pretrained(run.path / "tokenizer")
        ids = [r.motion_id for r in dataset.records]
        codes = tokenizer.encode_motions([dataset.features(i) for i in ids], names=ids)
        save_json(path, {i: [int(c) for c in code] for i, code in zip(ids, codes)})
        run.mark_done("codes", motions=len(ids))
    return load_json(path)


def prepare_run(run_dir: str | Path, config: Config, progress: bool = True, previews: bool = True) -> RunDir:
    """Every shared stage, in order; finished ones are reused."""
    run = RunDir(run_dir)
    run.init(config)
    ensure_data(run, config, progress)
    if previews:
        ensure_previews(run, config, progress)
    ensure_tokenizer(run, config, progress)
    ensure_evaluator(run, config, progress)
    ensure_lm(run, config, progress)
    ensure_codes(run, config, progress)
    return run
