"""triton-fused compiled for the local GPU (not interpreted) against the float64 reference on CPU.

Marked ``gpu`` and skipped without CUDA: CI has no GPU, users with one run these. tests/conftest.py
turns Triton's interpreter on for the CPU tests; each test here switches it off, and the runtime
decides per call, so these kernels are compiled by Triton for the device.
"""

from __future__ import annotations

import pytest
import torch
import triton
from test_triton_fused import CELL_NAMES, DTYPE_IDS, check_against_reference

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
    check_against_reference(cell, B=5, T=63, N=3, D=48, dtype=dtype, seed=13, device="cuda")


@pytest.mark.parametrize("head_dim", [64, 96, 128])
def test_tuned_config_runs_when_no_config_is_given(head_dim):
    # config=None asks the tuner for the local GPU's profile
    check_against_reference(
        "lstm", B=16, T=33, N=2, D=head_dim, dtype=torch.bfloat16, config=None, seed=17, device="cuda"
    )
