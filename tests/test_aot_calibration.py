"""tunekit.bench.calibrate_triton: sampling, the compile cache, the verdicts and the written reports.

No compile runs here: the cache is filled by hand, which is also what makes a second run cheap.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict

import pytest

from tunekit.bench.calibrate_triton import (
    MAX_TILE_ELEMENTS_PER_THREAD,
    Compiled,
    CompileRunner,
    evaluate,
    sample_cases,
    summarize,
    tile_elements_per_thread,
    write_calibration,
)
from tunekit.validation import TritonCase


def test_sample_is_seeded_distinct_and_within_the_tile_limit():
    first, again, other = sample_cases(40, seed=3), sample_cases(40, seed=3), sample_cases(40, seed=4)
    assert first == again and first != other
    assert len({c.name(80) for c in first}) == 40
    assert all(tile_elements_per_thread(c) <= MAX_TILE_ELEMENTS_PER_THREAD for c in first)
    assert {c.direction for c in first} == {"forward", "backward"}
    with pytest.raises(ValueError, match="count"):
        sample_cases(0)


ACCEPTED = TritonCase("lstm", "forward", "bfloat16", 64, 16, 4, 1)  # the model accepts it
REJECTED = TritonCase("lstm", "forward", "bfloat16", 64, 16, 1, 1)  # registers_per_thread


def cache_with(tmp_path, entries):
    path = tmp_path / "cache.json"
    path.write_text(json.dumps({case.name(80): asdict(result) for case, result in entries}))
    return path


def test_cached_results_are_read_without_compiling_and_judged(tmp_path):
    path = cache_with(
        tmp_path,
        [
            (ACCEPTED, Compiled(registers=144, spill_bytes=0, shared=34816, seconds=1.0)),
            (REJECTED, Compiled(registers=255, spill_bytes=808, shared=33792, seconds=8.0)),
        ],
    )
    with CompileRunner(path) as runner:
        rows = evaluate([ACCEPTED, REJECTED], [80], runner)
        assert runner._process is None  # nothing was compiled
    ok, spilling = rows
    assert ok.prediction.accepted and ok.compiler_ok and ok.fields()["model_verdict"] == "accepted"
    assert not spilling.prediction.accepted and not spilling.compiler_ok
    assert spilling.fields()["model_verdict"] == "rejected (registers_per_thread)"
    assert spilling.fields()["compiler_verdict"] == "spills 808 B"
    summary = summarize(rows, 80)
    assert (summary.configs, summary.accepted, summary.accepted_spilling) == (2, 1, 0)
    assert summary.max_shared_error_accepted == 0.0  # 4 R tiles + the staged y: exact


def test_an_accepted_configuration_that_spills_is_counted(tmp_path):
    path = cache_with(tmp_path, [(ACCEPTED, Compiled(registers=255, spill_bytes=64, shared=34816))])
    with CompileRunner(path) as runner:
        rows = evaluate([ACCEPTED], [80], runner)
    assert summarize(rows, 80).accepted_spilling == 1


def test_reports_have_a_summary_and_one_row_per_configuration(tmp_path):
    path = cache_with(
        tmp_path,
        [
            (ACCEPTED, Compiled(registers=144, spill_bytes=0, shared=34816)),
            (REJECTED, Compiled(error="timeout after 150 s")),
        ],
    )
    with CompileRunner(path) as runner:
        rows = evaluate([ACCEPTED, REJECTED], [80], runner)
    md, csv_path, js = write_calibration(rows, [80], tmp_path)
    text = md.read_text()
    assert "sm_80: 2 configurations (1 compiled), 1 accepted by the model, 0 of them spill" in text
    assert ACCEPTED.name(80) in text and "error: timeout after 150 s" in text
    with csv_path.open() as handle:
        table = list(csv.DictReader(handle))
    assert [r["name"] for r in table] == [ACCEPTED.name(80), REJECTED.name(80)]
    assert json.loads(js.read_text())["summary"][0]["accepted_spilling"] == 0
