"""Analytic cost model: microseconds per time step of one configuration, without a GPU (DESIGN §4).

per step ~ max(tensor-core time of the busiest SM, shared-memory traffic for the R it reads there,
register-file part, load stalls of a shallow GEMM pipeline) + cross-block reduction + grid syncs
+ pointwise + HBM traffic (Wx in, states out; the R re-read of cuda-alternating) + kernel
launches (cuda-alternating: two per step). For direction "both", forward and backward add up.

triton-fused runs one program per (head, batch block) for the whole sequence: a grid smaller than
the SMs leaves them idle (the step time does not shrink), programs sharing an SM share its tensor
cores and shared-memory bandwidth, and a grid beyond the resident programs runs in waves.

Every hardware number comes from the GPUProfile (each cited in its TOML file); the constants below
are stated assumptions, to be calibrated against measurements. The model ranks configurations of
one family and compares families; it does not promise absolute accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from tunekit.constraints import Space
from tunekit.constraints.occupancy import mma_shape, tensor_dtype

__all__ = ["CostBreakdown", "estimate", "estimate_all"]

# Assumptions (calibrate with measurements):
# - one SM can draw at most this multiple of its fair share (bandwidth / SMs) of HBM bandwidth, so
#   a grid that covers few SMs cannot reach full bandwidth.
SM_BANDWIDTH_SHARE = 2.0
# - L2 delivers this multiple of HBM bandwidth to data that stays resident in it (A100 L2 reads
#   measure about 2.5-3x HBM in microbenchmarks such as Jia et al., arXiv 1804.06826 for Volta).
L2_BANDWIDTH_FACTOR = 2.5
# - FP32 operations per gate element in the pointwise step (a sigmoid/tanh/exp costs a few SFU
#   and FMA operations each, plus the state update).
POINTWISE_FLOPS_PER_GATE = 24
# - dependent latency of one step's pointwise tail (load pre-activations, transcendental chain,
#   store states) and of a block-wide barrier, in microseconds.
STEP_LATENCY_US = 0.3
# - an SM has 4 scheduler sub-partitions, each with its own tensor cores: fewer than 4 resident
#   warps leave some idle (NVIDIA Ampere/Hopper architecture whitepapers: 4 SMSPs per SM).
SUB_PARTITIONS = 4
TILE_BYTES = 512  # one 16x16 bf16 (16x8 tf32) mma A tile
# - latency of a global/L2 load into shared memory (cp.async), in SM cycles: a GEMM k loop with s
#   pipeline stages waits at least this / (s - 1) per k slice (Ampere microbenchmarks measure
#   ~500-600 cycles of L2/HBM latency).
LOAD_LATENCY_CYCLES = 600


@dataclass(frozen=True)
class CostBreakdown:
    """Each term in microseconds per time step; ``total_us_per_step`` combines them."""

    tensor_us: float  # tensor-core work of the busiest SM
    shared_memory_us: float  # shared-memory reads of R (and y) on the busiest SM
    register_us: float  # the part of the tensor work whose R operands live in registers
    load_latency_us: float  # k-loop stalls on global loads a shallow pipeline cannot hide
    reduction_us: float  # cross-block reduction of a k split
    sync_us: float  # grid-wide syncs
    pointwise_us: float  # gate nonlinearities and state update
    hbm_us: float  # Wx in, states out, R re-read (cuda-alternating)
    launch_us: float  # kernel launches per step
    total_us_per_step: float

    def terms(self) -> dict[str, float]:
        """Every term by name, total included."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _min(a: Any, b: Any) -> Any:
    """``min(a, b)``, elementwise where one is an array (``estimate_all`` passes numpy arrays)."""
    return np.minimum(a, b) if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) else min(a, b)


def _max(a: Any, b: Any) -> Any:
    """``max(a, b)``, elementwise where one is an array."""
    return np.maximum(a, b) if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) else max(a, b)


def _rates(gpu: Any, dtype: str) -> dict[str, float]:
    """Per-SM rates in units per microsecond."""
    clock = gpu.boost_clock_mhz  # cycles per microsecond
    return {
        "tensor": gpu.tensor_tflops[tensor_dtype(dtype)] * 1e6 / gpu.sm_count,  # FLOP/us per SM
        "fp32": gpu.fp32_tflops * 1e6 / gpu.sm_count,  # FLOP/us per SM
        "smem": gpu.shared_memory_bandwidth_bytes_per_clock_per_sm * clock,  # B/us per SM
        "hbm": gpu.memory_bandwidth_gbs * 1e3,  # B/us, whole GPU
    }


def _hbm_us(gpu: Any, nbytes: float, active_sms: float, l2_resident: bool = False) -> float:
    """Time to move ``nbytes`` with ``active_sms`` SMs pulling (each capped at its share x2)."""
    bandwidth = gpu.memory_bandwidth_gbs * 1e3 * (L2_BANDWIDTH_FACTOR if l2_resident else 1.0)
    share = _min(1.0, SM_BANDWIDTH_SHARE * active_sms / gpu.sm_count)
    return nbytes / (bandwidth * share)


def _io_bytes(space: Space, direction: str) -> int:
    """Per step: Wx (or dWx) and the states (or their gradients) that cross HBM."""
    p = space.problem
    units = p.batch * p.hidden
    states = p.n_states * units * p.dtype_bytes
    if direction == "forward":
        return p.g_w * units * p.dtype_bytes + states  # read Wx, write all states
    # backward: read stored states and their incoming gradients, write dWx (= dgates)
    return 2 * states + p.g_r * units * p.dtype_bytes


def _pointwise_us(space: Space, units_on_busiest_sm: float) -> float:
    p, gpu = space.problem, space.gpu
    flops = units_on_busiest_sm * (p.g_r + p.n_states) * POINTWISE_FLOPS_PER_GATE
    return STEP_LATENCY_US + flops / (gpu.fp32_tflops * 1e6 / gpu.sm_count)


def _tensor_share(warps_on_sm: int) -> float:
    return _min(1.0, warps_on_sm / SUB_PARTITIONS)


def _triton_fused(space: Space, res: Mapping[str, int], par: Mapping[str, int], d: str) -> dict[str, float]:
    p, gpu = space.problem, space.gpu
    rate = _rates(gpu, p.dtype)
    resident = res["blocks_per_sm"] * gpu.sm_count
    waves = -(-res["blocks"] // resident)  # programs run the whole sequence: later waves wait
    per_sm = _min(res["blocks_per_sm"], -(-res["blocks"] // gpu.sm_count))  # programs sharing an SM
    flops = 2 * p.g_r * par["d_pad"] ** 2 * par["block_b"]
    share = _tensor_share(per_sm * par["num_warps"])
    r_bytes = p.g_r * par["d_pad"] ** 2 * p.dtype_bytes  # R lives in shared memory, read every step
    active = _min(res["blocks"], gpu.sm_count)
    units = par["block_b"] * par["d_pad"] * per_sm
    return {
        "tensor_us": waves * per_sm * flops / (rate["tensor"] * share),
        "shared_memory_us": waves * per_sm * r_bytes / rate["smem"],
        "register_us": 0.0,
        "pointwise_us": waves * _pointwise_us(space, units),
        "hbm_us": waves * _hbm_us(gpu, _io_bytes(space, d) / waves, active),
    }


def _cuda_alternating(
    space: Space, res: Mapping[str, int], par: Mapping[str, int], d: str
) -> dict[str, float]:
    p, gpu = space.problem, space.gpu
    rate = _rates(gpu, p.dtype)
    grid = res["blocks"] if d == space.problem.directions[0] else res.get("blocks_backward", res["blocks"])
    per_sm = -(-grid // gpu.sm_count)  # blocks the busiest SM runs (in waves of blocks_per_sm)
    k_pad = res["k_pad"] if d == "forward" else -(-(p.g_r * p.head_dim) // par["tile_k"]) * par["tile_k"]
    flops = 2 * par["tile_m"] * par["tile_n"] * k_pad
    warps = par["warps_m"] * par["warps_n"]
    share = _tensor_share(_min(per_sm, res["blocks_per_sm"]) * warps)
    smem = k_pad * (par["tile_m"] * par["warps_n"] + par["tile_n"] * par["warps_m"]) * p.dtype_bytes
    r_bytes = p.g_r * p.heads * p.head_dim**2 * p.dtype_bytes
    r_reads = r_bytes * -(-p.batch // par["tile_n"])  # every column tile re-reads its rows of R
    gates = 2 * p.g_r * p.batch * p.hidden * 4  # fp32 pre-activations: GEMM writes, pointwise reads
    active = _min(grid, gpu.sm_count)
    pw_active = _min(res["pointwise_blocks"], gpu.sm_count)
    units = p.batch * p.hidden / pw_active
    # the k loop is latency-bound when the pipeline is shallow: each slice waits for its load
    k_slices = k_pad // par["tile_k"]
    load_wait = k_slices * LOAD_LATENCY_CYCLES / gpu.boost_clock_mhz / (par["stages"] - 1)
    return {
        "tensor_us": per_sm * flops / (rate["tensor"] * share),
        "load_latency_us": per_sm * load_wait,
        "shared_memory_us": per_sm * smem / rate["smem"],
        "register_us": 0.0,
        "pointwise_us": _pointwise_us(space, units),
        "hbm_us": _hbm_us(gpu, r_reads, active, l2_resident=r_bytes <= gpu.l2_bytes)
        + _hbm_us(gpu, gates + _io_bytes(space, d), pw_active),
        "launch_us": 2 * gpu.kernel_launch_latency_us,  # the GEMM and the pointwise kernel
    }


def _cuda_fused(space: Space, res: Mapping[str, int], par: Mapping[str, int], d: str) -> dict[str, float]:
    p, gpu = space.problem, space.gpu
    rate = _rates(gpu, p.dtype)
    mm, _, mk = mma_shape(gpu, p.dtype)
    per_sm = -(-res["blocks"] // gpu.sm_count)  # blocks on the busiest SM (all co-resident)
    warps = par["warps_rows"] * par["warps_k"]
    rows, k = res["rows_pad_per_block"], res["k_pad_per_block"]
    # the busiest warp sets the pace: every warp is charged its mma tiles (16x16x16 bf16, 16x8x8 tf32)
    flops = 2 * mm * mk * par["block_b"] * warps * res["mma_tiles_per_warp"]
    tensor = per_sm * flops / (rate["tensor"] * _tensor_share(per_sm * warps))
    tiles = (rows // mm) * (k // mk)
    in_regs = _min(tiles, res["r_tiles_in_registers_per_warp"] * warps)
    # each R tile in shared memory is read once per step and batch pass (the block loops over passes)
    r_smem = (tiles - in_regs) * TILE_BYTES * res["batch_passes"]
    y_reads = warps * res["row_tiles_per_warp"] * (k // par["warps_k"]) * par["block_b"] * p.dtype_bytes
    partials = (res["split_k"] - 1) * rows * par["block_b"] * 4  # fp32 partial sums through L2
    active = _min(res["blocks"], gpu.sm_count)
    units = par["hidden_per_block"] * par["block_b"] * per_sm / res["split_k"]
    return {
        "tensor_us": tensor,
        "shared_memory_us": per_sm * (r_smem + y_reads) / rate["smem"],
        "register_us": tensor * in_regs / _max(tiles, 1),
        "reduction_us": _hbm_us(gpu, 2 * partials * res["blocks"], active, l2_resident=True),
        "sync_us": res["grid_syncs_per_step"] * gpu.grid_sync_latency_us,
        "pointwise_us": _pointwise_us(space, units),
        "hbm_us": _hbm_us(gpu, _io_bytes(space, d), active),
    }


_FAMILIES = {"triton-fused": _triton_fused, "cuda-alternating": _cuda_alternating, "cuda-fused": _cuda_fused}


_COMPUTE_TERMS = ("tensor_us", "shared_memory_us", "register_us", "load_latency_us")  # overlapped: the max
_SERIAL_TERMS = ("reduction_us", "sync_us", "pointwise_us", "hbm_us", "launch_us")  # added to it


def _sums(space: Space, res: Mapping[str, Any], par: Mapping[str, Any]) -> dict[str, Any]:
    """Each term summed over the directions the configuration serves."""
    names = [f.name for f in fields(CostBreakdown) if f.name != "total_us_per_step"]
    sums = dict.fromkeys(names, 0.0)
    for d in space.problem.directions:
        for name, value in _FAMILIES[space.family](space, res, par, d).items():
            sums[name] += value
    return sums


def _total(sums: Mapping[str, Any]) -> Any:
    """The per-step time: the largest of the overlapped terms plus the serial ones, in the order
    ``max(a, b, c, d) + sum(...)`` evaluates them (so that arrays give the same numbers)."""
    compute = sums[_COMPUTE_TERMS[0]]
    for name in _COMPUTE_TERMS[1:]:
        compute = _max(compute, sums[name])
    rest = 0
    for name in _SERIAL_TERMS:
        rest = rest + sums[name]
    return compute + rest


def estimate(
    space: Space, assignment: Mapping[str, int], resources: Mapping[str, int] | None = None
) -> CostBreakdown:
    """Predicted microseconds per time step (forward + backward for direction "both").

    ``resources``: ``space.resources(assignment)`` where the caller has it already (the tuner
    evaluates them for all configurations at once, ``Space.resources_of_all``)."""
    if not isinstance(space, Space):
        raise ValueError(f"space: got {type(space).__name__}, expected a tunekit.constraints.Space")
    res = space.resources(assignment) if resources is None else resources
    par = space.config(assignment).params
    sums = _sums(space, res, par)
    return CostBreakdown(**sums, total_us_per_step=_total(sums))


class _Converted(Mapping):
    """``source``'s values passed through ``convert`` when first read (the formulas read a few)."""

    def __init__(self, source: Mapping[str, Any], convert: Any) -> None:
        self._source, self._convert, self._done = source, convert, {}

    def __getitem__(self, key: str) -> Any:
        if key not in self._done:
            self._done[key] = self._convert(self._source[key])
        return self._done[key]

    def __iter__(self) -> Any:
        return iter(self._source)

    def __len__(self) -> int:
        return len(self._source)


def estimate_all(
    space: Space, params: Mapping[str, Sequence[int]], resources: Mapping[str, Sequence[int] | int]
) -> dict[str, list[float]]:
    """``estimate`` of n configurations at once: every term of :class:`CostBreakdown` (total
    included) as a list whose entry i is configuration i's.

    ``params``: each tunable's n values; ``resources``: each resource's n values (or one int for
    all), as ``Space.resources`` gives them. The same formulas run once over numpy arrays of
    Python objects, so each entry is computed with Python's int and float arithmetic, operation by
    operation, exactly as ``estimate`` computes it for that configuration. A configuration the
    formulas cannot price (a zero divisor) raises for all of them: price those one at a time.
    """
    if not isinstance(space, Space):
        raise ValueError(f"space: got {type(space).__name__}, expected a tunekit.constraints.Space")
    missing = [n for n in space.tunables if n not in params]
    if missing:
        raise ValueError(f"params: no values for {missing}; expected every tunable of {space.tunables}")
    n = len(params[space.tunables[0]]) if space.tunables else 1

    def column(values: Any) -> Any:
        if isinstance(values, (int, np.integer)):
            return int(values)
        array = np.asarray(values)
        if array.shape != (n,):
            raise ValueError(
                f"params/resources: got {array.shape[0] if array.ndim else 1} values, expected {n}"
            )
        return array.astype(object)  # numpy integers become Python ints

    par = {name: column(params[name]) for name in space.tunables}
    sums = _sums(space, _Converted(resources, column), par)
    sums["total_us_per_step"] = _total(sums)
    return {name: v.tolist() if isinstance(v, np.ndarray) else [v] * n for name, v in sums.items()}
