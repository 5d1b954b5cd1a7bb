"""tunekit bench calibrate-triton's parts: sampling, the compile cache, the walks, the table, the report.

No compile runs here: caches are filled by hand and walks get a fake compiler, which is also what
makes a second run of the bench cheap.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from tunekit.bench import triton_calibration_report as report
from tunekit.bench.triton_compile import CompileRunner
from tunekit.bench.triton_sweep import Group, sample_jobs, walk
from tunekit.bench.triton_table import rows_of, write_table
from tunekit.constraints.triton_registers import Measured, entries_of, group_key, override
from tunekit.kernels.triton_fused_aot import Compiled, CompileJob, kernel_source_hash
from tunekit.solvers import Model, PowersOfTwo, Range, Values


def test_sample_is_seeded_distinct_and_within_the_tile_limit():
    first, again, other = sample_jobs(40, seed=3), sample_jobs(40, seed=3), sample_jobs(40, seed=4)
    assert first == again and first != other
    assert len({j.key for j in first}) == 40
    assert all(j.block_b * j.d_pad <= 16 * 32 * j.num_warps for j in first)
    assert all(j.head_dim % 8 == 0 for j in first)  # the runtime pads other D to a multiple of 8
    assert {j.direction for j in first} == {"forward", "backward"}
    with pytest.raises(ValueError, match="count"):
        sample_jobs(0)


def test_job_keys_carry_the_kernels_source_hash():
    job = CompileJob("lstm", "backward", "bfloat16", 128, 16, 8, 1, 1, 80)
    assert kernel_source_hash("lstm", "backward") in job.key
    assert job.key.endswith("-bf16-sm80-D128-bb16-w8-s1-ro1")
    assert kernel_source_hash("lstm", "forward") != kernel_source_hash("lstm", "backward")


CLEAN = Compiled(registers=144, spill_bytes=0, shared=34816, maxnreg=255, seconds=1.0)
SPILLS = Compiled(registers=255, spill_bytes=808, shared=33792, maxnreg=255, seconds=8.0)


def test_cached_results_are_read_without_compiling(tmp_path):
    jobs = [CompileJob("lstm", "forward", "bfloat16", 64, 16, 4, 1, 0, 80),
            CompileJob("lstm", "forward", "bfloat16", 64, 16, 1, 1, 0, 80)]  # fmt: skip
    path = tmp_path / "cache.json"
    path.write_text(json.dumps({jobs[0].key: asdict(CLEAN), jobs[1].key: asdict(SPILLS)}))
    runner = CompileRunner(path, workers=2)
    assert runner.compile_all(jobs) == [CLEAN, SPILLS]
    assert runner.compiled_now == 0 and runner._idle == []  # no worker was started
    runner.close()


def test_a_bad_worker_count_is_refused(tmp_path):
    with pytest.raises(ValueError, match="workers"):
        CompileRunner(tmp_path / "cache.json", workers=0)


def fake_compiler():
    """A compiler whose kernels need 40 + 10 e registers (e: tile elements a thread, 4 more a stage)."""
    calls = []

    def compile_(job: CompileJob) -> Compiled:
        calls.append(job)
        e = job.block_b * job.d_pad / (32 * job.num_warps) + 4 * (job.num_stages - 1)
        cap = 255 if job.num_warps <= 8 else 128
        regs = int(40 + 10 * e)
        return Compiled(min(regs, cap), 8 if regs > cap else 0, 1024, cap)

    return compile_, calls


def test_a_walk_stops_at_the_first_spill_and_marks_what_lies_beyond():
    group = Group("gru", "forward", "float16", 64, True, 80, 0)
    compile_, calls = fake_compiler()
    points = walk(group, compile_, shared_limit=166912, block_bs=(16, 32, 64))
    assert set(points) == {(bb, w, s) for bb in (16, 32, 64) for w in (1, 2, 4, 8, 16) for s in (1, 2)}
    # 8 warps: e = 4, 8, 16 -> 80, 120, 200 registers: every block compiled, all clean
    assert all(points[(bb, 8, 1)].clean for bb in (16, 32, 64))
    # 2 warps: e = 16 at block 16 -> 200 clean; 32 -> 360 spills; 64 is beyond: not compiled
    assert points[(16, 2, 1)].clean and not points[(32, 2, 1)].clean and points[(64, 2, 1)] is None
    # 1 warp stops where 2 warps did (block 16): larger blocks are marked without a compile
    assert points[(32, 1, 1)] is None and points[(64, 1, 1)] is None
    assert len(calls) == sum(p is not None for p in points.values())
    rows = rows_of(points, r_once=0)
    assert rows[0][:4] == [16, 1, 1, 0] and [64, 1, 1, 0, -1, 0, 0] in rows


def test_the_table_is_written_with_source_hashes_and_read_back(tmp_path):
    group = Group("elman", "backward", "bfloat16", 32, True, 90, 1)
    compile_, _ = fake_compiler()
    walked = {group: walk(group, compile_, shared_limit=232448, block_bs=(16, 32))}
    path = write_table(walked, tmp_path / "table.json")
    table = json.loads(path.read_text())
    assert table["kernels"]["elman/backward"] == kernel_source_hash("elman", "backward")
    entries = entries_of(table, "elman", "backward", "bfloat16", 90, 32, True)
    assert len(entries) == 20 and {e.r_once for e in entries} == {1}
    assert entries_of(table, "elman", "backward", "bfloat16", 90, 32, False) == ()  # other class
    # an edit since: neither the inputs' fingerprint nor the rendered kernel's hash matches
    stale = {**table, "kernels": {"elman/backward": "000000000000"}, "fingerprints": {}}
    assert entries_of(stale, "elman", "backward", "bfloat16", 90, 32, True) == ()
    # an edit that changed the inputs but not the code (a comment): the render vouches for them
    reworded = {**table, "fingerprints": {"elman/backward": "0" * 16}}
    assert len(entries_of(reworded, "elman", "backward", "bfloat16", 90, 32, True)) == 20
    assert (
        group_key("elman", "backward", "bfloat16", 86, 32, True) == "elman/backward/bfloat16/sm89/dp32/full"
    )


def test_override_replaces_the_estimate_at_exactly_the_measured_points():
    m = Model("override")
    v = {
        "block_b": m.int_var("block_b", PowersOfTwo(16, 64)),
        "num_warps": m.int_var("num_warps", PowersOfTwo(1, 16)),
        "num_stages": m.int_var("num_stages", Range(1, 2)),
        "r_once": m.int_var("r_once", Values([0, 1])),
    }
    estimate = 100 + v["block_b"] * 2 + v["num_warps"]
    # (32, 4, 1, 1) measured at 77 registers; (16, 8, 2, 0) spilled: one over its cap
    at = {(32, 4, 1, 1): (100 + 64 + 4, 77), (16, 8, 2, 0): (100 + 32 + 8, 256)}
    expr = override(estimate, at, v, with_form=True)
    for bb in (16, 32, 64):
        for w in (1, 2, 4, 8, 16):
            for s in (1, 2):
                for ro in (0, 1):
                    point = {"block_b": bb, "num_warps": w, "num_stages": s, "r_once": ro}
                    want = at[(bb, w, s, ro)][1] if (bb, w, s, ro) in at else 100 + 2 * bb + w
                    assert expr.evaluate(point) == want, point
    # a forward does not depend on the form: its point matches both values of r_once
    fwd = override(estimate, {(32, 4, 1, 0): (168, 77)}, v, with_form=False)
    assert fwd.evaluate({"block_b": 32, "num_warps": 4, "num_stages": 1, "r_once": 1}) == 77


def test_a_measured_entry_knows_when_it_spills():
    assert Measured(16, 4, 1, 0, 255, 16, 34816).spills
    assert Measured(16, 4, 1, 0, -1, 0, 0).spills  # beyond a spilling one, not compiled
    assert not Measured(16, 4, 1, 0, 144, 0, 34816).spills


def test_the_report_counts_accepted_spills_and_refused_clean_ones(tmp_path):
    fits = CompileJob("lstm", "forward", "bfloat16", 64, 16, 4, 1, 0, 80)
    huge = CompileJob("lstm", "forward", "bfloat16", 64, 64, 1, 1, 0, 80)
    rows = [report.row(fits, CLEAN), report.row(huge, SPILLS)]
    assert rows[1].bound_registers > 255 and not rows[1].compiler_ok
    summary = report.summarize(rows, 80, "bound")
    assert (summary.configs, summary.compiled, summary.accepted_spilling) == (2, 2, 0)
    assert summary.shared_under == 0
    paths = report.write(rows, [80], tmp_path)
    text = paths[0].read_text()
    assert "sm_80, bound: 2 configurations (2 compiled" in text and fits.key in text
    assert json.loads(paths[2].read_text())["summary"][0]["accepted_spilling"] == 0
