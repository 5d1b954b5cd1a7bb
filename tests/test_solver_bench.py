"""The solver benchmark: a quick sweep writes a Markdown and a JSON report with timings, counts, coverage."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import tunekit.bench.solver_bench as bench
from tunekit.bench.solver_bench import Grid, coverage, run
from tunekit.bench.solver_bench_report import render_markdown, write_reports
from tunekit.cli import main
from tunekit.constraints import FAMILIES
from tunekit.explain import is_feasible
from tunekit.hardware import load_profile
from tunekit.problem import Problem

A100 = load_profile("a100")

TWO_SHAPES = Grid(
    cells=("lstm",),
    head_dims=(64, 768),
    heads=(1,),
    batches=(16,),
    dtypes=("bfloat16",),
    gpus=("a100",),
    solvers=(("auto", 1), ("previous", 1), ("native", 1), ("cpsat", 2)),
    coverage_dims=(64, 128),
    coverage_pairs=(("lstm", "float32"), ("gru", "bfloat16")),
)


def test_quick_sweep_on_two_shapes_writes_both_reports(tmp_path: Path):
    report = run(TWO_SHAPES)
    assert report["shapes"] == 2
    for solver, n in (("auto", 2), ("previous", 2), ("native", 2), ("cpsat", 1)):  # cpsat: every 2nd
        stats = report["summary_ms"][solver]
        assert stats["n"] == n and 0 < stats["median"] <= stats["p90"] <= stats["max"]
    for row in report["rows"]:
        assert row["gpu"] == "a100-sxm4-80gb"
        assert set(row["auto"]["feasible"]) == set(FAMILIES)
        assert row["auto"]["backend"] in FAMILIES
    assert report["solvers_compared"] == 1 and report["solvers_disagree"] == []
    # the previous pipeline beside the vectorised one on both shapes: the same choices, a ratio each
    speedup = report["speedup"]
    assert speedup["solver"] == "auto" and speedup["shapes"] == 2
    for row in report["rows"]:
        assert row["previous"]["config"] == row["auto"]["config"]
        assert row["previous"]["feasible"] == row["auto"]["feasible"]
    ratios = [r["previous"]["cpu_ms"] / r["auto"]["cpu_ms"] for r in report["rows"]]
    assert speedup["cpu_ms"]["min"] == pytest.approx(min(ratios))
    # each solver's one-time process cost (imports) is measured before the sweep, not charged to a shape
    assert set(report["first_call_ms"]) == {"auto", "previous", "native", "cpsat"}
    assert all(ms > 0 for ms in report["first_call_ms"].values())
    assert [(c["cell"], c["dtype"]) for c in report["coverage"]] == [("lstm", "float32"), ("gru", "bfloat16")]
    assert not report["baselines"]["available"]

    md, js = write_reports(report, tmp_path)
    stored = json.loads(js.read_text())
    assert stored["summary_ms"] == json.loads(json.dumps(report["summary_ms"]))
    (first, second) = (dict(zip(stored["row_columns"], row, strict=True)) for row in stored["rows"])
    assert first["head_dim"] == 64 and second["head_dim"] == 768
    assert first["backend"] == report["rows"][0]["auto"]["backend"] and first["cpsat_ms"] > 0
    assert second["cpsat_ms"] is None  # cpsat times every 2nd shape only
    text = md.read_text()
    for heading in ("## Time per problem (ms)", "## Feasibility", "## Coverage", "## Baselines side by side"):
        assert heading in text
    assert "Baseline columns empty" in text
    assert "one untimed call" in text
    assert "| native | all | 2 |" in text and "| cpsat | all | 1 |" in text
    assert "### auto against the previous pipeline" in text and "| previous | all | 2 |" in text
    assert report["import_tuning"]["runs"] == 3 and not report["import_tuning"]["sympy_loaded"]
    assert "`import tunekit.tuning` in a fresh interpreter, best of 3" in text


def test_coverage_reports_the_largest_feasible_head_dim():
    dims = [32, 64, 128, 256]
    rows = coverage("a100", "triton-fused", [("lstm", "bfloat16"), ("lstm", "float32")], dims)
    for row in rows:
        fits = [
            d
            for d in dims
            if is_feasible(Problem("lstm", 16, 1, d, dtype=row["dtype"]), A100, "triton-fused")
        ]
        assert row["feasible"] == len(fits) and row["largest_feasible"] == fits[-1]
        assert row["monotone"] and row["holes"] == []
    bf16, fp32 = (r["largest_feasible"] for r in rows)
    assert fp32 < bf16 <= 128  # 4 x 256^2 x 2 B of R alone is 512 KB; fp32 doubles every tile


def test_coverage_lists_holes(monkeypatch: pytest.MonkeyPatch):
    # a model whose D=96 space is empty while D=64 and D=128 have solutions: a hole
    monkeypatch.setattr(bench, "_feasible", lambda space: space.problem.head_dim != 96)
    (row,) = coverage("a100", "triton-fused", [("lstm", "bfloat16")], [64, 96, 128])
    assert row["holes"] == [96] and not row["monotone"] and row["largest_feasible"] == 128


def test_bench_solvers_command_quick(tmp_path: Path):
    result = CliRunner().invoke(
        main, ["bench", "solvers", "--quick", "--solver", "native", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "native: 2 shapes" in result.stdout and "auto" not in result.stdout
    assert (tmp_path / "solver_bench.md").exists() and (tmp_path / "solver_bench.json").exists()


def test_baselines_read_flashrnn_from_its_stored_run(tmp_path: Path):
    stored = tmp_path / "baselines.json"
    flashrnn = {
        "installed": True,
        "seconds": 20.0,
        "solutions_found": 1,
        "note": "",
        "details": {"cpu_seconds": 10.0},
    }
    row = {
        "gpu": "a100-sxm4-80gb",
        "cell": "lstm",
        "head_dim": 64,
        "heads": 1,
        "batch": 16,
        "dtype": "bfloat16",
    }
    stored.write_text(json.dumps({"generated_utc": "then", "rows": [{**row, "flashrnn": flashrnn}]}))
    grid = dataclasses.replace(TWO_SHAPES, baseline_dims=(64, 96))
    result = bench._baselines(grid, lambda _: None, stored)
    assert result["available"] and "generated then" in result["note"]
    d64, d96 = result["rows"]
    assert d64["flashrnn"]["seconds"] == 20.0
    assert d64["ratio_flashrnn_over_tunekit"] == pytest.approx(20.0 / d64["tunekit_seconds"])
    assert d64["cpu_ratio_flashrnn_over_tunekit"] == pytest.approx(10.0 / d64["tunekit_cpu_seconds"])
    assert not d96["flashrnn"]["installed"] and d96["ratio_flashrnn_over_tunekit"] is None
    quick = dataclasses.replace(TWO_SHAPES, solvers=(("auto", 1),), coverage_dims=())
    text = render_markdown({**run(quick), "baselines": result})
    assert "| a100-sxm4-80gb | 64 |" in text and "not measured for this shape" in text


def test_flashrnn_shapes_and_the_physical_bound_are_reported(tmp_path: Path):
    grid = dataclasses.replace(TWO_SHAPES, solvers=(("auto", 1), ("native", 1)), flashrnn_shapes=((64, 12),))
    report = run(grid)
    bound = report["bound_coverage"]
    # the usable bound is the raw one less reserves: fewer problems fit under it
    assert bound["raw"]["under_bound"] >= bound["usable"]["under_bound"]
    for kind in ("raw", "usable"):
        assert bound[kind]["covered"] + bound[kind]["missed_count"] == bound[kind]["under_bound"]
    (row,) = report["flashrnn_shapes"]
    assert (row["gpu"], row["head_dim"], row["heads"]) == ("a100-sxm4-80gb", 64, 12)
    assert row["auto"]["config"] == row["native"]["config"]
    text = write_reports(report, tmp_path)[0].read_text()
    assert "## FlashRNN's benchmark shapes" in text and "physical bound" in text
