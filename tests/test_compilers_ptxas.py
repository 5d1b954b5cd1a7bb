"""The ptxas -v log parser and the PTX/SASS helpers of tunekit.compilers.ptxas (no compiler runs here)."""

from __future__ import annotations

import pytest

from tunekit.compilers.ptxas import (
    local_memory_instructions,
    parse_ptxas_log,
    parse_ptxas_log_all,
    ptx_function,
    sass_function,
)

# ---- captured ptxas -v logs (triton 3.9's bundled ptxas 12.9 and ptxas-blackwell 13.4) ----

LOG_SM80 = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'fused_forward' for 'sm_80'
ptxas info    : Function properties for fused_forward
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 72 registers, used 1 barriers, 432 bytes cmem[0]
ptxas info    : Compile time = 61.170 ms
"""

LOG_SM80_SPILLS = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'fused_forward' for 'sm_80'
ptxas info    : Function properties for fused_forward
    8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 128 registers, used 1 barriers, 8 bytes cumulative stack size, 432 bytes cmem[0]
ptxas info    : Compile time = 230.199 ms
"""

LOG_SM90A = """\
ptxas-blackwell info    : 0 bytes gmem
ptxas-blackwell info    : Compiling entry function 'fused_forward' for 'sm_90a'
ptxas-blackwell info    : Function properties for fused_forward
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas-blackwell info    : Used 72 registers, used 1 barriers
ptxas-blackwell info    : Compile time = 62.042 ms
"""

# Two kernels in one file, in the older format with static smem and lmem on the "Used" line.
LOG_TWO_KERNELS = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'first' for 'sm_86'
ptxas info    : Function properties for first
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 40 registers, 4096 bytes smem, 380 bytes cmem[0]
ptxas info    : Compiling entry function 'second' for 'sm_86'
ptxas info    : Function properties for second
    48 bytes stack frame, 40 bytes spill stores, 36 bytes spill loads
ptxas info    : Used 255 registers, 64 bytes lmem, 0 bytes smem, 380 bytes cmem[0]
"""


def test_parser_reads_registers_and_no_spills():
    usage = parse_ptxas_log(LOG_SM80)
    assert (usage.function, usage.arch, usage.registers) == ("fused_forward", "sm_80", 72)
    assert (usage.spill_stores_bytes, usage.spill_loads_bytes, usage.local_bytes) == (0, 0, 0)


def test_parser_reads_spills_and_stack_frame():
    usage = parse_ptxas_log(LOG_SM80_SPILLS)
    assert usage.registers == 128
    assert (usage.spill_stores_bytes, usage.spill_loads_bytes, usage.stack_frame_bytes) == (4, 4, 8)


def test_parser_accepts_the_blackwell_ptxas_prefix_and_sm90a():
    usage = parse_ptxas_log(LOG_SM90A)
    assert (usage.arch, usage.registers, usage.static_shared_bytes) == ("sm_90a", 72, 0)


def test_parser_picks_the_named_function_and_its_own_lines():
    first = parse_ptxas_log(LOG_TWO_KERNELS, "first")
    second = parse_ptxas_log(LOG_TWO_KERNELS, "second")
    assert (first.registers, first.static_shared_bytes, first.spill_stores_bytes) == (40, 4096, 0)
    assert (second.registers, second.spill_stores_bytes, second.spill_loads_bytes) == (255, 40, 36)
    assert second.local_bytes == 64  # lmem (64) exceeds the stack frame (48)
    assert parse_ptxas_log(LOG_TWO_KERNELS).function == "first"


@pytest.mark.parametrize(
    "text,function,message",
    [
        ("ptxas fatal : Unresolved extern function 'f'", None, "Compiling entry function"),
        (LOG_TWO_KERNELS, "third", "first, second"),
        ("ptxas info : Compiling entry function 'f' for 'sm_80'\n", None, "Used N registers"),
    ],
)
def test_parser_rejects_logs_without_what_it_needs(text, function, message):
    with pytest.raises(ValueError, match=message):
        parse_ptxas_log(text, function)


# NVRTC 13.5 prints the Function properties line with a "ptxas         ." prefix.
LOG_NVRTC_TWO_ENTRIES = """\
ptxas info    : 3271 bytes gmem, 4536 bytes cmem[4]
ptxas info    : Compiling entry function 'step' for 'sm_89'
ptxas info    : Function properties for step
ptxas         .     256 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 30 registers, used 1 barriers, 2048 bytes smem, 380 bytes cmem[0]
ptxas info    : Compile time = 9.780 ms
ptxas info    : Compiling entry function 'reduce' for 'sm_89'
ptxas info    : Function properties for reduce
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 12 registers, 384 bytes cmem[0]
"""


def test_every_entry_of_an_nvrtc_log_in_order_with_its_own_figures():
    usages = parse_ptxas_log_all(LOG_NVRTC_TWO_ENTRIES)
    assert list(usages) == ["step", "reduce"]
    step, reduce = usages["step"], usages["reduce"]
    assert (step.arch, step.registers, step.static_shared_bytes, step.stack_frame_bytes) == (
        "sm_89",
        30,
        2048,
        256,
    )
    assert step.ptxas_ms == pytest.approx(9.78) and step.spill_bytes == 0
    assert (reduce.registers, reduce.static_shared_bytes, reduce.stack_frame_bytes, reduce.ptxas_ms) == (
        12,
        0,
        0,
        0.0,
    )


PTX = """\
.version 9.0
.target sm_80
\t// .globl\tfirst
.visible .entry first(
\t.param .u64 first_param_0
)
{
\tst.local.v4.f32 \t[%rd1], {%f1, %f2, %f3, %f4};
\tld.local.f32 \t%f5, [%rd2];
\tret;
}
\t// .globl\tsecond
.visible .entry second(
\t.param .u64 second_param_0
)
{
\tmma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%f1, %f2, %f3, %f4}, {%r1, %r2, %r3, %r4}, ...;
\tret;
}
"""

SASS = """\
\tcode for sm_80
\t\tFunction : second
\t.headerflags\t@"EF_CUDA_SM80 EF_CUDA_VIRTUAL_SM(EF_CUDA_SM80)"
        /*0000*/                   HMMA.16816.F32.BF16 R4, R8, R12, R4 ;
\t\t..........
\t\tFunction : first
        /*0000*/                   STL.128 [R1], R4 ;
        /*0010*/                   LDL R5, [R1+0x4] ;
"""


def test_ptx_and_sass_are_sliced_per_entry_and_local_memory_is_found_in_both():
    first, second = ptx_function(PTX, "first"), ptx_function(PTX, "second")
    assert "first_param_0" in first and "mma.sync" not in first
    assert "mma.sync" in second and "st.local" not in second
    assert local_memory_instructions(first) == ["st.local.v4.f32", "ld.local.f32"]
    assert local_memory_instructions(second) == []
    assert "HMMA" in sass_function(SASS, "second") and "STL" not in sass_function(SASS, "second")
    assert local_memory_instructions(sass_function(SASS, "first")) == ["STL.128", "LDL"]


def test_a_function_defined_after_an_entry_is_not_the_entrys():
    # a device function NVVM did not inline (.func) follows the entry that calls it in the PTX; its
    # local memory is its own, not the entry's (it made the last entry of a cuda-fused backward
    # program, db, look like it used local memory)
    helper = ".func  (.param .b32 func_retval0) helper(\n)\n{\n\tst.local.u32 \t[%rd1], %r1;\n}\n"
    ptx = PTX.replace("\t// .globl\tsecond", helper + "\t// .globl\tsecond")
    assert local_memory_instructions(ptx_function(ptx, "first")) == ["st.local.v4.f32", "ld.local.f32"]
    tail = PTX.split("\t// .globl\tsecond")[0] + ".weak .func helper()\n{\n\tld.local.u32 \t%r1, [%rd1];\n}\n"
    assert local_memory_instructions(ptx_function(tail, "first")) == ["st.local.v4.f32", "ld.local.f32"]


def test_slicing_names_a_missing_entry():
    with pytest.raises(ValueError, match="third"):
        ptx_function(PTX, "third")
    with pytest.raises(ValueError, match="third"):
        sass_function(SASS, "third")
