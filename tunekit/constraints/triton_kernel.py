"""Facts of the rendered triton-fused kernels that the model, the runtime and the compiles share.

* the D a kernel runs with (rows padded to 16-byte alignment) and the D measured for a tile;
* the register cap a kernel is compiled with (``maxnreg``) and which architecture's measurements
  stand for which;
* which operand R is in each product of the backward (its "dot forms"), chosen per compile so that
  Triton keeps one copy of R in shared memory where it can.
"""

from __future__ import annotations

from typing import Any

# Rows of the kernels' tensors start every D elements; with D a multiple of 8 every row is 16-byte
# aligned and Triton vectorizes the loads and stores. Otherwise it falls back to per-element
# addresses: an LSTM bf16 backward (d_pad 128, block_b 16, 8 warps, sm_80) takes 254 registers
# without spilling at every D = 72..120 that is a multiple of 8, but spills 32 B at D = 100 and
# 3304 B at D = 65. The runtime therefore runs such D on copies padded to the next multiple of 8.
ROW_ALIGN_ELEMENTS = 8


def kernel_head_dim(head_dim: int) -> int:
    """The D the kernels run with: ``head_dim`` rounded up to a multiple of ROW_ALIGN_ELEMENTS."""
    return -(-head_dim // ROW_ALIGN_ELEMENTS) * ROW_ALIGN_ELEMENTS


def class_head_dim(d_pad: int, full: bool) -> int:
    """The D measured for a tile: d_pad itself (no padded lanes), or the largest multiple of 8 below
    it, standing for every D with padded lanes (the same code but for constants: the LSTM kernels
    above took the same registers at every such D of their tile)."""
    return d_pad if full else d_pad - ROW_ALIGN_ELEMENTS


# Architectures whose ptxas results the measured register table holds; sm_86 uses sm_89's (both
# mma.sync with 99 KB of shared memory; identical registers and spills on every sampled compile).
# What changes the compiled code of a triton-fused kernel besides its source (the compile a launch
# makes, tunekit.kernels.triton_fused.compile_options): bump it when that changes.
COMPILE_RULE = "maxnreg=register_cap;enable_fp_fusion=1;ints-unspecialized;pointers-div16"
REGISTER_ARCHS = (80, 89, 90)


def register_arch(arch: int) -> int:
    """The architecture whose measured registers stand for ``arch``."""
    return 89 if arch == 86 else arch


def register_cap(num_warps: int, gpu: Any) -> int:
    """Registers per thread a kernel of ``num_warps`` warps may use on ``gpu`` (the ``maxnreg`` it is
    compiled with): <= the per-thread maximum, and 32 * num_warps threads share the block's register
    file, allocated per warp in units of ``register_allocation_unit`` (255 up to 8 warps, 128 at 16)."""
    per_warp = gpu.registers_per_block // num_warps
    per_thread = per_warp // gpu.register_allocation_unit * gpu.register_allocation_unit // gpu.warp_size
    return min(gpu.max_registers_per_thread, per_thread)


def wgmma_operands(arch: int, m: int, num_warps: int) -> bool:
    """Whether Triton 3.9 runs a product with ``m`` rows as Hopper warpgroup MMA: sm_90, whole
    warpgroups (num_warps a multiple of 4) and M a multiple of 64 (wgmma's m64); else mma.sync."""
    return arch >= 90 and num_warps % 4 == 0 and m % 64 == 0


def backward_dot_forms(
    arch: int, dtype_bytes: int, d_pad: int, block_b: int, num_warps: int, r_once: int
) -> tuple[bool, bool]:
    """(RY_UNITS, DH_UNITS) of the backward kernel: which operand R is in its two products.

    The backward multiplies by R twice a step: ry = y R^T, and dry R for the hidden state's gradient.
    With ``r_once = 0`` both put the batch rows on M (R^T and R as B operands): the fewest registers,
    but on mma.sync Triton 3.9 stores R and R^T (two copies in shared memory); only sm_90's
    warpgroup MMA (block_b >= 64) reads R^T as a transposed view of R's buffer. With ``r_once = 1``
    (16-bit only) the products are arranged so that both read one copy (ahead-of-time compiles,
    reports/triton_calibration.md):

    * mma.sync: ry^T = R y^T (R the A operand, the hidden units on M) and dry R (R the B operand)
      share one swizzled buffer, which ldmatrix reads plain and transposed;
    * sm_90 warpgroup MMA with d_pad >= 64: both put the hidden units on M (R and R^T as A
      operands, R^T a transposed view of R's buffer).

    fp32 runs on tf32 tensor cores, which have no transposed 32-bit ldmatrix: R is stored twice
    whatever the form, so ``r_once`` must be 0.
    """
    if r_once not in (0, 1) or (dtype_bytes == 4 and r_once):
        raise ValueError(f"r_once: expected 0, or 1 for a 16-bit dtype, received {r_once!r}")
    if not r_once:
        return False, False
    if wgmma_operands(arch, d_pad, num_warps):
        return True, True
    return True, False
