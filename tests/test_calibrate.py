"""Calibration: the shipped constants are the fit of the published timings and land within 25%;
`tunekit calibrate` refits from measured records and writes where the cost model reads."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from dbcases import measured

from tunekit import cost
from tunekit.calibrate import UNCALIBRATED, measured_points, published_fit, published_points, render_report
from tunekit.cli import main
from tunekit.constraints import build_space
from tunekit.cost import CostConstants, estimate, load_constants, packaged_constants_path, write_constants
from tunekit.db import TuningDB, predicted_record
from tunekit.problem import Problem
from tunekit.tuning import tune

REPORT = Path(__file__).resolve().parent.parent / "reports" / "cost_calibration.md"
REGENERATE = "tunekit calibrate --source published --out tunekit/cost_constants.json"
REGENERATE += " --report reports/cost_calibration.md"


@pytest.fixture(scope="module")
def published():
    return published_points()


@pytest.fixture
def own_constants(monkeypatch):
    """Whatever a test points the cost model at is forgotten afterwards."""
    cost.active_constants.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    cost.active_constants.cache_clear()


def test_the_shipped_constants_and_report_are_what_the_fit_of_the_published_timings_gives():
    result = published_fit()  # the fit `tunekit calibrate` makes (cached: the CLI test below reuses it)
    assert load_constants(packaged_constants_path()) == result.fitted, f"stale: run `{REGENERATE}`"
    text = render_report(result, "tunekit calibrate --source published")
    assert REPORT.read_text(encoding="utf-8") == text, f"stale: run `{REGENERATE}`"


def test_triton_fused_and_cuda_alternating_land_within_25_percent_of_the_published_times(published):
    shipped = load_constants(packaged_constants_path())
    fitted = [p for p in published if p.fit]
    assert {p.family for p in fitted} == {"triton-fused", "cuda-alternating"} and len(fitted) == 7
    for p in fitted:
        ratio = p.predicted_us(shipped) / p.measured_us
        assert 0.75 <= ratio <= 1.25, (p.label, p.problem, ratio)
    # before calibration the model missed triton-fused's step latency: 0.45 ms against 1.97 ms
    d16 = next(p for p in fitted if p.family == "triton-fused" and p.problem.direction == "forward")
    assert d16.steps * d16.predicted_us(UNCALIBRATED) / 1e3 == pytest.approx(0.45, abs=0.01)
    # FlashRNN's fused kernel is another design: reported beside ours, never fitted
    fused = [p for p in published if p.family == "cuda-fused"]
    assert len(fused) == 4 and not any(p.fit for p in fused)
    assert all(p.predicted_us(shipped) is not None for p in fused)
    assert all(p.predicted_us(shipped) is None for p in published if p.family is None)  # cuDNN


def test_the_triton_step_latency_is_cycles_at_the_boost_clock_per_wave_and_direction():
    space = build_space("triton-fused", Problem("lstm", 16, 4, 32, direction="both"), "h100")
    a = space.enumerate()[0]
    slow = replace(UNCALIBRATED, triton_step_latency_cycles=1980.0)  # 1 µs at the H100 SXM's 1980 MHz
    base, late = estimate(space, a, constants=UNCALIBRATED), estimate(space, a, constants=slow)
    assert base.step_latency_us == 0.0
    assert late.step_latency_us == pytest.approx(2.0)  # forward and backward
    assert late.total_us_per_step == pytest.approx(base.total_us_per_step + 2.0)


def _measured_db(path: Path, truth: CostConstants) -> int:
    """Measured records of triton-fused configurations whose medians are the model's predictions
    under ``truth``: a fit must find constants that predict them."""
    count = 0
    with TuningDB(path) as db:
        for d, heads, direction in ((32, 4, "forward"), (64, 2, "both"), (48, 8, "forward")):
            problem = Problem("lstm", 16, heads, d, direction=direction)
            result = tune(problem, "h100", backend="triton-fused", top=3)
            for i, c in enumerate(result.candidates):
                space = build_space("triton-fused", problem, result.gpu)
                us = estimate(space, c.config.params, constants=truth).total_us_per_step
                record = predicted_record(c, result.gpu, i, "0" * 16)
                db.write([measured(record, [us * 0.99, us, us * 1.01])])
                count += 1
    return count


def test_calibrate_refits_from_measured_records_and_the_cost_model_reads_the_result(tmp_path, own_constants):
    truth = replace(CostConstants(), triton_step_latency_cycles=6000.0)
    db = tmp_path / "t.sqlite"
    count = _measured_db(db, truth)
    out, report = tmp_path / "constants.json", tmp_path / "calibration.md"
    own_constants.setenv(cost.CONSTANTS_ENV, str(out))  # where the cost model reads, and calibrate writes
    result = CliRunner().invoke(main, ["calibrate", "--db", str(db), "--report", str(report), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["source"] == "measured" and data["points"] == count and data["constants_file"] == str(out)
    assert data["max_abs_residual"] < 0.02  # the fit predicts what was measured
    written = load_constants(out)
    assert written.triton_step_latency_cycles + written.step_latency_us * 1980 > 4000  # the missing latency
    assert json.loads(out.read_text())["source"] == "measured"
    assert cost.active_constants() == written  # the next `tune` prices with the new constants
    assert "measured records of the tuning database" in report.read_text()


def test_records_that_no_longer_apply_are_left_out_with_a_reason(tmp_path):
    db = tmp_path / "t.sqlite"
    _measured_db(db, CostConstants())
    with TuningDB(db) as opened:
        records = opened.records(tier="measured")
    moved = replace(records[0], key=replace(records[0].key, profile_hash="f" * 16))
    points, skipped = measured_points([moved, *records[1:]])
    assert len(points) == len(records) - 1
    assert skipped == [f"{moved.name}: measured on another version of the h100-sxm5-80gb profile"]


def test_calibrate_falls_back_to_the_published_timings_and_measured_insists(tmp_path, own_constants):
    out = tmp_path / "c.json"
    args = ["calibrate", "--db", str(tmp_path / "empty.sqlite"), "--out", str(out), "--report", ""]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["source"] == "published"
    assert load_constants(out) == load_constants(packaged_constants_path())
    insist = CliRunner().invoke(main, [*args, "--source", "measured"])
    assert insist.exit_code == 1 and insist.stderr.startswith("Error: no usable measured records")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (None, "no file"),
        ("[1]", "is not a 'tunekit-cost-constants' file"),
        ({"version": 2}, "has version 2"),
        ({"constants": {"step_latency_us": 0.3}}, "expected exactly"),
        (
            {"constants": {**CostConstants().as_dict(), "step_latency_us": -1}},
            "negative values for ['step_latency_us']",
        ),
    ],
    ids=["missing", "not-constants", "version", "missing-keys", "negative"],
)
def test_a_bad_constants_file_is_one_line_naming_it(tmp_path: Path, body, message: str):
    path = tmp_path / "c.json"
    if isinstance(body, dict):
        write_constants(path, CostConstants(), {})
        data = json.loads(path.read_text()) | body
        path.write_text(json.dumps(data))
    elif body is not None:
        path.write_text(body)
    with pytest.raises(ValueError) as info:
        load_constants(path)
    assert message in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)
