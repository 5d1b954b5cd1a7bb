"""tunekit bench cuda-compile: its sweep covers every cell x dtype x direction, and its report."""

from __future__ import annotations

import itertools
import json

from tunekit.bench.cuda_compile import CELLS, DIRECTIONS, DTYPES, configurations, write_reports


def test_the_quick_sweep_has_a_solver_chosen_configuration_for_every_cell_dtype_and_direction():
    samples = list(configurations(("l4",), quick=True))
    got = {(s.problem.cell, s.problem.dtype, s.problem.direction) for s in samples}
    assert got == set(itertools.product(CELLS, DTYPES, DIRECTIONS))
    assert all(s.config.family == "cuda-fused" and s.config.gpu == "l4-24gb" for s in samples)


def test_the_report_gives_predicted_and_ptxas_figures_per_kernel(tmp_path):
    row = {"config": "c", "gpu": "l4-24gb", "why": "tuned", "kernel": "k", "passed": True, "verdict": "ok",
           "predicted": {"registers_per_thread": 96, "registers_estimate": 88,
                         "shared_memory_bytes_per_block": 4096},
           "compiled": {"registers": 90, "static_shared_bytes": 0, "dynamic_shared_bytes": 4096,
                        "shared_memory_bytes": 4096, "spill_bytes": 0, "stack_frame_bytes": 0},
           "seconds": 1.5}  # fmt: skip
    report = {
        "gpus": ["l4"],
        "configurations": 1,
        "kernels": 1,
        "passed": 1,
        "wall_seconds": 2.0,
        "rows": [row],
    }
    md, js = write_reports(report, tmp_path)
    assert json.loads(js.read_text())["rows"][0]["kernel"] == "k"
    text = md.read_text()
    assert "| c | tuned | k | 88 / 96 / 90 | 4096 / 4096 | 0 | 0 | 1.5 | ok |" in text
    assert "register margin (model bound - ptxas): min 6, max 6" in text
    assert "register estimate - ptxas, kernels below the cap: min -2, median -2, max -2" in text


def test_a_limited_sweep_takes_one_configuration_of_every_group_before_a_second():
    from tunekit.bench.cuda_compile import _groups

    groups = _groups(("l4", "a100"), quick=True)
    samples = configurations(("l4", "a100"), quick=True, limit=len(groups) - 1)
    keys = [(s.gpu, s.problem.cell, s.problem.dtype, s.problem.direction, s.problem.heads) for s in samples]
    assert len(keys) == len(set(keys)) == len(groups) - 1
