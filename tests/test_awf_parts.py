"""AWF in two parts (trained / held-out (scenario, emotion) pairs) on hand-made inputs: the restricted
emotion F1 of one evaluation with its repeats, AWF_trained / AWF_heldout and their 95 % CIs from the
performance matrices, None without held-out pairs or for older results, and the Table-2 writers."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from l2emg.eval.continual_metrics import average_over_orders, continual_metrics, matrices_from_results
from l2emg.eval.evaluate import evaluate_motions

EMOTIONS = ("neutral", "happy", "sad", "angry")
PRED_SLOT = 10  # feature [0, PRED_SLOT] of a fake motion: the emotion the fake evaluator predicts


class FakeEvaluator:
    """Embeds a motion as its first frame's first 3 features and predicts the emotion written in it."""

    emotions = EMOTIONS
    config = SimpleNamespace(eval_repeats=4, r_precision_batch=32, diversity_pairs=10, mm_pairs=2, mm_max_texts=10)

    def embed_motion(self, motions, names=None):
        return np.stack([np.asarray(m, dtype=np.float64)[0, :3] for m in motions])

    def embed_motion_and_emotion(self, motions, names=None):
        probs = np.stack([np.eye(len(EMOTIONS))[int(np.asarray(m)[0, PRED_SLOT])] for m in motions])
        return self.embed_motion(motions), probs

    def embed_text(self, texts):
        return np.stack([np.full(3, float(len(t))) for t in texts])


class FakeDataset:
    """Test motions (id, scenario, emotion); `holdout` goes into its metadata."""

    root = "fake"

    def __init__(self, items, holdout):
        rng = np.random.default_rng(0)
        self.records = {i: SimpleNamespace(motion_id=i, split="test", scenario=s, emotion=e,
                                           captions=[SimpleNamespace(text=f"a person, {e}, {i}")])
                        for i, s, e in items}
        self.real = {i: rng.standard_normal((8, 263)) for i, _s, _e in items}
        self.metadata = {"holdout_pairs": holdout} if holdout is not None else {}

    def by_id(self, motion_id):
        return self.records[motion_id]

    def features(self, motion_id):
        return self.real[motion_id]


# id, scenario, emotion (intended), prediction of generation 0, of generation 1
MOTIONS = [("a", "Sports", "happy", "happy", "happy"),
           ("b", "Sports", "happy", "sad", "happy"),
           ("c", "Sports", "sad", "sad", "sad"),  # held out
           ("d", "Sports", "sad", "happy", "happy"),  # held out
           ("e", "Sports", "angry", "angry", "angry")]


def _generated():
    rng = np.random.default_rng(1)
    out = {}
    for motion_id, *_rest, first, second in MOTIONS:
        generations = []
        for predicted in (first, second):
            g = rng.standard_normal((8, 263))
            g[0, PRED_SLOT] = EMOTIONS.index(predicted)
            generations.append(g)
        out[motion_id] = generations
    return out


def _evaluate(holdout):
    dataset = FakeDataset([(i, s, e) for i, s, e, *_ in MOTIONS], holdout)
    return evaluate_motions(FakeEvaluator(), _generated(), dataset, "test", repeats=4, seed=0)


def test_evaluation_restricts_emotion_f1_to_trained_and_heldout_pairs():
    result = _evaluate([["Sports", "sad"]])
    m = result["metrics"]
    # Repeats 0, 2 use generation 0, repeats 1, 3 generation 1 (weighted F1 over the intended classes):
    #   trained a, b, e: gen 0 happy F1 2/3 (support 2), angry 1 -> 7/9; gen 1 all right -> 1
    #   held-out c, d:   gen 0 and gen 1 sad P 1, R 1/2 -> 2/3
    #   all five:        gen 0 happy 1/2, sad 1/2, angry 1 -> 3/5; gen 1 happy P 2/3 R 1 -> 4/5, sad 2/3, angry 1
    #                    -> (2·4/5 + 2·2/3 + 1) / 5
    trained = [7 / 9, 1.0, 7 / 9, 1.0]
    assert m["emotion_f1_trained"]["mean"] == pytest.approx(np.mean(trained))
    assert m["emotion_f1_trained"]["ci95"] == pytest.approx(1.96 * np.std(trained) / 2)  # 1.96·σ/√R, R = 4
    assert m["emotion_f1_trained"]["repeats"] == 4
    assert m["emotion_f1_heldout"]["mean"] == pytest.approx(2 / 3)
    assert m["emotion_f1_heldout"]["ci95"] == pytest.approx(0.0)
    assert m["emotion_f1"]["mean"] == pytest.approx(np.mean([3 / 5, (8 / 5 + 4 / 3 + 1) / 5] * 2))
    assert result["transfer"]["emotion_f1"] == m["emotion_f1_heldout"]  # the same measure
    assert result["transfer"]["num_motions"] == 2


def test_evaluation_without_heldout_pairs():
    result = _evaluate(None)
    m = result["metrics"]
    assert m["emotion_f1_heldout"] is None and result["transfer"] is None
    assert m["emotion_f1_trained"] == m["emotion_f1"]  # every motion is of a trained pair


# -- the performance matrices -----------------------------------------------------------------------
def _results(heldout_last: list[float | None], with_parts: bool = True, method: str = "m") -> dict:
    """Three scenarios; the last step's emotion F1 parts given, earlier steps' arbitrary."""
    scenarios = ["A", "B", "C"]
    trained_last = [0.6, 0.5, 0.4]
    steps = []
    for i, name in enumerate(scenarios):
        cells = {}
        for j, other in enumerate(scenarios):
            last = i == len(scenarios) - 1
            cell = {"r_precision_top1": {"mean": 0.3, "ci95": 0.01}, "emotion_f1": {"mean": 0.5, "ci95": 0.02}}
            if with_parts:
                cell["emotion_f1_trained"] = {"mean": trained_last[j] if last else 0.9, "ci95": 0.03 * (j + 1)}
                h = heldout_last[j] if last else 0.1
                cell["emotion_f1_heldout"] = None if h is None else {"mean": h, "ci95": 0.04}
            cells[other] = cell
        steps.append({"scenario": name, "results": cells})
    return {"method": method, "scenarios": scenarios, "steps": steps}


def test_awf_parts_from_the_last_row():
    m = continual_metrics(matrices_from_results(_results([0.2, None, 0.3])))
    assert m["AWF"] == pytest.approx(0.5)
    assert m["AWF_trained"] == pytest.approx((0.6 + 0.5 + 0.4) / 3)
    assert m["AWF_trained_ci95"] == pytest.approx(math.sqrt(0.03**2 + 0.06**2 + 0.09**2) / 3)
    # held out: only A and C have held-out pairs
    assert m["AWF_heldout"] == pytest.approx((0.2 + 0.3) / 2)
    assert m["AWF_heldout_ci95"] == pytest.approx(math.sqrt(2 * 0.04**2) / 2)
    assert m["AWF_ci95"] == pytest.approx(math.sqrt(3 * 0.02**2) / 3)


def test_awf_heldout_none_without_heldout_pairs_and_for_old_results():
    m = continual_metrics(matrices_from_results(_results([None, None, None])))
    assert m["AWF_heldout"] is None and m["AWF_heldout_ci95"] is None
    assert m["AWF_trained"] == pytest.approx(0.5)
    old = continual_metrics(matrices_from_results(_results([None] * 3, with_parts=False)))
    assert old["AWF"] == pytest.approx(0.5)
    assert all(old[k] is None for k in ("AWF_trained", "AWF_trained_ci95", "AWF_heldout", "AWF_heldout_ci95"))


def test_awf_parts_none_where_awf_misses_a_cell():
    results = _results([0.2, None, 0.3])
    del results["steps"][-1]["results"]["B"]["emotion_f1"]
    m = continual_metrics(matrices_from_results(results))
    assert m["AWF"] is None and m["AWF_trained"] is None and m["AWF_heldout"] is None


def test_awf_parts_average_over_orders():
    runs = [continual_metrics(matrices_from_results(_results(h))) for h in ([0.2, None, 0.3], [0.4, None, 0.5])]
    avg = average_over_orders(runs)
    assert avg["AWF_heldout"] == pytest.approx(0.35) and avg["AWF_trained"] == pytest.approx(0.5)
    old = average_over_orders([runs[0], {**runs[1], "AWF_heldout": None}])
    assert old["AWF_heldout"] is None


# -- the writers ------------------------------------------------------------------------------------
def test_table2_rows_carry_the_parts_and_old_rows_still_validate():
    from l2emg.eval import table2

    metrics = continual_metrics(matrices_from_results(_results([0.2, None, 0.3])))
    values = table2.values_from_metrics(metrics)
    row = table2.json_row("m", "unseen", values, order=1, profile="tiny", backbone="llama-4m")
    assert row["AWF_heldout"] == pytest.approx(0.25) and row["AWF_trained"] == pytest.approx(0.5)
    assert row["AWF_heldout_ci95"] == pytest.approx(metrics["AWF_heldout_ci95"])
    document = {"rows": [row], "kendall_tau": {}, "machine": {}, "date": "x"}
    assert table2.schema_problems(document) == []
    old = {k: v for k, v in row.items() if k not in table2.PART_FIELDS}  # a table2.json written before
    assert table2.schema_problems({**document, "rows": [old]}) == []
    assert table2.values_from_metrics({"AWF": 0.4})["AWF_heldout"] is None
    text = table2.parts_table({"m": values}).splitlines()
    assert text[0] == "| Method | AWF↑ | AWF trained↑ | AWF held-out↑ |"
    assert text[2] == "| m | 0.500 ± 0.012 | 0.500 ± 0.037 | 0.250 ± 0.028 |"
    assert not table2.has_parts([table2.values_from_metrics({"AWF": 0.4})])


def test_run_report_shows_the_parts(tmp_path, tiny_config):
    from l2emg.continual.report import write_report
    from l2emg.runs import RunDir

    method_run = RunDir(tmp_path / "run").method_run("seqlora", "unseen", 1)
    method_run.path.mkdir(parents=True)
    results = {**_results([0.2, None, 0.3], method="seqlora"), "split": "unseen", "order": 1}
    metrics = write_report(method_run, results, tiny_config, [])
    assert metrics["AWF_heldout"] == pytest.approx(0.25)
    saved = json.loads(method_run.metrics_path.read_text())
    assert saved["AWF_trained"] == pytest.approx(0.5) and saved["AWF_heldout_ci95"] is not None
    report = method_run.report_path.read_text()
    assert "| Method | AWF↑ | AWF trained↑ | AWF held-out↑ |" in report and "0.250 ± 0.028" in report
    # joint training (one evaluation): the parts over the scenarios that have them
    joint = {**results, "joint_training": True, "steps": results["steps"][-1:]}
    metrics = write_report(method_run, joint, tiny_config, [])
    assert metrics["AWF_heldout"] == pytest.approx(0.25) and metrics["AWF_trained"] == pytest.approx(0.5)


def test_results_page_renders_the_parts_when_present(tmp_path, monkeypatch):
    import importlib.util
    from pathlib import Path

    from l2emg.eval import table2

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "results.py"
    spec = importlib.util.spec_from_file_location("bench_results_page", path)
    page = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(page)
    metrics = continual_metrics(matrices_from_results(_results([0.2, None, 0.3])))
    row = table2.json_row("seqlora", "unseen", table2.values_from_metrics(metrics), orders=[1], profile="tiny",
                          backbone="llama-4m")
    document = {"rows": [row], "kendall_tau": {}, "machine": {"cpu": "cpu"}, "date": "2025-01-01", "profile": "tiny",
                "backbone": "llama-4m"}
    (tmp_path / "table2.json").write_text(json.dumps(document))
    monkeypatch.setattr(page, "RESULTS", tmp_path)
    text = "\n".join(page.table2_section())
    assert "| Method | AWF↑ | AWF trained↑ | AWF held-out↑ |\n" in text and "| SeqLoRA | 0.500 ± 0.012 |" in text
    old = {k: v for k, v in row.items() if k not in table2.PART_FIELDS}
    (tmp_path / "table2.json").write_text(json.dumps({**document, "rows": [old]}))
    assert "AWF trained" not in "\n".join(page.table2_section())
