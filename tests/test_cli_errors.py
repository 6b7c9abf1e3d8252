"""Expected failures of the CLI: one line `error: <file>: <reason>` on stderr and exit code 2.

Each test runs `l2emg.cli.main` (the console entry point) on a file that is wrong in one way —
a full or read-only disk, a folder or non-UTF-8 file where a YAML profile belongs, a malformed
`--set`, a corrupt run folder, backbone or dataset — and checks that the output is that single line,
naming the file (or the override), with no traceback. Bugs still raise (last test).
"""

from __future__ import annotations

import errno
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import l2emg.data.synth as synth
import l2emg.data.writer as writer
from l2emg.cli import app, error_message, main
from l2emg.config import load_config
from l2emg.errors import CheckpointError, ConfigError
from l2emg.runs import MethodRunDir, RunDir
from test_data_cli import fake_generate
from test_formats import make_toy_dataset

DISK_FULL = "disk full: free space and re-run"
NOT_WRITABLE = "not writable: choose another --run-dir/--out or fix permissions"
SMALL = ["--profile", "tiny", "--set", "num_motions=16", "--set", "max_frames=48", "--no-progress"]


def cli_error(capsys, *args: str) -> str:
    """Run `l2emg ARGS` as the console script does; return its one error line (exit code 2)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    assert exit_info.value.code == 2, captured
    assert "Traceback" not in captured.err + captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


def full_disk(*args, **kwargs):
    """A write on a full disk: OSError ENOSPC naming no file (as write()/fsync() raise it)."""
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def fake_generator(monkeypatch):
    monkeypatch.setattr(synth, "generate_motions", fake_generate, raising=False)


@pytest.fixture
def run_folder(tmp_path) -> RunDir:
    """A run folder started with the tiny profile (config.yaml saved, no stage done)."""
    run = RunDir(tmp_path / "run")
    run.init(load_config("tiny"))
    return run


# ------------------------------------------------------------------------------- 1. full / read-only disk


def test_full_disk_during_data_generate(tmp_path, capsys, monkeypatch, fake_generator):
    monkeypatch.setattr(writer, "_write_plain", full_disk)
    out = tmp_path / "data"
    line = cli_error(capsys, "data", "generate", "--out", out, "--workers", "1", *SMALL)
    assert line == f"error: {out}: No space left on device; {DISK_FULL}; the run resumes where it stopped"
    assert not out.exists() and not list(tmp_path.glob(".data*"))  # the staging folder is gone


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                    reason="the patched writer reaches the workers by fork")
def test_full_disk_inside_the_worker_pool(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(writer, "_write_plain", full_disk)  # inherited by the forked workers
    out = tmp_path / "data"
    line = cli_error(capsys, "data", "generate", "--out", out, "--workers", "2", *SMALL)
    assert line.startswith(f"error: {out}: No space left on device; {DISK_FULL}")


def test_full_disk_during_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(os, "fsync", full_disk)  # every atomic write syncs its temporary file
    run_dir = tmp_path / "run"
    line = cli_error(capsys, "run", "--profile", "tiny", "--run-dir", run_dir, "--no-progress")
    assert line.startswith(f"error: {run_dir / 'config.yaml'}: No space left on device; {DISK_FULL}")
    assert not list(run_dir.glob(".*.tmp"))  # no temporary file left behind


def test_failed_safetensors_write_is_a_disk_error(tmp_path, capsys, monkeypatch, fake_generator):
    """safetensors' save_file raises its own error type (the errno only in its message)."""
    from safetensors import SafetensorError

    def failed_save(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(writer, "_write_plain", failed_save)
    out = tmp_path / "data"
    line = cli_error(capsys, "data", "generate", "--out", out, "--workers", "1", *SMALL)
    assert line.startswith(f"error: {out}: No space left on device; {DISK_FULL}")
    # raised outside an atomic folder, the CLI's safety net reads the errno and the path too
    err = SafetensorError('Error while serializing: I/O error: Read-only file system (os error 30) at path "/x/a"')
    assert error_message(err) == f"/x/a: Read-only file system; {NOT_WRITABLE}"


def test_read_only_disk_during_run(tmp_path, capsys, monkeypatch):
    import tempfile

    def read_only(dir=None, prefix="", suffix="", **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.path.join(dir, f"{prefix}x1y2{suffix}"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    run_dir = tmp_path / "run"
    line = cli_error(capsys, "run", "--profile", "tiny", "--run-dir", run_dir, "--no-progress")
    assert line == f"error: {run_dir / 'config.yaml'}: Read-only file system; {NOT_WRITABLE}"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="chmod does not bind root")
def test_read_only_folder(tmp_path, capsys, fake_generator):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        line = cli_error(capsys, "data", "generate", "--out", folder / "data", "--workers", "1", *SMALL)
    finally:
        folder.chmod(0o755)
    assert line == f"error: {folder / 'data'}: Permission denied; {NOT_WRITABLE}"


# ------------------------------------------------------------------------------- 2. profiles


def test_profile_that_is_a_folder(tmp_path, capsys):
    profile = tmp_path / "mine.yaml"
    profile.mkdir()
    line = cli_error(capsys, "data", "generate", "--out", tmp_path / "d", "--profile", profile)
    assert line == f"error: {profile}: is a folder, expected a YAML config profile"


def test_profile_that_is_not_utf8(tmp_path, capsys):
    profile = tmp_path / "latin1.yaml"
    profile.write_bytes("data:\n  seed: 1  # d\xe9j\xe0 vu\n".encode("latin-1"))
    line = cli_error(capsys, "run", "--profile", profile, "--run-dir", tmp_path / "run")
    assert line.startswith(f"error: {profile}: not UTF-8 text (byte ")


def test_profile_yaml_error_is_one_line(tmp_path, capsys):
    profile = tmp_path / "broken.yaml"
    profile.write_text("data: [unclosed\n")
    line = cli_error(capsys, "run", "--profile", profile, "--run-dir", tmp_path / "run")
    assert line.startswith(f"error: {profile}: not valid YAML (") and "line 2" in line


# ------------------------------------------------------------------------------- 3. --set overrides


def test_override_that_is_not_yaml(tmp_path, capsys):
    line = cli_error(capsys, "data", "generate", "--out", tmp_path / "d", "--profile", "tiny",
                     "--set", "data.num_motions=[1,")
    assert line.startswith("error: --set data.num_motions=[1,: the value is not valid YAML (")


def test_override_below_a_single_value(tmp_path, capsys):
    line = cli_error(capsys, "run", "--profile", "tiny", "--run-dir", tmp_path / "run",
                     "--set", "data=3", "--set", "data.seed=1")
    assert line == ("error: --set data.seed=1: an earlier --set made data a single value (3), "
                    "so it has no field 'seed'")
    line = cli_error(capsys, "run", "--profile", "tiny", "--run-dir", tmp_path / "run",
                     "--set", "data.seed=1", "--set", "data.seed.x=2")
    assert line.startswith("error: --set data.seed.x=2: an earlier --set made data.seed a single value (1)")


def test_invalid_override_names_the_override_not_the_profile(tmp_path, capsys):
    line = cli_error(capsys, "data", "generate", "--out", tmp_path / "d", "--profile", "tiny",
                     "--set", "num_motions=3")
    assert line.startswith("error: --set data.num_motions=3: field 'data.num_motions': ")
    assert "tiny.yaml" not in line
    # a section-level check names the overrides of that section
    with pytest.raises(ConfigError) as err:
        load_config("tiny", ["data.min_frames=100", "train.epochs=2"])
    assert str(err.value).startswith("--set data.min_frames=100: field 'data': ")
    # the profile's own mistakes still name the profile, the override's the override
    profile = tmp_path / "bad.yaml"
    profile.write_text("data:\n  num_motoins: 10\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(profile), ["train.epochs=0"])
    assert str(err.value).splitlines() == [f"{profile}: invalid config", "  field 'data.num_motoins': Extra inputs "
                                           "are not permitted", "--set train.epochs=0: field 'train.epochs': "
                                           "Input should be greater than or equal to 1"]


# ------------------------------------------------------------------------------- 4. corrupt run folders


def test_truncated_manifest(run_folder, capsys):
    run_folder.manifest_path.write_text('{"stages": {"data": {"finished_at": "2024')
    line = cli_error(capsys, "run", "--profile", "tiny", "--run-dir", run_folder.path, "--no-progress")
    assert line.startswith(f"error: {run_folder.manifest_path}: not valid JSON (")
    assert line.endswith("remove it to rebuild the run's stages")


def test_manifest_that_is_a_list(run_folder, capsys):
    run_folder.manifest_path.write_text("[1, 2]\n")
    line = cli_error(capsys, "run", "--profile", "tiny", "--run-dir", run_folder.path, "--no-progress")
    assert line == (f"error: {run_folder.manifest_path}: expected {{\"stages\": dict, …}}, got list; "
                    "remove it to rebuild the run's stages")


@pytest.mark.parametrize("content", [b"data: [1,\n", b"- a list\n", b"", b"\xff\xfe garbage"],
                         ids=["yaml-garbage", "list", "empty", "not-utf8"])
def test_corrupt_run_config(run_folder, capsys, content):
    run_folder.config_path.write_bytes(content)
    line = cli_error(capsys, "run", "--profile", "tiny", "--run-dir", run_folder.path, "--no-progress")
    assert line.startswith(f"error: {run_folder.config_path}: ")
    assert line.endswith("restore it, or remove it and re-run with the same --profile/--set to write it again")
    # `l2emg generate` reads the same file through the same function
    with pytest.raises(ConfigError, match="restore it"):
        run_folder.config()


def test_corrupt_progress_of_a_method_run(tmp_path):
    method_run = MethodRunDir(tmp_path / "methods" / "esmoe-unseen-o1")
    method_run.path.mkdir(parents=True)
    assert method_run.finished_steps() == 0
    for content in ('{"finished_steps": ', '["finished_steps", 3]', '{"finished_steps": "3"}', "\xff"):
        method_run.progress_path.write_bytes(content.encode("latin-1"))
        with pytest.raises(CheckpointError) as err:
            method_run.finished_steps()
        message = error_message(err.value)
        assert message.startswith(f"{method_run.progress_path}: ") and "\n" not in message
        assert message.endswith("remove it to train this method run again from its first step")
    method_run.progress_path.write_text('{"finished_steps": 3, "total_steps": 8}')
    assert method_run.finished_steps() == 3


def test_run_dir_that_is_a_file(tmp_path, capsys):
    path = tmp_path / "run"
    path.write_text("not a folder\n")
    line = cli_error(capsys, "run", "--profile", "tiny", "--run-dir", path, "--no-progress")
    assert line == f"error: {path}: exists and is not a folder; choose another --run-dir"


# ------------------------------------------------------------------------------- 5. backbones


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory) -> Path:
    from l2emg.config import LMConfig
    from l2emg.lm.backbone import build_tiny_backbone

    lm = LMConfig(text_vocab_size=300, tiny_hidden=16, tiny_layers=1, tiny_heads=2, tiny_intermediate=32,
                  warmup_steps=0)
    texts = [f"a person {v} {m}" for v in ("walks", "runs", "jumps") for m in ("happily", "sadly")]
    return build_tiny_backbone(lm, texts, tmp_path_factory.mktemp("bb") / "backbone", progress=False)


def _copy_backbone(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


def test_corrupt_backbone_safetensors(tiny_backbone, tmp_path):
    from l2emg.lm.backbone import load_backbone

    folder = _copy_backbone(tiny_backbone, tmp_path / "bb")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])  # a copy cut short
    with pytest.raises(CheckpointError) as err:
        load_backbone(folder)
    message = error_message(err.value)
    assert message.startswith(f"{weights}: corrupt or truncated weights (") and "\n" not in message


@pytest.mark.parametrize("kind", ["not-weights-only", "garbage"])
def test_pickle_backbone(tiny_backbone, tmp_path, kind):
    import fractions

    import torch
    from safetensors.torch import load_file

    from l2emg.lm.backbone import load_backbone

    folder = _copy_backbone(tiny_backbone, tmp_path / "bb")
    weights = folder / "pytorch_model.bin"
    if kind == "garbage":
        weights.write_bytes(b"garbage, not a pickle\n")
    else:  # a pickle holding an object torch's weights-only loader refuses
        torch.save({**load_file(folder / "model.safetensors"), "note": fractions.Fraction(1, 3)}, weights)
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError) as err:
        load_backbone(folder)
    message = error_message(err.value)
    assert message.startswith(f"{weights}: ") and "\n" not in message


# ------------------------------------------------------------------------------- 6.-8. datasets, captions, --out


def test_stats_on_nan_joints(tmp_path, capsys):
    root = tmp_path / "data"
    records = make_toy_dataset(root, scenarios=("Sports",))
    path = root / "new_joints" / f"{records[2].motion_id}.npy"
    joints = np.load(path)
    joints[5, 3, 1] = np.nan
    np.save(path, joints)
    line = cli_error(capsys, "data", "stats", root)
    assert line.startswith(f"error: {path}: joints contain NaN or inf (1 value(s), first in frame 5)")


def test_eval_motions_with_non_utf8_caption(tmp_path, capsys):
    motions = tmp_path / "generated"
    motions.mkdir()
    np.save(motions / "000001.npy", np.zeros((40, 263), np.float32))
    (motions / "000001.txt").write_bytes("une personne marche, l'air d\xe9\xe7u\n".encode("latin-1"))
    line = cli_error(capsys, "eval", "motions", "--evaluator", tmp_path / "evaluator", "--data", tmp_path / "data",
                     "--motions", motions)
    assert line.startswith(f"error: {motions / '000001.txt'}: not UTF-8 text (byte ")


def test_data_generate_out_is_a_file(tmp_path, capsys):
    out = tmp_path / "data"
    out.write_text("a file\n")
    line = cli_error(capsys, "data", "generate", "--out", out, *SMALL)
    assert line == f"error: {out}: exists and is not a folder; choose another --out"


def test_more_files_in_the_wrong_shape(tmp_path, capsys):
    """Others of the same kind: a label map that is a folder or not UTF-8, --json onto a folder,
    a preview --out that is a file, continual results and a split file that are not UTF-8."""
    root = tmp_path / "data"
    make_toy_dataset(root, scenarios=("Sports",))
    folder = tmp_path / "folder"
    folder.mkdir()
    line = cli_error(capsys, "data", "stats", root, "--no-physical", "--label-map", folder)
    assert line == f"error: {folder}: is a folder, expected a label map (JSON/YAML)"
    latin = tmp_path / "map.yaml"
    latin.write_bytes("emotion: {gl\xfccklich: happy}\n".encode("latin-1"))
    assert cli_error(capsys, "data", "stats", root, "--no-physical", "--label-map", latin).startswith(
        f"error: {latin}: not UTF-8 text")
    assert cli_error(capsys, "data", "stats", root, "--no-physical", "--json", folder) == (
        f"error: {folder}: Is a directory")
    afile = tmp_path / "afile"
    afile.write_text("x\n")
    assert cli_error(capsys, "data", "preview", root, "--out", afile, "--no-progress") == (
        f"error: {afile}: exists and is not a folder; choose another --out")
    results = tmp_path / "results.json"
    results.write_bytes(b'{"method": "caf\xe9"}')
    assert cli_error(capsys, "eval", "continual", results, "--out", tmp_path / "m").startswith(
        f"error: {results}: not UTF-8 text")
    split_file = root / "train.txt"
    split_file.write_bytes(split_file.read_bytes() + "caf\xe9\n".encode("latin-1"))
    assert cli_error(capsys, "data", "check", root).startswith(f"error: {split_file}: not UTF-8 text")


# ------------------------------------------------------------------------------- bugs keep their traceback


def test_unexpected_errors_still_raise(tmp_path, monkeypatch):
    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("l2emg.data.build.build_dataset", bug)
    with pytest.raises(ZeroDivisionError):
        main(["data", "generate", "--out", str(tmp_path / "d"), "--profile", "tiny"])
    assert error_message(ZeroDivisionError()) is None
    # the command itself raises the exception (CliRunner keeps it) and main decides how to show it
    result = CliRunner().invoke(app, ["data", "generate", "--out", str(tmp_path / "d"), "--profile", "nope.yaml"])
    assert isinstance(result.exception, ConfigError) and error_message(result.exception) == (
        "nope.yaml: config file not found")
