"""Compiler truth for cuda-alternating: a sample of rendered programs compiles with nvcc and NVRTC
for sm_80/86/89/90, and per entry ptxas's figures agree with the constraint model: shared memory
(ptxas's static bytes + the launcher's dynamic bytes) exactly the model's, registers within the
model's budget, no spills, no stack frame; the GEMMs run on tensor cores (HMMA), fed by cp.async
(LDGSTS) and, where the operand is k-contiguous, ldmatrix (LDSM).

The compile helpers here are small stand-ins for tunekit.compilers (branch cuda-runtime); the
checks stay when the helpers move there.
"""

from __future__ import annotations

import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tunekit.cuda import CudaProgram
from tunekit.kernels.cuda_alternating import (
    FAMILY,
    GEMM_ENTRIES,
    TUNABLES,
    gemm_shared_bytes,
    launch_dims,
    predicted,
    programs,
    tuned_config,
)
from tunekit.problem import KernelConfig, Problem

ARCHS = (80, 86, 89, 90)
HEADERS = Path(__file__).resolve().parents[1] / "templates" / "cuda"
_PTXAS = re.compile(
    r"Compiling entry function '(\w+)' for 'sm_(\d+)'.*?(\d+) bytes stack frame, (\d+) bytes spill stores, "
    r"(\d+) bytes spill loads\s*\nptxas info\s*: Used (\d+) registers(?:, used \d+ barriers)?"
    r"(?:, (\d+) bytes smem)?",
    re.S,
)


def parse_ptxas(log: str) -> dict[tuple[str, int], dict[str, int]]:
    """(entry, arch) -> registers, static shared bytes, spill bytes, stack frame bytes (ptxas -v)."""
    return {
        (m[1], int(m[2])): {"registers": int(m[6]), "static_shared_bytes": int(m[7] or 0),
                            "spill_bytes": int(m[4]) + int(m[5]), "stack_frame_bytes": int(m[3])}
        for m in _PTXAS.finditer(log)
    }  # fmt: skip


def nvcc_compile(program: CudaProgram, workdir: Path) -> tuple[dict, dict[tuple[str, int], str]]:
    """ptxas figures and SASS per (entry, arch): one nvcc run for every arch (a fatbin)."""
    source, fatbin = workdir / f"{program.name}.cu", workdir / f"{program.name}.fatbin"
    source.write_text(program.source)
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in ARCHS]
    command = ["nvcc", "-std=c++17", "-I", str(HEADERS), "-fatbin", *gencode, "-Xptxas", "-v", str(source)]
    done = subprocess.run([*command, "-o", str(fatbin)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"nvcc failed on {program.name}:\n{done.stderr[-3000:]}"
    import triton

    cuobjdump = triton.knobs.nvidia.cuobjdump.path  # Triton's bundled CUDA tools
    dump = subprocess.run([cuobjdump, "-sass", str(fatbin)], capture_output=True, text=True, timeout=300)
    sass: dict[tuple[str, int], str] = {}
    for arch_part in re.split(r"\n\s*code for sm_", dump.stdout)[1:]:
        arch = int(arch_part[:2])
        for function in re.split(r"\n\s*Function : ", arch_part)[1:]:
            name, _, body = function.partition("\n")
            sass[(name.strip(), arch)] = body
    return parse_ptxas(done.stderr), sass


def nvrtc_compile(program: CudaProgram, arch: int) -> dict:
    """ptxas figures per (entry, arch) of an NVRTC compile (cuda.core; headers from the NVIDIA wheels)."""
    import nvidia
    from cuda.core import Program, ProgramOptions

    roots = [Path(p) / "cu13" / "include" for p in nvidia.__path__]
    include = [str(HEADERS)] + [str(r) for r in roots if r.is_dir()] + [str(r / "cccl") for r in roots]
    options = ProgramOptions(arch=f"sm_{arch}", std="c++17", ptxas_options=["-v"], include_path=include)

    class Log:
        def __init__(self):
            self.parts = []

        def write(self, part):
            self.parts.append(part.decode() if isinstance(part, bytes) else str(part))

    log, compiler = Log(), Program(program.source, "c++", options)
    try:
        compiler.compile("cubin", logs=log)
    finally:
        compiler.close()
    return parse_ptxas("".join(log.parts))


def _config(family_problem: tuple, gpu: str, params: tuple[int, ...]) -> KernelConfig:
    items = tuple(zip(TUNABLES, params, strict=True))
    return KernelConfig(FAMILY, Problem(*family_problem, direction="both"), gpu, items)


# The tuner's choice for a small bf16 problem (one warp, 64-deep k slices: every ldmatrix path), and
# a four-warp fp32 tile with 4 tf32 k steps a slice (the model's tightest register case).
SAMPLE = {
    "lstm-bf16-a100-tuned": lambda: tuned_config("lstm", 5, 3, 40, "bfloat16", "a100-sxm4-80gb"),
    "gru-fp32-128x8x32-4x1": lambda: _config(
        ("gru", 11, 2, 40, "float32"), "a100-sxm4-80gb", (128, 8, 32, 4, 1, 2, 128)
    ),  # fmt: skip
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """name -> (config, [(program, nvcc figures, sass, {arch: nvrtc figures}, seconds)]): every
    compile of the sample, two at a time (the machine's two cores)."""
    workdir = tmp_path_factory.mktemp("cuda-alternating-compile")
    configs = {name: make() for name, make in SAMPLE.items()}
    jobs = [(name, program) for name, config in configs.items() for program in programs(config)]

    def timed(fn, *args):
        start = time.perf_counter()
        return fn(*args), time.perf_counter() - start

    with ThreadPoolExecutor(2) as pool:
        nvcc = {p.name: pool.submit(timed, nvcc_compile, p, workdir) for _, p in jobs}
        nvrtc = {(p.name, a): pool.submit(timed, nvrtc_compile, p, a) for _, p in jobs for a in ARCHS}
        results = {name: (config, []) for name, config in configs.items()}
        for name, program in jobs:
            (figures, sass), nvcc_s = nvcc[program.name].result()
            by_arch = {a: nvrtc[(program.name, a)].result() for a in ARCHS}
            nvrtc_s = sum(seconds for _, seconds in by_arch.values())
            row = (program, figures, sass, {a: f for a, (f, _) in by_arch.items()}, (nvcc_s, nvrtc_s))
            results[name][1].append(row)
    return results


@pytest.mark.parametrize("name", list(SAMPLE))
def test_every_entry_compiles_within_the_model(compiled, name):
    config, rows = compiled[name]
    for program, figures, sass, nvrtc, _ in rows:
        for entry in program.entries:
            model = predicted(config, entry.name)
            shared, registers = model["shared_memory_bytes_per_block"], model["registers_per_thread"]
            dynamic = launch_dims(config, entry.name).shared_bytes
            for tool, by_arch in (("nvcc", figures), *((f"nvrtc-sm_{a}", nvrtc[a]) for a in ARCHS)):
                for arch in ARCHS:
                    if (entry.name, arch) not in by_arch:
                        continue
                    got = by_arch[(entry.name, arch)]
                    where = f"{program.name}:{entry.name} sm_{arch} ({tool})"
                    assert got["static_shared_bytes"] + dynamic == shared, (where, got, shared)
                    assert got["registers"] <= registers, (where, got, registers)
                    assert got["spill_bytes"] == 0 and got["stack_frame_bytes"] == 0, (where, got)
            assert all((entry.name, a) in figures and (entry.name, a) in nvrtc[a] for a in ARCHS), entry.name
            if entry.name in GEMM_ENTRIES:
                for arch in ARCHS:
                    code = sass[(entry.name, arch)]
                    where = f"{program.name}:{entry.name} sm_{arch}"
                    assert "HMMA" in code and "LDGSTS" in code, f"{where}: no mma or no cp.async"
                    transposed_tf32 = config.problem.dtype == "float32" and entry.name == "gemm_weight_grad"
                    assert "LDSM" in code or transposed_tf32, f"{where}: no ldmatrix"


def test_gemm_shared_memory_is_the_pipeline_only(compiled):
    # what the launcher requests is STAGES x (A slice + B slice); ptxas sees no static shared memory
    for config, rows in compiled.values():
        for program, figures, *_ in rows:
            for entry in program.entries:
                if entry.name in GEMM_ENTRIES:
                    assert launch_dims(config, entry.name).shared_bytes == gemm_shared_bytes(
                        config.params, config.problem.dtype
                    )
                    assert all(figures[(entry.name, a)]["static_shared_bytes"] == 0 for a in ARCHS)


def test_compile_seconds_are_reported(compiled, capsys):
    # the figures behind the report: nvcc for all four archs at once, NVRTC per arch
    with capsys.disabled():
        for name, (_, rows) in compiled.items():
            for program, *_, (nvcc_s, nvrtc_s) in rows:
                role = program.name.rsplit("-", 1)[1]
                per_arch = nvrtc_s / len(ARCHS)
                print(f"\n{name} {role}: nvcc (4 archs) {nvcc_s:.1f} s, nvrtc {per_arch:.1f} s per arch")
    assert compiled


_SIGNATURE = re.compile(r"TK_KERNEL void TK_LAUNCH_BOUNDS\([^)]*\)\s*(\w+)\((.*?)\)\s*\{", re.S)
_KINDS = {"int": "i32", "long long": "i64", "unsigned": "u32", "float": "f32"}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_entry_parameters_match_the_kernel_signatures(dtype):
    # the launcher passes arguments by the KernelEntry's list: it must be the source's, name by name
    config = _config(("gru", 5, 2, 24, dtype), "a100-sxm4-80gb", (64, 8, 32, 2, 1, 3, 128))
    for program in programs(config):
        source = re.sub(r"//[^\n]*", "", program.source)
        found = {}
        for name, params in _SIGNATURE.findall(source):
            parsed = []
            for param in params.split(","):
                words = param.split()
                kind = "ptr" if words[0].startswith("tk::ptr<") else _KINDS[" ".join(words[:-1])]
                parsed.append((words[-1], kind))
            found[name] = tuple(parsed)
        assert found == {e.name: e.params for e in program.entries}
