"""`l2emg bench`'s report, written once every planned method run is finished (`l2emg.bench` decides when):

    RUN/bench/table2.md     per split: Table 2 over the orders (mean ± 95 % CI) beside the paper's numbers,
                            Kendall τ against the paper's ranking, the time taken; Figures 3 and 4
    RUN/bench/table2.json   the same rows (schema: `l2emg.eval.table2`) + the run's profile and backbone,
                            the machine and the date; with `export`, the same JSON copied there too
    RUN/bench/figure3_fid_<split>_<method>.png, figure4.png + .gif/.mp4   (paths: `RunDir`)

The tables and rows are drawn by `l2emg.eval.table2` (the one Table-2 writer). What stays here needs
the method registry (floor 7: which methods are continual, Figure 3) or generates motions with the
trained methods (Figure 4), so it lies on `bench.py`'s floor (docs/design.md, "Layers").
"""

from __future__ import annotations

import datetime
import math
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from l2emg.config import Config, read_saved_config
from l2emg.continual.learned import read_learned
from l2emg.errors import ConfigError
from l2emg.eval import table2
from l2emg.runs import MethodRunDir, RunDir
from l2emg.utils.io import atomic_write_text, load_json, save_json


class Planned(Protocol):
    """One planned method run (`l2emg.bench.PlannedRun`)."""

    method: str
    split: str
    order: int

    @property
    def name(self) -> str: ...


def _continual(method: str) -> bool:
    from l2emg.continual.methods import method_class

    return not method_class(method).joint_training


def _sources(run: RunDir, planned: Sequence[Planned],
             sources: Mapping[str, MethodRunDir] | None) -> dict[str, MethodRunDir]:
    """Planned run name -> the folder its records are read from: `sources` (`l2emg.bench.record_of`:
    the method run, or its archived records) or the run folder's method run."""
    return {p.name: (sources or {}).get(p.name) or run.method_run(p.method, p.split, p.order) for p in planned}


def method_runs(run: RunDir, planned: Sequence[Planned],
                sources: Mapping[str, MethodRunDir] | None = None) -> dict[str, dict[str, dict[int, MethodRunDir]]]:
    """runs[split][method][order], in the plan's order; ConfigError for a method run that learned
    scenarios after its stream (its row would not be the stream's)."""
    found = _sources(run, planned, sources)
    runs: dict[str, dict[str, dict[int, MethodRunDir]]] = {}
    for split in dict.fromkeys(p.split for p in planned):
        for method in dict.fromkeys(p.method for p in planned):
            for p in planned:
                if p.split != split or p.method != method:
                    continue
                method_run = found[p.name]
                if read_learned(method_run):
                    raise ConfigError(f"{method_run.learned_path}: this method run learned scenarios after its "
                                      f"stream (`l2emg learn`), so its row would not be the stream's; run the "
                                      f"bench in a run folder without them")
                runs.setdefault(split, {}).setdefault(method, {})[p.order] = method_run
    return runs


def backbone_name(run: RunDir, config: Config | None) -> str:
    """The run's backbone as the benchmarks name it: lm.backbone's folder name (`Llama-2-7b-hf`) or the
    packaged model (`smollm2-135m`); for the embedded tiny LLaMA `llama-<parameters>m` (`llama-4m` for
    the default profile), from its warm-up record."""
    if config is not None and config.lm.backbone:
        return Path(config.lm.backbone).name or config.lm.backbone
    parameters = run.stage_info("backbone").get("parameters") if run.manifest_path.exists() else None
    if not parameters:
        return "llama-embedded"
    millions = parameters / 1e6
    return f"llama-{round(millions)}m" if millions >= 1 else f"llama-{millions:.1g}m"


PROTOCOL_FIELDS = ("eval_protocol", "eval_repeats", "eval_generations", "eval_mm_captions", "eval_cells")


def evaluation_protocols(run: RunDir, planned: Sequence[Planned],
                         sources: Mapping[str, MethodRunDir] | None = None) -> list[dict[str, Any]]:
    """The evaluation protocols the planned method runs were evaluated with (from their saved configs;
    `train.eval_protocol` and its sizes), each with the runs that used it: one entry when all agree."""
    found: dict[tuple, list[str]] = {}
    where = _sources(run, planned, sources)
    for p in planned:
        method_run = where[p.name]
        if method_run.config_path.exists():
            train = read_saved_config(method_run.config_path).train
            found.setdefault(tuple(getattr(train, f) for f in PROTOCOL_FIELDS), []).append(p.name)
    return [{**dict(zip(PROTOCOL_FIELDS, key)), "runs": names} for key, names in found.items()]


def protocol_line(protocols: Sequence[dict[str, Any]]) -> str:
    """One sentence naming how the table's CIs were measured."""
    parts = []
    for p in protocols:
        if p["eval_protocol"] == "redrawn":
            text = (f"CIs from {p['eval_repeats']} generation sets redrawn per evaluation point (a caption drawn at "
                    f"random per test motion and set), MultiModality from {p['eval_generations']} generations of "
                    f"{p['eval_mm_captions'] or 'every'} test motions per scenario")
        else:
            text = (f"CIs from {p['eval_repeats']} re-scorings of {p['eval_generations']} generations drawn once from "
                    "each test motion's first caption (the protocol before 2026-12-07)")
        if p.get("eval_cells", "all") == "needed":  # tables written before the field: every cell
            text += (" — scored after step i on the scenarios learned so far and the next one, after the last "
                     "step on all of them (MultiModality only there; `train.eval_cells: needed`)")
        parts.append(text + ("" if len(protocols) == 1 else f" ({len(p['runs'])} runs)"))
    return "Evaluation: " + "; ".join(parts) + "." if parts else ""


def write_tables(run: RunDir, planned: Sequence[Planned], export: Path | None = None,
                 sources: Mapping[str, MethodRunDir] | None = None) -> tuple[Path, list[Path]]:
    """RUN/bench/table2.md + table2.json + Figure 3 heatmaps + Figure 4, from the finished method runs
    (`sources`: where each planned run's records are, e.g. archived ones; default: the run folder);
    `export`: table2.json written there as well (atomically). Figure 4 generates, so it draws the
    methods whose runs are in the run folder."""
    from l2emg.continual.methods import paper_table2
    from l2emg.continual.report import method_label
    from l2emg.utils.precision import machine

    paper = paper_table2()  # by registry name: the row each method class declares
    where = _sources(run, planned, sources)
    table = table2.collect(method_runs(run, planned, where), paper=paper)
    orders = sorted({p.order for p in planned})
    taus = table2.kendall(table, paper=paper)
    times = {split: {p.name: table2.run_time(where[p.name]) for p in planned if p.split == split}
             for split in table.cells}
    figures3 = figure3(run, planned, table, where)
    here = [p for p in planned if where[p.name].path == run.method_run(p.method, p.split, p.order).path]
    figures4 = figure4(run, here)
    archived = sorted(p.name for p in planned if p not in here)
    config = run.config() if run.config_path.exists() else None
    profile = config.profile if config is not None else "?"
    backbone = backbone_name(run, config)
    names = [p.relative_to(run.bench_dir).as_posix() for p in figures3 + figures4]
    labels = {p.method: method_label(p.method) for p in planned}
    protocols = evaluation_protocols(run, planned, where)
    builds = stage_builds(planned, where)
    text = table2.bench_markdown(table, run=str(run.path), profile=profile, backbone=backbone, orders=orders,
                                 taus=taus, times=times, labels=labels, figure3=names[:len(figures3)],
                                 figure4=names[len(figures3):],
                                 protocol=protocol_line(protocols) + archived_line(archived) + stages_line(builds))
    document = table2.bench_json(
        table, profile=profile, backbone=backbone, machine=machine(),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), taus=taus,
        orders=orders, splits=list(table.cells), runs=[p.name for p in planned], time=times, figures=names,
        protocol=protocols, archived=archived, stages=builds)
    save_json(run.bench_json_path, document)
    if export is not None:
        save_json(export, document)
    atomic_write_text(run.bench_table_path, text)
    return run.bench_table_path, figures3 + figures4


def stage_builds(planned: Sequence[Planned], where: Mapping[str, MethodRunDir]) -> list[dict[str, Any]]:
    """The shared-stage builds the planned runs rest on (`RunDir.stage_fingerprint`, recorded in each
    run's progress.json), each with its runs; `stages` None for runs trained before it was recorded."""
    found: dict[str, dict[str, Any]] = {}
    for p in planned:
        path = where[p.name].progress_path
        stages = (load_json(path) if path.exists() else {}).get("stages") or None
        key = repr(sorted(stages.items())) if stages else ""
        found.setdefault(key, {"stages": stages, "runs": []})["runs"].append(p.name)
    return list(found.values())


def stages_line(builds: Sequence[dict[str, Any]]) -> str:
    """A sentence saying whether every row rests on one build of the shared stages, or ""."""
    recorded = [b for b in builds if b["stages"]]
    if len(builds) == 1 and recorded:
        return ""  # one build, recorded by every run: nothing to warn about
    parts = [f"{len(b['runs'])} runs on build {i + 1} (tokenizer {b['stages']['tokenizer'][:8]}, evaluator "
             f"{b['stages']['evaluator'][:8]}, lm {b['stages']['lm'][:8]})" for i, b in enumerate(recorded)]
    parts += [f"{len(b['runs'])} runs did not record theirs (trained before 2026-12-07's fourth session)"
              for b in builds if not b["stages"]]
    return (" The shared stages (tokenizer, codes, evaluator, language model) were built more than once or not "
            "recorded: " + "; ".join(parts) + "; rows compare as far as those builds agree.")


def archived_line(archived: Sequence[str]) -> str:
    """A sentence naming the rows read from archived records (`l2emg bench --archive`), or ""."""
    if not archived:
        return ""
    return (f" {len(archived)} of the method runs were read from archived records (trained in an earlier "
            f"session; each run's records keep its own config and timings): {', '.join(archived)}.")


def figure3(run: RunDir, planned: Sequence[Planned], table: table2.BenchTable,
            sources: Mapping[str, MethodRunDir] | None = None) -> list[Path]:
    """FID heatmaps of ES-MoE and the best other continual method (by AR; by AF where no AR was
    measured) per split, on the first planned order (each order has its own row/column sequence,
    so matrices are not averaged)."""
    from l2emg.continual.report import method_label
    from l2emg.eval.continual_metrics import load_results
    from l2emg.eval.report import plot_heatmap

    where = _sources(run, planned, sources)
    paths = []
    for split, rows in table.cells.items():
        continual = [m for m in rows if _continual(m)]
        others = [m for m in continual if not m.startswith("esmoe")]
        chosen = [m for m in continual if m == "esmoe"]
        if others:
            chosen.append(max(others, key=lambda m: _by_ar(rows[m])))
        for method in chosen:
            p = next(q for q in planned if q.split == split and q.method == method)
            perf = load_results(where[p.name].results_path)
            if "fid" not in perf.matrices:
                continue
            title = f"{method_label(method)}, {split}, order {p.order}: FID"
            paths.append(plot_heatmap(perf.matrices["fid"], perf.scenarios, title,
                                      run.bench_figure3_path(split, method), lower_is_better=True))
    return paths


def _by_ar(row: dict[str, Any]) -> tuple[float, float]:
    """Sort key: higher AR first, then lower AF (missing values last)."""
    ar, af = row["AR"]["mean"], row["AF"]["mean"]
    return (-math.inf if ar is None else ar, -math.inf if af is None else -af)


def figure4_columns(planned: Sequence[Planned]) -> tuple[list[Planned], dict[str, str]]:
    """Figure 4's columns (`figure4`): the continual methods' runs on one split — the one with the most
    continual methods, the first on a tie — each method on its lowest order, and each column's title."""
    from l2emg.continual.report import method_label

    continual = [p for p in planned if _continual(p.method)]
    splits = list(dict.fromkeys(p.split for p in continual))
    if not splits:
        return [], {}
    split = max(splits, key=lambda s: (len({p.method for p in continual if p.split == s}), -splits.index(s)))
    runs = [p for p in continual if p.split == split]
    chosen = [min((p for p in runs if p.method == m), key=lambda p: p.order) for m in dict.fromkeys(p.method for p in runs)]
    orders = {p.order for p in chosen}
    return chosen, {p.method: method_label(p.method) + (f" (o{p.order})" if len(orders) > 1 else "") for p in chosen}


def figure4(run: RunDir, planned: Sequence[Planned], captions: int = 3, seed: int = 0,
            keyframes: int = 4, size: int = 120) -> list[Path]:
    """The paper's Figure 4: the first `captions` test captions (one per emotion where possible) × every
    continual method's final model, all generated with the same seed; rows = captions, columns =
    methods (`figure4_columns`: the split with the most continual methods in `planned` — a bench over
    archived runs passes only those trained in the run folder — each method on its lowest planned
    order, named in the column header when the columns' orders differ). A PNG of keyframe strips and an
    animation of the same grid (`preview.format`: gif or mp4). Returns [png, animation], or [] without
    a continual method."""
    import io
    import tempfile

    from PIL import Image, ImageDraw

    from l2emg.continual.checkpoint import restore_method
    from l2emg.data.reader import load_dataset
    from l2emg.lm.generate import codes_to_motion
    from l2emg.lm.motion_lm import MotionLM
    from l2emg.motion.render import render_grid, render_keyframes
    from l2emg.tokenizer.api import MotionTokenizer
    from l2emg.utils.io import atomic_write_bytes

    chosen, titles = figure4_columns(planned)
    if not chosen:
        return []
    config = run.config()
    dataset = load_dataset(run.data_dir)
    picks, emotions = [], set()
    for record in dataset.split("test"):
        if record.emotion not in emotions:
            picks.append(record.captions[0].text)
            emotions.add(record.emotion)
        if len(picks) == captions:
            break
    motion_tokenizer = MotionTokenizer.from_pretrained(run.tokenizer_dir)
    motions: dict[str, list[np.ndarray]] = {}  # method -> one motion per caption
    for p in chosen:
        method_run = run.method_run(p.method, p.split, p.order)
        method_name, checkpoint = method_run.final_checkpoint()
        lm = MotionLM.load(run.lm_dir, dtype=config.lm.dtype)
        method = restore_method(method_name, _method_config(method_run), lm, checkpoint)
        codes = lm.generate(picks, max_codes=config.lm.max_codes, greedy=False,
                            temperature=config.train.eval_temperature, top_k=config.train.eval_top_k,
                            batch_size=len(picks), seed=seed, prepare=method.prepare_generation,
                            precision=config.lm.precision)
        motions[p.method] = codes_to_motion(motion_tokenizer, codes)[1]

    # The keyframe strips: a header of method names over one column per method, a row per caption.
    cells: list[list[Image.Image]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, caption in enumerate(picks):
            row = []
            for p in chosen:
                path = render_keyframes(motions[p.method][k], Path(tmp) / f"{p.method}_{k}.png", n=keyframes,
                                        caption=caption, size=size)
                with Image.open(path) as image:
                    row.append(image.convert("RGB"))
            cells.append(row)
    header, pad = 20, 6
    cell_w = max(im.width for row in cells for im in row)
    cell_h = max(im.height for row in cells for im in row)
    canvas = Image.new("RGB", (len(chosen) * (cell_w + pad), header + len(picks) * (cell_h + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    for j, p in enumerate(chosen):
        draw.text((j * (cell_w + pad) + pad, 4), titles[p.method], fill="black")
    for k, row in enumerate(cells):
        for j, image in enumerate(row):
            canvas.paste(image, (j * (cell_w + pad), header + k * (cell_h + pad)))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=True)
    atomic_write_bytes(run.bench_figure4_path, buffer.getvalue())

    # The same grid animated (render_grid writes atomically).
    animation = render_grid([motions[p.method][k] for k in range(len(picks)) for p in chosen],
                            [caption for caption in picks for _ in chosen],
                            run.bench_figure4_animation_path(config.preview.format), ncols=len(chosen),
                            fps=config.preview.fps, size=config.preview.size,
                            titles=[titles[p.method] for _ in picks for p in chosen])
    return [run.bench_figure4_path, animation]


def _method_config(method_run: MethodRunDir) -> Config:
    from l2emg.config import read_saved_config

    return read_saved_config(method_run.config_path)
