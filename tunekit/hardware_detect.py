"""GPU detection: the profile of a CUDA device, matched to a packaged profile or built from its properties.

:func:`detect_profile` asks torch about the device only when called (``tunekit hw detect``); nothing here
runs at import. A device whose compute capability, SM count and name match a packaged profile gets that
profile; any other gets one built from ``torch.cuda.get_device_properties`` plus the architecture's limits
(:data:`tunekit.hardware.ARCH_FACTS`), its estimated numbers cited as estimates.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any

from tunekit.hardware import ARCH_FACTS, CITED_FIELDS, GPUProfile, _check_consistency, list_profiles

__all__ = ["detect_profile"]

# Dense tensor-core FLOP per clock per SM for 16-bit inputs with fp32 accumulation, and fp32 FLOP per
# clock per SM (2 per FMA lane), back-computed from the datasheets of the packaged profiles:
# A100 312 TF / (108 SMs x 1410 MHz) = 2048; A10 125 TF / (72 x 1695 MHz) = 1024; L4 121 TF / (58 x
# 2040 MHz) = 1022; H100 SXM 989 TF / (132 x 1830 MHz) = 4096. fp32: 64 lanes on sm_80, 128 after.
# GeForce boards run fp32-accumulated tensor math at half these rates (RTX 4090: 165 TF, not 330), so
# an unlisted GeForce GPU's estimate is optimistic by 2x; its profile's sources say it is an estimate.
_FLOP_PER_CLOCK = {(8, 0): (2048, 128), (8, 6): (1024, 256), (8, 9): (1024, 256), (9, 0): (4096, 256)}
# PTX ISA, mma.sync shapes per input type: f16/bf16 m16n8k16 and m16n8k8; tf32 m16n8k8 and m16n8k4;
# f64 m8n8k4 (sm_80+); e4m3/e5m2 m16n8k32 (sm_89+). FP64 tensor cores exist only on GA100/GH100.
_MMA = {
    "float16": ("m16n8k16", "m16n8k8"),
    "bfloat16": ("m16n8k16", "m16n8k8"),
    "tfloat32": ("m16n8k8", "m16n8k4"),
    "float64": ("m8n8k4",),
    "float8": ("m16n8k32",),
}
_TENSOR_RATIO = {"float16": 1.0, "bfloat16": 1.0, "tfloat32": 0.5, "float8": 2.0}


def _tokens(text: str) -> set[str]:
    return set(re.split(r"[^a-z0-9]+", text.lower())) - {"", "nvidia", "geforce"}


# Words that name a board form factor: an "A100 80GB PCIe" must not match the SXM4 profile, whose
# bandwidth and clocks differ, even though CC and SM count agree.
_FORM_FACTORS = {"pcie", "sxm", "sxm2", "sxm4", "sxm5", "nvl"}


def _match(props: Any) -> GPUProfile | None:
    """The packaged profile with the device's CC and SM count whose name shares most words with it."""
    cc = (props.major, props.minor)
    words = _tokens(props.name)
    scored = []
    for p in list_profiles():
        if p.compute_capability != cc or p.sm_count != props.multi_processor_count:
            continue
        known = _tokens(p.display_name).union(*(_tokens(a) for a in p.aliases))
        if words & _FORM_FACTORS and not words & _FORM_FACTORS & known:
            continue
        scored.append((len(words & known), p.name, p))
    scored.sort(reverse=True)
    if not scored or scored[0][0] == 0 or (len(scored) > 1 and scored[0][0] == scored[1][0]):
        return None
    return scored[0][2]


def _from_properties(props: Any, device: int) -> GPUProfile:
    """A profile built from the device's reported properties plus the architecture's limits."""
    cc = (props.major, props.minor)
    facts = ARCH_FACTS.get(cc)
    if facts is None:
        raise RuntimeError(
            f"GPU {props.name!r} has compute capability {cc[0]}.{cc[1]}, which tunekit has no "
            f"architecture limits for (known: {', '.join(f'{a}.{b}' for a, b in ARCH_FACTS)}); "
            "write a profile TOML by hand (see hardware_profiles/)"
        )
    reported = f"torch.cuda.get_device_properties({device}) on {props.name!r}"
    est = (
        f"Estimate: {cc[0]}.{cc[1]} per-SM rate (tunekit.hardware_detect._FLOP_PER_CLOCK) x SMs x boost clock"
    )
    clock_mhz = round(getattr(props, "clock_rate", 0) / 1000)  # clock_rate is in kHz
    tensor_per_clk, fp32_per_clk = _FLOP_PER_CLOCK[cc]
    dtypes = ["float16", "bfloat16", "tfloat32"] + (["float8"] if cc >= (8, 9) else [])
    tflops = {
        d: props.multi_processor_count * clock_mhz * tensor_per_clk * _TENSOR_RATIO[d] / 1e6 for d in dtypes
    }
    if cc in ((8, 0), (9, 0)):  # FP64 tensor cores: 1/16 of the 16-bit rate on GA100 and GH100
        dtypes.append("float64")
        tflops["float64"] = tflops["float16"] / 16
    # CUDA sample bandwidthTest: 2 (double data rate) x memory clock (kHz) x bus width (bytes).
    bandwidth = 2 * getattr(props, "memory_clock_rate", 0) * getattr(props, "memory_bus_width", 0) / 8 / 1e6
    if clock_mhz <= 0 or bandwidth <= 0:
        # Throughput estimates need both; a made-up number would silently skew every ranking.
        raise RuntimeError(
            f"GPU {props.name!r} matches no packaged profile and torch reports no clock rate or memory "
            "clock/bus width for it; write a profile TOML by hand (see hardware_profiles/)"
        )
    name = re.sub(r"[^a-z0-9]+", "-", props.name.lower().replace("nvidia", "")).strip("-") or "gpu"
    values: dict[str, Any] = {
        "name": f"detected-{name}",
        "display_name": props.name,
        "aliases": (),
        "compute_capability": cc,
        "sm_count": props.multi_processor_count,
        "boost_clock_mhz": clock_mhz,
        "registers_per_sm": getattr(props, "regs_per_multiprocessor", 65536),
        "registers_per_block": 65536,
        "max_registers_per_thread": 255,
        "register_allocation_unit": 256,
        "max_threads_per_block": 1024,
        "max_threads_per_sm": props.max_threads_per_multi_processor,
        "max_warps_per_sm": props.max_threads_per_multi_processor // props.warp_size,
        "max_blocks_per_sm": facts.max_blocks_per_sm,
        "warp_size": props.warp_size,
        "shared_memory_per_sm": getattr(
            props, "shared_memory_per_multiprocessor", facts.shared_memory_per_sm
        ),
        "shared_memory_per_block_optin": getattr(
            props, "shared_memory_per_block_optin", facts.shared_memory_per_block_optin
        ),
        "shared_memory_per_block_default": props.shared_memory_per_block,
        "shared_memory_reserved_per_block": 1024,
        "shared_memory_allocation_unit": 128,
        "shared_memory_bandwidth_bytes_per_clock_per_sm": 128,
        "l2_bytes": props.L2_cache_size,
        "memory_bandwidth_gbs": bandwidth,
        "tensor_tflops": MappingProxyType(tflops),
        "fp32_tflops": props.multi_processor_count * clock_mhz * fp32_per_clk / 1e6,
        "tensor_core_dtypes": tuple(dtypes),
        "mma_shapes": MappingProxyType({d: _MMA[d] for d in dtypes}),
        "grid_sync_latency_us": 1.5,
        "kernel_launch_latency_us": 4.0,
    }
    sources = {f: facts.source for f in CITED_FIELDS}
    sources.update(
        {
            f: reported
            for f in (
                "compute_capability",
                "sm_count",
                "boost_clock_mhz",
                "l2_bytes",
                "max_threads_per_sm",
                "max_warps_per_sm",
                "warp_size",
                "registers_per_sm",
                "shared_memory_per_sm",
                "shared_memory_per_block_optin",
                "shared_memory_per_block_default",
            )
        }
    )
    sources.update({f: est for f in ("tensor_tflops", "fp32_tflops")})
    sources["memory_bandwidth_gbs"] = (
        f"{reported}: 2 x memory_clock_rate x memory_bus_width / 8 (bandwidthTest)"
    )
    sources["mma_shapes"] = sources["tensor_core_dtypes"] = "NVIDIA PTX ISA, mma.sync shapes per type"
    sources["grid_sync_latency_us"] = sources["kernel_launch_latency_us"] = (
        "Estimate; calibrate with measurements"
    )
    values["sources"] = MappingProxyType(sources)
    profile = GPUProfile(**values)
    _check_consistency(profile, reported)
    return profile


def detect_profile(device: int = 0) -> GPUProfile:
    """The profile of CUDA device ``device``: a packaged one when it matches, else one built from it."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device is available (torch.cuda.is_available() is False)")
    if not isinstance(device, int) or isinstance(device, bool) or not 0 <= device < torch.cuda.device_count():
        raise ValueError(
            f"detect_profile: device must be an index in [0, {torch.cuda.device_count()}), got {device!r}"
        )
    props = torch.cuda.get_device_properties(device)
    return _match(props) or _from_properties(props, device)
