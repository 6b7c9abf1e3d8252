"""The stages every experiment shares, each done once per run directory and reused afterwards
(paths from `l2emg.runs.RunDir`):

    data        RUN/data/        the embedded dataset (or a real one linked by --data)
    previews    RUN/previews/    GIF grids per scenario × emotion
    tokenizer   RUN/tokenizer/   the VQ-VAE motion tokenizer (stage 1 of the paper) + its test metrics
    evaluator   RUN/evaluator/   the measuring instrument (text/motion embeddings, emotion classifier)
    reference   RUN/evaluator/reference_test.json   real-motion metrics on the test split
    backbone    RUN/backbone/    the embedded tiny LLaMA after its language warm-up, or a packaged
                                 pretrained LLM converted from its wheel (lm.backbone: smollm2-135m);
                                 a folder named by lm.backbone is used where it lies
    lm          RUN/lm/          the backbone extended with motion tokens
    codes       RUN/codes.json   every motion's token sequence

`l2emg run` calls them all, then the continual stream, then `write_summary`; `l2emg train` calls
what it needs.
"""

from __future__ import annotations

import time
from pathlib import Path

from l2emg.config import Config
from l2emg.lm.pretrained import is_packaged
from l2emg.runs import BenchArchive, RunDir
from l2emg.utils.io import atomic_write_bytes, atomic_write_text, load_json, save_json
from l2emg.utils.progress import announce, console


def ensure_data(run: RunDir, config: Config, progress: bool = True) -> Path:
    from l2emg.data.build import build_dataset

    announce("data", run.is_done("data"))
    if not run.is_done("data"):
        summary = build_dataset(config, run.data_dir, progress=progress)
        run.mark_done("data", **{k: v for k, v in summary.items() if isinstance(v, (int, float, str))})
    return run.data_dir


def ensure_previews(run: RunDir, config: Config, progress: bool = True) -> Path:
    from l2emg.data.previews import render_previews
    from l2emg.data.reader import load_dataset

    announce("previews", run.is_done("previews"))
    if not run.is_done("previews"):
        files = render_previews(load_dataset(run.data_dir), run.previews_dir, config.preview, progress=progress)
        run.mark_done("previews", files=len(files))
    return run.previews_dir


def ensure_tokenizer(run: RunDir, config: Config, progress: bool = True) -> Path:
    """Train the motion tokenizer, evaluate it on the test split (RUN/tokenizer/eval_test.json)."""
    from l2emg.data.reader import load_dataset
    from l2emg.tokenizer.api import MotionTokenizer
    from l2emg.tokenizer.evaluate import evaluate_tokenizer
    from l2emg.tokenizer.train import train_tokenizer

    announce("tokenizer", run.is_done("tokenizer"))
    if not run.is_done("tokenizer"):
        out = run.tokenizer_dir
        out.mkdir(parents=True, exist_ok=True)
        summary = train_tokenizer(config, run.data_dir, out, progress=progress)
        tokenizer = MotionTokenizer.from_pretrained(out, config.tokenizer)
        metrics = evaluate_tokenizer(tokenizer, load_dataset(run.data_dir), "test", progress=progress)
        save_json(run.tokenizer_eval_path, metrics)
        run.mark_done("tokenizer", path=str(out), steps=summary["steps"], train_seconds=summary["elapsed_s"],
                      test_mpjpe_mm=metrics["mpjpe_mm"], codebook_usage=metrics["codebook_usage"],
                      perplexity=metrics["perplexity"])
    return run.tokenizer_dir


def ensure_evaluator(run: RunDir, config: Config, progress: bool = True) -> Path:
    """Train the evaluator, then measure real test motions with it (the reference row)."""
    from l2emg.data.reader import load_dataset
    from l2emg.eval.evaluate import reference_row
    from l2emg.eval.evaluator import Evaluator, train_evaluator

    announce("evaluator", run.is_done("evaluator"))
    if not run.is_done("evaluator"):
        started = time.time()
        train_evaluator(config, run.data_dir, run.evaluator_dir, progress=progress)
        run.mark_done("evaluator", train_seconds=round(time.time() - started, 1))
    announce("reference", run.is_done("reference"))
    if not run.is_done("reference"):
        reference = reference_row(Evaluator.from_pretrained(run.evaluator_dir), load_dataset(run.data_dir))
        save_json(run.reference_path, reference)
        run.mark_done("reference")
    return run.evaluator_dir


def ensure_lm(run: RunDir, config: Config, progress: bool = True) -> Path:
    """The backbone (built and warmed up, or the configured HF folder) extended with motion tokens."""
    from l2emg.data.reader import load_dataset
    from l2emg.lm.backbone import build_tiny_backbone, read_warmup_record
    from l2emg.lm.motion_lm import MotionLM
    from l2emg.lm.pretrained import prepare_packaged_backbone, read_source
    from l2emg.tokenizer.api import MotionTokenizer

    announce("backbone", run.is_done("backbone"))
    packaged = is_packaged(config.lm.backbone)
    if packaged:
        backbone = run.backbone_dir
        if not run.is_done("backbone"):
            prepare_packaged_backbone(config.lm.backbone, backbone)
            run.mark_done("backbone", **(read_source(backbone) or {}))
    elif config.lm.backbone:
        backbone = Path(config.lm.backbone)
    else:
        backbone = run.backbone_dir
        if not run.is_done("backbone"):
            dataset = load_dataset(run.data_dir)
            captions = [c.text for r in dataset.split("train") for c in r.captions]
            build_tiny_backbone(config.lm, captions, backbone, progress=progress)
            run.mark_done("backbone", **(read_warmup_record(backbone) or {}))
    announce("lm", run.is_done("lm"))
    if not run.is_done("lm"):
        tokenizer = MotionTokenizer.from_pretrained(run.tokenizer_dir)
        lm = MotionLM.from_backbone(backbone, tokenizer.codebook, seed=config.lm.motion_embedding_seed,
                                    dtype=config.lm.dtype)
        lm.save(run.lm_dir, base_dir=backbone if config.lm.backbone else None)  # a reference, not a copy
        run.mark_done("lm", backbone=str(backbone))
    return run.lm_dir


def ensure_codes(run: RunDir, config: Config, progress: bool = True) -> dict[str, list[int]]:
    """Every motion of the dataset as motion-token codes (RUN/codes.json)."""
    from l2emg.data.reader import load_dataset
    from l2emg.tokenizer.api import MotionTokenizer

    announce("codes", run.is_done("codes"))
    if not run.is_done("codes"):
        dataset = load_dataset(run.data_dir)
        tokenizer = MotionTokenizer.from_pretrained(run.tokenizer_dir)
        ids = [r.motion_id for r in dataset.records]
        codes = tokenizer.encode_motions([dataset.features(i) for i in ids], names=ids)
        save_json(run.codes_path, {i: [int(c) for c in code] for i, code in zip(ids, codes)})
        run.mark_done("codes", motions=len(ids))
    return load_json(run.codes_path)


def stages(config: Config, previews: bool = True) -> list[str]:
    """The shared stages `prepare_run` goes through, in order."""
    names = ["data", "previews", "tokenizer", "evaluator", "reference", "backbone", "lm", "codes"]
    if not previews:
        names.remove("previews")
    if config.lm.backbone and not is_packaged(config.lm.backbone):
        names.remove("backbone")  # a configured HF folder is used as it is
    return names


def is_prepared(run: RunDir, config: Config, previews: bool = True) -> bool:
    """Every shared stage is done (for this config: another one is refused)."""
    if not run.config_path.exists():
        return False
    run.check_config(config)
    return all(run.is_done(stage) for stage in stages(config, previews))


def restore_stages(run: RunDir, config: Config, archive: BenchArchive) -> str | None:
    """Copy the stage build kept in a bench archive (`BenchArchive.stages_dir`) into a run folder whose
    data are built and whose tokenizer is not: the tokenizer, evaluator, reference row, language model
    and codes are then done as they were in the session that archived them, so new method runs rest on
    the same build as the archived ones. Returns why nothing was restored (None when restored): no
    build archived, other data/tokenizer/evaluator/lm settings, or data that differ (their fingerprint:
    the procedural data come out otherwise on this machine)."""
    from l2emg.config import read_saved_config
    from l2emg.runs import SHARED_SECTIONS, config_differences

    build = archive.stage_build()
    if build is None:
        return f"{archive.stages_dir}: no stage build archived yet"
    changed = config_differences(read_saved_config(archive.stages_dir / "config.yaml"), config, SHARED_SECTIONS)
    if changed:
        return f"{archive.stages_dir}: archived with other settings ({', '.join(changed)})"
    data = run.stage_fingerprint()["data"]
    if data != build["fingerprint"].get("data"):
        return (f"{archive.stages_dir}: archived for other data (fingerprint {build['fingerprint'].get('data')}, "
                f"these data {data})")
    for f in build["files"]:
        atomic_write_bytes(run.path / f, (archive.stages_dir / f).read_bytes())
    # a packaged backbone is converted from its wheel again (the lm folder refers to it)
    restored = [s for s in stages(config, previews=False) if s != "data" and s in build["manifest"]
                and not (s == "backbone" and is_packaged(config.lm.backbone))]
    for stage in restored:
        run.mark_done(stage, **{**build["manifest"][stage], "restored_from": str(archive.stages_dir)})
    return None


def prepare_run(run_dir: str | Path, config: Config, progress: bool = True, previews: bool = True,
                archive: BenchArchive | None = None) -> RunDir:
    """Every shared stage, in order; finished ones are reused. With `archive` (`l2emg bench --archive`),
    a stage build kept there is restored instead of building the tokenizer, evaluator, language model and
    codes (`restore_stages`; otherwise they are built and the build is archived by the bench).

    A prepared run is only read (a read-only copy works); otherwise the run folder is locked
    (`RunDir.lock`: a second process is refused with the holder's PID) and what killed writes left
    behind is removed before the missing stages are built."""
    run = RunDir(run_dir)
    if is_prepared(run, config, previews):
        for stage in stages(config, previews):
            announce(stage, True)
        return run
    run.init(config)
    with run.lock():
        run.clean_leftovers()
        ensure_data(run, config, progress)
        if archive is not None and not run.is_done("tokenizer"):
            why = restore_stages(run, config, archive)
            console.print(f"stages: {why}; building them here" if why else f"stages: restored from {archive.stages_dir}",
                          soft_wrap=True)
        if previews:
            ensure_previews(run, config, progress)
        ensure_tokenizer(run, config, progress)
        ensure_evaluator(run, config, progress)
        ensure_lm(run, config, progress)
        ensure_codes(run, config, progress)
    return run


def write_summary(run: RunDir, seconds: float) -> None:
    """RUN/summary.md: what each stage produced, with the numbers it measured, and every method's row."""
    from l2emg.eval.report import metrics_table_markdown

    stages = run.manifest()["stages"]
    lines = [f"# Run `{run.path}`", "", f"Profile `{run.config().profile}`; this invocation took {seconds:.0f} s.", ""]
    for stage, info in stages.items():
        details = ", ".join(f"{k}={v}" for k, v in info.items() if k != "finished_at")
        lines.append(f"- **{stage}** ({info.get('finished_at', '')}): {details}")
    if run.reference_path.exists():
        lines += ["", "## Real-motion reference row (test split)", "",
                  metrics_table_markdown({"Real motion": load_json(run.reference_path)["metrics"]})]
    for report in sorted(run.methods_dir.glob("*/report.md")):
        lines += ["", f"## {report.parent.name}", "", f"[{report}]({report.relative_to(run.path)})", ""]
        lines += [line for line in report.read_text().splitlines() if line.startswith("|")]
    if run.previews_index_path.exists():
        index = run.previews_index_path
        lines += ["", f"Previews: [{index}]({index.relative_to(run.path).as_posix()})"]
    atomic_write_text(run.summary_path, "\n".join(lines) + "\n")
