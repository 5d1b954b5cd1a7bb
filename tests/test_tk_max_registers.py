"""TK_MAX_REGISTERS(n) (templates/cuda/tk_cuda.cuh): ptxas gives the kernel at most n registers per
thread under nvcc and NVRTC, and the emulator compiles it to nothing (the same source runs).

The kernel keeps 40 loaded floats live across a triangular sum of their products: uncapped, ptxas
(nvcc 13.0, sm_80) allocates 48 registers without spilling; capped at 32 it holds 32 and spills.
"""

from __future__ import annotations

import pytest
import torch

from tunekit.cuda import CudaProgram, KernelEntry, LaunchDims

pytest.importorskip("cuda.core", reason="NVRTC compiles need the tunekit[cuda] extra (in the test extra)")

SOURCE = r"""
#include "tk_cuda.cuh"

TK_KERNEL void {qualifier} pressure(tk::ptr<const float> x,  // [40, 32]
                                    tk::ptr<float> out) {{    // [32]
  float v[40];
  TK_UNROLL
  for (int i = 0; i < 40; ++i) v[i] = x[i * 32 + threadIdx.x];
  float acc = 0.0f;
  TK_UNROLL
  for (int i = 0; i < 40; ++i) {{
    TK_UNROLL
    for (int j = i; j < 40; ++j) acc += v[i] * v[j];
  }}
  out[threadIdx.x] = acc;
}}
"""
ENTRY = KernelEntry("pressure", (("x", "ptr"), ("out", "ptr")))
CAP = 32


def program(qualifier: str) -> CudaProgram:
    name = "tk-max-registers-" + ("capped" if qualifier else "free")
    return CudaProgram(name, SOURCE.format(qualifier=qualifier), (ENTRY,))


def test_ptxas_holds_a_capped_kernel_to_the_cap_under_nvcc_and_nvrtc():
    from tunekit.compilers.cuda import compile_programs, tool_problem

    tools = [t for t in ("nvcc", "nvrtc") if tool_problem(t) is None]
    assert tools, "neither nvcc nor NVRTC can run here"
    jobs = [(program(q), 80, t) for q in ("", f"TK_MAX_REGISTERS({CAP})") for t in tools]
    results = compile_programs(jobs)
    for (prog, _, tool), result in zip(jobs, results, strict=True):
        assert not isinstance(result, Exception), f"{prog.name} ({tool}): {result}"
        registers = result.entry("pressure").registers
        if prog.name.endswith("capped"):
            assert registers <= CAP, f"{tool}: {registers} registers under TK_MAX_REGISTERS({CAP})"
        else:
            assert registers > CAP, f"{tool}: uncapped, it needs only {registers}: the test proves nothing"


def test_the_emulator_runs_the_capped_source_unchanged():
    from tunekit.cuda.emulator import EmulatorRunner

    x = torch.randn(40, 32, generator=torch.Generator().manual_seed(0))
    out = torch.empty(32)
    dims = LaunchDims((1, 1, 1), (32, 1, 1))
    EmulatorRunner().launch(program(f"TK_MAX_REGISTERS({CAP})"), "pressure", dims, [x, out])
    x64 = x.double()
    want = sum(x64[i] * x64[j] for i in range(40) for j in range(i, 40))
    assert torch.allclose(out.double(), want, rtol=1e-5, atol=1e-4)
