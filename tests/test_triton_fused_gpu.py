"""triton-fused compiled for the local GPU (not interpreted) against the float64 reference on CPU.

Marked ``gpu`` and skipped without CUDA: CI has no GPU, users with one run these. tests/conftest.py
turns Triton's interpreter on for the CPU tests; each test here switches it off, and the runtime
decides per call, so these kernels are compiled by Triton for the device.
"""

from __future__ import annotations

import pytest
import torch
import triton
from test_triton_fused import CELL_NAMES, CONFIG, DTYPE_IDS, TUNED_FORM, check_against_reference

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(autouse=True)
def compiled_kernels():
    with triton.knobs.runtime.scope():
        triton.knobs.runtime.interpret = False
        yield


@pytest.mark.parametrize("dtype", list(DTYPE_IDS), ids=list(DTYPE_IDS.values()))
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_compiled_kernels_match_reference(cell, dtype):
    # fp32 with exact products, 16-bit in the rows form (R and R^T)
    check_against_reference(cell, B=5, T=63, N=3, D=48, dtype=dtype, seed=13, device="cuda")


@pytest.mark.parametrize("dtype", list(DTYPE_IDS), ids=list(DTYPE_IDS.values()))
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_the_tuned_forms_match_reference(cell, dtype):
    # fp32 on tf32 tensor cores, 16-bit with one copy of R in the backward (the device's dot forms);
    # D = 61 runs on copies padded to 64 lanes
    tol = "tf32" if dtype == torch.float32 else None
    config = CONFIG | TUNED_FORM[dtype]
    check_against_reference(
        cell, B=5, T=63, N=3, D=61, dtype=dtype, config=config, seed=13, device="cuda", tol=tol
    )


@pytest.mark.parametrize("head_dim", [64, 96, 128])
def test_tuned_config_runs_when_no_config_is_given(head_dim):
    # config=None asks the tuner for the local GPU's profile
    check_against_reference(
        "lstm", B=16, T=33, N=2, D=head_dim, dtype=torch.bfloat16, config=None, seed=17, device="cuda"
    )
