"""`l2emg data …`: generate, check, describe, stream and preview motion datasets.

Every command reads a HumanML3D-layout folder (see `l2emg.data.layout`): the embedded benchmark
made by `l2emg data generate`, or HumanML3D / EmotionalT2M-style data with an optional label map.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from l2emg.commands import PROFILE_HELP
from l2emg.data.layout import HUMANML3D_MAX_FRAMES, HUMANML3D_MIN_FRAMES, SPLITS
from l2emg.data.previews import render_previews
from l2emg.errors import DataError
from l2emg.labels import SCENARIOS

app = typer.Typer(help="Generate, check, describe, stream and preview motion datasets.", no_args_is_help=True)
console = Console()

LABEL_MAP_HELP = ("YAML/JSON file mapping the dataset's emotion/scenario names onto ours: "
                  "{emotion: {joy: happy}, scenario: {sport: Sports}} or one flat {name: ours} mapping")


def _overrides(values: list[str]) -> list[str]:
    """`--set key=value`: a bare key is a field of the `data` section."""
    from l2emg.config import qualify_overrides

    return qualify_overrides(values, "data")


def _load(root: Path, label_map: Optional[Path] = None):
    from l2emg.data.reader import load_dataset

    return load_dataset(root, label_map=label_map)


def _counts_table(title: str, rows: dict[str, dict[str, int]], columns: list[str],
                  headers: list[str] | None = None) -> Table:
    """Rows × columns of counts with row and column totals."""
    table = Table(title=title, show_footer=True)
    table.add_column("", footer="total", no_wrap=True)
    totals = {c: sum(r.get(c, 0) for r in rows.values()) for c in columns}
    for c, header in zip(columns, headers or columns):
        table.add_column(header, justify="right", footer=str(totals[c]))
    table.add_column("total", justify="right", footer=str(sum(totals.values())))
    for name, row in rows.items():
        table.add_row(name, *(str(row.get(c, 0)) for c in columns), str(sum(row.get(c, 0) for c in columns)))
    return table


@app.command()
def generate(
    out: Path = typer.Option(..., "--out", help="dataset folder to create (HumanML3D layout)"),
    profile: str = typer.Option("default", help=PROFILE_HELP),
    set_: list[str] = typer.Option([], "--set", help="config override key=value, e.g. num_motions=400 or "
                                                     "data.seed=3 (repeatable; bare keys mean data.<key>)"),
    workers: Optional[int] = typer.Option(None, help="processes for feature extraction (default: up to 2)"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Generate the embedded emotional-motion benchmark into OUT.

    Runs the procedural generator, canonicalises the joints, extracts the 263-d HumanML3D features,
    tags the captions, assigns one global train/val/test split per motion (held-out scenario×emotion
    pairs go to test) and computes Mean/Std on the train split. Re-running on a finished folder does
    nothing; an interrupted run restarts cleanly.
    """
    from l2emg.config import load_config
    from l2emg.data.build import build_dataset

    config = load_config(profile, _overrides(set_))
    summary = build_dataset(config, out, progress=progress, workers=workers)
    if summary.get("status") == "already built":
        console.print(f"[green]{out}[/green] already holds this dataset; nothing to do.")
    table = Table(title=f"dataset {out}")
    table.add_column("field")
    table.add_column("value")
    table.add_row("motions", str(summary.get("num_motions")))
    table.add_row("splits", ", ".join(f"{k}={v}" for k, v in summary.get("splits", {}).items()))
    table.add_row("frames", ", ".join(f"{k}={v}" for k, v in summary.get("frames", {}).items()))
    for key, value in summary.get("timing_s", {}).items():
        table.add_row(f"time {key} (s)", str(value))
    console.print(table)


@app.command("import")
def import_(
    src: Path = typer.Argument(..., help="folder of takes: NAME.bvh (any rig) or NAME.npy ((T, 22, 3) joints in "
                                         "our joint order), each with NAME.txt beside it, one caption per line"),
    out: Path = typer.Option(..., "--out", help="dataset folder to create (HumanML3D layout)"),
    labels: Optional[Path] = typer.Option(None, help="labels of the takes: CSV with the header id,emotion,scenario "
                                                     "(optional columns action,intensity) or JSON {id: {emotion, "
                                                     "scenario}}; id = NAME; every take needs an entry"),
    label_map: Optional[Path] = typer.Option(None, help=LABEL_MAP_HELP),
    scenario: Optional[str] = typer.Option(None, help="scenario of every take whose labels give none (all of them "
                                                      "without --labels), e.g. 'Dance'"),
    rig: str = typer.Option("auto", help="BVH joint names: auto (detect), lafan1, mixamo, smpl, or a YAML joint map "
                                         "file 'our_joint: their_joint' (spine1/2/3 may be left out: interpolated)"),
    scale: Optional[str] = typer.Option(None, help="file units: m, cm, mm, in, or metres per file unit (e.g. 0.01); "
                                                   "default: detected from the body size for BVH, metres for .npy"),
    up: Optional[str] = typer.Option(None, help="up axis of the files, y or z; default: detected for BVH, y for .npy"),
    fps: float = typer.Option(20.0, help="frame rate of the .npy takes (a BVH file gives its own); every take is "
                                         "resampled to 20 fps by linear interpolation"),
    splits: str = typer.Option("80/5/15", help="train/val/test shares of the takes (a take's clips stay together), "
                                               "e.g. 80/5/15 or 0.7/0.1/0.2"),
    split_seed: int = typer.Option(0, help="seed of the split assignment (same seed, same splits)"),
    overwrite: bool = typer.Option(False, help="replace OUT when it already holds files"),
    convention: str = typer.Option("l2emg", help="feature convention: l2emg (the embedded benchmark's, the default) "
                                                 "or humanml3d (to mix with HumanML3D's released features); "
                                                 "docs/design.md, 'Feature conventions'"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Import your own motions (BVH of any rig, or joint .npy files) with captions into a dataset at OUT.

    Each BVH file's rig is recognised from its joint names (LAFAN1, Mixamo with any mixamorig prefix,
    our SMPL names) or mapped by a YAML file; its units (m, cm, mm, inches) come from the body size and
    its up axis (Y or Z) from where the head is, unless --scale/--up say. Every take is converted to
    metres, Y up, 20 fps, cut into clips of 40..196 frames (longer takes into equal consecutive clips,
    shorter ones skipped), given the HumanML3D features, POS-tagged captions and the labels; splits are
    drawn per take, Mean/Std from the train split. `l2emg data check OUT` accepts the result. OUT is
    written atomically: an interrupted import leaves it as it was.
    """
    from l2emg.data.importer import ImportOptions, import_dataset, parse_split_ratios
    from l2emg.motion.retarget import parse_scale

    options = ImportOptions(
        rig=rig, scale=None if scale is None else parse_scale(scale), up=None if up is None else up.strip().lower(),
        npy_fps=fps, labels=labels, label_map=label_map, scenario=scenario, split_ratios=parse_split_ratios(splits),
        split_seed=split_seed, overwrite=overwrite, convention=convention,
    )
    summary = import_dataset(src, out, options, progress=progress)
    table = Table(title="data import")
    table.add_column("field")
    table.add_column("value")
    table.add_row("source", str(src))
    table.add_row("dataset", str(out))
    table.add_row("files read", str(summary.files_read))
    table.add_row("clips written", str(summary.clips))
    table.add_row("frames (20 fps)", ", ".join(f"{k}={v}" for k, v in summary.frames.items()))
    table.add_row("splits", ", ".join(f"{k}={v}" for k, v in summary.splits.items()))
    read_as: dict[str, int] = {}
    for info in summary.takes.values():
        how = (f"bvh rig={info['rig']} unit={info['unit']} up={info['up']} fps={info['source_fps']:g}"
               if info["format"] == "bvh" else f"npy fps={info['source_fps']:g}")
        read_as[how] = read_as.get(how, 0) + 1
    for how, count in read_as.items():
        table.add_row("read as", f"{how} ({count} file{'s' if count > 1 else ''})")
    console.print(table)
    for name, reason in summary.skipped:
        console.print(f"[yellow]skipped[/yellow] {name}: {reason}", highlight=False, soft_wrap=True)


@app.command()
def check(
    root: Path = typer.Argument(..., help="dataset folder"),
    label_map: Optional[Path] = typer.Option(None, help=LABEL_MAP_HELP),
    min_frames: int = typer.Option(HUMANML3D_MIN_FRAMES, help="shortest allowed motion (joint frames)"),
    max_frames: int = typer.Option(HUMANML3D_MAX_FRAMES, help="longest allowed motion (joint frames)"),
    length_check: bool = typer.Option(True, help="check motion lengths (use --no-length-check for real "
                                                 "data, whose loaders filter lengths instead)"),
    max_listed: int = typer.Option(50, help="problems to list at most"),
) -> None:
    """Check every file of a dataset folder; exit code 1 with a list of problems, 0 with a summary."""
    from l2emg.data.validate import check_dataset

    problems = check_dataset(root, label_map, min_frames=min_frames, max_frames=max_frames,
                             check_lengths=length_check)
    errors = [p for p in problems if p.severity == "error"]
    for p in problems:
        if p.severity == "warning":
            console.print(f"[yellow]warning[/yellow] {p.path}: {p.message}")
    if errors:
        console.print(f"[red]{len(errors)} problem(s) in {root}:[/red]")
        for p in errors[:max_listed]:
            console.print(f"  {p.path}: {p.message}", highlight=False, soft_wrap=True)
        if len(errors) > max_listed:
            console.print(f"  … and {len(errors) - max_listed} more")
        raise typer.Exit(1)
    dataset = _load(root, label_map)
    console.print(f"[green]{root}: valid[/green] — {len(dataset)} motions "
                  f"({', '.join(f'{s}={len(dataset.split(s))}' for s in SPLITS)}), "
                  f"{sum(len(r.captions) for r in dataset.records)} captions, "
                  f"frames {min(r.num_frames for r in dataset.records)}..{max(r.num_frames for r in dataset.records)}")


@app.command()
def stats(
    root: Path = typer.Argument(..., help="dataset folder"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also save the statistics as JSON here"),
    label_map: Optional[Path] = typer.Option(None, help=LABEL_MAP_HELP),
    sample: int = typer.Option(64, help="motions sampled for the physical-plausibility and round-trip checks"),
    physical: bool = typer.Option(True, help="run the physical-plausibility and round-trip checks"),
) -> None:
    """Describe a dataset: scenario × emotion counts, splits, actions, caption diversity, lengths, plausibility."""
    from l2emg.data.stats import dataset_stats, save_stats

    dataset = _load(root, label_map)
    result = dataset_stats(dataset, sample_size=sample, physical=physical)
    counts = result["counts"]
    emotions = list(counts["emotions"])
    console.print(_counts_table(f"{dataset.name}: motions per scenario × emotion", counts["scenario_emotion"],
                                emotions, [e[:4] for e in emotions]))
    by_scenario = {s: {sp: counts["split_scenario"][sp][s] for sp in SPLITS} for s in counts["scenarios"]}
    console.print(_counts_table("motions per scenario × split", by_scenario, list(SPLITS)))
    table = Table(title="captions, actions, lengths")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for key, value in result["captions"].items():
        table.add_row(f"captions {key}", str(value))
    table.add_row("distinct actions", str(result["actions"]["distinct"]))
    for key in ("min", "mean", "median", "max", "seconds_total"):
        table.add_row(f"frames {key}", str(result["frames"].get(key)))
    for section in ("quality", "roundtrip"):
        for key, value in _flatten(result.get(section, {})).items():
            table.add_row(f"{section} {key}", f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
    if json_out is not None:
        save_stats(result, json_out)
        console.print(f"saved {json_out}")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        elif not isinstance(value, list):
            out[f"{prefix}{key}"] = value
    return out


def _abbrev(scenario: str) -> str:
    """'Daily Life' -> 'DL', 'Sports' -> 'Sp' (short names for the stream table)."""
    words = scenario.split()
    return "".join(w[0] for w in words) if len(words) > 1 else scenario[:2]


@app.command()
def stream(
    root: Path = typer.Argument(..., help="dataset folder"),
    split: str = typer.Option("unseen", help="unseen (one subset per scenario) or mixed (random subsets)"),
    order: int = typer.Option(1, help="scenario order 1 (the paper's), 2 or 3"),
    seed: int = typer.Option(0, help="seed of the subset assignment"),
    primary_fraction: float = typer.Option(0.85, help="unseen split: share of a scenario's motions kept in its "
                                                      "own subset"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="save the stream (subset ids) as JSON here"),
    label_map: Optional[Path] = typer.Option(None, help=LABEL_MAP_HELP),
) -> None:
    """Show the L²-EMG stream of a dataset: subsets in training order with sizes and scenario mix."""
    from l2emg.data.stream import build_stream

    dataset = _load(root, label_map)
    result = build_stream(dataset, split=split, order=order, seed=seed, primary_fraction=primary_fraction)
    table = Table(title=f"{split} stream, order {order} ({len(dataset)} motions)", show_footer=True,
                  caption="mix: motions per scenario, " + ", ".join(f"{_abbrev(s)}={s}" for s in SCENARIOS))
    rows = result.summary()
    for name, footer in (("step", ""), ("subset", "total"), ("train", sum(r["train"] for r in rows)),
                         ("val", sum(r["val"] for r in rows)), ("test", sum(r["test"] for r in rows)),
                         ("total", sum(r["total"] for r in rows)), ("primary", ""), ("mix", "")):
        table.add_column(name, footer=str(footer), justify="left" if name in ("subset", "mix") else "right",
                         no_wrap=name == "subset")
    for r in rows:
        mix = " ".join(f"{_abbrev(s)}:{n}" for s, n in sorted(r.get("scenario_mix", {}).items(), key=lambda kv: -kv[1]))
        share = r.get("primary_share")
        table.add_row(str(r["step"]), r["name"], str(r["train"]), str(r["val"]), str(r["test"]), str(r["total"]),
                      "" if share is None else f"{share:.0%}", mix)
    console.print(table)
    if json_out is not None:
        result.save(json_out)
        console.print(f"saved {json_out}")


@app.command()
def preview(
    root: Path = typer.Argument(..., help="dataset folder"),
    out: Path = typer.Option(..., "--out", help="folder for the animations and index.md"),
    per_cell: int = typer.Option(1, help="motions per scenario × emotion cell"),
    format: str = typer.Option("gif", help="gif or mp4"),
    size: int = typer.Option(240, help="pixel size of one panel"),
    fps: int = typer.Option(20, help="frames per second"),
    split: Optional[str] = typer.Option(None, help="take samples from this split only (train/val/test)"),
    seed: int = typer.Option(0, help="seed for picking samples"),
    label_map: Optional[Path] = typer.Option(None, help=LABEL_MAP_HELP),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Render sample motions per scenario × emotion into animated grids and an index.md.

    One grid per scenario (its seven emotions side by side, the caption under each panel) and one
    grid per emotion across the eight scenarios; index.md lists the files and the captions.
    """
    from pydantic import ValidationError

    from l2emg.config import PreviewConfig

    try:
        settings = PreviewConfig(fps=fps, format=format, per_cell=per_cell, size=size)
    except ValidationError as err:
        fields = "; ".join(f"--{'-'.join(str(x) for x in e['loc']).replace('_', '-')}: {e['msg']}"
                           for e in err.errors())
        raise DataError(f"preview settings: {fields}") from None
    if split is not None and split not in SPLITS:
        raise DataError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    files = render_previews(_load(root, label_map), out, settings, progress=progress, split=split, seed=seed)
    console.print(f"wrote {len(files) - 1} animations and {files[-1]}")
