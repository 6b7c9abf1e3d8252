"""`l2emg bench`: the plan, the statistics, the whole table on the tiny run (table2.md, table2.json and its
schema, --export), one Table-2 row drawn alike by its four writers, shard workers, bad arguments."""

from __future__ import annotations

import json
import math
import os
import shutil
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
    # --all-orders: the other methods run the first order only
    some = plan(["mtl", "seqlora", "lwf"], ["unseen"], [1, 2, 3], all_orders=["mtl", "seqlora"])
    assert [p.name for p in some] == ["mtl-unseen-o1", "seqlora-unseen-o1", "seqlora-unseen-o2", "seqlora-unseen-o3",
                                      "lwf-unseen-o1"]


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
    (["--methods", "seqlora", "--all-orders", "esmoe"], "--all-orders esmoe: not among the methods"),
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
    _check_table2_schema(table, ["seqlora", "esmoe"], ["unseen", "mixed"], [1, 2, 3])
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
        assert all(t["train_cpu_s"] > 0 and t["eval_cpu_s"] > 0 for t in times.values())  # CPU seconds recorded
    text = run.bench_table_path.read_text()
    assert text.count("Time: 6 method runs") == 2 and "(6 of 6 runs record it)" in text
    assert text.count("core-hours of CPU (main processes)") == 2
    assert "`train.eval_cells: needed`" in text  # the protocol line names the cells scored
    assert "## Unseen split" in text and "## Mixed split" in text and "Kendall τ" in text and "**" in text
    assert "transfer F1" in text and "figure3_fid_mixed_esmoe.png" in text and "figure4.png" in text
    # Figure 4: rows = 3 captions, columns = the 2 methods, as keyframe strips and animated
    animation = run.bench_figure4_animation_path(config.preview.format)
    assert f"({animation.name})" in text and table["figures"][-2:] == ["figure4.png", animation.name]
    import imageio.v3 as iio

    frames = iio.imread(animation, index=None)
    assert frames.ndim == 4 and len(frames) > 1 and frames.shape[1] > frames.shape[2]  # 3 rows of 2 square panels

    before = _files(run.methods_dir)
    export = tiny_run_copy.parent / "results" / "table2.json"
    second = bench(tiny_run_copy, config, ["seqlora", "esmoe"], ["unseen", "mixed"], [1, 2, 3], progress=False,
                   export=export)
    assert second.trained == [] and len(second.reused) == 12
    assert _files(run.methods_dir) == before  # finished method runs are only read
    assert second.exported == export and export.read_bytes() == run.bench_json_path.read_bytes()  # --export

    # A method run that learned a scenario after its stream (`l2emg learn`) has no Table-2 row of its stream.
    from l2emg.errors import ConfigError

    (run.methods_dir / "esmoe-unseen-o2" / "learned.json").write_text('[{"scenario": "X", "step": 3}]')
    with pytest.raises(ConfigError, match="learned scenarios"):
        bench(tiny_run_copy, config, ["seqlora", "esmoe"], ["unseen", "mixed"], [1, 2, 3], progress=False)


def test_a_bench_over_two_sessions_reads_the_first_ones_archived_runs(prepared_tiny_run, tiny_config, tmp_path):
    """Session 1 trains two runs and archives their records; session 2, in a fresh run folder, trains
    only the third, draws the same rows for the archived ones and names them; an archived run with other
    settings is refused, naming its config."""
    import json

    from l2emg.bench import bench
    from l2emg.errors import ConfigError
    from l2emg.runs import RunDir

    config, archive = _short(tiny_config), tmp_path / "table2_runs"
    first_dir, second_dir = tmp_path / "session1", tmp_path / "session2"
    shutil.copytree(prepared_tiny_run, first_dir)
    shutil.copytree(prepared_tiny_run, second_dir)
    first = bench(first_dir, config, ["mtl", "seqlora"], ["unseen"], [1], progress=False, archive=archive)
    assert sorted(first.trained) == ["mtl-unseen-o1", "seqlora-unseen-o1"] and first.archived == []
    assert sorted(p.name for p in archive.iterdir()) == ["mtl-unseen-o1", "seqlora-unseen-o1", "stages"]
    assert not list((archive / "mtl-unseen-o1").rglob("*.safetensors"))  # records only, no checkpoints

    second = bench(second_dir, config, ["mtl", "seqlora", "esmoe"], ["unseen"], [1], progress=False, archive=archive)
    assert second.trained == ["esmoe-unseen-o1"] and sorted(second.archived) == ["mtl-unseen-o1", "seqlora-unseen-o1"]
    assert not RunDir(second_dir).method_run("seqlora", "unseen", 1).path.exists()  # nothing trained for it
    assert (archive / "esmoe-unseen-o1" / "results.json").exists()  # the run trained here is archived too
    one = json.loads(RunDir(first_dir).bench_json_path.read_text())
    two = json.loads(RunDir(second_dir).bench_json_path.read_text())
    rows = {(r["method"], r.get("order")): r for r in two["rows"]}
    for row in one["rows"]:
        assert rows[(row["method"], row.get("order"))] == row  # the archived runs' rows, unchanged
    assert two["archived"] == ["mtl-unseen-o1", "seqlora-unseen-o1"] and one["archived"] == []
    assert "2 of the method runs were read from archived records" in RunDir(second_dir).bench_table_path.read_text()
    assert two["time"]["unseen"]["seqlora-unseen-o1"] == one["time"]["unseen"]["seqlora-unseen-o1"]
    # both sessions copied one stage build: one group, recorded by every run, and no warning line
    assert [sorted(b["runs"]) for b in two["stages"]] == [["esmoe-unseen-o1", "mtl-unseen-o1", "seqlora-unseen-o1"]]
    assert two["stages"][0]["stages"] == RunDir(second_dir).stage_fingerprint()
    assert "shared stages" not in RunDir(second_dir).bench_table_path.read_text()
    # an archived run trained on another build of the stages (another session's tokenizer) is named
    progress = archive / "seqlora-unseen-o1" / "progress.json"
    record = json.loads(progress.read_text())
    progress.write_text(json.dumps({**record, "stages": {**record["stages"], "tokenizer": "0" * 16}}))
    bench(second_dir, config, ["mtl", "seqlora", "esmoe"], ["unseen"], [1], progress=False, archive=archive)
    builds = json.loads(RunDir(second_dir).bench_json_path.read_text())["stages"]
    assert sorted(len(b["runs"]) for b in builds) == [1, 2]
    assert "2 runs on build 1 (tokenizer" in RunDir(second_dir).bench_table_path.read_text()

    # session 1 archived its stage build; a session whose run folder holds only the data restores it
    # (nothing rebuilt: the same fingerprint) and its table equals session 2's
    build = json.loads((archive / "stages" / "build.json").read_text())
    assert build["fingerprint"] == RunDir(first_dir).stage_fingerprint()
    assert not list((archive / "stages").rglob("train_state.safetensors"))  # the build, not its optimizer
    fresh = RunDir(tmp_path / "session4")
    fresh.path.mkdir()
    shutil.copytree(prepared_tiny_run / "data", fresh.data_dir)
    shutil.copy(prepared_tiny_run / "config.yaml", fresh.config_path)
    data_stage = RunDir(prepared_tiny_run).manifest()["stages"]["data"]
    fresh.manifest_path.write_text(json.dumps({"stages": {"data": data_stage}}))
    restored = bench(fresh.path, config, ["mtl", "seqlora", "esmoe"], ["unseen"], [1], progress=False, archive=archive)
    assert restored.trained == [] and fresh.stage_fingerprint() == build["fingerprint"]
    assert fresh.stage_info("tokenizer")["restored_from"] == str(archive / "stages")
    assert not fresh.backbone_dir.exists()  # the embedded backbone is not needed once the lm is built
    table = json.loads(fresh.bench_json_path.read_text())
    assert table["rows"] == json.loads(RunDir(second_dir).bench_json_path.read_text())["rows"]

    other = config.model_copy(update={"train": config.train.model_copy(update={"lr": config.train.lr * 2})})
    third_dir = tmp_path / "session3"
    shutil.copytree(prepared_tiny_run, third_dir)
    with pytest.raises(ConfigError, match=r"seqlora-unseen-o1/config.yaml: archived with another config .*train\.lr"):
        bench(third_dir, other, ["seqlora"], ["unseen"], [1], progress=False, archive=archive)


# table2.json as outside checks read it: these fields exactly in every row (any others at the top level)
TABLE2_METRICS = [f for c in ("AF", "AR", "AD", "AMM", "AWF", "FR") for f in (c, f"{c}_ci95")]
# AWF in two parts, FID pooled over scenarios
TABLE2_PARTS = [f for c in ("AWF_trained", "AWF_heldout", "AF_pooled") for f in (c, f"{c}_ci95")]
TABLE2_ROW = {"method", "split", *TABLE2_METRICS, "transfer_f1", "transfer_top1", *TABLE2_PARTS, "profile", "backbone"}


def _check_table2_schema(table, methods, splits, orders):
    import datetime

    from l2emg.eval.table2 import schema_problems

    assert {"rows", "kendall_tau", "machine", "date"} <= set(table)
    assert schema_problems(table) == []
    averaged = [r for r in table["rows"] if "orders" in r]
    single = [r for r in table["rows"] if "order" in r]
    assert len(averaged) + len(single) == len(table["rows"])
    assert sorted((r["split"], r["method"]) for r in averaged) == sorted((s, m) for s in splits for m in methods)
    assert sorted((r["split"], r["method"], r["order"]) for r in single) == sorted(
        (s, m, o) for s in splits for m in methods for o in orders)
    for row in averaged:
        assert set(row) == TABLE2_ROW | {"orders"} and row["orders"] == orders
        cell = table["cells"][row["split"]][row["method"]]
        for column in ("AF", "AR", "AD", "AMM", "AWF", "FR"):
            assert row[column] == cell[column]["mean"] and row[f"{column}_ci95"] == cell[column]["ci95"]
        assert row["transfer_f1"] == cell["transfer_f1"]["mean"]
    for row in single:
        assert set(row) == TABLE2_ROW | {"order"}
    for row in table["rows"]:
        assert row["profile"] == "tiny" and row["backbone"].startswith("llama-") and row["backbone"].endswith("m")
        assert all(row[f] is None or isinstance(row[f], float)
                   for f in [*TABLE2_METRICS, "transfer_f1", "transfer_top1", *TABLE2_PARTS])
    assert set(table["kendall_tau"]) == set(splits)
    assert table["machine"]["cores"] >= 1 and "cpu" in table["machine"]
    assert datetime.datetime.fromisoformat(table["date"]).tzinfo is not None
    assert [p["eval_protocol"] for p in table["protocol"]] == ["redrawn"]
    assert [p["eval_cells"] for p in table["protocol"]] == ["needed"]


def _stream_results(method: str, split: str, order: int) -> dict:
    """results.json of a two-scenario stream (the trainer's format), with the emotion-transfer cells."""
    scenarios = ["Daily Life", "Sports"]
    top1 = [[0.5, 0.1], [0.31, 0.6]]
    steps = []
    for i, name in enumerate(scenarios):
        cells = {other: {"fid": {"mean": 2.0 + i - 0.5 * j, "ci95": 0.2}, "r_precision_top1": {"mean": top1[i][j], "ci95": 0.02},
                         "diversity": {"mean": 9.1 + j, "ci95": 0.1}, "multimodality": {"mean": 1.2, "ci95": None},
                         "emotion_f1": {"mean": 0.35 + 0.1 * j, "ci95": 0.03}}
                 for j, other in enumerate(scenarios)}
        steps.append({"scenario": name, "results": cells, "train": {"seconds": 1.0}, "eval_seconds": 1.0})
    steps[-1]["transfer"] = {s: {"emotion_f1": {"mean": 0.2 + 0.1 * j}, "r_precision_top1": {"mean": 0.4}}
                             for j, s in enumerate(scenarios)}
    return {"method": method, "split": split, "order": order, "scenarios": scenarios, "steps": steps}


def test_the_four_table2_writers_draw_the_same_row(tmp_path, tiny_config):
    """eval.report.table2_row, a method run's report.md, the studio's Report tab and the bench's table
    (its Markdown and its table2.json rows) draw one method run's metrics alike."""
    import re

    from l2emg.bench import PlannedRun
    from l2emg.bench_report import method_runs
    from l2emg.continual.report import method_label, write_report
    from l2emg.eval import table2
    from l2emg.eval.report import table2_header, table2_row
    from l2emg.runs import RunDir
    from l2emg.studio.report import table2_markdown
    from l2emg.utils.io import save_json

    run = RunDir(tmp_path / "run")
    method_run = run.method_run("seqlora", "unseen", 1)
    results = _stream_results("seqlora", "unseen", 1)
    method_run.path.mkdir(parents=True)
    save_json(method_run.results_path, results)
    metrics = write_report(method_run, results, tiny_config, [])  # report.md + metrics.json
    save_json(method_run.adapter_path, {"method": "seqlora", "checkpoint": "checkpoints/step_02"})  # finished
    label = method_label("seqlora")

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("|").split("|")][1:]

    expected = table2_row(label, metrics)
    assert cells(expected) == ["2.75 ± 0.14", "0.455 ± 0.014", "9.60 ± 0.07", "1.20", "0.400 ± 0.021", "19.00 ± 2.83"]
    report = method_run.report_path.read_text().splitlines()
    assert table2_header().splitlines()[0] in report and expected in report
    studio = table2_markdown(run).splitlines()
    assert studio[:2] == table2_header().splitlines()
    assert cells(next(line for line in studio if line.startswith(f"| {label} ("))) == cells(expected)

    bench_table = table2.collect(method_runs(run, [PlannedRun("seqlora", "unseen", 1)]))
    bench_md = table2.split_markdown(bench_table, "unseen", {"seqlora": label}).splitlines()
    assert bench_md[0] == table2_header().splitlines()[0][:-1] + "| transfer F1↑ | transfer top-1↑ |"
    bench_cells = cells(next(line for line in bench_md if line.startswith(f"| {label} |")))
    # one order: ± its evaluation's own half-width, as the report; bold (the only method), the paper's value
    # beside (bold too)
    plain = [re.sub(r" \(\S+\)$", "", c).replace("**", "") for c in bench_cells]
    assert plain[:6] == cells(expected) and plain[6:] == ["0.250", "0.400"]
    assert bench_cells[0] == "**2.75 ± 0.14** (**3.58**)"
    rows = table2.json_rows(bench_table, profile="tiny", backbone="llama-4m")
    assert [sorted(r) for r in rows] == [sorted(TABLE2_ROW | {"orders"}), sorted(TABLE2_ROW | {"order"})]
    same = table2.json_row("seqlora", "unseen", table2.values_from_metrics(metrics), order=1, profile="tiny",
                           backbone="llama-4m")
    assert rows[1] == same and rows[0]["FR"] == same["FR"] == pytest.approx(19.0)
    assert rows[0]["FR_ci95"] == same["FR_ci95"] == pytest.approx(2.83, abs=0.005)
    assert table2.markdown_row(label, rows[1]) == expected  # a per-order JSON row draws as the report's row
    assert table2.schema_problems({"rows": rows, "kendall_tau": {}, "machine": {}, "date": "x"}) == []
    assert table2.schema_problems({"rows": [{**rows[0], "extra": 1}]}) == [
        "no 'kendall_tau'", "no 'machine'", "no 'date'", "rows[0]: fields ['extra'] differ from the schema"]


def test_one_order_rows_are_marked_beside_rows_over_orders(tmp_path, tiny_config):
    """--all-orders: a table mixing methods run on three orders and on one marks the one-order rows (their
    ± is their evaluation's) and keeps the interval over orders for the others."""
    import shutil

    from l2emg.bench import PlannedRun
    from l2emg.bench_report import method_runs
    from l2emg.continual.report import write_report
    from l2emg.eval import table2
    from l2emg.runs import RunDir
    from l2emg.utils.io import save_json

    run = RunDir(tmp_path / "run")
    first = run.method_run("seqlora", "unseen", 1)
    first.path.mkdir(parents=True)
    results = _stream_results("seqlora", "unseen", 1)
    save_json(first.results_path, results)
    metrics = write_report(first, results, tiny_config, [])
    save_json(first.adapter_path, {"method": "seqlora", "checkpoint": "checkpoints/step_02"})
    planned = [PlannedRun("seqlora", "unseen", 1), PlannedRun("seqlora", "unseen", 2), PlannedRun("lwf", "unseen", 1)]
    for p in planned[1:]:
        shutil.copytree(first.path, run.method_run(p.method, p.split, p.order).path)
    table = table2.collect(method_runs(run, planned))
    assert table.cells["unseen"]["seqlora"]["AF"]["ci95"] == 0.0  # two equal orders: no spread
    assert table.cells["unseen"]["lwf"]["AF"]["ci95"] == pytest.approx(metrics["AF_ci95"])
    text = table2.split_markdown(table, "unseen", {"seqlora": "SeqLoRA", "lwf": "LwF"})
    assert "| LwF† |" in text and "| SeqLoRA |" in text and "SeqLoRA†" not in text
    alone = table2.collect(method_runs(run, planned[2:]))  # every row one order: nothing to mark
    assert "†" not in table2.split_markdown(alone, "unseen", {"lwf": "LwF"})


def test_backbone_name(tmp_path, tiny_config):
    from l2emg.bench_report import backbone_name
    from l2emg.runs import RunDir

    run = RunDir(tmp_path / "run")
    assert backbone_name(run, tiny_config) == "llama-embedded"  # no backbone stage recorded
    run.path.mkdir()
    run.mark_done("backbone", parameters=4_190_000)
    assert backbone_name(run, tiny_config) == "llama-4m"
    run.mark_done("backbone", parameters=96_000)
    assert backbone_name(run, tiny_config) == "llama-0.1m"
    lm = tiny_config.lm.model_copy(update={"backbone": "models/Llama-2-7b-hf"})
    assert backbone_name(run, tiny_config.model_copy(update={"lm": lm})) == "Llama-2-7b-hf"
    lm = tiny_config.lm.model_copy(update={"backbone": "smollm2-135m"})
    assert backbone_name(run, tiny_config.model_copy(update={"lm": lm})) == "smollm2-135m"


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


def test_dry_run_estimate_comes_from_measured_costs(tmp_path):
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
    # finished runs in the run folder that recorded their CPU seconds: their mean, for every run of the method
    from l2emg.runs import RunDir
    from l2emg.utils.io import save_json

    run = RunDir(tmp_path / "run")
    for order, (train, evaluation) in ((1, (100.0, 200.0)), (2, (300.0, 400.0))):
        method_run = run.method_run("lwf", "unseen", order)
        method_run.path.mkdir(parents=True)
        save_json(method_run.results_path, {"steps": [{"train": {"seconds": 9.0, "cpu_seconds": train / 2},
                                                       "eval_seconds": 9.0, "eval_cpu_seconds": evaluation / 2}] * 2})
        save_json(method_run.adapter_path, {"method": "lwf"})
        method_run.report_path.write_text("report")
    old = run.method_run("olora", "unseen", 1)  # finished before CPU seconds were recorded: not used
    old.path.mkdir(parents=True)
    save_json(old.results_path, {"steps": [{"train": {"seconds": 9.0}, "eval_seconds": 9.0}]})
    save_json(old.adapter_path, {"method": "olora"})
    old.report_path.write_text("report")
    estimates = {(e.run.method, e.run.split, e.run.order): e for e in estimate_costs(planned, profile, ratios, run)}
    assert estimates[("lwf", "mixed", 3)].core_seconds == 500.0 and "recorded (2 runs" in estimates[("lwf", "mixed", 3)].source
    assert estimates[("lwf", "unseen", 1)].finished and not estimates[("lwf", "unseen", 3)].finished
    # a method without recorded runs: its estimate scaled by the recorded methods' recorded / estimated
    # (lwf: 500 recorded against 1300 estimated)
    assert estimates[("olora", "mixed", 3)].core_seconds == pytest.approx(1000.0 * 500.0 / 1300.0)
    assert "recorded / estimated here" in estimates[("olora", "mixed", 3)].source
    with pytest.raises(ConfigError, match="seqlora"):
        estimate_costs(planned, {"runs": []}, ratios)


def test_dry_run_says_when_the_costs_were_measured_on_another_profile(tmp_path):
    """Costs measured on the default profile (the 4 M model) are not a SmolLM2 plan's: the dry run says so."""
    from typer.testing import CliRunner

    from l2emg.cli import app

    def run(profile):
        return {"profile": profile, "core_seconds": 600.0, "phases": {"forward": 200.0, "backward": 200.0}}

    costs = tmp_path / "costs.json"
    costs.write_text(json.dumps({"machine": {"cpu": "test"}, "evaluation": {"eval_protocol": "redrawn",
                                 "eval_cells": "needed"}, "runs": [{"method": "seqlora", "details": {"after": run("default")}}]}))
    args = ["bench", "--dry-run", "--methods", "seqlora", "--splits", "unseen", "--orders", "1",
            "--run-dir", str(tmp_path / "run"), "--costs", str(costs)]
    outputs = {name: " ".join(CliRunner().invoke(app, [*args, "--profile", name]).output.split())
               for name in ("default", "smollm2")}
    assert "10.0" in outputs["default"] and "measured profile" not in outputs["default"]
    assert "measured profile default; this plan runs profile smollm2" in outputs["smollm2"]


def test_figure4_draws_the_split_where_the_run_folder_holds_the_most_continual_methods():
    """A bench over archived runs hands Figure 4 only the runs of its own folder: the figure goes to the
    split with the most continual methods there, each on its lowest order, named when orders differ."""
    from l2emg.bench import PlannedRun
    from l2emg.bench_report import figure4_columns

    here = [PlannedRun("epi", "unseen", 1), PlannedRun("mtl", "mixed", 1), PlannedRun("seqlora", "mixed", 1),
            PlannedRun("esmoe", "mixed", 3), PlannedRun("esmoe", "mixed", 2)]
    chosen, titles = figure4_columns(here)
    assert [(p.method, p.order) for p in chosen] == [("seqlora", 1), ("esmoe", 2)]  # MTL is not continual
    assert titles == {"seqlora": "SeqLoRA (o1)", "esmoe": "ES-MoE (o2)"}
    chosen, titles = figure4_columns(here[:1] + [PlannedRun("seqlora", "mixed", 1)])
    assert [p.name for p in chosen] == ["epi-unseen-o1"] and titles == {"epi": "EPI"}  # a tie: the first split
    assert figure4_columns([PlannedRun("mtl", "unseen", 1)]) == ([], {})


def test_a_stage_build_is_not_restored_onto_other_data_or_settings(prepared_tiny_run, tiny_config, tmp_path):
    """restore_stages names why it copies nothing: no build archived, other settings, other data."""
    import json

    from l2emg.pipeline import restore_stages
    from l2emg.runs import BenchArchive, RunDir

    archive = BenchArchive(tmp_path / "archive")
    run = RunDir(tmp_path / "run")
    shutil.copytree(prepared_tiny_run / "data", run.data_dir)
    shutil.copy(prepared_tiny_run / "config.yaml", run.config_path)
    run.manifest_path.write_text(json.dumps({"stages": {"data": RunDir(prepared_tiny_run).manifest()["stages"]["data"]}}))
    assert "no stage build archived yet" in restore_stages(run, tiny_config, archive)
    assert archive.save_stages(RunDir(prepared_tiny_run)) and not archive.save_stages(RunDir(prepared_tiny_run))
    other = tiny_config.model_copy(update={"tokenizer": tiny_config.tokenizer.model_copy(update={"iterations": 7})})
    assert "archived with other settings (tokenizer.iterations" in restore_stages(run, other, archive)
    first = sorted((run.data_dir / "new_joint_vecs").glob("*.npy"))[0]
    first.write_bytes(first.read_bytes()[:-4] + b"\0\0\0\0")
    assert "archived for other data" in restore_stages(run, tiny_config, archive)
    assert not run.tokenizer_dir.exists() and list(run.manifest()["stages"]) == ["data"]
