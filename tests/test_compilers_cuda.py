"""CUDA compile truth without a GPU (tunekit.compilers.cuda): nvcc and NVRTC compile a real kernel
that includes tk_cuda.cuh; ptxas's figures, the PTX and the SASS are read per entry; builds are
cached by name, source + header digest, arch, tool and version; failures are clear errors."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import fake_cuda_family
import pytest

import tunekit.compilers.build as build_module
from tunekit.compilers import CompileCache, CompileError, local_memory_instructions
from tunekit.compilers.cuda import compile_program, compile_programs, nvcc_build, tool_problem
from tunekit.cuda import CudaProgram, KernelEntry

CONFIG = SimpleNamespace(name="fake-D64-sm-test")
ARCHS = (80, 90)
TOOLS = ("nvcc", "nvrtc")


def mma_program() -> CudaProgram:
    return fake_cuda_family.programs(CONFIG)[0]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> CompileCache:
    return CompileCache(tmp_path_factory.mktemp("compile"))


@pytest.fixture(scope="module")
def compiled(cache):
    """The mma kernel compiled by both tools for sm_80 and sm_90, in one thread pool."""
    jobs = [(mma_program(), arch, tool) for tool in TOOLS for arch in ARCHS]
    results = compile_programs(jobs, cache=cache)
    return {(tool, arch): result for (_, arch, tool), result in zip(jobs, results, strict=True)}


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("arch", ARCHS)
def test_tensor_core_kernel_uses_mma_and_no_local_memory(compiled, tool, arch):
    result = compiled[(tool, arch)]
    assert not isinstance(result, Exception), result
    tile = result.entry("tile")
    assert result.build.tool == tool and result.build.arch == arch
    assert tile.usage.arch == f"sm_{arch}"
    assert tile.static_shared_bytes == fake_cuda_family.TILE_ROWS * 16 * 2  # the bf16 R tile
    assert 0 < tile.registers <= fake_cuda_family.REGISTER_BOUND
    assert (tile.spill_bytes, tile.stack_frame_bytes) == (0, 0)
    assert "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32" in tile.ptx
    assert tile.sass is not None, result.sass_note
    assert "HMMA.16816.F32.BF16" in tile.sass
    assert local_memory_instructions(tile.ptx) == [] and local_memory_instructions(tile.sass) == []
    assert result.build.cubin[:4] == b"\x7fELF"


def test_nvcc_and_nvrtc_agree_on_the_static_shared_memory(compiled):
    for arch in ARCHS:
        figures = {compiled[(t, arch)].entry("tile").static_shared_bytes for t in TOOLS}
        assert len(figures) == 1, figures


def test_a_stack_array_shows_as_stack_frame_and_local_loads_and_stores(monkeypatch, cache):
    monkeypatch.setattr(fake_cuda_family, "USE_STACK", True)
    tile = compile_program(mma_program(), 80, "nvrtc", cache=cache).entry("tile")
    assert tile.stack_frame_bytes == 64 * 4  # float spill[64]
    assert any(op.startswith("st.local") for op in local_memory_instructions(tile.ptx))
    assert any(op.startswith("STL") for op in local_memory_instructions(tile.sass))


def test_an_nvcc_build_is_compiled_once_then_read_from_the_cache(tmp_path):
    cache = CompileCache(tmp_path)
    first = nvcc_build(mma_program(), 86, cache)
    again = nvcc_build(mma_program(), 86, cache)
    assert not first.cached and again.cached
    assert (again.cubin, again.ptx, again.log) == (first.cubin, first.ptx, first.log)


def test_a_corrupt_or_stale_cache_entry_is_rebuilt_never_served(tmp_path, monkeypatch):
    cache, program, calls = CompileCache(tmp_path), mma_program(), []

    def build(prog=program, arch=80, version="1.0"):
        def compile_fn():
            calls.append(arch)
            return b"\x7fELF cubin", ".version 9.0", f"log {len(calls)}"

        return build_module.cached_build(prog, arch, "nvrtc", version, compile_fn, cache)

    assert not build().cached and build().cached and len(calls) == 1
    (entry,) = tmp_path.glob("*.json")
    tampered = entry.read_text().replace('"log": "', '"log": "tampered ', 1)  # no longer matches its hash
    entry.write_text(tampered)
    assert not build().cached and build().log == "log 2"
    entry.write_bytes(b"\xff\xfe not utf-8")
    assert not build().cached and len(calls) == 3
    # every part of the key is a new entry: another arch, tool version, source or header
    assert not build(arch=90).cached and not build(version="2.0").cached
    assert not build(prog=dataclasses.replace(program, source=program.source + "// edited\n")).cached
    monkeypatch.setattr(build_module, "headers_digest", lambda: "another tk_cuda.cuh")
    assert not build().cached and len(calls) == 7


BROKEN = CudaProgram("broken-kernel", '#include "tk_cuda.cuh"\nTK_KERNEL void f(int n) { undeclared(n); }\n',
                     (KernelEntry("f", (("n", "i32"),)),))  # fmt: skip


@pytest.mark.parametrize("tool", TOOLS)
def test_a_compile_error_names_the_tool_the_program_the_arch_and_the_message(tool):
    with pytest.raises(CompileError, match=rf"(?is){tool}.*broken-kernel.*sm_89.*undeclared"):
        compile_program(BROKEN, 89, tool, cache=False)


def test_parallel_compiles_keep_the_order_and_put_errors_in_place(cache):
    results = compile_programs([(mma_program(), 80, "nvrtc"), (BROKEN, 80, "nvrtc")], cache=cache, workers=2)
    assert results[0].entry("tile").registers > 0
    assert isinstance(results[1], CompileError) and "undeclared" in str(results[1])


def test_an_entry_missing_from_the_compiled_program_is_named(cache):
    program = dataclasses.replace(mma_program(), entries=(KernelEntry("tiles", ()),))
    with pytest.raises(ValueError, match=r"no entry \['tiles'\].*'tile'"):
        compile_program(program, 80, "nvrtc", cache=cache)


def test_unknown_tool_and_arch_are_named():
    with pytest.raises(ValueError, match="tool"):
        compile_program(mma_program(), 80, "clang")
    with pytest.raises(ValueError, match="sm_80, sm_86, sm_89, sm_90"):
        compile_program(mma_program(), "sm_75", "nvrtc")


def test_nvcc_missing_from_path_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert "nvcc is not on PATH" in tool_problem("nvcc")
    with pytest.raises(CompileError, match="nvcc is not on PATH"):
        nvcc_build(mma_program(), 80, cache=False)
