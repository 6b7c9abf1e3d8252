"""Continual metrics on hand-made performance matrices: AF/AR/AD/AMM/AWF on the last row, FR exactly
as the paper writes it, BWT/FWT, the results-file format, heatmaps, the Table-2 row and the CLI."""

import math

import numpy as np
import pytest
from typer.testing import CliRunner

from l2emg.cli import app
from l2emg.errors import DataError
from l2emg.eval.continual_metrics import (
    average_ci95,
    average_over_orders,
    backward_transfer,
    continual_metrics,
    final_average,
    forgetting_rate,
    forgetting_rate_ci95,
    forward_transfer,
    matrices_from_results,
)
from l2emg.eval.report import render_heatmaps, table2_header, table2_row
from l2emg.utils.io import load_json, save_json

NAN = math.nan
# Top-1 R-Precision after step i (rows) on scenario j (columns). Scenario 1 peaks after step 2
# (0.55 > 0.5), so FR must use the maximum over k = j..N-1, not the diagonal.
R = np.array([
    [0.50, 0.10, 0.10],
    [0.55, 0.60, 0.12],
    [0.30, 0.50, 0.70],
])


def test_forgetting_rate_follows_the_paper():
    # FR_3 = 1/2 [ (max(r11, r21) - r31) + (max(r22) - r32) ] = 1/2 [ (0.55-0.30) + (0.60-0.50) ]
    assert forgetting_rate(R) == pytest.approx(0.5 * ((0.55 - 0.30) + (0.60 - 0.50)))
    # No forgetting when scores only grow; negative FR when old scenarios improve afterwards.
    growing = np.array([[0.2, 0.0], [0.3, 0.4]])
    assert forgetting_rate(growing) == pytest.approx(-0.1)
    assert forgetting_rate(np.array([[0.4]])) is None
    # The upper triangle (future scenarios) never enters FR.
    upper = R.copy()
    upper[0, 1:] = NAN
    upper[1, 2] = NAN
    assert forgetting_rate(upper) == pytest.approx(forgetting_rate(R))
    missing = R.copy()
    missing[1, 0] = NAN
    assert forgetting_rate(missing) is None


def test_forgetting_rate_ci_comes_from_the_two_cells_of_each_term():
    h = np.arange(1, 10, dtype=float).reshape(3, 3) / 100  # h[i, j]
    # term 0: best earlier row of column 0 is row 1 (0.55), term 1: row 1 (0.60); both minus row 2
    expected = np.sqrt((h[1, 0] ** 2 + h[2, 0] ** 2) + (h[1, 1] ** 2 + h[2, 1] ** 2)) / 2
    assert forgetting_rate_ci95(R, h) == pytest.approx(expected)
    assert forgetting_rate_ci95(np.array([[0.4]]), np.array([[0.1]])) is None
    gap = h.copy()
    gap[2, 1] = NAN
    assert forgetting_rate_ci95(R, gap) is None


def test_averages_transfer_on_last_row():
    assert final_average(R) == pytest.approx((0.30 + 0.50 + 0.70) / 3)
    assert backward_transfer(R) == pytest.approx(((0.30 - 0.50) + (0.50 - 0.60)) / 2)
    initial = np.array([0.05, 0.05, 0.02])
    assert forward_transfer(R, initial) == pytest.approx(((0.10 - 0.05) + (0.12 - 0.02)) / 2)
    assert forward_transfer(R, None) is None
    incomplete = R.copy()
    incomplete[2, 1] = NAN
    assert final_average(incomplete) is None


def _results():
    scenarios = ["Daily Life", "Sports", "Dance"]
    fid = np.array([[1.0, 5.0, 6.0], [2.0, 1.5, 6.5], [3.0, 2.0, 1.2]])
    steps = []
    for i, name in enumerate(scenarios):
        results = {}
        for j, other in enumerate(scenarios):
            results[other] = {"fid": {"mean": fid[i, j], "ci95": 0.1}, "r_precision_top1": R[i, j],
                              "diversity": 9.0 + j, "multimodality": 1.0 + 0.1 * j, "emotion_f1": 0.3 + 0.1 * j}
        steps.append({"scenario": name, "results": results})
    initial = {s: {"r_precision_top1": 0.05} for s in scenarios}
    return {"method": "ES-MoE", "scenarios": scenarios, "initial": initial, "steps": steps}, fid


def test_results_file_to_metrics():
    results, fid = _results()
    perf = matrices_from_results(results)
    np.testing.assert_allclose(perf.matrices["fid"], fid)
    np.testing.assert_allclose(perf.matrices["r_precision_top1"], R)
    m = continual_metrics(perf)
    assert m["AF"] == pytest.approx(fid[-1].mean())
    assert m["AR"] == pytest.approx(R[-1].mean())
    assert m["AD"] == pytest.approx(10.0)
    assert m["AMM"] == pytest.approx(1.1)
    assert m["AWF"] == pytest.approx(0.4)
    assert m["FR"] == pytest.approx(forgetting_rate(R))
    assert m["FWT"] == pytest.approx(((0.10 - 0.05) + (0.12 - 0.05)) / 2) and m["fwt_reference"] == "initial"
    assert m["transfer"]["fid"]["BWT"] == pytest.approx(((3.0 - 1.0) + (2.0 - 1.5)) / 2)


def test_results_file_errors():
    results, _ = _results()
    bad = dict(results, steps=results["steps"][:2])
    with pytest.raises(DataError, match="2 steps for 3 scenarios"):
        matrices_from_results(bad, "x.json")
    bad = dict(results, steps=[dict(results["steps"][0], results={"Atlantis": {"fid": 1.0}}), *results["steps"][1:]])
    with pytest.raises(DataError, match="Atlantis"):
        matrices_from_results(bad, "x.json")
    bad = dict(results, steps=[dict(results["steps"][0], results={"Sports": {"fid": "high"}}), *results["steps"][1:]])
    with pytest.raises(DataError, match="steps\\[0\\].results.Sports.fid"):
        matrices_from_results(bad, "x.json")


def test_table2_row_and_average_over_orders():
    row = table2_row("ES-MoE", {"AF": 1.894, "AR": 0.2412, "AD": 9.74, "AMM": 1.47, "AWF": 0.34, "FR": -0.0103})
    assert row == "| ES-MoE | 1.89 | 0.241 | 9.74 | 1.47 | 0.340 | -1.03 |"
    assert table2_row("MTL", {"AF": 1.05, "AR": 0.281, "AD": 9.63, "AMM": 1.56, "AWF": 0.383, "FR": None}).endswith("| – |")
    assert table2_header().splitlines()[0] == "| Method | AF↓ | AR↑ | AD↑ | AMM↑ | AWF↑ | FR↓ |"
    runs = [{"method": "m", "AF": 1.0, "AR": 0.2, "AD": 9.0, "AMM": 1.0, "AWF": 0.3, "FR": 0.1, "BWT": 0.0, "FWT": None},
            {"method": "m", "AF": 3.0, "AR": 0.4, "AD": 9.0, "AMM": 1.0, "AWF": 0.3, "FR": 0.3, "BWT": 0.0, "FWT": None}]
    avg = average_over_orders(runs)
    assert avg["AF"] == 2.0 and avg["AF_std"] == 1.0 and avg["FR"] == pytest.approx(0.2) and avg["FWT"] is None


def test_heatmaps_written(tmp_path):
    results, _ = _results()
    perf = matrices_from_results(results)
    perf.matrices["r_precision_top1"][0, 2] = NAN  # a cell never evaluated is drawn grey
    paths = render_heatmaps(perf, tmp_path)
    assert {p.name for p in paths} >= {"heatmap_fid.png", "heatmap_r_precision_top1.png"}
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 2000


def test_cli_continual(tmp_path):
    results, _ = _results()
    save_json(tmp_path / "order1.json", results)
    save_json(tmp_path / "order2.json", dict(results, method="ES-MoE"))
    runner = CliRunner()
    out = tmp_path / "report"
    res = runner.invoke(app, ["eval", "continual", str(tmp_path / "order1.json"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    saved = load_json(out / "continual_metrics.json")
    assert saved["metrics"]["FR"] == pytest.approx(forgetting_rate(R))
    assert saved["matrices"]["r_precision_top1"][2] == [0.3, 0.5, 0.7]
    assert (out / "heatmap_fid.png").exists()
    # the FID cells carry a ci95, so AF gets a half-width: sqrt(Σ h²) / N over the last row
    half = average_ci95([c["fid"]["ci95"] for c in results["steps"][-1]["results"].values()])
    assert saved["metrics"]["AF_ci95"] == pytest.approx(half) and saved["metrics"]["AR_ci95"] is None
    assert f"| ES-MoE | 2.07 ± {half:.2f} | 0.500 | 10.00 | 1.10 | 0.400 | 17.50 |" in (out / "table2.md").read_text()
    res = runner.invoke(app, ["eval", "continual", str(tmp_path / "order1.json"), str(tmp_path / "order2.json"),
                              "--out", str(tmp_path / "both")])
    assert res.exit_code == 0, res.output
    assert "(mean of 2)" in (tmp_path / "both" / "table2.md").read_text()


def test_average_ci95_combines_independent_cells():
    assert average_ci95([0.3, 0.4]) == pytest.approx(0.25)  # sqrt(0.09 + 0.16) / 2
    assert average_ci95([0.1, float("nan")]) is None and average_ci95([]) is None
    row = "| X | 1.00 ± 0.25 | 0.500 ± 0.010 | – | – | – | – |"
    assert table2_row("X", {"AF": 1.0, "AF_ci95": 0.25, "AR": 0.5, "AR_ci95": 0.01}) == row
