"""Runs survive being moved, shared and starved: locks, relative checkpoint paths, no writes on a
finished run, leftovers of killed writes, a full disk mid-stream, bounded generation."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from l2emg.continual.trainer import StreamTrainer
from l2emg.errors import BusyError, ConfigError, DataError
from l2emg.runs import RunDir
from l2emg.utils.lock import FolderLock
from method_fixtures import strip_timing


def _snapshot(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


# ---- locks ----------------------------------------------------------------------------------------


def test_a_held_lock_refuses_a_second_holder_and_a_dead_holders_lock_is_taken_over(tmp_path):
    lock = FolderLock(tmp_path / "run" / ".lock", "run folder")
    with lock:
        with pytest.raises(BusyError, match=f"in use by process {os.getpid()}"):
            FolderLock(tmp_path / "run" / ".lock", "run folder").acquire()
    # A lock file left by a process that died (the kernel dropped its flock): taken over.
    (tmp_path / "run" / ".lock").write_text(json.dumps({"pid": 999999, "host": "elsewhere"}))
    with FolderLock(tmp_path / "run" / ".lock") as again:
        assert again.holder()["pid"] == os.getpid()


def test_two_concurrent_runs_on_one_folder_one_is_refused_one_finishes(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "l2emg.cli", "run", "--profile", "tiny", "--run-dir", str(run), "--no-progress",
           "--no-stream", "--set", "data.num_motions=60", "--set", "tokenizer.iterations=20"]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = run / ".lock"
    deadline = time.time() + 120
    while not (lock.exists() and lock.read_text().strip()) and time.time() < deadline:
        time.sleep(0.2)
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and f"process {first.pid}" in lines[0], second.stderr
    assert RunDir(run).is_done("codes")


def test_a_method_run_is_locked_while_it_trains(tiny_run_copy, tiny_config):
    trainer = StreamTrainer(RunDir(tiny_run_copy), tiny_config, "seqlora", "unseen", 1, progress=False)
    with trainer.method_run.lock():
        with pytest.raises(BusyError, match="method run is in use"):
            trainer.run_stream()


# ---- moved runs, finished runs, leftovers --------------------------------------------------------


def test_a_moved_run_generates_from_another_directory_with_its_own_adapters(tiny_run_copy, tiny_config, tmp_path,
                                                                            monkeypatch):
    from l2emg.generator import load_generator

    config = tiny_config.model_copy(update={"stream": tiny_config.stream.model_copy(update={"max_subsets": 2})})
    StreamTrainer(RunDir(tiny_run_copy), config, "seqlora", "unseen", 1, progress=False).run_stream()
    expected = load_generator(tiny_run_copy).codes(["a person walks forward sadly"], seed=3, max_codes=8)
    moved = tmp_path / "elsewhere" / "moved-run"
    shutil.move(str(tiny_run_copy), moved)
    monkeypatch.chdir(tmp_path / "elsewhere")
    generator = load_generator("moved-run")
    assert generator.method_dir == Path("moved-run") / "methods" / "seqlora-unseen-o1"
    codes = generator.codes(["a person walks forward sadly"], seed=3, max_codes=8)
    assert [c.tolist() for c in codes] == [c.tolist() for c in expected]


def test_a_finished_method_run_is_only_read_and_leftovers_are_cleaned(tiny_run_copy, tiny_config):
    from l2emg.pipeline import prepare_run

    config = tiny_config.model_copy(update={"stream": tiny_config.stream.model_copy(update={"max_subsets": 2})})
    # What killed writes leave behind, in the shared part and in a method run.
    (tiny_run_copy / ".manifest.json.k2j4.tmp").write_text("{")
    (tiny_run_copy / "lm" / ".backbone.partial").mkdir()
    prepare_run(tiny_run_copy, config, progress=False, previews=False)  # prepared: only read
    assert (tiny_run_copy / ".manifest.json.k2j4.tmp").exists()
    trainer = StreamTrainer(RunDir(tiny_run_copy), config, "seqlora", "unseen", 1, progress=False, stop_after_step=0)
    trainer.run_stream()
    leftover = trainer.method_run.path / "checkpoints" / ".step_01.partial"
    leftover.mkdir()
    (trainer.method_run.path / ".results.json.x9.tmp").write_text("[")
    StreamTrainer(RunDir(tiny_run_copy), config, "seqlora", "unseen", 1, progress=False).run_stream()
    assert not leftover.exists() and not (trainer.method_run.path / ".results.json.x9.tmp").exists()
    assert trainer.method_run.report_path.exists()

    before = _snapshot(tiny_run_copy)
    again = StreamTrainer(RunDir(tiny_run_copy), config, "seqlora", "unseen", 1, progress=False)
    assert again.is_finished()
    again.run_stream()
    assert _snapshot(tiny_run_copy) == before  # nothing written, not even a lock file

    # A stage missing again: the run is locked and leftovers of the shared part are removed.
    RunDir(tiny_run_copy).manifest_path.write_text(json.dumps({"stages": {
        k: v for k, v in RunDir(tiny_run_copy).manifest()["stages"].items() if k != "codes"}}))
    prepare_run(tiny_run_copy, config, progress=False, previews=False)
    assert not (tiny_run_copy / ".manifest.json.k2j4.tmp").exists()
    assert not (tiny_run_copy / "lm" / ".backbone.partial").exists()
    assert (tiny_run_copy / ".lock").exists()


# ---- a full disk mid-stream -----------------------------------------------------------------------


def test_a_full_disk_at_a_checkpoint_stops_the_stream_and_the_resume_ends_identical(tiny_run_copy, tiny_config,
                                                                                    tmp_path, monkeypatch):
    import l2emg.continual.checkpoint as checkpoint

    straight_dir = tmp_path / "straight"
    shutil.copytree(tiny_run_copy, straight_dir)
    real_save = checkpoint.save_file
    calls = []

    def full_disk_on_second_checkpoint(tensors, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real_save(tensors, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_file", full_disk_on_second_checkpoint)
    starved = StreamTrainer(RunDir(tiny_run_copy), tiny_config, "seqlora", "mixed", 1, progress=False)
    with pytest.raises(OSError) as failure:
        starved.run_stream()
    assert failure.value.errno == errno.ENOSPC
    assert starved.finished_steps() == 1
    assert not list(starved.method_run.path.rglob(".*.partial"))  # the failed write left nothing half-done
    monkeypatch.setattr(checkpoint, "save_file", real_save)

    resumed = StreamTrainer(RunDir(tiny_run_copy), tiny_config, "seqlora", "mixed", 1, progress=False)
    a = resumed.run_stream()
    b = StreamTrainer(RunDir(straight_dir), tiny_config, "seqlora", "mixed", 1, progress=False).run_stream()
    assert strip_timing(a) == strip_timing(b)
    from safetensors.torch import load_file

    final = resumed.method_run.checkpoint_dir(len(a["steps"]) - 1) / "adapters.safetensors"
    other = RunDir(straight_dir).method_run("seqlora", "mixed", 1).checkpoint_dir(len(b["steps"]) - 1)
    ta, tb = load_file(str(final)), load_file(str(other / "adapters.safetensors"))
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


# ---- bounded generation --------------------------------------------------------------------------


def test_generation_beyond_the_context_is_refused_before_any_work(tiny_run_copy, tiny_config):
    from l2emg.generator import load_generator

    generator = load_generator(tiny_run_copy)
    context = generator.context
    with pytest.raises(ConfigError, match=f"context holds {context} positions"):
        generator.codes(["a person waves"], max_codes=context)
    with pytest.raises(DataError, match="shorten the caption"):
        generator.codes(["a person waves happily " * 200], max_codes=8)
    assert len(generator.codes(["a person waves"], max_codes=4)[0]) <= 4


def test_lm_max_codes_beyond_the_context_is_refused_before_training(tiny_run_copy, tiny_config):
    config = tiny_config.model_copy(update={"lm": tiny_config.lm.model_copy(update={"max_codes": 10_000})})
    trainer = StreamTrainer(RunDir(tiny_run_copy), config, "seqlora", "unseen", 1, progress=False)
    with pytest.raises(ConfigError, match="lm.max_codes=10000"):
        trainer.run_stream()
    assert trainer.finished_steps() == 0


def test_a_full_disk_during_the_data_build_then_a_rebuild_gives_the_uninterrupted_folder(tmp_path, monkeypatch):
    import l2emg.data.build as build
    from l2emg.config import load_config

    config = load_config("tiny", ["data.num_motions=40"])
    straight = tmp_path / "straight"
    build.build_dataset(config, straight, progress=False, workers=1)

    real_write = build.write_motion
    written = []

    def full_disk_after_ten(root, record, *args, **kwargs):
        written.append(record.motion_id)
        if len(written) > 10:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(root, record, *args, **kwargs)

    monkeypatch.setattr(build, "write_motion", full_disk_after_ten)
    starved = tmp_path / "data"
    with pytest.raises(OSError) as failure:
        build.build_dataset(config, starved, progress=False, workers=1)
    assert failure.value.errno == errno.ENOSPC and str(starved) in str(failure.value.filename)
    assert not starved.exists() and not (tmp_path / ".data.partial").exists()
    monkeypatch.setattr(build, "write_motion", real_write)
    build.build_dataset(config, starved, progress=False, workers=1)
    files = sorted(p.relative_to(straight) for p in straight.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(starved) for p in starved.rglob("*") if p.is_file())
    for rel in files:
        if rel.name != "dataset.json":  # its timings and paths differ
            assert (straight / rel).read_bytes() == (starved / rel).read_bytes(), rel


def test_a_resume_with_other_threads_or_versions_says_so(tiny_run_copy, tiny_config, capsys):
    config = tiny_config.model_copy(update={"stream": tiny_config.stream.model_copy(update={"max_subsets": 2})})
    first = StreamTrainer(RunDir(tiny_run_copy), config, "seqlora", "unseen", 1, progress=False, stop_after_step=0)
    first.run_stream()
    progress = json.loads(first.method_run.progress_path.read_text())
    assert progress["environment"]["threads"] == torch.get_num_threads() and "torch" in progress["environment"]
    capsys.readouterr()
    StreamTrainer(RunDir(tiny_run_copy), config, "seqlora", "unseen", 1, progress=False).run_stream()
    assert "another environment" not in capsys.readouterr().err  # same threads and versions: silent
    progress["environment"]["threads"] = 97
    progress["finished_steps"] = 1
    first.method_run.progress_path.write_text(json.dumps(progress))
    first.method_run.adapter_path.unlink()
    StreamTrainer(RunDir(tiny_run_copy), config, "seqlora", "unseen", 1, progress=False).run_stream()
    assert f"threads 97 -> {torch.get_num_threads()}" in " ".join(capsys.readouterr().err.split())


def test_positions_a_method_puts_before_the_prompt_count_against_the_context(tiny_run_copy, tiny_config, monkeypatch):
    from l2emg.continual.methods.seqlora import SeqLoRA

    monkeypatch.setattr(SeqLoRA, "extra_positions", lambda self, n: 10_000)
    trainer = StreamTrainer(RunDir(tiny_run_copy), tiny_config, "seqlora", "unseen", 1, progress=False)
    with pytest.raises(ConfigError, match="lm.max_codes"):
        trainer.run_stream()
