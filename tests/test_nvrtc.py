"""NVRTC without a GPU (tunekit.compilers.nvrtc, tunekit.cuda.nvrtc): cubins for every supported arch
from the wheels' headers, the include path, argument packing and the errors a user meets."""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import pytest
import torch

import tunekit.compilers.nvrtc as nvrtc_module
from tunekit.compilers import CompileCache, CompileError
from tunekit.compilers.nvrtc import compile_cubin, include_dirs
from tunekit.cuda import CudaProgram, CudaUnavailableError, KernelEntry, runner_for
from tunekit.cuda.nvrtc import NvrtcRunner, pack_args

# A cooperative grid-sync kernel: cooperative_groups comes from the runtime wheel, cuda/std from
# CCCL's, tk_cuda.cuh from templates/cuda.
GRID_SYNC = CudaProgram(
    "grid-sync-test",
    """#include "tk_cuda.cuh"
TK_KERNEL void TK_LAUNCH_BOUNDS(256, 1) rotate(tk::ptr<int> out, tk::ptr<int> seen, int blocks) {
  if (threadIdx.x == 0) out[blockIdx.x] = blockIdx.x + 1;
  tk::grid_sync();
  if (threadIdx.x == 0) seen[blockIdx.x] = out[(blockIdx.x + 1) % blocks];
}
""",
    (KernelEntry("rotate", (("out", "ptr"), ("seen", "ptr"), ("blocks", "i32")), cooperative=True),),
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> CompileCache:
    return CompileCache(tmp_path_factory.mktemp("cubins"))


@pytest.mark.parametrize("arch", ["sm_80", "sm_86", "sm_89", "sm_90"])
def test_a_grid_sync_kernel_compiles_to_a_cubin_for_each_arch_without_a_gpu(arch, cache):
    build = compile_cubin(GRID_SYNC, arch, cache=cache)
    assert build.cubin[:4] == b"\x7fELF" and build.arch == int(arch[3:])
    assert f"Compiling entry function 'rotate' for '{arch}'" in build.log
    assert ".entry rotate(" in build.ptx and build.tool == "nvrtc"
    assert compile_cubin(GRID_SYNC, arch, cache=cache).cached


def test_include_path_is_the_two_wheels_found_through_the_nvidia_package():
    runtime, cccl = (Path(p) for p in include_dirs())
    assert (
        runtime.parts[-3:] == ("nvidia", "cu13", "include") and (runtime / "cooperative_groups.h").is_file()
    )
    assert cccl == runtime / "cccl" and (cccl / "cuda" / "std" / "version").is_file()


def test_a_missing_wheel_is_named_with_the_install_command(tmp_path, monkeypatch):
    (tmp_path / "cu13" / "include").mkdir(parents=True)
    (tmp_path / "cu13" / "include" / "cooperative_groups.h").write_text("")
    monkeypatch.setattr(nvrtc_module, "_nvidia_roots", lambda: [tmp_path])
    with pytest.raises(CudaUnavailableError, match=r"nvidia-cuda-cccl.*pip install 'tunekit\[cuda\]'"):
        include_dirs()
    monkeypatch.setattr(nvrtc_module, "_nvidia_roots", lambda: [])
    with pytest.raises(CudaUnavailableError, match=r"nvidia-cuda-runtime.*no `nvidia` package"):
        compile_cubin(GRID_SYNC, 80, cache=False)


def test_without_cuda_core_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cuda.core", None)  # import cuda.core now raises ImportError
    nvrtc_module.nvrtc_version.cache_clear()
    try:
        with pytest.raises(CudaUnavailableError, match=r"pip install 'tunekit\[cuda\]'"):
            compile_cubin(GRID_SYNC, 80, cache=False)
    finally:
        nvrtc_module.nvrtc_version.cache_clear()


def test_a_source_error_and_a_bad_arch_are_clear_errors():
    broken = CudaProgram("typo", "TK_KERNEL void f() { retrun; }", (KernelEntry("f", ()),))
    with pytest.raises(CompileError, match=r"(?s)NVRTC .*typo.*sm_80.*error"):
        compile_cubin(broken, 80, cache=False)
    with pytest.raises(ValueError, match="arch: got 'sm_75', expected one of sm_80, sm_86, sm_89, sm_90"):
        compile_cubin(GRID_SYNC, "sm_75")
    with pytest.raises(ValueError, match="CudaProgram"):
        compile_cubin("source text", 80)


# ---- argument packing: what cuda.core receives ----------------------------------------------------

ENTRY = KernelEntry("k", (("x", "ptr"), ("n", "i32"), ("mask", "u32"), ("offset", "i64"), ("scale", "f32")))


def test_arguments_are_typed_by_the_entry_kinds():
    x = torch.zeros(6)
    packed = pack_args(ENTRY, [x, -7, 2**32 - 1, 2**40, 0.5], "cpu")
    assert packed[0] == x.data_ptr() and type(packed[0]) is int  # cuda.core packs an int as intptr_t
    assert [type(v) for v in packed[1:]] == [ctypes.c_int32, ctypes.c_uint32, ctypes.c_int64, ctypes.c_float]
    assert [v.value for v in packed[1:]] == [-7, 2**32 - 1, 2**40, 0.5]
    assert pack_args(ENTRY, [x, 0, 0, 0, 3], "cpu")[4].value == 3.0  # an int is a fine f32


@pytest.mark.parametrize(
    "args,message",
    [
        ([torch.zeros(6), 1, 1, 1], r"got 4 arguments, expected 5: \['x', 'n', 'mask', 'offset', 'scale'\]"),
        ([[0.0], 1, 1, 1, 1.0], r"'x' \(ptr\): got list, expected a torch.Tensor"),
        ([torch.zeros(4, 4).t(), 1, 1, 1, 1.0], r"'x' \(ptr\): got a non-contiguous tensor"),
        (
            [torch.zeros(6), 2**31, 1, 1, 1.0],
            r"'n' \(i32\): got 2147483648, expected -2147483648..2147483647",
        ),
        ([torch.zeros(6), True, 1, 1, 1.0], r"'n' \(i32\): got True, expected a Python int"),
        ([torch.zeros(6), 1.5, 1, 1, 1.0], r"'n' \(i32\): got 1.5, expected a Python int"),
        ([torch.zeros(6), 1, -1, 1, 1.0], r"'mask' \(u32\): got -1, expected 0..4294967295"),
        ([torch.zeros(6), 1, 1, 1, "1.0"], r"'scale' \(f32\): got '1.0', expected a Python float"),
    ],
    ids=[
        "count",
        "not-a-tensor",
        "non-contiguous",
        "i32-overflow",
        "bool",
        "float-for-int",
        "u32-negative",
        "string-for-float",
    ],  # fmt: skip
)
def test_bad_arguments_name_the_parameter_and_what_is_expected(args, message):
    with pytest.raises(ValueError, match=message):
        pack_args(ENTRY, args, "cpu")


def test_a_tensor_on_another_device_is_refused():
    with pytest.raises(ValueError, match=r"'x' \(ptr\): tensor on cpu, expected cuda:0"):
        pack_args(ENTRY, [torch.zeros(6), 1, 1, 1, 1.0], "cuda:0")


# ---- the runner where there is no GPU ---------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_the_gpu_runner_without_a_gpu_says_so():
    with pytest.raises(CudaUnavailableError, match="torch sees no CUDA GPU"):
        NvrtcRunner("cuda")
    with pytest.raises(ValueError, match="expected a CUDA device"):
        NvrtcRunner("cpu")
    with pytest.raises(CudaUnavailableError, match="torch sees no CUDA GPU"):
        runner_for("cuda:0")


def test_cpu_tensors_without_the_emulator_name_both_ways(monkeypatch):
    monkeypatch.delenv("TUNEKIT_CUDA_EMULATOR", raising=False)
    with pytest.raises(
        CudaUnavailableError, match=r"(?s)pip install 'tunekit\[cuda\]'.*TUNEKIT_CUDA_EMULATOR=1"
    ):
        runner_for("cpu")
