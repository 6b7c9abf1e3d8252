"""`l2emg bench`: the plan, the statistics, the whole table on the tiny run, shard workers, bad arguments."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_RUN_OVERRIDES
from l2emg.errors import ConfigError

SHORT = [*TINY_RUN_OVERRIDES, "stream.max_subsets=2"]


def _short(config):
    return config.model_copy(update={"stream": config.stream.model_copy(update={"max_subsets": 2})})


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")
            if p.is_file() and p.name != ".lock"}


def test_kendall_tau_on_a_hand_example():
    from l2emg.bench import kendall_tau

    # common methods a, b, c: pairs (a,b), (a,c) concordant, (b,c) discordant -> (2 - 1) / 3
    result = kendall_tau({"a": 1.0, "b": 2.0, "c": 3.0, "x": None}, {"a": 1.0, "b": 3.0, "c": 2.0, "d": 5.0})
    assert result["methods"] == ["a", "b", "c"]
    assert result["tau"] == pytest.approx(1 / 3)
    assert kendall_tau({"a": 1.0, "b": 2.0}, {"a": 5.0, "b": 1.0})["tau"] == pytest.approx(-1.0)
    assert kendall_tau({"a": 1.0}, {"a": 1.0, "b": 2.0})["tau"] is None


def test_mean_and_t_interval_over_orders():
    from l2emg.bench import mean_ci

    three = mean_ci([1.0, 2.0, 3.0])
    assert three["mean"] == pytest.approx(2.0) and three["n"] == 3
    assert three["ci95"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)  # t_{0.975, 2} · s / √n, s = 1
    one = mean_ci([0.5, None])
    assert one == {"mean": 0.5, "ci95": None, "n": 1, "values": [0.5]}


def test_plan_runs_mtl_once_per_split_and_shards_cover_it():
    from l2emg.bench import plan, shard_runs

    planned = plan(["mtl", "seqlora"], ["unseen", "mixed"], [1, 2, 3])
    assert [p.name for p in planned if p.method == "mtl"] == ["mtl-unseen-o1", "mtl-mixed-o1"]
    assert len(planned) == 2 * (1 + 3)
    own1, _ = shard_runs(planned, (1, 2))
    own2, _ = shard_runs(planned, (2, 2))
    assert not set(own1) & set(own2) and set(own1) | set(own2) == set(planned)


def test_paper_table_is_transcribed():
    from l2emg.eval.paper_table2 import PAPER_TABLE2, paper_value

    assert paper_value("unseen", "esmoe", "AF") == 1.89 and paper_value("mixed", "esmoe", "FR") == -3.03
    assert paper_value("unseen", "mtl", "FR") is None
    assert set(PAPER_TABLE2["unseen"]) == set(PAPER_TABLE2["mixed"])


@pytest.mark.parametrize("args, words", [
    (["--methods", "seqlora,nope"], "unknown method 'nope'"),
    (["--shard", "3/2"], "shard 3/2"),
    (["--shard", "x"], "expected k/n"),
    (["--orders", "1,4"], "unknown order 4"),
    (["--orders", "one"], "comma-separated numbers"),
    (["--splits", "unseen,sideways"], "unknown split 'sideways'"),
])
def test_bad_arguments_are_one_line_errors(args, words, tmp_path, capsys):
    from l2emg.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--profile", "tiny", "--run-dir", str(tmp_path / "run"), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and words in err and "\n" not in err
    assert not (tmp_path / "run").exists()  # refused before any work


def test_bench_end_to_end_then_reuses_everything(tiny_run_copy, tiny_config):
    import json

    from l2emg.bench import bench
    from l2emg.runs import RunDir

    config = _short(tiny_config)
    first = bench(tiny_run_copy, config, ["seqlora", "esmoe"], ["unseen", "mixed"], [1, 2, 3], progress=False)
    assert len(first.planned) == 12 and sorted(first.trained) == sorted(p.name for p in first.planned)
    run = RunDir(tiny_run_copy)
    assert first.table == run.bench_table_path
    for path in (run.bench_table_path, run.bench_json_path, run.bench_figure4_path):
        assert path.exists()
    for split in ("unseen", "mixed"):
        for method in ("seqlora", "esmoe"):
            assert run.bench_figure3_path(split, method).stat().st_size > 0
    table = json.loads(run.bench_json_path.read_text())
    for split in ("unseen", "mixed"):
        for method in ("seqlora", "esmoe"):
            cell = table["cells"][split][method]
            assert cell["runs"] == [f"{method}-{split}-o{o}" for o in (1, 2, 3)]
            for column in ("AF", "AR", "AD", "AMM", "AWF", "FR", "transfer_f1", "transfer_top1"):
                assert {"mean", "ci95", "n", "values"} <= set(cell[column])
            assert cell["AF"]["mean"] is not None
            assert cell["AF"]["paper"] is not None
    # the tiny mixed subsets have test motions (one has a single one, no FID): a t interval over the orders
    af = table["cells"]["mixed"]["esmoe"]["AF"]
    assert af["n"] >= 2 and af["ci95"] is not None and f"{af['mean']:.2f} ± {af['ci95']:.2f}" in run.bench_table_path.read_text()
    assert set(table["kendall_tau"]["mixed"]) == {"AF", "AR", "AWF", "FR"}
    # what each run took, from its step records: every run here trained and evaluated (seconds > 0)
    for split in ("unseen", "mixed"):
        times = table["time"][split]
        assert sorted(times) == sorted(f"{m}-{split}-o{o}" for m in ("seqlora", "esmoe") for o in (1, 2, 3))
        assert all(t["train_s"] > 0 and t["eval_s"] > 0 and t["threads"] >= 1 for t in times.values())
    text = run.bench_table_path.read_text()
    assert text.count("Time: 6 method runs") == 2 and "(6 of 6 runs record it)" in text
    assert "## Unseen split" in text and "## Mixed split" in text and "Kendall τ" in text and "**" in text
    assert "transfer F1" in text and "figure3_fid_mixed_esmoe.png" in text and "figure4.png" in text
    # Figure 4: rows = 3 captions, columns = the 2 methods, as keyframe strips and animated
    animation = run.bench_figure4_animation_path(config.preview.format)
    assert f"({animation.name})" in text and table["figures"][-2:] == ["figure4.png", animation.name]
    import imageio.v3 as iio

    frames = iio.imread(animation, index=None)
    assert frames.ndim == 4 and len(frames) > 1 and frames.shape[1] > frames.shape[2]  # 3 rows of 2 square panels

    before = _files(run.methods_dir)
    second = bench(tiny_run_copy, config, ["seqlora", "esmoe"], ["unseen", "mixed"], [1, 2, 3], progress=False)
    assert second.trained == [] and len(second.reused) == 12
    assert _files(run.methods_dir) == before  # finished method runs are only read

    # A method run that learned a scenario after its stream (`l2emg learn`) has no Table-2 row of its stream.
    from l2emg.errors import ConfigError

    (run.methods_dir / "esmoe-unseen-o2" / "learned.json").write_text('[{"scenario": "X", "step": 3}]')
    with pytest.raises(ConfigError, match="learned scenarios"):
        bench(tiny_run_copy, config, ["seqlora", "esmoe"], ["unseen", "mixed"], [1, 2, 3], progress=False)


def test_two_shard_workers_train_each_method_run_once(tiny_run_copy):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "400"}
    sets = [a for s in SHORT for a in ("--set", s)]
    cmd = [sys.executable, "-m", "l2emg.cli", "bench", "--profile", "tiny", "--run-dir", str(tiny_run_copy),
           "--methods", "seqlora,esmoe", "--splits", "mixed", "--orders", "1,2", "--no-progress", *sets]
    workers = [subprocess.Popen([*cmd, "--shard", f"{k}/2"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for k in (1, 2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    for worker, (_out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
    trained = [next(line for line in out.splitlines() if line.startswith("trained: "))[len("trained: "):]
               for out, _ in outputs]
    lists = [[n for n in t.split(", ") if n != "none"] for t in trained]
    planned = {f"{m}-mixed-o{o}" for m in ("seqlora", "esmoe") for o in (1, 2)}
    assert not set(lists[0]) & set(lists[1])
    assert sorted(lists[0] + lists[1]) == sorted(planned)
    # each method run started training exactly once over both workers (the trainer announces it)
    log = "".join(err for _, err in outputs)
    for name in planned:
        assert log.count(f"{name}: 2 steps on") == 1, log[-3000:]
    assert (tiny_run_copy / "bench" / "table2.md").exists()  # written by whichever worker finished last
    # one overall line per started run and at the end: runs finished / planned, elapsed, estimate
    assert "bench 1/2: 0/4 method runs finished, 0:00:00 elapsed" in log
    assert "4/4 method runs finished" in log
    assert "left (from 1 run(s) trained here)" in log


def test_dry_run_estimate_comes_from_measured_costs():
    from l2emg.bench import estimate_costs, plan

    def run(core, train):
        return {"core_seconds": core, "phases": {"forward": train / 2, "backward": train / 2, "generation": core - train}}

    profile = {"runs": [{"method": "seqlora", "details": {"after": run(1000.0, 600.0)}},
                        {"method": "esmoe", "details": {"after": run(1200.0, 700.0)}},
                        {"method": "mtl", "details": {"after": run(300.0, 250.0)}}]}
    ratios = {"training": {"lwf": {"ratio_vs_seqlora": 1.5}}}
    planned = plan(["mtl", "seqlora", "esmoe", "esmoe_wo_cged", "lwf", "olora"], ["unseen", "mixed"], [1, 2, 3])
    costs = {(e.run.method, e.run.split, e.run.order): e.core_seconds for e in estimate_costs(planned, profile, ratios)}
    assert len(costs) == 2 * (1 + 5 * 3)
    assert costs[("mtl", "mixed", 1)] == 300.0 and costs[("esmoe_wo_cged", "unseen", 2)] == 1200.0
    assert costs[("lwf", "unseen", 1)] == 1000.0 + 600.0 * 0.5  # SeqLoRA's run, training scaled by 1.5
    assert costs[("olora", "mixed", 3)] == 1000.0  # nothing measured: as SeqLoRA
    with pytest.raises(ConfigError, match="seqlora"):
        estimate_costs(planned, {"runs": []}, ratios)
