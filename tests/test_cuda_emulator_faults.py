"""Deliberately broken kernels (tests/cuda/emu_broken.cu): each bug is caught with a message that
names what went wrong and where, or made visible (poison); none hangs, none takes Python down."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch

from tunekit.cuda import CudaProgram, KernelEntry, KernelFault, LaunchDims, LaunchRefused
from tunekit.cuda.emulator import EmulatorRunner
from tunekit.hardware import load_profile

CUDA_DIR = Path(__file__).parent / "cuda"
SITE = r"\(test-emu-broken.cu:\d+\)"  # where a collective is, in messages
Y = (("y", "ptr"),)
BROKEN = CudaProgram(
    "test-emu-broken",
    (CUDA_DIR / "emu_broken.cu").read_text(),
    (
        KernelEntry("missing_barrier", (("x", "ptr"), ("y", "ptr"))),
        KernelEntry("read_past_the_end", (("x", "ptr"), ("y", "ptr"), ("n", "i32"))),
        KernelEntry("write_before_the_start", (("y", "ptr"), ("offset", "i32"))),
        KernelEntry("shared_past_the_end", Y),
        KernelEntry("dynamic_shared_too_small", Y),
        KernelEntry("misaligned_ldmatrix", (("out", "ptr"),)),
        KernelEntry("misaligned_cp_async", (("src", "ptr"), ("out", "ptr"))),
        KernelEntry("misaligned_ptr_cast", (("x", "ptr"), ("out", "ptr"))),
        KernelEntry("barrier_in_a_branch", Y),
        KernelEntry("two_different_barriers", Y),
        KernelEntry("shuffle_in_branches", Y),
        KernelEntry("shuffle_by_half_a_warp", Y),
        KernelEntry("barrier_against_shuffle", Y),
        KernelEntry("partial_mask", Y),
        KernelEntry("shuffle_in_a_partial_warp", Y),
        KernelEntry("missing_cp_async_wait", (("src", "ptr"), ("out", "ptr"))),
        KernelEntry("grid_sync_without_cooperative_launch", Y),
        KernelEntry("grid_sync_skipped_by_a_block", Y, cooperative=True),
        KernelEntry("raw_pointer_write", (("y", "ptr"), ("address", "i64"))),
        KernelEntry("spin_forever", Y),
        KernelEntry("stack_overflow", (("y", "ptr"), ("depth", "i32"))),
        KernelEntry("shared_in_a_helper", (("x", "ptr"), ("y", "ptr"))),
    ),
)


@pytest.fixture(scope="module")
def runner() -> EmulatorRunner:
    return EmulatorRunner(timeout_s=30)


def run(runner, entry, grid, block, *args, shared=0):
    runner.launch(BROKEN, entry, LaunchDims((grid, 1, 1), (block, 1, 1), shared), list(args))


def test_missing_barrier_shows_the_poison(runner):
    x, y = torch.arange(64, dtype=torch.float32), torch.zeros(64)
    run(runner, "missing_barrier", 1, 64, x, y)
    # threads run in order: each reads its successor's slot before the successor wrote it
    assert torch.isnan(y[:63]).all() and y[63] == 0.0


@pytest.mark.parametrize(
    "entry,args,message",
    [
        ("read_past_the_end", (torch.zeros(64), torch.zeros(64), 3),
         r"block \(0,0,0\) thread \(61,0,0\): out-of-bounds read of global buffer 'x' \(const float\): "
         r"element 64 \(byte offset 256\), extent 64 elements \(256 B\)"),
        ("write_before_the_start", (torch.zeros(64), 5),
         r"thread \(0,0,0\): out-of-bounds access of global buffer 'y' \(float\): element -5 "
         r"\(byte offset -20\)"),
        ("shared_past_the_end", (torch.zeros(64),),
         r"thread \(32,0,0\): out-of-bounds access of shared buffer 'tile' \(float\): element 32 .* "
         r"extent 32 elements"),
    ],
    ids=["global-read", "global-write", "static-shared"],
)  # fmt: skip
def test_out_of_bounds_accesses_name_buffer_element_and_thread(runner, entry, args, message):
    with pytest.raises(KernelFault, match=rf"^{entry}: .*{message}"):
        run(runner, entry, 1, 64, *args)


def test_out_of_bounds_dynamic_shared_memory(runner):
    with pytest.raises(
        KernelFault, match=r"thread \(16,0,0\): out-of-bounds access of shared buffer 'dynamic shared'"
    ):
        run(runner, "dynamic_shared_too_small", 1, 32, torch.zeros(32), shared=64)


def test_results_reach_the_tensors_only_when_the_launch_succeeds(runner):
    y = torch.full((64,), 7.0)
    with pytest.raises(KernelFault):  # threads 0..60 wrote their y before thread 61 read past the end
        run(runner, "read_past_the_end", 1, 64, torch.zeros(64), y, 3)
    assert (y == 7.0).all()


@pytest.mark.parametrize(
    "entry,args,message",
    [
        ("misaligned_ldmatrix", (torch.zeros(32, dtype=torch.uint32),),
         rf"misaligned tk::ldmatrix_x4 {SITE}: row 0 of matrix 0 at byte offset 8 of 'tile' is not "
         r"16-byte aligned"),
        ("misaligned_cp_async", (torch.zeros(4 * 32 + 4), torch.zeros(32)),
         rf"misaligned tk::cp_async_16 {SITE}: source byte offset 4 of 'src' is not 16-byte aligned"),
        ("misaligned_ptr_cast", (torch.zeros(65, dtype=torch.bfloat16), torch.zeros(32, dtype=torch.uint32)),
         r"misaligned tk::ptr_cast of global buffer 'x' as u32: byte offset 2 is not a multiple of 4"),
    ],
    ids=["ldmatrix", "cp_async", "ptr_cast"],
)  # fmt: skip
def test_misaligned_tile_pointers(runner, entry, args, message):
    with pytest.raises(KernelFault, match=message):
        run(runner, entry, 1, 32, *args)


@pytest.mark.parametrize(
    "entry,block,message",
    [
        ("barrier_in_a_branch", 64,
         r"thread \(48,0,0\): divergent __syncthreads: the thread exited while 48 threads of its block "
         rf"wait at __syncthreads {SITE}"),
        ("two_different_barriers", 64,
         r"thread \(32,0,0\): divergent __syncthreads: this thread reached the one at test-emu-broken.cu:\d+ "
         r"while 32 threads of the block wait at the one at test-emu-broken.cu:\d+"),
        ("shuffle_in_branches", 32,
         rf"thread \(1,0,0\): divergent warp: lane 1 reached __shfl_xor_sync {SITE} while 1 lanes "
         rf"of warp 0 wait at __shfl_xor_sync {SITE}"),
        ("shuffle_by_half_a_warp", 32,
         r"thread \(16,0,0\): divergent warp: lane 16 exited while 16 lanes of warp 0 wait at "
         r"__shfl_down_sync"),
        ("barrier_against_shuffle", 64,
         rf"deadlock: no thread can go on .* block \(0,0,0\): threads 0-15 wait at __syncthreads {SITE}, "
         rf"threads 16-31 wait at __shfl_xor_sync {SITE}, threads 32-47 wait at __syncthreads"),
        ("partial_mask", 32, rf"__shfl_sync {SITE} with mask 0x0000ffff: .* full-warp masks"),
        ("shuffle_in_a_partial_warp", 48,
         r"thread \(32,0,0\): __shfl_xor_sync .* in warp 1, which has only 16 threads"),
        ("grid_sync_without_cooperative_launch", 32,
         rf"tk::grid_sync {SITE} in a launch that is not cooperative"),
    ],
    ids=["barrier-skipped", "two-barriers", "shuffle-sites", "shuffle-half-warp", "deadlock", "mask",
         "partial-warp", "grid-sync-not-cooperative"],
)  # fmt: skip
def test_divergence_is_an_error_never_a_hang(runner, entry, block, message):
    with pytest.raises(KernelFault, match=message):
        run(runner, entry, 1, block, torch.zeros(block))


def test_a_block_that_skips_the_grid_sync(runner):
    small = dataclasses.replace(load_profile("a100"), sm_count=4)
    message = r"block \(1,0,0\) thread \(0,0,0\): divergent tk::grid_sync: the thread exited while 32 threads"
    with pytest.raises(KernelFault, match=message):
        EmulatorRunner(small, timeout_s=30).launch(
            BROKEN, "grid_sync_skipped_by_a_block", LaunchDims((3, 1, 1), (32, 1, 1)), [torch.zeros(96)]
        )


def test_missing_cp_async_wait_shows_the_poison(runner):
    src, out = torch.arange(128, dtype=torch.float32), torch.zeros(128)
    run(runner, "missing_cp_async_wait", 1, 32, src, out)
    assert torch.isnan(out).all()


def test_a_segfault_is_reported_and_python_survives(runner):
    with pytest.raises(KernelFault, match=r"thread \(0,0,0\): SIGSEGV \(address 0x10\): a raw pointer"):
        run(runner, "raw_pointer_write", 1, 32, torch.zeros(32), 16)
    # the helper and Python go on: the next launch works
    x, y = torch.arange(64, dtype=torch.float32), torch.zeros(64)
    run(runner, "read_past_the_end", 1, 32, x, y, 0)
    assert torch.equal(y[:32], x[:32])


def test_an_endless_loop_times_out_naming_the_running_thread():
    quick = EmulatorRunner(timeout_s=0.5)
    with pytest.raises(KernelFault, match=r"thread \(0,0,0\): time-out: the kernel ran longer than 0.5 s"):
        quick.launch(BROKEN, "spin_forever", LaunchDims((1, 1, 1), (32, 1, 1)), [torch.zeros(32)])


def test_a_stack_overflow_hits_the_guard_page(runner):
    with pytest.raises(
        KernelFault, match=r"thread \(0,0,0\): stack overflow \(SIGSEGV in the guard page below"
    ):
        run(runner, "stack_overflow", 1, 32, torch.zeros(32), 100)
    y = torch.zeros(32)
    run(runner, "stack_overflow", 1, 32, y, 3)  # shallow enough: fine
    assert (y == 10.0).all()  # deep(3, 1) = 4 + 3 + 2 + 1


def test_too_much_static_shared_memory_is_refused_before_running(runner):
    program = CudaProgram(
        "test-emu-static-limit",
        (CUDA_DIR / "emu_static_limit.cu").read_text(),
        (KernelEntry("too_much_static_shared", Y),),
    )
    with pytest.raises(LaunchRefused, match=r"52000 B of static shared memory \(TK_SHARED\) > 49152 B"):
        runner.launch(program, "too_much_static_shared", LaunchDims((1, 1, 1), (32, 1, 1)), [torch.zeros(32)])


def test_shared_memory_in_a_device_function_is_checked_when_found(runner):
    x, y = torch.arange(64, dtype=torch.float32), torch.zeros(64)
    run(runner, "shared_in_a_helper", 1, 64, x, y)
    assert torch.equal(y, torch.roll(x, -1))
    tight = EmulatorRunner(dataclasses.replace(load_profile("a100"), shared_memory_per_block_default=8192))
    with pytest.raises(LaunchRefused, match=r"16640 B of static shared memory \(TK_SHARED\) > 8192 B"):
        tight.launch(BROKEN, "shared_in_a_helper", LaunchDims((1, 1, 1), (64, 1, 1)), [x, y])


def test_no_helper_or_child_process_is_left_behind(runner):
    run(runner, "missing_barrier", 1, 32, torch.zeros(32), torch.zeros(32))
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
    # at most the helper itself: every launch's child has been reaped
    assert len(children) <= 1
    if children:
        grandchildren = Path(f"/proc/{children[0]}/task/{children[0]}/children").read_text().split()
        assert grandchildren == []
