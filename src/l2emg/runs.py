"""Run directories: one folder per run holding its resolved config, a manifest of finished stages,
checkpoints, metrics and figures. Re-running a command resumes from the manifest."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path, PurePosixPath
from typing import Any

from l2emg.config import Config, read_saved_config, save_config
from l2emg.errors import CheckpointError, ConfigError
from l2emg.labels import scenario_slug
from l2emg.utils.io import atomic_write_bytes, load_json, remove_leftovers, save_json
from l2emg.utils.lock import FolderLock


class RunDir:
    """The one place that knows a run folder's layout:

        RUN/config.yaml, manifest.json, summary.md
        RUN/data/  previews/  tokenizer/  evaluator/ (+ reference_test.json)  backbone/  lm/  codes.json
        RUN/methods/<method>-<split>-o<order>/   one `MethodRunDir` per trained method run
        RUN/bench/  table2.md, table2.json, figure3_fid_<split>_<method>.png   `l2emg bench`'s tables
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def data_dir(self) -> Path:
        return self.path / "data"

    @property
    def previews_dir(self) -> Path:
        return self.path / "previews"

    @property
    def previews_index_path(self) -> Path:
        return self.previews_dir / "index.md"

    @property
    def tokenizer_dir(self) -> Path:
        return self.path / "tokenizer"

    @property
    def tokenizer_eval_path(self) -> Path:
        return self.tokenizer_dir / "eval_test.json"

    @property
    def evaluator_dir(self) -> Path:
        return self.path / "evaluator"

    @property
    def reference_path(self) -> Path:
        """Real-motion metrics on the test split (the reference row of every table)."""
        return self.evaluator_dir / "reference_test.json"

    @property
    def backbone_dir(self) -> Path:
        """The embedded backbone after its language warm-up (unused when lm.backbone names a folder)."""
        return self.path / "backbone"

    @property
    def lm_dir(self) -> Path:
        return self.path / "lm"

    @property
    def codes_path(self) -> Path:
        return self.path / "codes.json"

    @property
    def methods_dir(self) -> Path:
        return self.path / "methods"

    FINGERPRINTED = ("data", "tokenizer", "codes", "evaluator", "lm")
    # What a stage build is, relative to the run folder: the files the method runs read (the data aside),
    # kept by a bench archive (`BenchArchive.save_stages`) and restored from it. The tokenizer's optimizer
    # state (train_state.safetensors) and the embedded backbone before the motion rows (backbone/) are
    # not needed once the tokenizer and the language model are built.
    STAGE_FILES = ("tokenizer/config.json", "tokenizer/model.safetensors", "tokenizer/eval_test.json",
                   "evaluator/evaluator.json", "evaluator/evaluator.safetensors", "evaluator/reference_test.json",
                   "codes.json")

    def stage_files(self) -> list[str]:
        """The stage build's files present here (`STAGE_FILES` and every file under lm/), relative."""
        files = [f for f in self.STAGE_FILES if (self.path / f).is_file()]
        return files + sorted(p.relative_to(self.path).as_posix() for p in self.lm_dir.rglob("*") if p.is_file())

    def stage_fingerprint(self) -> dict[str, str]:
        """What a method run's numbers rest on, as short sha256 digests: the dataset's files (its
        dataset.json aside: it records when it was written), the
        tokenizer's and the evaluator's weights, the codes and the language model's folder (its weights
        and vocabulary). Run folders whose stages were built apart (another session, another CPU: the
        kernels differ, so the weights do) give comparable rows only where these agree; `l2emg bench`
        reports the groups, and a bench archive keeps one build to restore (`BenchArchive`)."""
        paths = {"data": sorted(p for p in self.data_dir.rglob("*") if p.is_file() and p.name != "dataset.json"),
                 "tokenizer": [self.tokenizer_dir / "model.safetensors"], "codes": [self.codes_path],
                 "evaluator": [self.evaluator_dir / "evaluator.safetensors"],
                 "lm": sorted(p for p in self.lm_dir.rglob("*") if p.is_file())}
        digests = {}
        for stage in self.FINGERPRINTED:
            h = hashlib.sha256()
            for path in paths[stage]:
                if path.is_file():
                    h.update(path.relative_to(self.path).as_posix().encode() + b"\0")
                    with open(path, "rb") as f:
                        for block in iter(lambda: f.read(1 << 20), b""):
                            h.update(block)
            digests[stage] = h.hexdigest()[:16]
        return digests

    @property
    def bench_dir(self) -> Path:
        """`l2emg bench`: Table 2 over splits and orders, Figure 3 heatmaps, Figure 4 strips."""
        return self.path / "bench"

    @property
    def bench_table_path(self) -> Path:
        return self.bench_dir / "table2.md"

    @property
    def bench_json_path(self) -> Path:
        return self.bench_dir / "table2.json"

    def bench_figure3_path(self, split: str, method: str) -> Path:
        """The FID performance-matrix heatmap of one method on one split (the paper's Figure 3)."""
        return self.bench_dir / f"figure3_fid_{split}_{method}.png"

    @property
    def bench_figure4_path(self) -> Path:
        """Keyframe strips of a few test captions × methods (the paper's Figure 4)."""
        return self.bench_dir / "figure4.png"

    def bench_figure4_animation_path(self, fmt: str) -> Path:
        """The same grid animated (`fmt`: gif or mp4)."""
        return self.bench_dir / f"figure4.{fmt}"

    def bench_lock(self) -> FolderLock:
        """Held while the bench tables are written (several shard workers may finish together)."""
        return FolderLock(self.bench_dir / ".lock", "bench folder")

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.md"

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def lock(self) -> FolderLock:
        """Held while the shared stages are built: one process writes them at a time."""
        return FolderLock(self.path / ".lock", "run folder")

    def clean_leftovers(self) -> list[Path]:
        """Remove temporary files and folders of writes killed mid-way, outside `methods/` (each
        method run cleans its own folder under its own lock). Call under `lock()`."""
        return remove_leftovers(self.path, skip=self.methods_dir) if self.path.is_dir() else []

    def method_run(self, method: str, split: str, order: int) -> "MethodRunDir":
        return MethodRunDir(self.methods_dir / f"{method}-{split}-o{order}")

    def finished_method_runs(self) -> list["MethodRunDir"]:
        """Method runs that finished their stream (they hold `adapter.json`), sorted by folder name."""
        if not self.methods_dir.is_dir():
            return []
        runs = (MethodRunDir(p) for p in sorted(self.methods_dir.iterdir()))
        return [r for r in runs if r.adapter_path.exists()]

    def find_method_run(self, method: str | None) -> "MethodRunDir | None":
        """The finished method run for `method` ("esmoe" or "esmoe-unseen-o1"); None = no method.

        Without `method`: the only finished method run, or None if there is none; several finished
        method runs must be told apart."""
        finished = self.finished_method_runs()
        names = ", ".join(r.name for r in finished) or "none"
        if method is None:
            if len(finished) > 1:
                raise CheckpointError(f"{self.path}: several trained methods ({names}); choose one with --method")
            return finished[0] if finished else None
        matches = [r for r in finished if r.name == method] or [r for r in finished if r.name.startswith(f"{method}-")]
        if len(matches) != 1:
            what = "no finished method" if not matches else "several finished methods"
            raise CheckpointError(f"{self.methods_dir}: {what} named {method!r} (finished: {names})")
        return matches[0]

    def init(self, config: Config) -> None:
        """Create the run folder and save its resolved config; refuse to mix two configs in one run.

        Only the sections the shared stages depend on must match (SHARED_SECTIONS); methods trained
        inside the run keep their own resolved config next to their results."""
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"{self.path}: exists and is not a folder; choose another --run-dir")
        self.path.mkdir(parents=True, exist_ok=True)
        if self.config_path.exists():
            self.check_config(config)
        else:
            save_config(config, self.config_path)

    def check_config(self, config: Config) -> None:
        """Refuse `config` when its shared sections differ from the run's saved config (writes nothing)."""
        saved = read_saved_config(self.config_path)
        changed = config_differences(saved, config, SHARED_SECTIONS)
        if changed:
            raise ConfigError(
                f"{self.config_path}: this run was started with another config "
                f"(differs in: {', '.join(changed)}); use a new --run-dir or the same settings"
            )

    def config(self) -> Config:
        return read_saved_config(self.config_path)

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"stages": {}}
        return _read_record(self.manifest_path, "stages", dict, "remove it to rebuild the run's stages")

    def is_done(self, stage: str) -> bool:
        return stage in self.manifest()["stages"]

    def mark_done(self, stage: str, **info: Any) -> None:
        manifest = self.manifest()
        manifest["stages"][stage] = {"finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
        save_json(self.manifest_path, manifest)

    def stage_info(self, stage: str) -> dict[str, Any]:
        return self.manifest()["stages"].get(stage, {})


class MethodRunDir:
    """One method trained over one stream, `RUN/methods/<method>-<split>-o<order>/`:

        config.yaml              the method run's resolved config
        progress.json            finished steps
        checkpoints/step_XX/     the method's checkpoint after step XX (`l2emg.continual.checkpoint`)
        results.json             per-step, per-scenario metrics (`l2emg.eval.continual_metrics`' format)
        train.log                one line per start, resume, finished step and finish (`tail -f` it)
        adapter.json             written when the stream is finished: the method and its final checkpoint
        report.md, metrics.json, continual_metrics.json, figures/, samples/   the report
        learned.json             scenarios learned after the stream (`l2emg learn`), in order
        learned/<slug>/data/     … each one's dataset (a copy: the run stays self-contained)
        learned/<slug>/codes.json  … its motions as codes of the run's tokenizer
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def progress_path(self) -> Path:
        return self.path / "progress.json"

    @property
    def results_path(self) -> Path:
        return self.path / "results.json"

    @property
    def adapter_path(self) -> Path:
        return self.path / "adapter.json"

    @property
    def log_path(self) -> Path:
        return self.path / "train.log"

    @property
    def report_path(self) -> Path:
        return self.path / "report.md"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    @property
    def continual_metrics_path(self) -> Path:
        return self.path / "continual_metrics.json"

    @property
    def figures_dir(self) -> Path:
        return self.path / "figures"

    @property
    def samples_dir(self) -> Path:
        return self.path / "samples"

    @property
    def learned_path(self) -> Path:
        return self.path / "learned.json"

    def learned_dir(self, scenario: str) -> Path:
        return self.path / "learned" / scenario_slug(scenario)

    def learned_data_dir(self, scenario: str) -> Path:
        return self.learned_dir(scenario) / "data"

    def learned_codes_path(self, scenario: str) -> Path:
        return self.learned_dir(scenario) / "codes.json"

    def lock(self) -> FolderLock:
        """Held while the method trains: one process per method run (shards share a run folder)."""
        return FolderLock(self.path / ".lock", "method run")

    def clean_leftovers(self) -> list[Path]:
        """Remove temporary files and folders of writes killed mid-way (call under `lock()`)."""
        return remove_leftovers(self.path) if self.path.is_dir() else []

    def checkpoint_dir(self, step: int) -> Path:
        return self.path / "checkpoints" / f"step_{step:02d}"

    def finished_steps(self) -> int:
        if not self.progress_path.exists():
            return 0
        return _read_record(self.progress_path, "finished_steps", int,
                            "remove it to train this method run again from its first step")["finished_steps"]

    def mark_finished(self, method: str, last_step: int) -> None:
        """Write `adapter.json`: the stream is finished; its final checkpoint, relative to this folder."""
        checkpoint = self.checkpoint_dir(last_step).relative_to(self.path).as_posix()
        save_json(self.adapter_path, {"method": method, "checkpoint": checkpoint})

    def final_checkpoint(self) -> tuple[str, Path]:
        """(method name, final checkpoint folder) of a finished run, from `adapter.json`.

        The checkpoint is resolved inside this folder, so a moved or copied run loads its own
        adapters; files written before paths were stored relative (`runs/x/methods/y/checkpoints/
        step_07`, with a `loader` entry) are read by the checkpoint's folder name."""
        try:
            spec = load_json(self.adapter_path)
            method, checkpoint = str(spec["method"]), PurePosixPath(str(spec["checkpoint"]))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"{self.adapter_path}: expected {{\"method\": …, \"checkpoint\": …}} ({err!r})") from err
        if not checkpoint.is_absolute() and ".." not in checkpoint.parts and "loader" not in spec:
            path = self.path / checkpoint
        else:  # an older adapter.json: its path was relative to where training was started
            path = self.path / "checkpoints" / checkpoint.name
        if not path.is_dir():
            raise CheckpointError(f"{self.adapter_path}: checkpoint {path} not found")
        return method, path


class BenchArchive:
    """Finished method runs' records kept outside any run folder, for a bench spread over sessions or
    machines whose run folders do not survive (`l2emg bench --archive`, e.g. committed as
    `benchmarks/results/table2_runs/`): `ARCHIVE/<method>-<split>-o<order>/` holds the files Table 2,
    its time line, its protocol line and Figure 3 read — config.yaml, progress.json, results.json,
    metrics.json, continual_metrics.json (a continual method's) — and no checkpoint (Figure 4, which
    generates, needs the method runs themselves)."""

    FILES = ("config.yaml", "progress.json", "results.json", "metrics.json")
    OPTIONAL = ("continual_metrics.json",)
    BUILD = "build.json"

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def stages_dir(self) -> Path:
        """`ARCHIVE/stages/`: one build of the shared stages (`RunDir.stage_files`, ~27 MB on the default
        profile) with `build.json` (its fingerprint, manifest entries and config), so that a later session
        restores the build its archived runs rest on instead of rebuilding one that differs."""
        return self.path / "stages"

    def stage_build(self) -> dict[str, Any] | None:
        """build.json of the archived stage build ({"fingerprint", "manifest", "files"}), or None."""
        path = self.stages_dir / self.BUILD
        return _read_record(path, "fingerprint", dict, f"remove {self.stages_dir} to archive a build again") \
            if path.exists() else None

    def save_stages(self, run: RunDir) -> bool:
        """Keep `run`'s stage build (files, then build.json last, so a half-written copy is not a build);
        False when the archive already holds one."""
        if self.stage_build() is not None:
            return False
        files = run.stage_files()
        for f in files:
            atomic_write_bytes(self.stages_dir / f, (run.path / f).read_bytes())
        atomic_write_bytes(self.stages_dir / "config.yaml", run.config_path.read_bytes())
        manifest = run.manifest()["stages"]
        save_json(self.stages_dir / self.BUILD, {"fingerprint": run.stage_fingerprint(), "files": files,
                                                 "manifest": {k: v for k, v in manifest.items()
                                                              if k not in ("data", "previews")}})
        return True

    def method_run(self, name: str) -> MethodRunDir:
        """The archived records of method run `name` (a `MethodRunDir` without checkpoints)."""
        return MethodRunDir(self.path / name)

    def has(self, name: str) -> bool:
        return all((self.path / name / f).is_file() for f in self.FILES)

    def save(self, method_run: MethodRunDir) -> MethodRunDir:
        """Copy a finished method run's records into the archive (each file atomically; the files of a
        run already archived are replaced)."""
        target = self.method_run(method_run.name)
        for f in (*self.FILES, *(f for f in self.OPTIONAL if (method_run.path / f).is_file())):
            atomic_write_bytes(target.path / f, (method_run.path / f).read_bytes())
        return target


def _read_record(path: Path, field: str, kind: type, fix: str) -> dict[str, Any]:
    """A run's bookkeeping JSON (`{field: <kind>, …}`); CheckpointError naming the file and how to fix
    it when it is corrupt (truncated, not JSON, not such a mapping)."""
    try:
        record = load_json(path)
    except ValueError as err:  # not UTF-8 or not JSON: the message names the file
        raise CheckpointError(f"{err}; {fix}") from err
    value = record.get(field) if isinstance(record, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise CheckpointError(f"{path}: expected {{\"{field}\": {kind.__name__}, …}}, got "
                              f"{type(record).__name__ if not isinstance(record, dict) else repr(record)[:80]}; {fix}")
    return record


# Config sections that shape the shared stages of a run (data, tokenizer, evaluator, language model).
SHARED_SECTIONS = ("data", "tokenizer", "evaluator", "lm")


# Fields of those sections that only steer generation (free to differ between a run and a later command).
GENERATION_FIELDS = ("lm.greedy", "lm.temperature", "lm.top_k", "lm.generation_batch_size")


def config_differences(saved: Config, wanted: Config, sections: tuple[str, ...] | None = None) -> list[str]:
    """Dotted names of the fields that differ (within `sections` — there ignoring GENERATION_FIELDS —
    or everywhere)."""
    a, b = saved.model_dump(), wanted.model_dump()
    if sections is None:
        return _diff(a, b)
    a = {k: a[k] for k in sections}
    b = {k: b[k] for k in sections}
    return [name for name in _diff(a, b) if name not in GENERATION_FIELDS]


def _diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}")
    return out
