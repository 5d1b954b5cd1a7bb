"""Analytic cost model: microseconds per time step of one configuration, without a GPU (DESIGN §4).

per step ~ max(tensor-core time of the busiest SM, shared-memory traffic for the R it reads there,
register-file part, load stalls of a shallow GEMM pipeline) + cross-block reduction + grid syncs
+ pointwise + HBM traffic (Wx in, states out; the R re-read of cuda-alternating) + kernel
launches (cuda-alternating: two per step) + the dependent latency of a step that nothing overlaps
(triton-fused's loop-carried chain). For direction "both", forward and backward add up.

triton-fused runs one program per (head, batch block) for the whole sequence: a grid smaller than
the SMs leaves them idle (the step time does not shrink), programs sharing an SM share its tensor
cores and shared-memory bandwidth, and a grid beyond the resident programs runs in waves.

Every hardware number comes from the GPUProfile (each cited in its TOML file). The model's own
constants (:class:`CostConstants`) are assumptions fitted to timings by :mod:`tunekit.calibrate`
and read from a versioned data file (:func:`active_constants`): ``TUNEKIT_COST_CONSTANTS`` when set,
else the file ``tunekit calibrate`` writes in the user's data directory, else the one shipped with
the package (fitted on FlashRNN's published H100 timings, ``reports/cost_calibration.md``). The
model ranks configurations of one family and compares families; it does not promise absolute
accuracy beyond the residuals that report gives.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from tunekit.constraints import Space
from tunekit.constraints.occupancy import SUB_PARTITIONS, mma_shape, tensor_dtype

__all__ = [
    "CONSTANTS_ENV",
    "CONSTANTS_FORMAT",
    "CONSTANTS_VERSION",
    "CostBreakdown",
    "CostConstants",
    "active_constants",
    "breakdown",
    "constants_source",
    "estimate",
    "estimate_all",
    "load_constants",
    "packaged_constants_path",
    "user_constants_path",
    "write_constants",
]

CONSTANTS_ENV = "TUNEKIT_COST_CONSTANTS"  # path of a constants file that overrides the others
CONSTANTS_FORMAT = "tunekit-cost-constants"
CONSTANTS_VERSION = 1
_PACKAGED = "cost_constants.json"  # package data beside this module


@dataclass(frozen=True)
class CostConstants:
    """The model's assumptions; the defaults are the values stated before any calibration."""

    # One SM can draw at most this multiple of its fair share (bandwidth / SMs) of HBM bandwidth,
    # so a grid that covers few SMs cannot reach full bandwidth.
    sm_bandwidth_share: float = 2.0
    # L2 delivers this multiple of HBM bandwidth to data that stays resident in it (A100 L2 reads
    # measure about 2.5-3x HBM in microbenchmarks such as Jia et al., arXiv 1804.06826 for Volta).
    l2_bandwidth_factor: float = 2.5
    # FP32 operations per gate element in the pointwise step (a sigmoid/tanh/exp costs a few SFU
    # and FMA operations each, plus the state update).
    pointwise_flops_per_gate: float = 24.0
    # Dependent latency of one step's pointwise tail (load pre-activations, transcendental chain,
    # store states) and of a block-wide barrier, in microseconds.
    step_latency_us: float = 0.3
    # Latency of a global/L2 load into shared memory (cp.async), in SM cycles: a GEMM k loop with
    # s pipeline stages waits at least this / (s - 1) per k slice (Ampere microbenchmarks measure
    # ~500-600 cycles of L2/HBM latency).
    load_latency_cycles: float = 600.0
    # triton-fused: SM cycles of one step's loop-carried chain that no other work hides (the Wx
    # load, the G_r dependent tl.dot + layout conversions through shared memory, the barriers
    # between them, the state store). Stated before calibration as one global-load round trip.
    triton_step_latency_cycles: float = 600.0

    def as_dict(self) -> dict[str, float]:
        """Every constant by name."""
        return {k: float(v) for k, v in asdict(self).items()}

    @property
    def digest(self) -> str:
        """Short sha256 of the values: which cost model priced a stored prediction."""
        text = json.dumps(self.as_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def packaged_constants_path() -> Path:
    """The constants file shipped with the package (fitted on published timings)."""
    return Path(__file__).with_name(_PACKAGED)


def user_constants_path() -> Path:
    """Where ``tunekit calibrate`` writes by default: the user's data directory (platformdirs)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("tunekit", appauthor=False)) / _PACKAGED


def constants_source() -> Path:
    """The file the cost model reads: $TUNEKIT_COST_CONSTANTS, else the user's, else the packaged one."""
    override = os.environ.get(CONSTANTS_ENV)
    if override:
        return Path(override)
    user = user_constants_path()
    return user if user.is_file() else packaged_constants_path()


def load_constants(path: str | os.PathLike) -> CostConstants:
    """Read a versioned constants file; ValueError (one line) names what is wrong and where."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(
            f"cost constants: no file {path}; run `tunekit calibrate` or unset {CONSTANTS_ENV}"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cost constants: {path} is not readable JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != CONSTANTS_FORMAT:
        raise ValueError(f"cost constants: {path} is not a {CONSTANTS_FORMAT!r} file")
    if data.get("version") != CONSTANTS_VERSION:
        raise ValueError(
            f"cost constants: {path} has version {data.get('version')!r}, this tunekit reads "
            f"{CONSTANTS_VERSION}; rerun `tunekit calibrate`"
        )
    values = data.get("constants")
    names = {f.name for f in fields(CostConstants)}
    if not isinstance(values, dict) or set(values) != names:
        got = sorted(values) if isinstance(values, dict) else values
        raise ValueError(f"cost constants: {path} has constants {got}, expected exactly {sorted(names)}")
    bad = [
        k
        for k, v in values.items()
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0
    ]
    if bad:
        raise ValueError(f"cost constants: {path} has non-finite or negative values for {sorted(bad)}")
    return CostConstants(**{k: float(v) for k, v in values.items()})


def write_constants(path: str | os.PathLike, constants: CostConstants, provenance: Mapping[str, Any]) -> Path:
    """Write ``constants`` (and what they were fitted on) as a versioned file, atomically."""
    from tunekit.files import write_atomic

    body = {
        "format": CONSTANTS_FORMAT,
        "version": CONSTANTS_VERSION,
        "constants": constants.as_dict(),
        **{k: v for k, v in provenance.items() if k not in ("format", "version", "constants")},
    }
    write_atomic(path, json.dumps(body, indent=2, sort_keys=True) + "\n")
    active_constants.cache_clear()
    return Path(path)


@functools.cache
def active_constants() -> CostConstants:
    """The constants :func:`estimate` uses by default (read once per process from constants_source())."""
    return load_constants(constants_source())


# Hardware facts (not fitted): an SM's 4 sub-partitions (occupancy.SUB_PARTITIONS) each have their
# own scheduler and tensor cores: fewer than 4 resident warps leave some idle.
TILE_BYTES = 512  # one 16x16 bf16 (16x8 tf32) mma A tile


def __getattr__(name: str) -> float:
    """The active constants under their former module-level names (``SM_BANDWIDTH_SHARE``, ...)."""
    field_name = name.lower()
    if field_name in {f.name for f in fields(CostConstants)}:
        return getattr(active_constants(), field_name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    step_latency_us: float  # a step's dependent chain that no other work overlaps (triton-fused)
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


def _hbm_us(k: CostConstants, gpu: Any, nbytes: float, active_sms: float, l2_resident: bool = False) -> float:
    """Time to move ``nbytes`` with ``active_sms`` SMs pulling (each capped at its share)."""
    bandwidth = gpu.memory_bandwidth_gbs * 1e3 * (k.l2_bandwidth_factor if l2_resident else 1.0)
    share = _min(1.0, k.sm_bandwidth_share * active_sms / gpu.sm_count)
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


def _pointwise_us(k: CostConstants, space: Space, units_on_busiest_sm: float) -> float:
    p, gpu = space.problem, space.gpu
    flops = units_on_busiest_sm * (p.g_r + p.n_states) * k.pointwise_flops_per_gate
    return k.step_latency_us + flops / (gpu.fp32_tflops * 1e6 / gpu.sm_count)


def _tensor_share(warps_on_sm: int) -> float:
    return _min(1.0, warps_on_sm / SUB_PARTITIONS)


def _triton_fused(
    k: CostConstants, space: Space, res: Mapping[str, int], par: Mapping[str, int], d: str
) -> dict[str, float]:
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
        "pointwise_us": waves * _pointwise_us(k, space, units),
        "hbm_us": waves * _hbm_us(k, gpu, _io_bytes(space, d) / waves, active),
        # the loop over T is one dependent chain: step t + 1 needs y_t (each wave in turn)
        "step_latency_us": waves * k.triton_step_latency_cycles / gpu.boost_clock_mhz,
    }


def _cuda_alternating(
    k: CostConstants, space: Space, res: Mapping[str, int], par: Mapping[str, int], d: str
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
    load_wait = k_slices * k.load_latency_cycles / gpu.boost_clock_mhz / (par["stages"] - 1)
    return {
        "tensor_us": per_sm * flops / (rate["tensor"] * share),
        "load_latency_us": per_sm * load_wait,
        "shared_memory_us": per_sm * smem / rate["smem"],
        "register_us": 0.0,
        "pointwise_us": _pointwise_us(k, space, units),
        "hbm_us": _hbm_us(k, gpu, r_reads, active, l2_resident=r_bytes <= gpu.l2_bytes)
        + _hbm_us(k, gpu, gates + _io_bytes(space, d), pw_active),
        "launch_us": 2 * gpu.kernel_launch_latency_us,  # the GEMM and the pointwise kernel
    }


def _cuda_fused(
    k: CostConstants, space: Space, res: Mapping[str, int], par: Mapping[str, int], d: str
) -> dict[str, float]:
    p, gpu = space.problem, space.gpu
    rate = _rates(gpu, p.dtype)
    mm, _, mk = mma_shape(gpu, p.dtype)
    per_sm = -(-res["blocks"] // gpu.sm_count)  # blocks on the busiest SM (all co-resident)
    warps = par["warps_rows"] * par["warps_k"]
    rows, kk = res["rows_pad_per_block"], res["k_pad_per_block"]
    # the busiest warp sets the pace: every warp is charged its mma tiles (16x16x16 bf16, 16x8x8 tf32)
    flops = 2 * mm * mk * par["block_b"] * warps * res["mma_tiles_per_warp"]
    tensor = per_sm * flops / (rate["tensor"] * _tensor_share(per_sm * warps))
    tiles = (rows // mm) * (kk // mk)
    in_regs = _min(tiles, res["r_tiles_in_registers_per_warp"] * warps)
    # each R tile in shared memory is read once per step and batch pass (the block loops over passes)
    r_smem = (tiles - in_regs) * TILE_BYTES * res["batch_passes"]
    y_reads = warps * res["row_tiles_per_warp"] * (kk // par["warps_k"]) * par["block_b"] * p.dtype_bytes
    partials = (res["split_k"] - 1) * rows * par["block_b"] * 4  # fp32 partial sums through L2
    active = _min(res["blocks"], gpu.sm_count)
    units = par["hidden_per_block"] * par["block_b"] * per_sm / res["split_k"]
    return {
        "tensor_us": tensor,
        "shared_memory_us": per_sm * (r_smem + y_reads) / rate["smem"],
        "register_us": tensor * in_regs / _max(tiles, 1),
        "reduction_us": _hbm_us(k, gpu, 2 * partials * res["blocks"], active, l2_resident=True),
        "sync_us": res["grid_syncs_per_step"] * gpu.grid_sync_latency_us,
        "pointwise_us": _pointwise_us(k, space, units),
        "hbm_us": _hbm_us(k, gpu, _io_bytes(space, d), active),
    }


_FAMILIES = {"triton-fused": _triton_fused, "cuda-alternating": _cuda_alternating, "cuda-fused": _cuda_fused}


_COMPUTE_TERMS = ("tensor_us", "shared_memory_us", "register_us", "load_latency_us")  # overlapped: the max
_SERIAL_TERMS = ("reduction_us", "sync_us", "pointwise_us", "hbm_us", "launch_us", "step_latency_us")  # added


def _sums(k: CostConstants, space: Space, res: Mapping[str, Any], par: Mapping[str, Any]) -> dict[str, Any]:
    """Each term summed over the directions the configuration serves."""
    names = [f.name for f in fields(CostBreakdown) if f.name != "total_us_per_step"]
    sums = dict.fromkeys(names, 0.0)
    for d in space.problem.directions:
        for name, value in _FAMILIES[space.family](k, space, res, par, d).items():
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
    space: Space,
    assignment: Mapping[str, int],
    resources: Mapping[str, int] | None = None,
    constants: CostConstants | None = None,
) -> CostBreakdown:
    """Predicted microseconds per time step (forward + backward for direction "both").

    ``resources``: ``space.resources(assignment)`` where the caller has it already (the tuner
    evaluates them for all configurations at once, ``Space.resources_of_all``). ``constants``:
    the model's constants (default :func:`active_constants`; the calibration passes trial values).
    """
    if not isinstance(space, Space):
        raise ValueError(f"space: got {type(space).__name__}, expected a tunekit.constraints.Space")
    res = space.resources(assignment) if resources is None else resources
    return breakdown(space, res, space.config(assignment).params, constants)


def breakdown(
    space: Space,
    resources: Mapping[str, int],
    params: Mapping[str, int],
    constants: CostConstants | None = None,
) -> CostBreakdown:
    """:func:`estimate` from a configuration's resources and tunables (its ``KernelConfig.params``)
    already at hand: the calibration prices the same configurations under many constants."""
    k = active_constants() if constants is None else constants
    sums = _sums(k, space, resources, params)
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
    space: Space,
    params: Mapping[str, Sequence[int]],
    resources: Mapping[str, Sequence[int] | int],
    constants: CostConstants | None = None,
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
    k = active_constants() if constants is None else constants
    sums = _sums(k, space, _Converted(resources, column), par)
    sums["total_us_per_step"] = _total(sums)
    return {name: v.tolist() if isinstance(v, np.ndarray) else [v] * n for name, v in sums.items()}
