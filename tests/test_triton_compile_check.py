"""Every triton-fused configuration the tuner returns compiles without spills (CI, no compiler).

``tunekit bench calibrate-triton`` compiled every configuration ``tune`` returned for the check
problems (tunekit.bench.triton_check: every cell, three dtypes, inference and training, odd head
dims, several batches, on sm_80 and sm_90; the best and the runner-up of each) and kept the results
in reports/triton_tuned_check.json, keyed by each kernel's source hash. Here the problems are tuned
again: a configuration whose compile the file lacks (the model or a template changed since) or
whose compile spills, exceeds the shared memory, or disagrees with the model's shared memory fails
the test. Rerun the bench to refresh the file after such a change.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tunekit.bench.triton_check import (
    CHECK_GPUS,
    CHECK_PROBLEMS,
    CHECK_TOP,
    INFERENCE_TARGETS,
    SHARED_TOLERANCE,
    TARGETS,
    kernel_jobs,
    problem_id,
    returned,
)
from tunekit.constraints.triton_fused import kernel_resources
from tunekit.constraints.triton_kernel import class_head_dim, register_cap
from tunekit.constraints.triton_registers import _table, bound_margin, group_key, input_fingerprint
from tunekit.hardware import load_profile
from tunekit.kernels.triton_fused_aot import ARCH_PROFILES, Compiled, kernel_source_hash

REPORT = Path(__file__).resolve().parents[1] / "reports" / "triton_tuned_check.json"
RERUN = "rerun `tunekit bench calibrate-triton --steps picks,check` to refresh the compiles"


@pytest.fixture(scope="module")
def report() -> dict:
    return json.loads(REPORT.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compiles(report) -> dict[str, Compiled]:
    return {key: Compiled(**fields) for key, fields in report["compiles"].items()}


def failures(gpu: str, compiles: dict[str, Compiled]) -> tuple[list[str], int]:
    """What is wrong with the configurations tune returns for the check problems on ``gpu``, judged
    by the recorded compiles; and how many configurations were judged."""
    profile = load_profile(gpu)
    out, checked = [], 0
    for problem in CHECK_PROBLEMS:
        for rank, config, predicted in returned(problem, gpu, CHECK_TOP):
            jobs = kernel_jobs(problem, dict(config.params), profile.arch)
            missing = [j.key for j in jobs if j.key not in compiles]
            if missing:
                out.append(f"{config.name}: no compile of {missing}; {RERUN}")
                continue
            results = [compiles[j.key] for j in jobs]
            checked += 1
            for job, c in zip(jobs, results, strict=True):
                if not c.clean or c.shared > profile.shared_memory_per_block_optin:
                    out.append(f"{config.name} (rank {rank}): {job.key}: {c}")
            shared = max(c.shared for c in results)
            model = predicted["shared_memory_bytes_per_block"]
            if not shared <= model <= (1 + SHARED_TOLERANCE) * shared:
                out.append(f"{config.name}: model shared {model} B, compiler {shared} B")
    return out, checked


def test_the_measured_table_describes_the_kernels_as_they_render_now():
    table = _table()
    for cell in ("lstm", "gru", "slstm", "elman"):
        for role in ("forward", "backward"):
            kernel = f"{cell}/{role}"
            assert table["kernels"].get(kernel) == kernel_source_hash(cell, role), f"{kernel}: {RERUN}"
            # tune vouches for the entries by this fingerprint alone (no render, no SymPy, no Triton)
            assert table["fingerprints"].get(kernel) == input_fingerprint(cell, role), f"{kernel}: {RERUN}"


def test_the_check_covers_at_least_100_problems_of_every_kind(report):
    assert len(CHECK_PROBLEMS) >= 100 and set(CHECK_GPUS) == {"a100", "h100"}
    assert {p.cell for p in CHECK_PROBLEMS} == {"lstm", "gru", "slstm", "elman"}
    assert {p.dtype for p in CHECK_PROBLEMS} == {"float32", "float16", "bfloat16"}
    assert {p.direction for p in CHECK_PROBLEMS} == {"forward", "both"}
    assert {p.head_dim % 2 for p in CHECK_PROBLEMS} == {0, 1} and len({p.batch for p in CHECK_PROBLEMS}) >= 4
    assert report["top"] == CHECK_TOP >= 2  # the record was made for the configurations checked here


@pytest.mark.parametrize("gpu", CHECK_GPUS)
def test_every_returned_configuration_compiles_clean_within_the_limits(gpu, compiles):
    found, checked = failures(gpu, compiles)
    assert not found, "\n".join(found[:20])
    assert checked >= 100  # most problems return two configurations


def test_the_check_fails_when_a_returned_configuration_spills(compiles):
    # the record says one kernel of the best LSTM bf16 D=61 training configuration spilled: the check
    # must name it (a test that cannot fail is not a test)
    wanted = ("lstm", 61, "both", "bfloat16")
    problem = next(p for p in CHECK_PROBLEMS if (p.cell, p.head_dim, p.direction, p.dtype) == wanted)
    _, config, _ = returned(problem, "a100", CHECK_TOP)[0]
    job = kernel_jobs(problem, dict(config.params), 80)[-1]
    spilled = dict(compiles) | {job.key: dataclasses.replace(compiles[job.key], spill_bytes=16)}
    found, _ = failures("a100", spilled)
    assert any(job.key in f and "spill_bytes=16" in f for f in found), found


def test_the_model_refuses_every_point_the_table_records_as_spilling():
    table = _table()
    refused = 0
    for key, rows in table["groups"].items():
        cell, role, dtype, sm, dp, kind = key.split("/")
        arch, d_pad = int(sm.removeprefix("sm")), int(dp.removeprefix("dp"))
        gpu = load_profile(ARCH_PROFILES[arch])
        d_run = class_head_dim(d_pad, kind == "full")
        assert group_key(cell, role, dtype, arch, d_pad, kind == "full") == key
        for bb, w, st, ro, registers, spill, _ in rows:
            point = {"block_b": bb, "num_warps": w, "num_stages": st, "r_once": ro}
            regs, _ = kernel_resources(cell, role, dtype, d_run, point, gpu)
            if registers < 0 or spill:
                assert int(regs) > register_cap(w, gpu), f"{key} {point}: the model accepts a spilling point"
                refused += 1
            else:
                assert int(regs) == registers, f"{key} {point}: the model reads {regs}, ptxas {registers}"
    assert refused > 0  # the loop found spills to refuse


def test_the_bound_with_its_margin_covers_every_clean_measurement():
    # where the table has no point, the model reads the bound plus the kernel's margin: on every clean
    # point ptxas was asked about, that is at least what ptxas used
    table = _table()
    for key, rows in table["groups"].items():
        cell, role, dtype, sm, dp, kind = key.split("/")
        arch, d_pad = int(sm.removeprefix("sm")), int(dp.removeprefix("dp"))
        gpu = load_profile(ARCH_PROFILES[arch])
        for bb, w, st, ro, registers, spill, _ in rows:
            if registers < 0 or spill:
                continue
            point = {"block_b": bb, "num_warps": w, "num_stages": st, "r_once": ro}
            bound, _ = kernel_resources(cell, role, dtype, class_head_dim(d_pad, kind == "full"), point, gpu,
                                        use_table=False)  # fmt: skip
            assert int(bound) + bound_margin(cell, role) >= registers, f"{key} {point}"


@pytest.mark.parametrize(
    "problem", TARGETS + INFERENCE_TARGETS, ids=lambda p: f"{p.cell}-{p.dtype}-D{p.head_dim}-{p.direction}"
)
@pytest.mark.parametrize("gpu", ["a100", "h100"])
def test_the_training_targets_are_feasible_and_compile_clean(problem, gpu, compiles):
    # issue 14: sLSTM bf16 training at D=64 and LSTM bf16 training at D=128 on A100 and H100; fp32
    # (tf32) LSTM training at D=64 on H100 (and the A100); FlashRNN's reach: sLSTM training at D=64
    # in every dtype, its forward at D=128 in 16-bit
    answers = returned(problem, gpu, CHECK_TOP)
    assert answers, f"{problem_id(problem, gpu)}: no triton-fused configuration"
    jobs = kernel_jobs(problem, dict(answers[0][1].params), load_profile(gpu).arch)
    assert all(compiles[j.key].clean for j in jobs), [compiles[j.key] for j in jobs]


def test_the_share_of_clean_configurations_the_model_refuses_is_reported(report):
    refused = report["refused_clean"]
    assert 0 < refused["judged"] <= refused["refused_for_registers"]
    assert refused["share_clean_of_refused"] == pytest.approx(refused["judged_clean"] / refused["judged"])
