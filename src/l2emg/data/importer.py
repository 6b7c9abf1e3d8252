"""Bring your own motion: a folder of BVH / joint files with captions -> a HumanML3D-layout dataset.

The source folder SRC holds, at its top level (subfolders are not read):

    NAME.bvh   a take of any rig, read by `l2emg.motion.retarget.retarget_bvh` (joint map preset or YAML
               file, units and up axis detected or given, resampled to 20 fps)
    NAME.npy   a take as joints (T, 22, 3) in skeleton.JOINT_NAMES order, metres, Y up, at `npy_fps`
               (default 20; `scale` / `up` apply to these too when given)
    NAME.txt   the take's captions, one plain caption per line (blank lines skipped; a '#' becomes a
               space); they are POS-tagged with `l2emg.data.postags` and written in HumanML3D's line format

Optional labels file (`labels`): CSV with a header row and the columns id, emotion, scenario (and
optionally action, intensity), or JSON ``{id: {emotion, scenario, action?, intensity?}}``; id is the take's
NAME, and every take needs an entry. Names are ours (case-insensitive) or translated by `label_map`.
`scenario` labels every take whose labels give no scenario (all of them without a labels file).

Each take becomes clips of 40..196 frames (`retarget.cut_clips`: a longer take is cut into equal
consecutive clips; a shorter one is skipped and reported). A clip's id is NAME, or NAME_000, NAME_001,
… when the take was cut; every clip of a take gets its captions, labels and split, so no take is in
two splits. Splits are assigned per take by `l2emg.data.splits.assign_splits` (stratified by
scenario × emotion, deterministic by `split_seed`); Mean/Std come from the train split. Joints are
stored canonicalised (floor at y = 0, frame-0 root at the origin, facing +Z) beside their
`extract_features` features, through `l2emg.data.writer` (labels.json lists every clip, with null
labels when none are given; dataset.json last), all inside `atomic_save_dir`: an interrupted import
leaves OUT as it was.

Skipped, with the reason in the summary: takes shorter than 40 frames at 20 fps, and caption files
with no take beside them. Anything else that is wrong (a take without captions, a malformed BVH, a rig
joint missing from a file, a label for an unknown id, an unknown emotion) stops the import with a
DataError naming the file and the field.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from l2emg.data.labelmap import LabelMap
from l2emg.data.layout import FEATURES_DIR, FPS, NUM_JOINTS, SPLITS
from l2emg.data.records import Caption, MotionRecord
from l2emg.data.splits import assign_splits
from l2emg.data.writer import write_index, write_motion
from l2emg.errors import DataError
from l2emg.labels import EMOTIONS, SCENARIOS
from l2emg.motion.features import FEATURE_CONVENTIONS
from l2emg.motion.retarget import (
    MAX_CLIP_FRAMES,
    MIN_CLIP_FRAMES,
    JointMap,
    cut_clips,
    load_joint_map,
    preset_map,
    resample,
    retarget_bvh,
    snap_fps,
    to_metres_y_up,
)
from l2emg.utils.io import atomic_save_dir, load_npy, read_text
from l2emg.utils.progress import progress_bar

TAKE_SUFFIXES: tuple[str, ...] = (".bvh", ".npy")
LABEL_COLUMNS: tuple[str, ...] = ("id", "emotion", "scenario", "action", "intensity")


@dataclass(frozen=True)
class ImportOptions:
    """How to read the takes and split them (see the module docstring)."""

    rig: str = "auto"                  # BVH joint names: auto, lafan1, mixamo, smpl or a YAML joint map file
    scale: float | None = None         # metres per file unit; None: detected (BVH) / 1 (.npy)
    up: str | None = None              # "y" or "z"; None: detected (BVH) / "y" (.npy)
    npy_fps: float = FPS               # frame rate of the .npy takes
    labels: Path | None = None         # CSV or JSON labels file
    label_map: Path | None = None      # translates the labels file's names onto ours
    scenario: str | None = None        # scenario of takes whose labels give none
    split_ratios: tuple[float, float, float] = (0.8, 0.05, 0.15)
    split_seed: int = 0
    overwrite: bool = False            # replace a non-empty OUT
    convention: str = "l2emg"          # feature convention (motion/features.py): "l2emg" or "humanml3d"


@dataclass(frozen=True)
class TakeLabels:
    emotion: str | None = None
    scenario: str | None = None
    action: str | None = None
    intensity: float | None = None


@dataclass
class ImportSummary:
    """What an import read and wrote."""

    source: str
    out: str
    files_read: int
    clips: int
    frames: dict[str, int]                      # min, max, total over the clips (20 fps)
    splits: dict[str, int]                      # clips per split
    takes: dict[str, dict[str, Any]]            # per take: format, rig, unit, scale, up, fps, frames, clips
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)


def parse_split_ratios(text: str) -> tuple[float, float, float]:
    """'80/5/15' or '0.8/0.05/0.15' -> shares summing to 1 (train must be positive)."""
    parts = [p.strip() for p in str(text).replace(",", "/").split("/")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise DataError(f"--splits: expected TRAIN/VAL/TEST numbers such as 80/5/15, got {text!r}") from None
    if len(values) != 3 or min(values) < 0 or not np.all(np.isfinite(values)) or values[0] <= 0:
        raise DataError(f"--splits: expected three non-negative numbers TRAIN/VAL/TEST with TRAIN > 0, got {text!r}")
    total = sum(values)
    return (values[0] / total, values[1] / total, values[2] / total)


def find_takes(src: Path) -> tuple[list[Path], list[Path]]:
    """(takes, caption files with no take beside them) at the top level of `src`, sorted by name."""
    files = sorted(p for p in src.iterdir() if p.is_file() and not p.name.startswith("."))
    takes = [p for p in files if p.suffix.lower() in TAKE_SUFFIXES]
    owner: dict[str, Path] = {}
    for take in takes:
        if take.stem in owner:
            raise DataError(f"{take}: same name as {owner[take.stem].name}; each take needs its own NAME")
        owner[take.stem] = take
    orphans = [p for p in files if p.suffix.lower() == ".txt" and p.stem not in owner]
    return takes, orphans


def read_take_captions(take: Path) -> list[Caption]:
    """The captions of `take` from NAME.txt beside it (one plain caption per line), POS-tagged."""
    path = take.with_suffix(".txt")
    if not path.is_file():
        raise DataError(f"{take}: captions: no {path.name} beside it (one caption per line)")
    lines = [line.strip() for line in read_text(path, "captions, one per line").splitlines()]
    captions = [Caption.from_text(line.replace("#", " ")) for line in lines if line]
    if not captions:
        raise DataError(f"{path}: captions: the file has no caption (one per line)")
    return captions


def _label_rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(where, entry) per label entry of a CSV or JSON labels file; entry has the LABEL_COLUMNS keys."""
    text = read_text(path, "a labels file (CSV or JSON)")
    rows: list[tuple[str, dict[str, Any]]] = []
    if path.suffix.lower() == ".json":
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(spec, dict):
            raise DataError(f"{path}: expected {{id: {{emotion, scenario}}}}")
        for motion_id, entry in spec.items():
            if not isinstance(entry, dict):
                raise DataError(f"{path}: id {motion_id!r}: expected an object {{emotion, scenario}}")
            unknown = sorted(set(entry) - set(LABEL_COLUMNS[1:]))
            if unknown:
                raise DataError(f"{path}: id {motion_id!r}: unknown field {unknown[0]!r} "
                                f"(fields: {', '.join(LABEL_COLUMNS[1:])})")
            rows.append((f"id {motion_id!r}", {"id": str(motion_id), **entry}))
        return rows
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if "id" not in header:
        raise DataError(f"{path}: the first line must be a header with the columns id,emotion,scenario "
                        f"(got {','.join(header) or 'nothing'})")
    unknown = [h for h in header if h not in LABEL_COLUMNS]
    if unknown:
        raise DataError(f"{path}: unknown column {unknown[0]!r} (columns: {', '.join(LABEL_COLUMNS)})")
    reader.fieldnames = header
    for row in reader:
        if None in row:
            raise DataError(f"{path}: line {reader.line_num}: more values than columns")
        entry = {k: (v.strip() if isinstance(v, str) else v) or None for k, v in row.items()}
        if not any(entry.values()):
            continue
        rows.append((f"line {reader.line_num}", entry))
    return rows


def read_labels(path: Path, take_names: list[str], label_map: LabelMap, src: Path) -> dict[str, TakeLabels]:
    """{take NAME: labels} from a CSV/JSON labels file; DataError naming the file, the id and the field."""
    if not path.is_file():
        raise DataError(f"{path}: labels file not found")
    known = set(take_names)
    out: dict[str, TakeLabels] = {}
    for where, entry in _label_rows(path):
        motion_id = entry.get("id")
        if not motion_id:
            raise DataError(f"{path}: {where}: id: empty")
        motion_id = str(motion_id).strip()
        if motion_id not in known:
            raise DataError(f"{path}: {where}: id {motion_id!r} matches no .bvh/.npy take in {src}")
        if motion_id in out:
            raise DataError(f"{path}: {where}: id {motion_id!r} is labelled twice")
        values: dict[str, Any] = {}
        for kind, names in (("emotion", EMOTIONS), ("scenario", SCENARIOS)):
            value, ok = label_map.map(kind, entry.get(kind))
            if not ok:
                raise DataError(f"{path}: {where}: {kind}: {value!r} is not one of ours ({', '.join(names)}); "
                                f"pass --label-map to translate it")
            values[kind] = value
        intensity = entry.get("intensity")
        if intensity is not None:
            try:
                intensity = float(intensity)
            except (TypeError, ValueError):
                raise DataError(f"{path}: {where}: intensity: {intensity!r} is not a number") from None
            if not np.isfinite(intensity):
                raise DataError(f"{path}: {where}: intensity: {intensity!r} is not finite")
        action = entry.get("action")
        out[motion_id] = TakeLabels(emotion=values["emotion"], scenario=values["scenario"],
                                    action=None if action is None else str(action), intensity=intensity)
    missing = [name for name in take_names if name not in out]
    if missing:
        listed = ", ".join(missing[:10]) + (f", … ({len(missing)} in all)" if len(missing) > 10 else "")
        raise DataError(f"{path}: id: no labels for the take(s) {listed}")
    return out


def load_take(path: Path, options: ImportOptions, rig: str | JointMap) -> tuple[np.ndarray, dict[str, Any]]:
    """A take -> (joints (T, 22, 3) metres, Y up, 20 fps; how it was read)."""
    if path.suffix.lower() == ".bvh":
        motion = retarget_bvh(path, rig, options.scale, options.up, FPS)
        return motion.joints, {"format": "bvh", "rig": motion.rig, "unit": motion.unit, "scale": motion.scale,
                               "up": motion.up, "source_fps": motion.source_fps,
                               "source_frames": motion.source_frames}
    try:
        array = load_npy(path)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{path}: unreadable .npy file ({err})") from None
    if not np.issubdtype(array.dtype, np.number) or array.ndim != 3 or array.shape[1:] != (NUM_JOINTS, 3):
        raise DataError(f"{path}: joints: expected a numeric array of shape (T, {NUM_JOINTS}, 3) in our joint "
                        f"order, got {array.dtype} {array.shape}")
    if not np.all(np.isfinite(array)):
        raise DataError(f"{path}: joints: {int(np.sum(~np.isfinite(array)))} NaN/inf value(s)")
    scale = 1.0 if options.scale is None else options.scale
    up = "y" if options.up is None else options.up
    fps = snap_fps(options.npy_fps)
    joints = resample(to_metres_y_up(array, scale, up), fps, FPS)
    return joints, {"format": "npy", "scale": scale, "up": up, "source_fps": fps, "source_frames": int(len(array))}


def _check_options(options: ImportOptions, label_map: LabelMap) -> tuple[str | JointMap, str | None]:
    """Refuse bad options before any work; returns (rig for retarget_bvh, our scenario name or None)."""
    if options.up not in (None, "y", "z"):
        raise DataError(f"--up: must be y or z, got {options.up!r}")
    if options.scale is not None and not (np.isfinite(options.scale) and options.scale > 0):
        raise DataError(f"--scale: must be a positive number of metres per file unit, got {options.scale}")
    if not (np.isfinite(options.npy_fps) and options.npy_fps > 0):
        raise DataError(f"--fps: must be a positive frame rate, got {options.npy_fps}")
    scenario = None
    if options.scenario is not None:
        scenario, ok = label_map.map("scenario", options.scenario)
        if not ok or scenario is None:
            raise DataError(f"--scenario: {options.scenario!r} is not one of ours ({', '.join(SCENARIOS)})")
    rig: str | JointMap = options.rig
    if str(rig).lower() in ("lafan1", "mixamo", "smpl"):
        rig = preset_map(str(rig).lower())
    elif str(rig).lower() != "auto":
        if not Path(rig).is_file():
            raise DataError(f"--rig: {rig!r} is neither auto, lafan1, mixamo, smpl nor an existing YAML joint map")
        rig = load_joint_map(rig)
    return rig, scenario


def _check_out(src: Path, out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder; choose another --out")
    if out.resolve() == src.resolve() or out.resolve() in src.resolve().parents:
        raise DataError(f"{out}: --out must not be the source folder or a folder containing it")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError(f"{out}: folder exists and is not empty; choose another --out or pass --overwrite")


def import_dataset(src: str | Path, out: str | Path, options: ImportOptions = ImportOptions(),
                   progress: bool = True) -> ImportSummary:
    """Import the takes of `src` into a new HumanML3D-layout dataset `out` (see the module docstring)."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise DataError(f"{src}: source folder not found")
    _check_out(src, out, options.overwrite)
    if options.convention not in FEATURE_CONVENTIONS:
        raise DataError(f"--convention: {options.convention!r} is not one of {', '.join(FEATURE_CONVENTIONS)}")
    label_map = LabelMap.from_any(options.label_map)
    rig, default_scenario = _check_options(options, label_map)
    takes, orphans = find_takes(src)
    if not takes:
        raise DataError(f"{src}: no .bvh or .npy takes in this folder")
    names = [t.stem for t in takes]
    captions = {t.stem: read_take_captions(t) for t in takes}  # every caption problem before any heavy work
    labels = (read_labels(options.labels, names, label_map, src) if options.labels is not None
              else {name: TakeLabels() for name in names})
    labels = {name: TakeLabels(emotion=lab.emotion, scenario=lab.scenario or default_scenario, action=lab.action,
                               intensity=lab.intensity) for name, lab in labels.items()}
    summary = ImportSummary(source=str(src), out=str(out), files_read=0, clips=0, frames={}, splits={}, takes={},
                            skipped=[(p.name, "caption file with no .bvh/.npy take beside it") for p in orphans])

    def write(staging: Path) -> None:
        _import_into(staging, takes, captions, labels, rig, options, summary, progress)

    atomic_save_dir(out, write)
    return summary


def _import_into(staging: Path, takes: list[Path], captions: dict[str, list[Caption]],
                 labels: dict[str, TakeLabels], rig: str | JointMap, options: ImportOptions,
                 summary: ImportSummary, progress: bool) -> None:
    """Read, cut, featurise and write every take into `staging`, then the index (dataset.json last)."""
    from l2emg import __version__ as l2emg_version
    from l2emg.motion.features import canonicalize_joints, compute_feature_stats, extract_features

    records: list[MotionRecord] = []
    clip_owner: dict[str, str] = {}
    take_of: dict[str, str] = {}
    with progress_bar("importing takes", len(takes), enabled=progress) as bar:
        for take in takes:
            joints, info = load_take(take, options, rig)
            summary.files_read += 1
            clips = cut_clips(joints, MAX_CLIP_FRAMES, MIN_CLIP_FRAMES)
            info["frames"] = int(len(joints))
            if not clips:
                summary.skipped.append((take.name, f"too short: {len(joints)} frames at {FPS} fps, "
                                                   f"need {MIN_CLIP_FRAMES}"))
                bar.advance()
                continue
            ids = [take.stem] if len(clips) == 1 else [f"{take.stem}_{k:03d}" for k in range(len(clips))]
            label = labels[take.stem]
            for clip_id, clip in zip(ids, clips):
                if clip_id in clip_owner:
                    raise DataError(f"{take}: clip id {clip_id!r} is also a clip of {clip_owner[clip_id]}; "
                                    f"rename one of the files")
                clip_owner[clip_id] = take.name
                take_of[clip_id] = take.stem
                canonical = canonicalize_joints(clip)
                features = extract_features(canonical, convention=options.convention)
                record = MotionRecord(motion_id=clip_id, split="train", captions=captions[take.stem],
                                      num_frames=int(len(canonical)), emotion=label.emotion,
                                      scenario=label.scenario, action=label.action, intensity=label.intensity)
                write_motion(staging, record, canonical, features, atomic=False)  # staging is synced once
                records.append(record)
            info["clips"] = ids
            summary.takes[take.stem] = info
            bar.advance(info=take.name)
    if not records:
        raise DataError(f"{summary.source}: nothing to import: every take is shorter than {MIN_CLIP_FRAMES} "
                        f"frames at {FPS} fps")

    # One split per take (its clips follow it), stratified by scenario × emotion; Mean/Std from train.
    written = [name for name in summary.takes]
    assignment = assign_splits(((name, labels[name].scenario, labels[name].emotion) for name in written),
                               options.split_ratios, (), options.split_seed)
    for record in records:
        record.split = assignment[take_of[record.motion_id]]
    train = [r for r in records if r.split == "train"]
    if not train:
        raise DataError(f"{summary.source}: no take landed in the train split ({len(written)} takes, shares "
                        f"{options.split_ratios}); raise the train share of --splits")
    mean, std = compute_feature_stats([load_npy(staging / FEATURES_DIR / f"{r.motion_id}.npy") for r in train])

    frames = [r.num_frames for r in records]
    summary.clips = len(records)
    summary.frames = {"min": int(min(frames)), "max": int(max(frames)), "total": int(sum(frames))}
    summary.splits = {s: sum(r.split == s for r in records) for s in SPLITS}
    metadata = {
        "name": Path(summary.out).name,
        "description": f"imported by `l2emg data import` from {summary.source}",
        "l2emg_version": l2emg_version,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "split_ratios": list(options.split_ratios),
        "stats": "Mean/Std from the train split (HumanML3D-style grouped std)",
        "feature_convention": options.convention,
        "import": {
            "source": summary.source,
            "rig": options.rig if isinstance(options.rig, str) else str(options.rig),
            "scale": options.scale, "up": options.up, "npy_fps": options.npy_fps,
            "labels": None if options.labels is None else str(options.labels),
            "scenario": options.scenario, "split_seed": options.split_seed,
            "takes": summary.takes,
            "skipped": [{"file": name, "reason": reason} for name, reason in summary.skipped],
        },
    }
    write_index(staging, records, mean, std, metadata)  # dataset.json last
